"""Janus (Debian ``janus`` 1.1.x) as the baseline recorder: configured from files written into a
temp dir, loopback only, and its .mjr recordings read back.

:class:`JanusServer` writes ``janus.jcfg`` (HTTP transport and the Record&Play plugin only,
every other plugin, transport, logger and event handler disabled, no session timeout, ICE on
the one media address only (Janus never gathers on a loopback interface: load.py gives it a
veth address in a private network namespace), one event loop thread per handle as Janus's
default), the HTTP transport's and the plugin's configs (recordings under the temp dir),
then runs ``janus -C <conf> -F <dir>``. Nothing under /etc is read or changed.

:func:`read_mjr` parses a recording (MJR00002: ``MJR00002`` + u16 length + JSON info header,
then per packet ``MEET`` + u32 time (ms since the first) + u16 length + the RTP packet).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PLUGINS_DIR = Path("/usr/lib/x86_64-linux-gnu/janus/plugins")
TRANSPORTS_DIR = Path("/usr/lib/x86_64-linux-gnu/janus/transports")
PLUGINS = (
    "audiobridge", "duktape", "echotest", "lua", "nosip", "sip", "streaming", "textroom", "videocall",
    "videoroom", "voicemail",
)  # fmt: skip
TRANSPORTS = ("mqtt", "nanomsg", "pfunix", "rabbitmq", "websockets")


def available() -> str | None:
    """Why Janus cannot run here (None when it can)."""
    if shutil.which("janus") is None:
        return "janus is not installed (Debian: apt-get install janus janus-tools)"
    if not (PLUGINS_DIR / "libjanus_recordplay.so").exists():
        return f"no Record&Play plugin in {PLUGINS_DIR}"
    return None


def version() -> str:
    out = subprocess.run(["janus", "--version"], capture_output=True, text=True, check=False).stdout
    line = next((line for line in out.splitlines() if line.startswith("Janus version")), "")
    return line[line.find("(") + 1 : line.find(")")] if "(" in line else line.split(":", 1)[-1].strip() or "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_files(conf: Path, recordings: Path, port: int, rtp_ports: str, media_address: str) -> dict[str, str]:
    disabled_plugins = ",".join(f"libjanus_{p}.so" for p in PLUGINS)
    disabled_transports = ",".join(f"libjanus_{t}.so" for t in TRANSPORTS)
    return {
        "janus.jcfg": f"""general: {{
	configs_folder = "{conf}"
	plugins_folder = "{PLUGINS_DIR}"
	transports_folder = "{TRANSPORTS_DIR}"
	events_folder = "{conf}/none"
	loggers_folder = "{conf}/none"
	debug_level = 3
	debug_timestamps = true
	session_timeout = 0
	hide_dependencies = true
	protected_folders = ["/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var"]
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "{rtp_ports}"
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "{media_address}"
}}
plugins: {{
	disable = "{disabled_plugins}"
}}
transports: {{
	disable = "{disabled_transports}"
}}
loggers: {{
}}
events: {{
	broadcast = false
}}
""",
        "janus.transport.http.jcfg": f"""general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	port = {port}
	ip = "127.0.0.1"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
""",
        "janus.plugin.recordplay.jcfg": f"""general: {{
	path = "{recordings}"
	events = false
}}
""",
    }


class JanusServer:
    """``janus`` on a free loopback port, recording into ``tmp/recordings``."""

    def __init__(self, tmp: Path, media_address: str, *, taskset: str | None = None) -> None:
        self.conf = tmp / "janus-conf"
        self.recordings = tmp / "recordings"
        self.log = tmp / "janus.log"
        self.conf.mkdir(parents=True)
        (self.conf / "none").mkdir()
        self.recordings.mkdir()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/janus"
        for name, text in config_files(self.conf, self.recordings, self.port, "20000-40000", media_address).items():
            (self.conf / name).write_text(text)
        args = ["janus", "-C", str(self.conf / "janus.jcfg"), "-F", str(self.conf), "--log-stdout"]
        if taskset:
            args = ["taskset", "-c", taskset, *args]
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"janus did not listen within 30 s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        return self.log.read_text(errors="replace")

    @staticmethod
    def config_summary(media_address: str) -> str:
        return (
            "janus -C <tmp>/janus.jcfg -F <tmp> (files written by bench/webrtc/janus_server.py): "
            "janus.plugin.recordplay (record request with the client's offer as JSEP, no trickle; "
            ".mjr per stream into the temp dir), HTTP transport on 127.0.0.1 only, every other "
            f"plugin/transport disabled, ICE on {media_address} only (ice_enforce_list), ipv6 off, "
            "session_timeout 0, debug_level 3, "
            "default threading (one event loop thread per handle)"
        )


@dataclass
class Mjr:
    info: dict[str, object]
    packets: int
    sequence_span: int
    "Last minus first RTP sequence number, plus one (unwrapped): what was sent between them."
    rtp_timestamps: list[int]
    payloads: list[bytes]


def read_mjr(path: Path, keep_payloads: bool = False) -> Mjr:
    data = path.read_bytes()
    if data[:8] != b"MJR00002":
        raise ValueError(f"{path}: not an MJR00002 recording")
    (length,) = struct.unpack_from("!H", data, 8)
    info = json.loads(data[10 : 10 + length])
    offset = 10 + length
    packets = 0
    first_seq: int | None = None
    last_seq = 0
    timestamps: list[int] = []
    payloads: list[bytes] = []
    while offset + 10 <= len(data):
        if data[offset : offset + 4] != b"MEET":
            raise ValueError(f"{path}: bad packet header at {offset}")
        (size,) = struct.unpack_from("!H", data, offset + 8)
        rtp = data[offset + 10 : offset + 10 + size]
        offset += 10 + size
        if len(rtp) < 12:
            break
        seq, ts = struct.unpack_from("!HI", rtp, 2)
        if first_seq is None:
            first_seq = last_seq = seq
        else:
            last_seq += (seq - last_seq + 32768) % 65536 - 32768
        packets += 1
        timestamps.append(ts)
        if keep_payloads:
            payloads.append(_rtp_payload(rtp))
    span = last_seq - first_seq + 1 if first_seq is not None else 0
    return Mjr(info, packets, span, timestamps, payloads)


def _rtp_payload(rtp: bytes) -> bytes:
    csrc = rtp[0] & 0x0F
    offset = 12 + 4 * csrc
    if rtp[0] & 0x10:
        (words,) = struct.unpack_from("!H", rtp, offset + 2)
        offset += 4 + 4 * words
    end = len(rtp) - (rtp[-1] if rtp[0] & 0x20 else 0)
    return rtp[offset:end]

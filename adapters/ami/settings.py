"""The ``[ami]`` settings section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from capture.errors import ConfigError
from capture.settings import setting, split_hostport

SECRET_ENV = "VCON_CAPTURE_AMI__SECRET"


@dataclass(frozen=True)
class AmiSettings:
    connect: str = setting("127.0.0.1:5038", "Asterisk manager address (HOST:PORT)")
    username: str = setting("vcon-capture", "manager.conf user")
    secret_file: Path | None = setting(None, f"file holding the manager secret (or env {SECRET_ENV})")
    recordings_dir: Path = setting(
        Path("/var/spool/asterisk/monitor"), "where MixMonitor files are read (the monitor spool or a mount of it)"
    )
    mixmonitor: Literal["adapter", "dialplan"] = setting(
        "adapter", "adapter: start MixMonitor on bridged calls; dialplan: pick up the dialplan's MixMonitor files"
    )
    mixmonitor_options: str = setting("b", "MixMonitor options when the adapter starts it (b: only while bridged)")
    dialplan_options: str = setting(
        "b", "options the dialplan's MixMonitor runs with (b: its file starts when the channel is bridged)"
    )
    sip_domain: str | None = setting(
        None, "the PBX's SIP domain: extensions become sip:EXT@sip_domain parties (default: the host of connect)"
    )
    recorder_endpoints: tuple[str, ...] = setting(
        ("PJSIP/vcon-recorder",), "endpoints of the SIP fork to this recorder: never a call of their own"
    )
    delete_recordings: bool = setting(
        False, "delete a call's MixMonitor files once its vCon is built and on disk (spool or out)"
    )
    split_directions: bool = setting(
        False, "record each direction to its own file (MixMonitor r()/t()) instead of one mixed file"
    )
    file_wait_s: float = setting(10.0, "how long to wait for a recording to appear and stop growing")
    cdr_wait_s: float = setting(2.0, "after the last hangup, how long to wait for the call's Cdr events")
    ping_interval_s: float = setting(20.0, "keepalive Ping period; a Ping unanswered this long reconnects")
    action_timeout_s: float = setting(10.0, "how long to wait for the reply to an action")
    reconnect_min_s: float = setting(0.5, "first reconnect delay (doubles up to reconnect_max_s)")
    reconnect_max_s: float = setting(30.0, "longest reconnect delay")
    on_auth_failure: Literal["exit", "retry"] = setting(
        "exit", "login refused at startup: exit (code 3) or keep retrying with backoff"
    )
    max_message_bytes: int = setting(1 << 20, "largest AMI message accepted; bigger ones are skipped and logged")

    def __post_init__(self) -> None:
        split_hostport(self.connect, "ami.connect")
        if self.file_wait_s < 0 or self.cdr_wait_s < 0:
            raise ConfigError("ami.file_wait_s", "waits cannot be negative")
        if self.ping_interval_s <= 0 or self.action_timeout_s <= 0:
            raise ConfigError("ami.ping_interval_s", "must be positive")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ConfigError("ami.reconnect_min_s", "must be positive and at most reconnect_max_s")

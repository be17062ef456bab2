"""No secret leaks: the AMI secret, a WHIP bearer token and the conserver token never show up in the
debug JSON logs, in a vCon (encoded bodies included), in the spool or in the call state.

Each secret is proved in use first (the replay server only answers a correct Login, the WHIP
endpoint refuses a POST without the token, the conserver only stores vCons sent with its token),
so the test would fail if a secret were simply not configured.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from amireplay import ReplayServer, ThreadedReplay, transcript
from trust_service import PROBE_SDP, Service, ThreadedConserver, WhipCaller, tree
from vconcheck import load_vcons


def encodings(secret: str) -> set[str]:
    """The secret and the forms it would take inside a vCon body or a header."""
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("=")}


def leaks(text: str, secret_values: dict[str, str]) -> list[str]:
    return [name for name, value in secret_values.items() if any(form in text for form in encodings(value))]


def decoded_bodies(value: object) -> list[str]:
    """Every base64url body inside a vCon, decoded (a secret could hide in an encoded attachment)."""
    found = []
    if isinstance(value, dict):
        if value.get("encoding") == "base64url" and isinstance(value.get("body"), str):
            body = value["body"]
            found.append(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("latin-1"))
        for item in value.values():
            found += decoded_bodies(item)
    elif isinstance(value, list):
        for item in value:
            found += decoded_bodies(item)
    return found


def files_leaking(roots: tuple[Path, ...], secret_values: dict[str, str]) -> list[str]:
    bad = []
    for path in tree(*roots):
        try:
            data = path.read_bytes() if path.is_file() else b""
        except FileNotFoundError:
            continue
        if found := leaks(data.decode("latin-1"), secret_values):
            bad.append(f"{path}: {found}")
    return bad


def test_no_secret_in_logs_vcons_spool_or_state(tmp_path: Path) -> None:
    values = {
        "ami secret": "ami-" + secrets.token_hex(12),
        "whip token": "whip-" + secrets.token_hex(12),
        "conserver token": "cons-" + secrets.token_hex(12),
    }
    (tmp_path / "ami.secret").write_text(values["ami secret"] + "\n")
    (tmp_path / "whip.tokens").write_text(f"{values['whip token']}  name=Agent Smith\n")
    (tmp_path / "conserver.token").write_text(values["conserver token"] + "\n")
    (tmp_path / "monitor").mkdir()
    ami = ReplayServer(transcript("cacofonisk_ab_success_a_hangup.ami"), secret=values["ami secret"],
                       delay_s=0.003, recordings_dir=tmp_path / "monitor")  # fmt: skip
    with ThreadedReplay(ami) as replay, ThreadedConserver(token=values["conserver token"]) as conserver:
        service = Service(
            tmp_path,
            adapters=("ami", "webrtc"),
            core={"conserver_url": conserver.url, "conserver_token_file": tmp_path / "conserver.token",
                  "retry_max_s": 0.5},
            sections={
                "ami": {"connect": f"127.0.0.1:{replay.port}", "username": "vcon",
                        "secret_file": tmp_path / "ami.secret", "recordings_dir": tmp_path / "monitor",
                        "cdr_wait_s": 0.3, "file_wait_s": 2},
                "webrtc": {"token_file": tmp_path / "whip.tokens"},
            },
        ).start()  # fmt: skip
        web = WhipCaller.start(tmp_path, service.whip_base, "secretroom", 3.0, "--token", values["whip token"])
        try:
            refused = urllib.request.Request(f"{service.whip_base}/whip/secretroom", data=PROBE_SDP.encode(),
                                             headers={"Content-Type": "application/sdp"})  # fmt: skip
            try:
                urllib.request.urlopen(refused, timeout=10)
                raise AssertionError("a WHIP POST without the token was served")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
            result = web.result()
            assert result["delete_status"] == 200
            service.vcons(2)
            in_flight = files_leaking((service.out, service.state), values)
            assert service.stop() == 0, service.logs()[-3000:]
        finally:
            web.close()
            service.kill()
        assert ami.logins >= 1, "the service logged in with the AMI secret"
        assert conserver.server is not None
        received = {d["uuid"] for d in conserver.server.documents.values()}

    # The conserver checks the token before anything else; a vCon it refused for its content
    # (dead-lettered with the reason) was still sent with the right token.
    dead = service.state / "spool" / "dead" / "conserver"
    reasons = {p.stem: p.read_text() for p in dead.glob("*.reason")} if dead.exists() else {}
    assert not [r for r in reasons.values() if r.startswith(("HTTP 401", "HTTP 403"))], reasons
    log = service.logs()
    assert "Traceback" not in log
    assert '"level": "debug"' in log, "the service really logged at debug level"
    assert not leaks(log, values), [line for line in log.splitlines() if leaks(line, values)][:5]
    assert not in_flight, in_flight
    assert not files_leaking((service.out, service.state), values)
    docs = load_vcons(service.out)
    assert {d["uuid"] for d in docs} == received | set(reasons), "every vCon reached the conserver"
    for doc in docs:
        text = json.dumps(doc) + "".join(decoded_bodies(doc))
        assert not leaks(text, values), (doc["uuid"], leaks(text, values))

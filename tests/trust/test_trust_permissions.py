"""Everything the service writes is private: files 0600, directories 0700, under out/ and state_dir,
while calls are in flight (recordings, journals), while vCons wait in the spool, in the dead
letters, and after the service stopped.

A conserver that holds its requests keeps the finished vCons in the spool's outbox long enough
to look at them; it then refuses them (wrong token: 403, permanent) so they are dead-lettered.
"""

from __future__ import annotations

import time
from pathlib import Path

from trust_service import Service, SipCaller, ThreadedConserver, WhipCaller, wrong_modes


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_files_are_0600_and_directories_0700_in_flight_spooled_dead_and_after(tmp_path: Path) -> None:
    (tmp_path / "conserver.token").write_text("not-the-token\n")
    with ThreadedConserver(token="the-token", hold=True) as conserver:
        service = Service(
            tmp_path,
            core={"conserver_url": conserver.url, "conserver_token_file": tmp_path / "conserver.token",
                  "retry_max_s": 0.3},
        ).start()  # fmt: skip
        sip = SipCaller.start(tmp_path, service.sip_port, 3.0, hang_up=True)
        web = WhipCaller.start(tmp_path, service.whip_base, "permroom", 3.0)
        roots = (service.out, service.state)
        outbox = service.state / "spool" / "outbox"
        dead = service.state / "spool" / "dead" / "conserver"
        try:
            wavs = service.wait_recording(("sip", "webrtc"), 1.0)
            in_flight = sorted(p.name for p in tree_files(service.state / "calls"))
            assert {w.name for w in wavs.values()} | {"journal.jsonl"} <= set(in_flight), in_flight
            assert not wrong_modes(*roots), wrong_modes(*roots)

            assert sip.wait() == 0
            assert web.result()["delete_status"] == 200
            service.vcons(2)
            wait_for(lambda: len(list(outbox.glob("*.vcon"))) == 2, "both vCons held in the outbox")
            spooled = sorted(p.name for p in outbox.iterdir())
            assert not wrong_modes(*roots), wrong_modes(*roots)

            conserver.release()
            wait_for(lambda: len(list(dead.glob("*.reason"))) == 2, "both vCons dead-lettered")
            dead_letters = sorted(p.name for p in dead.iterdir())
            assert not wrong_modes(*roots), wrong_modes(*roots)
            assert service.stop() == 0, service.logs()[-3000:]
        finally:
            sip.close()
            web.close()
            service.kill()
    assert "Traceback" not in service.logs()
    assert not wrong_modes(*roots), wrong_modes(*roots)
    print("checked in flight:", in_flight, "spooled:", spooled, "dead:", dead_letters)
    assert any(name.endswith(".ok") for name in spooled), spooled
    assert len(list(service.out.glob("*.vcon"))) == 2


def tree_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]

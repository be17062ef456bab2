"""The asyncio client and the adapter against the loopback replay server (real transcripts, injected faults).

The pipeline is replaced by a small in-memory Capture that only records the events (the
real pipeline is exercised through the CLI in test_ami_cli.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import fakecapture
import pytest
import soundfile as sf
from amireplay import BANNER, ReplayServer, render, transcript

from adapters.ami.adapter import AmiAdapter
from adapters.ami.client import AmiClient
from adapters.ami.protocol import Message
from adapters.ami.settings import AmiSettings
from capture import events as ev
from capture.errors import AuthenticationError

ANSWERED = "cacofonisk_ab_success_a_hangup.ami"
CALL = "195176c06ab8-1529936170.42"


class FakeCapture(fakecapture.FakeCapture):
    def __init__(self) -> None:
        super().__init__(Path("/nonexistent"))

    def open_recording(self, *a, **kw):  # the AMI adapter never records audio itself
        raise AssertionError("not used by the AMI adapter")

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]


async def until(predicate, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def client_for(port: int, received: list, secret: str = "s3cret", **kw) -> AmiClient:
    kw.setdefault("ping_interval_s", 30)
    kw.setdefault("reconnect_min_s", 0.05)
    return AmiClient("127.0.0.1", port, "vcon", secret, on_event=received.append, **kw)


def settings_for(port: int, tmp_path: Path, **kw) -> AmiSettings:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    recordings = tmp_path / "monitor"
    recordings.mkdir(exist_ok=True)
    defaults = dict(
        connect=f"127.0.0.1:{port}",
        username="vcon",
        secret_file=secret,
        recordings_dir=recordings,
        cdr_wait_s=0.2,
        file_wait_s=2.0,
        reconnect_min_s=0.05,
        ping_interval_s=30.0,
    )
    return AmiSettings(**{**defaults, **kw})


def test_login_events_and_ping_reply() -> None:
    async def main() -> None:
        server = ReplayServer(transcript(ANSWERED))
        port = await server.start()
        received: list[Message] = []
        client = client_for(port, received)
        await client.connect()
        assert client.version == "9.0.0"
        reply = await client.action("Ping")
        assert reply.ok and reply.response["Ping"] == "Pong"
        await until(lambda: any(m.get("UserEvent") == "ReplayDone" for m in received))
        assert len([m for m in received if m.event != "UserEvent"]) == len(transcript(ANSWERED)) + 1
        await client.close()
        await server.close()
        assert server.actions[-1][0] == "Logoff"

    asyncio.run(main())


def test_wrong_secret_is_one_clear_authentication_error() -> None:
    async def main() -> None:
        server = ReplayServer([])
        port = await server.start()
        with pytest.raises(AuthenticationError) as info:
            await client_for(port, [], secret="wrong").connect()
        assert "\n" not in str(info.value)
        assert str(info.value) == f"AMI login refused for user 'vcon' at 127.0.0.1:{port}: Authentication failed"
        await server.close()

    asyncio.run(main())


def test_800_concurrent_actions_each_get_their_own_reply() -> None:
    async def main() -> None:
        server = ReplayServer([])
        port = await server.start()
        client = client_for(port, [])
        await client.connect()
        replies = await asyncio.gather(*(client.action("Ping") for _ in range(800)))
        assert all(r.ok for r in replies)
        assert len({r.action_id for r in replies}) == 800
        assert all(r.response.action_id == r.action_id for r in replies)
        await client.close()
        await server.close()

    asyncio.run(main())


def test_dribbled_tcp_and_split_utf8_keep_every_character() -> None:
    name = "Zo\u00eb \u00c5ngstr\u00f6m \u6771\u4eac"
    script = [render([("Event", "Newchannel"), ("CallerIDName", name), ("Uniqueid", f"u.{i}")]) for i in range(30)]
    script.insert(5, b"Event: Bad\r\nCallerIDName: M\xfcller\r\n\r\n")

    async def main() -> None:
        server = ReplayServer(script, chunk=3)
        port = await server.start()
        received: list[Message] = []
        client = client_for(port, received)
        await client.connect()
        await until(lambda: any(m.get("UserEvent") == "ReplayDone" for m in received))
        names = [m["CallerIDName"] for m in received if m.event == "Newchannel"]
        assert names == [name] * 30
        assert [m["CallerIDName"] for m in received if m.event == "Bad"] == ["M\\xfcller"]
        await client.close()
        await server.close()

    asyncio.run(main())


def test_four_megabyte_event_is_skipped_and_logged_and_the_stream_continues(caplog) -> None:
    huge = b"Event: VarSet\r\nValue: " + b"v" * (4 << 20) + b"\r\n\r\n"
    script = [render([("Event", "Before")]), huge, render([("Event", "After")])]

    async def main() -> None:
        server = ReplayServer(script)
        port = await server.start()
        received: list[Message] = []
        client = client_for(port, received)
        await client.connect()
        await until(lambda: any(m.get("UserEvent") == "ReplayDone" for m in received))
        assert [m.event for m in received if m.event in ("Before", "VarSet", "After")] == ["Before", "After"]
        assert client.logins == 1
        await client.close()
        await server.close()

    with caplog.at_level(logging.WARNING, logger="adapters.ami.client"):
        asyncio.run(main())
    (skipped,) = [r for r in caplog.records if r.getMessage() == "ami.message_skipped"]
    assert skipped.size == len(huge) - 4 and skipped.cap == 1 << 20


def test_unanswered_ping_reconnects_with_a_fresh_login() -> None:
    async def main() -> None:
        server = ReplayServer([], answer_pings=False)
        port = await server.start()
        client = client_for(port, [], ping_interval_s=0.2)
        await client.connect()
        runner = asyncio.create_task(client.run())
        await until(lambda: server.logins >= 2, within_s=5)
        assert [a for a, _ in server.actions].count("Ping") >= 1
        await client.close()
        await runner
        await server.close()

    asyncio.run(main())


def test_reconnect_backs_off_while_the_server_is_down() -> None:
    async def main() -> None:
        server = ReplayServer([])
        port = await server.start()
        client = client_for(port, [], reconnect_min_s=0.05, reconnect_max_s=0.4)
        await client.connect()
        await server.close()
        runner = asyncio.create_task(client.run())
        await asyncio.sleep(0.6)  # refused: 0.05 + 0.1 + 0.2 + ...
        assert not client.connected
        server2 = ReplayServer([])
        server2_port = 0
        # the same port again, as a restarted Asterisk would be
        server2._server = await asyncio.start_server(server2._session, "127.0.0.1", port)
        server2_port = port
        await until(lambda: client.connected, within_s=3)
        assert server2.logins == 1 and server2_port == port
        await client.close()
        await runner
        await server2.close()

    asyncio.run(main())


# -- the adapter -------------------------------------------------------------------------


def test_adapter_records_the_answered_call(tmp_path: Path) -> None:
    async def main() -> FakeCapture:
        server = ReplayServer(transcript(ANSWERED), delay_s=0.003, recordings_dir=tmp_path / "monitor")
        port = await server.start()
        capture = FakeCapture()
        adapter = AmiAdapter(settings_for(port, tmp_path), capture)
        await adapter.start()
        await until(lambda: capture.of(ev.CallEnded))
        await adapter.stop()
        await server.close()
        assert [name for name, _ in server.actions].count("MixMonitor") == 1
        return capture

    capture = asyncio.run(main())
    kinds = [e.kind for e in capture.events]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert kinds.index("media_recorded") < kinds.index("call_ended")
    (rec,) = capture.of(ev.MediaRecorded)
    assert Path(rec.path) == tmp_path / "monitor" / f"vcon-{CALL}.wav"
    assert rec.channels == (("SIP/150010001", "SIP/150010002"),)  # a mono MixMonitor file is one mix
    assert sf.info(rec.path).frames == int(1.5 * 8000) and rec.duration_s == 1.5
    (end,) = capture.of(ev.CallEnded)
    assert end.disposition is None and end.cause == "Normal Clearing"


def test_adapter_reports_a_missing_file_and_still_ends_the_call(tmp_path: Path) -> None:
    async def main() -> FakeCapture:
        server = ReplayServer(transcript(ANSWERED), delay_s=0.002)  # writes no file
        port = await server.start()
        capture = FakeCapture()
        adapter = AmiAdapter(settings_for(port, tmp_path, file_wait_s=0.3), capture)
        await adapter.start()
        await until(lambda: capture.of(ev.CallEnded))
        await adapter.stop()
        await server.close()
        return capture

    capture = asyncio.run(main())
    (missing,) = capture.of(ev.MediaUnavailable)
    assert missing.reason == f"recording vcon-{CALL}.wav did not appear in {tmp_path / 'monitor'} within 0.3 s"
    assert capture.events[-1].kind == "call_ended"


def test_connection_dropped_mid_call_still_one_vcon_worth_of_events(tmp_path: Path) -> None:
    """The server aborts after 40 events; 6 more happen while we are away; resync fills the gap."""
    script = transcript(ANSWERED)

    async def main() -> tuple[FakeCapture, ReplayServer]:
        server = ReplayServer(script, delay_s=0.002, drop_after=40, lost_on_drop=6, recordings_dir=tmp_path / "monitor")
        port = await server.start()
        capture = FakeCapture()
        adapter = AmiAdapter(settings_for(port, tmp_path), capture)
        await adapter.start()
        await until(lambda: capture.of(ev.CallEnded))
        await asyncio.sleep(0.3)  # anything emitted twice would show up now
        await adapter.stop()
        await server.close()
        return capture, server

    capture, server = asyncio.run(main())
    assert server.sessions == 2 and server.logins == 2
    assert [name for name, _ in server.actions].count("CoreShowChannels") == 2
    assert len(capture.of(ev.CallStarted)) == 1
    assert len(capture.of(ev.CallAnswered)) == 1
    assert len(capture.of(ev.CallEnded)) == 1
    assert len(capture.of(ev.MediaRecorded)) == 1
    joined = [(e.party, e.tel, e.name) for e in capture.of(ev.PartyJoined)]
    assert len(joined) == len(set(joined))
    assert {e.party for e in capture.of(ev.PartyJoined)} == {"SIP/150010001", "SIP/150010002"}
    assert capture.events[-1].kind == "call_ended"


def test_adapter_start_fails_on_wrong_secret_unless_told_to_retry(tmp_path: Path, caplog) -> None:
    async def main() -> None:
        server = ReplayServer([], secret="other")
        port = await server.start()
        with pytest.raises(AuthenticationError):
            await AmiAdapter(settings_for(port, tmp_path), FakeCapture()).start()
        retrying = AmiAdapter(settings_for(port, tmp_path, on_auth_failure="retry", reconnect_max_s=0.1), FakeCapture())
        await retrying.start()
        await until(lambda: [a for a, _ in server.actions].count("Login") >= 3)
        await retrying.stop()
        await server.close()

    asyncio.run(main())


def test_secret_comes_from_file_or_env_never_a_flag(tmp_path: Path) -> None:
    from capture.errors import ConfigError

    s = settings_for(1, tmp_path, secret_file=None)
    with pytest.raises(ConfigError, match="VCON_CAPTURE_AMI__SECRET"):
        AmiAdapter(s, FakeCapture(), env={})
    adapter = AmiAdapter(s, FakeCapture(), env={"VCON_CAPTURE_AMI__SECRET": "from-env"})
    assert adapter.client._secret == "from-env"


def test_banner_is_checked(tmp_path: Path) -> None:
    async def main() -> None:
        async def not_ami(reader, writer):
            writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
            await writer.drain()
            await reader.read()

        server = await asyncio.start_server(not_ami, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        from capture.errors import RemoteProtocolError

        with pytest.raises(RemoteProtocolError, match="banner"):
            await client_for(port, []).connect()
        server.close()

    asyncio.run(main())
    assert BANNER.startswith(b"Asterisk Call Manager/")


def test_dialplan_file_lookup_by_uniqueid_takes_no_longer_uniqueid(tmp_path: Path) -> None:
    from adapters.ami.commands import RecordingSpec
    from adapters.ami.recordings import candidates

    for name in ("vcon-a-1.12.wav", "vcon-a-1.1.wav", "vcon-a-1.1.txt", "x-1.100-1.1-y.wav"):
        (tmp_path / name).write_bytes(b"")
    spec = RecordingSpec("s", None, "1.1", datetime.now(UTC), (("a",),))
    assert [p.name for p in candidates(spec, tmp_path)] == ["vcon-a-1.1.wav", "x-1.100-1.1-y.wav"]


def test_a_stereo_recording_maps_its_channels_and_a_mono_one_is_the_mix(tmp_path: Path) -> None:
    import numpy as np

    from adapters.ami.commands import RecordingSpec
    from adapters.ami.recordings import describe

    at = datetime.now(UTC)
    spec = RecordingSpec("mixmonitor-1", "x.wav", "1.1", at, (("a",), ("b", "c")))
    sf.write(str(tmp_path / "stereo.wav"), np.zeros((8000, 2)), 8000, subtype="PCM_16")
    sf.write(str(tmp_path / "mono.wav"), np.zeros(4000), 8000, subtype="PCM_16")
    (tmp_path / "broken.wav").write_bytes(b"RIFF....nonsense")
    stereo = describe(spec, tmp_path / "stereo.wav", "call")
    assert stereo.channels == (("a",), ("b", "c")) and stereo.duration_s == 1.0 and stereo.started_at == at
    mono = describe(spec, tmp_path / "mono.wav", "call")
    assert mono.channels == (("a", "b", "c"),) and mono.duration_s == 0.5
    broken = describe(spec, tmp_path / "broken.wav", "call")
    assert isinstance(broken, ev.MediaUnavailable) and broken.reason.startswith("unreadable recording broken.wav")


def test_stop_ends_a_call_in_progress_into_events_with_the_reason(tmp_path: Path) -> None:
    script = transcript(ANSWERED)[:36]  # bridged, MixMonitor running, nobody has hung up yet

    async def main() -> FakeCapture:
        server = ReplayServer(script, delay_s=0.002, recordings_dir=tmp_path / "monitor")
        port = await server.start()
        capture = FakeCapture()
        adapter = AmiAdapter(settings_for(port, tmp_path), capture)
        await adapter.start()
        await server.done.wait()
        await until(lambda: "MixMonitor" in [a for a, _ in server.actions])
        await adapter.stop()
        await server.close()
        return capture

    capture = asyncio.run(main())
    (missing,) = capture.of(ev.MediaUnavailable)
    assert missing.reason == "capture stopped while the call was still up"
    (end,) = capture.of(ev.CallEnded)
    assert end.cause == "capture stopped" and end.disposition is None
    assert capture.events[-1] is end

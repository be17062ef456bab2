"""The pipeline from events + audio to spooled, delivered vCons (scripted calls, in process)."""

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from audiocheck import level_db, read_audio, window_ncc
from conserver import conserver_rejects
from scripted import FRAME, RATE, answered, busy, pcm, transfer
from vconcheck import assert_valid

from capture.cli import main
from capture.mixdown import MediaPolicy
from capture.pipeline import Pipeline
from capture.sinks.directory import DirectorySink
from capture.spool import Spool
from capture.vcon.content import b64url_decode


def make_pipeline(tmp_path: Path, sealing=None, **media) -> Pipeline:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return Pipeline(
        state_dir=tmp_path / "state",
        domain="test.example",
        media=MediaPolicy(media_dir=out, **media),
        spool=Spool(tmp_path / "state" / "spool"),
        sinks=[DirectorySink(out)],
        sealing=sealing,
    )


async def run_calls(tmp_path: Path, *scenarios, **media) -> list[dict]:
    pipeline = make_pipeline(tmp_path, **media)
    await pipeline.start()
    for n, scenario in enumerate(scenarios):
        await scenario(pipeline, f"call-{n}")
    assert await pipeline.drain(10)
    await pipeline.aclose()
    return [json.loads(p.read_bytes()) for p in sorted((tmp_path / "out").glob("*.vcon"))]


def recording_audio(doc: dict, tmp_path: Path) -> tuple[np.ndarray, int]:
    (dialog,) = [d for d in doc["dialog"] if d["type"] == "recording"]
    data = b64url_decode(dialog["body"]) if "body" in dialog else (tmp_path / "out" / dialog["filename"]).read_bytes()
    return read_audio(data)


async def test_answered_two_party_call_is_one_stereo_recording_aligned_in_time(tmp_path):
    (doc,) = await run_calls(tmp_path, answered)
    assert_valid(doc)
    assert [p.get("name") for p in doc["parties"]] == ["Alice", "Bob"]
    rec = doc["dialog"][0]
    assert rec["type"] == "recording" and rec["parties"] == [0, 1] and rec["mediatype"] == "audio/x-wav"
    audio, rate = recording_audio(doc, tmp_path)
    assert rate == RATE and audio.shape[1] == 2
    alice_sent = pcm(3.0, 1) / 32768
    alice_sent[50 * FRAME : 60 * FRAME] = 0  # the frames the receiver never got
    bob_sent = pcm(2.5, 2) / 32768
    # Alice's lost frames are silence, not squeezed out: her channel keeps its full length.
    assert abs(rec["duration"] - 3.0) < 0.01
    assert level_db(audio[50 * FRAME : 60 * FRAME, 0]) < -80
    assert min(window_ncc(alice_sent, audio[:, 0], rate, max_lag_s=0.01)) > 0.99
    # Bob started 0.5 s later: his channel is silent until then and lines up after.
    assert level_db(audio[: int(0.5 * RATE) - 1, 1]) < -80
    offset = int(0.5 * RATE)
    np.testing.assert_allclose(audio[offset : offset + len(bob_sent), 1], bob_sent, atol=1 / 32768)
    # Channels stay separate: Alice's voice is not on Bob's channel.
    assert max(window_ncc(alice_sent[:RATE], audio[:RATE, 1], rate, max_lag_s=0.01) or [0]) < 0.1
    events = [(h["party"], h["event"]) for h in rec["party_history"]]
    assert events == [(0, "join"), (1, "join"), (0, "keydown"), (1, "hold"), (1, "unhold"), (0, "keyup")]
    assert rec["session_id"]["remote"] == "00000000-0000-0000-0000-000000000000"
    purposes = [a["purpose"] for a in doc["attachments"]]
    assert purposes == ["sip-invite", "cdr"]
    cdr = doc["attachments"][1]["body"]
    assert cdr["disposition"] == "answered" and cdr["ended_by"] == "bob" and cdr["sip_call_id"] == "call-0"


async def test_busy_call_is_an_incomplete_dialog_without_media(tmp_path):
    (doc,) = await run_calls(tmp_path, busy)
    assert_valid(doc)
    (dialog,) = doc["dialog"]
    assert dialog["type"] == "incomplete" and dialog["disposition"] == "busy"
    assert not {"body", "url", "mediatype"} & dialog.keys()
    cdr = doc["attachments"][-1]["body"]
    assert cdr["disposition"] == "busy" and cdr["hangup_cause"] == "User busy" and cdr["billsec"] == 0


async def test_transferred_call_has_a_transfer_dialog(tmp_path):
    (doc,) = await run_calls(tmp_path, transfer)
    assert_valid(doc)
    assert len(doc["parties"]) == 3
    rec, xfer = doc["dialog"]
    assert rec["type"] == "recording" and rec["parties"] == [0, 1, 2]
    assert xfer["type"] == "transfer"
    assert (xfer["transferee"], xfer["transferor"], xfer["transfer_target"]) == (0, 1, 2)
    assert xfer["original"] == 0 and "parties" not in xfer
    assert "drop" in [h["event"] for h in rec["party_history"] if h["party"] == 1]
    audio, _ = recording_audio(doc, tmp_path)
    assert level_db(audio[:RATE, 2]) < -80 and level_db(audio[RATE : 2 * RATE, 2]) > -30


async def test_files_layout_gives_a_recording_set(tmp_path):
    (doc,) = await run_calls(tmp_path, answered, layout="files")
    assert_valid(doc)
    kinds = [d["type"] for d in doc["dialog"]]
    assert kinds == ["recording", "recording", "recording-set"]
    assert doc["dialog"][2]["recordings"] == [0, 1]
    assert all(d["recording_set"] == 2 for d in doc["dialog"][:2])
    assert [d["parties"] for d in doc["dialog"][:2]] == [[0], [1]]


async def test_media_url_base_references_audio_by_url_and_content_hash(tmp_path, capsys):
    (doc,) = await run_calls(tmp_path, answered, url_base="https://media.example.com/rec")
    assert_valid(doc)
    rec = doc["dialog"][0]
    assert "body" not in rec
    assert rec["url"] == f"https://media.example.com/rec/{doc['uuid']}.wav"
    vcon_file = tmp_path / "out" / f"{doc['uuid']}.vcon"
    assert main(["validate", str(vcon_file)]) == 0
    media = tmp_path / "out" / f"{doc['uuid']}.wav"
    assert media.stat().st_mode & 0o777 == 0o600
    data = bytearray(media.read_bytes())
    data[1000] ^= 1
    media.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["validate", str(vcon_file)]) == 1
    assert "content_hash: does not match" in capsys.readouterr().out


async def test_many_calls_at_once_each_yield_one_vcon(tmp_path):
    docs = await run_calls(tmp_path, *([answered, busy, transfer] * 4))
    assert len(docs) == 12 and len({d["uuid"] for d in docs}) == 12
    for doc in docs:
        assert_valid(doc)
    assert not list((tmp_path / "state" / "calls").iterdir())
    assert not list((tmp_path / "state" / "spool" / "outbox").iterdir())
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (tmp_path / "out").glob("*.vcon"))


async def test_recordings_left_open_are_closed_by_the_pipeline_at_call_end(tmp_path):
    from datetime import timedelta

    from capture import events as ev

    pipeline = make_pipeline(tmp_path)
    await pipeline.start()
    now = pipeline.now()
    pipeline.emit(ev.CallStarted(call_id="c", at=now, source="scripted"))
    rec = pipeline.open_recording("c", "s1", "alice", RATE)
    rec.write_at(0, pcm(1.0, 9), at=now)
    pipeline.emit(ev.CallEnded(call_id="c", at=now + timedelta(seconds=1)))
    assert await pipeline.drain(10)
    await pipeline.aclose()
    (doc,) = [json.loads(p.read_bytes()) for p in (tmp_path / "out").glob("*.vcon")]
    assert doc["dialog"][0]["type"] == "recording" and abs(doc["dialog"][0]["duration"] - 1.0) < 0.01
    # one party is still a list: vcon-server's ingest refuses a bare int
    assert doc["dialog"][0]["parties"] == [0]
    assert conserver_rejects(doc) is None


async def test_events_from_another_thread_are_taken(tmp_path):
    from capture import events as ev

    pipeline = make_pipeline(tmp_path)
    await pipeline.start()

    def from_thread():
        now = pipeline.now()
        pipeline.emit(ev.CallStarted(call_id="t", at=now, source="scripted"))
        pipeline.emit(ev.PartyJoined(call_id="t", at=now, party="a", tel="+15551230001"))
        pipeline.emit(ev.CallEnded(call_id="t", at=now, disposition=ev.Disposition.NO_ANSWER))

    await asyncio.to_thread(from_thread)
    await asyncio.sleep(0.05)
    assert await pipeline.drain(10)
    await pipeline.aclose()
    (doc,) = [json.loads(p.read_bytes()) for p in (tmp_path / "out").glob("*.vcon")]
    assert doc["dialog"][0]["disposition"] == "no-answer"


@pytest.mark.parametrize("layout", ["channels", "files"])
async def test_answered_call_whose_audio_is_lost_still_yields_a_valid_vcon(tmp_path, layout):
    from capture import events as ev

    pipeline = make_pipeline(tmp_path, layout=layout)
    await pipeline.start()
    now = pipeline.now()
    pipeline.emit(ev.CallStarted(call_id="m", at=now, source="scripted"))
    pipeline.emit(ev.PartyJoined(call_id="m", at=now, party="a", tel="+15551230001"))
    pipeline.emit(ev.CallAnswered(call_id="m", at=now))
    pipeline.emit(ev.MediaUnavailable(call_id="m", at=now, stream_id="mixmonitor", reason="file never appeared"))
    pipeline.emit(ev.CallEnded(call_id="m", at=now))
    assert await pipeline.drain(10)
    await pipeline.aclose()
    (doc,) = [json.loads(p.read_bytes()) for p in (tmp_path / "out").glob("*.vcon")]
    assert_valid(doc)
    assert doc["dialog"][0]["type"] == "recording-set" and doc["dialog"][0]["recordings"] == []
    notes = [a for a in doc["attachments"] if a["purpose"] == "capture_notes"][0]["body"]
    assert notes["missing_media"] == [{"stream": "mixmonitor", "reason": "file never appeared"}]

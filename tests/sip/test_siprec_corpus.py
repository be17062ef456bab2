"""Every replayable session of the corpus (real SRC offers, a few marked SYNTHETIC) through the
real CLI recorder, over UDP and over TCP: their INVITEs as published (Content-Length where the
SRC put it), RTP with a distinct signal on every active m-line in the codec the recorder took,
the metadata-only UPDATE or the activating re-INVITE where the session has one, BYE. Each vCon
must name the expected parties and carry each m-line's audio in its participant's channel
(correlation >= 0.9 with its own signal, <= 0.3 with the others'); see tests/sip/corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .corpus import sessions
from .corpus.replay import Outcome, Recorder, capture_notes, cdr_call_id, play, run

REPLAYABLE = sessions(replayable=True)

_RESULTS: dict[str, dict[str, Outcome]] = {}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Outcome]]:
    if not _RESULTS:
        for transport in ("udp", "tcp"):
            for outcome in run(REPLAYABLE, transport, tmp_path_factory.mktemp(f"corpus-{transport}")):
                _RESULTS.setdefault(outcome.session.name, {})[transport] = outcome
    return _RESULTS


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("name", [s.name for s in REPLAYABLE])
def test_corpus_session_recorded_right(replayed: dict[str, dict[str, Outcome]], name: str, transport: str) -> None:
    outcome = replayed[name][transport]
    assert outcome.status == 200, outcome.line()
    assert outcome.parties_ok, outcome.line()
    assert outcome.audio_ok, outcome.line()


@pytest.mark.parametrize(("name", "heard"), [("broadworks_2", [0, 1]), ("synthetic_metaswitch_mixed", [0, 1]),
                                             ("synthetic_broadworks_update", [0, 1, 2])])  # fmt: skip
def test_a_mixed_stream_is_one_channel_listing_everyone_heard(
    replayed: dict[str, dict[str, Outcome]], name: str, heard: list[int]
) -> None:
    """BroadWorks and Metaswitch mixed mode: one stream every participant sends, one channel."""
    for outcome in replayed[name].values():
        assert outcome.right, outcome.line()
        (dialog,) = [d for d in outcome.vcon["dialog"] if d["type"] == "recording"]
        assert sorted(dialog["parties"]) == heard


@pytest.mark.parametrize("name", ["oracle_4", "oracle_5"])
def test_a_party_sending_two_streams_at_once_gets_a_channel_for_each(
    replayed: dict[str, dict[str, Outcome]], name: str
) -> None:
    for outcome in replayed[name].values():
        assert outcome.right, outcome.line()
        (dialog,) = [d for d in outcome.vcon["dialog"] if d["type"] == "recording"]
        assert dialog["parties"] == [0, 0], "the first participant sends both active m-lines"


def _siprec_session(vcon: dict[str, Any]) -> dict[str, Any]:
    (att,) = [a for a in vcon["attachments"] if a.get("purpose") == "siprec-session"]
    return att["body"] if isinstance(att["body"], dict) else json.loads(att["body"])


def test_notes_explain_guesses_repairs_and_fallbacks(tmp_path: Path) -> None:
    by_name = {s.name: s for s in REPLAYABLE}
    chosen = [by_name[n] for n in ("opensips_1", "oracle_4", "broadworks_1", "avaya_1", "cisco_1")]
    recorder = Recorder.start(tmp_path)
    try:
        outcomes = [play(s, "udp", recorder.port) for s in chosen]
        vcons = {cdr_call_id(v): v for v in recorder.vcons(len(chosen))}
    finally:
        recorder.stop()
    notes = {o.session.name: capture_notes(vcons[o.call_id]).get("siprec_metadata", []) for o in outcomes}
    for vcon in vcons.values():
        assert "notes" not in _siprec_session(vcon), "the siprec-session attachment is data; notes are capture_notes"
    assert any("paired by order" in n for n in notes["opensips_1"]), notes["opensips_1"]
    assert any("not well-formed, repaired" in n for n in notes["oracle_4"]), notes["oracle_4"]
    assert any("names no participant; parties from the SIP headers" in n for n in notes["broadworks_1"])
    assert any("placeholder 'sip:ASBCE@asbce.com'" in n for n in notes["avaya_1"]), notes["avaya_1"]
    assert notes["cisco_1"] == []
    cisco = vcons[outcomes[-1].call_id]
    # The communication session's Session-ID (sipSessionID) is the vCon's: forks of one call agree.
    session = _siprec_session(cisco)
    assert session["communication_session_id"].startswith("sip-session:cd0f7093d62c5f0697098fd69a4aa57b")
    assert any(d.get("session_id") for d in cisco["dialog"] if d["type"] == "recording")
    oracle = vcons[outcomes[1].call_id]
    extensions = [a for a in oracle["attachments"] if a.get("purpose") == "siprec-extensions"]
    assert extensions and "<apkt:callingParty>true</apkt:callingParty>" in extensions[0]["body"]


def test_a_session_that_continues_another_is_tied_to_it(tmp_path: Path) -> None:
    """NetSapiens ends a recording session and opens another in the same group on a transfer."""
    by_name = {s.name: s for s in REPLAYABLE}
    recorder = Recorder.start(tmp_path)
    try:
        first = play(by_name["netsapiens_1-initial"], "tcp", recorder.port)
        second = play(by_name["netsapiens_1-post-transfer"], "tcp", recorder.port)
        vcons = {cdr_call_id(v): v for v in recorder.vcons(2)}
    finally:
        recorder.stop()
    assert first.status == second.status == 200
    assert "continues" not in _siprec_session(vcons[first.call_id])
    continues = _siprec_session(vcons[second.call_id])["continues"]
    assert continues["sip_call_id"] == first.call_id and continues["vcon_uuid"] == vcons[first.call_id]["uuid"]
    assert continues["shared"] == "group:58cc3154ca0bdd2b0efbf9a04139526e"

"""The parties of a recording session over its metadata documents: who joins, who leaves, who
replaces a placeholder, what is heard on each m-line, and the notes that explain it."""

from __future__ import annotations

from adapters.sip.siprec_parties import SessionParties

from .corpus import sessions

BY_NAME = {s.name: s for s in sessions()}


def test_placeholder_replaced_by_a_metadata_only_update() -> None:
    session = BY_NAME["synthetic_avaya_update"]
    parties = SessionParties()
    first = parties.read(session.metadata(), where="INVITE")
    assert [k for k, _ in first.joined] == ["1f0e2d3c4b5a69788796", "abcdef12345678901234"]
    assert first.notes == ["participant 'abcdef12345678901234' is the SRC's placeholder 'sip:ASBCE@asbce.com'"]
    assert parties.heard(["10", "20"]) == [("1f0e2d3c4b5a69788796",), ("abcdef12345678901234",)]
    update = parties.read((session.folder / "update.xml").read_bytes(), where="UPDATE")
    # Same party key, now with the real identity; nobody left.
    assert update.joined == [("abcdef12345678901234", {"sip": "sip:17205550102@198.51.100.32", "tel": "17205550102"})]
    assert update.left == []
    assert parties.heard(["10", "20"]) == [("1f0e2d3c4b5a69788796",), ("abcdef12345678901234",)]


def test_a_third_party_joins_the_mixed_stream() -> None:
    session = BY_NAME["synthetic_broadworks_update"]
    parties = SessionParties()
    parties.read(session.metadata(), where="INVITE")
    (mixed,) = parties.heard(["1"])
    assert len(mixed) == 2
    update = parties.read((session.folder / "update.xml").read_bytes(), where="UPDATE")
    assert [f for _, f in update.joined] == [{"sip": "sip:+15550002003@192.0.2.10", "tel": "+15550002003"}]
    assert len(parties.heard(["1"])[0]) == 3 and not parties.notes


def test_unusable_metadata_and_guesses_are_noted() -> None:
    parties = SessionParties()
    nothing = parties.read(BY_NAME["broadworks_1"].metadata(), where="INVITE")
    assert nothing.joined == [] and parties.metadata is None
    assert parties.heard(["1"]) == [()]
    broken = parties.read(b"<recording><participant", where="INVITE")
    assert broken.joined == [] and len(parties.notes) == 2
    guessed = SessionParties()
    guessed.read(BY_NAME["opensips_1"].metadata(), where="INVITE")
    assert [len(k) for k in guessed.heard(["1", "2"])] == [1, 1]
    assert any("paired by order" in n for n in guessed.notes)
    repaired = SessionParties()
    repaired.read(BY_NAME["oracle_4"].metadata(), where="INVITE")
    assert repaired.notes[0].startswith("rs-metadata in INVITE was not well-formed, repaired")
    assert repaired.communication_session_id == "avaya_ucid:00473539660FF5A7"


def test_a_participant_leaves() -> None:
    session = BY_NAME["cisco_1"]
    parties = SessionParties()
    parties.read(session.metadata(), where="INVITE")
    # CUBE's BYE: a partial document, every participant disassociated but this one first.
    bye = b"""<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>partial</datamode>
      <participantsessionassoc participant_id="kQNhKFdEEeeJ+ND/VsPGWA==" session_id="kQNhKFdEEeeJ9tD/VsPGWA==">
      <disassociate-time>2017-06-23T12:17:06Z</disassociate-time></participantsessionassoc></recording>"""
    changes = parties.read(bye, where="BYE")
    assert changes.left == [("kQNhKFdEEeeJ+ND/VsPGWA==", "left the recorded call (rs-metadata in BYE)")]

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from vconcheck import EXAMPLES, assert_valid, schema_errors

from capture.vcon.content import b64url, b64url_decode, content_hash, hash_matches, parse_rfc3339, rfc3339
from capture.vcon.model import Content, Dialog, Party, Vcon
from capture.vcon.syntax import LEGACY_KEYS
from capture.vcon.uuid8 import domain_bits, uuid8_domain_bits, uuid8_for
from capture.vcon.validate import form_of, problems

AT = datetime(2026, 11, 23, 12, 0, 0, 250_000, tzinfo=UTC)


def test_uuid8_is_version_8_with_time_and_domain_bits():
    value = uuid8_for("rec.example.com", AT)
    u = uuid.UUID(value)
    assert u.version == 8
    assert u.variant == uuid.RFC_4122
    assert u.int >> 80 == int(AT.timestamp() * 1000)
    assert uuid8_domain_bits(value) == domain_bits("rec.example.com")
    assert uuid8_domain_bits(value) != domain_bits("strolid.com")


def test_uuid8_orders_by_time_and_sequence_separates_same_tick():
    a = uuid8_for("d", AT)
    b = uuid8_for("d", AT, sequence=1)
    c = uuid8_for("d", AT + timedelta(milliseconds=1))
    assert len({a, b, c}) == 3
    assert a < c and b < c


def test_rfc3339_is_utc_with_z_and_no_zero_fraction():
    assert rfc3339(AT) == "2026-11-23T12:00:00.250Z"
    assert rfc3339(AT.replace(microsecond=0)) == "2026-11-23T12:00:00Z"
    plus2 = AT.astimezone(timezone(timedelta(hours=2)))
    assert rfc3339(plus2) == "2026-11-23T12:00:00.250Z"
    assert parse_rfc3339("2022-06-21T17:53:26.000+00:00") == datetime(2022, 6, 21, 17, 53, 26, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_rfc3339("yesterday")


def test_base64url_is_unpadded_and_round_trips():
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        text = b64url(data)
        assert "=" not in text and "+" not in text and "/" not in text
        assert b64url_decode(text) == data


def test_content_hash_matches_the_draft_format():
    value = content_hash(b"hello")
    assert value.startswith("sha512-") and len(value) == 7 + 86
    assert hash_matches(value, b"hello")
    assert hash_matches(["sha256-whatever", value], b"hello")
    assert not hash_matches(value, b"hellO")


def test_model_emits_version_and_no_legacy_fields():
    v = Vcon(
        uuid=uuid8_for("d", AT),
        created_at=AT,
        parties=[Party(tel="+15551234567"), Party(sip="sip:b@example.com")],
        dialog=[
            Dialog(
                type="recording",
                start=AT,
                duration=1.5,
                parties=[0, 1],
                mediatype="audio/x-wav",
                content=Content(body=b64url(b"RIFF"), encoding="base64url"),
            )
        ],
    )
    doc = assert_valid(v.to_dict())
    assert doc["vcon"] == "0.4.0"
    text = json.dumps(doc)
    for key in LEGACY_KEYS:
        assert f'"{key}"' not in text


@pytest.mark.parametrize("name", ["ab_call_ext_rec", "ab_call_ext_rec_analysis", "ab_call_int_rec"])
def test_wg_unsigned_examples_validate_once_uuid_and_created_at_are_added(name):
    doc = json.loads((EXAMPLES / f"{name}.vcon").read_text())
    assert any("created_at" in p for p in problems(doc))
    doc.setdefault("uuid", str(uuid.uuid4()))
    doc["created_at"] = "2022-06-21T17:53:26Z"
    assert problems(doc) == []
    assert schema_errors(doc) == []


@pytest.mark.parametrize(
    ("name", "form"),
    [("ab_call_ext_rec_signed", "signed"), ("ab_call_ext_rec_encrypted", "encrypted"), ("ab_call_int_rec", "unsigned")],
)
def test_form_detection_on_wg_examples(name, form):
    assert form_of(json.loads((EXAMPLES / f"{name}.vcon").read_text())) == form


def _base():
    return {
        "vcon": "0.4.0",
        "uuid": "01a20a70-582c-807b-8305-1e11b6ccbc27",
        "created_at": "2026-11-23T12:00:00Z",
        "parties": [{"tel": "+15551230001"}, {"tel": "+15551230002"}],
        "dialog": [
            {
                "type": "recording",
                "start": "2026-11-23T12:00:00Z",
                "parties": [0, 1],
                "mediatype": "audio/x-wav",
                "body": "UklGRg",
                "encoding": "base64url",
            }
        ],
    }


def _broken(path, value):
    doc = _base()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


INVALID = [
    (("uuid",), KeyError, "$.uuid: required"),
    (("created_at",), "2026-13-01", "$.created_at: not an RFC 3339"),
    (("vcon",), "0.0.1", "$.vcon: unknown syntax version"),
    (("dialog", 0, "parties"), [0, 2], "$.dialog[0].parties[1]: party index 2 out of range"),
    (("dialog", 0, "parties"), [[0, 5], 1], "$.dialog[0].parties[0][1]: party index 5 out of range"),
    (("dialog", 0, "url"), "https://x/a.wav", "$.dialog[0]: has both body and url"),
    (("dialog", 0, "encoding"), "base64", "$.dialog[0].encoding: must be one of"),
    (("dialog", 0, "body"), "not base64!", "$.dialog[0].body: is not valid base64url"),
    (("dialog", 0, "type"), "audio", "$.dialog[0].type: must be one of"),
    (("dialog", 0, "disposition"), "busy", "$.dialog[0].disposition: only allowed on incomplete"),
    (("dialog", 0, "mimetype"), "audio/wav", "$.dialog[0].mimetype: legacy field"),
    (("group",), [], "$.group: legacy field"),
    (("dialog", 0, "duration"), -1, "$.dialog[0].duration: must be a non-negative"),
]


@pytest.mark.parametrize(("path", "value", "expected"), INVALID)
def test_each_problem_is_reported_with_its_json_path(path, value, expected):
    found = problems(_broken(path, value))
    assert any(p.startswith(expected) for p in found), found


def test_referenced_content_needs_a_well_formed_hash():
    doc = _base()
    d = doc["dialog"][0]
    del d["body"], d["encoding"]
    d["url"] = "https://media.example.com/a.wav"
    assert any("content_hash: required with url" in p for p in problems(doc))
    d["content_hash"] = "sha256-abc"
    assert any("needs a sha512-" in p for p in problems(doc))
    d["content_hash"] = content_hash(b"x")
    assert problems(doc) == []
    d["url"] = "http://media.example.com/a.wav"
    assert any("must be an https URL" in p for p in problems(doc))


def test_incomplete_needs_disposition_and_no_media():
    doc = _base()
    doc["dialog"] = [{"type": "incomplete", "start": "2026-11-23T12:00:00Z", "parties": [0, 1]}]
    assert any("disposition: required on incomplete" in p for p in problems(doc))
    doc["dialog"][0]["disposition"] = "busy"
    assert problems(doc) == []
    doc["dialog"][0]["body"] = "x"
    assert any("body: not allowed on a incomplete" in p for p in problems(doc))


def test_transfer_and_recording_set_indices_are_checked():
    doc = _base()
    doc["dialog"].append(
        {
            "type": "transfer",
            "start": "2026-11-23T12:00:00Z",
            "transferee": 0,
            "transferor": 1,
            "transfer_target": 3,
            "original": 0,
            "target_dialog": 7,
        }
    )
    doc["dialog"].append({"type": "recording-set", "start": "2026-11-23T12:00:00Z", "recordings": [0, 1]})
    found = problems(doc)
    assert any(p.startswith("$.dialog[1].transfer_target: party index 3 out of range") for p in found)
    assert any(p.startswith("$.dialog[1].target_dialog: dialog index 7 out of range") for p in found)
    assert any(p.startswith("$.dialog[2].recordings[1]: must point at a recording dialog") for p in found)


def test_attachment_needs_start_party_dialog():
    doc = _base()
    doc["attachments"] = [{"purpose": "cdr", "body": {}, "encoding": "json"}]
    found = problems(doc)
    for key in ("start", "party", "dialog"):
        assert f"$.attachments[0].{key}: required" in found

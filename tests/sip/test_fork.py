"""A PBX's forked copy of a call (issue 17): sipp sends exactly what the recipes make FreeSWITCH
and Asterisk send to the real CLI recorder, and each vCon must name the caller and the callee
right (never the recorder's own address, never the PBX's gateway on the caller), list both
parties on the one mixed stream, say who ended the call only when the PBX said so, carry the
PBX's call id, and turn the PBX's reports of unanswered calls into ``incomplete`` vCons.

FreeSWITCH: the messages in tests/sip/fork/ were captured from a real FreeSWITCH 1.10.12 running
deploy/freeswitch (see its README); only sipp's own values are substituted. Asterisk: written from
deploy/asterisk/extensions-fork.conf (not captured: no Asterisk here), raw values as PJSIP sends them.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audiocheck import voice_like, window_ncc

from adapters.sip.fork import Fork, read_fork
from adapters.sip.message import parse_message

from .harness import Recorder, cdr, g711_frames, run_sipp, write_rtp_pcap

FORK = Path(__file__).with_name("fork")
SECONDS = 2.0


# -- turning a captured message into a sipp <send> -------------------------------------------


def sipp_text(raw: str, *, first: str, to: str, via_branch: str = "[branch]") -> str:
    """A captured message with sipp's values put where they belong (and nothing else touched)."""
    head, _, body = raw.partition("\r\n\r\n")
    lines = [first]
    for line in head.split("\r\n")[1:]:
        name = line.split(":", 1)[0].lower()
        if name == "via":
            line = f"Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch={via_branch}"
        elif name == "call-id":
            line = "Call-ID: [call_id]"
        elif name == "to":
            line = f"To: {to}"
        elif name == "contact":
            line = re.sub(r"@127\.0\.0\.1:5080", "@[local_ip]:[local_port]", line)
        elif name == "content-length" and body:
            line = "Content-Length: [len]"  # (sipp drops the headers after a [len] of 0: a BYE keeps its literal 0)
        lines.append(line)
    body = re.sub(r"(?m)^c=IN IP4 127\.0\.0\.1", "c=IN IP4 [media_ip]", body)
    body = re.sub(r"(?m)^m=audio [0-9]+", "m=audio [media_port]", body)
    return "\n".join(lines) + "\n\n" + body.replace("\r\n", "\n")


def header(raw: str, name: str) -> str:
    return next(
        line.split(":", 1)[1].strip() for line in raw.split("\r\n") if line.lower().startswith(name.lower() + ":")
    )


def scenario(invite: str, *, bye: str | None, pcap: Path | None, report: bool = False) -> str:
    """INVITE (as captured) -> 200 -> ACK -> audio -> BYE (as captured); a report: INVITE -> 603 -> ACK."""
    uri = invite.split("\r\n", 1)[0].split()[1]
    user = uri.split(":", 1)[1].split("@", 1)[0]
    target = f"sip:{user}@[remote_ip]:[remote_port]"
    branch = "z9hG4bK[pid]fork[call_number]" if report else "[branch]"
    out = ['<?xml version="1.0" encoding="UTF-8" ?>\n<scenario name="fork">\n']
    text = sipp_text(invite, first=f"INVITE {target} SIP/2.0", to=f"<{target}>", via_branch=branch)
    out.append(f'  <send retrans="500"><![CDATA[\n{text}\n  ]]></send>\n')
    out.append('  <recv response="100" optional="true"/>\n')
    cseq = int(header(invite, "CSeq").split()[0])
    ack_uri = target if report else "sip:recorder@[remote_ip]:[remote_port];transport=udp"
    ack = (f"ACK {ack_uri} SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch={branch}\n"
           f"Max-Forwards: 70\nFrom: {header(invite, 'From')}\nTo: <{target}>[peer_tag_param]\nCall-ID: [call_id]\n"
           f"CSeq: {cseq} ACK\nContent-Length: 0\n")  # fmt: skip
    if report:
        out.append(f'  <recv response="603"/>\n  <send><![CDATA[\n{ack}\n  ]]></send>\n')
        return "".join(out) + "</scenario>\n"
    out.append(f'  <recv response="200" rtd="true"/>\n  <send><![CDATA[\n{ack}\n  ]]></send>\n')
    if pcap is not None:
        out.append(f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n')
    out.append(f'  <pause milliseconds="{int((SECONDS + 0.6) * 1000)}"/>\n')
    assert bye is not None
    # The captured BYE's own headers (Reason, X-Vcon-Ended-By, ...); From/To/Call-ID are this dialog's.
    text = sipp_text(bye, first="BYE sip:recorder@[remote_ip]:[remote_port];transport=udp SIP/2.0",
                     to=f"<{target}>[peer_tag_param]")  # fmt: skip
    text = re.sub(r"(?m)^From: .*$", lambda _: f"From: {header(invite, 'From')}", text)
    text = re.sub(r"(?m)^CSeq: .*$", f"CSeq: {cseq + 1} BYE", text)
    out.append(f'  <send retrans="500"><![CDATA[\n{text}\n  ]]></send>\n  <recv response="200" crlf="true"/>\n')
    return "".join(out) + "</scenario>\n"


# -- what the recipes make the PBX send -------------------------------------------------------


def fs(name: str) -> str:
    return (FORK / name).read_bytes().decode("utf-8")


def asterisk_invite(caller: str, callee_name: str | None, *, linkedid: str, exten: str = "1001") -> str:
    """The copy Asterisk's [vcon-fork] originates (Originate PJSIP/${EXTEN}@vcon-recorder with the
    predial handler's headers): From/PAI the caller's CALLERID, values raw, no X-Vcon-Encoding."""
    quoted = caller.replace("\\", "\\\\").replace('"', '\\"')
    lines = [
        f"INVITE sip:{exten}@127.0.0.1:5070 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKPjast",
        f'From: "{quoted}" <sip:2000@pbx.example.com>;tag=ast-{linkedid}',
        f"To: <sip:{exten}@127.0.0.1:5070>",
        "Contact: <sip:asterisk@127.0.0.1:5080>",
        f"Call-ID: ast-{linkedid}",
        "CSeq: 7811 INVITE",
        "Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, MESSAGE, REFER",
        "Supported: 100rel, timer, replaces, norefersub, histinfo",
        f'P-Asserted-Identity: "{quoted}" <sip:2000@pbx.example.com>',
        "Max-Forwards: 70",
        "User-Agent: Asterisk PBX 20.11.0",
        "X-Vcon-Source-Channel: PJSIP/alice-00000012",
        f"X-Vcon-Linkedid: {linkedid}",
        "X-Vcon-Callee-Channel: PJSIP/bob-00000013",
        f"X-Vcon-Callee-Num: {exten}",
        *([f"X-Vcon-Callee-Name: {callee_name}"] if callee_name else []),
        "Content-Type: application/sdp",
        "Content-Length: 0",
    ]
    body = ("v=0\r\no=- 1234 1234 IN IP4 127.0.0.1\r\ns=Asterisk\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 10000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=maxptime:140\r\n"
            "a=sendrecv\r\n")  # fmt: skip
    return "\r\n".join(lines) + "\r\n\r\n" + body


ASTERISK_BYE = ("BYE sip:recorder@127.0.0.1:5070;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060\r\n"
                "From: x\r\nTo: x\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nReason: Q.850;cause=16\r\n"
                "Max-Forwards: 70\r\nUser-Agent: Asterisk PBX 20.11.0\r\nContent-Length: 0\r\n\r\n")  # fmt: skip


def answered_report() -> str:
    """What the recipe sends when the copy of an answered call cannot be made (the recorder was
    down): the Lua's header list with ``Disposition: answered`` (derived from the captured busy report)."""
    raw = fs("fs-notify-invite-busy.sip")
    raw = re.sub(r"X-Vcon-Disposition: busy\r\nX-Vcon-Hangup-Cause: USER_BUSY\r\nX-Vcon-Ended-By: callee\r\n"
                 r"X-Vcon-Created: [^\r]*\r\nX-Vcon-Ended: [^\r]*\r\n",
                 "X-Vcon-Callee-Num: +15557654321\r\nX-Vcon-Disposition: answered\r\n"
                 "X-Vcon-Hangup-Cause: GATEWAY_DOWN\r\n",
                 raw)  # fmt: skip
    return raw.replace("80f35d1b-f2c5-4203-b35e-ed0fde5d397c", "5a5a5a5a-0000-4000-8000-000000000001")


# -- the cases --------------------------------------------------------------------------------

FS_NAMES = {
    "fs-copy-invite-doe-jane.sip": ("Doe, Jane", "Doe Jane"),
    "fs-copy-invite-pat-obrien.sip": ("Pat O'Brien", "Pat O Brien"),
    "fs-copy-invite-obrien-pat.sip": ("O'Brien, Pat", "O Brien Pat"),
    "fs-copy-invite-quotes-pipe.sip": ('"Big" Tom | Sales', "Big Tom Sales"),
    "fs-copy-invite-non-ascii.sip": ("José Müller-Ødegård", "José Müller-Ødegård"),
    "fs-copy-invite-dollar.sip": ("Ann 100% %{uuid} {x}", "Ann 100 uuid x"),
}
AST_NAMES = [
    ("Doe, Jane", "Front Desk, Sales"),
    ("O'Brien, Pat", "Bob O'Hara"),
    ('"Big" Tom | Sales', "Zoë | Support"),
    ("José Müller-Ødegård", "Ann 100% off"),
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """What a PBX copy carries: both voices in one stream (caller and callee mixed)."""
    tmp = tmp_path_factory.mktemp("mixed")
    both = 0.5 * (voice_like(SECONDS, 8000, seed=1) + voice_like(SECONDS, 8000, seed=2))
    payloads, reference = g711_frames(both, 0)
    return write_rtp_pcap(tmp / "mixed.pcap", payloads, 0), reference


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, mixed: tuple[Path, np.ndarray]) -> dict[str, Any]:
    """Every case through one recorder (sipp runs side by side): vCons by the PBX's call id."""
    tmp = tmp_path_factory.mktemp("fork")
    pcap, _ = mixed
    cases: dict[str, str] = {}
    for name in FS_NAMES:
        bye = "fs-copy-bye-caller.sip"
        cases[name] = scenario(fs(name), bye=fs(bye), pcap=pcap)
    cases["fs-copy-invite-e164.sip"] = scenario(fs("fs-copy-invite-e164.sip"), bye=fs("fs-copy-bye-callee.sip"),
                                                pcap=pcap)  # fmt: skip
    for name in ("fs-notify-invite-busy.sip", "fs-notify-invite-cancel.sip"):
        cases[name] = scenario(fs(name), bye=None, pcap=None, report=True)
    cases["answered-report"] = scenario(answered_report(), bye=None, pcap=None, report=True)
    for i, (caller, callee) in enumerate(AST_NAMES):
        cases[f"asterisk-{i}"] = scenario(asterisk_invite(caller, callee, linkedid=f"1764405762.{i}"),
                                          bye=ASTERISK_BYE, pcap=pcap)  # fmt: skip
    recorder = Recorder.start(tmp)

    def run(item: tuple[str, str]) -> tuple[str, int, bytes]:
        name, text = item
        where = tmp / re.sub(r"\W", "_", name)
        where.mkdir()
        result = run_sipp(where, text, recorder, timeout=30)
        return name, result.returncode, result.stdout[-1500:] + result.stderr[-1500:]

    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(run, cases.items()))
        vcons = recorder.vcons(len(cases), timeout=30)
    finally:
        log = recorder.stop()
    failed = [(name, out) for name, code, out in results if code != 0]
    assert not failed, failed
    assert "Traceback" not in log
    return {"by_pbx_id": {cdr(v).get("pbx_call_id"): v for v in vcons}, "port": recorder.port, "log": log}


def pbx_id(raw: str) -> str:
    return header(raw, "X-Vcon-Call-Uuid")


def recording(vcon: dict[str, Any]) -> dict[str, Any]:
    (dialog,) = [d for d in vcon["dialog"] if d["type"] == "recording"]
    return dialog


def check_mixed_audio(vcon: dict[str, Any], reference: np.ndarray) -> None:
    from .harness import recording_channels

    dialog = recording(vcon)
    assert dialog["parties"] == [0, 1], "the one mixed stream holds both parties' voices"
    channels, rate, _ = recording_channels(vcon)
    assert rate == 8000 and len(channels) == 1
    (samples,) = channels.values()
    assert min(window_ncc(reference, samples, 8000)) >= 0.9


def no_recorder_address(vcon: dict[str, Any], port: int) -> None:
    for party in vcon["parties"]:
        assert f":{port}" not in party.get("sip", ""), party
        assert "gw+vcon-recorder" not in party.get("sip_contact", "") and "FreeSWITCH" not in party.get(
            "sip_user_agent", ""
        ), party


@pytest.mark.parametrize("name", sorted(FS_NAMES))
def test_a_freeswitch_copy_names_both_parties_exactly(
    recorded: dict[str, Any], mixed: tuple[Path, np.ndarray], name: str
) -> None:
    vcon = recorded["by_pbx_id"][pbx_id(fs(name))]
    caller, callee = vcon["parties"]
    exact, as_sent = FS_NAMES[name]
    assert caller["name"] == exact and caller["sip_display_name"] == as_sent
    assert caller["sip"] == "sip:2000@127.0.0.1", "the PBX's address for the caller"
    if name == "fs-copy-invite-quotes-pipe.sip":  # the voicemail answered (FreeSWITCH could not place the B leg)
        assert callee == {"sip": "sip:1001@127.0.0.1"}, "who was dialled; no name: nobody said one"
    else:
        assert callee == {"sip": "sip:1001@127.0.0.1", "name": "Bob Callee"}
    no_recorder_address(vcon, recorded["port"])
    check_mixed_audio(vcon, mixed[1])
    record = cdr(vcon)
    assert (record["pbx"], record["pbx_call_id"], record["dialled"]) == ("freeswitch", pbx_id(fs(name)), "1001")
    assert (record["ended_by"], record["pbx_ended_by"]) == ("caller", "caller")
    assert record["pbx_source_channel"] == "sofia/external/2000@127.0.0.1:5062"


def test_a_freeswitch_copy_in_e164_ended_by_the_callee(
    recorded: dict[str, Any], mixed: tuple[Path, np.ndarray]
) -> None:
    raw = fs("fs-copy-invite-e164.sip")
    vcon = recorded["by_pbx_id"][pbx_id(raw)]
    caller, callee = vcon["parties"]
    assert (caller["tel"], caller["name"]) == ("+15551230000", "Alice Caller")
    assert callee == {"sip": "sip:1001@127.0.0.1", "name": "Bob Callee"}, "the phone that answered"
    check_mixed_audio(vcon, mixed[1])
    record = cdr(vcon)
    assert record["dialled"] == "+15557654321" and record["ended_by"] == "callee"
    assert record["pbx_hangup_cause"] == "NORMAL_CLEARING" and record["hangup_cause"] == "NORMAL_CLEARING"
    assert record["pbx_callee_channel"] == "sofia/external/%2B15557654321@127.0.0.1:5090", "decoded once, exactly"


@pytest.mark.parametrize(("name", "disposition", "ended_by", "start", "end", "status"), [
    ("fs-notify-invite-busy.sip", "busy", "callee", "2026-11-29T08:42:42.024", "2026-11-29T08:42:42.044", None),
    ("fs-notify-invite-cancel.sip", "hung-up", "caller", "2026-11-29T08:42:44.704", "2026-11-29T08:42:46.764", "487"),
])  # fmt: skip
def test_a_report_of_an_unanswered_call_is_an_incomplete_vcon(
    recorded: dict[str, Any], name: str, disposition: str, ended_by: str, start: str, end: str, status: str | None
) -> None:
    vcon = recorded["by_pbx_id"][pbx_id(fs(name))]
    caller, callee = vcon["parties"]
    assert (caller["tel"], caller["name"]) == ("+15551230000", "Alice Caller")
    assert callee == {"tel": "+15557654321"}, "who was dialled"
    (dialog,) = vcon["dialog"]
    assert dialog["type"] == "incomplete" and dialog["disposition"] == disposition
    assert dialog["start"].startswith(start) and dialog["parties"] == [0, 1]
    record = cdr(vcon)
    assert record["end"].startswith(end) and record["ended_by"] == ended_by and record["notification"] is True
    assert record["final_status"] == 603 and record["rtp"] == {}, "answered 603 at once, no RTP port bound"
    assert record.get("pbx_sip_status") == status
    assert [h["event"] for h in dialog.get("party_history", [])] == ["join", "join"]


def test_a_report_of_an_answered_call_whose_copy_failed_says_why_it_has_no_audio(recorded: dict[str, Any]) -> None:
    vcon = recorded["by_pbx_id"]["5a5a5a5a-0000-4000-8000-000000000001"]
    assert [d["type"] for d in vcon["dialog"]] == ["recording-set"] and "disposition" not in vcon["dialog"][0]
    record = cdr(vcon)
    assert record["disposition"] == "answered" and record["pbx_hangup_cause"] == "GATEWAY_DOWN"
    assert record.get("ended_by") is None, "the report does not say: nobody is guessed"
    notes = next(a["body"] for a in vcon["attachments"] if a["purpose"] == "capture_notes")
    assert "the PBX could not copy the audio: GATEWAY_DOWN" in str(notes)


@pytest.mark.parametrize("index", range(len(AST_NAMES)))
def test_an_asterisk_copy_takes_raw_values_and_guesses_no_ended_by(
    recorded: dict[str, Any], mixed: tuple[Path, np.ndarray], index: int
) -> None:
    caller_name, callee_name = AST_NAMES[index]
    vcon = recorded["by_pbx_id"][f"1764405762.{index}"]
    caller, callee = vcon["parties"]
    assert caller["name"] == caller_name and caller["sip"] == "sip:2000@pbx.example.com"
    assert callee == {"sip": "sip:1001@pbx.example.com", "name": callee_name}, "never percent-decoded, never split"
    no_recorder_address(vcon, recorded["port"])
    check_mixed_audio(vcon, mixed[1])
    record = cdr(vcon)
    assert (record["pbx"], record["pbx_callee_channel"]) == ("asterisk", "PJSIP/bob-00000013")
    assert record.get("ended_by") is None, "ChanSpy's BYE does not say who hung up: unknown, not the caller"


# -- the headers, in-process ------------------------------------------------------------------


def fork_of(*headers: str) -> Fork | None:
    data = ("INVITE sip:1001@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
            'From: "X" <sip:2000@pbx.example.com>;tag=1\r\nTo: <sip:1001@10.0.0.5:5060>\r\nCall-ID: c\r\n'
            "CSeq: 1 INVITE\r\n" + "".join(h + "\r\n" for h in headers) + "Content-Length: 0\r\n\r\n")  # fmt: skip
    return read_fork(parse_message(data.encode()))


def test_header_values_are_decoded_as_the_encoding_says_and_bounded() -> None:
    fork = fork_of("X-Vcon-Encoding: PERCENT", "X-Vcon-Call-Uuid: u1", "X-Vcon-Caller-Name: 50%+off%2C%zz%0A")
    assert fork is not None and fork.pbx == "freeswitch"
    assert fork.name("caller-name") == "50%+off,%zz", "'+' stays, a lone % stays, controls go"
    raw = fork_of("X-Vcon-Linkedid: 1.2", "X-Vcon-Callee-Name: Doe, Jane %2C")
    assert raw is not None and raw.pbx == "asterisk" and raw.name("callee-name") == "Doe, Jane %2C"
    odd = fork_of("X-Vcon-Encoding: base64", "X-Vcon-Call-Uuid: u2", f"X-Vcon-Caller-Name: {'a' * 300}")
    assert odd is not None and len(odd.name("caller-name") or "") == 256
    assert len(odd.notes) == 2, odd.notes
    assert fork_of("X-Vcon-Caller-Name: nobody") is None, "no PBX call id: not a copy"


def test_the_callee_falls_back_in_order_and_never_takes_the_recorders_host() -> None:
    own = frozenset({"10.0.0.5"})
    invite = parse_message(
        b"INVITE sip:1001@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        b'From: "X" <sip:2000@pbx.example.com>;tag=1\r\nTo: <sip:1001@10.0.0.5:5060>\r\n'
        b"Call-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"X-Vcon-Linkedid: 9.9\r\nDiversion: <sip:+15550001111@pbx.example.com>;reason=no-answer\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    fork = read_fork(invite)
    assert fork is not None
    assert fork.callee(invite, own) == {"tel": "+15550001111", "sip": "sip:+15550001111@pbx.example.com"}
    bare = parse_message(bytes(invite.to_bytes()).replace(b"Diversion", b"X-Other"))
    fork = read_fork(bare)
    assert fork is not None and fork.callee(bare, own) == {"tel": "1001"}, "the Request-URI's number, not its host"
    assert fork.domain(bare) == "pbx.example.com"

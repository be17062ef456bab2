"""SIPREC (RFC 7866): sipp as the SRC, two labelled streams, participants from rs-metadata."""

from __future__ import annotations

import sys
from pathlib import Path

from audiocheck import best_lag, level_db, voice_like, window_ncc

from .harness import Recorder, cdr, g711_frames, recording_channels, run_sipp, write_rtp_pcap
from .scenarios import ack, bye, invite, pause, play, scenario

RTPSEND = Path(__file__).with_name("rtpsend.py")

METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <group group_id="g1"><associate-time>2026-01-01T00:00:00Z</associate-time></group>
  <session session_id="s1"><group-ref>g1</group-ref></session>
  <participant participant_id="pAlice">
    <nameID aor="sip:+15551230000@pbx.example"><name>Alice Agent</name></nameID>
  </participant>
  <participant participant_id="pBob">
    <nameID aor="sip:bob@customer.example"><name>Bob Customer</name></nameID>
  </participant>
  <stream stream_id="sA" session_id="s1"><label>10</label></stream>
  <stream stream_id="sB" session_id="s1"><label>20</label></stream>
  <participantstreamassoc participant_id="pAlice"><send>sA</send><recv>sB</recv></participantstreamassoc>
  <participantstreamassoc participant_id="pBob"><send>sB</send><recv>sA</recv></participantstreamassoc>
</recording>"""

# Bob's stream (label 20) comes first in the SDP: mapping must follow labels, not order.
BODY = f"""--boundary1
Content-Type: application/sdp

v=0
o=src 1 1 IN IP4 [media_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port+2] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:20
a=sendonly
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:10
a=sendonly

--boundary1
Content-Type: application/rs-metadata+xml
Content-Disposition: recording-session

{METADATA}
--boundary1--"""

SIPREC_HEADERS = "      Require: siprec\n      Contact: <sip:src@[local_ip]:[local_port]>;+sip.src\n"


def test_siprec_over_tcp_two_streams_mapped_by_label(tmp_path: Path) -> None:
    alice_src, bob_src = voice_like(4.0, 8000, seed=1), voice_like(4.0, 8000, seed=2)
    alice_payloads, alice_ref = g711_frames(alice_src, 0)
    bob_payloads, bob_ref = g711_frames(bob_src, 0)
    (tmp_path / "bob.ulaw").write_bytes(b"".join(bob_payloads))
    # sipp plays its pcap to the first answered m= line (Bob's); rtpsend sends Alice to the second.
    # The BYE waits 1.5 s after Bob's audio: rtpsend is a new Python process and may start late.
    pcap = write_rtp_pcap(tmp_path / "bob.pcap", bob_payloads, 0)
    (tmp_path / "alice.ulaw").write_bytes(b"".join(alice_payloads))
    start_alice = f"""  <nop><action>
    <exec command="{sys.executable} {RTPSEND} {tmp_path / "alice.ulaw"} 127.0.0.1 [$p2] 0 &amp;"/>
  </action></nop>
"""
    answer = invite(BODY, content_type="multipart/mixed;boundary=boundary1", extra=SIPREC_HEADERS).replace(
        '<recv response="200" rtd="true"/>',
        '<recv response="200" rtd="true"><action><ereg regexp="m=audio ([0-9]+).*m=audio ([0-9]+)" '
        'search_in="body" check_it="true" assign_to="all,p1,p2"/></action></recv>\n'
        '  <Reference variables="all,p1"/>',
    )
    recorder = Recorder.start(tmp_path)
    try:
        result = run_sipp(tmp_path, scenario("siprec", answer, ack(), start_alice, play(str(pcap), 4.5),
                                             pause(1.5), bye(2)), recorder, transport="t1")  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:]
        (vcon,) = recorder.vcons(1)
    finally:
        recorder.stop()
    names = [p.get("name") for p in vcon["parties"]]
    assert names == ["Alice Agent", "Bob Customer"]
    assert vcon["parties"][1]["sip"] == "sip:bob@customer.example"
    channels, rate, dialog = recording_channels(vcon)
    assert sorted(channels) == [0, 1]
    for party, ref, other in ((0, alice_ref, bob_ref), (1, bob_ref, alice_ref)):
        scores = window_ncc(ref, channels[party], 8000)
        assert min(scores) >= 0.9, (party, scores)
        assert max(window_ncc(other, channels[party], 8000)) < 0.3
        # Cross-talk: what is left after removing the right source is at least 20 dB below the channel.
        lag = best_lag(ref, channels[party], 8000)
        aligned = channels[party][lag : lag + len(ref)]
        assert level_db(aligned) - level_db(aligned - ref[: len(aligned)]) >= 20
    assert cdr(vcon)["siprec"] is True and cdr(vcon)["transport"] == "tcp"
    kinds = {a.get("purpose"): a.get("mediatype") for a in vcon["attachments"]}
    assert kinds["rs-metadata"] == "application/rs-metadata+xml" and kinds["sip-invite"] == "message/sip"

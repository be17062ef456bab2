"""sipp scenarios, built from small pieces so each test says what its call does."""

from __future__ import annotations

HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n'
TAIL = "</scenario>\n"

DIALOG_HEADERS = """      From: "Alice Caller" <sip:+15551230000@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:rec@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      Contact: <sip:alice@[local_ip]:[local_port]>
      Max-Forwards: 70"""


def sdp(payload_type: int, direction: str = "sendrecv", name: str = "PCMU") -> str:
    return f"""v=0
o=alice 1 1 IN IP4 [media_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP {payload_type} 101
a=rtpmap:{payload_type} {name}/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a={direction}"""


def invite(body: str, *, cseq: int = 1, extra: str = "", content_type: str = "application/sdp",
           expect: str = "200", in_dialog: bool = False, branch: str = "[branch]") -> str:  # fmt: skip
    to_tag = "[peer_tag_param]" if in_dialog else ""
    recv = "" if in_dialog else '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
    recv += '  <recv response="100" optional="true"/>\n' if in_dialog else ""
    return f"""  <send retrans="500"><![CDATA[
      INVITE sip:rec@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}
{DIALOG_HEADERS.format(to_tag=to_tag)}
      CSeq: {cseq} INVITE
      Session-ID: 0123456789abcdef0123456789abcdef
      P-Asserted-Identity: "Alice A." <sip:+15551230000@pbx.example>
{extra}      Content-Type: {content_type}
      Content-Length: [len]

{body}
  ]]></send>
{recv}  <recv response="{expect}" rtd="true"/>
"""


def ack(cseq: int = 1) -> str:
    return f"""  <send><![CDATA[
      ACK sip:rec@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{DIALOG_HEADERS.format(to_tag="[peer_tag_param]")}
      CSeq: {cseq} ACK
      Content-Length: 0

  ]]></send>
"""


def play(pcap: str, seconds: float) -> str:
    return f"""  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{int(seconds * 1000)}"/>
"""


def pause(seconds: float) -> str:
    return f'  <pause milliseconds="{int(seconds * 1000)}"/>\n'


def bye(cseq: int, reason: str = "") -> str:
    return f"""  <send retrans="500"><![CDATA[
      BYE sip:rec@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{DIALOG_HEADERS.format(to_tag="[peer_tag_param]")}
      CSeq: {cseq} BYE
{reason}      Content-Length: 0

  ]]></send>
  <recv response="200" crlf="true"/>
"""


FIXED_BRANCH = "z9hG4bK[pid]inv[call_number]"


def cancel() -> str:
    return """  <send><![CDATA[
      CANCEL sip:rec@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK[pid]inv[call_number]
      From: "Alice Caller" <sip:+15551230000@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:rec@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
"""


def await_bye() -> str:
    return """  <recv request="BYE"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
"""


def scenario(name: str, *parts: str) -> str:
    return HEAD.format(name=name) + "".join(parts) + TAIL

"""Which source address a received RTP stream takes its packets from: the field's "strict
source" and latching, sans-IO.

Anyone who can reach a recorder's RTP port can send it packets; without a source check a
second sender with the stream's SSRC, sequence numbers and timestamps a little ahead of the
real ones replaces the caller's audio in the recording. :class:`SourcePolicy` decides, per
datagram, from the address it came from:

- ``strict`` (the default): the signalling says where the packets come from (the SDP ``c=``
  address and ``m=`` port, :meth:`SourcePolicy.expect`), and only that host is believed. A
  packet from the exact address and port always takes the stream. Another port of the same
  host is taken when the stream has no sender yet (peers that send from another port than
  they receive on) or when the current sender has been quiet for ``relatch_s`` (a media
  server switched without a re-INVITE: same peer, new port and SSRC; the call goes on,
  with up to ``relatch_s`` of its audio lost at the switch).
  When the SDP address cannot be where packets come from (none, ``0.0.0.0``, a host name,
  a private address from a peer that signals from a public one: NAT; any address but
  loopback while this side listens on loopback) the stream latches instead, as below.
- ``latch``: the first source that sends valid media (RTP of an agreed payload type that
  passes SRTP authentication when keyed) takes the stream; another source only once the
  current one has been quiet for ``relatch_s``.
- ``any``: every source is taken (the behaviour before this policy; for odd networks).

In every mode the first source taken after each (re)negotiation may take the stream back at
any time, so a sender that fell quiet (DTX, a stall) and resumes wins over whoever used the
pause. Everything else is refused: counted by the receiver and logged at most once a minute
per stream. A re-INVITE that moves the source (:meth:`expect` with a new address) takes
effect at once; one that puts the call on hold (``0.0.0.0``) keeps the last usable one.

Per datagram the hot path is one tuple comparison with the current source; a refused one
allocates nothing.
"""

from __future__ import annotations

import ipaddress
from enum import IntEnum

MODES = ("strict", "latch", "any")
_NAT_RANGES = "10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 169.254.0.0/16 fc00::/7 fe80::/10"
PRIVATE = tuple(ipaddress.ip_network(net) for net in _NAT_RANGES.split())
"Addresses behind a NAT: RFC 1918, shared (RFC 6598), link-local, unique local."
Address = tuple[str, int]


class Verdict(IntEnum):
    REFUSE = 0
    TAKE = 1
    "Take the stream if the packet is valid media (then :meth:`SourcePolicy.taken`)."


class SourcePolicy:
    """The source check of one received RTP stream."""

    def __init__(self, mode: str = "strict", *, relatch_s: float = 0.5) -> None:
        self.mode = "strict"
        self.relatch_s = relatch_s
        self.current: tuple[str, int] | None = None
        "The source packets are taken from now (as the socket reported it)."
        self.first: tuple[str, int] | None = None
        """The first source taken since the signalled source last changed (or the signalled source
        itself once it sent): it may always take the stream back."""
        self.signalled: Address | None = None
        "The SDP source when this side believes it (strict mode), else None: latching."
        self.ssrc: int | None = None
        "SSRC of the current source's packets when it was taken."
        self.moves = 0
        "How often the stream moved to another source."
        self._offered: Address | None = None
        self._peer_host: str | None = None
        self._local_host: str | None = None
        self.configure(mode=mode, relatch_s=relatch_s)

    def expect(self, address: Address | None) -> None:
        """The SDP's word on where the packets come from; None: it does not say (no or null
        address). A null address on a stream that had one is hold, not a move: the old one stays."""
        if address is None:
            if self._offered is None:
                self._judge()
            return
        if address != self._offered:
            self._offered = address
            self.first = None
            self._judge()

    def configure(self, *, mode: str | None = None, relatch_s: float | None = None, peer_host: str | None = None,
                  local_host: str | None = None) -> None:  # fmt: skip
        """The operator's mode and quiet time; where the signalling came from and the address
        this side receives on, which an SDP address is judged against (a private address
        from a public peer is NAT). What is not given stays."""
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"RTP source mode must be one of {', '.join(MODES)}, not {mode!r}")
            self.mode = mode
        if relatch_s is not None:
            self.relatch_s = relatch_s
        self._peer_host = peer_host or self._peer_host
        self._local_host = local_host or self._local_host
        self._judge()

    def check(self, addr: tuple[str, int], now: float, last: float | None) -> Verdict:
        """May a packet from ``addr`` (not the current source) arriving at ``now`` take the
        stream? ``last``: when the current source last sent media."""
        if self.mode == "any" or addr == self.first:
            return Verdict.TAKE
        signalled = self.signalled
        if signalled is not None:
            host = _host(addr[0])
            if host != signalled[0]:
                return Verdict.REFUSE
            if addr[1] == signalled[1]:
                return Verdict.TAKE
        if self.current is None or last is None or now - last >= self.relatch_s:
            return Verdict.TAKE
        return Verdict.REFUSE

    def taken(self, addr: tuple[str, int], ssrc: int) -> bool:
        """A valid packet from ``addr`` took the stream; True if it moved from another source."""
        moved = self.current is not None
        self.current, self.ssrc = addr, ssrc
        self.moves += moved
        signalled = self.signalled
        if self.first is None or (signalled is not None and addr[1] == signalled[1] and _host(addr[0]) == signalled[0]):
            self.first = addr  # the SDP's own address and port outranks whatever sent before it
        return moved

    # -- internals --------------------------------------------------------------------

    def _judge(self) -> None:
        offered = self._offered
        if self.mode != "strict" or offered is None:
            self.signalled = None
            return
        try:
            ip = ipaddress.ip_address(offered[0])
        except ValueError:  # a host name: packets come from addresses
            self.signalled = None
            return
        if ip.is_unspecified or ip.is_multicast or _nat(ip, self._peer_host) or _scope(ip, self._local_host):
            self.signalled = None
            return
        self.signalled = (_host(str(ip)), offered[1])


def _host(host: str) -> str:
    """A packet's source host as the SDP would write it (no scope id, IPv4-mapped unmapped)."""
    if ":" not in host:
        return host
    host = host.split("%", 1)[0].lower()
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def _nat(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, peer_host: str | None) -> bool:
    """A private (or shared, link-local) SDP address from a peer signalling from a public one."""
    if peer_host is None or not _private(ip):
        return False
    try:
        peer = ipaddress.ip_address(_host(peer_host))
    except ValueError:
        return False
    return not (peer.is_loopback or _private(peer))


def _private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip in net for net in PRIVATE)


def _scope(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, local_host: str | None) -> bool:
    """Loopback on one side only: a sender reaching a loopback listener is on this host, whatever its SDP says."""
    if local_host is None or local_host in ("0.0.0.0", "::", ""):
        return False
    try:
        local = ipaddress.ip_address(_host(local_host))
    except ValueError:
        return False
    return local.is_loopback != ip.is_loopback

"""``python rtpsend.py PAYLOADS HOST PORT PT``: send a file of 20 ms G.711 payloads as paced RTP.

sipp's play_pcap_audio only feeds the first m= line; SIPREC tests start this for the second.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from capture.media.rtp import build_rtp  # noqa: E402


def main(argv: list[str]) -> int:
    import socket
    import time

    path, host, port, pt = argv
    data = Path(path).read_bytes()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for i in range(len(data) // 160):
            delay = start + i * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendto(build_rtp(int(pt), i, i * 160, 0xB0B, data[i * 160 : (i + 1) * 160], i == 0), (host, int(port)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

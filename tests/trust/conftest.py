import sys
from pathlib import Path

# The WebRTC and AMI harnesses import as top-level modules (their folders are not packages).
TESTS = Path(__file__).resolve().parents[1]
for folder in ("webrtc", "ami"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

import socket  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def udp_socket() -> Iterator[socket.socket]:
    """A loopback UDP socket standing in for a SIP load balancer's prober."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()

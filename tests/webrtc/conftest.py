from pathlib import Path

import pytest
from webrtc_harness import AGENT_TOKEN, PLAIN_TOKEN, Server


@pytest.fixture(scope="session")
def whip_server(tmp_path_factory: pytest.TempPathFactory):
    """One real `python -m capture webrtc` for the WebRTC tests, with bearer tokens configured."""
    tmp: Path = tmp_path_factory.mktemp("webrtc")
    tokens = tmp / "tokens"
    tokens.write_text(f"{AGENT_TOKEN}  name=Agent Seven; tel=+15550007\n{PLAIN_TOKEN}\n")
    server = Server(tmp, "--token-file", str(tokens), "--linger-s", "1")
    yield server
    log = server.stop()
    assert "Traceback" not in log, log

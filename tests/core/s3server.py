"""An S3-compatible server for tests: moto's S3 implementation (PyPI ``moto[server]``) served over
HTTPS by werkzeug in a thread of the test process, with a switch to slow down each upload part
so a test can kill the recorder in the middle of a multipart upload.

This stands in for real object storage (AWS S3, MinIO, Ceph RGW), which cannot run here; moto
implements the S3 API boto3 speaks (multipart uploads, HEAD, presigned GETs, SSE headers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

Start = Callable[[str, list[tuple[str, str]]], Any]


class S3Server:
    def __init__(self, cert: Path, key: Path, part_delay_s: float = 0.0) -> None:
        self.part_delay_s = part_delay_s
        self.parts_started = threading.Event()
        self.puts = 0
        app = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._slow(app), threaded=True, ssl_context=(str(cert), str(key))
        )
        self.port = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _slow(self, app: Callable[[dict[str, Any], Start], Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def wsgi(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
            if environ["REQUEST_METHOD"] == "PUT":
                self.puts += 1
                if "partNumber=" in environ.get("QUERY_STRING", ""):
                    self.parts_started.set()
                    time.sleep(self.part_delay_s)
            return app(environ, start)

        return wsgi

    def start(self) -> S3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)

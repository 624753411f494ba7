"""A minimal HTTPS server (the standard library's ``http.server`` over TLS) for the CLI tests.

Its certificate is issued for ``127.0.0.1`` by a throwaway ``trustme`` CA
that the system does not trust, so a client that verifies certificates
fails unless it is given the CA (``--cacert``) or told not to verify
(``--insecure``). Every response is ``200 secure``.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from pathlib import Path
from types import TracebackType

import trustme

_STOP_TIMEOUT = 10.0


class _Secure(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "6")
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(b"secure")

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


class TlsServer:
    """Serves HTTPS on 127.0.0.1 from a thread; ``ca_file`` is the CA to trust."""

    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self._httpd = http.server.HTTPServer(("127.0.0.1", 0), _Secure)
        # The handshake runs in accept(); a failed one is dropped by socketserver.
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="tls-server")

    def __enter__(self) -> TlsServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(_STOP_TIMEOUT)

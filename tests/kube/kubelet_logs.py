"""The kubelet's log endpoint for ``kubelet.py``: what the API server's pods/log proxy connects to.

``GET /containerLogs/{namespace}/{pod}/{container}`` over HTTPS (a fresh self-signed certificate: the
1.20 API server started without ``--kubelet-certificate-authority`` does not verify it) answers the
container's merged stdout and stderr, chunked; with ``follow=true`` it keeps streaming until the container
is done, as a kubelet does.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.kube.cluster import _certificate, _pem_key


@dataclass
class PodLog:
    """One container's merged output; readers follow it until the container is done."""

    container: str
    data: bytearray = field(default_factory=bytearray)
    done: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def append(self, chunk: bytes) -> None:
        with self.cond:
            self.data += chunk
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def read_from(self, offset: int, *, timeout: float = 1.0) -> tuple[bytes, bool]:
        """What follows ``offset`` (waiting up to ``timeout`` for more), and whether that is the end."""
        with self.cond:
            if offset >= len(self.data) and not self.done:
                self.cond.wait(timeout)
            return bytes(self.data[offset:]), self.done and offset >= len(self.data)


def _tls(pki: Path) -> ssl.SSLContext:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("cp-test-kubelet-ca", ca_key, issuer=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("cp-test-kubelet", key, issuer=(ca, ca_key))
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "kubelet.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (pki / "kubelet.key").write_bytes(_pem_key(key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "kubelet.crt", pki / "kubelet.key")
    return context


def serve_logs(
    namespace: str, logs: dict[str, PodLog], stopping: threading.Event, pki: Path
) -> http.server.ThreadingHTTPServer:
    """Serve ``logs`` (by pod name) of ``namespace`` on a free loopback port, in a daemon thread."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs" or parts[1] != namespace:
                self.send_error(404)
                return
            log = logs.get(parts[2])
            if log is None or log.container != parts[3]:
                self.send_error(404, f"no container {parts[3]} of pod {parts[2]} runs here")
                return
            follow = parse_qs(url.query).get("follow") == ["true"]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            offset = 0
            while True:
                chunk, ended = log.read_from(offset)
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    offset += len(chunk)
                if ended or not follow or stopping.is_set():
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = _tls(pki).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

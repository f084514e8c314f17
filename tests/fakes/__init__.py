"""Test doubles that speak real protocols: loopback HTTP(S) servers on 127.0.0.1 with ephemeral ports.

Each server is a :class:`LoopbackServer` (stdlib ``ThreadingHTTPServer`` in a background thread), used as a context
manager by a pytest fixture, recording every request for assertions:

- :mod:`tests.fakes.openai_server` — Chat Completions (Azure OpenAI v1 and OpenAI-compatible), scripted replies.
- :mod:`tests.fakes.identity_server` — the App Service managed-identity token endpoint.
- :mod:`tests.fakes.keyvault_server` — the Key Vault secrets REST API over TLS, with the challenge handshake.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["LoopbackServer", "RecordedRequest", "Response"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    """Query parameters (last value wins)."""
    headers: dict[str, str]
    """Header names lowercased."""
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    """What a handler answers."""

    status: int
    body: Any = None
    """Serialized as JSON unless it is bytes."""
    headers: dict[str, str] = field(default_factory=dict)


class LoopbackServer:
    """A threaded HTTP(S) server on 127.0.0.1:<ephemeral>; subclasses implement :meth:`handle`.

    ``with server:`` starts it and stops it (joining the thread) on exit. ``requests`` lists every request received.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.errors: list[Exception] = []
        """Exceptions raised by :meth:`handle` (answered as 500); tests may assert it stays empty."""
        self._lock = threading.Lock()
        self._ssl_context = ssl_context
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: RecordedRequest) -> Response:
        """Answer one request (called on a server thread)."""
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:<port>`` with no trailing slash."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with server._lock:
                    server.requests.append(request)
                try:
                    response = server.handle(request)
                except Exception as exc:  # a bug in the fake: make it loud in the test, not a hung client
                    server.errors.append(exc)
                    response = Response(500, {"error": {"code": "fake_server_bug", "message": repr(exc)}})
                payload = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
                self.send_response(response.status)
                headers = {"Content-Type": "application/json", **response.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean; requests are recorded instead

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self._ssl_context is not None:
            httpd.socket = self._ssl_context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        # A short poll interval keeps ``shutdown()`` (and so fixture teardown) quick.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=type(self).__name__, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

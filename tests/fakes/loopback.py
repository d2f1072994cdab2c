"""A threaded HTTP server on 127.0.0.1 for the fake providers: one place for the socket details."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def start_server(handle: Callable[[BaseHTTPRequestHandler], None], *, port: int = 0) -> ThreadingHTTPServer:
    """Serve GET and POST with `handle(request)` on `port` (0: a free one), in a daemon thread. Stop with
    `stop_server`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real APIs and the clients' connection pools expect
        disable_nagle_algorithm = True  # otherwise every loopback response waits ~40 ms for a delayed ACK

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            handle(self)

        def do_POST(self) -> None:  # noqa: N802
            handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def stop_server(server: ThreadingHTTPServer | None) -> None:
    assert server is not None, "the fake server was never started; use it as a context manager"
    server.shutdown()
    server.server_close()


def reply_json(req: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    """Send `body` as JSON; a client that already gave up (a timeout test) is not an error."""
    payload = json.dumps(body).encode()
    try:
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass

"""HTTP mode: the Bolt app behind a production WSGI server (waitress, pure Python), not Bolt's development server.

Routes: `POST /slack/events` (commands; Bolt verifies the signature and the 5-minute timestamp window) and
`GET /healthz` (200 when Redis answers a PING, 503 otherwise: the container healthcheck). Anything else is 404.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable

import redis
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


class BotWsgi:
    """The WSGI application: Slack's requests to Bolt, health checks answered here."""

    def __init__(self, app: App, *, conn: redis.Redis) -> None:
        self._slack = SlackRequestHandler(app, path=EVENTS_PATH)
        self._conn = conn

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return self._health(start_response)
        try:
            return self._slack(environ, start_response)
        except UnicodeDecodeError:  # Bolt decodes the body as UTF-8; Slack always sends UTF-8
            return _reply(start_response, "400 Bad Request", {"error": "the body is not UTF-8"})

    def _health(self, start_response: Callable) -> Iterable[bytes]:
        try:
            self._conn.ping()
        except redis.RedisError as exc:
            log.warning("health check: Redis did not answer (%s)", type(exc).__name__)
            return _reply(start_response, "503 Service Unavailable", {"ok": False, "redis": "unreachable"})
        return _reply(start_response, "200 OK", {"ok": True, "redis": "ok"})


def _reply(start_response: Callable, status: str, body: dict) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(status, [("content-type", "application/json"), ("content-length", str(len(payload)))])
    return [payload]


class BotServer:
    """waitress serving `BotWsgi` on host:port (port 0: a free one, see `.port`): one process, `threads` request
    threads (an ack is about a millisecond of CPU). `serve_forever()` in production; `with BotServer(...) as
    server:` serves from a background thread (tests, benchmarks)."""

    def __init__(self, wsgi: BotWsgi, *, host: str = "127.0.0.1", port: int = 0, threads: int = 16) -> None:
        from waitress.server import create_server

        # poll(), not select(): select() cannot watch file descriptors above 1024.
        self._server = create_server(wsgi, host=host, port=port, threads=threads, ident="forecaster-bot",
                                     asyncore_use_poll=True, clear_untrusted_proxy_headers=True)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.run()

    def close(self) -> None:
        """Stop serving: the listener and open connections close on the server's loop thread, so the loop ends at
        once; then the request threads finish; only then the trigger (the pipe that wakes the loop) closes.

        The trigger outlives the request threads on purpose: each pulls it at the end of a request, and so may the
        loop, running our own stop request early when woken by one of those pulls. Closed any sooner, a pull writes
        to a closed descriptor (EBADF), or to whatever file has been given its number since."""
        from waitress import wasyncore

        trigger = self._server.trigger
        if self._thread is not None and self._thread.is_alive():
            trigger.pull_trigger(self._end_loop)
            self._thread.join(timeout=10)
        self._server.task_dispatcher.shutdown()  # waits for the request threads
        wasyncore.close_all(self._server._map, ignore_all=True)  # what is left when a signal ended serve_forever
        trigger.close()

    def _end_loop(self) -> None:
        """On the loop's thread: close every socket, and take the trigger out of the loop's map (open), so the
        loop, having nothing left to watch, returns."""
        from waitress import wasyncore

        trigger = self._server.trigger
        for dispatcher in list(self._server._map.values()):
            if dispatcher is trigger:
                continue
            try:
                if dispatcher is self._server:  # the listener: its own close() would close the trigger too
                    wasyncore.dispatcher.close(dispatcher)
                else:
                    dispatcher.close()
            except OSError:
                pass
        trigger.del_channel()

    def __enter__(self) -> BotServer:
        self._thread = threading.Thread(target=self.serve_forever, name="bot-http", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

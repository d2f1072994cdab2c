"""A database that does not answer, as the network makes one: TCP servers on 127.0.0.1.

- `BlackHole` accepts every connection and never sends a byte (a host whose service hung, a firewall that lets the
  handshake through and drops the rest).
- `SilencingProxy` forwards to a real server until `silence()`: from then on what either side sends is swallowed,
  so a connection opened and working a moment ago goes quiet mid-query, as when packets start being dropped.
  `resume()` forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class _Listener:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name=f"{type(self).__name__}-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(client)
            self.accepted(client)

    def accepted(self, client: socket.socket) -> None:
        pass

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        """Close every connection: whoever still waits on one gets an error at once."""
        self._closed.set()
        self._server.close()
        with self._lock:
            for held in self._held:
                with contextlib.suppress(OSError):
                    held.shutdown(socket.SHUT_RDWR)
                held.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlackHole(_Listener):
    """Accepts, then never answers."""


class SilencingProxy(_Listener):
    """Forwards to `target` (host, port) until `silence()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._open = threading.Event()
        self._open.set()
        super().__init__()

    def silence(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def close(self) -> None:
        super().close()
        self._open.set()  # pumps held by `silence` see the close and end

    def accepted(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        with self._lock:
            self._held.append(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            self._open.wait()  # silenced: held until resumed (or closed), never lost
            if self._closed.is_set():
                return
            try:
                sink.sendall(data)
            except OSError:
                return

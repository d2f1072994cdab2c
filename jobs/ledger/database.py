"""Where the ledger lives: a SQLAlchemy engine for DATABASE_URL (else a SQLite file under DATA_DIR), brought to
the newest schema by Alembic on first use.

Nothing here connects at import, nor when a `Ledger` is made: the engine is created, and the migrations run, the
first time a reader or writer asks for a connection. SQLite runs in WAL mode, so the bot reads `/track` while the
worker writes, and waits (busy_timeout) rather than failing when both write at once.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Insert, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")  # shipped in the wheel (pyproject package-data)
SQLITE_FILE = "ledger.sqlite3"
_SQLITE_BUSY_TIMEOUT_MS = 10_000


def ledger_url(settings: Any) -> str:
    """DATABASE_URL when set, else the SQLite file `DATA_DIR/ledger.sqlite3` (absolute, so every process of one
    deployment opens the same file whatever its working directory)."""
    if getattr(settings, "database_url", None):
        return settings.database_url.get_secret_value() if hasattr(settings.database_url, "get_secret_value") \
            else str(settings.database_url)
    return f"sqlite:///{(Path(settings.data_dir) / SQLITE_FILE).resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL's safe setting: a crash loses no committed transaction
    try:
        cursor.execute("SELECT ln(1), floor(1.5)")
    except sqlite3.OperationalError:  # a SQLite built without its math functions: the track record's SQL needs two
        dbapi_connection.create_function("ln", 1, math.log, deterministic=True)
        dbapi_connection.create_function("floor", 1, math.floor, deterministic=True)
    cursor.close()


class Ledger:
    """The ledger's database. Cheap to make; connects (and migrates) on first use; thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Ledger({make_url(self.url).render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def engine(self) -> Engine:
        """The engine, created and migrated to the newest schema the first time it is asked for."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = self._create_engine()
                    upgrade(engine)
                    self._engine = engine
        return self._engine

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        # pre_ping: a Postgres restarted under a long-running bot costs one reconnect, not a failed /track
        return create_engine(url, pool_pre_ping=True)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed on success."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads."""
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def dialect_insert(conn: Connection, model: Any) -> Insert:
    """An INSERT into `model`'s table in this connection's dialect, so it takes an ON CONFLICT clause (PostgreSQL's
    and SQLite's are spelled alike)."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(model)


def alembic_config(connection: Connection | None = None) -> Any:
    """Alembic's Config, built in code (no alembic.ini): the package's migrations, run on `connection`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


_MIGRATING_IN_THIS_PROCESS = threading.Lock()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """On a SQLite file, an exclusive lock on a file beside it, held while migrating: the bot, the worker and the
    trainer start together under `forecaster up`, and SQLite's DDL inside Alembic's transaction does not keep a
    second process from seeing a half-made schema ("table alembic_version already exists"). Postgres needs none
    here: env.py takes an advisory lock."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    # Alembic keeps its migration context in module globals: two threads of one process must not migrate at once.
    with _MIGRATING_IN_THIS_PROCESS:
        if not database or database == ":memory:":
            yield
            return
        import fcntl

        with open(f"{database}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
            yield


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision`. Processes starting together take turns (see `_migration_lock`); the
    second finds the schema at head and does nothing."""
    from alembic import command

    with _migration_lock(engine), engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


_OPEN: dict[str, Ledger] = {}
_OPEN_LOCK = threading.Lock()


def open_ledger(settings: Any) -> Ledger:
    """The process's Ledger for these settings' database: one engine (and connection pool) per database URL,
    shared by every caller, as SQLAlchemy intends. Connects on first use, not here."""
    url = ledger_url(settings)
    with _OPEN_LOCK:
        ledger = _OPEN.get(url)
        if ledger is None:
            ledger = _OPEN[url] = Ledger(url)
        return ledger


def close_all() -> None:
    """Dispose of every engine `open_ledger` made (tests; a process about to exit)."""
    with _OPEN_LOCK:
        for ledger in _OPEN.values():
            ledger.dispose()
        _OPEN.clear()

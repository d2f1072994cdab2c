"""The vLLM backend (`RemoteAnalyst`) through the real `openai` client against a fake vLLM server on 127.0.0.1,
with the tiny test tokenizer: identical prompts to the in-process backend, batching, adapters, errors."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.data.inputs import Sources, gather
from engine.data.prompts import build_messages
from engine.exceptions import ModelError, ModelServerError
from engine.forecast import run_forecasts
from engine.generation.base import lists_budget
from engine.generation.bin_scoring import bin_continuations
from engine.generation.grammar import ANALYSIS_REGEX, ANSWER_REGEX, LISTS_REGEX, call_text
from engine.generation.remote_model import RemoteAnalyst
from engine.market.weeks import NEW_YORK
from engine.probabilities import ALL_BINS
from engine.provenance import base_model_name
from engine.records import NewsItem
from tests.fakes.sources import MemorySources, synthetic_profile, weekday_closes
from tests.fakes.tiny_model import build_lora_adapter, build_tokenizer
from tests.fakes.vllm_server import FakeVllm, hashed_logprob

REPO_ROOT = Path(__file__).resolve().parents[3]
CONVERSATIONS = [
    [{"role": "system", "content": "You are a seasoned stock market analyst."},
     {"role": "user", "content": f"Company {name} reports invented result {n}. Predict next week."}]
    for n, name in enumerate(["AXP", "KO Synthetic Inc", "MSFT orders, margins, guidance and demand", "ZZZ",
                              "Ünïcode & <|im_start|> lookalikes", "line\nbreaks\n\n"])
]


@pytest.fixture(scope="module")
def in_process(tiny_model_dir):
    from engine.generation.model import Analyst

    return Analyst.load(str(tiny_model_dir), device="cpu")


@pytest.fixture
def vllm(tiny_model_dir):
    with FakeVllm(tiny_model_dir) as fake:
        yield fake


def connect(fake: FakeVllm, base: Path, **options) -> RemoteAnalyst:
    options.setdefault("base_delay_s", 0.0)
    return RemoteAnalyst.connect(str(base), base_url=fake.base_url, **options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- prompts and requests ----------------------------------------------------------------------------------------


def test_the_server_receives_exactly_the_prompt_the_in_process_backend_reads(vllm, tiny_model_dir, in_process):
    remote = connect(vllm, tiny_model_dir)
    remote.generate(CONVERSATIONS, max_new_tokens=8)
    sent = sorted(r.body["prompt"] for r in vllm.completions())
    assert sent == sorted(in_process.render(c) for c in CONVERSATIONS)
    for conversation in CONVERSATIONS:
        text = remote.render(conversation)
        assert text == in_process.render(conversation)
        assert remote.count_tokens(text) == in_process.count_tokens(text)
    assert remote.version == in_process.version == f"{base_model_name(str(tiny_model_dir))} (no adapter)"


def test_greedy_requests_carry_the_in_process_decoding_settings(vllm, tiny_model_dir, in_process):
    remote = connect(vllm, tiny_model_dir)
    remote.generate(CONVERSATIONS[:1], max_new_tokens=33)
    [request] = vllm.completions()
    body = request.body
    # Phase 1 (the lists) gets the budget less the longest call and the analysis's minimum.
    assert body["model"] == vllm.base and body["max_tokens"] == lists_budget(remote.tokenizer, 33)
    assert body["temperature"] == 0.0
    assert body["add_special_tokens"] is False  # the chat template already placed them
    assert body["stop_token_ids"] == in_process._stop_ids
    assert body["repetition_penalty"] == 1.0  # the tiny checkpoint sets none
    assert "seed" not in body and "top_p" not in body


def test_constrained_requests_carry_the_grammar_as_structured_outputs_and_no_guided_field(vllm, tiny_model_dir):
    connect(vllm, tiny_model_dir).generate(CONVERSATIONS[:2], max_new_tokens=400)
    requests = vllm.completions()
    assert sorted(r.body["structured_outputs"]["regex"] for r in requests) == sorted([LISTS_REGEX, ANALYSIS_REGEX] * 2)
    for request in requests:
        assert not [key for key in request.body if key.startswith("guided_")]
    connect(vllm, tiny_model_dir, constrained=False).generate(CONVERSATIONS[:1], max_new_tokens=8)
    assert "structured_outputs" not in vllm.completions()[-1].body


def test_guided_fields_are_refused_before_anything_is_sent(vllm, tiny_model_dir):
    remote = connect(vllm, tiny_model_dir)
    for params in ({"extra_body": {"guided_regex": "a+"}}, {"guided_json": {}}):
        with pytest.raises(ValueError, match="structured_outputs"):
            remote.server.complete(vllm.base, "hello", {"max_tokens": 4, **params})
    assert vllm.completions() == []


def test_the_fake_server_holds_answers_to_the_requested_grammar(tiny_model_dir):
    with FakeVllm(tiny_model_dir, answer=lambda prompt, model: "Up, surely.") as fake:
        with pytest.raises(ModelServerError, match="does not match the requested structured_outputs regex"):
            connect(fake, tiny_model_dir, attempts=1).generate(CONVERSATIONS[:1], max_new_tokens=8)
        [free] = connect(fake, tiny_model_dir, constrained=False).generate(CONVERSATIONS[:1], max_new_tokens=8)
    assert free.text == "Up, surely." and free.bin_distribution is None


def test_bin_probabilities_come_from_prompt_logprobs_of_the_twelve_continuations(vllm, tiny_model_dir):
    remote = connect(vllm, tiny_model_dir)
    [generation] = remote.generate(CONVERSATIONS[:1], max_new_tokens=400)
    [scoring] = vllm.scorings()
    body = scoring.body
    assert body["prompt_logprobs"] == 0 and body["max_tokens"] == 1 and body["model"] == vllm.base
    assert "structured_outputs" not in body

    tokenizer = remote.tokenizer
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    head = encode(remote.render(CONVERSATIONS[0])) + encode(generation.text.split("\nPrediction:")[0]
                                                           + "\nPrediction:")
    expected = {}
    for move, prompt in zip(ALL_BINS, body["prompt"], strict=True):
        continuation = encode(bin_continuations()[move.code])
        assert prompt == head + continuation
        expected[move.code] = sum(hashed_logprob(prompt[:i], prompt[i]) for i in range(len(head), len(prompt)))
    top = max(expected.values())
    total = sum(math.exp(v - top) for v in expected.values())
    dist = generation.bin_distribution
    assert dist is not None and generation.bin_seconds is not None
    for code, value in expected.items():
        assert dist.probabilities[code] == pytest.approx(math.exp(value - top) / total, abs=1e-9)


def test_each_answer_is_told_as_it_is_written_lists_then_call_then_the_whole(vllm, tiny_model_dir):
    from engine.generation.streaming import written_so_far

    remote = connect(vllm, tiny_model_dir)
    told: dict[int, list[str]] = {0: [], 1: []}
    generations = remote.generate(CONVERSATIONS[:2], max_new_tokens=400,
                                  on_text=lambda row, text: told[row].append(text))
    for row, generation in enumerate(generations):
        sections = [written_so_far(text).sections for text in told[row]]
        assert sections == [2, 3, 3]  # the lists (up to "Prediction:"), + the call, + the analysis
        assert told[row][-1].strip() == generation.text


def test_an_answer_cut_before_its_prediction_is_not_scored(vllm, tiny_model_dir):
    [generation] = connect(vllm, tiny_model_dir).generate(CONVERSATIONS[:1], max_new_tokens=8)
    assert generation.bin_distribution is None and vllm.scorings() == []


def test_the_checkpoints_repetition_penalty_is_sent_as_in_process_greedy_applies_it(vllm, tiny_model_dir, tmp_path):
    base = shutil.copytree(tiny_model_dir, tmp_path / "qwen-like")
    config = json.loads((base / "generation_config.json").read_text())
    (base / "generation_config.json").write_text(json.dumps(config | {"repetition_penalty": 1.05}))
    remote = RemoteAnalyst.connect(str(base), base_url=vllm.base_url, served_model=vllm.base)
    remote.generate(CONVERSATIONS[:1], max_new_tokens=4)
    assert vllm.completions()[0].body["repetition_penalty"] == 1.05


def test_seeded_sampling_is_passed_through(vllm, tiny_model_dir):
    connect(vllm, tiny_model_dir).generate(CONVERSATIONS[:1], max_new_tokens=4, sample=True, seed=7, temperature=1.5,
                                           top_p=0.8)
    body = vllm.completions()[0].body
    assert (body["temperature"], body["top_p"], body["seed"]) == (1.5, 0.8, 7)


def test_token_counts_come_from_the_servers_usage(vllm, tiny_model_dir):
    remote = connect(vllm, tiny_model_dir, constrained=False)
    generations = remote.generate(CONVERSATIONS, max_new_tokens=12)  # free: one request per answer
    for conversation, generation in zip(CONVERSATIONS, generations, strict=True):
        assert generation.prompt_tokens == remote.count_tokens(remote.render(conversation))
        assert generation.new_tokens == 12  # the canned answer is longer: cut at max_tokens, as vLLM does
        assert generation.batch_size == len(CONVERSATIONS) and generation.seconds > 0
    short = remote.generate(CONVERSATIONS[:1], max_new_tokens=400)[0]
    assert short.new_tokens == remote.count_tokens(short.text) < 400  # the whole answer, stopped by itself
    assert short.text.startswith("[Positive Developments]:") and short.text.endswith("(answered by "
                                                                                      f"{vllm.base}).")


# -- batching -------------------------------------------------------------------------------------------------------


def test_a_batch_is_one_request_per_conversation_all_in_flight_at_once(tiny_model_dir):
    with FakeVllm(tiny_model_dir, latency_s=0.4, answer=lambda prompt, model: prompt.split("result ")[1][:1]) as fake:
        remote = connect(fake, tiny_model_dir, concurrency=8, constrained=False)  # the canned answers are not FinGPT's
        started = time.perf_counter()
        generations = remote.generate(CONVERSATIONS, max_new_tokens=4)
        wall = time.perf_counter() - started
    assert len(fake.completions()) == len(CONVERSATIONS)
    assert all(isinstance(r.body["prompt"], str) for r in fake.completions())
    assert fake.max_in_flight == len(CONVERSATIONS)  # vLLM's continuous batching sees them together
    assert wall < 2 * 0.4  # one round of latency, not six
    assert [g.text for g in generations] == ["0", "1", "2", "3", "4", "5"]  # answers stay in input order


def test_requests_in_flight_are_bounded_by_the_concurrency(tiny_model_dir):
    with FakeVllm(tiny_model_dir, latency_s=0.2) as fake:
        connect(fake, tiny_model_dir, concurrency=2).generate(CONVERSATIONS, max_new_tokens=4)
    assert len(fake.completions()) == len(CONVERSATIONS) and fake.max_in_flight == 2


def test_the_fake_server_also_takes_a_list_prompt_as_vllm_does(vllm, tiny_model_dir, in_process):
    # Not what the backend sends (see engine/generation/remote_model.py for why), but the fake must not lie about vLLM.
    import openai

    client = openai.OpenAI(base_url=vllm.base_url, api_key="EMPTY", max_retries=0)
    prompts = [in_process.render(c) for c in CONVERSATIONS[:3]]
    response = client.completions.create(model=vllm.base, prompt=prompts, max_tokens=5, temperature=0)
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert response.usage.completion_tokens == 15
    assert response.usage.prompt_tokens == sum(in_process.count_tokens(p) for p in prompts)


# -- adapters --------------------------------------------------------------------------------------------------------


def test_an_adapter_is_loaded_at_run_time_and_switched_without_a_restart(vllm, tiny_model_dir, tiny_adapter_dirs):
    a, b = tiny_adapter_dirs
    remote = connect(vllm, tiny_model_dir, adapter=a)
    assert remote.version == f"{base_model_name(str(tiny_model_dir))} + {a.name}"
    remote.generate(CONVERSATIONS[:1], max_new_tokens=4)
    remote.use_adapter(b)
    remote.generate(CONVERSATIONS[:1], max_new_tokens=4)
    remote.use_adapter(None)
    remote.generate(CONVERSATIONS[:1], max_new_tokens=4)
    remote.use_adapter(a)  # already on the server: reused, not loaded again
    remote.generate(CONVERSATIONS[:1], max_new_tokens=4)
    assert [r.body for r in vllm.loads()] == [{"lora_name": a.name, "lora_path": str(a.resolve())},
                                              {"lora_name": b.name, "lora_path": str(b.resolve())}]
    assert [r.body["model"] for r in vllm.completions()] == [a.name, b.name, vllm.base, a.name]
    assert remote.version.endswith(f"+ {a.name}")


def test_an_adapter_named_at_server_start_up_is_used_under_its_name(tiny_model_dir, tiny_adapter_dirs):
    a, _ = tiny_adapter_dirs
    with FakeVllm(tiny_model_dir, runtime_lora=False, lora_modules={"finance": str(a) + "/"}) as fake:
        remote = connect(fake, tiny_model_dir, adapter=a)
        remote.generate(CONVERSATIONS[:1], max_new_tokens=4)
    assert fake.loads() == [] and fake.completions()[0].body["model"] == "finance"


def test_workers_sharing_a_server_load_an_adapter_once(vllm, tiny_model_dir, tiny_adapter_dirs):
    a, _ = tiny_adapter_dirs
    first, second = connect(vllm, tiny_model_dir), connect(vllm, tiny_model_dir)
    first.use_adapter(a)
    second.use_adapter(a)
    assert len(vllm.loads()) == 1 and first.served_name == second.served_name == a.name


def test_another_directory_with_a_taken_name_gets_its_own_name(vllm, tiny_model_dir, tiny_adapter_dirs, tmp_path):
    a, _ = tiny_adapter_dirs
    twin = shutil.copytree(a, tmp_path / "elsewhere" / a.name)
    remote = connect(vllm, tiny_model_dir, adapter=a)
    remote.use_adapter(twin)
    assert remote.served_name.startswith(f"{a.name}-") and remote.served_name != a.name
    assert vllm.loads()[-1].body == {"lora_name": remote.served_name, "lora_path": str(twin.resolve())}


def test_registry_paths_are_translated_to_where_the_server_mounts_the_registry(tmp_path, tiny_model_dir):
    with FakeVllm(tiny_model_dir) as fake:
        remote = connect(fake, tiny_model_dir, model_dir=tmp_path / "models", server_model_dir="/srv/models")
    assert remote.server_path(tmp_path / "models" / "versions" / "v0003") == "/srv/models/versions/v0003"
    assert remote.server_path(tmp_path / "other" / "adapter") == str((tmp_path / "other" / "adapter").resolve())


def test_an_adapter_the_server_cannot_see_says_where_to_mount_it(vllm, tiny_model_dir, tiny_adapter_dirs, tmp_path):
    remote = connect(vllm, tiny_model_dir, model_dir=tiny_adapter_dirs[0].parent, server_model_dir=str(tmp_path))
    with pytest.raises(ModelServerError, match="VLLM_MODEL_DIR") as caught:
        remote.use_adapter(tiny_adapter_dirs[0])
    assert f"{tmp_path}/{tiny_adapter_dirs[0].name}" in str(caught.value)
    assert remote.adapter is None and remote.served_name == vllm.base  # still serving what it served


def test_a_server_without_runtime_loading_says_how_to_enable_it(tiny_model_dir, tiny_adapter_dirs):
    with FakeVllm(tiny_model_dir, runtime_lora=False) as fake:
        remote = connect(fake, tiny_model_dir)
        with pytest.raises(ModelServerError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True") as caught:
            remote.use_adapter(tiny_adapter_dirs[0])
    assert f"--lora-modules {tiny_adapter_dirs[0].name}=" in str(caught.value)


def test_an_adapter_over_the_servers_max_lora_rank_is_refused_with_the_flag_to_raise(tiny_model_dir, tmp_path):
    wide = build_lora_adapter(tiny_model_dir, tmp_path / "wide", rank=32)
    with FakeVllm(tiny_model_dir, max_lora_rank=16) as fake:
        remote = connect(fake, tiny_model_dir)
        with pytest.raises(ModelServerError, match=r"--max-lora-rank of at least this adapter's rank \(32\)") as e:
            remote.use_adapter(wide)
    assert "LoRA rank 32 is greater than max_lora_rank 16" in str(e.value)  # the server's own words


def test_a_folder_that_is_not_an_adapter_is_refused_before_asking_the_server(vllm, tiny_model_dir, tmp_path):
    remote = connect(vllm, tiny_model_dir)
    with pytest.raises(ModelError, match="not a PEFT adapter"):
        remote.use_adapter(tmp_path)
    assert vllm.loads() == []


# -- errors -----------------------------------------------------------------------------------------------------------


def test_a_server_that_is_down_names_its_url_and_how_to_start_vllm(tiny_model_dir):
    url = f"http://127.0.0.1:{free_port()}"
    waits: list[float] = []
    with pytest.raises(ModelServerError) as caught:
        RemoteAnalyst.connect(str(tiny_model_dir), base_url=url, attempts=3, sleep=waits.append)
    message = str(caught.value)
    assert f"{url}/v1 is not reachable" in message and "vllm serve" in message and "--enable-lora" in message
    assert "MODEL_BACKEND=transformers" in message
    assert waits == [1.0, 2.0]  # bounded: three attempts, capped exponential backoff


def test_a_worker_started_before_the_server_waits_for_it(tiny_model_dir):
    port = free_port()
    outcome: dict = {}

    def start() -> None:
        try:
            outcome["analyst"] = RemoteAnalyst.connect(str(tiny_model_dir), base_url=f"http://127.0.0.1:{port}",
                                                       wait_s=20, base_delay_s=0.05)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    worker = threading.Thread(target=start)
    worker.start()
    time.sleep(1.0)  # the server is still "loading its weights"
    with FakeVllm(tiny_model_dir, port=port):
        worker.join(timeout=20)
    assert "error" not in outcome, outcome.get("error")
    assert isinstance(outcome["analyst"], RemoteAnalyst)


def test_transient_server_errors_are_retried(vllm, tiny_model_dir):
    remote = connect(vllm, tiny_model_dir, attempts=3, constrained=False)
    vllm.fail_next(503, times=2)
    [generation] = remote.generate(CONVERSATIONS[:1], max_new_tokens=4)
    assert generation.new_tokens == 4 and remote.server.retries == 2


def test_a_server_that_keeps_failing_gives_up_after_the_bounded_attempts(vllm, tiny_model_dir):
    remote = connect(vllm, tiny_model_dir, attempts=2)
    vllm.fail_next(500, times=5)
    with pytest.raises(ModelServerError, match=r"refused POST /v1/completions \(HTTP 500: synthetic failure 500\)"):
        remote.generate(CONVERSATIONS[:1], max_new_tokens=4)
    assert remote.server.retries == 1


def test_a_slow_server_times_out_with_the_setting_to_raise(tiny_model_dir):
    with FakeVllm(tiny_model_dir, latency_s=1.0) as fake:
        remote = connect(fake, tiny_model_dir, timeout_s=0.3, attempts=2)
        with pytest.raises(ModelServerError, match="VLLM_TIMEOUT_S"):
            remote.generate(CONVERSATIONS[:1], max_new_tokens=4)


def test_a_wrong_key_is_named_but_never_quoted(tiny_model_dir):
    with FakeVllm(tiny_model_dir, api_key="sk-right-key") as fake:
        with pytest.raises(ModelServerError, match="rejected VLLM_API_KEY") as caught:
            RemoteAnalyst.connect(str(tiny_model_dir), base_url=fake.base_url, api_key="sk-wrong-key-123")
        assert "sk-wrong-key-123" not in str(caught.value) and "sk-right" not in str(caught.value)
        remote = RemoteAnalyst.connect(str(tiny_model_dir), base_url=fake.root_url, api_key="sk-right-key",
                                       constrained=False)
        assert "sk-right-key" not in repr(remote)
        assert remote.generate(CONVERSATIONS[:1], max_new_tokens=4)[0].new_tokens == 4


def test_a_prompt_over_the_servers_context_says_which_setting_to_change(tiny_model_dir):
    with FakeVllm(tiny_model_dir, max_model_len=600) as fake:
        remote = connect(fake, tiny_model_dir)
        with pytest.raises(ModelServerError, match="maximum context length is 600 tokens.*--max-model-len"):
            remote.generate(CONVERSATIONS[:1], max_new_tokens=590)


def test_a_server_context_shorter_than_model_context_tokens_is_refused_at_start(tiny_model_dir):
    with FakeVllm(tiny_model_dir, max_model_len=2048) as fake:
        with pytest.raises(ModelServerError, match="max_model_len=2048, less than MODEL_CONTEXT_TOKENS=4096"):
            connect(fake, tiny_model_dir, context_tokens=4096)
        assert connect(fake, tiny_model_dir, context_tokens=2048).served_base == fake.base


def test_a_server_serving_another_model_is_caught_by_its_tokenizer(tiny_model_dir, tmp_path):
    other = tmp_path / "other-model"
    build_tokenizer(other, vocab_size=600)
    with FakeVllm(other) as fake, pytest.raises(ModelError, match="different tokenizers"):
        connect(fake, tiny_model_dir)


def test_a_server_without_tokenize_is_trusted(tiny_model_dir):
    with FakeVllm(tiny_model_dir, tokenize_route=False) as fake:
        assert connect(fake, tiny_model_dir, constrained=False).generate(CONVERSATIONS[:1],
                                                                         max_new_tokens=3)[0].new_tokens == 3


def test_the_base_model_name_at_the_server(tiny_model_dir):
    with FakeVllm(tiny_model_dir, served_model_name="qwen-1.5b") as fake:
        assert connect(fake, tiny_model_dir).served_base == "qwen-1.5b"  # the one base it serves
        assert connect(fake, tiny_model_dir, served_model="qwen-1.5b").served_name == "qwen-1.5b"
        with pytest.raises(ModelServerError, match=r"VLLM_MODEL=qwen-7b is not served by .*\['qwen-1.5b'\]"):
            connect(fake, tiny_model_dir, served_model="qwen-7b")


# -- end to end -------------------------------------------------------------------------------------------------------


def canned(prompt: str, model: str) -> str:
    symbol = re.findall(r"potential concerns for ([A-Z]+)\.", prompt)[-1]
    prediction = {"AXP": "Up by 2-3%", "KO": "Down by 1-2%", "MSFT": "Up by more than 5%"}[symbol]
    return (f"[Positive Developments]:\n1. {symbol} grew orders.\n2. {symbol} kept margins.\n\n"
            f"[Potential Concerns]:\n1. {symbol} costs rose.\n\n"
            f"[Prediction & Analysis]:\nPrediction: {prediction}\nAnalysis: Invented reasoning for {symbol}.")


def test_run_forecasts_through_the_vllm_backend_parses_every_answer(tiny_model_dir, tiny_adapter_dirs):
    mem = MemorySources()
    symbols = ["AXP", "KO", "MSFT"]
    for symbol in symbols:
        mem.profiles[symbol] = synthetic_profile(symbol)
        mem.closes[symbol] = weekday_closes(dt.date(2024, 1, 1), dt.date(2024, 3, 29))
        mem.news[symbol] = [NewsItem(published=dt.datetime(2024, 3, d, 10, tzinfo=NEW_YORK),
                                     headline=f"{symbol} invented headline {d}") for d in (4, 5)]
    gathered = gather(symbols, sources=Sources(mem, mem, mem), cutoff=dt.datetime(2024, 3, 9, tzinfo=NEW_YORK),
                      now=dt.datetime(2026, 1, 1, tzinfo=NEW_YORK), weeks=2)
    inputs = [gathered[s] for s in symbols]
    with FakeVllm(tiny_model_dir, answer=canned, latency_s=0.1) as fake:
        remote = connect(fake, tiny_model_dir, adapter=tiny_adapter_dirs[0], context_tokens=4096)
        results = run_forecasts(inputs, remote, context_tokens=4096, max_new_tokens=200, batch_size=8)
    # One batch, all three at once; each answer is two generation requests (the lists, then the analysis).
    assert len(fake.completions()) == 6 and fake.max_in_flight == 3
    assert {r.body["model"] for r in fake.completions()} == {tiny_adapter_dirs[0].name}
    from engine.probabilities import choose_call

    for result in results:
        # The server's lists and analysis, with the call chosen from the scored bins written between them.
        assert result.forecast.parsed and result.forecast.move_bin == choose_call(result.generation.bin_distribution)
        assert result.forecast.analysis == f"Invented reasoning for {result.inputs.symbol}."
        prompt = remote.render(build_messages(result.inputs.parts))
        assert result.generation.prompt_tokens == remote.count_tokens(prompt)
        assert result.model_version == f"{base_model_name(str(tiny_model_dir))} + {tiny_adapter_dirs[0].name}"


def test_the_remote_backend_needs_no_torch(tiny_model_dir):
    """A vLLM-backed worker can run on a host without torch: block it, then connect and generate."""
    script = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now fails, and transformers sees no torch
        "from engine.generation.remote_model import RemoteAnalyst\n"
        f"remote = RemoteAnalyst.connect({str(tiny_model_dir)!r}, base_url=sys.argv[1], constrained=False)\n"
        "[g] = remote.generate([[{'role': 'user', 'content': 'hello'}]], max_new_tokens=5)\n"
        "import transformers.utils\n"
        "print(g.new_tokens, transformers.utils.is_torch_available())\n"
    )
    with FakeVllm(tiny_model_dir) as fake:
        done = subprocess.run([sys.executable, "-c", script, fake.base_url], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["5", "False"]


def test_a_constrained_answer_is_two_generation_requests_around_the_chosen_call(vllm, tiny_model_dir):
    """The lists under LISTS_REGEX; the 12 bins scored after them; then a completion of the rendered prompt, the
    lists and the call chosen from the served probabilities, under ANALYSIS_REGEX. The stated call is the rule's."""
    from engine.parsing import parse_answer
    from engine.probabilities import choose_call

    remote = connect(vllm, tiny_model_dir)
    generations = remote.generate(CONVERSATIONS[:3], max_new_tokens=400)
    requests = vllm.completions()
    lists = {r.body["prompt"]: r for r in requests if r.body["structured_outputs"]["regex"] == LISTS_REGEX}
    analyses = [r for r in requests if r.body["structured_outputs"]["regex"] == ANALYSIS_REGEX]
    assert len(lists) == len(analyses) == len(vllm.scorings()) == 3
    for conversation, generation in zip(CONVERSATIONS[:3], generations, strict=True):
        prompt = remote.render(conversation)
        assert prompt in lists
        call = choose_call(generation.bin_distribution)
        assert parse_answer(generation.text).move_bin == call
        assert re.fullmatch(ANSWER_REGEX, generation.text)
        head = generation.text.split(ANSWER_LABEL_SPLIT)[0] + ANSWER_LABEL_SPLIT
        [second] = [r for r in analyses if r.body["prompt"] == prompt + head]
        assert second.body["prompt"].endswith(call_text(call.code))
    # The fake's canned answer says "Up by 2-3%"; the written calls come from the probabilities instead.
    assert {parse_answer(g.text).move_bin.code for g in generations} != {"U3"} or all(
        choose_call(g.bin_distribution).code == "U3" for g in generations)


ANSWER_LABEL_SPLIT = "\nAnalysis:"


def test_the_call_follows_the_served_calibration(vllm, tiny_model_dir):
    from engine.generation.bin_calibration import BinCalibration
    from engine.parsing import parse_answer
    from engine.probabilities import choose_call

    remote = connect(vllm, tiny_model_dir)
    [raw] = remote.generate(CONVERSATIONS[:1], max_new_tokens=400)
    against = "down" if choose_call(raw.bin_distribution).direction == "up" else "up"
    remote.calibration = BinCalibration(bias={b.code: (0.0 if b.direction == against else 50.0) for b in ALL_BINS})
    [calibrated] = remote.generate(CONVERSATIONS[:1], max_new_tokens=400)
    assert calibrated.raw_bin_distribution == raw.raw_bin_distribution
    assert parse_answer(calibrated.text).move_bin.direction == against
    assert parse_answer(calibrated.text).move_bin == choose_call(calibrated.bin_distribution)

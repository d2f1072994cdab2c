"""engine.data.dataset: preparing FinGPT rows for training with a real (tiny, trained BPE) chat tokenizer.

The real 300-row test split is read-only in shared/; smaller sources (JSONL, Arrow DatasetDict folders) are
written from it into tmp_path. The tiny tokenizer gives roughly twice the token counts of the real Qwen one, so
the budgets below are about twice what they would be for Qwen2.5.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from engine.data.dataset import prepare_dataset
from engine.data.prepared import MANIFEST, load_manifest, load_prepared, render_summary
from engine.data.prompt_parser import parse_user_prompt
from engine.data.prompts import (
    SYSTEM_PROMPT,
    TEMPLATE_ID,
    fit_to_budget,
    fix_wording,
    llama_to_messages,
)
from engine.exceptions import EngineError, PromptError

BUG, FIXED = "cryptocurrency price movement", "stock price movement"
NO_PREDICTION = {("GS", "2024-04-14 to 2024-04-21"), ("KO", "2024-03-31 to 2024-04-07"),
                 ("UNH", "2024-03-17 to 2024-03-24")}
ROOMY = 16384  # longer than any test-split row with the tiny tokenizer: nothing is fitted


def user_of(record: dict) -> str:
    return fix_wording(llama_to_messages(record["prompt"])[1]["content"])


def jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def arrow_split(folder: Path, records: list[dict], name: str) -> None:
    import pyarrow as pa
    import pyarrow.ipc

    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(records)
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, \
            pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    (folder / "state.json").write_text(json.dumps({"_split": name}))


def chat_lengths(tokenizer, row: dict) -> tuple[int, int]:
    """(prompt, prompt + completion) tokens exactly as TRL's prompt/completion path counts them."""
    prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)["input_ids"]
    full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)["input_ids"]
    return len(prompt), len(full)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, fingpt_test_split_dir, tiny_model_dir):
    """The whole test split, prepared with room to spare: (manifest, folder)."""
    out = tmp_path_factory.mktemp("prepared") / "split"
    manifest = prepare_dataset(str(fingpt_test_split_dir), out, tokenizer_path=str(tiny_model_dir),
                               max_length=ROOMY)
    return manifest, out


# ---- the real test split ------------------------------------------------------------------------------------


def test_the_test_split_becomes_300_chat_rows_with_the_wording_fixed(prepared, fingpt_test_rows):
    manifest, out = prepared
    rows = load_prepared(out, "test")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "test.jsonl"]  # the split keeps its name
    assert len(rows) == manifest.rows == 300
    for row, record in zip(rows, fingpt_test_rows, strict=True):
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert [m["role"] for m in row["completion"]] == ["assistant"]
        assert row["prompt"][0]["content"] == SYSTEM_PROMPT
        original = llama_to_messages(record["prompt"])[1]["content"]
        assert BUG not in row["prompt"][1]["content"]
        assert row["prompt"][1]["content"] == original.replace(BUG, FIXED)
        assert row["completion"][0]["content"] == record["answer"]
        assert (row["symbol"], row["period"], row["label"], row["dropped_news"]) == (
            record["symbol"], record["period"], record["label"], 0)


def test_answers_without_a_prediction_are_kept_and_listed(prepared):
    manifest, out = prepared
    listed = {(e["symbol"], e["period"]) for e in manifest.answers_without_prediction}
    assert listed == NO_PREDICTION
    assert all(e["kept"] and e["split"] == "test" and e["problems"] for e in manifest.answers_without_prediction)
    written = {(r["symbol"], r["period"]) for r in load_prepared(out, "test")}
    assert NO_PREDICTION <= written
    assert manifest.dropped_rows == [] and manifest.over_budget == 0


def test_token_counts_are_the_chat_templates_and_the_stats_match_them(prepared, tokenizer):
    manifest, out = prepared
    rows = load_prepared(out, "test")
    for row in rows[::25]:  # the exact TRL-style count on a sample; the batch path counted all of them
        prompt, full = chat_lengths(tokenizer, row)
        assert (row["prompt_tokens"], row["prompt_tokens"] + row["completion_tokens"]) == (prompt, full)
    stats = manifest.token_stats["test"]
    for kind, values in (("prompt", [r["prompt_tokens"] for r in rows]),
                         ("completion", [r["completion_tokens"] for r in rows]),
                         ("total", [r["prompt_tokens"] + r["completion_tokens"] for r in rows])):
        s = stats[kind]
        assert (s["min"], s["max"]) == (min(values), max(values))
        assert s["mean"] == round(sum(values) / len(values), 1)
        assert s["min"] <= s["p50"] <= s["p95"] <= s["max"]
        assert sum(v <= s["p95"] for v in values) >= 0.95 * len(values)
    # The tiny BPE gives about twice Qwen's counts; the test split is 1-3 past weeks of news.
    assert 1000 < stats["prompt"]["min"] < stats["prompt"]["max"] < 8000
    assert 300 < stats["completion"]["min"] and stats["total"]["max"] < ROOMY


def test_the_manifest_describes_the_folder(prepared, fingpt_test_split_dir, tiny_model_dir):
    manifest, out = prepared
    on_disk = load_manifest(out)
    assert on_disk == json.loads(json.dumps(manifest.to_dict()))
    assert on_disk["template_id"] == TEMPLATE_ID and on_disk["wording"] == "stock"
    assert on_disk["source"] == str(fingpt_test_split_dir) and on_disk["source_splits"] == ["test"]
    assert on_disk["tokenizer"]["path"] == str(tiny_model_dir) and on_disk["tokenizer"]["end_of_turn"] == "<|im_end|>"
    assert on_disk["max_length"] == ROOMY and on_disk["splits"]["test"]["rows"] == 300
    data = (out / "test.jsonl").read_bytes()
    assert on_disk["splits"]["test"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert on_disk["fingerprint"].startswith("sha256:")
    created = dt.datetime.fromisoformat(on_disk["created"])
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(hours=1)
    text = "\n".join(render_summary(manifest))
    for needle in ("300 rows", TEMPLATE_ID, "answers without a parseable prediction: 3 (3 kept)", "GS 2024-04-14",
                   on_disk["fingerprint"]):
        assert needle in text


def test_the_same_inputs_give_the_same_bytes(prepared, fingpt_test_split_dir, tiny_model_dir, tmp_path):
    manifest, out = prepared
    again = prepare_dataset(str(fingpt_test_split_dir), tmp_path / "again", tokenizer_path=str(tiny_model_dir),
                            max_length=ROOMY)
    assert again.fingerprint == manifest.fingerprint
    assert (tmp_path / "again" / "test.jsonl").read_bytes() == (out / "test.jsonl").read_bytes()


# ---- fitting to max_length ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subset(fingpt_test_rows) -> list[dict]:
    """40 real rows: the 3 without a prediction and the longest prompts among them, in dataset order."""
    longest = sorted(range(300), key=lambda i: -len(fingpt_test_rows[i]["prompt"]))[:12]
    keep = {i for i, r in enumerate(fingpt_test_rows) if (r["symbol"], r["period"]) in NO_PREDICTION}
    keep |= set(longest) | set(range(0, 300, 12))
    return [fingpt_test_rows[i] for i in sorted(keep)][:40]


def test_long_rows_lose_their_oldest_news_and_never_their_answer(subset, prepared, tiny_model_dir, tokenizer,
                                                                 tmp_path):
    roomy = {(r["symbol"], r["period"]): r for r in load_prepared(prepared[1], "test")}
    max_length = 3200
    manifest = prepare_dataset(jsonl(tmp_path / "rows.jsonl", subset), tmp_path / "out",
                               tokenizer_path=str(tiny_model_dir), max_length=max_length)
    rows = load_prepared(tmp_path / "out", "train")
    assert manifest.source_splits == ["train"] and len(rows) + len(manifest.dropped_rows) == len(subset)
    by_key = {(r["symbol"], r["period"]): r for r in rows}
    over = [k for k in by_key if roomy[k]["prompt_tokens"] + roomy[k]["completion_tokens"] > max_length]
    assert len(over) >= 10 and manifest.over_budget >= len(over)
    for record in subset:
        key = (record["symbol"], record["period"])
        if key not in by_key:
            continue
        row, before = by_key[key], roomy[key]
        assert row["completion"][0]["content"] == record["answer"]  # byte for byte
        assert row["completion_tokens"] == before["completion_tokens"]
        assert row["prompt_tokens"] + row["completion_tokens"] <= max_length
        if key not in over:
            assert row == before
            continue
        assert row["dropped_news"] > 0
        # Only whole news items went, the oldest first: exactly what fit_to_budget alone would drop.
        parts, original = parse_user_prompt(row["prompt"][1]["content"]), parse_user_prompt(user_of(record))
        kept = [n for w in parts.weeks for n in w.news]
        every = [n for w in original.weeks for n in w.news]
        assert kept == every[row["dropped_news"]:]
        assert (parts.financials, parts.profile) == (original.financials, original.profile)
    fitted = [by_key[k] for k in over]
    assert manifest.fitted_by_dropping_news == {"rows": len(fitted),
                                                "news_items": sum(r["dropped_news"] for r in fitted)}
    for row in fitted[:4]:
        assert chat_lengths(tokenizer, row) == (row["prompt_tokens"], row["prompt_tokens"] + row["completion_tokens"])
        overhead = row["prompt_tokens"] - len(tokenizer(row["prompt"][1]["content"])["input_ids"])
        record = next(r for r in subset if (r["symbol"], r["period"]) == (row["symbol"], row["period"]))
        _, dropped = fit_to_budget(parse_user_prompt(user_of(record)),
                                   count_tokens=lambda t: len(tokenizer(t)["input_ids"]),
                                   max_tokens=max_length - row["completion_tokens"] - overhead)
        assert len(dropped) == row["dropped_news"]


def test_a_row_whose_answer_cannot_fit_is_dropped_and_listed(subset, tiny_model_dir, tmp_path):
    long_answer = dict(subset[1], answer=subset[1]["answer"] * 4, symbol="AXP", period="2099-01-04 to 2099-01-11")
    source = jsonl(tmp_path / "rows.jsonl", [*subset[:6], long_answer])
    manifest = prepare_dataset(source, tmp_path / "out", tokenizer_path=str(tiny_model_dir), max_length=3200)
    dropped = {(d["symbol"], d["period"]): d["reason"] for d in manifest.dropped_rows}
    assert "answer is never cut" in dropped[("AXP", "2099-01-04 to 2099-01-11")]
    assert "alone take" in dropped[("AXP", "2099-01-04 to 2099-01-11")]
    rows = load_prepared(tmp_path / "out", "train")
    assert ("AXP", "2099-01-04 to 2099-01-11") not in {(r["symbol"], r["period"]) for r in rows}
    assert len(rows) == 7 - len(dropped) and all(r["prompt_tokens"] + r["completion_tokens"] <= 3200 for r in rows)
    assert "dropped AXP 2099-01-04" in "\n".join(render_summary(manifest))
    with pytest.raises(EngineError, match="Every one of the 7 rows was dropped"):
        prepare_dataset(source, tmp_path / "none", tokenizer_path=str(tiny_model_dir), max_length=300)


def test_fitting_is_exact_even_when_the_quick_paths_misjudge(subset, prepared, tiny_model_dir, monkeypatch,
                                                            tmp_path):
    """The two safety nets: a pre-drop that went too far falls back to one item at a time, and a user-prompt
    count that disagrees with the rendered chat's (a token merging across the message edge) is re-fitted."""
    import engine.data.token_budget as token_budget

    source = jsonl(tmp_path / "rows.jsonl", subset[:10])
    honest = prepare_dataset(source, tmp_path / "honest", tokenizer_path=str(tiny_model_dir), max_length=3200)
    assert honest.fitted_by_dropping_news["rows"] >= 2

    predrop = token_budget._predrop

    def drop_everything(parts, costs, excess):
        return predrop(parts, costs, 10**9)

    monkeypatch.setattr(token_budget, "_predrop", drop_everything)
    overshot = prepare_dataset(source, tmp_path / "overshot", tokenizer_path=str(tiny_model_dir), max_length=3200)
    assert overshot.fingerprint == honest.fingerprint
    monkeypatch.undo()

    originals = {user_of(r) for r in subset[:10]}
    count, fit, fits = token_budget.TokenCounter.count, token_budget.fit_to_budget, []

    def misjudge(self, text):
        """A shortened user prompt counted alone reads 1000 tokens shorter than it is inside the chat, so the
        first fit stops too early; the original prompt and the rendered chat are counted honestly."""
        return count(self, text) - (0 if text in originals else 1000)

    def counted_fit(parts, **kwargs):
        fits.append(parts.symbol)
        return fit(parts, **kwargs)

    monkeypatch.setattr(token_budget.TokenCounter, "count", misjudge)
    monkeypatch.setattr(token_budget, "fit_to_budget", counted_fit)
    refit = prepare_dataset(source, tmp_path / "refit", tokenizer_path=str(tiny_model_dir), max_length=3200)
    assert len(fits) > honest.fitted_by_dropping_news["rows"]  # some rows were fitted twice
    assert refit.fingerprint == honest.fingerprint  # re-measured and re-fitted to the same, minimal drop


# ---- splits -------------------------------------------------------------------------------------------------


def test_test_weeks_splits_each_symbol_chronologically(fingpt_test_split_dir, tiny_model_dir, tmp_path):
    manifest = prepare_dataset(str(fingpt_test_split_dir), tmp_path / "out", tokenizer_path=str(tiny_model_dir),
                               max_length=ROOMY, test_weeks=2)
    train, test = load_prepared(tmp_path / "out", "train"), load_prepared(tmp_path / "out", "test")
    assert (len(train), len(test)) == (240, 60) and manifest.splits["test"]["rows"] == 60
    periods = collections.defaultdict(lambda: {"train": [], "test": []})
    for name, rows in (("train", train), ("test", test)):
        for row in rows:
            periods[row["symbol"]][name].append(row["period"])
    assert len(periods) == 30
    for symbol, split in periods.items():
        assert len(split["test"]) == 2, symbol
        assert sorted(split["train"] + split["test"])[-2:] == sorted(split["test"])
        assert max(split["train"]) < min(split["test"])  # no future week in training
    assert {r["period"] for r in test} == {"2024-04-21 to 2024-04-28", "2024-04-28 to 2024-05-05"}


def test_the_held_out_weeks_of_a_prepared_folder_are_evaluation_rows(fingpt_test_split_dir, tiny_model_dir,
                                                                      tmp_path):
    """`--eval-dataset` can name a prepared folder: the gate then scores the weeks training never saw, prompted
    exactly as they were prepared."""
    from engine.data.fingpt_rows import load_eval_rows

    prepare_dataset(str(fingpt_test_split_dir), tmp_path / "out", tokenizer_path=str(tiny_model_dir),
                    max_length=ROOMY, test_weeks=2)
    held_out = load_eval_rows(str(tmp_path / "out"))  # "test" by default
    prepared = load_prepared(tmp_path / "out", "test")
    assert len(held_out) == 60
    assert {r.period for r in held_out} == {"2024-04-21 to 2024-04-28", "2024-04-28 to 2024-05-05"}
    first = held_out[0]
    assert (first.symbol, first.period, first.label) == (prepared[0]["symbol"], prepared[0]["period"],
                                                          prepared[0]["label"])
    assert first.user_prompt == prepared[0]["prompt"][1]["content"] and "stock price movement" in first.user_prompt
    assert first.reference == prepared[0]["completion"][0]["content"]
    assert len(load_eval_rows(str(tmp_path / "out"), "train", limit=5)) == 5
    with pytest.raises(EngineError, match="no 'validation' split"):
        load_eval_rows(str(tmp_path / "out"), "validation")


def test_a_dataset_dict_folder_keeps_its_split_names(subset, tiny_model_dir, tmp_path):
    arrow_split(tmp_path / "dd" / "train", subset[:8], "train")
    arrow_split(tmp_path / "dd" / "test", subset[8:12], "test")
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    manifest = prepare_dataset(str(tmp_path / "dd"), tmp_path / "out", tokenizer_path=str(tiny_model_dir),
                               max_length=ROOMY)
    assert manifest.source_splits == ["train", "test"]
    assert {k: v["rows"] for k, v in manifest.splits.items()} == {"train": 8, "test": 4}
    assert [r["symbol"] for r in load_prepared(tmp_path / "out", "test")] == [r["symbol"] for r in subset[8:12]]
    only = prepare_dataset(str(tmp_path / "dd"), tmp_path / "one", tokenizer_path=str(tiny_model_dir),
                           max_length=ROOMY, split="test")
    assert list(only.splits) == ["test"] and only.rows == 4


# ---- options ------------------------------------------------------------------------------------------------


def test_drop_unparseable_drops_and_lists_the_rows_without_prediction(subset, tiny_model_dir, tmp_path):
    empty = dict(subset[0], answer="  \n", period="2099-01-04 to 2099-01-11")
    source = jsonl(tmp_path / "rows.jsonl", [*subset, empty])
    kept = prepare_dataset(source, tmp_path / "kept", tokenizer_path=str(tiny_model_dir), max_length=ROOMY)
    listed = {(e["symbol"], e["period"]): e for e in kept.answers_without_prediction}
    assert set(listed) == NO_PREDICTION | {(empty["symbol"], empty["period"])}
    assert listed[(empty["symbol"], empty["period"])]["problems"] == ["empty answer"]
    assert kept.rows == len(subset) + 1 and kept.dropped_rows == []

    dropped = prepare_dataset(source, tmp_path / "dropped", tokenizer_path=str(tiny_model_dir), max_length=ROOMY,
                              drop_unparseable=True)
    assert dropped.rows == len(subset) + 1 - 4
    assert {(d["symbol"], d["period"]) for d in dropped.dropped_rows} == set(listed)
    assert all("no parseable prediction" in d["reason"] for d in dropped.dropped_rows)
    assert not any(e["kept"] for e in dropped.answers_without_prediction)
    assert dropped.fingerprint != kept.fingerprint


def test_cryptocurrency_wording_keeps_the_datasets_text(subset, tiny_model_dir, tmp_path):
    manifest = prepare_dataset(jsonl(tmp_path / "rows.jsonl", subset[:3]), tmp_path / "out",
                               tokenizer_path=str(tiny_model_dir), max_length=ROOMY, wording="cryptocurrency")
    rows = load_prepared(tmp_path / "out", "train")
    assert manifest.wording == "cryptocurrency"
    assert [r["prompt"][1]["content"] for r in rows] == [llama_to_messages(r["prompt"])[1]["content"]
                                                         for r in subset[:3]]
    assert all(BUG in r["prompt"][1]["content"] for r in rows)


# ---- errors and the output folder ---------------------------------------------------------------------------


def test_a_bad_source_is_a_clear_error(subset, tiny_model_dir, tmp_path):
    kwargs = dict(tokenizer_path=str(tiny_model_dir))
    with pytest.raises(EngineError, match="not found"):
        prepare_dataset(str(tmp_path / "missing.jsonl"), tmp_path / "a", **kwargs)
    no_label = [{k: v for k, v in r.items() if k != "label"} for r in subset[:2]]
    with pytest.raises(EngineError, match=r"lacks the columns \['label'\]"):
        prepare_dataset(jsonl(tmp_path / "nolabel.jsonl", no_label), tmp_path / "b", **kwargs)
    fixed = [dict(subset[0], prompt=subset[0]["prompt"].replace(BUG, FIXED))]
    with pytest.raises(PromptError, match=r"row 0 .*found it 0 times"):
        prepare_dataset(jsonl(tmp_path / "fixed.jsonl", fixed), tmp_path / "c", **kwargs)
    with pytest.raises(EngineError, match="Unknown label"):
        prepare_dataset(jsonl(tmp_path / "label.jsonl", [dict(subset[0], label="sideways")]), tmp_path / "d",
                        **kwargs)
    with pytest.raises(EngineError, match="Could not load a tokenizer"):
        prepare_dataset(jsonl(tmp_path / "ok.jsonl", subset[:1]), tmp_path / "e",
                        tokenizer_path=str(tmp_path / "no-tokenizer"))
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_a_foreign_folder_is_never_clobbered_but_a_previous_dataset_is_replaced(subset, tiny_model_dir, tmp_path):
    source = jsonl(tmp_path / "rows.jsonl", subset[:4])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(EngineError, match="refusing to overwrite"):
        prepare_dataset(source, foreign, tokenizer_path=str(tiny_model_dir), max_length=ROOMY)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    out = tmp_path / "out"
    first = prepare_dataset(source, out, tokenizer_path=str(tiny_model_dir), max_length=ROOMY)
    again = prepare_dataset(source, out, tokenizer_path=str(tiny_model_dir), max_length=ROOMY, test_weeks=1)
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "train.jsonl", "test.jsonl"])
    assert again.rows == first.rows == 4 and again.fingerprint != first.fingerprint


def test_load_prepared_checks_the_folder(subset, tiny_model_dir, tmp_path):
    with pytest.raises(EngineError, match="not a prepared dataset"):
        load_prepared(tmp_path, "train")
    out = tmp_path / "out"
    prepare_dataset(jsonl(tmp_path / "rows.jsonl", subset[:2]), out, tokenizer_path=str(tiny_model_dir),
                    max_length=ROOMY)
    assert len(load_prepared(out, "train")) == 2
    with pytest.raises(EngineError, match=r"no 'test' split \(it has \['train'\]\)"):
        load_prepared(out, "test")
    shutil.copy(out / "train.jsonl", tmp_path / "backup.jsonl")
    (out / "train.jsonl").write_text((out / "train.jsonl").read_text().replace(FIXED, "share price movement"))
    with pytest.raises(EngineError, match="changed after it was prepared"):
        load_prepared(out, "train")


def test_rows_built_by_the_teacher_prepare_like_fingpt_rows(subset, tiny_model_dir, tmp_path):
    """`dataset build` writes chat prompt/completion rows with the wording already fixed; prepared, they match
    the same rows prepared from FinGPT's Llama format."""
    from engine.data.prompts import fix_wording, llama_to_messages

    built = []
    for r in subset:
        system, user = llama_to_messages(r["prompt"])
        built.append({"key": f"{r['symbol']}|{r['period']}",
                      "prompt": [system, {"role": "user", "content": fix_wording(user["content"])}],
                      "completion": [{"role": "assistant", "content": r["answer"]}],
                      "symbol": r["symbol"], "period": r["period"], "label": r["label"]})
    from_built = tmp_path / "from-built"
    from_fingpt = tmp_path / "from-fingpt"
    prepare_dataset(jsonl(tmp_path / "built.jsonl", built), from_built, tokenizer_path=str(tiny_model_dir))
    prepare_dataset(jsonl(tmp_path / "fingpt.jsonl", subset), from_fingpt, tokenizer_path=str(tiny_model_dir))
    assert load_prepared(from_built, "train") == load_prepared(from_fingpt, "train")

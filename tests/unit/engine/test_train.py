"""A few real LoRA training steps on CPU: the tiny Qwen2, real FinGPT rows, TRL's SFTTrainer."""

from __future__ import annotations

import json

import pytest
import torch

import engine.training.train as train_module
from engine.data.dataset import prepare_dataset
from engine.generation.model import Analyst
from engine.generation.placement import choose_placement, read_cpu_flags
from engine.training.train import ADAPTER_FILES, TrainingError, build_trainer, finish, train
from engine.training.train_config import TrainConfig

ROWS = 6


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, fingpt_test_rows, tiny_model_dir):
    """Six real test-split rows, prepared with the tiny model's tokenizer."""
    root = tmp_path_factory.mktemp("train-data")
    source = root / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in fingpt_test_rows[:ROWS]))
    # 3072 tokens keeps the steps quicker; the tiny BPE makes these rows ~3,500 tokens, so news gets dropped.
    prepare_dataset(str(source), root / "prepared", tokenizer_path=str(tiny_model_dir), max_length=3072)
    return root / "prepared"


def config(tiny_model_dir, **overrides) -> TrainConfig:
    values = dict(base=str(tiny_model_dir), max_steps=8, gradient_accumulation=1, learning_rate=5e-3, dropout=0.0,
                  warmup_steps=0, device="cpu", max_length=3072)
    return TrainConfig(**(values | overrides))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset_dir, tiny_model_dir):
    progress = []
    result = train(config(tiny_model_dir), dataset_dir, tmp_path_factory.mktemp("run") / "adapter",
                   progress=progress.append)
    return result, progress


def test_only_the_answer_is_trained_on(dataset_dir, tiny_model_dir, tmp_path):
    run = build_trainer(config(tiny_model_dir), dataset_dir, tmp_path / "adapter")
    row = run.trainer.train_dataset[0]
    # The trainer's own tokenization and collator, on one row (its dataloader shuffles).
    batch = run.trainer.data_collator([{"input_ids": row["input_ids"], "labels": row["labels"]}])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    tokenizer = run.trainer.processing_class
    prompt_ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)["input_ids"]
    n = len(prompt_ids)
    assert ids[:n].tolist() == prompt_ids  # the prompt, through the chat template
    assert (labels[:n] == -100).all()  # masked: not trained toward anything (FinGPT trained it toward EOS)
    assert (labels[n:] != -100).all()  # the whole answer, end-of-turn included, is trained
    answer = tokenizer.decode(ids[n:], skip_special_tokens=True)
    assert answer.strip() == row["completion"][0]["content"].strip()


def test_loss_goes_down_and_progress_is_reported(trained):
    result, progress = trained
    record = result.record
    assert record["steps"] == 8
    losses = [loss for _, loss in record["losses"]]
    assert sum(losses[-2:]) / 2 < losses[0]
    assert [p.step for p in progress if p.loss is not None] == list(range(1, 9))
    assert all(p.max_steps == 8 for p in progress)
    assert progress[-1].tokens_per_s and progress[-1].tokens_per_s > 0


def test_only_adapter_weights_are_trained(trained, tiny_model_dir):
    from safetensors.torch import load_file

    result, _ = trained
    weights = load_file(result.out_dir / "adapter_model.safetensors")
    assert weights and all("lora_A" in k or "lora_B" in k for k in weights)
    # Closed form for the tiny model (hidden 64, intermediate 128, 4 heads of 16, 2 KV heads, 2 layers, r=8):
    # q,o 8*(64+64); k,v 8*(64+32); gate,up 8*(64+128); down 8*(128+64) -> 8,192 a layer.
    assert result.record["trainable_parameters"] == 2 * 8192 == sum(w.numel() for w in weights.values())


def test_the_adapter_folder_describes_itself(trained, dataset_dir):
    result, _ = trained
    assert sorted(p.name for p in result.out_dir.iterdir()) == sorted(ADAPTER_FILES)
    record = json.loads((result.out_dir / "training.json").read_text())
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    assert record["prompt_template"] == "fingpt-dow30-v1" and record["wording"] == "stock"
    assert record["dataset"]["fingerprint"] == manifest["fingerprint"]
    assert record["dataset"]["rows"] == ROWS
    assert record["config"]["rank"] == 8 and record["config"]["max_length"] == 3072
    # This CPU's rule, as serving decides it: bf16 where the CPU has it natively, else fp32.
    expected = choose_placement(device="cpu", cuda_available=False, cuda_capability=None, cpu_flags=read_cpu_flags())
    assert record["placement"] == {"device": "cpu", "dtype": expected.dtype, "qlora": False}
    assert record["wall_s"] > 0 and record["peak_memory"]["process_max_rss_gib"] > 0
    assert len(record["git_revision"]) in (40, len("unknown"))


def test_the_adapter_loads_back_and_changes_the_model(trained, tiny_model_dir):
    result, _ = trained
    analyst = Analyst.load(str(tiny_model_dir), device="cpu")
    conversation = [{"role": "user", "content": "AXP reports invented result 1."}]
    batch = analyst.tokenizer([analyst.render(conversation)], return_tensors="pt")
    with torch.inference_mode():
        before = analyst.model(**batch).logits[0, -1]
    analyst.use_adapter(result.out_dir)
    with torch.inference_mode():
        after = analyst.model(**batch).logits[0, -1]
    assert not torch.allclose(before, after, atol=1e-4)


def test_rows_longer_than_max_length_stop_training_instead_of_losing_answers(dataset_dir, tiny_model_dir, tmp_path):
    with pytest.raises(TrainingError, match="would lose their answers"):
        build_trainer(config(tiny_model_dir, max_length=512), dataset_dir, tmp_path / "adapter")


def test_a_non_finite_loss_saves_nothing(dataset_dir, tiny_model_dir, tmp_path):
    # What an fp16 overflow looks like to the trainer: a NaN in the weights, so a NaN loss at the first step.
    out = tmp_path / "adapter"
    cfg = config(tiny_model_dir, max_steps=3)
    run = build_trainer(cfg, dataset_dir, out)
    lora_a = next(p for name, p in run.trainer.model.named_parameters() if "lora_A" in name)
    with torch.no_grad():
        lora_a.fill_(float("nan"))
    with pytest.raises(TrainingError, match="non-finite at step 1"):
        finish(run, cfg, dataset_dir, out, started=0.0)
    assert not (out / "adapter_model.safetensors").exists()


def test_an_unprepared_dataset_or_a_used_output_folder_is_refused(tiny_model_dir, tmp_path, dataset_dir):
    with pytest.raises(TrainingError, match="dataset prepare"):
        build_trainer(config(tiny_model_dir), tmp_path, tmp_path / "adapter")
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("keep me")
    with pytest.raises(TrainingError, match="not empty"):
        build_trainer(config(tiny_model_dir), dataset_dir, used)


# ---- precision by capability ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "dtype"), [({"avx512_bf16", "avx512f"}, "bfloat16"), ({"amx_bf16"}, "bfloat16"),
                                              ({"avx2", "fma"}, "float32")])
def test_cpu_training_precision_follows_the_cpu(dataset_dir, tiny_model_dir, tmp_path, monkeypatch, flags, dtype):
    monkeypatch.setattr(train_module, "read_cpu_flags", lambda: frozenset(flags))
    run = build_trainer(config(tiny_model_dir), dataset_dir, tmp_path / "adapter")
    assert run.placement.dtype == dtype
    assert run.trainer.args.bf16 is (dtype == "bfloat16") and not run.trainer.args.fp16
    params = dict(run.trainer.model.named_parameters())
    base = next(p for name, p in params.items() if name.endswith("q_proj.base_layer.weight"))
    assert base.dtype == getattr(torch, dtype)
    # LoRA's own weights stay fp32 in a bf16 run: a 5e-5 step is below bf16's resolution for most weights.
    assert {p.dtype for name, p in params.items() if "lora_" in name} == {torch.float32}


def test_a_bf16_run_trains_and_saves_fp32_adapters(dataset_dir, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    result = train(config(tiny_model_dir, max_steps=3, dtype="bfloat16"), dataset_dir, tmp_path / "adapter")
    assert result.record["placement"]["dtype"] == "bfloat16"
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in result.record["losses"])
    weights = load_file(result.out_dir / "adapter_model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float32}


# ---- checkpoints ----------------------------------------------------------------------------------------------


def _stop_at(step: int):
    def progress(p) -> None:
        if p.step == step and p.loss is not None:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill between checkpoints) leaves behind
    return progress


def test_a_stopped_run_resumes_from_its_newest_checkpoint_and_ends_where_an_unbroken_one_does(
        dataset_dir, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    cfg = config(tiny_model_dir, max_steps=6, dtype="float32")
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, dataset_dir, tmp_path / "first", progress=_stop_at(5), checkpoint_dir=checkpoints, save_every=2)
    assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == ["checkpoint-4"]
    assert not (tmp_path / "first" / "adapter_model.safetensors").exists()

    progress = []
    resumed = train(cfg, dataset_dir, tmp_path / "second", progress=progress.append, checkpoint_dir=checkpoints,
                    save_every=2)
    record = resumed.record
    assert record["resumed_from_step"] == 4 and record["steps"] == 6
    assert [step for step, _ in record["losses"]] == [1, 2, 3, 4, 5, 6]  # the curve from before the stop too
    assert [p.step for p in progress if p.loss is not None] == [5, 6]
    assert progress[-1].eta_s == 0 and progress[-1].tokens_per_s > 0  # rates over this process's steps only
    assert record["tokens_per_s"] > 0

    unbroken = train(cfg, dataset_dir, tmp_path / "unbroken")
    a = load_file(resumed.out_dir / "adapter_model.safetensors")
    b = load_file(unbroken.out_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # same rows, same order, same optimizer state
    assert [loss for _, loss in record["losses"]] == pytest.approx(
        [loss for _, loss in unbroken.record["losses"]], abs=1e-4)

    # Finished: calling again (say, after a stop during the evaluation) trains nothing more.
    again = train(cfg, dataset_dir, tmp_path / "again", checkpoint_dir=checkpoints, save_every=2)
    assert again.record["resumed_from_step"] == 6 and again.record["steps"] == 6


def test_a_finished_run_called_again_restores_its_adapter_without_another_update(dataset_dir, tiny_model_dir,
                                                                                tmp_path):
    """Mid-epoch (3 of 6 rows): transformers, resumed at the last step, would run a 4th update past the schedule."""
    from safetensors.torch import load_file

    cfg = config(tiny_model_dir, max_steps=3)
    checkpoints = tmp_path / "checkpoints"
    first = train(cfg, dataset_dir, tmp_path / "first", checkpoint_dir=checkpoints)
    again = train(cfg, dataset_dir, tmp_path / "again", checkpoint_dir=checkpoints)
    assert again.record["steps"] == 3 and again.record["resumed_from_step"] == 3
    assert again.record["losses"] == first.record["losses"]
    a = load_file(first.out_dir / "adapter_model.safetensors")
    b = load_file(again.out_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_resume_only_the_run_that_wrote_them(dataset_dir, tiny_model_dir, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    train(config(tiny_model_dir, max_steps=2), dataset_dir, tmp_path / "a", checkpoint_dir=checkpoints)
    with pytest.raises(TrainingError, match="another run.*learning_rate"):
        train(config(tiny_model_dir, max_steps=2, learning_rate=1e-3), dataset_dir, tmp_path / "b",
              checkpoint_dir=checkpoints)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="holds no run.json"):
        train(config(tiny_model_dir, max_steps=2), dataset_dir, tmp_path / "c", checkpoint_dir=stranger)

"""The retrain's Slack layouts: the numbers shown are the ones given, within Block Kit's limits."""

from __future__ import annotations

import json

from bot.retrain_blocks import retrain_result_message, training_status

NEW = {"parse_rate": 0.97, "binary_accuracy_all": 0.55, "binary_accuracy": 0.567, "mse": 6.5, "mcc": 0.1,
       "ci95_binary_accuracy_all": [0.5, 0.6],
       "baselines": {"constant down-0-1%": {"binary_accuracy_all": 0.542}}}


def test_the_verdict_shows_both_adapters_side_by_side_and_the_reason():
    reason = "binary_accuracy_all 0.5500 is worse than the current 0.6000"
    text, blocks = retrain_result_message(version="v0004", promoted=False, reason=reason, new=NEW,
                                          current={"binary_accuracy_all": 0.6}, current_version="v0003",
                                          training={"steps": 120, "wall_s": 3725.0, "loss_last": 1.23456})
    assert text.startswith("Retrain finished: v0003 stays served.")
    assert blocks[0]["text"]["text"] == "Retrain: kept v0003"
    table = blocks[2]["text"]["text"]
    assert "`direction hit rate (all rows) ` `       0.550` `       0.600`" in table
    assert "`MSE of the move               ` `       6.500` `           –`" in table
    rendered = json.dumps(blocks, ensure_ascii=False)
    assert "0.500–0.600" in rendered and "constant down-0-1%: hit rate 0.542" in rendered
    assert "120 steps in 1 h 02 min, final loss 1.235" in blocks[-1]["elements"][0]["text"]
    assert len(blocks) <= 50 and all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)


def test_training_status_reads_like_a_progress_line():
    line = training_status(requested_by="U1", step=30, max_steps=120, epoch=0.25, loss=None, eta_s=95)
    assert line.endswith("training step 30/120 (epoch 0.25) · loss – · about 1 min 35 s left")

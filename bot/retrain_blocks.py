"""Block Kit layouts of a retrain: the progress line (edited in place) and the verdict posted in its thread."""

from __future__ import annotations

import re

from bot.blocks import DISCLAIMER, context, fit, header, sections
from bot.mrkdwn import clip, code, inline, plain

# The scores worth a line in Slack, in the order shown; the rest stay in the registry's evaluation.json.
USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
SHOWN = (("parse_rate", "parsed answers"), ("binary_accuracy_all", "direction hit rate (all rows)"),
         ("binary_accuracy", "direction hit rate (parsed)"), ("mse", "MSE of the move"), ("mcc", "MCC"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min {int(seconds % 60):02d} s"


def _mention(user: str) -> str:
    """`<@U123>` for a Slack user id; anything else is shown as text, never parsed."""
    return f"<@{user}>" if USER_ID.fullmatch(user) else inline(user)


def training_status(*, requested_by: str, step: int, max_steps: int, epoch: float, loss: float | None,
                    eta_s: float | None) -> str:
    """One line for the progress message: where training is and when it should end."""
    loss_text = "–" if loss is None else f"{loss:.4f}"
    return (f":hammer_and_wrench: Retrain requested by {_mention(requested_by)}: training step "
            f"{step}/{max_steps} (epoch {epoch:.2f}) · loss {loss_text} · about {_duration(eta_s)} left")


def evaluation_status(*, requested_by: str, done: int, total: int) -> str:
    """Evaluation of the new adapter (and of the served one, unless its scores on these rows are on file)."""
    return (f":bar_chart: Retrain requested by {_mention(requested_by)}: training done; evaluating on the test "
            f"split, {done}/{total} answers")


def _row(*cells: str) -> str:
    return " ".join(code(cell) for cell in cells)


def _score(value: object) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def retrain_result_message(*, version: str, promoted: bool, reason: str, new: dict, current: dict | None,
                           current_version: str | None, training: dict,
                           decided_by: str | None = None) -> tuple[str, list[dict]]:
    """The verdict: both adapters' scores side by side, the gate's decision, which comparison decided, and why."""
    verdict = (f"{inline(version)} is now served" if promoted
               else f"{inline(current_version) if current_version else 'the base model'} stays served")
    decided = f" (decided by {inline(decided_by)})" if decided_by else ""
    text = f"Retrain finished: {verdict}{decided}. {inline(reason)}"
    served = current_version or "base model"
    lines = [_row(" " * 30, f"{'new ' + version:>12}", f"{served:>12}")]
    for key, label in SHOWN:
        lines.append(_row(f"{label:<30}", f"{_score(new.get(key)):>12}", f"{_score((current or {}).get(key)):>12}"))
    ci = new.get("ci95_binary_accuracy_all")
    baselines = new.get("baselines") or {}
    notes = []
    if ci:
        notes.append(f"95% week-clustered CI of the new hit rate: {_score(ci[0])}–{_score(ci[1])}")
    for name, scores in sorted(baselines.items()):
        notes.append(f"baseline {inline(name)}: hit rate {_score((scores or {}).get('binary_accuracy_all'))}")
    record = (f"{training.get('steps', '?')} steps in {_duration(training.get('wall_s'))}, "
              f"final loss {_score(training.get('loss_last'))}")
    blocks = [header(("Retrain: promoted " if promoted else "Retrain: kept ") + plain(version if promoted else served))]
    blocks += sections(f"*{'Promoted' if promoted else 'Not promoted'}*{decided}: {inline(reason)}")
    blocks += sections("\n".join(lines))
    if notes:
        blocks += sections("\n".join(notes))
    blocks.append(context(f"Training: {record}. {DISCLAIMER}"))
    return clip(text, 3000), fit(blocks)

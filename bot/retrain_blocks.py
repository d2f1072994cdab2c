"""Block Kit layouts of a retrain: the progress line (edited in place) and the verdict posted in its thread."""

from __future__ import annotations

from bot.blocks import DISCLAIMER, _cap, _section

# The scores worth a line in Slack, in the order shown; the rest stay in the registry's evaluation.json.
SHOWN = (("parse_rate", "parsed answers"), ("binary_accuracy_all", "direction hit rate (all rows)"),
         ("binary_accuracy", "direction hit rate (parsed)"), ("mse", "MSE of the move"), ("mcc", "MCC"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min {int(seconds % 60):02d} s"


def training_status(*, requested_by: str, step: int, max_steps: int, epoch: float, loss: float | None,
                    eta_s: float | None) -> str:
    """One line for the progress message: where training is and when it should end."""
    loss_text = "–" if loss is None else f"{loss:.4f}"
    return (f":hammer_and_wrench: Retrain requested by <@{requested_by}>: training step {step}/{max_steps} "
            f"(epoch {epoch:.2f}) · loss {loss_text} · about {_duration(eta_s)} left")


def evaluation_status(*, requested_by: str, done: int, total: int) -> str:
    """Evaluation of the new adapter (and of the served one, unless its scores on these rows are on file)."""
    return (f":bar_chart: Retrain requested by <@{requested_by}>: training done; evaluating on the test split, "
            f"{done}/{total} answers")


def _score(value: object) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def retrain_result_message(*, version: str, promoted: bool, reason: str, new: dict, current: dict | None,
                           current_version: str | None, training: dict) -> tuple[str, list[dict]]:
    """The verdict: both adapters' scores side by side, the gate's decision and why."""
    verdict = f"{version} is now served" if promoted else f"{current_version or 'the base model'} stays served"
    text = f"Retrain finished: {verdict}. {reason}"
    served = current_version or "base model"
    lines = [f"`{'':<30}` `{'new ' + version:>12}` `{served:>12}`"]
    for key, label in SHOWN:
        lines.append(f"`{label:<30}` `{_score(new.get(key)):>12}` `{_score((current or {}).get(key)):>12}`")
    ci = new.get("ci95_binary_accuracy_all")
    baselines = new.get("baselines") or {}
    notes = []
    if ci:
        notes.append(f"95% week-clustered CI of the new hit rate: {_score(ci[0])}–{_score(ci[1])}")
    for name, scores in sorted(baselines.items()):
        notes.append(f"baseline {name}: hit rate {_score((scores or {}).get('binary_accuracy_all'))}")
    record = (f"{training.get('steps', '?')} steps in {_duration(training.get('wall_s'))}, "
              f"final loss {_score(training.get('loss_last'))}")
    blocks = [{"type": "header", "text": {"type": "plain_text",
                                          "text": ("Retrain: promoted " if promoted else "Retrain: kept ")
                                          + (version if promoted else served)}}]
    blocks += _section(f"*{'Promoted' if promoted else 'Not promoted'}*: {reason}")
    blocks += _section("\n".join(lines))
    if notes:
        blocks += _section("\n".join(notes))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Training: {record}. {DISCLAIMER}"}]})
    return text[:3000], _cap(blocks)

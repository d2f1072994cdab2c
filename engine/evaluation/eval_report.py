"""An evaluation report as plain text: the table of the model and its baselines, calibration, ROUGE and speed.

Pure: the lines go to a terminal, a code block or a file as the caller likes. The report is
`engine.evaluation.evaluate`'s; `render_report` reads its keys and computes nothing.
"""

from __future__ import annotations


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _accuracy_all(metrics: dict) -> str:
    if "binary_accuracy_all" not in metrics:
        return "–"
    ci = metrics.get("ci95_binary_accuracy_all")
    text = _num(metrics["binary_accuracy_all"])
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _accuracy_parsed(metrics: dict) -> str:
    ci = metrics.get("ci95_binary_accuracy")  # compat mode's interval is over the kept pairs
    return _num(metrics.get("binary_accuracy")) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _aligned(table: list[tuple[str, ...]]) -> list[str]:
    """Rows of cells as text columns, the first left-aligned, the others right-aligned, a rule under the header."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for i, row in enumerate(table):
        cells = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def render_calibration(report: dict, *, model_name: str = "model") -> list[str]:
    """The probability part of the report as text lines: Brier, log loss and ECE of every system's P(up), where
    the baselines' rates come from, and the abstention table. Empty in compat mode (no probabilities there)."""
    calibration = report.get("calibration")
    if not calibration:
        return []
    lines = [f"Calibration of P(up) (truth = the label's direction; ECE over {calibration['ece_bins']} equal-width "
             "bins of P(up); Brier 0.25 and log loss 0.693 = always saying 50%):"]
    table = [("system", "n", "Brier", "log loss", "ECE")]
    systems = [(model_name, calibration["model"]), *calibration["baselines"].items()]
    for name, m in systems:
        table.append((name, str(m["n"]), _num(m["brier"]), _num(m["log_loss"]), _num(m["ece"])) if m
                     else (name, "–", "–", "–", "–"))
    lines += _aligned(table)
    if calibration["model"] is None:
        lines.append(f"  {model_name}: the predictions carry no probabilities")
    elif calibration["model"]["missing"]:
        lines.append(f"  {model_name}: {calibration['model']['missing']} rows without a probability left out")
    for name, m in calibration["baselines"].items():
        if m is None:
            lines.append(f"  {name}: no probability (its rates after an up or a down week need training data: "
                         "--train-dataset / --train-split)")
    rates = calibration.get("base_rates")
    if rates:
        conditional = ("" if rates["after_up"] is None else
                       f", after an up week {rates['after_up']:.3f}, after a down week {rates['after_down']:.3f}")
        warning = (" (IN-SAMPLE: optimistic; pass --train-dataset / --train-split or --train-up-rate)"
                   if rates["in_sample"] else "")
        lines.append(f"baselines' P(up) = base rate of up weeks {rates['up']:.3f}{conditional}; from "
                     f"{rates['source']}{warning}")
    abstain = report.get("abstain")
    if abstain:
        lines.append("Abstaining ('no clear signal') when max(P(up), P(down)) < threshold:")
        table = [("threshold", "covered", "coverage", "accuracy")]
        for row in abstain:
            table.append((f"{row['threshold']:.2f}", str(row["covered"]), f"{100 * row['coverage']:.0f}%",
                          _num(row["accuracy"])))
        lines += _aligned(table)
    return lines


def render_calibration_fit(report: dict) -> list[str]:
    """The out-of-sample comparison of calibrations (engine.evaluation.calibration_fit), the one chosen, the band table,
    and whether every stated call followed the rule. Empty when the report has none of these."""
    lines = []
    if report.get("evidence") == "scaffold":
        lines.append("Evidence: SCAFFOLD mode - the bins scored after fixed placeholder lists, one prefill per row, "
                     "nothing generated; an approximation of the product's path (which scores after the lists the "
                     "model writes).")
    agreed = report.get("consistency")
    if agreed:
        verdict = "every one" if not agreed["disagree"] else f"rows {agreed['disagree'][:10]} do NOT"
        lines.append(f"Stated call = rule on its served distribution: {agreed['agree']}/{agreed['checked']} "
                     f"({verdict})")
    fit = report.get("calibration_fit")
    if not fit:
        return lines
    lines.append(f"Calibration of the 12-bin scores, out of sample ({fit['rows']} rows, {fit['weeks']} weeks, "
                 f"temperature cross-fitted over {fit['folds']} folds of weeks; rule: P(up) >= 0.5 -> up):")
    table = [("variant", "NLL(bin)", "acc [95% CI]", "calls up", "Brier", "log loss", "ECE", "mean P(up)")]
    for name, v in fit["variants"].items():
        ci = v["ci95_accuracy"]
        table.append((name + (" *" if name == fit["chosen"] else ""), _num(v["nll_bins"]),
                      _num(v["accuracy"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""),
                      str(v["calls_up"]), _num(v["brier"]), _num(v["log_loss"]), _num(v["ece"]),
                      _num(v["mean_p_up"])))
    lines += _aligned(table)
    served = fit["calibration"]
    lines.append(f"* served: {fit['chosen']} (lowest out-of-sample NLL), T = {served['temperature']:.3f} refitted on "
                 f"all {served['fitted_rows']} rows; fold temperatures " + "; ".join(
                     f"{k} {', '.join(f'{t:.2f}' for t in ts)}" for k, ts in fit["fold_temperatures"].items()))
    if fit.get("content_free_p_up") is not None:
        lines.append(f"content-free prompt's raw P(up): {fit['content_free_p_up']:.3f}")
    lines.append("'No clear signal' band (calls with |P(up) - 0.5| <= band are not shown as a direction): "
                 "covered / accuracy of the calls still shown")
    by_variant = fit.get("bands_by_variant") or {fit["chosen"]: fit["bands"]}
    table = [("band", *by_variant)]
    for i, row in enumerate(fit["bands"]):
        table.append((f"±{row['band']:.2f}", *(f"{bands[i]['covered']} / {_num(bands[i]['accuracy'])}"
                                               for bands in by_variant.values())))
    lines += _aligned(table)
    return lines


def render_report(report: dict, *, model_name: str = "model") -> list[str]:
    """The report as plain text lines: a table (model row first, baselines below, same columns), then ROUGE
    per section, parse failures and speed. Pure: print the lines, or put them in a code block."""
    compat = report.get("mode") == "fingpt_compat"
    header = ("system", "n", "parsed", "acc(parsed)", "acc(all) [95% CI]", "MSE", "MCC")
    table = [header]
    for name, metrics in [(model_name, report), *report.get("baselines", {}).items()]:
        table.append((
            name, str(metrics.get("n", "–")), str(metrics.get("parsed", "–")), _accuracy_parsed(metrics),
            _accuracy_all(metrics), _num(metrics.get("mse"), 2), _num(metrics.get("mcc")),
        ))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "FinGPT-compatible scoring (upstream calc_metrics: pairs where both answer and reference parse)"
        if compat else "Our scoring (truth = label column; unparsed counts wrong in acc(all))"
    ]
    for i, row in enumerate(table):
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(cells)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))

    grounding = report.get("grounding")
    if grounding and grounding["items"]:
        lines.append(f"grounding: {100 * grounding['rate']:.1f}% of {model_name}'s items supported by the news its "
                     f"prompt held ({grounding['supported']} of {grounding['items']} Positive Developments and "
                     f"Concerns, {grounding['rows']} rows with news; match score >= {grounding['threshold']})")
    elif grounding:
        lines.append(f"grounding: – ({model_name}'s answers list no items)")
    lines += render_calibration(report, model_name=model_name)
    lines += render_calibration_fit(report)

    rouge = report.get("rouge")
    if rouge:
        where = "kept pairs" if compat else f"{report.get('rouge_rows', '?')} rows whose reference parses"
        lines.append(f"ROUGE F1 ({where}):")
        for section, scores in rouge.items():
            lines.append(f"  {section:<9} " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    else:
        lines.append("ROUGE: – (nothing to score)")

    counts = report.get("direction_counts")
    if counts:
        line = "predicted directions: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        if "label_counts" in report:
            line += "; truth: " + ", ".join(f"{k} {v}" for k, v in report["label_counts"].items())
        lines.append(line)
    if "parse_failures" in report:
        lines.append(f"parse failures: {len(report['parse_failures'])} of {report['n']}")
    else:
        dropped = report["n"] - report["parsed"]
        lines.append(f"rows dropped (answer or reference unparseable): {dropped} of {report['n']}")
    if report.get("latency_s") is not None:
        speed = (f", {report['tokens_per_s']:.1f} new tokens/s" if report.get("tokens_per_s") is not None
                 else " (one prefill per row, nothing generated)")
        lines.append(f"latency {report['latency_s']:.2f} s/row{speed}")
    return lines


def _share(part: int | None, whole: int | None) -> str:
    return "–" if not whole or part is None else f"{100 * part / whole:.0f}% ({part}/{whole})"


def _comparison_cells(scores: dict) -> dict[str, str]:
    consistency = scores.get("consistency") or {}
    grounding = scores.get("grounding") or {}
    model_p = (scores.get("calibration") or {}).get("model") or {}
    return {
        "answers that parse": _share(scores.get("parsed"), scores.get("n")),
        "direction accuracy, all rows [95% CI]": _accuracy_all(scores),
        "MCC": _num(scores.get("mcc")),
        "MSE of the move": _num(scores.get("mse"), 2),
        "stated call = its own probabilities' call": _share(consistency.get("agree"), consistency.get("checked")),
        "items the news supports (grounding)": _share(grounding.get("supported"), grounding.get("items")),
        "Brier of P(up)": _num(model_p.get("brier")),
        "ECE of P(up)": _num(model_p.get("ece")),
    }


def render_comparison(before: dict, after: dict, *, before_name: str, after_name: str) -> list[str]:
    """Two score sets of the same rows side by side (the retrain gate's: the compared model's and the new
    adapter's), then the naive baselines on those rows. Pure; reads `engine.training.retrain.SCORE_KEYS`' keys."""
    left, right = _comparison_cells(before), _comparison_cells(after)
    lines = [f"On the same {after.get('n', '?')} rows:"]
    lines += _aligned([("", before_name, after_name), *((k, left[k], right[k]) for k in left)])
    baselines = after.get("baselines") or {}
    if baselines:
        lines.append("naive baselines, direction accuracy on all rows [95% CI]:")
        lines += [f"  {name}: {_accuracy_all(m)}" for name, m in baselines.items()]
    return lines

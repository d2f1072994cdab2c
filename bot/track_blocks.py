"""Block Kit layouts for the track record: the weekly evaluation summary and `/track [TICKER]`.

Pure functions from the track record (`engine.evaluation.track_report.TrackReport`, and `/track`'s view around it,
`jobs.ledger.views.TrackView` from `jobs.track_reads.track_record`) to (fallback text, blocks), within Slack's
limits: tables go in code blocks of at most SECTION_LIMIT characters, cut between rows.
Tickers, labels and reasons come from the ledger and the price source: they go through `bot.mrkdwn`.
"""

from __future__ import annotations

from bot.blocks import DISCLAIMER, NO_SIGNAL_GLYPH, SECTION_LIMIT, context, fit, header, sections
from bot.mrkdwn import clip, code, code_block, inline, plain
from engine.evaluation.track_report import SYSTEMS, Calibration, Counts, PerSystem, SystemScore, TrackReport
from jobs.ledger.views import Feedback, RecentForecast, TrackView

# The report's systems (`PerSystem`'s fields: the model and engine.evaluation.baselines') as a table shows them.
SYSTEM_NAMES = {"model": "Model", "down": "Always Down 0-1%", "up": "Always Up 0-1%", "momentum": "Last-week momentum"}
SHORT_NAMES = {"model": "Model", "down": "Down", "up": "Up", "momentum": "Mom."}
MAX_LISTED = 20  # unparsed answers named in the summary; the rest are counted
HOW_SCORED = ("Hit = direction right, over every scored forecast (an unparsed answer is a miss). MSE = squared "
              "error of the bin midpoints in %², over parsed answers. Baselines answer for the same tickers and "
              "weeks.")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _mse(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _ci(score: SystemScore) -> str:
    ci = score.ci95_binary_accuracy_all
    return "—" if not ci else f"{100 * ci[0]:.0f}–{100 * ci[1]:.0f}%"


def _hits(score: SystemScore | None) -> str:
    if not score or not score.n:
        return "—"
    return f"{_pct(score.binary_accuracy_all)} {score.hits}/{score.n}"


def _code_sections(heading: str, rows: list[str]) -> list[dict]:
    """Monospace table sections, each under the section limit, the header repeated in each, cut between rows.
    Lengths are measured escaped: an `&` in a name costs five characters of the limit."""
    sized = [(row, len(code_block(row))) for row in rows]
    blocks, chunk = [], [heading]
    for row, size in sized:
        if len(code_block("\n".join(chunk))) + size > SECTION_LIMIT:
            blocks.append(chunk)
            chunk = [heading]
        chunk.append(row)
    blocks.append(chunk)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": code_block("\n".join(lines)), "verbatim": True}}
            for lines in blocks]


def _system_table(week: PerSystem[SystemScore] | None, cumulative: PerSystem[SystemScore]) -> list[dict]:
    heading = f"{'':<19} {'this week':^18}  {'cumulative':^28}"
    heading += "\n" + f"{'':<19} {'hit':>11} {'MSE':>6}  {'hit':>11} {'95% CI':>9} {'MSE':>6}"
    rows = []
    for system, score in cumulative.items():
        this = getattr(week, system) if week else None
        rows.append(f"{SYSTEM_NAMES[system][:19]:<19} {_hits(this):>11} "
                    f"{_mse(this.mse if this else None):>6}  {_hits(score):>11} {_ci(score):>9} "
                    f"{_mse(score.mse):>6}")
    return _code_sections(heading, rows)


def _ticker_table(by_ticker: dict[str, PerSystem[SystemScore]]) -> list[dict]:
    heading = f"{'ticker':<7}{'n':>4} {'hit':>6} {'MSE':>6}" + "".join(
        f" {SHORT_NAMES[s][:6]:>6}" for s in SYSTEMS if s != "model")
    rows = []
    for symbol, scores in by_ticker.items():
        model = scores.model
        rows.append(f"{symbol[:7]:<7}{model.n:>4} {_pct(model.binary_accuracy_all):>6} {_mse(model.mse):>6}"
                    + "".join(f" {_pct(score.binary_accuracy_all):>6}" for s, score in scores.items() if s != "model"))
    return _code_sections(heading, rows)


def _counts_line(counts: Counts) -> str:
    not_counted = counts.superseded + counts.late
    return (f"{counts.scored} scored · {counts.pending} pending (week not closed or no prices yet) · "
            f"{counts.unparsed} unparsed (counted as misses) · {not_counted} not counted "
            f"({counts.superseded} superseded by a later forecast, {counts.late} made after the week opened)")


def _calibration_blocks(calibration: Calibration | None) -> list[dict]:
    """The summary's calibration line once `enough` scored forecasts carry a probability
    (`engine.evaluation.track_report.MIN_CALIBRATED`), a note of how many so far before that, nothing when none
    does."""
    if not calibration:
        return []
    if not calibration.enough:
        return [context(f"Calibration of P(up): {calibration.n} scored forecast(s) with a probability so far; "
                        f"shown from {calibration.min_n}.")]
    return sections(f"*Calibration of P(up)*, {calibration.n} forecasts: Brier {calibration.brier:.3f} "
                    f"(0.25 = always saying 50%) · ECE {calibration.ece:.3f} · log loss "
                    f"{calibration.log_loss:.3f}. The reliability diagram is in the thread.")


def feedback_line(feedback: Feedback | None) -> str:
    """"Feedback: 👍 5 · 👎 2 from 3 people on 4 forecast(s); on scored calls, 👍 3/4 hit, 👎 0/1 hit": the votes
    people gave (`jobs.ledger.votes.tally`; "3/4": of the 4 👍 on calls already scored, 3 were on calls that hit);
    "" when nobody voted. Numbers only: nothing to escape."""
    if feedback is None or not feedback.voted:
        return ""
    line = (f"*Feedback:* :+1: {feedback.up} · :-1: {feedback.down} from {feedback.voters} "
            f"{'person' if feedback.voters == 1 else 'people'} on {feedback.forecasts} forecast(s)")
    scored = [f"{emoji} {hits}/{of} hit" for emoji, hits, of in ((":+1:", feedback.up_hits, feedback.up_scored),
                                                               (":-1:", feedback.down_hits, feedback.down_scored))
              if of]
    return line + (f"; on scored calls, {', '.join(scored)}" if scored else "")


def summary_message(report: TrackReport, *, feedback: Feedback | None = None,
                    failures: dict[str, str] | None = None) -> tuple[str, list[dict]]:
    """(fallback text, blocks) for the weekly evaluation summary of `report`, with the votes so far (`feedback`,
    `jobs.ledger.votes.tally`). With nothing scored yet, a plain "nothing to score yet" note with what is
    pending."""
    week, counts, cumulative = report.latest_week, report.counts, report.cumulative
    blocks: list[dict] = [header(f"Track record: {plain(week)}")]
    week = inline(week)
    if cumulative is None:
        text = f"Track record to {week}: nothing to score yet"
        blocks += sections(f":hourglass_flowing_sand: *Nothing to score yet.* No forecast made before its week "
                           f"opened has a week that closed by {week[-10:]}. {counts.pending} forecast(s) are "
                           "waiting for their week to close; they will be scored in a later summary.")
    else:
        model = cumulative.model
        text = (f"Track record to {week}: model hit rate {_pct(model.binary_accuracy_all)} "
                f"({model.hits}/{model.n}) vs "
                + ", ".join(f"{inline(SYSTEM_NAMES[s])} {_pct(m.binary_accuracy_all)}"
                            for s, m in cumulative.items() if s != "model"))
        blocks += sections(f"*{counts.scored_this_week} forecast(s) scored for the week {week}; {counts.scored} over "
                           f"{counts.weeks} week(s) and {counts.tickers} ticker(s) so far.*")
        blocks += _system_table(report.week, cumulative)
        blocks += sections("*By ticker, cumulative*")
        blocks += _ticker_table(report.by_ticker)
        blocks += _calibration_blocks(report.calibration)
        blocks.append(context(f"{HOW_SCORED} 95% CI: bootstrap over weeks ({report.bootstrap.draws} draws). "
                               "The chart is in the thread."))
    blocks.append(context(_counts_line(counts)))
    if votes := feedback_line(feedback):
        blocks.append(context(votes))
    if report.unparsed:
        shown = ", ".join(f"{inline(u.symbol)} ({inline(u.period[:10])})" for u in report.unparsed[:MAX_LISTED])
        more = len(report.unparsed) - MAX_LISTED
        blocks.append(context(f"Unparsed answers, counted as misses: {shown}"
                               + (f" and {more} more (`forecaster ledger show`)" if more > 0 else "")))
    if failures:
        missing = "\n".join(f"• {inline(ticker)}: {clip(inline(why), 300)}" for ticker, why in sorted(failures.items()))
        blocks += sections(f"*No outcome yet for:*\n{missing}")
        blocks.append(context("These stay pending, and are tried again at the next summary."))
    blocks.append(context(DISCLAIMER))
    return clip(text, 3000), fit(blocks)


def _recent_line(row: RecentForecast) -> str:
    arrow = {"up": "▲", "down": "▼"}.get(row.direction, "·")
    predicted = inline(row.label.capitalize()) if row.parsed and row.label else "unparsed answer"
    # The ledger's `clear_signal`: False when the forecast was shown without an arrow; None (no probabilities, or
    # recorded before the flag) and True as before.
    if row.parsed and row.clear_signal is False:
        arrow, predicted = NO_SIGNAL_GLYPH, f"no clear signal ({predicted})"
    if row.actual_label is None:
        outcome = "_pending_"
    else:
        mark = ":white_check_mark:" if row.hit else ":x:"
        outcome = f"{inline(row.actual_label)} ({100 * row.realized_return:+.2f}%) {mark}"
    line = f"{code(row.target_week)} *{inline(row.ticker)}* {arrow} {predicted} → {outcome}"
    if not row.counted:
        line += f" _(not counted: {inline(str(row.why_not_counted))})_"
    if row.votes_up or row.votes_down:
        line += f" · :+1: {row.votes_up} :-1: {row.votes_down}"
    return line


def track_message(record: TrackView) -> tuple[str, list[dict]]:
    """(fallback text, blocks) for `/track [TICKER]`, from `jobs.track_reads.track_record`: hit rate and MSE
    against the baselines, the newest forecasts with their outcomes, and the feedback."""
    report = record.report
    blocks: list[dict] = [header(f"Track record: {plain(record.ticker or 'all tickers')}")]
    who = inline(record.ticker) if record.ticker else "all tickers"
    if report is None or report.cumulative is None:
        text = f"Track record for {who}: nothing scored yet"
        blocks += sections(f"Nothing scored yet for {who}: {record.recorded} forecast(s) recorded; a forecast is "
                           "scored once its target week has closed (the Saturday summary fetches the prices).")
    else:
        cumulative = report.cumulative
        model = cumulative.model
        text = (f"Track record for {who}: hit rate {_pct(model.binary_accuracy_all)} "
                f"({model.hits}/{model.n}) to {inline(report.latest_week)}")
        hit_rates = " · ".join(
            f"{inline(SYSTEM_NAMES[s])} {_pct(m.binary_accuracy_all)}"
            + (f" (95% CI {_ci(m)})" if s == "model" else "") for s, m in cumulative.items())
        mses = " · ".join(f"{inline(SYSTEM_NAMES[s])} {_mse(m.mse)}" for s, m in cumulative.items())
        calibrated = report.calibration
        brier = (f"\n*Brier (P(up)):* {calibrated.brier:.3f} over {calibrated.n} forecast(s) with a probability "
                 "(0.25 = always saying 50%)") if calibrated else ""
        blocks += sections(f"*{model.n} forecast(s) over {report.counts.weeks} week(s), to "
                           f"{inline(report.latest_week)}*\n*Hit rate:* {hit_rates}\n*MSE (%²):* {mses}{brier}")
        blocks.append(context(f"{HOW_SCORED} {_counts_line(report.counts)}"))
    if record.recent:
        lines = "\n".join(_recent_line(row) for row in record.recent)
        blocks += sections(f"*Latest {len(record.recent)} forecast(s)*\n{lines}")
    if feedback := feedback_line(record.feedback):
        blocks.append(context(feedback))
    blocks.append(context(DISCLAIMER))
    return clip(text, 3000), fit(blocks)

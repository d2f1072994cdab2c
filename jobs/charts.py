"""The track-record charts, as PNG bytes: cumulative hit rate of the model and each baseline, week by week, and the
reliability diagram of its P(up) (also `forecaster evaluate --plot`).

matplotlib's object API with the Agg canvas: no pyplot, so no global figure state, no display and no backend
switch in a worker process. Imported only when there is something to draw.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from engine.evaluation.track_report import ReliabilityBin, SeriesPoint

# Colours that stay apart for colour-blind readers (Okabe-Ito); the model's line is the heavy one. One per system of
# the report (`engine.evaluation.track_report.PerSystem`).
STYLES = {
    "model": {"color": "#0072B2", "linewidth": 2.6, "marker": "o", "label": "Model"},
    "down": {"color": "#D55E00", "linewidth": 1.4, "linestyle": "--", "label": "Always Down 0-1%"},
    "up": {"color": "#009E73", "linewidth": 1.4, "linestyle": "--", "label": "Always Up 0-1%"},
    "momentum": {"color": "#CC79A7", "linewidth": 1.4, "linestyle": ":", "label": "Last-week momentum"},
}


def hit_rate_chart(series: Sequence[SeriesPoint], *, title: str) -> bytes:
    """PNG of a track report's `series` (one point per scored week: its end date and the cumulative hit rate of
    every system). Raises ValueError on an empty series: there is nothing to draw."""
    if not series:
        raise ValueError("no scored weeks: nothing to chart")
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x = [point.end for point in series]
    for system, style in STYLES.items():
        axes.plot(x, [getattr(point.hit_rates, system) for point in series], **style)
    axes.axhline(0.5, color="#999999", linewidth=0.8, zorder=0)
    axes.set_ylim(-0.03, 1.03)  # a line at 0% or 100% stays visible above the axis
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    if len(x) <= 12:  # a tick on every scored week
        axes.set_xticks(x)
        axes.xaxis.set_major_formatter(DateFormatter("%b %d\n%Y"))
    else:
        locator = AutoDateLocator(minticks=3, maxticks=10)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if len(x) == 1:  # one point: give the axis a week either side instead of a zero-width range
        axes.set_xlim(x[0] - dt.timedelta(days=7), x[0] + dt.timedelta(days=7))
    axes.set_ylabel("cumulative hit rate (direction)")
    axes.set_xlabel("week ending (Sunday)")
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="best", fontsize="small", framealpha=0.9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def reliability_chart(bins: Sequence[ReliabilityBin], *, title: str, summary: str = "") -> bytes:
    """PNG reliability diagram of `engine.evaluation.calibration.reliability`'s bins: for each non-empty bin of stated
    P(up), the share of weeks that went up (a calibrated forecaster sits on the diagonal), and below it how many
    forecasts fell in each bin. `summary` (e.g. "Brier 0.241 · ECE 0.043 · n 300") goes under the title. Raises
    ValueError when every bin is empty."""
    filled = [b for b in bins if b.n]
    if not filled:
        raise ValueError("no forecast with a probability: nothing to chart")
    figure = Figure(figsize=(6, 6.5), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, linestyle="--", label="perfectly calibrated")
    top.plot([b.mean_p for b in filled], [b.frequency for b in filled], color=STYLES["model"]["color"],
             linewidth=2, marker="o", label="Model")
    top.set_xlim(0, 1)
    top.set_ylim(-0.03, 1.03)
    top.set_ylabel("share of weeks that went up")
    top.xaxis.set_major_formatter(PercentFormatter(1.0))
    top.yaxis.set_major_formatter(PercentFormatter(1.0))
    top.set_title(title + (f"\n{summary}" if summary else ""), fontsize="medium")
    top.grid(alpha=0.3)
    top.legend(loc="lower right", fontsize="small", framealpha=0.9)
    width = bins[0].hi - bins[0].lo
    bottom.bar([b.lo for b in bins], [b.n for b in bins], width=width * 0.9, align="edge",
               color=STYLES["model"]["color"], alpha=0.6)
    bottom.set_ylabel("forecasts")
    bottom.set_xlabel("stated P(up), in bins of equal width")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

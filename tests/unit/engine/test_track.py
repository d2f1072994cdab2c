"""engine.evaluation.track: outcomes from closes, which forecasts count, and hit rate / MSE against the baselines, all
checked against numbers worked out by hand below."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from engine.evaluation.track import (
    TrackEntry,
    closed_at,
    has_closed,
    last_closed_week,
    momentum_bin,
    price_window,
    realized_outcome,
    score_track,
    select_counted,
    week_from_period,
)
from engine.evaluation.track_report import (
    LATE,
    MIN_CALIBRATED,
    SUPERSEDED,
    Counts,
    PerSystem,
    TrackReport,
    Unparsed,
)
from engine.exceptions import NoPriceData
from engine.market.weeks import NEW_YORK, MoveBin, Week
from engine.records import DailyClose

W0 = Week(dt.date(2024, 2, 25), dt.date(2024, 3, 3))
W1 = Week(dt.date(2024, 3, 3), dt.date(2024, 3, 10))
W2 = Week(dt.date(2024, 3, 10), dt.date(2024, 3, 17))
W3 = Week(dt.date(2024, 3, 17), dt.date(2024, 3, 24))

# Friday closes: W0 +2% (up by 1-2%), W1 -1% (down by 0-1%), W2 +3% (up by 2-3%), W3 -5% (down by 4-5%).
FRIDAYS = [(dt.date(2024, 2, 23), 100.0), (dt.date(2024, 3, 1), 102.0), (dt.date(2024, 3, 8), 100.98),
           (dt.date(2024, 3, 15), 104.0094), (dt.date(2024, 3, 22), 98.80893)]
CLOSES = [DailyClose(date=d, close=c) for d, c in FRIDAYS]


def at(day: int, hour: int = 12, month: int = 3) -> dt.datetime:
    return dt.datetime(2024, month, day, hour, tzinfo=NEW_YORK)


def outcome_returns(symbol: str, week: Week) -> dict:
    found = realized_outcome(CLOSES, week, symbol=symbol)
    return {"realized_return": found.realized_return, "previous_return": found.previous_return}


def entry(entry_id: str, week: Week, requested: dt.datetime, prediction: str | None, *, symbol: str = "AXP",
          scored: bool = True, p_up: float | None = None) -> TrackEntry:
    """A recorded forecast; `prediction` like "Down by 0-1%", or None for an unparsed answer."""
    if prediction is None:
        direction, magnitude, parsed = "none", None, False
    else:
        direction, magnitude = prediction.split(" by ")[0].lower(), prediction.split(" by ")[1]
        parsed = True
    returns = outcome_returns(symbol, week) if scored else {}
    return TrackEntry(entry_id, symbol, week, requested, parsed, direction, magnitude, prediction or "no idea",
                      **returns, p_up=p_up)


# ---- weeks and outcomes ---------------------------------------------------------------------------------------


def test_a_week_closes_at_the_saturday_midnight_after_its_friday_close():
    assert closed_at(W2) == dt.datetime(2024, 3, 16, 0, 0, tzinfo=NEW_YORK)
    assert not has_closed(W2, at(15, 16))  # Friday 16:00: the close may not be in the data yet
    assert has_closed(W2, dt.datetime(2024, 3, 16, 4, 0, tzinfo=dt.UTC))  # Saturday 00:00 New York


def test_the_last_closed_week_is_the_one_whose_saturday_has_come():
    assert last_closed_week(dt.date(2024, 3, 16)) == W2  # the Saturday itself
    assert last_closed_week(dt.date(2024, 3, 17)) == W2  # Sunday: the next week has not closed
    assert last_closed_week(dt.date(2024, 3, 15)) == W1  # Friday: this week is still open


def test_week_periods_parse_and_bad_ones_say_the_format():
    assert week_from_period("2024-03-10 to 2024-03-17") == W2
    with pytest.raises(ValueError, match="YYYY-MM-DD to YYYY-MM-DD"):
        week_from_period("week 11")


def test_the_realized_outcome_is_the_close_to_close_return_in_fingpt_bins():
    found = realized_outcome(CLOSES, W2, symbol="AXP")
    assert (found.start_close.date, found.end_close.date) == (dt.date(2024, 3, 8), dt.date(2024, 3, 15))
    assert found.realized_return == pytest.approx(0.03)
    assert found.actual == MoveBin("up", 3)  # "up by 2-3%": exactly 3% is the 2-3% bin
    assert found.previous_return == pytest.approx(-0.01)
    assert found.momentum == MoveBin("down", 1)  # last week's -1.00% is "down by 0-1%"


def test_a_holiday_friday_week_closes_on_thursday():
    closes = [DailyClose(date=dt.date(2024, 3, 22), close=100.0), DailyClose(date=dt.date(2024, 3, 28), close=95.0)]
    good_friday_week = Week(dt.date(2024, 3, 24), dt.date(2024, 3, 31))
    found = realized_outcome(closes, good_friday_week, symbol="AXP")
    assert found.end_close.date == dt.date(2024, 3, 28)
    assert found.actual == MoveBin("down", 5)
    assert found.previous_return is None and found.momentum is None  # nothing before the 22nd


def test_no_close_in_the_target_week_is_no_outcome():
    with pytest.raises(NoPriceData, match="2024-03-24 to 2024-03-31"):
        realized_outcome(CLOSES, Week(dt.date(2024, 3, 24), dt.date(2024, 3, 31)), symbol="AXP")


def test_momentum_reads_a_flat_week_as_down_like_the_evaluator():
    assert momentum_bin(0.0) == MoveBin("down", 1)
    assert momentum_bin(0.021) == MoveBin("up", 3)
    assert momentum_bin(-0.07) == MoveBin("down", 6)


def test_the_price_window_reaches_back_to_the_momentum_week():
    assert price_window([W2, W1]) == (W1.previous(2).start, W2.end)


# ---- which forecasts count ------------------------------------------------------------------------------------


def test_the_last_forecast_before_the_open_counts_and_hindsight_never_does():
    early = entry("early", W2, at(8), "Up by 2-3%")
    standing = entry("standing", W2, at(11, 8), "Down by 1-2%")  # the Monday digest, before 09:30
    hindsight = entry("hindsight", W2, at(12), "Up by 2-3%")  # Tuesday: the week was already trading
    other_ticker = entry("ko", W2, at(8), "Up by 0-1%", symbol="KO")
    counted, excluded = select_counted([hindsight, standing, other_ticker, early])
    assert [e.entry_id for e in counted] == ["standing", "ko"]
    assert excluded == {"early": SUPERSEDED, "hindsight": LATE}


# ---- the scores -----------------------------------------------------------------------------------------------


@pytest.fixture
def track() -> TrackReport:
    """Hand-made record, latest week W2:
    AXP W1  Down by 0-1%   actual down by 0-1%  hit,  error (-0.5 - -0.5)² = 0
    AXP W2  Down by 1-2%   actual up by 2-3%    miss, error (-1.5 - 2.5)² = 16
    KO  W2  unparsed       actual up by 2-3%    miss, no error (not parsed)
    AXP W2  Up by 2-3%     superseded by the Down by 1-2% requested a day later
    AXP W1  Up by 0-1%     requested on the Tuesday of W1: hindsight
    AXP W3  Down by 4-5%   pending (not scored)
    """
    entries = [
        entry("axp-w1", W1, at(1), "Down by 0-1%"),
        entry("axp-w2-early", W2, at(8), "Up by 2-3%"),
        entry("axp-w2", W2, at(9), "Down by 1-2%"),
        entry("ko-w2", W2, at(9), None, symbol="KO"),
        entry("axp-w1-late", W1, at(5), "Up by 0-1%"),
        entry("axp-w3", W3, at(15), "Down by 4-5%", scored=False),
    ]
    return score_track(entries, latest=W2)


def test_counts_say_what_was_scored_pending_unparsed_and_left_out(track):
    assert track.counts == Counts(scored=3, scored_this_week=2, pending=1, unparsed=1, superseded=1, late=1, weeks=2,
                                  tickers=2)
    assert track.unparsed == (Unparsed(entry_id="ko-w2", symbol="KO", period=W2.period),)
    assert track.excluded == {"axp-w2-early": SUPERSEDED, "axp-w1-late": LATE}


def test_cumulative_hit_rate_and_mse_of_the_model_count_unparsed_as_misses(track):
    model = track.cumulative.model
    assert (model.n, model.hits, model.parsed) == (3, 1, 2)
    assert model.binary_accuracy_all == pytest.approx(1 / 3)  # unparsed KO is a miss
    assert model.binary_accuracy == pytest.approx(1 / 2)  # over parsed only
    assert model.mse == pytest.approx((0 + 16) / 2)


def test_baselines_answer_for_the_same_tickers_and_weeks(track):
    down, up, momentum = track.cumulative.down, track.cumulative.up, track.cumulative.momentum
    # Down by 0-1% (-0.5): AXP W1 hit (0), AXP W2 miss (-0.5-2.5)²=9, KO W2 miss 9.
    assert (down.hits, down.n, down.mse) == (1, 3, pytest.approx(18 / 3))
    # Up by 0-1% (+0.5): AXP W1 miss (0.5+0.5)²=1, AXP W2 hit (0.5-2.5)²=4, KO W2 hit 4.
    assert (up.hits, up.n, up.mse) == (2, 3, pytest.approx(9 / 3))
    # Momentum: W1's forecast repeats W0 (up by 1-2%, +1.5) against down by 0-1%: miss, 4; W2's repeats W1
    # (down by 0-1%, -0.5) against up by 2-3%: miss, 9, for AXP and KO.
    assert (momentum.hits, momentum.n, momentum.mse) == (0, 3, pytest.approx(22 / 3))


def test_the_latest_week_alone(track):
    week = track.week
    assert (week.model.hits, week.model.n, week.model.mse) == (0, 2, pytest.approx(16))
    assert week.up.hits == 2 and week.down.hits == 0


def test_by_ticker(track):
    assert list(track.by_ticker) == ["AXP", "KO"]
    axp = track.by_ticker["AXP"].model
    assert (axp.n, axp.hits, axp.mse) == (2, 1, pytest.approx(8))
    ko = track.by_ticker["KO"].model
    assert (ko.n, ko.hits, ko.mse) == (1, 0, None)


def test_the_interval_resamples_whole_weeks(track):
    # Two weeks: W1 holds 1 hit of 1, W2 0 of 2. Drawing {W1,W1} gives 100%, {W2,W2} 0%, a mix 1/3, so the 95%
    # interval spans [0, 1]. Resampling the three rows alone would make 1/3 and 2/3 possible too; here they are
    # not the bounds because whole weeks move together.
    assert track.cumulative.model.ci95_binary_accuracy_all == (0.0, 1.0)


def test_the_chart_series_is_the_cumulative_hit_rate_week_by_week(track):
    first, second = track.series
    assert (first.period, first.end, first.n) == (W1.period, dt.date(2024, 3, 10), 1)
    assert first.hit_rates == PerSystem[float](model=1, down=1, up=0, momentum=0)
    assert second.n == 3
    assert second.hit_rates.model == pytest.approx(1 / 3) and second.hit_rates.up == pytest.approx(2 / 3)


def test_a_momentum_baseline_without_a_previous_week_is_a_miss():
    lonely = TrackEntry("x", "AXP", W1, at(1), True, "down", "0-1%", "Down by 0-1%",
                        realized_return=-0.01, previous_return=None)
    report = score_track([lonely], latest=W1)
    assert report.cumulative.momentum.hits == 0
    assert report.cumulative.momentum.parsed == 0
    assert report.cumulative.model.hits == 1


def test_nothing_scored_yet_is_an_empty_record_not_an_error():
    report = score_track([entry("axp-w3", W3, at(15), "Down by 4-5%", scored=False)], latest=W2)
    assert report.cumulative is None and report.week is None and report.series == ()
    assert report.counts.pending == 1 and report.counts.scored == 0


def test_calibration_covers_counted_scored_forecasts_with_a_probability():
    entries = [
        entry("axp-w1", W1, at(1), "Down by 0-1%", p_up=0.2),  # went down: (0.2 - 0)² = 0.04
        entry("axp-w2", W2, at(9), "Up by 2-3%", p_up=0.9),  # went up: (0.9 - 1)² = 0.01
        entry("ko-w2", W2, at(9), "Up by 0-1%", symbol="KO", p_up=0.4),  # went up: (0.4 - 1)² = 0.36
        entry("ko-w1", W1, at(1), "Down by 0-1%", symbol="KO"),  # no probability (an older entry): left out
        entry("axp-w2-late", W2, at(12), "Up by 2-3%", p_up=0.0),  # hindsight: never counted
        entry("axp-w3", W3, at(15), "Down by 4-5%", scored=False, p_up=0.5),  # pending
    ]
    calibration = score_track(entries, latest=W3).calibration
    assert calibration.n == 3 and calibration.brier == pytest.approx((0.04 + 0.01 + 0.36) / 3)
    # Bins [0.2, 0.3): 0 of 1 up, |0 - 0.2|; [0.9, 1]: 1 of 1, |1 - 0.9|; [0.4, 0.5): 1 of 1, |1 - 0.4|; / 3 each.
    assert calibration.ece == pytest.approx((0.2 + 0.1 + 0.6) / 3)
    assert calibration.enough is False and calibration.min_n == MIN_CALIBRATED == 20


def test_calibration_is_none_without_probabilities_and_enough_from_the_minimum():
    assert score_track([entry("axp-w1", W1, at(1), "Down by 0-1%")], latest=W1).calibration is None
    many = [entry(f"s{i}", W1, at(1), "Down by 0-1%", symbol=f"S{i}", p_up=0.3) for i in range(MIN_CALIBRATED)]
    assert score_track(many, latest=W1).calibration.enough is True
    assert score_track(many[1:], latest=W1).calibration.enough is False


# ---- the report against the evaluator's own code --------------------------------------------------------------


def _evaluator_systems(entries: list[TrackEntry], *, bootstrap: int, seed: int = 0) -> dict[str, dict]:
    """{system: `engine.evaluation.metrics`' per-system figures plus `hits`}, run on the entries themselves: the
    evaluator's code (as `forecaster evaluate` scores the model and the baselines), not the track record's sums."""
    from engine.data.fingpt_rows import EvalRow
    from engine.evaluation.metrics import _direction_metrics
    from engine.parsing import MAGNITUDES, Forecast

    def answer(b: MoveBin | None) -> Forecast:
        if b is None:  # momentum without a previous week: no answer, a miss
            return Forecast(raw="", positives=(), concerns=(), direction="none", magnitude=None, prediction="",
                            analysis="", parsed=False)
        return Forecast(raw=b.prediction_text, positives=(), concerns=(), direction=b.direction,
                        magnitude=MAGNITUDES[b.k - 1], prediction=b.prediction_text, analysis="", parsed=True)

    from engine.market.weeks import move_bin

    rows = [EvalRow(e.symbol, e.week.period, "", "", move_bin(e.realized_return).label) for e in entries]
    # The evaluator's baselines (BASELINE_DOWN, BASELINE_UP, BASELINE_MOMENTUM), as the report names them.
    answers = {
        # The stored prediction as the evaluator's Forecast: scored as the user saw it, not re-parsed.
        "model": [Forecast(raw=e.as_written, positives=(), concerns=(), direction=e.direction, magnitude=e.magnitude,
                           prediction=e.as_written, analysis="", parsed=e.parsed) for e in entries],
        "down": [answer(MoveBin("down", 1))] * len(entries),
        "up": [answer(MoveBin("up", 1))] * len(entries),
        "momentum": [answer(None if e.previous_return is None else momentum_bin(e.previous_return))
                     for e in entries],
    }
    result = {}
    for system, given in answers.items():
        metrics = _direction_metrics(rows, given, bootstrap=bootstrap, seed=seed)
        metrics["hits"] = round(metrics["binary_accuracy_all"] * len(rows))
        result[system] = metrics
    return result


def test_every_figure_is_the_evaluators_own_on_the_same_forecasts():
    """Three tickers over four weeks: unparsed answers, a week without momentum (no prices before it), forecasts
    with and without a probability, a superseded and a late one; each figure checked against `engine.evaluation`'s
    metrics and calibration code run on the counted entries directly."""
    from engine.evaluation.calibration import probability_metrics
    from engine.market.weeks import move_bin
    from tests.same_report import assert_same

    entries = [
        entry("axp-w0", W0, at(23, month=2), "Up by 1-2%", p_up=0.7),
        entry("ko-w0", W0, at(23, month=2), None, symbol="KO", p_up=0.45),
        entry("axp-w1", W1, at(1), "Down by 0-1%", p_up=0.3),
        entry("ko-w1", W1, at(1), "Up by more than 5%", symbol="KO"),
        entry("msft-w1", W1, at(1), "Down by 4-5%", symbol="MSFT", p_up=0.05),
        entry("axp-w2-early", W2, at(8), "Up by 2-3%"),
        entry("axp-w2", W2, at(9), "Down by 1-2%", p_up=0.55),
        entry("ko-w2", W2, at(9), "Up by 2-3%", symbol="KO", p_up=0.95),
        entry("msft-w2", W2, at(9), None, symbol="MSFT"),
        entry("msft-w2-late", W2, at(12), "Up by 2-3%", symbol="MSFT", p_up=0.99),
        entry("axp-w3", W3, at(15), "Down by 4-5%", p_up=0.2),
        entry("ko-w3", W3, at(15), "Up by 0-1%", symbol="KO"),
    ]
    report = score_track(entries, latest=W3, bootstrap=300, seed=7)
    counted = [e for e in select_counted(entries)[0] if e.scored]
    assert len(counted) == 10

    assert_same(report.cumulative.model_dump(), _evaluator_systems(counted, bootstrap=300, seed=7), "cumulative")
    assert_same(report.week.model_dump(),
                _evaluator_systems([e for e in counted if e.week == W3], bootstrap=300, seed=7), "week")
    for symbol in ("AXP", "KO", "MSFT"):
        assert_same(report.by_ticker[symbol].model_dump(),
                    _evaluator_systems([e for e in counted if e.symbol == symbol], bootstrap=300, seed=7), symbol)
    for point, week in zip(report.series, (W0, W1, W2, W3), strict=True):
        so_far = _evaluator_systems([e for e in counted if e.week <= week], bootstrap=0)
        assert (point.period, point.end, point.n) == (week.period, week.end, so_far["model"]["n"])
        assert_same(point.hit_rates.model_dump(), {s: m["binary_accuracy_all"] for s, m in so_far.items()})
    with_p = [e for e in counted if e.p_up is not None]
    expected = probability_metrics([e.p_up for e in with_p], [move_bin(e.realized_return).direction == "up"
                                                              for e in with_p])
    assert_same(report.calibration.model_dump(), {**expected, "enough": False, "min_n": MIN_CALIBRATED},
                "calibration")


def test_the_report_comes_back_from_its_json_as_it_was_and_another_shape_is_refused(track):
    from pydantic import ValidationError

    stored = json.dumps(track.to_json())  # as the ledger stores it
    assert TrackReport.from_json(json.loads(stored)) == track  # floats and all
    renamed = json.loads(stored)
    renamed["overall"] = renamed.pop("cumulative")
    with pytest.raises(ValidationError, match="overall"):
        TrackReport.from_json(renamed)

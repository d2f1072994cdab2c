"""What a job needs from Slack, as a port: jobs sit below the Slack surface (forecaster → bot → jobs → engine), so
they name what they use here and `bot.outbox.SlackOutbox` provides it; the composition root (`forecaster worker`)
puts one in `runtime.WorkerContext.slack`.

Three things, nothing more:
- the sends: post, edit, delete, an ephemeral note, a file upload, a slash command's response_url;
- how a failed send is to be read: a `Refusal` no retry can change (the channel or token is closed to us, or Slack
  refused the payload we built), a message someone deleted (`message_gone`), or any answer from Slack at all
  (`api_error`), as opposed to a network failure;
- the layouts: the messages a job sends, built by the Slack surface (mrkdwn, Block Kit, Slack's limits).

A message is `(text, blocks)`: the notification text and the Block Kit blocks, as Slack takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.evaluation.track_report import TrackReport
from engine.forecast_record import ForecastRecord
from jobs.ledger.views import Feedback

Message = tuple[str, list[dict]]


@dataclass(frozen=True)
class Refusal:
    """Slack refused a send for a reason that sending again cannot change. `error` is Slack's code
    (`not_in_channel`, `invalid_auth`, `invalid_blocks`...). `closed`: the channel or the token is closed to us,
    so nothing more can be posted there; otherwise Slack refused this payload (our bug) and takes another."""

    error: str
    closed: bool


class JobLayouts(Protocol):
    """The message builders jobs use. Data passed in is escaped by the builder; `status` and `note` strings are
    our mrkdwn, with any data in them already passed through `inline` or `code`."""

    def progress_message(self, status: str) -> Message: ...

    def forecast_message(self, data: ForecastRecord) -> Message: ...

    def sources_message(self, data: ForecastRecord) -> Message:
        """The "Sources" reply in a forecast's thread: every news item the model read."""
        ...

    def digest_message(self, week: str, forecasts: list[ForecastRecord], failures: dict[str, str], *,
                       watchlist: list[str] | None = None) -> Message: ...

    def watch_added_message(self, *, channel: str, added: list[str], already: list[str],
                            refused: dict[str, tuple[str, str]], over_cap: list[str], size: int, cap: int) -> Message:
        """What `/watch add` did; `refused`: ticker → (what happened, what to do), in plain words."""
        ...

    def failure_message(self, what: str, reason: str, *, hint: str = "") -> Message: ...

    def with_note(self, blocks: list[dict], note: str) -> list[dict]:
        """`blocks` with a small-print `note` under them, still one message Slack takes."""
        ...

    def with_votes(self, blocks: list[dict], forecast_id: str) -> list[dict]:
        """`blocks` with the 👍/👎 buttons under them, voting on the ledger's forecast `forecast_id`."""
        ...

    def training_status(self, *, requested_by: str, step: int, max_steps: int, epoch: float, loss: float | None,
                        eta_s: float | None) -> str: ...

    def evaluation_status(self, *, requested_by: str, done: int, total: int) -> str: ...

    def retrain_result_message(self, *, version: str, promoted: bool, reason: str, new: dict, current: dict | None,
                               current_version: str | None, training: dict,
                               decided_by: str | None = None) -> Message: ...

    def summary_message(self, report: TrackReport, *, feedback: Feedback | None = None,
                        failures: dict[str, str] | None = None) -> Message:
        """The weekly summary of `report`, with the votes so far (`jobs.ledger.votes.tally`)."""
        ...

    def refusal_fix(self, error: str, channel: str) -> str:
        """What the requester can do about Slack's permanent refusal `error` in `channel` (mrkdwn)."""
        ...

    def inline(self, text: str) -> str:
        """Data made safe for one line of our mrkdwn."""
        ...

    def code(self, text: str) -> str:
        """Data shown as inline code."""
        ...


class SlackPort(Protocol):
    """Slack as a job sees it. Sends raise what the transport raised; read it with `refusal` or `api_error`."""

    layouts: JobLayouts

    def post_message(self, *, channel: str, text: str, blocks: list[dict], thread_ts: str | None = None) -> str:
        """Post to a channel (or a thread); returns the message's ts."""
        ...

    def update_message(self, *, channel: str, ts: str, text: str, blocks: list[dict]) -> None: ...

    def delete_message(self, *, channel: str, ts: str) -> None: ...

    def post_ephemeral(self, *, channel: str, user: str, text: str, blocks: list[dict],
                       thread_ts: str | None = None) -> None: ...

    def upload_file(self, *, channel: str, content: bytes, filename: str, title: str, thread_ts: str | None = None,
                    alt_text: str | None = None) -> str:
        """Share a file in a channel (or a thread); returns the file's id."""
        ...

    def send_to_response_url(self, url: str, *, text: str, blocks: list[dict], in_channel: bool,
                             replace_original: bool) -> bool:
        """True: shown; False: refused, certainly not shown. Raises when nobody knows (a timeout, a 5xx)."""
        ...

    def refusal(self, exc: BaseException) -> Refusal | None:
        """The refusal `exc` is, when no retry can change it; None otherwise (a network error, a 5xx, a rate
        limit, an unknown code)."""
        ...

    def api_error(self, exc: BaseException) -> str | None:
        """Slack's error code when `exc` is any answer from Slack refusing a call; None when Slack never answered."""
        ...

    def message_gone(self, exc: BaseException) -> bool:
        """Whether `exc` is Slack saying the message an edit or delete named no longer exists (someone deleted it)."""
        ...

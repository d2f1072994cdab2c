"""`SlackOutbox`: the Slack that jobs talk to (`jobs.slack_port.SlackPort`), over one WebClient. The composition
root wraps the client it builds in one and hands it to the worker's context; jobs never import bot."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import job_layouts, slack_ops
from bot.slack_ops import CHANNEL_REFUSALS, TOKEN_REFUSALS
from jobs.slack_port import JobLayouts, Refusal, SlackPort


class SlackOutbox(SlackPort):
    """Every send goes through `bot.slack_ops`; Slack's errors are read here, where their codes are known."""

    layouts: JobLayouts = job_layouts  # a module: its functions are the layouts

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post_message(self, *, channel: str, text: str, blocks: list[dict], thread_ts: str | None = None) -> str:
        return slack_ops.post_message(self.client, channel=channel, text=text, blocks=blocks, thread_ts=thread_ts)

    def update_message(self, *, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
        slack_ops.update_message(self.client, channel=channel, ts=ts, text=text, blocks=blocks)

    def delete_message(self, *, channel: str, ts: str) -> None:
        slack_ops.delete_message(self.client, channel=channel, ts=ts)

    def post_ephemeral(self, *, channel: str, user: str, text: str, blocks: list[dict],
                       thread_ts: str | None = None) -> None:
        slack_ops.post_ephemeral(self.client, channel=channel, user=user, text=text, blocks=blocks,
                                 thread_ts=thread_ts)

    def upload_file(self, *, channel: str, content: bytes, filename: str, title: str, thread_ts: str | None = None,
                    alt_text: str | None = None) -> str:
        return slack_ops.upload_file(self.client, channel=channel, content=content, filename=filename, title=title,
                                     thread_ts=thread_ts, alt_text=alt_text)

    def send_to_response_url(self, url: str, *, text: str, blocks: list[dict], in_channel: bool,
                             replace_original: bool) -> bool:
        return slack_ops.send_to_response_url(url, text=text, blocks=blocks, in_channel=in_channel,
                                              replace_original=replace_original)

    def refusal(self, exc: BaseException) -> Refusal | None:
        error = slack_ops.permanent_refusal(exc)
        return Refusal(error, closed=error in CHANNEL_REFUSALS | TOKEN_REFUSALS) if error else None

    def api_error(self, exc: BaseException) -> str | None:
        if not isinstance(exc, SlackApiError):
            return None
        return (exc.response.get("error") if exc.response is not None else None) or "unknown error"

    def message_gone(self, exc: BaseException) -> bool:
        return self.api_error(exc) in slack_ops.MESSAGE_GONE

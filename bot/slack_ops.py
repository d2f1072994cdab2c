"""Every call to Slack's Web API goes through here. No Redis, no model: just Slack."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient


def build_client(token: str, *, base_url: str | None = None) -> WebClient:
    """A WebClient that honours 429 Retry-After (slack_sdk retries only connection errors by default)."""
    kwargs = {"base_url": base_url} if base_url else {}
    client = WebClient(token=token, **kwargs)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    return client


def post_message(client: WebClient, *, channel: str, text: str, blocks: list[dict],
                 thread_ts: str | None = None) -> str:
    """Post to a channel (or a thread); returns the message's ts."""
    response = client.chat_postMessage(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts)
    return response["ts"]


def upload_file(client: WebClient, *, channel: str, content: bytes, filename: str, title: str,
                thread_ts: str | None = None, alt_text: str | None = None) -> str:
    """Share a file in a channel (or a thread) through files_upload_v2 (get an upload URL, send the bytes, complete
    the upload); returns the file's id. Needs the `files:write` scope."""
    response = client.files_upload_v2(channel=channel, content=content, filename=filename, title=title,
                                      thread_ts=thread_ts, alt_txt=alt_text)
    return response["file"]["id"]


def update_message(client: WebClient, *, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
    """Edit a message the bot posted (progress turning into the answer)."""
    client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)


def send_to_response_url(url: str, *, text: str, blocks: list[dict], in_channel: bool, replace_original: bool,
                         timeout_s: float = 10.0) -> bool:
    """Answer through a slash command's response_url. False when Slack refuses (expired, used up): the caller
    falls back to chat.postMessage. Connection errors and 429s are retried by the client first."""
    hook = WebhookClient(url, timeout=int(timeout_s), retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    response = hook.send(text=text, blocks=blocks, response_type="in_channel" if in_channel else "ephemeral",
                         replace_original=replace_original)
    return response.status_code == 200

"""Every call to Slack's Web API goes through here. No Redis, no model: just Slack."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry import RateLimitErrorRetryHandler


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

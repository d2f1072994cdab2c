"""Every call to Slack's Web API goes through here. No Redis, no model: just Slack."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

log = logging.getLogger(__name__)

# Slack's answers that no retry can change: the bot cannot post where it was asked to, or its token is dead.
# Sending again later only repeats the refusal (and a retried job would run the model again for nothing).
CHANNEL_REFUSALS = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action",
                              "ekm_access_denied", "team_access_not_granted"})
TOKEN_REFUSALS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                            "missing_scope", "no_permission", "org_login_required"})
# Slack refused the payload itself: our bug, and the same payload is refused again.
PAYLOAD_REFUSALS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_too_long", "msg_blocks_too_long",
                              "no_text", "invalid_arguments", "too_many_attachments"})
PERMANENT_REFUSALS = CHANNEL_REFUSALS | TOKEN_REFUSALS | PAYLOAD_REFUSALS
# An edit or delete named a message that is no longer there (someone deleted it): post a new one instead.
MESSAGE_GONE = frozenset({"message_not_found"})


def permanent_refusal(exc: BaseException) -> str | None:
    """Slack's error code when `exc` is an answer from Slack that a retry cannot change; None otherwise
    (a connection error, a 5xx, a rate limit that outlasted the retry handler, an unknown code)."""
    if not isinstance(exc, SlackApiError) or exc.response is None:
        return None
    error = exc.response.get("error")
    return error if error in PERMANENT_REFUSALS else None


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


def post_ephemeral(client: WebClient, *, channel: str, user: str, text: str, blocks: list[dict],
                   thread_ts: str | None = None) -> None:
    """Show a message to one person in a channel or thread (nobody else sees it). Slack requires the bot to be in
    the channel, so this fails where a channel post would."""
    client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks, thread_ts=thread_ts)


def delete_message(client: WebClient, *, channel: str, ts: str) -> None:
    """Remove a message the bot posted (a progress note whose request ended in a private answer)."""
    client.chat_delete(channel=channel, ts=ts)


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


class ResponseUrlUnanswered(Exception):
    """A response_url answered with a server error: Slack may or may not have shown the message."""


def send_to_response_url(url: str, *, text: str, blocks: list[dict], in_channel: bool, replace_original: bool,
                         timeout_s: float = 10.0) -> bool:
    """Answer through a slash command's response_url. True: Slack showed it; False: Slack refused it (expired, used
    up, a bad payload: HTTP 4xx), so it is certainly not shown and the caller may send it another way. A 5xx raises
    `ResponseUrlUnanswered`, and a connection error or timeout raises too: then nobody knows whether it was shown
    (a response_url message has no ts to look up). 429s are retried by the client first."""
    hook = WebhookClient(url, timeout=int(timeout_s), retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    response = hook.send(text=text, blocks=blocks, response_type="in_channel" if in_channel else "ephemeral",
                         replace_original=replace_original)
    if response.status_code != 200:  # the body is Slack's error code (expired_url, invalid_blocks...); no secrets
        log.warning("response_url refused the message: HTTP %s %s", response.status_code, response.body[:100])
    if response.status_code >= 500:
        raise ResponseUrlUnanswered(f"response_url answered HTTP {response.status_code}")
    return response.status_code == 200

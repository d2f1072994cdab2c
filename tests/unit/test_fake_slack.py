"""The fake Slack answers the way Slack's Web API and response_urls do, through the real slack_sdk clients: what
the product's error paths are tested against."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.slack_ops import permanent_refusal

SECTION = [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]


@pytest.fixture
def client(slack):
    return WebClient(token="xoxb-good", base_url=slack.api_url)


def refusal(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        call()
    assert caught.value.response.status_code == 200 and caught.value.response["ok"] is False  # as Slack does
    return caught.value


@pytest.mark.parametrize(("blocks", "text", "error"), [
    ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "t", "invalid_blocks"),
    ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "t", "invalid_blocks"),
    ([{"type": "section", "text": {"type": "mrkdwn", "text": ""}}], "t", "invalid_blocks"),
    ([{"type": "no-such-block"}], "t", "invalid_blocks"),
    (SECTION * 51, "t", "invalid_blocks"),
    (SECTION, "x" * 40_001, "msg_too_long"),
])
def test_a_message_slack_would_refuse_is_refused_and_not_shown(slack, client, blocks, text, error):
    for call in (lambda: client.chat_postMessage(channel="C1", text=text, blocks=blocks),
                 lambda: client.chat_update(channel="C1", ts="1.2", text=text, blocks=blocks),
                 lambda: client.chat_postEphemeral(channel="C1", user="U1", text=text, blocks=blocks)):
        assert refusal(call).response["error"] == error
    assert slack.calls == [] and slack.messages() == [] and [c.error for c in slack.refused] == [error] * 3
    assert permanent_refusal(refusal(lambda: client.chat_postMessage(channel="C1", text=text, blocks=blocks)))


def test_a_valid_message_at_the_limits_is_taken(slack, client):
    client.chat_postMessage(channel="C1", text="x" * 40_000,
                            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3000}}])
    assert len(slack.messages("C1")) == 1 and slack.refused == []


@pytest.mark.parametrize("error", ["not_in_channel", "channel_not_found", "is_archived"])
def test_a_channel_told_to_refuse_refuses_every_chat_call_but_not_others_or_response_urls(slack, client, error):
    slack.refuse_channel("C1", error)
    for call in (lambda: client.chat_postMessage(channel="C1", text="hi"),
                 lambda: client.chat_update(channel="C1", ts="1.2", text="hi"),
                 lambda: client.chat_postEphemeral(channel="C1", user="U1", text="hi"),
                 lambda: client.chat_delete(channel="C1", ts="1.2")):
        assert permanent_refusal(refusal(call)) == error
    client.chat_postMessage(channel="C2", text="elsewhere")
    assert WebhookClient(slack.hook_url()).send(text="hi", response_type="in_channel").status_code == 200
    assert [m["text"] for m in slack.messages()] == ["elsewhere"] and slack.hooks()[0]["text"] == "hi"


@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked", "account_inactive"])
def test_a_token_told_to_refuse_gets_the_error_on_every_method(slack, client, error):
    slack.refuse_token("xoxb-good", error)
    assert permanent_refusal(refusal(lambda: client.auth_test())) == error
    assert permanent_refusal(refusal(lambda: client.chat_postMessage(channel="C1", text="hi"))) == error
    WebClient(token="xoxb-other", base_url=slack.api_url).chat_postMessage(channel="C1", text="hi")
    assert len(slack.messages()) == 1


def test_a_response_url_refuses_a_bad_payload_with_an_http_error_and_plain_text(slack):
    answer = WebhookClient(slack.hook_url()).send(
        text="hi", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}])
    assert (answer.status_code, answer.body) == (400, "invalid_blocks")  # Slack's hooks: HTTP 400, the code as text
    assert slack.hooks() == []


def test_ephemerals_and_deletes_are_kept_as_slack_shows_them(slack, client):
    ts = client.chat_postMessage(channel="C1", text="working…")["ts"]
    answer = client.chat_postEphemeral(channel="C1", user="U1", text="only you", blocks=SECTION)
    assert answer["message_ts"]
    client.chat_delete(channel="C1", ts=ts)
    assert slack.messages() == [] and [e["text"] for e in slack.ephemerals(user="U1")] == ["only you"]
    assert slack.ephemerals(user="U2") == []


def test_passing_failures_are_not_permanent(slack, client):
    slack.fail_next("chat.postMessage", 500)
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="C1", text="hi")
    assert caught.value.response["error"] == "fatal_error" and permanent_refusal(caught.value) is None
    assert permanent_refusal(ConnectionError("refused")) is None

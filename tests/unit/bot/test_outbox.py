"""`bot.outbox.SlackOutbox` is the Slack jobs talk to (`jobs.slack_port.SlackPort`): it sends through the real
slack_sdk client (here to the fake Slack), reads Slack's refusals the way the jobs need them told apart, and
carries every layout the port names, with the port's signatures (nothing checks a Protocol at run time: this
does)."""

from __future__ import annotations

import inspect

import pytest

from bot import job_layouts
from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from jobs.slack_port import JobLayouts, Refusal, SlackPort
from tests.slack_limits import slack_problems

SECTION = [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}]


@pytest.fixture
def outbox(slack):
    return SlackOutbox(build_client("xoxb-good", base_url=slack.api_url))


def _members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")} | set(protocol.__annotations__)


def _parameters(function) -> list[tuple[str, object, object]]:
    # Names, kinds and defaults: what a caller relies on (annotations are strings here, and may differ in spelling).
    params = inspect.signature(function).parameters.values()
    return [(p.name, p.kind, p.default) for p in params if p.name != "self"]


@pytest.mark.parametrize(("protocol", "implementation"), [(SlackPort, SlackOutbox), (JobLayouts, job_layouts)])
def test_the_outbox_and_its_layouts_have_every_member_of_the_port_with_its_signature(protocol, implementation):
    for name in _members(protocol) - {"layouts"}:
        assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
        assert _parameters(getattr(implementation, name)) == _parameters(getattr(protocol, name)), name
    assert SlackOutbox.layouts is job_layouts


def test_sends_reach_slack_and_answer_what_the_port_promises(slack, outbox):
    ts = outbox.post_message(channel="C1", text="working…", blocks=SECTION)
    outbox.update_message(channel="C1", ts=ts, text="done", blocks=SECTION)
    outbox.post_ephemeral(channel="C1", user="U1", text="only you", blocks=SECTION)
    file_id = outbox.upload_file(channel="C1", content=b"\x89PNG", filename="c.png", title="chart", thread_ts=ts)
    assert outbox.send_to_response_url(slack.hook_url(), text="hi", blocks=SECTION, in_channel=False,
                                       replace_original=True) is True
    assert [m["text"] for m in slack.messages("C1")] == ["done"] and file_id
    outbox.delete_message(channel="C1", ts=ts)
    assert slack.messages("C1") == [] and [e["text"] for e in slack.ephemerals(user="U1")] == ["only you"]


def _raised(call) -> BaseException:
    with pytest.raises(Exception) as caught:  # noqa: PT011 — what the transport raises is the point
        call()
    return caught.value


@pytest.mark.parametrize("error", ["not_in_channel", "is_archived"])
def test_a_channel_closed_to_us_is_a_closed_refusal(slack, outbox, error):
    slack.refuse_channel("C1", error)
    raised = _raised(lambda: outbox.post_message(channel="C1", text="hi", blocks=SECTION))
    assert outbox.refusal(raised) == Refusal(error, closed=True) and outbox.api_error(raised) == error


def test_a_dead_token_is_closed_and_a_refused_payload_is_not(slack, outbox):
    too_long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    payload = _raised(lambda: outbox.post_message(channel="C1", text="hi", blocks=too_long))
    assert outbox.refusal(payload) == Refusal("invalid_blocks", closed=False)
    slack.refuse_token("xoxb-good", "token_revoked")
    token = _raised(lambda: outbox.update_message(channel="C1", ts="1.2", text="hi", blocks=SECTION))
    assert outbox.refusal(token) == Refusal("token_revoked", closed=True)


def test_a_passing_failure_is_no_refusal_but_still_an_answer_from_slack_and_a_lost_connection_is_neither(
        slack, outbox):
    slack.fail_next("chat.postMessage", 500)
    server_error = _raised(lambda: outbox.post_message(channel="C1", text="hi", blocks=SECTION))
    assert outbox.refusal(server_error) is None and outbox.api_error(server_error) == "fatal_error"
    assert outbox.refusal(ConnectionError("refused")) is None and outbox.api_error(ConnectionError("x")) is None


def test_a_message_someone_deleted_is_gone_not_a_refusal(slack, outbox):
    ts = outbox.post_message(channel="C1", text="working…", blocks=SECTION)
    slack.delete(ts)  # by a person, in Slack
    for call in (lambda: outbox.update_message(channel="C1", ts=ts, text="done", blocks=SECTION),
                 lambda: outbox.delete_message(channel="C1", ts=ts)):
        gone = _raised(call)
        assert outbox.message_gone(gone) and outbox.refusal(gone) is None
    assert not outbox.message_gone(ConnectionError("refused")) and slack.messages("C1") == []


def test_each_refusal_gets_its_fix_in_the_requesters_words():
    assert "`/invite @forecaster`" in job_layouts.refusal_fix("not_in_channel", "C1")
    assert "<#C1>" in job_layouts.refusal_fix("is_archived", "C1")
    assert "SLACK_BOT_TOKEN" in job_layouts.refusal_fix("token_revoked", "C1")
    assert "reinstall the app" in job_layouts.refusal_fix("missing_scope", "C1")  # no repository path for users
    assert "our bug" in job_layouts.refusal_fix("invalid_blocks", "C1")


def test_a_note_under_a_full_answer_still_fits_one_message():
    full = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 2900}} for _ in range(50)]
    blocks = job_layouts.with_note(full, "Shown to you alone.")
    assert slack_problems({"text": "answer", "blocks": blocks}) == [] and blocks[-1]["type"] == "context"
    assert blocks[-1]["elements"][0]["text"] == "Shown to you alone."

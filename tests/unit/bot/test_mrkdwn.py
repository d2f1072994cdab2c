"""bot.mrkdwn: text that is not ours reaches Slack as the text it is, never as markup."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.mrkdwn import clip, code, code_block, escape, inline, plain, prose, unescape


def test_the_three_control_characters_become_entities_and_nothing_else_changes():
    assert escape("P/E < 15") == "P/E &lt; 15"
    assert escape("<!channel> & <https://evil|bank.com>") == "&lt;!channel&gt; &amp; &lt;https://evil|bank.com&gt;"
    assert escape("*bold* _it_ ~s~ :x: é 株") == "*bold* _it_ ~s~ :x: é 株"
    # An entity in the data is data: Slack shows "&lt;" as written, not "<".
    assert escape("&lt;!here&gt;") == "&amp;lt;!here&amp;gt;"


@given(st.text())
def test_slack_shows_exactly_the_original_and_parses_nothing_in_it(text):
    escaped = escape(text)
    assert unescape(escaped) == text
    assert "<" not in escaped and ">" not in escaped
    assert all(escaped.startswith(("&amp;", "&lt;", "&gt;"), i) for i, c in enumerate(escaped) if c == "&")


def test_a_stray_code_fence_in_free_text_cannot_open_a_code_block():
    assert prose("see ```this\nand more") == "see '''this\nand more"
    assert prose("a `b` c") == "a `b` c"  # inline code stays inline: it closes on its own line


def test_a_line_of_data_stays_one_line_and_cannot_start_code_that_runs_on():
    assert inline("first\nsecond\r\nthird") == "first second third"
    assert inline("it's `fine` here") == "it's `fine` here"
    assert inline("one ` stray") == "one ' stray"
    assert inline("```x`") == "'''x'"
    assert code("A`B") == "`A'B`" and code("") == "` `" and code("<@U1>") == "`&lt;@U1&gt;`"
    assert code_block("x```y\n<z>") == "```x'''y\n&lt;z&gt;```"


def test_plain_text_keeps_its_characters_but_cannot_form_a_mention():
    assert plain("AT&T <!channel>") == "AT&T ‹!channel›"


def test_clipping_never_cuts_an_entity_in_half():
    text = escape("a" * 8 + "&&&&")  # "aaaaaaaa&amp;&amp;&amp;&amp;"
    for limit in range(9, len(text)):
        shortened = clip(text, limit)
        assert len(shortened) <= limit and shortened.endswith("…")
        body = shortened[:-1]
        assert unescape(body) == "a" * 8 + "&" * unescape(body).count("&")  # only whole entities survive
        assert not body.endswith(("&", "&a", "&am", "&amp"))
    assert clip("short", 10) == "short"

"""Text that is not ours, made safe for Slack: model answers, headlines, tickers, data-source errors.

Slack reads `&`, `<` and `>` as control characters in mrkdwn (https://api.slack.com/reference/surfaces/formatting
#escaping): `<!channel>` pings a channel, `<https://evil|bank.com>` disguises a link, "P/E < 15" is mangled.
`escape` is the one function that turns them into entities; the helpers below call it and add what their place
in a layout needs. Layouts apply them to data only, once, at the point where data meets our own formatting, so
our bold, code and mentions stay ours.
"""

from __future__ import annotations

import re

ELLIPSIS = "…"
_FENCE = re.compile(r"`{3,}")
_ENTITY_TAIL = re.compile(r"&[a-z]{0,3}$")  # a cut that would leave "&am" of "&amp;"
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")


def escape(text: str) -> str:
    """`&`, `<`, `>` as Slack's entities: what Slack shows is exactly `text`, and nothing in it is parsed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """What Slack shows for escaped text (the inverse of `escape`, for tests and logs)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def prose(text: str) -> str:
    """Free text at the end of a section (an analysis, a raw answer): escaped, and code fences broken, because a
    stray ``` would open a code block that runs over whatever the layout puts after it."""
    return _FENCE.sub(lambda m: "'" * len(m.group()), escape(text))


def inline(text: str) -> str:
    """One line of data inside our formatting (a list item, a table cell, a reason): escaped, on one line, no code
    fence, and no unpaired backtick (one would start inline code that swallows the rest of the line)."""
    text = _LINE_BREAKS.sub(" ", prose(text))
    return text.replace("`", "'") if text.count("`") % 2 else text


def code(text: str) -> str:
    """Data shown as inline code: `AXP`."""
    return "`" + (inline(text).replace("`", "'") or " ") + "`"


def code_block(text: str) -> str:
    """Data shown in a code block (a monospace table): escaped, kept on its lines, no backticks (one next to
    the closing fence would make it four)."""
    return "```" + escape(text).replace("`", "'") + "```"


def plain(text: str) -> str:
    """Data in a plain_text field (a header). Slack does not parse plain_text, and shows entities there as
    written, so nothing is escaped; angle brackets become look-alikes so no reading of it can form a mention."""
    return text.replace("<", "‹").replace(">", "›")


def safe_cut(text: str, at: int) -> int:
    """`at`, or just before it when cutting there would split an entity such as `&amp;`."""
    tail = _ENTITY_TAIL.search(text[:at])
    return tail.start() if tail else at


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, ending in … when cut, never inside an entity."""
    if len(text) <= limit:
        return text
    return text[: safe_cut(text, limit - len(ELLIPSIS))].rstrip() + ELLIPSIS


_WEB_URL = re.compile(r"https?://[^\s<>|\"]+", re.IGNORECASE)


def link(url: str, text: str, *, limit: int = 100) -> str:
    """`text` (data, clipped to `limit`) as a link to `url` in Slack's `<url|text>` syntax. The text is escaped, so
    no `>` or `<` in it can end the link or open another; the link is made only for a plain http(s) URL (no
    blank, `|`, quote or angle bracket in it), its `&` escaped as Slack asks; any other URL shows the text alone."""
    shown = clip(inline(text), limit) or "link"
    if not _WEB_URL.fullmatch(url.strip()):
        return shown
    return f"<{escape(url.strip())}|{shown}>"

"""Generated text in README.md and beside it: the block between two HTML-comment markers, replaced from the code,
and the generated files compared for `--check` or rewritten. Used by `config_table` and `structure`."""

from __future__ import annotations

from pathlib import Path


def marked_block(start: str, end: str, content: str) -> str:
    """`content` between its two markers, each on a line of its own."""
    return f"{start}\n{content}\n{end}"


def replace_block(readme: str, start: str, end: str, content: str) -> str | None:
    """`readme` with the block from `start` to `end` (the markers included) replaced by `content` between the same
    markers; nothing outside the block changes. None when `readme` has no `start` yet: the caller places the first
    block (`marked_block`)."""
    if start not in readme:
        return None
    head, _, rest = readme.partition(start)
    _, found, tail = rest.partition(end)
    if not found:
        raise ValueError(f"README.md has {start!r} but not {end!r}")
    return head + marked_block(start, end, content) + tail


def stale_files(targets: dict[Path, str]) -> list[Path]:
    """The files whose text is not their generated text (`targets`: path → text); a missing file is stale."""
    return [path for path, text in targets.items() if not path.is_file() or path.read_text(encoding="utf-8") != text]


def write_stale(targets: dict[Path, str]) -> list[Path]:
    """Rewrite the stale files with their generated text; returns them (none: all were up to date)."""
    stale = stale_files(targets)
    for path in stale:
        path.write_text(targets[path], encoding="utf-8")
    return stale

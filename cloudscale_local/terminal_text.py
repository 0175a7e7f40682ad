"""Text from outside (an event's fields, a request's path) made safe to write to a terminal.

What a producer or any web page sends may hold control characters: terminal escapes that set the
window's title, clear the screen or write the clipboard. Whatever a person reads at the terminal
(`cloudscale tail`, `cloudscale query`'s table, the host's invocation lines) shows them as text,
`\\x1b`, as Python's `repr` would; JSON, CSV and TSV output keeps the data as it is.
"""

from __future__ import annotations

__all__ = ["escape_controls"]


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with each unprintable character but those in `keep` written as its escape (`\\x1b`)."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or char in keep else char.encode("unicode_escape").decode("ascii") for char in text
    )

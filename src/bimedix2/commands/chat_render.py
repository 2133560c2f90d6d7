"""`bimedix2 chat` answers as Markdown at a terminal (rich), plain text when stdout is piped.

The answer streams as plain text, so it is readable while it arrives; when it ends, if it holds
Markdown and is still wholly on screen, the streamed rows are erased and the answer is printed
again rendered. Text is never reordered: right-to-left display (Arabic) is the terminal's job.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from typing import TextIO

_MARKDOWN = re.compile(
    r"(?m)^\s{0,3}(#{1,6}\s|[-*+]\s|\d{1,3}[.)]\s|>\s|```|\|.*\|\s*$)"  # heading, list, quote, code, table
    r"|\*\*[^*\n]+\*\*|__[^_\n]+__|`[^`\n]+`|\[[^\]\n]+\]\([^)\n]+\)"  # bold, code span, link
)


def looks_like_markdown(text: str) -> bool:
    """Whether rendering `text` as Markdown would change how it reads."""
    return bool(_MARKDOWN.search(text))


def rows_used(text: str, columns: int) -> int:
    """Terminal rows `text` followed by a newline occupies at `columns` wide (wide characters count double)."""
    from rich.cells import cell_len

    columns = max(1, columns)
    return sum(max(1, math.ceil(cell_len(line.expandtabs(8)) / columns)) for line in text.split("\n"))


class MarkdownRenderer:
    """Re-renders a streamed answer as Markdown at a terminal; does nothing when disabled or piped."""

    def __init__(self, out: TextIO, *, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled and _is_terminal(out) and os.environ.get("TERM", "") != "dumb"

    def rerender(self, text: str) -> bool:
        """Replace the streamed `text` (cursor on the line after it) by its rendering; return whether it did."""
        if not self.enabled or not looks_like_markdown(text):
            return False
        size = shutil.get_terminal_size()
        rows = rows_used(text, size.columns)
        if rows >= size.lines:  # partly scrolled off: it cannot be erased, leave it as streamed
            return False
        from rich.console import Console
        from rich.markdown import Markdown

        console = Console(file=self.out, width=size.columns)
        with console.capture() as captured:
            console.print(Markdown(text))
        rendered = captured.get().lstrip("\n")  # rich opens some blocks with a blank line
        self.out.write(f"\x1b[{rows}F\x1b[J")  # to the first streamed row, erase down
        self.out.write(rendered)
        self.out.flush()
        return True


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False

"""Building blocks of report tables: what a kind is handed (`ModelResults`) and gives back (`Table`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LANG_NAMES = {"en": "English", "ar": "Arabic", "bilingual": "Bilingual"}


@dataclass(frozen=True)
class Table:
    """One rendered table: title, header, rows of cells (already formatted), footnotes."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelResults:
    """One results file as a kind sees it: its (unique) label and its entries of that kind, in file order."""

    label: str
    tasks: Mapping[str, Mapping[str, Any]]  # task name -> results entry

    def metrics(self, task: str) -> Mapping[str, Any]:
        """The metrics of `task` ({} when the file has no such task)."""
        return self.tasks.get(task, {}).get("metrics", {})

    def ci(self, task: str, *path: str) -> Any:
        """The bootstrap 95% interval(s) of `task` under `path` (the metrics' nesting): a [lo, hi] pair, a
        mapping of them, or None (no interval: run without --bootstrap, or an older results file)."""
        node: Any = self.tasks.get(task, {}).get("ci95")
        for key in path:
            if not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node

    def protocol(self) -> str:
        """The protocol its entries ran under ("paper", "toolkit", "mixed"); "published" for entries
        citing a `source` (the shipped paper numbers); "" when none says."""
        found = {str(e["protocol"]) for e in self.tasks.values() if e.get("protocol")}
        if not found and self.tasks and all(e.get("source") for e in self.tasks.values()):
            return "published"
        return found.pop() if len(found) == 1 else ("mixed" if found else "")


def protocol_note(results: Sequence[ModelResults], labels: Sequence[str] | None = None) -> str:
    """A table footnote naming the protocol of each results file (of those in `labels`, when given)
    that has entries; "" when none records one."""
    named = [(r.label, r.protocol()) for r in results if r.tasks and (labels is None or r.label in labels)]
    if not any(p for _, p in named):
        return ""
    return "Protocol: " + "; ".join(f"{label}: {p or 'not recorded'}" for label, p in named) + "."


def pct(value: Any, scale: float = 100.0, digits: int = 1) -> str:
    """A fraction as a percentage cell; "-" for a missing number (never 0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value) * scale:.{digits}f}"


def cell(value: Any, ci: Any = None, scale: float = 100.0, digits: int = 1) -> str:
    """A metric cell: "71.0 [66.0, 76.0]" with its bootstrap 95% interval, "71.0" without one, "-" when missing."""
    text = pct(value, scale, digits)
    if text == "-" or not isinstance(ci, Sequence) or isinstance(ci, str) or len(ci) != 2 or None in ci:
        return text
    return f"{text} [{pct(ci[0], scale, digits)}, {pct(ci[1], scale, digits)}]"


def signed(value: Any, ci: Any = None, scale: float = 1.0, digits: int = 2) -> str:
    """A signed difference cell ("+1.25 [-0.50, +3.00]"); "-" when missing."""
    if value is None:
        return "-"
    text = f"{float(value) * scale:+.{digits}f}"
    if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2 and None not in ci:
        text += f" [{float(ci[0]) * scale:+.{digits}f}, {float(ci[1]) * scale:+.{digits}f}]"
    return text


def language_name(code: str) -> str:
    """English, Arabic, Bilingual, or the code itself."""
    return LANG_NAMES.get(code, code)

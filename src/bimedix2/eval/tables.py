"""Building blocks of report tables: what a kind is handed (`ModelResults`) and gives back (`Table`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
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


def pct(value: Any, scale: float = 100.0, digits: int = 1) -> str:
    """A fraction as a percentage cell; "-" for a missing number (never 0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value) * scale:.{digits}f}"


def language_name(code: str) -> str:
    """English, Arabic, Bilingual, or the code itself."""
    return LANG_NAMES.get(code, code)

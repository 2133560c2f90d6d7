"""Source builders: each reads one public dataset in its released on-disk layout and yields
`Record`s. ``build_source(name, root, out)`` streams them to JSONL and returns a `BuildReport`.

Images are referenced by path relative to the dataset folder; items whose image is missing are
skipped and counted in the report (never a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from ...errors import ConfigError, RecordError
from ..io import write_jsonl
from ..schema import Record
from . import llava_med, medmcqa, medqa, open_qa, path_vqa, pmc_oa, pmc_vqa, pubmedqa, slake, vqa_rad
from .common import BuildReport

Builder = Callable[[Path, BuildReport], Iterator[Record]]

BUILDERS: dict[str, Builder] = {
    "vqa-rad": vqa_rad.build,
    "slake": slake.build,
    "path-vqa": path_vqa.build,
    "pmc-vqa": pmc_vqa.build,
    "pmc-vqa-open": lambda root, report: pmc_vqa.build(root, report, "open"),
    "pmc-oa": pmc_oa.build,
    "llava-med-instruct": lambda root, report: llava_med.build(root, report, "instruct"),
    "llava-med-alignment": lambda root, report: llava_med.build(root, report, "alignment"),
    "llava-med-to-qa": lambda root, report: llava_med.build(root, report, "to-qa"),
    "medqa": medqa.build,
    "medmcqa": medmcqa.build,
    "pubmedqa": pubmedqa.build,
    "pubmedqa-artificial": lambda root, report: pubmedqa.build(root, report, "artificial"),
    "pubmedqa-unlabeled": lambda root, report: pubmedqa.build(root, report, "unlabeled"),
    **{name: (lambda root, report, name=name: open_qa.build(root, report, name)) for name in open_qa.SOURCES},
}


def iter_source(name: str, root: str | Path, report: BuildReport | None = None) -> Iterator[Record]:
    """Records of one source read from its dataset folder ``root``."""
    if name not in BUILDERS:
        raise ConfigError(f"unknown dataset source {name!r}. Available: {', '.join(sorted(BUILDERS))}")
    root = Path(root)
    if not root.is_dir():
        raise RecordError(f"{root}: dataset folder not found")
    return BUILDERS[name](root, report if report is not None else BuildReport(name))


def build_source(name: str, root: str | Path, out: str | Path, progress: bool = True) -> BuildReport:
    """Build one source into a JSONL file (written atomically)."""
    report = BuildReport(name)
    records = tqdm(iter_source(name, root, report), desc=f"build {name}", unit="rec", disable=not progress)
    report.written = write_jsonl(records, out)
    return report


__all__ = ["BUILDERS", "BuildReport", "build_source", "iter_source"]

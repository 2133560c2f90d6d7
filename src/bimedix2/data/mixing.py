"""Compose a training mixture from record files: target counts or weights, an English:Arabic
ratio, exact-duplicate removal, splits; a composition table (like BiMed-V's composition table in
the BiMediX2 paper) + chart, and per source and language the records, turns and (given the model's
tokenizer) tokens, as BiMediX's Tables 1-2 report them.

Two streaming passes, memory bounded (a few bytes per record, never the records):
1. hash every record (content for dedupe, id for a seeded random rank) into numpy arrays;
2. after choosing how many to take from each (source, language) cell, the lowest-ranked records
   of each cell are streamed into ``mixture.jsonl`` and per-split files.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from ..config import save_config
from ..errors import ConfigError, RecordError
from ..fileio import atomic_write_text, atomic_writer
from .io import dumps_record, iter_records
from .schema import LANGUAGES, SPLITS, Record, record_to_json


@dataclass(frozen=True)
class MixSource:
    """One input file: all of it, an exact ``count``, or a ``weight`` of the config's ``total``."""

    path: Path
    name: str = ""
    count: int | None = None
    weight: float | None = None


@dataclass(frozen=True)
class MixConfig:
    """A mixture recipe (YAML: configs/data/mix-example.yaml)."""

    sources: tuple[MixSource, ...]
    total: int | None = None
    language_ratio: dict[str, float] = field(default_factory=dict)  # e.g. {en: 2, ar: 1}
    dedupe: bool = True
    resplit: dict[str, float] = field(default_factory=dict)  # e.g. {train: 0.98, validation: 0.02}; empty: keep
    seed: int = 0
    # multiplies every `count` and `total` (rounded, at least 1 for a non-zero count): 0.001 builds a
    # mixture of the recipe's shape at 1/1000 of its size (sources taken whole stay whole)
    scale: float = 1.0
    # a tokenizer folder or hub id (transformers AutoTokenizer): composition reports tokens too
    tokenizer: str = ""

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("sources: at least one source is needed")
        if not self.scale > 0:
            raise ConfigError(f"scale: must be > 0, got {self.scale}")
        for i, src in enumerate(self.sources):
            if src.count is not None and src.weight is not None:
                raise ConfigError(f"sources[{i}]: give count or weight, not both")
            if src.weight is not None and self.total is None:
                raise ConfigError(f"sources[{i}]: a weight needs the top-level total")
            if (src.count is not None and src.count < 0) or (src.weight is not None and src.weight < 0):
                raise ConfigError(f"sources[{i}]: count and weight must be >= 0")
        names = [s.name or s.path.stem for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"sources: names must be unique, got {names}")
        bad = set(self.language_ratio) - set(LANGUAGES)
        if bad or any(v <= 0 for v in self.language_ratio.values()):
            raise ConfigError(f"language_ratio: keys from {LANGUAGES}, positive values; got {self.language_ratio}")
        if self.resplit and (set(self.resplit) - set(SPLITS) or abs(sum(self.resplit.values()) - 1) > 1e-6):
            raise ConfigError(f"resplit: fractions over {SPLITS} summing to 1; got {self.resplit}")


@dataclass(frozen=True)
class MixResult:
    counts: dict[str, dict[str, int]]  # source -> language -> records taken
    splits: dict[str, int]
    duplicates_removed: int
    table: str
    chart: Path
    output: Path
    # source -> language -> {"records", "turns", "tokens" (only with a tokenizer)}
    stats: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)


def _h64(data: str) -> int:
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "big")


def _content_key(obj: dict[str, Any]) -> str:
    return json.dumps([obj.get("image"), obj["conversations"]], ensure_ascii=False, sort_keys=True)


def _scan(path: Path, seed: int, desc: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(content hash, rank hash, language index) per record, in file order."""
    content, rank, lang = array("Q"), array("Q"), array("b")  # compact: no Python int objects kept
    for record in tqdm(iter_records(path), desc=f"scan {desc}", unit="rec"):
        if record.language not in LANGUAGES:
            raise RecordError(f"{path}: record {record.id}: language {record.language!r} not in {LANGUAGES}")
        content.append(_h64(_content_key(record_to_json(record))))
        rank.append(_h64(f"{seed}:{record.id}"))
        lang.append(LANGUAGES.index(record.language))
    return (
        np.frombuffer(content, np.uint64).copy(),
        np.frombuffer(rank, np.uint64).copy(),
        np.frombuffer(lang, np.int8).copy(),
    )


def _apply_ratio(wanted: dict[str, dict[str, int]], ratio: dict[str, float]) -> dict[str, dict[str, int]]:
    """Scale down languages so totals follow ``ratio`` (never scales up)."""
    totals = {lang: sum(cells.get(lang, 0) for cells in wanted.values()) for lang in ratio}
    if not all(totals.values()):
        raise RecordError(f"language_ratio {ratio}: a language has no records (available: {totals})")
    unit = min(totals[lang] / ratio[lang] for lang in ratio)
    out: dict[str, dict[str, int]] = {}
    for name, cells in wanted.items():
        out[name] = {}
        for lang, n in cells.items():
            if lang in ratio and totals[lang]:
                out[name][lang] = int(round(n * unit * ratio[lang] / totals[lang]))
            else:
                out[name][lang] = n
    return out


def mix(cfg: MixConfig, out_dir: str | Path) -> MixResult:
    """Build the mixture into ``out_dir`` (mixture.jsonl, <split>.jsonl, composition.{md,json,png})."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    names = [s.name or s.path.stem for s in cfg.sources]
    scans = [_scan(s.path, cfg.seed, n) for s, n in zip(cfg.sources, names, strict=True)]

    keep, duplicates = _dedupe(scans) if cfg.dedupe and scans else ([np.ones(len(c[0]), bool) for c in scans], 0)
    wanted: dict[str, dict[str, int]] = {}
    for src, name, (_, _, lang), k in zip(cfg.sources, names, scans, keep, strict=True):
        available = {code: int(((lang == i) & k).sum()) for i, code in enumerate(LANGUAGES)}
        n_avail = sum(available.values())
        if src.count is not None:
            target = scaled(src.count, cfg.scale)
        elif src.weight is not None:
            target = int(round(src.weight * scaled(cfg.total or 0, cfg.scale)))
        else:
            target = n_avail
        if target > n_avail:
            raise RecordError(f"source {name}: {target} records wanted, only {n_avail} available after dedupe")
        wanted[name] = {
            code: int(round(target * a / n_avail)) if n_avail else 0 for code, a in available.items()
        }  # proportional to the languages present
    if cfg.language_ratio:
        wanted = _apply_ratio(wanted, cfg.language_ratio)

    selected: list[np.ndarray] = []
    for name, (_, rank, lang), k in zip(names, scans, keep, strict=True):
        chosen = np.zeros(len(rank), bool)
        for i, code in enumerate(LANGUAGES):
            idx = np.flatnonzero((lang == i) & k)
            n = min(wanted[name].get(code, 0), len(idx))
            if n:
                chosen[idx[np.argsort(rank[idx], kind="stable")[:n]]] = True
        selected.append(chosen)

    counter = TokenCounter(cfg.tokenizer) if cfg.tokenizer else None
    counts, split_counts, stats = _write_mixture(cfg, names, selected, out, counter)
    table = composition_table(counts) + "\n\n" + token_table(stats)
    atomic_write_text(out / "composition.md", table + "\n")
    atomic_write_text(
        out / "composition.json",
        json.dumps(
            {
                "counts": counts,
                "splits": split_counts,
                "duplicates_removed": duplicates,
                "stats": stats,
                "tokenizer": cfg.tokenizer or None,
            },
            indent=1,
        ),
    )
    chart = composition_chart(counts, out / "composition.png")
    return MixResult(counts, split_counts, duplicates, table, chart, out / "mixture.jsonl", stats)


def scaled(count: int, scale: float) -> int:
    """``count`` times ``scale``, rounded; a non-zero count never scales to 0."""
    if scale == 1.0 or count == 0:
        return count
    return max(1, int(round(count * scale)))


class TokenCounter:
    """Tokens of each turn's text with a model's tokenizer (no special tokens, no chat template)."""

    def __init__(self, path: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # pragma: no cover - transformers is a core dependency
            raise ConfigError(f"tokenizer: transformers is needed to count tokens ({exc})") from None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"tokenizer: cannot load {path!r} ({exc})") from None

    def count(self, record: Record) -> int:
        texts = [turn.value for turn in record.conversations]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return sum(len(ids) for ids in encoded)


def _dedupe(scans: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[list[np.ndarray], int]:
    """Per source, which records are the first of their content (over all sources); and how many are not."""
    allc = np.concatenate([c[0] for c in scans]) if any(len(c[0]) for c in scans) else np.zeros(0, np.uint64)
    _, first = np.unique(allc, return_index=True)
    mask = np.zeros(len(allc), bool)
    mask[first] = True
    offsets = np.cumsum([0] + [len(c[0]) for c in scans])
    return [mask[offsets[i] : offsets[i + 1]] for i in range(len(scans))], int(len(allc) - mask.sum())


def _write_mixture(
    cfg: MixConfig, names: list[str], selected: list[np.ndarray], out: Path, counter: TokenCounter | None = None
) -> tuple[dict[str, dict[str, int]], dict[str, int], dict[str, dict[str, dict[str, int]]]]:
    """Stream the chosen records into mixture.jsonl and the per-split files; the counts and stats written."""
    counts = {name: {code: 0 for code in LANGUAGES} for name in names}
    split_counts = {s: 0 for s in SPLITS}
    keys = ("records", "turns", "tokens") if counter else ("records", "turns")
    stats = {name: {code: dict.fromkeys(keys, 0) for code in LANGUAGES} for name in names}
    with atomic_writer(out / "mixture.jsonl") as mixture, _SplitWriters(out) as writers:
        for src, name, chosen in zip(cfg.sources, names, selected, strict=True):
            for i, record in enumerate(tqdm(iter_records(src.path), desc=f"write {name}", unit="rec")):
                if not chosen[i]:
                    continue
                if cfg.resplit:
                    record = replace(record, split=_pick_split(record.id, cfg))
                line = dumps_record(record) + "\n"
                mixture.write(line)
                writers.write(record.split, line)
                counts[name][record.language] += 1
                split_counts[record.split] += 1
                cell = stats[name][record.language]
                cell["records"] += 1
                cell["turns"] += sum(1 for turn in record.conversations if turn.speaker != "system")
                if counter:
                    cell["tokens"] += counter.count(record)
    return counts, split_counts, stats


def _pick_split(rid: str, cfg: MixConfig) -> str:
    u = _h64(f"split:{cfg.seed}:{rid}") / 2**64
    acc = 0.0
    for split in SPLITS:
        acc += cfg.resplit.get(split, 0.0)
        if u < acc:
            return split
    return max(cfg.resplit, key=cfg.resplit.__getitem__)


class _SplitWriters:
    """One atomically written JSONL file per split that receives records."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._stack = ExitStack()
        self._files: dict[str, IO[str]] = {}
        self.paths: dict[str, Path] = {}

    def write(self, split: str, line: str) -> None:
        if split not in self._files:
            self.paths[split] = self.out / f"{split}.jsonl"
            self._files[split] = self._stack.enter_context(atomic_writer(self.paths[split]))
        self._files[split].write(line)

    def __enter__(self) -> _SplitWriters:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)


def composition_table(counts: dict[str, dict[str, int]]) -> str:
    """A Markdown table: records per source and language, with shares of the total."""
    total = sum(sum(c.values()) for c in counts.values()) or 1
    lines = ["| source | English | Arabic | total | share |", "|---|---:|---:|---:|---:|"]
    for name, cells in counts.items():
        n = sum(cells.values())
        lines.append(f"| {name} | {cells.get('en', 0):,} | {cells.get('ar', 0):,} | {n:,} | {100 * n / total:.1f}% |")
    en = sum(c.get("en", 0) for c in counts.values())
    ar = sum(c.get("ar", 0) for c in counts.values())
    ratio = f"{en / ar:.2f}:1" if ar else "n/a"
    lines.append(f"| **total** | {en:,} | {ar:,} | {en + ar:,} | 100% (EN:AR {ratio}) |")
    return "\n".join(lines)


def token_table(stats: dict[str, dict[str, dict[str, int]]]) -> str:
    """A Markdown table per source and language: records, turns and (when counted) tokens."""
    with_tokens = any("tokens" in cell for cells in stats.values() for cell in cells.values())
    cols = ("records", "turns", "tokens") if with_tokens else ("records", "turns")
    names = {"en": "English", "ar": "Arabic"}
    head = " | ".join(f"{names[lang]} {col}" for lang in LANGUAGES for col in cols)
    lines = [f"| source | {head} |", "|---|" + "---:|" * (len(cols) * len(LANGUAGES))]
    totals = {lang: dict.fromkeys(cols, 0) for lang in LANGUAGES}
    for name, cells in stats.items():
        row = []
        for lang in LANGUAGES:
            for col in cols:
                value = cells.get(lang, {}).get(col, 0)
                totals[lang][col] += value
                row.append(f"{value:,}")
        lines.append(f"| {name} | {' | '.join(row)} |")
    total_row = " | ".join(f"{totals[lang][col]:,}" for lang in LANGUAGES for col in cols)
    lines.append(f"| **total** | {total_row} |")
    return "\n".join(lines)


def composition_chart(counts: dict[str, dict[str, int]], path: Path) -> Path:
    """A stacked horizontal bar chart of records per source (English / Arabic), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(counts)
    en = [counts[n].get("en", 0) for n in names]
    ar = [counts[n].get("ar", 0) for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.barh(names, en, label="English", color="#3b6ea5")
    ax.barh(names, ar, left=en, label="Arabic", color="#d08c2e")
    ax.set_xlabel("records")
    ax.set_title("Training mixture composition")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    with atomic_writer(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path

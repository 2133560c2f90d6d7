"""The contamination audit: which training records share an image or text with a test sample.

Test sets are indexed once (n-gram hashes, image hashes); the training file is then streamed,
one record at a time, so memory holds the test sets and a few bytes per matched record, never
the training data. Outputs in the chosen folder: ``matches.jsonl`` (one line per training
record x test sample x kind), ``summary.json``, ``config.json`` (the resolved settings),
``unreadable_images.jsonl``; with ``exclude`` also a cleaned training file without the matched
records. Test sets come in as neutral `BenchmarkSet`s: the command reads them with the eval
readers (this layer does not import eval).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from tqdm import tqdm

from ...errors import ConfigError, RecordError
from ...fileio import atomic_write_json, atomic_write_jsonl, atomic_writer
from ...types import ImageRef
from ..io import iter_record_objects, iter_records
from ..schema import Record, record_from_json
from .image import HASH_BITS, HASH_KINDS, HashIndex, UnhashableImage, perceptual_hash
from .text import Fold, NgramIndex, words

MATCHES = "matches.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.json"
UNREADABLE = "unreadable_images.jsonl"
# BiMed-MBench keeps the PMC figure's caption and in-text mention: the text LLaVA-Med's training data holds
CONTEXT_FIELDS = ("fig_caption", "in_text_mention")
_CHUNK = 512  # training records read ahead, so their new images are hashed together (in parallel)
_MIX_FILES = ("train.jsonl", "mixture.jsonl")  # a `bimedix2 data mix` folder: its train split, else the whole mix


@dataclass(frozen=True)
class OverlapConfig:
    """Audit settings (written resolved to ``config.json``)."""

    ngram: int = 13  # word n-gram length (13 as in GPT-3's contamination study; 8 is also common)
    min_text_overlap: float = 0.0  # share of a test sample's n-grams; 0: any shared n-gram is a match
    common_ngram_limit: int = 0  # ignore n-grams held by more than this many test samples (0: keep all)
    text: bool = True
    images: bool = True
    image_hash: str = "phash"
    max_distance: int = 8  # Hamming distance (of 64 bits) at or under which two images match
    image_root: str | None = None  # training images' root (default: the training file's folder)
    workers: int = 1  # processes hashing training images (decoding dominates: ~100 images/s each)

    def validate(self) -> None:
        """ConfigError naming the first bad setting."""
        if self.ngram < 1:
            raise ConfigError(f"ngram must be at least 1, got {self.ngram}")
        if not 0.0 <= self.min_text_overlap <= 1.0:
            raise ConfigError(f"min_text_overlap must be between 0 and 1, got {self.min_text_overlap}")
        if self.common_ngram_limit < 0:
            raise ConfigError(f"common_ngram_limit must be 0 (off) or more, got {self.common_ngram_limit}")
        if self.image_hash not in HASH_KINDS:
            raise ConfigError(f"image_hash must be one of {', '.join(HASH_KINDS)}, got {self.image_hash!r}")
        if not 0 <= self.max_distance <= HASH_BITS:
            raise ConfigError(f"max_distance must be between 0 and {HASH_BITS}, got {self.max_distance}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if not (self.text or self.images):
            raise ConfigError("nothing to check: text and images are both off")


@dataclass(frozen=True)
class BenchmarkItem:
    """One test sample as the audit sees it: its texts (n-grams never span two) and images."""

    id: str
    texts: tuple[str, ...]
    images: tuple[ImageRef, ...] = ()


@dataclass(frozen=True)
class BenchmarkSet:
    """A named test set; `origin` says where it was read from (path, format), for the config file."""

    name: str
    items: tuple[BenchmarkItem, ...]
    origin: Mapping[str, str] = field(default_factory=dict)


class SampleLike(Protocol):
    """What `items_from_samples` reads of an eval sample (`bimedix2.eval.datasets.EvalSample`)."""

    id: str
    text: str
    reference: str
    images: tuple[ImageRef, ...]
    meta: dict[str, Any]


def items_from_samples(samples: Iterable[SampleLike]) -> tuple[BenchmarkItem, ...]:
    """Eval samples -> items: question and reference answer as one text, plus the source record's
    figure caption and in-text mention when it has them (BiMed-MBench)."""
    items = []
    for sample in samples:
        texts = [f"{sample.text}\n{sample.reference}"]
        record = sample.meta.get("record") if isinstance(sample.meta, Mapping) else None
        if isinstance(record, Mapping):
            for key in CONTEXT_FIELDS:
                texts += _context_texts(record.get(key))
        items.append(BenchmarkItem(sample.id, tuple(texts), tuple(sample.images)))
    return tuple(items)


def _context_texts(value: Any) -> list[str]:
    """A context field's texts: a string, or a list of strings or of the released {"tokens": ...} mentions."""
    out = []
    for item in value if isinstance(value, list) else [value]:
        text = item.get("tokens") if isinstance(item, Mapping) else item
        if isinstance(text, str) and text.strip():
            out.append(text)
    return out


def record_text(record: Record) -> str:
    """A record's conversation text (system turns left out: they are shared boilerplate, not content)."""
    return "\n".join(turn.value for turn in record.conversations if turn.speaker != "system")


def record_images(record: Record, root: Path) -> tuple[ImageRef, ...]:
    """A record's images, relative paths resolved against `root`."""
    return tuple(ImageRef(p if p.is_absolute() else root / p) for p in map(Path, record.images))


def items_from_records(path: Path, image_root: Path | None = None) -> tuple[BenchmarkItem, ...]:
    """A BiMed-V record file used as a test set (images resolved against `image_root` or its folder)."""
    root = image_root or path.parent
    return tuple(
        BenchmarkItem(record.id, (record_text(record),), record_images(record, root)) for record in iter_records(path)
    )


def resolve_train_file(path: Path) -> Path:
    """The record file to audit: `path`, or in a `data mix` output folder its train.jsonl (else mixture.jsonl)."""
    if path.is_dir():
        for name in _MIX_FILES:
            if (path / name).is_file():
                return path / name
        raise RecordError(f"{path}: a folder but not a `bimedix2 data mix` output (no {' or '.join(_MIX_FILES)})")
    if not path.is_file():
        raise RecordError(f"{path}: file not found")
    return path


@dataclass
class SetSummary:
    """Per test set: what was checked and what matched."""

    test_set: str
    test_samples: int = 0
    text_checkable: int = 0  # test samples with at least one indexed n-gram
    test_images: int = 0  # test images hashed
    test_images_unreadable: int = 0
    train_records: int = 0
    image_matches: int = 0  # training records with an image match
    text_matches: int = 0  # training records with a text match
    matched_records: int = 0  # either
    test_samples_matched: int = 0

    @property
    def matched_fraction(self) -> float:
        """Share of the training records that match this test set."""
        return self.matched_records / self.train_records if self.train_records else 0.0

    @property
    def test_fraction(self) -> float:
        """Share of this test set's samples matched by some training record."""
        return self.test_samples_matched / self.test_samples if self.test_samples else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "matched_fraction": self.matched_fraction, "test_fraction": self.test_fraction}


@dataclass
class AuditResult:
    """What `audit` found and wrote."""

    train_file: Path
    sets: list[SetSummary]
    train_records: int
    matched_records: int
    train_images: int
    train_images_unreadable: int
    out_dir: Path
    excluded_file: Path | None = None
    kept_records: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "train_file": str(self.train_file),
            "train_records": self.train_records,
            "matched_records": self.matched_records,
            "train_images": self.train_images,
            "train_images_unreadable": self.train_images_unreadable,
            "excluded_file": str(self.excluded_file) if self.excluded_file else None,
            "kept_records": self.kept_records,
            "test_sets": [s.as_dict() for s in self.sets],
        }


class _Indexed:
    """The test sets indexed: item keys -> (set, item), n-gram index, image hash index."""

    def __init__(self, sets: Sequence[BenchmarkSet], cfg: OverlapConfig, fold: Fold, progress: bool) -> None:
        self.owner: list[tuple[int, BenchmarkItem]] = []
        self.text = NgramIndex(cfg.ngram)
        self.images = HashIndex()
        self.unreadable: list[dict[str, Any]] = []
        self._hashed: dict[Path, int | str] = {}  # test image file -> hash, or why it has none
        self.summaries = [SetSummary(s.name, test_samples=len(s.items)) for s in sets]
        total = sum(len(s.items) for s in sets)
        with tqdm(total=total, desc="overlap: index test sets", unit="sample", disable=not progress) as bar:
            for set_index, test_set in enumerate(sets):
                for item in test_set.items:
                    key = len(self.owner)
                    self.owner.append((set_index, item))
                    if cfg.text:
                        self.text.add(key, [words(t, fold) for t in item.texts])
                    if cfg.images:
                        self._add_images(key, test_set.name, item, cfg.image_hash)
                    bar.update()
        if cfg.text and cfg.common_ngram_limit:
            self.text.drop_common(cfg.common_ngram_limit)
        for key, (set_index, _) in enumerate(self.owner):
            if self.text.size(key):
                self.summaries[set_index].text_checkable += 1

    def _add_images(self, key: int, set_name: str, item: BenchmarkItem, kind: str) -> None:
        summary = self.summaries[self.owner[key][0]]
        for ref in item.images:
            path = ref.source if isinstance(ref.source, Path) else None
            value = self._hashed.get(path) if path is not None else None
            if value is None:
                try:
                    value = perceptual_hash(ref, kind)
                except UnhashableImage as exc:
                    value = str(exc)
                if path is not None:
                    self._hashed[path] = value
            if isinstance(value, int):
                self.images.add(key, value, ref.label())
                summary.test_images += 1
            else:
                summary.test_images_unreadable += 1
                self.unreadable.append(
                    {"side": "test", "test_set": set_name, "test_id": item.id, "image": ref.label(), "error": value}
                )


def audit(
    train: Path,
    test_sets: Sequence[BenchmarkSet],
    cfg: OverlapConfig,
    out_dir: Path,
    *,
    fold: Fold,
    exclude: Path | None = None,
    progress: bool = False,
) -> AuditResult:
    """Check every training record against every test set; write the matches, summary and config.

    `fold` is the text normalisation applied before splitting into words (the command passes the
    toolkit's Arabic normalisation). A bad training record stops the audit with a `RecordError`
    naming its file and line (a skipped record would be an unaudited one); an image that cannot be
    read is listed in ``unreadable_images.jsonl`` and counted, never fatal.
    """
    cfg.validate()
    if not test_sets:
        raise ConfigError("no test sets given")
    names = [s.name for s in test_sets]
    if len(set(names)) != len(names):
        raise ConfigError(f"test set names must differ, got {', '.join(names)}")
    train_file = resolve_train_file(Path(train))
    if exclude is not None:
        _check_exclude(Path(exclude), train_file)
    image_root = Path(cfg.image_root) if cfg.image_root else train_file.parent
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    index = _Indexed(test_sets, cfg, fold, progress)
    hasher = _TrainHasher(cfg.image_hash, cfg.workers)
    matched: set[int] = set()
    test_hit: set[int] = set()
    records = 0
    with (
        hasher,
        atomic_writer(out_dir / MATCHES) as out,
        tqdm(desc="overlap: training records", unit="rec", disable=not progress) as bar,
    ):
        for chunk in _chunks(enumerate(iter_record_objects(train_file)), _CHUNK):
            parsed = [(position, record_from_json(obj, where), where) for position, (obj, where) in chunk]
            images = {position: record_images(record, image_root) for position, record, _ in parsed}
            if cfg.images and len(index.images):
                hasher.prepare((record.id, images[position]) for position, record, _ in parsed)
            for position, record, where in parsed:
                records += 1
                found = _match_record(record, index, cfg, fold, images[position], hasher)
                if _write_matches(out, record.id, where, found, index, names, test_hit):
                    matched.add(position)
            bar.update(len(parsed))
    for key in test_hit:
        index.summaries[index.owner[key][0]].test_samples_matched += 1
    for summary in index.summaries:
        summary.train_records = records
    atomic_write_jsonl(out_dir / UNREADABLE, [*index.unreadable, *hasher.unreadable])
    result = AuditResult(
        train_file=train_file,
        sets=index.summaries,
        train_records=records,
        matched_records=len(matched),
        train_images=hasher.hashed,
        train_images_unreadable=len(hasher.unreadable),
        out_dir=out_dir,
    )
    if exclude is not None:
        result.excluded_file = Path(exclude)
        result.kept_records = write_excluded(train_file, matched, Path(exclude))
    atomic_write_json(out_dir / SUMMARY, result.as_dict())
    # last: a failed audit leaves an older folder as it was (matches.jsonl is written atomically too)
    atomic_write_json(out_dir / CONFIG, _resolved_config(cfg, train_file, image_root, test_sets, fold, exclude))
    return result


def _write_matches(
    out: IO[str],
    rid: str,
    where: str,
    found: list[dict[str, Any]],
    index: _Indexed,
    names: list[str],
    test_hit: set[int],
) -> bool:
    """Write one training record's matches and count them per test set; whether it matched at all."""
    kinds_by_set: dict[int, set[str]] = {}
    for match in found:
        key = match.pop("key")
        set_index, item = index.owner[key]
        kinds_by_set.setdefault(set_index, set()).add(match["kind"])
        test_hit.add(key)
        line = {"train_id": rid, "train_where": where, "test_set": names[set_index], "test_id": item.id}
        out.write(_json_line({**line, **match}))
    for set_index, kinds in kinds_by_set.items():
        summary = index.summaries[set_index]
        summary.image_matches += "image" in kinds
        summary.text_matches += "text" in kinds
        summary.matched_records += 1
    return bool(kinds_by_set)


def _match_record(
    record: Record,
    index: _Indexed,
    cfg: OverlapConfig,
    fold: Fold,
    images: tuple[ImageRef, ...],
    hasher: _TrainHasher,
) -> list[dict[str, Any]]:
    """The matches of one training record: the closest image per test sample, and text hits."""
    found: list[dict[str, Any]] = []
    if cfg.images and images and len(index.images):
        best: dict[int, tuple[int, str, str]] = {}
        for ref in images:
            value = hasher.get(ref)
            if value is None:
                continue
            for key, distance, test_label in index.images.near(value, cfg.max_distance):
                if key not in best or distance < best[key][0]:
                    best[key] = (distance, ref.label(), test_label)
        for key, (distance, train_label, test_label) in sorted(best.items()):
            found.append(
                {
                    "key": key,
                    "kind": "image",
                    "distance": distance,
                    "evidence": {"train_image": train_label, "test_image": test_label, "hash": cfg.image_hash},
                }
            )
    if cfg.text and len(index.text):
        for hit in index.text.query(words(record_text(record), fold)):
            if hit.fraction >= cfg.min_text_overlap:
                found.append(
                    {
                        "key": hit.key,
                        "kind": "text",
                        "score": round(hit.fraction, 6),
                        "evidence": {"ngram": hit.ngram, "shared_ngrams": hit.shared, "test_ngrams": hit.total},
                    }
                )
    return found


def _hash_file(path: str, kind: str) -> int | str:
    """A file's perceptual hash, or why it has none (top level: it runs in worker processes)."""
    try:
        return perceptual_hash(Path(path), kind)
    except UnhashableImage as exc:
        return str(exc)


class _TrainHasher:
    """Training image hashes, computed once per file, in worker processes when `workers` > 1."""

    def __init__(self, kind: str, workers: int) -> None:
        self.kind = kind
        self.workers = workers
        self._values: dict[str, int | None] = {}  # path -> hash (str keys: ~170 bytes per distinct image)
        self.unreadable: list[dict[str, Any]] = []
        self.hashed = 0
        self._pool: Any = None

    def __enter__(self) -> _TrainHasher:
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the parent holds threads (progress bars), which fork would copy mid-state
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def prepare(self, records: Iterable[tuple[str, tuple[ImageRef, ...]]]) -> None:
        """Hash every not yet seen image of these records (id, images); unreadable ones are listed once."""
        todo: dict[str, str] = {}
        for rid, refs in records:
            for ref in refs:
                path = str(ref.source) if not isinstance(ref.source, bytes) else None
                if path is not None and path not in self._values and path not in todo:
                    todo[path] = rid
        paths = list(todo)
        if self._pool is not None:
            values = list(self._pool.map(_hash_file, paths, [self.kind] * len(paths), chunksize=8))
        else:
            values = [_hash_file(path, self.kind) for path in paths]
        for path, value in zip(paths, values, strict=True):
            if isinstance(value, int):
                self._values[path] = value
                self.hashed += 1
            else:
                self._values[path] = None
                self.unreadable.append({"side": "train", "train_id": todo[path], "image": path, "error": value})

    def get(self, ref: ImageRef) -> int | None:
        """A prepared image's hash; None when it could not be read."""
        return self._values.get(str(ref.source)) if not isinstance(ref.source, bytes) else None


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _json_line(obj: dict[str, Any]) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False) + "\n"


def _check_exclude(target: Path, train_file: Path) -> None:
    if target.suffix != ".jsonl":
        raise ConfigError(f"--exclude {target}: the cleaned training file must end in .jsonl")
    if target.resolve() == train_file.resolve():
        raise ConfigError(f"--exclude {target}: would overwrite the training file being audited; pick a new path")


def write_excluded(train_file: Path, matched: set[int], target: Path) -> int:
    """Write the training records not in `matched` (positions) to `target` as JSONL, atomically; the count.

    Records are copied as read (fields, spelling of speakers), only the matched ones left out.
    """
    kept = (obj for position, (obj, _) in enumerate(iter_record_objects(train_file)) if position not in matched)
    return atomic_write_jsonl(target, kept)


def _resolved_config(
    cfg: OverlapConfig,
    train_file: Path,
    image_root: Path,
    test_sets: Sequence[BenchmarkSet],
    fold: Fold,
    exclude: Path | None,
) -> dict[str, Any]:
    return {
        **asdict(cfg),
        "image_root": str(image_root),
        "train_file": str(train_file),
        "exclude": str(exclude) if exclude else None,
        "text_normalisation": f"{getattr(fold, '__module__', '?')}.{getattr(fold, '__qualname__', repr(fold))}"
        " + casefold + \\w+ words",
        "hash_bits": HASH_BITS,
        "test_sets": [{"name": s.name, "samples": len(s.items), **dict(s.origin)} for s in test_sets],
    }

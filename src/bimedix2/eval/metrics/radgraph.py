"""F1-RadGraph as MultiMedEval computes it, from a local RadGraph model, through the `radgraph` package.

MultiMedEval (multimedeval/engine.py, task_families.py `_compute_radgraph`): `F1RadGraph(
reward_level="partial")` from the radgraph package (model "radgraph", the original RadGraph
DyGIE++ extractor), then per report pair `exact_entity_token_if_rel_exists_reward(hyp, ref)`:
F1 over the sets of (entity tokens, label) for entities without relations and
(entity tokens, label, True) for entities with at least one; averaged over samples. An empty
prediction or reference scores 0 (the radgraph package's rule; MultiMedEval would fail on it).

The user points to the model: the directory of the radgraph package's model archive
(`radgraph.tar.gz` from huggingface.co/StanfordAIMI/RRG_scorers, extracted: `config.json`,
`weights.th`, `vocabulary/`) or the `.tar.gz` itself. The model type ("radgraph",
"radgraph-xl", ...) is read from the vocabulary's namespace names. The BERT encoder named in
`config.json` must load offline (a local path there, or already in the Hugging Face cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ...errors import EvalDataError
from ...fileio import atomic_directory
from .tokenizer_compat import legacy_tokenizer_api

KNOWN_TYPES = ("radgraph", "radgraph-xl", "modern-radgraph-xl", "echograph")
Annotation = dict[str, Any]


def _cache_root() -> Path:
    from ...model.loader import cache_dir

    return cache_dir() / "radgraph"


def _extract(archive: Path) -> Path:
    """Unpack a RadGraph `.tar.gz` once into our cache (keyed by its size and first MiB)."""
    head = archive.open("rb").read(1 << 20)
    key = hashlib.sha256(head + str(archive.stat().st_size).encode()).hexdigest()[:16]
    target = _cache_root() / key
    if not target.is_dir():
        try:
            with tarfile.open(archive, "r:gz") as tar, atomic_directory(target) as tmp:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise EvalDataError(f"{archive}: not a readable RadGraph .tar.gz archive ({exc})") from exc
    config = next(target.rglob("config.json"), None)
    if config is None:
        raise EvalDataError(f"{archive}: the archive holds no config.json (not a radgraph package model)")
    return config.parent


def resolve_model_dir(path: Path) -> tuple[str, Path]:
    """(model type, directory holding config.json, weights.th and vocabulary/) for a user's path."""
    path = Path(path)
    if not path.exists():
        raise EvalDataError(f"RadGraph model not found: {path}")
    directory = _extract(path) if path.is_file() else path
    for name in ("config.json", "weights.th"):
        if not (directory / name).is_file():
            raise EvalDataError(f"RadGraph model incomplete: {directory / name} is missing")
    labels = sorted((directory / "vocabulary").glob("*__ner_labels.txt"))
    if not labels:
        raise EvalDataError(f"RadGraph model incomplete: no {directory / 'vocabulary'}/<type>__ner_labels.txt")
    model_type = labels[0].name.removesuffix("__ner_labels.txt")
    if model_type not in KNOWN_TYPES:
        raise EvalDataError(
            f"{labels[0]}: unknown RadGraph model type {model_type!r} (known: {', '.join(KNOWN_TYPES)})"
        )
    return model_type, directory


def partial_reward(hypothesis: Annotation, reference: Annotation) -> float:
    """MultiMedEval's F1-RadGraph for one pair of annotations (the radgraph package's 'partial' reward)."""
    from radgraph.rewards import exact_entity_token_if_rel_exists_reward

    return float(exact_entity_token_if_rel_exists_reward(hypothesis, reference))


class RadGraphScorer:
    """Loads the RadGraph extractor once; `annotate` gives entity graphs, `f1` the per-sample F1-RadGraph."""

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 32):
        from radgraph import RadGraph

        self.model_type, self.directory = resolve_model_dir(path)
        self.batch_size = batch_size
        # RadGraph finds its model at <cache dir>/<model type>: point a private cache dir at the user's directory.
        self._links = tempfile.TemporaryDirectory(prefix="bimedix2-radgraph-")
        (Path(self._links.name) / self.model_type).symlink_to(self.directory.resolve(), target_is_directory=True)
        cuda = int(device.split(":")[1]) if device.startswith("cuda:") else (0 if device == "cuda" else -1)
        try:
            with legacy_tokenizer_api(), contextlib.redirect_stdout(sys.stderr):
                self.model = RadGraph(model_type=self.model_type, model_cache_dir=self._links.name, cuda=cuda)
        except OSError as exc:  # the encoder named in config.json is neither a local path nor cached
            raise EvalDataError(
                f"RadGraph's encoder (named in {self.directory / 'config.json'}) could not be loaded offline: {exc}"
            ) from exc
        except (KeyError, RuntimeError, ValueError) as exc:
            raise EvalDataError(f"{self.directory}: not a loadable RadGraph model ({exc})") from exc

    def annotate(self, reports: Sequence[str]) -> list[Annotation]:
        """RadGraph entities and relations of each (non-empty) report, in order."""
        out: list[Annotation] = []
        for start in tqdm(range(0, len(reports), self.batch_size), desc="RadGraph", unit="batch", leave=False):
            chunk = list(reports[start : start + self.batch_size])
            with legacy_tokenizer_api(), contextlib.redirect_stdout(sys.stderr):
                result = self.model(chunk)
            for i in range(len(chunk)):
                if str(i) not in result:
                    raise EvalDataError(f"RadGraph could not annotate report {start + i} ({chunk[i][:60]!r}...)")
                out.append(result[str(i)])
        return out

    def f1(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        """Per-sample F1-RadGraph (0 for a pair with an empty side); each distinct report is annotated once."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        unique = sorted({r for r in (*predictions, *references) if r.strip()})
        graphs = dict(zip(unique, self.annotate(unique), strict=True))
        return [
            partial_reward(graphs[p], graphs[r]) if p.strip() and r.strip() else 0.0
            for p, r in zip(predictions, references, strict=True)
        ]

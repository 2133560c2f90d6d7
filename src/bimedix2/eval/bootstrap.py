"""Bootstrap confidence intervals for a task's metrics, and paired-bootstrap comparisons of two runs.

A kind describes how its metrics are recomputed from its scored rows (`Resampling`): the unit
each row belongs to (`ids`, what two runs are paired on), the strata resampled independently
(languages, lm-eval tasks: each keeps its size) and the clusters drawn whole (UPHILL: a claim's
five queries), plus `statistic(weights)`: every metric recomputed under resampling weights.

A resample is drawn as counts (how many times each cluster is drawn, with replacement, k of k
per stratum), so `statistic` receives a (B, n_rows) weight matrix and
returns, per metric path, its B replicates — for means of per-sample scores that is one matrix
product, not B Python loops. `statistic(ones)` is the point estimate (tests check it equals the
kind's own aggregate). We draw the counts ourselves rather than with `scipy.stats.bootstrap`
because it has no strata or clusters and cannot reuse one resample for both runs of a pair.

CI: the percentile bootstrap (2.5th and 97.5th percentiles of the replicates, numpy's default
linear interpolation), over the resamples where the metric is defined (a resample may hold no
sample of a small group). Paired comparison: the same resampled ids for both runs, difference
B - A per resample; two-sided p = 2 x the share of resamples whose difference has the other sign
from the observed one (0 counts as the other sign), capped at 1; p = 1 when the observed
difference is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EvalDataError

DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
BLOCK = 100  # resamples drawn and evaluated at a time (memory: BLOCK x rows weights), part of the seeded stream
Path_ = tuple[str, ...]
Statistic = Callable[[np.ndarray], dict[Path_, np.ndarray]]


@dataclass(frozen=True)
class Resampling:
    """How one task's metrics are recomputed on resampled scored rows (see the module docstring)."""

    ids: Sequence[str]
    statistic: Statistic
    strata: Sequence[str] | None = None  # None: one stratum
    clusters: Sequence[str] | None = None  # None: every row is its own cluster
    unit: str = "sample"  # what is resampled, for the record ("sample", "claim")
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("strata", "clusters"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Resampling.{name} has {len(value)} entries for {n} rows")
        if len(set(self.ids)) != n:
            seen: set[str] = set()
            repeated = sorted({i for i in self.ids if i in seen or seen.add(i)})
            raise EvalDataError(f"scored rows repeat sample id(s) {repeated[:5]}; cannot resample or pair them")


def draw_weights(
    n: int,
    n_resamples: int,
    seed: int,
    strata: Sequence[str] | None = None,
    clusters: Sequence[str] | None = None,
) -> np.ndarray:
    """(n_resamples, n) weights: how often each row is drawn in each resample.

    Within each stratum (in order of first appearance) its k clusters are drawn k times with
    replacement (counted per cluster); every row of a cluster gets its cluster's count.
    """
    return _draw(np.random.default_rng(seed), _design(n, strata, clusters), n, n_resamples)


Design = list[tuple[np.ndarray, np.ndarray, int]]  # per stratum: its rows, each row's cluster index, #clusters


def _design(n: int, strata: Sequence[str] | None, clusters: Sequence[str] | None) -> Design:
    strata_arr = np.asarray([str(x) for x in strata] if strata is not None else [""] * n)
    clusters_arr = np.asarray([str(x) for x in clusters] if clusters is not None else [str(i) for i in range(n)])
    design = []
    for stratum in dict.fromkeys(strata_arr.tolist()):
        rows = np.flatnonzero(strata_arr == stratum)
        names, inverse = np.unique(clusters_arr[rows], return_inverse=True)
        design.append((rows, inverse, len(names)))
    return design


def _draw(rng: np.random.Generator, design: Design, n: int, n_resamples: int) -> np.ndarray:
    weights = np.zeros((n_resamples, n))
    for rows, inverse, k in design:
        # k draws with replacement per resample, counted per cluster (faster than rng.multinomial for large k)
        draws = rng.integers(0, k, size=(n_resamples, k)) + (np.arange(n_resamples) * k)[:, None]
        counts = np.bincount(draws.ravel(), minlength=n_resamples * k).reshape(n_resamples, k)
        weights[:, rows] = counts[:, inverse]
    return weights


def weighted_mean(weights: np.ndarray, values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Per resample, the weighted mean of `values` over the rows where it is not None/NaN (NaN if none)."""
    if isinstance(values, np.ndarray):
        v = values.astype(np.float64, copy=False)
    else:
        v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
    mask = ~np.isnan(v)
    num = weights @ np.where(mask, v, 0.0)
    den = weights @ mask.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def percentile_ci(replicates: np.ndarray, confidence: float = CONFIDENCE) -> list[float] | None:
    """[lo, hi] percentile interval over the finite replicates; None when there are none."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return [float(lo), float(hi)]


def nest(flat: Mapping[Path_, Any]) -> dict[str, Any]:
    """{("a", "b"): x} -> {"a": {"b": x}}."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def point_estimates(resampling: Resampling) -> dict[Path_, float | None]:
    """Every metric on the rows as they are (all weights 1)."""
    values = resampling.statistic(np.ones((1, len(resampling.ids))))
    return {p: (float(v[0]) if np.isfinite(v[0]) else None) for p, v in values.items()}


def bootstrap_ci(resampling: Resampling, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """{"ci95": metrics' nesting with [lo, hi] leaves (null where undefined), "bootstrap": how}."""
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    replicates = _replicates([resampling], n_resamples, seed)[0]
    return {
        "ci95": nest({path: percentile_ci(values) for path, values in replicates.items()}),
        "bootstrap": method_record(resampling, n_resamples, seed),
    }


def _replicates(
    resamplings: Sequence[Resampling], n_resamples: int, seed: int, with_point: bool = False
) -> list[dict[Path_, np.ndarray]]:
    """Each resampling's statistic over the same `n_resamples` draws (of the first one's design), made
    BLOCK resamples at a time from one seeded stream; with `with_point`, the unresampled value first."""
    first = resamplings[0]
    n = len(first.ids)
    rng = np.random.default_rng(seed)
    parts: list[list[dict[Path_, np.ndarray]]] = [[] for _ in resamplings]
    if with_point:
        for part, res in zip(parts, resamplings, strict=True):
            part.append(res.statistic(np.ones((1, n))))
    design = _design(n, first.strata, first.clusters)
    for start in range(0, n_resamples, BLOCK):
        weights = _draw(rng, design, n, min(BLOCK, n_resamples - start))
        for part, res in zip(parts, resamplings, strict=True):
            part.append(res.statistic(weights))
    return [{path: np.concatenate([p[path] for p in part]) for path in part[0]} for part in parts]


def method_record(resampling: Resampling, n_resamples: int, seed: int) -> dict[str, Any]:
    """What results.json records about how its intervals were made."""
    return {
        "method": "percentile",
        "confidence": CONFIDENCE,
        "n_resamples": n_resamples,
        "seed": seed,
        "unit": resampling.unit,
        "stratified": resampling.strata is not None,
        **({"notes": list(resampling.notes)} if resampling.notes else {}),
    }


def sign_flip_p(observed: float, replicates: np.ndarray) -> float:
    """Two-sided p: 2 x share of replicates on the other side of 0 from `observed` (0 counts), capped at 1."""
    finite = replicates[np.isfinite(replicates)]
    if observed == 0 or finite.size == 0:
        return 1.0
    flipped = np.mean(finite <= 0) if observed > 0 else np.mean(finite >= 0)
    return float(min(1.0, 2.0 * flipped))


def paired_bootstrap(
    a: Resampling, b: Resampling, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> dict[Path_, dict[str, Any]]:
    """Per metric path both runs have: A, B, B - A on the same rows, its percentile CI and sign-flip p.

    `a` and `b` must describe the same rows in the same order (same ids, strata and clusters).
    """
    if list(a.ids) != list(b.ids):
        raise ValueError("paired_bootstrap needs both runs' rows in the same order")
    for name in ("strata", "clusters"):
        if getattr(a, name) is not None and list(getattr(a, name)) != list(getattr(b, name) or []):
            raise EvalDataError(f"the two runs group their shared samples differently ({name}); cannot pair them")
    rep_a, rep_b = _replicates([a, b], n_resamples, seed, with_point=True)
    out: dict[Path_, dict[str, Any]] = {}
    for path in rep_a:
        if path not in rep_b:
            continue
        va, vb = rep_a[path], rep_b[path]
        diff = vb - va
        point_a, point_b, observed = float(va[0]), float(vb[0]), float(diff[0])
        if not np.isfinite(observed):
            out[path] = {"a": _finite(point_a), "b": _finite(point_b), "diff": None, "ci95": None, "p": None}
            continue
        finite = diff[1:][np.isfinite(diff[1:])]
        out[path] = {
            "a": point_a,
            "b": point_b,
            "diff": observed,
            "ci95": percentile_ci(diff[1:]),
            "p": sign_flip_p(observed, diff[1:]),
            # every resample gave the same non-zero difference: one sample in the group, or all changed alike
            "no_spread": bool(observed != 0 and finite.size and np.all(finite == finite[0])),
        }
    return out


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None

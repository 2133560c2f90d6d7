"""`bimedix2 eval agreement DIR`: the clinicians' agreement and their win/tie/loss for model A.

A choice (A, B, tie on the sheet) is turned into model A's outcome through the key. Agreement is over
the pairs every rater rated: Cohen's kappa for two raters, Fleiss' kappa for more (with each pair of
raters' Cohen's kappa beside). Win/tie/loss counts every rating, with bootstrap 95% intervals that
draw pairs whole (a pair's ratings by several raters are one unit), within languages. Where the LLM
judge's verdicts exist, its Cohen's kappa with each rater is reported too.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ...errors import EvalDataError
from ...fileio import read_json
from ..agreement import cohen_kappa, fleiss_kappa
from ..bootstrap import DEFAULT_RESAMPLES
from ..pairwise import win_tie_loss
from .ratings import load_all
from .sheet import read_key


def outcome(choice: str, shown: dict[str, str]) -> str:
    """Model a's outcome for one rater's choice on a pair (`shown`: the key's {"A": "a"|"b", ...})."""
    if choice == "tie":
        return "tie"
    return "win" if shown[choice] == "a" else "loss"


def human_agreement(out: Path, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Agreement, per-rater counts and human win/tie/loss (model A's view) of an evaluation folder."""
    key = read_key(out)
    ratings = load_all(out)
    if not ratings:
        raise EvalDataError(
            f"no ratings in {out / 'rating' / 'ratings'}: raters rate with `bimedix2 eval rate {out} --rater NAME`"
        )
    outcomes = {
        rater: {pid: outcome(c, key[pid]) for pid, c in choices.items() if pid in key}
        for rater, choices in ratings.items()
    }
    raters = sorted(outcomes)
    common = sorted(set.intersection(*(set(o) for o in outcomes.values())))
    result: dict[str, Any] = {
        "raters": {r: len(outcomes[r]) for r in raters},
        "n_pairs": len(key),
        "n_rated_by_all": len(common),
    }
    if len(raters) == 2:
        a, b = raters
        result["agreement"] = {
            "statistic": "cohen_kappa",
            "value": cohen_kappa([outcomes[a][p] for p in common], [outcomes[b][p] for p in common]),
            "n": len(common),
        }
    elif len(raters) > 2:
        result["agreement"] = {
            "statistic": "fleiss_kappa",
            "value": fleiss_kappa([[outcomes[r][p] for r in raters] for p in common]),
            "n": len(common),
            "pairwise_cohen_kappa": {
                f"{a}|{b}": cohen_kappa([outcomes[a][p] for p in common], [outcomes[b][p] for p in common])
                for a, b in itertools.combinations(raters, 2)
            },
        }
    else:
        result["agreement"] = {"statistic": None, "value": None, "n": 0, "note": "one rater: no agreement to compute"}
    rows = [
        {"id": f"{r}/{p}", "pair": p, "language": key[p]["language"], "outcome": o}
        for r in raters
        for p, o in outcomes[r].items()
    ]
    result["win_tie_loss"] = win_tie_loss(rows, n_resamples, seed, cluster_key="pair")
    result["judge_vs_raters"] = _judge_vs_raters(out, key, outcomes)
    return result


def _judge_vs_raters(out: Path, key: dict[str, dict[str, str]], outcomes: dict[str, dict[str, str]]) -> dict[str, Any]:
    path = out / "judgements.jsonl"
    if not path.is_file():
        return {}
    from ..results import read_scored

    by_id = {str(r["id"]): r.get("outcome") for r in read_scored(path) if "id" in r}
    judge = {pid: by_id.get(k["id"]) for pid, k in key.items()}
    out_: dict[str, Any] = {}
    for rater, o in outcomes.items():
        shared = [p for p in o if judge.get(p) is not None]
        out_[rater] = {"cohen_kappa": cohen_kappa([judge[p] for p in shared], [o[p] for p in shared]), "n": len(shared)}
    return out_


def format_agreement(result: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """Plain-text summary of `human_agreement`."""
    ag = result["agreement"]
    value = "n/a" if ag["value"] is None else f"{ag['value']:.3f}"
    lines = [
        f"raters: {', '.join(f'{r} ({n} pairs)' for r, n in result['raters'].items())}; "
        f"{result['n_rated_by_all']} of {result['n_pairs']} pairs rated by all",
        f"agreement: {ag['statistic'] or '-'} = {value} over {ag['n']} pairs",
    ]
    for group, v in result["win_tie_loss"].items():
        if group == "bootstrap" or not isinstance(v, dict) or v.get("win") is None:
            continue
        cells = []
        for o in ("win", "tie", "loss"):
            ci = (v.get("ci95") or {}).get(o)
            cells.append(f"{o} {v[o]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        lines.append(f"  human {group:8s} n={v['n']:<4d} " + "  ".join(cells))
    for rater, j in result.get("judge_vs_raters", {}).items():
        k = "n/a" if j["cohen_kappa"] is None else f"{j['cohen_kappa']:.3f}"
        lines.append(f"  LLM judge vs {rater}: Cohen's kappa {k} over {j['n']} pairs")
    return "\n".join(lines)


def labels_of(out: Path) -> dict[str, str]:
    """The two models' labels from results.json (for headings), or a/b."""
    path = out / "results.json"
    if path.is_file():
        data = read_json(path, EvalDataError)
        return {"a": str(data.get("a", "a")), "b": str(data.get("b", "b"))}
    return {"a": "a", "b": "b"}

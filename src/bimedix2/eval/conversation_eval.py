"""`bimedix2 eval conversations`: two models hold the script's conversations, an LLM judge compares
each pair anonymised in both orders, and win/tie/loss (model A's view) comes with bootstrap 95%
intervals overall and per language, beside the judge's position bias.

OUT holds: `config.json` (the resolved settings, never a key), `conversations/a.jsonl` and `b.jsonl`
(finished conversations), `judgements.jsonl` (both orders' replies and verdicts per pair),
`results.json`, the clinicians' `rating/` sheet and the `rating_key.json` they must not see.
Every store is resumable: a rerun with the same settings asks only for what is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import ConfigError, EvalDataError
from ..fileio import atomic_write_json, atomic_write_text, read_json
from ..types import RESEARCH_NOTICE, GenParams
from .bootstrap import DEFAULT_RESAMPLES
from .conversations import Patient, Responder, ScriptItem, Turns, run_side, store
from .pairwise import PROMPT_VERSION, combine, judge_messages, parse_verdict, position_bias, to_model, win_tie_loss
from .results import SampleCache
from .spec import clean_url

RESULTS_FORMAT = "bimedix2-conversations/1"
SIDES = ("a", "b")


@dataclass(frozen=True)
class JudgeSpec:
    """The LLM judge: an OpenAI-compatible endpoint and model."""

    url: str
    model: str
    key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int | None = None
    concurrency: int = 8

    def record(self) -> dict[str, Any]:
        return {
            "url": clean_url(self.url),
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "prompt_version": PROMPT_VERSION,
        }


@dataclass(frozen=True)
class Side:
    """One model under test: its label (shown in reports only, never to the judge) and how it replies."""

    label: str
    responder: Responder


def conversation_dir(out: Path) -> Path:
    return out / "conversations"


def check_config(out: Path, config: Mapping[str, Any]) -> None:
    """Refuse an OUT written with other settings than these (the stores would mix two experiments)."""
    path = out / "config.json"
    if not path.exists():
        return
    old = read_json(path, EvalDataError)
    keys = ("script_sha256", "a", "b", "patient", "judge", "params")
    changed = [k for k in keys if old.get(k) != config.get(k)]
    if changed:
        raise EvalDataError(
            f"{out} holds a conversation evaluation with other settings ({', '.join(changed)} changed); "
            "use another --out, or delete that folder to start over"
        )


def judge_pairs(
    items: Sequence[ScriptItem], convs: Mapping[str, Mapping[str, Turns]], judge: JudgeSpec, out: Path
) -> list[dict[str, Any]]:
    """Both orders of every pair judged (finished judgements kept in judgements.jsonl); the rows."""
    from ..llm_client import LLMClient, LLMConfig
    from .results import fingerprint

    cache = SampleCache(out / "judgements.jsonl", judge.record())
    pair_fp = {
        it.id: fingerprint({"a": convs["a"][it.id], "b": convs["b"][it.id]}) for it in items
    }  # a stored judgement of other conversations is stale
    for it in items:
        if it.id in cache and cache.records[it.id].get("conversations") != pair_fp[it.id]:
            raise EvalDataError(
                f"{cache.path}: the judgement of {it.id!r} was of other conversations; delete that file to judge again"
            )
    todo = [it for it in items if it.id not in cache]
    if todo:
        client = LLMClient(
            LLMConfig(
                base_url=judge.url,
                model=judge.model,
                api_key_env=judge.key_env,
                max_concurrency=judge.concurrency,
                cache_path=out / "judge_cache.sqlite",
            )
        )
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="judge", unit="pair")

        async def one(it: ScriptItem) -> None:
            a, b = convs["a"][it.id], convs["b"][it.id]
            ab, ba = await asyncio.gather(
                client.chat(
                    judge_messages(a, b, it.language), temperature=judge.temperature, max_tokens=judge.max_tokens
                ),
                client.chat(
                    judge_messages(b, a, it.language), temperature=judge.temperature, max_tokens=judge.max_tokens
                ),
            )
            v_ab, v_ba = parse_verdict(ab.text), parse_verdict(ba.text)
            m_ab, m_ba = to_model(v_ab, a_first=True), to_model(v_ba, a_first=False)
            outcome, consistent = combine(m_ab, m_ba)
            cache.add_many(
                [
                    {
                        "id": it.id,
                        "language": it.language,
                        "conversations": pair_fp[it.id],
                        "reply_ab": ab.text,
                        "reply_ba": ba.text,
                        "verdict_ab": v_ab,
                        "verdict_ba": v_ba,
                        "model_ab": m_ab,
                        "model_ba": m_ba,
                        "outcome": outcome,
                        "consistent": consistent,
                    }
                ]
            )
            bar.update(1)

        async def run() -> None:
            async with client:
                await asyncio.gather(*(one(it) for it in todo))

        try:
            asyncio.run(run())
        finally:
            bar.close()
    return [cache.records[it.id] for it in items]


def summarize(
    rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str], n_resamples: int, seed: int
) -> dict[str, Any]:
    """results.json's body: win/tie/loss with intervals, unparsed counts and the position bias, per language."""
    languages = sorted({str(r["language"]) for r in rows})
    unparsed = {"overall": sum(r["outcome"] is None for r in rows)}
    unparsed.update({lang: sum(r["outcome"] is None for r in rows if r["language"] == lang) for lang in languages})
    bias = {
        "overall": position_bias(rows),
        **{lang: position_bias([r for r in rows if r["language"] == lang]) for lang in languages},
    }
    return {
        "format": RESULTS_FORMAT,
        "notice": RESEARCH_NOTICE,
        "a": labels["a"],
        "b": labels["b"],
        "outcome_of": "a",
        "rule": "both orders judged; a verdict counts when both name the same model, else tie; unparsed excluded",
        "n_pairs": len(rows),
        "n_unparsed": unparsed,
        "win_tie_loss": win_tie_loss(rows, n_resamples, seed),
        "position_bias": bias,
    }


def format_summary(results: Mapping[str, Any]) -> str:
    """A plain-text table of win/tie/loss for model A against B."""
    wtl = results["win_tie_loss"]
    lines = [f"{results['a']} (A) vs {results['b']} (B), judged in both orders; A's win / tie / loss [95% CI]"]
    for group, v in wtl.items():
        if group == "bootstrap" or not isinstance(v, dict):
            continue
        cells = []
        for o in ("win", "tie", "loss"):
            ci = (v.get("ci95") or {}).get(o)
            value = "n/a" if v[o] is None else f"{v[o]:.3f}"
            cells.append(f"{o} {value}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        unparsed = results["n_unparsed"].get(group, 0)
        lines.append(f"  {group:8s} n={v['n']:<4d} " + "  ".join(cells) + f"  unparsed {unparsed}")
    bias = results["position_bias"]["overall"]
    rate = bias["first_position_rate"]
    lines.append(
        f"  position bias: first position chosen {('n/a' if rate is None else f'{rate:.3f}')} of "
        f"{bias['n_position_verdicts']} non-tie verdicts; orders agreed on "
        f"{bias['n_pairs_both_orders'] - bias['inconsistent']} of {bias['n_pairs_both_orders']} pairs"
    )
    return "\n".join(lines)


def _pct(value: float | None, ci: Sequence[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.1f}" + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else "")


def markdown_report(results: Mapping[str, Any]) -> str:
    """report.md: win/tie/loss (%, 95% CI) per language, unparsed counts and the judge's position bias."""
    lines = [
        f"# {results['a']} (A) vs {results['b']} (B): multi-turn conversations",
        "",
        f"_{RESEARCH_NOTICE}_",
        "",
        f"Judge: {results['judge']['model']} ({results['judge']['url']}); {results['rule']}.",
        "",
        "| Group | Pairs | A wins % [95% CI] | Ties % [95% CI] | A loses % [95% CI] | Unparsed |",
        "|---|---|---|---|---|---|",
    ]
    for group, v in results["win_tie_loss"].items():
        if group == "bootstrap" or not isinstance(v, dict):
            continue
        ci = v.get("ci95") or {}
        cells = " | ".join(_pct(v[o], ci.get(o)) for o in ("win", "tie", "loss"))
        lines.append(f"| {group} | {v['n']} | {cells} | {results['n_unparsed'].get(group, 0)} |")
    lines += ["", "| Group | First position chosen (non-tie verdicts) | Orders agreed |", "|---|---|---|"]
    for group, b in results["position_bias"].items():
        rate = "n/a" if b["first_position_rate"] is None else f"{b['first_position_rate'] * 100:.1f}%"
        agreed = b["n_pairs_both_orders"] - b["inconsistent"]
        lines.append(f"| {group} | {rate} of {b['n_position_verdicts']} | {agreed} of {b['n_pairs_both_orders']} |")
    boot = results["win_tie_loss"].get("bootstrap")
    if boot:
        lines += ["", f"Intervals: percentile bootstrap, {boot['n_resamples']} resamples (seed {boot['seed']}), pairs "
                  "resampled within languages."]  # fmt: skip
    return "\n".join(lines) + "\n"


def script_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def evaluate(
    items: Sequence[ScriptItem],
    sides: Mapping[str, Side],
    patient: Patient,
    judge: JudgeSpec,
    params: GenParams,
    out: Path,
    config: Mapping[str, Any],
    *,
    chunk: int = 8,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    sheet_seed: int = 0,
) -> dict[str, Any]:
    """The whole evaluation: both sides' conversations, the judgements, results.json and the rating sheet."""
    from .rater.sheet import write_sheet

    if set(sides) != set(SIDES):
        raise ConfigError("a conversation evaluation compares exactly two models, a and b")
    out.mkdir(parents=True, exist_ok=True)
    check_config(out, config)
    atomic_write_json(out / "config.json", dict(config))
    convs: dict[str, dict[str, Turns]] = {}
    for s in SIDES:
        side = sides[s]
        cache = store(conversation_dir(out) / f"{s}.jsonl", side.responder, patient, params)
        convs[s] = run_side(items, side.responder, patient, cache, chunk, f"model {s.upper()} conversations")
        if hasattr(side.responder, "close"):
            side.responder.close()  # an in-process model is freed before the other one loads
    rows = judge_pairs(items, convs, judge, out)
    results = summarize(rows, {s: sides[s].label for s in SIDES}, n_resamples, seed)
    results["judge"] = judge.record()
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", markdown_report(results))
    write_sheet(out, items, convs, sheet_seed)
    return results

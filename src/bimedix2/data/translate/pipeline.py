"""English -> Arabic translate, score, refine, route to review; durable and resumable.

Per record (whole conversation at once, as context):

1. translate -> ``{"turns": [...]}`` (checked: one non-empty string per turn, ``<image>`` tokens
   kept per turn; otherwise asked again, then a recorded failure);
2. score fidelity 0-100 -> ``{"score", "issues"}``; an automatic check adds an issue for every
   number of the English text missing from the Arabic (Arabic-Indic digits compared as digits)
   and caps such a translation's score below the threshold, so it cannot pass unnoticed;
3. while the best score is below the threshold (``threshold_test`` for validation/test records,
   ``threshold_train`` for training records) and fewer than ``max_rounds`` refinements ran:
   refine with the score and issues as feedback, score again, keep the best;
4. still below: human review queue (``low_score``); at or above: accepted, and a deterministic
   random ``review_sample_rate`` share is also queued (``sampled``) for spot checks.

Export (``export_translations``): accepted records, sampled ones unless a reviewer rejected
them, low scorers only once a reviewer accepted or edited them. Stored text is never
normalised; Arabic goes out byte for byte as the model or reviewer wrote it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import save_config
from ...conversation import IMAGE_PLACEHOLDER
from ...errors import ConfigError
from ...fileio import atomic_write_text
from ...llm_client import LLMClient, LLMConfig
from ...types import RESEARCH_NOTICE
from ..io import write_jsonl
from ..joblock import JobLock
from ..jobstore import ItemResult, JobStore, save_error
from ..runner import RunSummary, run_records
from ..schema import Record, Turn, record_from_json, record_to_json
from .prompts import check_prompts, refine_messages, score_messages, translate_messages

JOB_DB = "job.sqlite"
CACHE_DB = "llm_cache.sqlite"
OUTPUT = "translated.jsonl"


@dataclass(frozen=True)
class TranslateConfig:
    """Settings of a translation job (YAML: configs/data/translate.yaml)."""

    llm: LLMConfig
    threshold_test: int = 85
    threshold_train: int = 75
    max_rounds: int = 3
    review_sample_rate: float = 0.02
    json_attempts: int = 3
    seed: int = 0
    json_mode: bool = False  # send response_format={"type": "json_object"} (OpenAI, vLLM support it)
    prompts: str = "toolkit"  # translate + score prompts: toolkit | bimedix-v1 (BiMediX v1 Tables 11-12, prompts_v1)

    def validate(self) -> None:
        for name in ("threshold_test", "threshold_train"):
            if not 0 <= getattr(self, name) <= 100:
                raise ConfigError(f"{name} must be within 0-100, got {getattr(self, name)}")
        if self.max_rounds < 0 or self.json_attempts < 1:
            raise ConfigError("max_rounds must be >= 0 and json_attempts >= 1")
        if not 0.0 <= self.review_sample_rate <= 1.0:
            raise ConfigError(f"review_sample_rate must be within 0-1, got {self.review_sample_rate}")
        check_prompts(self.prompts)

    def threshold(self, split: str) -> int:
        return self.threshold_train if split == "train" else self.threshold_test

    def result_settings(self) -> dict[str, Any]:
        """The settings that change results (a resumed job must keep them)."""
        return {
            "model": self.llm.model,
            "threshold_test": self.threshold_test,
            "threshold_train": self.threshold_train,
            "max_rounds": self.max_rounds,
            "review_sample_rate": self.review_sample_rate,
            "json_attempts": self.json_attempts,
            "seed": self.seed,
            "json_mode": self.json_mode,
            # only when not the default, so jobs started before the option existed still resume
            **({"prompts": self.prompts} if self.prompts != "toolkit" else {}),
        }

    def json_params(self) -> dict[str, Any]:
        """Extra request parameters for JSON replies."""
        return {"response_format": {"type": "json_object"}} if self.json_mode else {}


# ---- reply checks --------------------------------------------------------------------------------

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹٫", "01234567890123456789.")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def _turns_validator(source: Sequence[str]):  # noqa: ANN202
    def check(value: Any) -> None:
        if not isinstance(value, dict) or not isinstance(value.get("turns"), list):
            raise ValueError('reply must be an object with a "turns" array')
        turns = value["turns"]
        if len(turns) != len(source):
            raise ValueError(f'"turns" has {len(turns)} items, expected {len(source)}')
        for i, (src, out) in enumerate(zip(source, turns, strict=True)):
            if not isinstance(out, str) or not out.strip():
                raise ValueError(f"turn {i} is not a non-empty string")
            if out.count(IMAGE_PLACEHOLDER) != src.count(IMAGE_PLACEHOLDER):
                raise ValueError(f"turn {i}: {IMAGE_PLACEHOLDER} tokens not kept")

    return check


def _check_score(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError("reply must be an object")
    score = value.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 100:
        raise ValueError('"score" must be a number within 0-100')
    issues = value.get("issues", [])
    if not isinstance(issues, list) or not all(isinstance(i, str) for i in issues):
        raise ValueError('"issues" must be a list of strings')


def missing_numbers(source: Sequence[str], arabic: Sequence[str]) -> list[str]:
    """Issues for numbers of the English turns absent from the Arabic ones (compared, never stored, as 0-9)."""
    issues = []
    for i, (src, out) in enumerate(zip(source, arabic, strict=True)):
        found = set(_NUMBER.findall(out.translate(_DIGITS)))
        for number in dict.fromkeys(_NUMBER.findall(src)):
            if number not in found and number.replace(",", ".") not in found:
                issues.append(f"turn {i}: number {number} from the English text is missing")
    return issues


def sampled_for_review(record_id: str, rate: float, seed: int) -> bool:
    """Deterministic per record (so resuming never changes the sample)."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


# ---- one record ----------------------------------------------------------------------------------


@dataclass
class _Scored:
    turns: list[str]
    score: int
    issues: list[str] = field(default_factory=list)


async def _score(llm: LLMClient, cfg: TranslateConfig, pairs, turns: list[str], threshold: int) -> _Scored | str:  # noqa: ANN001
    reply = await llm.chat_json(
        score_messages(pairs, turns, cfg.prompts),
        validate=_check_score,
        attempts=cfg.json_attempts,
        **cfg.json_params(),
    )
    if not reply.ok:
        return f"scoring failed: {reply.error}"
    score = int(round(reply.value["score"]))
    issues = list(reply.value.get("issues", []))
    auto = missing_numbers([v for _, v in pairs], turns)
    if auto:
        score = min(score, threshold - 1)
        issues += auto
    return _Scored(turns, score, issues)


async def translate_record(llm: LLMClient, record: Record, cfg: TranslateConfig) -> ItemResult:
    """Translate, score and refine one English record; the outcome is ready for the job store."""
    if record.language != "en":
        return ItemResult(rec_id=record.id, status="skipped", info={"reason": f"language is {record.language!r}"})
    pairs = [(t.speaker, t.value) for t in record.conversations]
    source = [v for _, v in pairs]
    threshold = cfg.threshold(record.split)
    first = await llm.chat_json(
        translate_messages(pairs, cfg.prompts),
        validate=_turns_validator(source),
        attempts=cfg.json_attempts,
        **cfg.json_params(),
    )
    if not first.ok:
        return ItemResult(
            rec_id=record.id,
            status="failed",
            info={"error": f"translation failed: {first.error}", "source": pairs},
            threshold=threshold,
            review_reason="failed",
        )
    scored = await _score(llm, cfg, pairs, list(first.value["turns"]), threshold)
    if isinstance(scored, str):
        output = _arabic_record(record, list(first.value["turns"]), cfg, None, None, 0, threshold)
        return ItemResult(
            rec_id=record.id, status="failed", output=output, info={"error": scored, "source": pairs},
            threshold=threshold, review_reason="failed",
        )  # fmt: skip
    best, history, rounds = scored, [scored.score], 0
    while best.score < threshold and rounds < cfg.max_rounds:
        rounds += 1
        refined = await llm.chat_json(
            refine_messages(pairs, best.turns, best.score, best.issues),
            validate=_turns_validator(source),
            attempts=cfg.json_attempts,
            **cfg.json_params(),
        )
        if not refined.ok:
            history.append(None)
            continue
        candidate = await _score(llm, cfg, pairs, list(refined.value["turns"]), threshold)
        if isinstance(candidate, str):
            history.append(None)
            continue
        history.append(candidate.score)
        if candidate.score >= best.score:
            best = candidate
    if best.score < threshold:
        reason: str | None = "low_score"
    elif sampled_for_review(record.id, cfg.review_sample_rate, cfg.seed):
        reason = "sampled"
    else:
        reason = None
    output = _arabic_record(record, best.turns, cfg, history[0], best.score, rounds, threshold)
    return ItemResult(
        rec_id=record.id,
        status="review" if reason else "done",
        output=output,
        info={"scores": history, "issues": best.issues, **({"source": pairs} if reason else {})},
        first_score=history[0],
        final_score=best.score,
        threshold=threshold,
        rounds=rounds,
        review_reason=reason,
    )


def _arabic_record(
    record: Record, turns: list[str], cfg: TranslateConfig, first: int | None, final: int | None, rounds: int, thr: int
) -> dict[str, Any]:
    arabic = record.with_(
        id=f"{record.id}-ar",
        conversations=tuple(Turn(t.speaker, text) for t, text in zip(record.conversations, turns, strict=True)),
        language="ar",
        provenance={
            **dict(record.provenance),
            "translated_from": record.id,
            "translation": {
                "model": cfg.llm.model,
                "first_score": first,
                "final_score": final,
                "threshold": thr,
                "refinement_rounds": rounds,
            },
        },
    )
    return record_to_json(arabic)


# ---- job -----------------------------------------------------------------------------------------


def resolve_config(cfg: TranslateConfig, out_dir: Path) -> TranslateConfig:
    """Default the LLM cache into the job folder (and refuse an unavailable prompt set before any work)."""
    check_prompts(cfg.prompts)
    if cfg.llm.cache_path is None:
        from dataclasses import replace

        cfg = replace(cfg, llm=replace(cfg.llm, cache_path=out_dir / CACHE_DB))
    return cfg


async def run_translation_async(
    input_path: str | Path, out_dir: str | Path, cfg: TranslateConfig, *, progress: bool = True
) -> tuple[RunSummary, dict[str, Any]]:
    """Translate every record of ``input_path`` into ``out_dir`` (resumable), then export.

    One run per folder at a time (`JobLock`). Records changed since an earlier run are
    translated again (``redone_this_run`` in the stats), removed ones dropped (``removed_this_run``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = resolve_config(cfg, out)
    with JobLock(out), JobStore(out / JOB_DB) as store:
        store.check_config(cfg.result_settings())
        save_config(cfg, out / "config.yaml")
        async with LLMClient(cfg.llm) as llm:

            async def process(idx: int, record: Record) -> ItemResult:
                try:
                    return await translate_record(llm, record, cfg)
                except sqlite3.Error as exc:  # the response cache could not be written (or read)
                    raise save_error("the LLM response cache", Path(str(cfg.llm.cache_path)).parent, exc) from None

            # twice as many records in progress as requests allowed in flight: a slot freed while its
            # record parses a reply goes at once to another record's waiting request (bench_translate.py)
            workers = 2 * cfg.llm.max_concurrency
            summary = await run_records(
                input_path, store, process, workers=workers, desc="translate", progress=progress
            )
            usage = llm.usage.as_dict()
        stats = translation_stats(store)
        stats["llm_usage_this_run"] = usage
        stats.update(run_report(summary))
        try:
            export_translations(store, out / OUTPUT)
            atomic_write_text(out / "stats.json", json.dumps(stats, indent=1))
        except OSError as exc:
            raise save_error("the export", out, exc) from None
    return summary, stats


def run_report(summary: RunSummary) -> dict[str, Any]:
    """What a run changed, for ``stats.json``: records redone because their content changed, and removed."""
    return {
        "redone_this_run": list(summary.redone),
        "redone_count": summary.redone_count,
        "removed_this_run": list(summary.removed),
        "removed_count": summary.removed_count,
    }


def run_translation(
    input_path: str | Path, out_dir: str | Path, cfg: TranslateConfig, *, progress: bool = True
) -> tuple[RunSummary, dict[str, Any]]:
    """Synchronous wrapper of ``run_translation_async``."""
    return asyncio.run(run_translation_async(input_path, out_dir, cfg, progress=progress))


def final_record(item) -> Record | None:  # noqa: ANN001 - StoredItem
    """The record an item contributes to the export, or None (rejected, pending, failed, skipped)."""
    result = item.result
    if item.decision == "rejected" or result.status in ("invalid", "skipped"):
        return None
    if item.decision == "edited":
        obj = item.decided_output
    elif item.decision == "accepted" or result.status == "done" or result.review_reason == "sampled":
        obj = result.output
    else:
        return None
    if obj is None:
        return None
    record = record_from_json(obj)
    trans = dict(record.provenance.get("translation", {}))
    trans["review"] = item.decision or ("pending" if result.review_reason else "not sampled")
    return record.with_(provenance={**dict(record.provenance), "translation": trans})


def export_translations(store: JobStore, path: str | Path) -> int:
    """Write the final Arabic records in input order (atomically); returns how many."""
    return write_jsonl((r for r in map(final_record, store.items()) if r is not None), path)


def translation_stats(store: JobStore) -> dict[str, Any]:
    """The BiMediX paper's translation statistics, computed from the job store."""
    (n, below, rounds_all, refined, rounds_refined, recovered, humans, failed, sampled, low) = store.sql(
        "SELECT COUNT(*),"
        " SUM(first_score < threshold),"
        " AVG(rounds),"
        " SUM(rounds > 0),"
        " AVG(CASE WHEN rounds > 0 THEN rounds END),"
        " SUM(first_score < threshold AND final_score >= threshold),"
        " SUM(review_reason IS NOT NULL),"
        " SUM(status = 'failed'),"
        " SUM(review_reason = 'sampled'),"
        " SUM(review_reason = 'low_score')"
        " FROM items WHERE status IN ('done', 'review', 'failed')"
    )[0]
    n = n or 0
    below = below or 0

    def share(a: int | None, b: int) -> float | None:
        return round((a or 0) / b, 4) if b else None

    decisions = dict(store.sql("SELECT decision, COUNT(*) FROM items WHERE decision IS NOT NULL GROUP BY decision"))
    return {
        "notice": RESEARCH_NOTICE,
        "records_translated": n,
        "invalid_input_records": store.count("invalid"),
        "invalid_input": store.invalid_lines(),
        "skipped_not_english": store.count("skipped"),
        "share_below_threshold_at_first": share(below, n),
        "mean_refinement_rounds": round(rounds_all, 4) if rounds_all is not None else None,
        "mean_rounds_when_refined": round(rounds_refined, 4) if rounds_refined is not None else None,
        "records_refined": refined or 0,
        "share_recovered_of_below": share(recovered, below),
        "share_sent_to_humans": share(humans, n),
        "sent_to_humans": {"low_score": low or 0, "sampled": sampled or 0, "failed": failed or 0},
        "review_decisions": decisions,
        "review_pending": sum(1 for _ in store.pending_review()),
    }

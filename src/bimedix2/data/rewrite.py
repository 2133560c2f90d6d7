"""LLM rewriting jobs on the OpenAI-compatible client (durable and resumable like translation).

Kinds:

- ``vqa-detail``: a concise VQA answer ("yes", "left lung") becomes a detailed answer grounded
  in the original; checked: a yes/no answer must open with that word, a short answer must
  appear verbatim (case-insensitive) in the detailed one.
- ``caption-conversation``: an image caption becomes a multi-turn conversation about the image
  whose answers only use facts from the caption.
- ``mcq-dialogue``: an MCQ item becomes a realistic doctor-patient (or student-teacher)
  dialogue that leads to the item's correct answer (BiMediX appendix method); checked: the last
  assistant turn names the correct option's text. ``prompt`` picks its system prompt:
  ``toolkit`` (``MCQ_SYSTEM``, the default) or ``bimedix-v1`` (BiMediX v1's Table 10, see
  `translate.prompts_v1`; refused with a clear error while its text is not sourced).

Replies that break the JSON contract or a check are asked again, then recorded as failed.

Doctor review: each generated record draws a seeded number from its id; those below
``review_sample_rate`` are queued (``review``, reason ``sampled``, the source turns kept for the
reviewer), and ``review_sample_size`` caps the queue at the lowest draws (decided ones always
stay). ``bimedix2 review OUT_DIR`` walks the queue; the export leaves out rejected records and
carries edited ones.
Output: ``OUT_DIR/rewritten.jsonl`` (input order), ``stats.json``, ``config.yaml``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import save_config
from ..conversation import IMAGE_PLACEHOLDER
from ..errors import ConfigError, RecordError
from ..fileio import atomic_write_text
from ..llm_client import LLMClient, LLMConfig
from ..types import RESEARCH_NOTICE
from .io import write_jsonl
from .joblock import JobLock
from .jobstore import ItemResult, JobStore, StoredItem, save_error
from .runner import RunSummary, run_records
from .schema import Record, Turn, record_from_json, record_to_json
from .translate import prompts_v1

KINDS = ("vqa-detail", "caption-conversation", "mcq-dialogue")
OUTPUT = "rewritten.jsonl"

VQA_DETAIL_SYSTEM = """You rewrite short answers of medical visual question answering data into detailed answers.
You receive a question about a medical image and its correct short answer. You cannot see the image.
Write a detailed, well-formed answer (2-4 sentences) that:
- states the short answer first, unchanged (a yes/no answer starts with "Yes" or "No");
- explains it with general medical knowledge relevant to the question;
- never invents image findings beyond what the question and short answer imply.
Reply with one JSON object and nothing else: {"answer": "<detailed answer>"}"""

# The conversation reply contract (also appended to BiMediX v1's Table 10 prompt, so replies are checked alike).
CONVERSATION_CONTRACT = """Reply with one JSON object and nothing else:
{"conversation": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}, ...]}
Turns alternate, starting with "human" and ending with "gpt"."""

CAPTION_SYSTEM = (
    """You turn the caption of a medical image into a conversation about the image.
You receive the caption. Write a conversation between a user asking about the image and an AI assistant
that answers as if it sees the image. Use only facts stated in the caption; do not invent findings,
numbers or diagnoses. Keep numbers, units and drug names exactly as in the caption.
Do not write "<image>" or mention "the caption".
"""
    + CONVERSATION_CONTRACT
)

MCQ_SYSTEM = (
    """You turn a medical multiple-choice question into a realistic multi-turn dialogue.
You receive the question, its options and the correct answer (with an explanation when available).
Write a conversation between a patient (or a medical student) as "human" and a doctor (or teacher) as "gpt":
the human describes the situation from the question in their own words; the doctor asks relevant follow-up
questions, the human answers them using only facts from the question; the doctor reasons step by step and,
in the final turn, states the correct answer by name and explains why. Keep numbers, units and drug names exact.
Do not mention that this comes from a multiple-choice question or list the options.
"""
    + CONVERSATION_CONTRACT
)

SYSTEMS = {"vqa-detail": VQA_DETAIL_SYSTEM, "caption-conversation": CAPTION_SYSTEM, "mcq-dialogue": MCQ_SYSTEM}
_ANSWER = re.compile(r"The correct answer is ([A-Z])\. (.+?)(?:\n|$)")


@dataclass(frozen=True)
class RewriteConfig:
    """Settings of a rewriting job (YAML: configs/data/rewrite.yaml)."""

    llm: LLMConfig
    min_turns: int = 2
    max_turns: int = 4
    json_attempts: int = 3
    temperature: float = 0.7
    prompt: str = "toolkit"  # mcq-dialogue system prompt: toolkit | bimedix-v1 (BiMediX v1 Table 10)
    review_sample_rate: float = 0.02  # share of generated records queued for doctor review (seeded per record)
    review_sample_size: int | None = None  # at most this many queued (the lowest draws); None: no cap
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.min_turns <= self.max_turns:
            raise ConfigError(f"need 1 <= min_turns <= max_turns, got {self.min_turns}, {self.max_turns}")
        if self.json_attempts < 1:
            raise ConfigError("json_attempts must be >= 1")
        if not 0.0 <= self.review_sample_rate <= 1.0:
            raise ConfigError(f"review_sample_rate must be within 0-1, got {self.review_sample_rate}")
        if self.review_sample_size is not None and self.review_sample_size < 0:
            raise ConfigError(f"review_sample_size must be >= 0 or null, got {self.review_sample_size}")
        prompts_v1.check_prompt_set("prompt", self.prompt, (prompts_v1.MCQ_CHAT,))

    def settings(self, kind: str) -> dict[str, Any]:
        """The settings that shape a job's results (a resumed job must keep them).

        The prompt and the review draw appear only when not the old behaviour (toolkit prompt, no
        sampling), so a folder started before these options resumes with ``review_sample_rate: 0``.
        """
        settings: dict[str, Any] = {
            "kind": kind, "model": self.llm.model, "min_turns": self.min_turns, "max_turns": self.max_turns,
            "json_attempts": self.json_attempts, "temperature": self.temperature,
        }  # fmt: skip
        if self.prompt != prompts_v1.TOOLKIT:
            settings["prompt"] = self.prompt
        if self.review_sample_rate > 0:
            settings.update(review_sample_rate=self.review_sample_rate, seed=self.seed)
        return settings


def review_draw(record_id: str, seed: int) -> float:
    """A record's review draw in [0, 1): deterministic per (seed, id), so resuming never changes the sample."""
    digest = hashlib.sha256(f"rewrite-review:{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def mcq_system(cfg: RewriteConfig) -> str:
    """The mcq-dialogue system prompt of the configured prompt set."""
    if cfg.prompt == prompts_v1.TOOLKIT:
        return MCQ_SYSTEM
    prompts_v1.check_prompt_set("prompt", cfg.prompt, (prompts_v1.MCQ_CHAT,))
    return prompts_v1.paper_system(prompts_v1.MCQ_CHAT, CONVERSATION_CONTRACT, "prompt")


def _strip_image(text: str) -> str:
    return text.replace(IMAGE_PLACEHOLDER, "").strip()


def mcq_answer_text(record: Record) -> str:
    """The correct option's text from a builder's MCQ record ("The correct answer is C. Text")."""
    match = _ANSWER.search(record.conversations[-1].value)
    if not match:
        raise RecordError(f"record {record.id}: last turn does not state 'The correct answer is X. ...'")
    return match.group(2).strip()


def build_messages(kind: str, record: Record, cfg: RewriteConfig) -> list[dict[str, str]]:
    """The chat messages for one record."""
    if kind == "vqa-detail":
        user = json.dumps(
            {"question": _strip_image(record.conversations[0].value), "short_answer": record.conversations[1].value},
            ensure_ascii=False,
        )
    elif kind == "caption-conversation":
        user = json.dumps(
            {"caption": record.conversations[-1].value, "exchanges": f"{cfg.min_turns}-{cfg.max_turns}"},
            ensure_ascii=False,
        )
    else:
        user = json.dumps(
            {
                "question_with_options": record.conversations[0].value,
                "correct_answer": record.conversations[-1].value,
                "exchanges": f"{cfg.min_turns}-{cfg.max_turns}",
            },
            ensure_ascii=False,
        )
    system = mcq_system(cfg) if kind == "mcq-dialogue" else SYSTEMS[kind]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _conversation_check(cfg: RewriteConfig, must_end_with: str | None):  # noqa: ANN202
    def check(value: Any) -> None:
        conv = value.get("conversation") if isinstance(value, dict) else None
        if not isinstance(conv, list) or not conv:
            raise ValueError('reply must be an object with a non-empty "conversation" array')
        for i, turn in enumerate(conv):
            expected = "human" if i % 2 == 0 else "gpt"
            if not isinstance(turn, dict) or turn.get("from") != expected:
                raise ValueError(f"turn {i} must be from {expected!r}")
            if not isinstance(turn.get("value"), str) or not turn["value"].strip():
                raise ValueError(f"turn {i} is empty")
            if IMAGE_PLACEHOLDER in turn["value"]:
                raise ValueError(f"turn {i} contains {IMAGE_PLACEHOLDER}")
        if len(conv) % 2:
            raise ValueError("the conversation must end with a 'gpt' turn")
        if not cfg.min_turns <= len(conv) // 2 <= cfg.max_turns:
            raise ValueError(f"{len(conv) // 2} exchanges, expected {cfg.min_turns}-{cfg.max_turns}")
        if must_end_with and must_end_with.lower() not in conv[-1]["value"].lower():
            raise ValueError(f"the last turn must state the correct answer ({must_end_with!r})")

    return check


def _detail_check(short: str):  # noqa: ANN202
    short_clean = short.strip().rstrip(".").strip()

    def check(value: Any) -> None:
        answer = value.get("answer") if isinstance(value, dict) else None
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError('reply must be an object with a non-empty "answer"')
        lowered = answer.strip().lower()
        if short_clean.lower() in ("yes", "no"):
            if not lowered.startswith(short_clean.lower()):
                raise ValueError(f"a {short_clean!r} answer must start with {short_clean!r}")
        elif len(short_clean.split()) <= 6 and short_clean.lower() not in lowered:
            raise ValueError(f"the detailed answer must contain the original answer {short_clean!r}")

    return check


async def rewrite_record(llm: LLMClient, kind: str, record: Record, cfg: RewriteConfig) -> ItemResult:
    """Rewrite one record; failures (after re-asking) are recorded, not raised."""
    if kind not in KINDS:
        raise ConfigError(f"unknown rewrite kind {kind!r}; known: {KINDS}")
    if record.language != "en":
        return ItemResult(rec_id=record.id, status="skipped", info={"reason": "rewriting works on English records"})
    if kind == "vqa-detail":
        if len(record.conversations) != 2:
            return ItemResult(rec_id=record.id, status="skipped", info={"reason": "not a single-turn VQA record"})
        check = _detail_check(record.conversations[1].value)
    elif kind == "mcq-dialogue":
        try:
            check = _conversation_check(cfg, mcq_answer_text(record))
        except RecordError as exc:
            return ItemResult(rec_id=record.id, status="skipped", info={"reason": str(exc)})
    else:
        check = _conversation_check(cfg, None)
    reply = await llm.chat_json(
        build_messages(kind, record, cfg), validate=check, attempts=cfg.json_attempts, temperature=cfg.temperature
    )
    if not reply.ok:
        return ItemResult(rec_id=record.id, status="failed", info={"error": reply.error, "attempts": reply.attempts})
    if kind == "vqa-detail":
        turns = (record.conversations[0], Turn("gpt", reply.value["answer"].strip()))
        task = record.task
    else:
        conv = reply.value["conversation"]
        turns = tuple(Turn(t["from"], t["value"].strip()) for t in conv)
        if record.images:
            prefix = "".join(f"{IMAGE_PLACEHOLDER}\n" for _ in record.images)
            turns = (Turn("human", prefix + turns[0].value), *turns[1:])
        task = "conversation"
    provenance = {**dict(record.provenance), "rewritten_from": record.id, "rewrite": kind, "model": llm.config.model}
    if kind == "mcq-dialogue" and cfg.prompt != prompts_v1.TOOLKIT:
        provenance["rewrite_prompt"] = cfg.prompt
    out = record.with_(id=f"{record.id}-{kind}", conversations=turns, task=task, provenance=provenance)
    info: dict[str, Any] = {"attempts": reply.attempts}
    draw = review_draw(record.id, cfg.seed)
    if draw < cfg.review_sample_rate:  # queued for doctor review; the source turns are shown to the reviewer
        info.update(review_draw=draw, source=[(t.speaker, t.value) for t in record.conversations])
        return ItemResult(
            rec_id=record.id, status="review", output=record_to_json(out), info=info, review_reason="sampled"
        )
    return ItemResult(rec_id=record.id, status="done", output=record_to_json(out), info=info)


def cap_review_queue(store: JobStore, size: int | None) -> None:
    """Keep at most ``size`` sampled records queued: decided ones always, then the lowest draws.

    Records over the cap go back to plain ``done`` but keep their draw, so a larger cap later queues them again.
    Only (idx, draw, decision, reason) are read for every drawn row, so a 1.6M-record job stays small in memory.
    """
    drawn = store.sql(
        "SELECT idx, json_extract(info, '$.review_draw'), decision, review_reason FROM items"
        " WHERE status IN ('done', 'review') AND json_extract(info, '$.review_draw') IS NOT NULL"
    )
    decided = sum(1 for _, _, decision, _ in drawn if decision)
    undecided = sorted((draw, idx, reason) for idx, draw, decision, reason in drawn if not decision)
    room = len(undecided) if size is None else max(0, size - decided)
    for n, (_, idx, reason) in enumerate(undecided):
        want = n < room
        if want != (reason == "sampled"):
            (item,) = store.items("idx = ?", (idx,))
            status, new_reason = ("review", "sampled") if want else ("done", None)
            finished = store.finished(idx)
            store.put(idx, replace(item.result, status=status, review_reason=new_reason), finished and finished[1])


def final_rewrite(item: StoredItem) -> Record | None:
    """The record an item contributes to the export: None when rejected by a reviewer, failed or skipped."""
    result = item.result
    if item.decision == "rejected" or result.status not in ("done", "review"):
        return None
    obj = item.decided_output if item.decision == "edited" else result.output
    if obj is None:
        return None
    record = record_from_json(obj)
    review = item.decision or ("pending" if result.review_reason else "not sampled")
    return record.with_(provenance={**dict(record.provenance), "rewrite_review": review})


def export_rewrites(store: JobStore, path: str | Path) -> int:
    """Write the job's records in input order (atomically), honouring review decisions; returns how many."""

    def records() -> Iterator[Record]:
        for item in store.items():
            record = final_rewrite(item)
            if record is not None:
                yield record

    return write_jsonl(records(), path)


def review_stats(store: JobStore) -> dict[str, Any]:
    """The doctor-review queue of a rewrite job: how many queued, decided (by decision) and pending."""
    decisions = dict(store.sql("SELECT decision, COUNT(*) FROM items WHERE decision IS NOT NULL GROUP BY decision"))
    queued = int(store.sql("SELECT COUNT(*) FROM items WHERE review_reason = 'sampled'")[0][0])
    return {"queued": queued, "decisions": decisions, "pending": sum(1 for _ in store.pending_review())}


async def run_rewrite_async(
    kind: str, input_path: str | Path, out_dir: str | Path, cfg: RewriteConfig, *, progress: bool = True
) -> tuple[RunSummary, dict[str, Any]]:
    if kind not in KINDS:
        raise ConfigError(f"unknown rewrite kind {kind!r}; known: {KINDS}")
    cfg.validate()  # before any work: an unknown or unavailable prompt set, a bad review rate
    if cfg.prompt != prompts_v1.TOOLKIT and kind != "mcq-dialogue":
        raise ConfigError(f"prompt: {cfg.prompt} is a prompt for mcq-dialogue only (BiMediX v1's Table 10), not {kind}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.llm.cache_path is None:
        cfg = replace(cfg, llm=replace(cfg.llm, cache_path=out / "llm_cache.sqlite"))
    with JobLock(out), JobStore(out / "job.sqlite") as store:
        store.check_config(cfg.settings(kind))
        save_config(cfg, out / "config.yaml")
        async with LLMClient(cfg.llm) as llm:

            async def process(idx: int, record: Record) -> ItemResult:
                try:
                    return await rewrite_record(llm, kind, record, cfg)
                except sqlite3.Error as exc:  # the response cache could not be written (or read)
                    raise save_error("the LLM response cache", Path(str(cfg.llm.cache_path)).parent, exc) from None

            summary = await run_records(
                input_path, store, process, workers=cfg.llm.max_concurrency, desc=f"rewrite {kind}", progress=progress
            )
            usage = llm.usage.as_dict()
        cap_review_queue(store, cfg.review_sample_size)
        try:
            written = export_rewrites(store, out / OUTPUT)
        except OSError as exc:
            raise save_error("the output", out, exc) from None
        stats = {
            "notice": RESEARCH_NOTICE,
            "kind": kind,
            "written": written,
            "failed": store.count("failed"),
            "skipped": store.count("skipped"),
            "review": review_stats(store),
            "invalid_input_records": store.count("invalid"),
            "invalid_input": store.invalid_lines(),
            "redone_this_run": list(summary.redone),
            "redone_count": summary.redone_count,
            "removed_this_run": list(summary.removed),
            "removed_count": summary.removed_count,
            "llm_usage_this_run": usage,
        }
        try:
            atomic_write_text(out / "stats.json", json.dumps(stats, indent=1))
        except OSError as exc:
            raise save_error("the statistics", out, exc) from None
    return summary, stats


def run_rewrite(
    kind: str, input_path: str | Path, out_dir: str | Path, cfg: RewriteConfig, *, progress: bool = True
) -> tuple[RunSummary, dict[str, Any]]:
    """Run a rewriting job (resumable: rerun the same command to continue)."""
    return asyncio.run(run_rewrite_async(kind, input_path, out_dir, cfg, progress=progress))

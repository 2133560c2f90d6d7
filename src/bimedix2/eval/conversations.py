"""Multi-turn medical conversations held by a model with a patient: the patient script, the patient
(scripted turns or an LLM playing the patient), the models (in-process engine or an OpenAI-compatible
endpoint) and the resumable store of finished conversations.

Script (JSONL, one patient a line): `id`, `language` ("en" | "ar"), `opening` (the patient's first
message), `follow_ups` (the patient's later messages, in order; may be empty) and, optionally, `persona`
(what an LLM patient is told about itself; default: the opening). With a scripted patient every
model hears the same patient turns; an LLM patient answers each model's own replies.

A conversation is stored (one JSONL line, flushed) once all its turns are done, with the fingerprint
of its script line: a rerun asks only for the missing ones, and a changed script line is refused.
Endpoint calls are also cached (SQLite) so a conversation cut short is replayed without paying twice.
Patient messages and replies are never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from ..errors import EvalDataError
from ..fileio import iter_jsonl
from ..types import GenParams, Message
from .results import SampleCache, fingerprint

Turns = list[dict[str, str]]  # [{"role": "user" | "assistant", "content": ...}]
LANGUAGES = ("en", "ar")
PATIENT_PROMPT_VERSION = 2

PATIENT_SYSTEM = {
    "en": (
        "You are role-playing a patient who is talking to an AI medical assistant, to test the assistant. "
        "Who you are and what is wrong: {persona}\n"
        "Write only the patient's next message, in English, in one to three sentences: answer what the assistant "
        "asked using your situation (invent plausible details that fit it), or ask a natural follow-up question. "
        "Never give medical advice yourself and never say that you are role-playing."
    ),
    "ar": (
        "أنت تؤدي دور مريض يتحدث إلى مساعد طبي يعمل بالذكاء الاصطناعي، لاختبار هذا المساعد. "
        "من أنت وما مشكلتك: {persona}\n"
        "اكتب رسالة المريض التالية فقط، باللغة العربية الفصحى، في جملة إلى ثلاث جمل: أجب عمّا سأل عنه المساعد "
        "بحسب حالتك (واخترع تفاصيل معقولة تناسبها)، أو اطرح سؤال متابعة طبيعياً. "
        "لا تقدّم أي نصيحة طبية بنفسك ولا تذكر أنك تؤدي دوراً."
    ),
}


@dataclass(frozen=True)
class ScriptItem:
    """One scripted patient."""

    id: str
    language: str
    opening: str
    follow_ups: tuple[str, ...] = ()
    persona: str = ""

    def fingerprint(self) -> str:
        """What a stored conversation is checked against on resume."""
        return fingerprint(
            {"language": self.language, "opening": self.opening, "follow_ups": list(self.follow_ups), "p": self.persona}
        )


def load_script(path: Path) -> list[ScriptItem]:
    """The script's patients, each line checked (file:line named in the error)."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"conversation script not found: {path} (a JSONL file, one patient a line)")
    items: list[ScriptItem] = []
    seen: set[str] = set()
    for line_no, row in iter_jsonl(path, EvalDataError):
        where = f"{path}:{line_no}"
        unknown = sorted(set(row) - {"id", "language", "opening", "follow_ups", "persona"})
        if unknown:
            raise EvalDataError(
                f"{where}: unknown field(s) {unknown}; known: id, language, opening, follow_ups, persona"
            )
        sid, lang, opening = row.get("id"), row.get("language"), row.get("opening")
        follow = row.get("follow_ups", [])
        if not isinstance(sid, str) or not sid.strip():
            raise EvalDataError(f"{where}: `id` must be a non-empty string")
        if sid in seen:
            raise EvalDataError(f"{where}: id {sid!r} is repeated")
        if lang not in LANGUAGES:
            raise EvalDataError(f"{where}: `language` must be one of {list(LANGUAGES)}, got {lang!r}")
        if not isinstance(opening, str) or not opening.strip():
            raise EvalDataError(f"{where}: `opening` must be the patient's first message (non-empty text)")
        if not isinstance(follow, list) or not all(isinstance(t, str) and t.strip() for t in follow):
            raise EvalDataError(f"{where}: `follow_ups` must be a list of non-empty patient messages")
        persona = row.get("persona", "")
        if not isinstance(persona, str):
            raise EvalDataError(f"{where}: `persona` must be text")
        seen.add(sid)
        items.append(ScriptItem(sid, lang, opening.strip(), tuple(t.strip() for t in follow), persona.strip()))
    if not items:
        raise EvalDataError(f"{path}: the script holds no patients")
    return items


# ------------------------------------------------------------------------------------ responders
class Responder(Protocol):
    """Something that replies to chat conversations: a model under test or the LLM patient."""

    def identity(self) -> dict[str, Any]: ...  # what the stored conversations' fingerprint records

    def reply_all(self, conversations: Sequence[Turns]) -> list[str]: ...


@dataclass
class EngineResponder:
    """A model run in this process (`bimedix2.Engine`), loaded on first use by `load`, replying in batches."""

    load: Callable[[], Any]
    params: GenParams
    name: str
    batch_size: int = 4
    _engine: Any = None

    def identity(self) -> dict[str, Any]:
        return {"in_process": self.name}

    def reply_all(self, conversations: Sequence[Turns]) -> list[str]:
        if self._engine is None:
            self._engine = self.load()
        out: list[str] = []
        for start in range(0, len(conversations), self.batch_size):
            part = conversations[start : start + self.batch_size]
            batch = [[Message(t["role"], t["content"]) for t in conv] for conv in part]  # type: ignore[arg-type]
            out += [r.text for r in self._engine.generate_batch(batch, self.params)]
        return out

    def close(self) -> None:
        """Free the model (the other side's may load next)."""
        self._engine = None


@dataclass
class EndpointResponder:
    """A model behind an OpenAI-compatible chat endpoint (bounded, retried, cached by `LLMClient`)."""

    url: str
    model: str
    params: GenParams
    cache_path: Path
    key_env: str = "BIMEDIX2_ENDPOINT_KEY"
    concurrency: int = 8
    timeout_s: float = 600.0

    def identity(self) -> dict[str, Any]:
        from .spec import endpoint_identity

        return {"endpoint": endpoint_identity(self.url, self.model)}

    def reply_all(self, conversations: Sequence[Turns]) -> list[str]:
        from ..llm_client import LLMClient, LLMConfig
        from .endpoint import request_params

        sent = request_params(self.params)
        temperature, max_tokens = sent.pop("temperature"), sent.pop("max_tokens")
        client = LLMClient(
            LLMConfig(
                base_url=self.url,
                model=self.model,
                api_key_env=self.key_env,
                max_concurrency=self.concurrency,
                timeout_s=self.timeout_s,
                cache_path=self.cache_path,
            )
        )

        async def run() -> list[str]:
            async with client:
                return list(
                    await asyncio.gather(
                        *(
                            client.chat(conv, temperature=temperature, max_tokens=max_tokens, **sent)
                            for conv in conversations
                        )
                    )
                )

        return [r.text for r in asyncio.run(run())]  # type: ignore[attr-defined]


PATIENT_ASK = {
    "en": ("The conversation so far:", "Patient", "Assistant", "Write the patient's next message only."),
    "ar": ("المحادثة حتى الآن:", "المريض", "المساعد", "اكتب رسالة المريض التالية فقط."),
}


def patient_view(item: ScriptItem, turns: Turns) -> Turns:
    """What the LLM patient is asked: its instructions, then the conversation so far as one user message
    (a transcript, so any chat server takes it: no conversation has to start with the patient's reply)."""
    persona = item.persona or item.opening
    head, patient, assistant, ask = PATIENT_ASK[item.language]
    lines = [f"{patient if t['role'] == 'user' else assistant}: {t['content']}" for t in turns]
    return [
        {"role": "system", "content": PATIENT_SYSTEM[item.language].format(persona=persona)},
        {"role": "user", "content": "\n".join([head, *lines, "", ask])},
    ]


def patient_reply(item: ScriptItem, text: str) -> str:
    """The LLM patient's message without a leading "Patient:" label it may have copied from the transcript."""
    label = PATIENT_ASK[item.language][1] + ":"
    text = text.strip()
    return text[len(label) :].strip() if text.startswith(label) else text


# ------------------------------------------------------------------------------------- running
@dataclass
class Patient:
    """Where the patient's turns come from: the script, or an LLM (`responder`) for `turns` follow-ups."""

    responder: Responder | None = None
    follow_ups: int | None = None  # LLM patient: how many follow-up turns (None: as many as the script has)

    def identity(self) -> dict[str, Any]:
        if self.responder is None:
            return {"patient": "script"}
        return {"patient": self.responder.identity(), "follow_ups": self.follow_ups, "v": PATIENT_PROMPT_VERSION}

    def n_follow_ups(self, item: ScriptItem) -> int:
        if self.responder is None or self.follow_ups is None:
            return len(item.follow_ups)
        return self.follow_ups


def hold(items: Sequence[ScriptItem], model: Responder, patient: Patient) -> list[Turns]:
    """Every item's whole conversation: the model answers each patient turn, in lockstep over the items."""
    convs: list[Turns] = [[{"role": "user", "content": item.opening}] for item in items]
    total = [patient.n_follow_ups(item) for item in items]
    for turn in range(max(total, default=0) + 1):
        live = [i for i, n in enumerate(total) if turn <= n]
        replies = model.reply_all([convs[i] for i in live])
        for i, reply in zip(live, replies, strict=True):
            convs[i].append({"role": "assistant", "content": reply})
        going = [i for i in live if turn < total[i]]
        if not going:
            continue
        if patient.responder is None:
            nexts = [items[i].follow_ups[turn] for i in going]
        else:
            asked = patient.responder.reply_all([patient_view(items[i], convs[i]) for i in going])
            nexts = [patient_reply(items[i], text) for i, text in zip(going, asked, strict=True)]
        for i, text in zip(going, nexts, strict=True):
            if not text.strip():
                raise EvalDataError(f"conversation {items[i].id!r}: the patient's message is empty")
            convs[i].append({"role": "user", "content": text.strip()})
    return convs


def store(path: Path, model: Responder, patient: Patient, params: GenParams) -> SampleCache:
    """The side's conversation store (refused when written with another model, patient or decoding)."""
    from dataclasses import asdict

    path.parent.mkdir(parents=True, exist_ok=True)
    return SampleCache(path, {"model": model.identity(), **patient.identity(), "params": asdict(params)})


def run_side(
    items: Sequence[ScriptItem],
    model: Responder,
    patient: Patient,
    cache: SampleCache,
    chunk: int,
    desc: str,
) -> dict[str, Turns]:
    """{id: turns} for every item, holding only the conversations `cache` lacks, `chunk` at a time."""
    for item in items:
        stored = cache.records.get(item.id)
        if stored is not None and stored.get("script") != item.fingerprint():
            raise EvalDataError(
                f"{cache.path}: the stored conversation {item.id!r} was held with another script line (its opening, "
                "follow-ups, language or persona changed); use another --out, or remove that line to hold it again"
            )
    todo = [item for item in items if item.id not in cache]
    with tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="conversation") as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            convs = hold(part, model, patient)
            cache.add_many(
                [
                    {"id": item.id, "language": item.language, "script": item.fingerprint(), "turns": conv}
                    for item, conv in zip(part, convs, strict=True)
                ]
            )
            bar.update(len(part))
    return {item.id: cache.records[item.id]["turns"] for item in items}

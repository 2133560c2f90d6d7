"""Prompts for English -> Arabic translation, fidelity scoring and refinement (JSON contracts).

Each builder returns OpenAI chat ``messages``. The conversation travels as a JSON list of
turns so the model sees the whole dialogue as context and returns exactly one translation per
turn. Replies must be a single JSON object:

- translate / refine: ``{"turns": ["<Arabic turn 1>", "<Arabic turn 2>", ...]}``
- score: ``{"score": <integer 0-100>, "issues": ["<short problem description>", ...]}``

``prompts`` picks the set: ``toolkit`` (the prompts below, the default) or ``bimedix-v1``
(BiMediX v1's Tables 11-12 for translate and score, see `prompts_v1`; refinement keeps the
toolkit's prompt, the issue names no paper table for it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from . import prompts_v1

RULES = """Rules:
- Translate into Modern Standard Arabic, as a careful medical translator would;
  keep the meaning, tone and level of detail.
- Keep every <image> token exactly as written, in the same turn and position.
- Keep all numbers, doses, units, lab values and measurements exactly
  (Western digits 0-9, e.g. "500 mg", "12 mm", "37.5 °C").
- Keep drug names, gene names and abbreviations (CT, MRI, ECG, HbA1c) in their original Latin spelling;
  you may add the Arabic term in parentheses after a technical term.
- Keep option letters (A, B, C, D) and list structure unchanged.
- Do not add, drop, summarise or answer anything; translate only."""

# The reply contracts, also appended to BiMediX v1's prompts (prompts_v1) so replies are checked alike.
TRANSLATE_CONTRACT = (
    'Reply with one JSON object and nothing else: {"turns": [<one Arabic string per input turn, same order>]}.\n'
    'The "turns" array must have exactly as many strings as the input array.'
)

SCORE_CONTRACT = """Reply with one JSON object and nothing else:
{"score": <integer 0-100>, "issues": [<short English description of each problem; empty if none>]}"""

TRANSLATE_SYSTEM = f"""You translate English medical conversations into Arabic.
You receive a JSON array of conversation turns; each item has "from" ("human" or "gpt") and "value".
Translate every "value".
{RULES}
{TRANSLATE_CONTRACT}"""

SCORE_SYSTEM = (
    """You are a bilingual (English-Arabic) medical translation reviewer.
You receive an English conversation and its Arabic translation, turn by turn, as JSON.
Score the translation's fidelity from 0 to 100:
- 90-100: accurate, complete, fluent Modern Standard Arabic; numbers, units, drug names and <image> tokens intact.
- 70-89: minor wording or fluency problems, meaning preserved.
- 40-69: some meaning lost or changed, omissions, or altered numbers/units/drug names.
- 0-39: wrong, untranslated, or missing large parts.
"""
    + SCORE_CONTRACT
)

REFINE_SYSTEM = f"""You improve an Arabic translation of an English medical conversation.
You receive the English turns, the current Arabic turns, the reviewer's fidelity score (0-100) and the issues found.
Fix every issue and anything else that is wrong; keep what is already correct.
{RULES}
Reply with one JSON object and nothing else: {{"turns": [<one Arabic string per English turn, same order>]}}."""


def _turns_json(turns: Sequence[tuple[str, str]]) -> str:
    return json.dumps([{"from": s, "value": v} for s, v in turns], ensure_ascii=False, indent=1)


def check_prompts(name: str) -> None:
    """Raise `ConfigError` unless ``name`` is a prompt set whose translate and score prompts are available."""
    prompts_v1.check_prompt_set("prompts", name, (prompts_v1.TRANSLATE, prompts_v1.SCORE))


def _system(name: str, toolkit: str, paper: prompts_v1.PaperPrompt, contract: str) -> str:
    if name == prompts_v1.TOOLKIT:
        return toolkit
    check_prompts(name)
    return prompts_v1.paper_system(paper, contract, "prompts")


def translate_messages(turns: Sequence[tuple[str, str]], prompts: str = "toolkit") -> list[dict[str, str]]:
    """Ask for the Arabic translation of a whole conversation ((speaker, text) pairs)."""
    return [
        {"role": "system", "content": _system(prompts, TRANSLATE_SYSTEM, prompts_v1.TRANSLATE, TRANSLATE_CONTRACT)},
        {"role": "user", "content": "Conversation to translate:\n" + _turns_json(turns)},
    ]


def score_messages(
    turns: Sequence[tuple[str, str]], arabic: Sequence[str], prompts: str = "toolkit"
) -> list[dict[str, str]]:
    """Ask for a 0-100 fidelity score of ``arabic`` against the English ``turns``."""
    pairs = [{"from": s, "english": v, "arabic": a} for (s, v), a in zip(turns, arabic, strict=True)]
    return [
        {"role": "system", "content": _system(prompts, SCORE_SYSTEM, prompts_v1.SCORE, SCORE_CONTRACT)},
        {"role": "user", "content": "Turns:\n" + json.dumps(pairs, ensure_ascii=False, indent=1)},
    ]


def refine_messages(
    turns: Sequence[tuple[str, str]], arabic: Sequence[str], score: int, issues: Sequence[str]
) -> list[dict[str, str]]:
    """Ask for an improved translation, given the current one, its score and the issues found."""
    payload = {
        "english_turns": [{"from": s, "value": v} for s, v in turns],
        "current_arabic_turns": list(arabic),
        "score": score,
        "issues": list(issues) or ["(none listed: improve fidelity and fluency)"],
    }
    return [
        {"role": "system", "content": REFINE_SYSTEM},
        {"role": "user", "content": json.dumps(payload, ensure_ascii=False, indent=1)},
    ]

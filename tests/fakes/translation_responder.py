"""A deterministic fake "LLM" for the translation pipeline's three prompts (tests, benchmarks).

- translate: every English word becomes a pseudo-Arabic word derived from its hash; ``<image>``
  tokens and numbers are kept, so the pipeline's checks pass.
- score: a base score from the record's hash (spread over 40-99, so some records start below
  85 and some never recover), plus 12 points per refinement marker in the translation.
- refine: adds one refinement marker (" مُنقّح") to the first turn.

Use with ``FakeOpenAIServer(responder=translation_responder)``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from bimedix2.data.translate.prompts import REFINE_SYSTEM, SCORE_SYSTEM, TRANSLATE_SYSTEM

ARABIC_LETTERS = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"
MARKER = " مُنقّح"
_TOKEN = re.compile(r"<image>|\d+(?:[.,]\d+)?|[A-Za-z]+|[^\sA-Za-z\d]+|\s+")


def pseudo_arabic(text: str) -> str:
    out = []
    for tok in _TOKEN.findall(text):
        if tok == "<image>" or tok[0].isdigit() or tok.isspace():
            out.append(tok)
        elif tok[0].isalpha():
            h = hashlib.md5(tok.lower().encode()).digest()
            out.append("".join(ARABIC_LETTERS[b % len(ARABIC_LETTERS)] for b in h[: max(2, min(len(tok), 6))]))
        else:
            out.append(tok)
    return "".join(out)


def base_score(english: str) -> int:
    return 40 + hashlib.sha256(english.encode()).digest()[0] % 60


def translation_responder(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    user = body["messages"][-1]["content"]
    if system == TRANSLATE_SYSTEM:
        turns = json.loads(user.split("\n", 1)[1])
        return json.dumps({"turns": [pseudo_arabic(t["value"]) for t in turns]}, ensure_ascii=False)
    if system == SCORE_SYSTEM:
        pairs = json.loads(user.split("\n", 1)[1])
        english = "".join(p["english"] for p in pairs)
        score = min(100, base_score(english) + 12 * pairs[0]["arabic"].count(MARKER))
        issues = [] if score >= 85 else ["some medical terms are rendered too literally"]
        return json.dumps({"score": score, "issues": issues})
    if system == REFINE_SYSTEM:
        payload = json.loads(user)
        turns = list(payload["current_arabic_turns"])
        turns[0] = turns[0] + MARKER
        return "```json\n" + json.dumps({"turns": turns}, ensure_ascii=False) + "\n```"
    return "unknown prompt"


def passing_responder(body: dict[str, Any]) -> str:
    """Like ``translation_responder`` but every translation scores 95: exactly 2 calls per record."""
    if body["messages"][0]["content"] == SCORE_SYSTEM:
        return json.dumps({"score": 95, "issues": []})
    return translation_responder(body)

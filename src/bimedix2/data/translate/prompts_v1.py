"""BiMediX v1's data-generation prompts (arXiv:2402.13253) as an option beside the toolkit's own.

The paper (Pieri et al., "BiMediX: Bilingual Medical Mixture of Experts LLM", appendix) prints
three prompts: Table 10 (MCQA-grounded multi-turn chat generation), Table 11 (English-to-Arabic
translation) and Table 12 (translation scoring). A prompt is reproduced here only verbatim, with
its source; one whose text could not be sourced stays ``text=None`` and selecting it is a
`ConfigError` naming the table, never a paraphrase passed off as the paper's.

Sourcing (2026-12-01): the code repository github.com/mbzuai-oryx/BiMediX holds a README and
images only (every commit); the stored copies of the paper's pages (arxiv.org/abs/2402.13253,
huggingface.co/papers/2402.13253, sciencestack.ai, openreview.net/forum?id=qpZWYVxMQ6) give the
abstract and summaries, not the appendix. None of the three tables' text was found, so all three
are unavailable until someone pastes the paper's text into ``text`` below (with its source).

When a text is present, the job sends it as the system prompt followed by the toolkit's JSON reply
contract for that step, so replies are parsed and checked exactly as with the toolkit's prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import ConfigError

PAPER = "BiMediX v1, arXiv:2402.13253 (appendix)"
TOOLKIT, BIMEDIX_V1 = "toolkit", "bimedix-v1"
PROMPT_SETS = (TOOLKIT, BIMEDIX_V1)


@dataclass(frozen=True)
class PaperPrompt:
    """One prompt printed in the paper: where it is, what it does, its verbatim text (None: not sourced)."""

    table: str
    purpose: str
    text: str | None = None
    source: str = PAPER


MCQ_CHAT = PaperPrompt("Table 10", "MCQA-grounded multi-turn chat generation")
TRANSLATE = PaperPrompt("Table 11", "English-to-Arabic translation")
SCORE = PaperPrompt("Table 12", "translation scoring")


def _missing_error(key: str, missing: Sequence[PaperPrompt]) -> ConfigError:
    tables = "; ".join(f"{p.table} ({p.purpose})" for p in missing)
    return ConfigError(
        f"{key}: {BIMEDIX_V1} is not available in this toolkit: the verbatim text of {PAPER} {tables} could not "
        "be sourced, and a paraphrase would not be the paper's prompt. Use "
        f"{key}: {TOOLKIT}, or paste the paper's text into bimedix2/data/translate/prompts_v1.py (with its source)"
    )


def check_prompt_set(key: str, name: str, needs: Sequence[PaperPrompt]) -> None:
    """Raise `ConfigError` for an unknown prompt set, or for ``bimedix-v1`` when a prompt it needs is not sourced."""
    if name not in PROMPT_SETS:
        raise ConfigError(f"{key}: unknown prompt set {name!r}; available: {', '.join(PROMPT_SETS)}")
    if name == BIMEDIX_V1:
        missing = [p for p in needs if p.text is None]
        if missing:
            raise _missing_error(key, missing)


def paper_system(prompt: PaperPrompt, contract: str, key: str) -> str:
    """The system prompt of a BiMediX v1 step: the paper's text verbatim, then the toolkit's reply contract."""
    if prompt.text is None:
        raise _missing_error(key, [prompt])
    return f"{prompt.text}\n\n{contract}"

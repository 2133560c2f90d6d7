"""BiMed-MBench as its authors score it: the judge request and the summary of its scores.

Follows mbzuai-oryx/BiMediX2 `BiMed-MBench/eval/eval_multimodal_chat_gpt_score.py` (English),
`eval_multimodal_chat_gpt_score_ara.py` (Arabic), `eval/llm.py` (the request) and
`eval/summarize_gpt_review.py` (the scores). The rubric texts below are the released ones,
character for character, spelling included ("Moders Standard Arabic"), since the judge's
numbers depend on them; the code around them is ours.

The judge sees the reference answer (`gpt4_answer`) as Assistant 1 and the candidate as
Assistant 2. Its reply's first line, split on single spaces, must hold exactly two numbers
(what `summarize_gpt_review.py` reads); per sample, relative = s2 / (s1 + 1e-100), so a
reference scored 0 is kept, as released. Groups: the sample's `type` label as written, the
first true domain in the order chest_xray, mri, histology, gross, ct_scan, and overall.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JUDGE_MODEL = "gpt-4o-2024-08-06"  # llm.GPT("gpt-4o-2024-08-06") in both released scripts
JUDGE_TEMPERATURE = 0.0  # llm.py GPT.temperature; no max_tokens is sent

# The released system message starts with a stray single quote; it is part of every request.
JUDGE_SYSTEM = "'You are a helpful and precise assistant for checking the quality of the answer."

RUBRIC_EN = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above. The user asks the question on observing an image. For your reference, the visual "
    "content in the image is represented with caption describing the same image.\n"
    "  Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant "
    "receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.\n"
    "  Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, "
    "respectively. The two scores are separated by a space. In the subsequent line, please provide a comprehensive "
    "explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses "
    "were presented does not affect your judgment."
)
RUBRIC_AR = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above in 'Moders Standard Arabic' language. The user asks the question on observing an "
    "image. For your reference, the visual content in the image is represented with Arabic caption describing the "
    "same image.\n"
    "  Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant "
    "receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance. "
    "Deduct score if the answer is in a language other than 'Moders Standard Arabic'.\n"
    "  Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, "
    "respectively. The two scores are separated by a space. In the subsequent line, please provide a comprehensive "
    "explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses "
    "were presented does not affect your judgment."
)
RUBRICS = {"en": RUBRIC_EN, "ar": RUBRIC_AR}

# summarize_gpt_review.py `get_domain`: the first true flag in this order names the sample's domain.
DOMAIN_ORDER = ("chest_xray", "mri", "histology", "gross", "ct_scan")
# The released results table's columns (its DataFrame `filter`), in order; other groups are dropped there.
TABLE_GROUPS = ("conversation", "detailed_description", *DOMAIN_ORDER, "overall")
DISPLAY = {
    "conversation": "Conversation",
    "detailed_description": "Description",
    "chest_xray": "CXR",
    "mri": "MRI",
    "histology": "Histology",
    "gross": "Gross",
    "ct_scan": "CT",
}
TYPE_NAMES = ("conversation", "detailed_description")
# --protocol toolkit only: other spellings of the two types (the released Arabic file labels some
# samples in Arabic; the released summary groups those under their own label, outside its table).
TOOLKIT_TYPE_ALIASES = {
    "conversation": "conversation",
    "conv": "conversation",
    "محادثة": "conversation",
    "detailed_description": "detailed_description",
    "detailed": "detailed_description",
    "description": "detailed_description",
    "وصف تفصيلي": "detailed_description",
    "وصف مفصل": "detailed_description",
}


def released_context(value: Any) -> str:
    """A record field as the released f-string renders it: str as is, a list as its repr, null as 'None'."""
    return f"{value}"


def judge_user_message(record: Mapping[str, Any], candidate: str, language: str) -> str:
    """The released `conv_to_str` text for one record (fields as read from the JSONL file)."""
    label, caption = released_context(record["fig_label"]), released_context(record["fig_caption"])
    context = released_context(record["in_text_mention"])
    return (
        "[Context]\n"
        f"Figure Caption:\n{label}: {caption}\n\n"
        f"Figure Context:\n\t- {context}\n\n"
        f"[Question]\n{record['text']}\n\n"
        f"[Assistant 1]\n{record['gpt4_answer']}\n\n[End of Assistant 1]\n\n"
        f"[Assistant 2]\n{candidate}\n\n[End of Assistant 2]\n\n"
        f"[System]\n{RUBRICS[language]}\n\n"
    )


def judge_messages(record: Mapping[str, Any], candidate: str, language: str) -> list[dict[str, str]]:
    """The released `compare_messages_gen` messages: the system message, then the user message."""
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": judge_user_message(record, candidate, language)},
    ]


def parse_first_line(reply: str) -> tuple[float, float] | None:
    """(s1, s2) as summarize_gpt_review.py reads them, or None where that script would stop.

    The reply is stripped (eval script), its first line split on single spaces must give exactly
    two items, each read by Python's `float` (as `util.get_avg` does).
    """
    items = reply.strip().split("\n")[0].split(" ")
    if len(items) != 2:
        return None
    try:
        return float(items[0]), float(items[1])
    except ValueError:
        return None


def ratio(s1: float, s2: float) -> float:
    """One sample's candidate/reference ratio, as released: s2 / (s1 + 1e-100) (a 0 reference is kept)."""
    return s2 / (s1 + 1e-100)


def mean(values: Sequence[float]) -> float:
    """`util.get_avg`: the sum in order over the count."""
    return sum(values) / len(values)


def first_domain(domain: Mapping[str, Any] | None) -> str | None:
    """`get_domain`: the first true flag in DOMAIN_ORDER; None when none is true."""
    for name in DOMAIN_ORDER:
        if (domain or {}).get(name):
            return name
    return None


@dataclass(frozen=True)
class Scored:
    """One judged sample: its type label and domain group, and its two scores (None: unparsed)."""

    id: str
    type: str
    domain: str | None
    s1: float | None  # the reference's (Assistant 1)
    s2: float | None  # the candidate's (Assistant 2)


def group_summary(samples: Sequence[Scored]) -> dict[str, Any]:
    """One group's released columns: mean judge scores, mean relative score, size."""
    n = len(samples)
    if not n:
        return {"reference_score": None, "candidate_score": None, "relative_score": None, "n": 0}
    return {
        "reference_score": mean([s.s1 for s in samples]),  # type: ignore[misc]
        "candidate_score": mean([s.s2 for s in samples]),  # type: ignore[misc]
        "relative_score": mean([ratio(s.s1, s.s2) for s in samples]) * 100,  # type: ignore[arg-type]
        "n": n,
    }


def released_groups(samples: Iterable[Scored]) -> dict[str, dict[str, Any]]:
    """summarize_gpt_review.py's groups, in first-seen order: each type label, each domain, overall."""
    groups: dict[str, list[Scored]] = {}
    for s in samples:
        for key in (s.type, "overall", str(s.domain)):
            groups.setdefault(key, []).append(s)
    return {key: group_summary(members) for key, members in groups.items()}


def summarize(samples: Sequence[Scored]) -> dict[str, Any]:
    """One language's results from its scored samples (unparsed ones are counted, not scored).

    `groups` are the released table's columns, `other_groups` the groups that table leaves out
    (type labels other than conversation / detailed_description, samples without a domain);
    `overall`, `by_type` and `by_domain` are the relative scores the report tables show.
    """
    scored = [s for s in samples if s.s1 is not None and s.s2 is not None]
    groups = released_groups(scored)
    table = {k: groups[k] for k in TABLE_GROUPS if k in groups}
    return {
        "overall": table.get("overall", {}).get("relative_score"),
        "by_type": {DISPLAY[k]: table[k]["relative_score"] for k in TYPE_NAMES if k in table},
        "by_domain": {DISPLAY[k]: table[k]["relative_score"] for k in DOMAIN_ORDER if k in table},
        "groups": table,
        "other_groups": {k: v for k, v in groups.items() if k not in table},
        "n": len(samples),
        "n_scored": len(scored),
        "n_unparsed": len(samples) - len(scored),
    }


def toolkit_type(label: str) -> str:
    """--protocol toolkit: a type label in either language mapped to conversation / detailed_description."""
    return TOOLKIT_TYPE_ALIASES.get(label.strip().lower(), label)


def toolkit_summary(samples: Sequence[Scored], n_tolerant: int) -> dict[str, Any]:
    """--protocol toolkit: `summarize` without samples whose reference scored 0 (counted instead).

    `n_tolerant` (samples whose scores came only from the tolerant parser) is reported beside.
    """
    zero = [s for s in samples if s.s1 == 0]
    out = summarize([s for s in samples if s.s1 != 0])
    out["n"] = len(samples)
    out.update(n_zero_reference=len(zero), n_tolerant=n_tolerant)
    return out

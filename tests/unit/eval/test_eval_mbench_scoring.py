"""BiMed-MBench scores as mbzuai-oryx/BiMediX2 `BiMed-MBench/eval/summarize_gpt_review.py` computes them
(paper protocol), and the toolkit protocol's tolerant parsing, counted apart.

`released_summary` is a re-implementation of that script's `main` (its pandas table step left out)
with LLaVA-Med's `util.get_avg` (the BiMediX2 release ships no util.py), written from reading them.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer
from tests.unit.eval.test_eval_mbench_released import RELEASED, RecordingGenerator, _cfg

from bimedix2.eval.mbench import Scored, first_domain, parse_first_line, summarize, toolkit_summary, toolkit_type
from bimedix2.eval.runner import load_results, run_eval
from bimedix2.types import GenParams

_DOMAINS = ["chest_xray", "mri", "histology", "gross", "ct_scan"]


def _get_avg(x: list) -> float:
    return sum([float(y) for y in x]) / len(x)


def released_summary(scores_data: list[dict]) -> dict:
    """summarize_gpt_review.py: {group: {gpt4o_score, pred_score, pred_relative_score, data_size}}."""

    def get_domain(x: dict) -> str | None:
        for domain in _DOMAINS:
            if x["domain"][domain]:
                return domain
        return None

    predictions = [
        (x["question_id"], x["type"], get_domain(x), x["gpt_eval"].split("\n")[0].split(" ")) for x in scores_data
    ]
    score_type_dict: dict = defaultdict(lambda: defaultdict(list))
    for _, q_type, domain, (a1_score, a2_score) in predictions:
        for key in (q_type, "overall", domain):
            score_type_dict[key][1].append(a1_score)
            score_type_dict[key][2].append(a2_score)
    result: dict = defaultdict(dict)
    for q_type, score_dict in score_type_dict.items():
        result[q_type]["gpt4o_score"] = _get_avg(score_dict[1])
        result[q_type]["pred_score"] = _get_avg(score_dict[2])
        ratios = [float(s2) / (float(s1) + 1e-100) for s1, s2 in zip(score_dict[1], score_dict[2], strict=True)]
        result[q_type]["pred_relative_score"] = _get_avg(ratios) * 100
        result[q_type]["data_size"] = len(score_dict[1])
    return result


def _ours(data: list[dict]) -> dict:
    samples = [
        Scored(str(x["question_id"]), x["type"], first_domain(x["domain"]), *parse_first_line(x["gpt_eval"]))
        for x in data
    ]
    return summarize(samples)


@pytest.mark.parametrize("seed", range(25))
def test_summary_equals_the_released_script(seed: int) -> None:
    rng = random.Random(seed)
    data = []
    for i in range(rng.randint(1, 40)):
        s1, s2 = rng.choice(["0", "1", "7", "7.5", "10"]), rng.choice(["0", "3", "8", "8.5", "10"])
        data.append(
            {
                "question_id": i,
                "type": rng.choice(["conversation", "detailed_description", "وصف تفصيلي", "محادثة"]),
                "domain": {d: rng.random() < 0.3 for d in _DOMAINS},
                "gpt_eval": f"{s1} {s2}\nThe explanation.",
            }
        )
    theirs, ours = released_summary(data), _ours(data)
    groups = {**ours["groups"], **ours["other_groups"]}
    assert list(groups) == [
        k for k in ("conversation", "detailed_description", *_DOMAINS, "overall") if k in theirs
    ] + [str(k) for k in theirs if k not in ("conversation", "detailed_description", *_DOMAINS, "overall")]
    for key, released in theirs.items():
        mine = groups[str(key)]
        assert (mine["reference_score"], mine["candidate_score"], mine["relative_score"], mine["n"]) == (
            released["gpt4o_score"],
            released["pred_score"],
            released["pred_relative_score"],
            released["data_size"],
        )  # exactly equal: same operations in the same order
    assert ours["overall"] == theirs["overall"]["pred_relative_score"]


def test_zero_reference_kept_as_released() -> None:
    data = [
        {"question_id": 0, "type": "conversation", "domain": {d: d == "mri" for d in _DOMAINS}, "gpt_eval": "0 5"},
        {"question_id": 1, "type": "conversation", "domain": {d: False for d in _DOMAINS}, "gpt_eval": "8 4"},
    ]
    ours = _ours(data)
    assert ours["overall"] == released_summary(data)["overall"]["pred_relative_score"]
    assert ours["overall"] == pytest.approx((5 / 1e-100 + 0.5) / 2 * 100)  # s2 / (0 + 1e-100): not dropped
    assert ours["other_groups"]["None"]["n"] == 1  # no true domain: released key None, outside the table
    kept = toolkit_summary([Scored("0", "conversation", "mri", 0.0, 5.0), Scored("1", "c", None, 8.0, 4.0)], 0)
    assert kept["overall"] == pytest.approx(50.0) and kept["n_zero_reference"] == 1 and kept["n"] == 2


@pytest.mark.parametrize(
    ("reply", "pair"),
    [
        ("8 7\nbecause", (8.0, 7.0)),
        ("  8.5 7\n", (8.5, 7.0)),  # the eval script strips the reply
        ("10 10", (10.0, 10.0)),
        ("٨ ٧", (8.0, 7.0)),  # Python's float reads Arabic-Indic digits, so the released script does too
        ("8  7", None),  # two spaces: three items, the released unpacking would fail
        ("8, 7", None),
        ("8/10 7/10", None),
        ("Assistant 1: 8\nAssistant 2: 7", None),
        ("Scores: 8 7", None),
        ("", None),
    ],
)
def test_first_line_parsing_as_released(reply: str, pair: tuple[float, float] | None) -> None:
    assert parse_first_line(reply) == pair


def test_toolkit_type_labels() -> None:
    assert [toolkit_type(t) for t in ("محادثة", "وصف تفصيلي", "وصف مفصل", "Conversation", "detailed", "other")] == [
        "conversation",
        "detailed_description",
        "detailed_description",
        "conversation",
        "detailed_description",
        "other",
    ]


def _mixed_judge(body: dict) -> str:
    """Reference 0 for en-0, a labelled (not first-line) reply for en-1 and ar-1, first-line otherwise."""
    text = body["messages"][1]["content"]
    if "What does the chest X-ray show?" in text:
        return "0 4\nAssistant 1 did not answer."
    if "Describe the following image in detail" in text or "اوصف الصورة التالية" in text:
        return "Assistant 1: 8\nAssistant 2: 4"
    return "8 6\nfine"


def test_protocols_differ_in_generation_and_parsing(tmp_path: Path) -> None:
    runs = {}
    with FakeOpenAIServer(responder=_mixed_judge) as server:
        for protocol in ("paper", "toolkit"):
            gen = RecordingGenerator()
            cfg = _cfg(tmp_path / protocol, RELEASED, judge_url=server.base_url, protocol=protocol)
            runs[protocol] = (gen, load_results(run_eval(["bimed-mbench"], gen, cfg)))
    paper_gen, paper = runs["paper"]
    toolkit_gen, toolkit = runs["toolkit"]
    assert {c[1] for c in toolkit_gen.calls} == {
        GenParams(max_new_tokens=1024, temperature=0.0, top_p=1.0, do_sample=False, seed=0, steer_language=True)
    }
    assert {c[1].temperature for c in paper_gen.calls} == {0.1}
    p_en, t_en = paper["tasks"]["bimed-mbench"]["metrics"]["en"], toolkit["tasks"]["bimed-mbench"]["metrics"]["en"]
    # paper: the labelled reply is unparsed (the released script would stop on it); the 0 reference stays in
    assert p_en["n_unparsed"] == 1 and p_en["n_scored"] == 2
    assert p_en["overall"] == pytest.approx((4 / 1e-100 + 6 / 8) / 2 * 100)
    # toolkit: the tolerant parser reads it, counted; the 0 reference is left out, counted
    assert t_en["n_tolerant"] == 1 and t_en["n_unparsed"] == 0 and t_en["n_zero_reference"] == 1
    assert t_en["overall"] == pytest.approx((4 / 8 + 6 / 8) / 2 * 100)
    # toolkit maps the Arabic file's Arabic type labels onto the two types
    t_ar = toolkit["tasks"]["bimed-mbench"]["metrics"]["ar"]
    assert t_ar["groups"]["conversation"]["n"] == 2 and t_ar["groups"]["detailed_description"]["n"] == 1
    assert t_ar["other_groups"] == {} and t_ar["n_tolerant"] == 1
    assert toolkit["tasks"]["bimed-mbench"]["protocol"] == "toolkit"
    assert toolkit["config"]["bimed-mbench"]["task"]["protocol"] == "toolkit"
    rows = [r for r in (tmp_path / "toolkit" / "bimed-mbench" / "scored.jsonl").read_text().splitlines() if r]
    assert sum('"score_parsing": "tolerant"' in r for r in rows) == 2

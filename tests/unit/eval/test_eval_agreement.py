"""Agreement: Cohen's and Fleiss' kappa against textbook examples, `eval judge-agreement` on hand-made runs
with known kappa / rho, and `eval agreement` over raters' files (kappa, human win/tie/loss, judge vs raters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bimedix2.cli import main
from bimedix2.errors import EvalDataError
from bimedix2.eval.agreement import cohen_kappa, fleiss_kappa, judge_agreement, spearman
from bimedix2.eval.rater.human import human_agreement
from bimedix2.eval.rater.ratings import RatingStore
from bimedix2.eval.results import new_results, save_results
from bimedix2.fileio import atomic_write_json, atomic_write_jsonl


def test_cohen_kappa_textbook() -> None:
    # Wikipedia "Cohen's kappa": 50 proposals, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> kappa = 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None  # one label only: undefined, not 1 or 0


def test_fleiss_kappa_textbook() -> None:
    # Fleiss (1971) as worked in Wikipedia "Fleiss' kappa": 10 subjects, 14 raters, 5 categories -> 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    labels = [[str(c) for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(labels) == pytest.approx(0.2099, abs=1e-4)


def test_spearman_known_value() -> None:
    assert spearman([8, 6, 7, 9], [7, 5, 8, 9]) == pytest.approx(0.8)
    assert spearman([1, 1], [2, 3]) is None


def _run(folder: Path, judge: str, stances: list, cand: list) -> Path:
    results = new_results("m")
    results["tasks"] = {
        "uphill": {"kind": "uphill", "predictions": "uphill/scored.jsonl", "judge": {"model": judge}},
        "mbench": {"kind": "mbench", "predictions": "mbench/scored.jsonl", "judge": {"model": judge}},
        "vqa-rad": {"kind": "vqa", "predictions": "vqa-rad/scored.jsonl"},
    }
    atomic_write_jsonl(
        folder / "uphill" / "scored.jsonl",
        [{"id": f"c{i}#L0", "prediction": f"answer {i}", "stance": s} for i, s in enumerate(stances)],
    )
    atomic_write_jsonl(
        folder / "mbench" / "scored.jsonl",
        [
            {"id": f"q{i}", "prediction": f"p{i}", "candidate_score": c, "reference_score": 10.0}
            for i, c in enumerate(cand)
        ],
    )
    save_results(results, folder / "results.json")
    return folder


def test_judge_agreement_on_hand_made_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path / "a", "judge-1", ["agree", "disagree", "disagree", "neutral", "agree", None], [8, 6, 7, 9, None])
    b = _run(tmp_path / "b", "judge-2", ["agree", "disagree", "agree", "neutral", "agree", "disagree"], [7, 5, 8, 9, 4])
    result = judge_agreement(a, b)
    assert set(result["tasks"]) == {"uphill", "mbench"}  # vqa is not judged
    stance = result["tasks"]["uphill"]["fields"]["stance"]
    # observed 4/5, chance (2*3 + 2*1 + 1*1)/25 = 0.36 -> (0.8 - 0.36) / 0.64
    assert stance["value"] == pytest.approx(0.6875)
    assert (stance["n"], stance["n_unparsed_a"], stance["n_unparsed_b"]) == (5, 1, 0)
    assert stance["raw_agreement"] == pytest.approx(0.8)
    mb = result["tasks"]["mbench"]["fields"]
    assert mb["candidate_score"]["value"] == pytest.approx(0.8) and mb["candidate_score"]["n"] == 4
    assert mb["relative_score"]["value"] == pytest.approx(0.8)
    assert result["tasks"]["mbench"]["judge_a"] == "judge-1"
    assert main(["eval", "judge-agreement", str(a), str(b), "--out", str(tmp_path / "ja.json")]) == 0
    assert "0.688" in capsys.readouterr().out
    assert json.loads((tmp_path / "ja.json").read_text())["tasks"]["uphill"]["fields"]["stance"]["n"] == 5


def test_judge_agreement_refuses_different_answers(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", "j1", ["agree"], [5])
    b = _run(tmp_path / "b", "j2", ["agree"], [5])
    rows = [{"id": "c0#L0", "prediction": "another answer", "stance": "agree"}]
    atomic_write_jsonl(b / "uphill" / "scored.jsonl", rows)
    with pytest.raises(EvalDataError, match="different answer"):
        judge_agreement(a, b, ["uphill"])


def _rated_folder(tmp_path: Path, choices: dict[str, list[str]]) -> Path:
    out = tmp_path / "eval"
    pairs = {f"p{i}": {"id": f"s{i}", "language": "ar" if i % 2 else "en", "A": "a", "B": "b"} for i in range(4)}
    pairs["p1"].update(A="b", B="a")  # on p1, model b was shown as A
    atomic_write_json(out / "rating_key.json", {"seed": 0, "pairs": pairs})
    for rater, picks in choices.items():
        store = RatingStore(out, rater, set(pairs))
        for pid, choice in zip(sorted(pairs), picks, strict=True):
            store.rate(pid, choice)
    return out


def test_two_raters_cohen_kappa_and_human_win_tie_loss(tmp_path: Path) -> None:
    out = _rated_folder(tmp_path, {"dr-x": ["A", "B", "tie", "A"], "dr-y": ["A", "B", "B", "A"]})
    result = human_agreement(out, n_resamples=200)
    # model a's outcomes: x = win, win (B on p1 is a), tie, win; y = win, win, loss, win
    assert result["agreement"]["statistic"] == "cohen_kappa"
    expected = cohen_kappa(["win", "win", "tie", "win"], ["win", "win", "loss", "win"])
    assert result["agreement"]["value"] == pytest.approx(expected)
    wtl = result["win_tie_loss"]
    assert wtl["overall"]["win"] == pytest.approx(6 / 8) and wtl["overall"]["n"] == 8
    assert wtl["ar"]["win"] == 1.0 and wtl["bootstrap"]["unit"] == "pair"


def test_three_raters_fleiss_kappa(tmp_path: Path) -> None:
    picks = {"r1": ["A", "A", "B", "tie"], "r2": ["A", "A", "B", "B"], "r3": ["B", "A", "B", "tie"]}
    out = _rated_folder(tmp_path, picks)
    result = human_agreement(out, n_resamples=0)
    assert result["agreement"]["statistic"] == "fleiss_kappa"
    flip = {"A": "win", "B": "loss", "tie": "tie"}
    per_pair = []
    for i in range(4):
        row = [flip[picks[r][i]] for r in ("r1", "r2", "r3")]
        if i == 1:  # p1 shows b as A
            row = [{"win": "loss", "loss": "win"}.get(x, x) for x in row]
        per_pair.append(row)
    assert result["agreement"]["value"] == pytest.approx(fleiss_kappa(per_pair))
    assert set(result["agreement"]["pairwise_cohen_kappa"]) == {"r1|r2", "r1|r3", "r2|r3"}

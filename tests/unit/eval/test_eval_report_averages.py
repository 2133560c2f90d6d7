"""The report's paper-style averages table: the paper's own Table 5 average reproduced from its cells, a run
with a missing cell shown as n/a with the reason, and the table left out when no run has a paper table."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from bimedix2.eval.report import paper_averages_table, reference_results_path, render_report


def _paper() -> dict:
    return json.loads(reference_results_path().read_text(encoding="utf-8"))


def test_paper_vqa_average_from_its_cells_beside_the_printed_one() -> None:
    paper = _paper()
    run = {"label": "run", "tasks": {t: paper["tasks"][t] for t in ("vqa-rad", "slake", "path-vqa")}}
    table = paper_averages_table([run], paper)
    assert table is not None
    assert table.columns == ("table", "run", "paper (printed)")
    (row,) = table.rows
    assert row[0].startswith("Table 5")
    cells = [v for t in ("vqa-rad", "slake", "path-vqa") for v in paper["tasks"][t]["metrics"]["multimedeval"].values()]
    assert row[1] == f"{sum(cells) / len(cells):.3f}" == "0.611"
    assert row[2] == "0.611"
    assert table.notes == ()


def test_missing_cell_is_na_with_the_reason() -> None:
    paper = _paper()
    tasks = {t: copy.deepcopy(paper["tasks"][t]) for t in ("vqa-rad", "slake", "path-vqa")}
    del tasks["slake"]["metrics"]["multimedeval"]["f1"]
    table = paper_averages_table([{"label": "mine", "tasks": tasks}], None)
    assert table is not None and table.columns == ("table", "mine")
    assert table.rows[0][1] == "n/a"
    assert any("slake/multimedeval/f1" in note for note in table.notes)


def test_no_paper_task_no_table() -> None:
    assert paper_averages_table([{"label": "x", "tasks": {"my-task": {"metrics": {"a": 1.0}}}}], _paper()) is None


def test_report_carries_the_averages_table(tmp_path: Path) -> None:
    paper = _paper()
    run = {
        "format": paper["format"],
        "model": "m",
        "label": "m",
        "tasks": {t: paper["tasks"][t] for t in ("vqa-rad", "slake", "path-vqa")},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(run), encoding="utf-8")
    out = render_report([path], tmp_path / "report")
    text = out["markdown"].read_text(encoding="utf-8")
    assert "Paper-style averages" in text and "0.611" in text

"""The paper's table averages, recomputed from its printed cells, reproduce the averages it prints."""

from __future__ import annotations

import copy

import pytest

from bimedix2.eval.metrics.averages import PAPER_TABLES, paper_average, paper_averages
from bimedix2.eval.report import reference_results_path
from bimedix2.eval.results import load_results


@pytest.fixture(scope="module")
def reference() -> dict:
    return load_results(reference_results_path())


@pytest.mark.parametrize("table", sorted(PAPER_TABLES))
def test_printed_average_from_printed_cells(reference: dict, table: str) -> None:
    value, why = paper_average(reference, table)
    assert why is None and value is not None
    assert round(value, 3) == reference["averages"][table]  # the paper prints 3 decimals (Table 2: 70.4 %)


def test_the_cells_are_the_papers(reference: dict) -> None:
    assert len(PAPER_TABLES["table2_mcq"].cells) == 10 and len(PAPER_TABLES["table5_vqa"].cells) == 18
    value, _ = paper_average(reference, "table6_summarization")
    assert value == pytest.approx((0.178 + 0.449 + 0.205 + 0.339 + 0.23 + 0.593 + 0.918) / 7)  # with BLEU-4*, RadCliQ*
    value, _ = paper_average(reference, "table7_report")
    assert value == pytest.approx((0.155 + 0.016 + 0.153 + 0.174 + 0.098 + 0.189 + 0.86) / 7)
    # one wrong cell moves the average off the printed one: the check above is not vacuous
    changed = copy.deepcopy(reference)
    changed["tasks"]["slake"]["metrics"]["multimedeval"]["f1"] = 0.887
    assert round(paper_average(changed, "table5_vqa")[0], 3) != reference["averages"]["table5_vqa"]


def test_a_run_of_ours_has_no_report_average(reference: dict) -> None:
    """Our results hold raw BLEU-4 / RadCliQ-v1, not the paper's re-scaled ones: no average, and why."""
    ours = {
        "tasks": {
            "mimic-cxr-report": {
                "metrics": {
                    "bleu1": 0.2,
                    "bleu4": 0.05,
                    "rougeL": 0.2,
                    "meteor": 0.2,
                    "f1_radgraph": 0.1,
                    "chexbert_similarity": 0.3,
                    "radcliq": 1.1,
                }
            },
            "mcq": {"metrics": {"en": {**reference["tasks"]["mcq"]["metrics"]["en"], "medqa": None}}},
        }
    }
    value, why = paper_average(ours, "table7_report")
    assert value is None and "bleu4_rescaled" in why and "radcliq_rescaled" in why and "not stated" in why
    value, why = paper_average(ours, "table2_mcq")
    assert value is None and "mcq/en/medqa" in why  # a missing column is named, never averaged over fewer
    assert set(paper_averages(ours)) == set(PAPER_TABLES)
    with pytest.raises(KeyError, match="unknown paper table"):
        paper_average(ours, "table99")

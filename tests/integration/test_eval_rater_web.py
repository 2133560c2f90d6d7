"""The clinicians' rater page in real headless Chromium (Debian's /usr/bin/chromium via Playwright): a rater
rates two pairs, one Arabic (shown right to left), by keyboard, and their file holds both ratings; axe-core
finds no serious or critical violation on either pair."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.test_serve_web_features import axe_check
from tests.unit.eval.test_eval_rater import make_eval_dir

from bimedix2.eval.rater.app import create_rater_app
from bimedix2.serve.background import serve_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    out = make_eval_dir(tmp_path / "eval")
    app = create_rater_app(out, "dr-layla")
    with serve_in_thread(app) as base:
        yield base, out


def test_rater_rates_two_pairs_one_arabic(browser, served) -> None:  # noqa: ANN001
    base, out = served
    context = browser.new_context(viewport={"width": 1100, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
    page.goto(base + "/")
    page.wait_for_function("document.body.dataset.ready === '1'")
    assert "not for clinical use" in page.inner_text("#notice")
    assert page.inner_text("#rater-name") == "dr-layla"
    key = json.loads((out / "rating_key.json").read_text())["pairs"]
    chosen = {}
    for step in range(2):
        pair = page.get_attribute("#pair", "data-pair")
        lang = key[pair]["language"]
        turns = page.locator("#conv-A .turns")
        assert turns.get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")
        assert turns.get_attribute("lang") == lang
        axe_check(page, f"rater page, {lang} pair")
        # keyboard only: focus the first choice, arrow to the wanted one (radios select as they move)
        page.focus("#choice-A")
        page.keyboard.press("Space")
        if step == 1:
            page.keyboard.press("ArrowDown")
            page.keyboard.press("ArrowDown")
        want = "A" if step == 0 else "tie"
        page.wait_for_function(f"document.getElementById('status').textContent === 'Saved: {want}'")
        chosen[pair] = want
        assert page.get_by_label("Tie (equally good or equally poor)").is_checked() == (want == "tie")
        if step == 0:
            page.focus("#next")
            page.keyboard.press("Enter")
    assert page.inner_text("#progress") == "2 of 2 pairs rated"
    assert {key[p]["language"] for p in chosen} == {"en", "ar"}
    saved = json.loads((out / "rating" / "ratings" / "dr-layla.json").read_text(encoding="utf-8"))
    assert {p: r["choice"] for p, r in saved["ratings"].items()} == chosen
    assert not errors, errors
    assert not outside, outside
    context.close()

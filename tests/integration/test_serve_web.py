"""The web chat driven in real headless Chromium (Debian's /usr/bin/chromium via Playwright).

Needs `scripts/system-deps.sh` (apt: chromium, chromium-driver); skipped with that reason when
/usr/bin/chromium is absent. Saves a screenshot to test-artifacts/serve-web-chat.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fakes.dicom_files import greyscale_dicom_bytes

from bimedix2.conversation import detect_language
from bimedix2.engine import Engine
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig
from bimedix2.types import GenParams, ImageRef, Message

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# A question whose greedy reply from the tiny random model is mostly Arabic script (checked below).
ARABIC_QUESTION = "صف صورة الأشعة السينية للصدر"
MAX_TOKENS = 16


def stored_texts(page) -> list[str]:  # noqa: ANN001
    """The current conversation's message texts as the page keeps them in localStorage."""
    return page.evaluate(
        """() => {
          const id = localStorage.getItem('bimedix2-current');
          const conv = JSON.parse(localStorage.getItem('bimedix2-conversations')).find((c) => c.id === id);
          return conv.messages.map((m) => m.text);
        }"""
    )


def test_web_chat_arabic_streaming_rtl_and_image_upload(
    browser,
    paced_tiny_engine: Engine,
    png_path: Path,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    tiny_engine = paced_tiny_engine  # streaming must be observable in the page
    params = GenParams(temperature=0, max_new_tokens=MAX_TOKENS)
    first = tiny_engine.generate([Message("user", ARABIC_QUESTION)], params)
    assert detect_language(first.text) == "ar", "test precondition: the tiny model's reply should be Arabic script"
    second_q = "What is seen in this image?"
    second = tiny_engine.generate(
        [
            Message("user", ARABIC_QUESTION),
            Message("assistant", first.text),
            Message("user", second_q, (ImageRef(png_path),)),
        ],
        params,
    )
    app = create_app(tiny_engine, ServeConfig(model_id="bimedix2-tiny", batch_window_s=0.0))
    with serve_in_thread(app) as base:
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        console_errors: list[str] = []
        page.on("pageerror", lambda exc: console_errors.append(str(exc)))
        page.goto(base + "/")
        page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")
        assert "Research use only" in page.inner_text("#notice") and page.is_visible("#notice")

        # interface language toggle: Arabic, right-to-left
        page.click("#lang-toggle")
        assert page.get_attribute("html", "dir") == "rtl" and page.get_attribute("html", "lang") == "ar"
        assert "للاستخدام البحثي فقط" in page.inner_text("#notice")
        assert page.inner_text("#send") == "إرسال"

        page.click("#settings summary")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", str(MAX_TOKENS))

        # an Arabic question gets a streamed, right-to-left reply
        page.fill("#prompt", ARABIC_QUESTION)
        page.press("#prompt", "Enter")
        reply = page.wait_for_selector(".msg.assistant[data-state='done']", timeout=60_000)
        assert stored_texts(page) == [ARABIC_QUESTION, first.text]  # kept in this browser, verbatim
        assert reply.query_selector(".text").text_content().split() == first.text.split()  # rendered as Markdown
        assert reply.get_attribute("dir") == "rtl"
        assert int(reply.get_attribute("data-chunks")) > 1  # arrived in several streamed pieces
        assert page.get_attribute(".msg.user", "dir") == "rtl"

        # image upload with preview, then a second turn about it (English, left-to-right)
        page.set_input_files("#image-input", str(png_path))
        page.wait_for_selector("#preview[src^='data:image/png;base64,']", state="visible")
        assert page.inner_text("#attachment-name") == png_path.name
        page.fill("#prompt", second_q)
        page.click("#send")
        page.wait_for_function(
            "document.querySelectorAll(\".msg.assistant[data-state='done']\").length === 2", timeout=60_000
        )
        assert stored_texts(page)[3] == second.text
        users = page.query_selector_all(".msg.user")
        assert users[1].get_attribute("dir") == "ltr" and users[1].query_selector("img") is not None
        assert page.is_hidden("#attachment")

        # DICOM: the browser cannot draw it, the server renders a preview
        dcm = tmp_path / "scan.dcm"
        dcm.write_bytes(greyscale_dicom_bytes())
        page.set_input_files("#image-input", str(dcm))
        page.wait_for_selector("#preview[src^='blob:']", state="visible", timeout=30_000)
        page.click("#remove-image")

        # a server error is shown clearly, and the conversation survives it
        page.fill("#max-tokens", "0")
        page.fill("#prompt", "hello")
        page.click("#send")
        page.wait_for_selector("#error:not([hidden])")
        assert "max_tokens" in page.inner_text("#error") and "400" in page.inner_text("#error")
        assert len(page.query_selector_all(".msg.assistant[data-state='done']")) == 2
        assert len(page.query_selector_all(".msg.user")) == 2 and page.input_value("#prompt") == "hello"

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-web-chat.png"), full_page=True)
        assert not console_errors, console_errors
        page.close()

"""The web chat's features in real headless Chromium (Debian's /usr/bin/chromium via Playwright), English and Arabic.

Markdown (sanitised), stop, copy, regenerate, edit-and-resend, localStorage conversations and forget-everything,
dark mode, a phone viewport, keyboard use, drag-and-drop and paste, DICOM window/frame, and an axe-core check
(tests/integration/vendor/axe.min.js, injected here; the app does not serve it): no serious or critical
violations. Screenshots go to test-artifacts/serve-web-*.png. Skipped when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.fakes.dicom_files import greyscale_dicom_bytes

from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
LANGS = ["en", "ar"]
LABELS = {  # a few interface strings per language (app.js STRINGS)
    "en": {"send": "Send", "stop": "Stop", "forget": "Forget everything", "copy": "Copy", "regenerate": "Regenerate"},
    "ar": {"send": "إرسال", "stop": "إيقاف", "forget": "احذف كل شيء", "copy": "نسخ", "regenerate": "أعد التوليد"},
}
QUESTION = {"en": "Describe a chest X-ray", "ar": "صف صورة الأشعة السينية للصدر"}
# An answer with Markdown and hostile HTML, as a model might write it.
MARKDOWN_ANSWER = (
    "Findings:\n\n- **clear** lungs\n- no effusion\n\n| side | note |\n|---|---|\n| left | normal |\n\n"
    '```\ncode <b>x</b>\n```\n\n<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>\n\n'
    "![remote](http://example.invalid/a.png) [link](javascript:window.pwned=3)"
)


@pytest.fixture(scope="module")
def base_url(tiny_engine) -> Iterator[str]:  # noqa: ANN001
    app = create_app(tiny_engine, ServeConfig(model_id="bimedix2-tiny", batch_window_s=0.0))
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture
def page(browser, base_url: str) -> Iterator[object]:  # noqa: ANN001
    """A fresh browser context (empty localStorage) on the chat page, with clipboard access."""
    context = browser.new_context(
        viewport={"width": 1100, "height": 860}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((base_url, "data:", "blob:")) else outside.append(r.url))
    page.goto(base_url + "/")
    page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")
    yield page
    assert not errors, errors
    assert not outside, f"the page asked another host: {outside}"
    context.close()


def set_language(page, lang: str) -> None:  # noqa: ANN001
    if page.get_attribute("html", "lang") != lang:
        page.click("#lang-toggle")
    assert page.get_attribute("html", "lang") == lang
    assert page.get_attribute("html", "dir") == ("rtl" if lang == "ar" else "ltr")
    assert page.inner_text("#send") == LABELS[lang]["send"]
    assert page.inner_text("#forget") == LABELS[lang]["forget"]
    notice = page.inner_text("#notice")
    assert ("Research use only" in notice) if lang == "en" else ("للاستخدام البحثي فقط" in notice)
    assert page.is_visible("#notice")


def settings(page, max_tokens: int = 12) -> None:  # noqa: ANN001
    page.click("#settings summary")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", str(max_tokens))


def conversations(page) -> list[dict]:  # noqa: ANN001
    return json.loads(page.evaluate("localStorage.getItem('bimedix2-conversations') || '[]'"))


def done_count(page) -> int:  # noqa: ANN001
    return len(page.query_selector_all(".msg.assistant[data-state='done']"))


def ask(page, text: str, answers: int) -> None:  # noqa: ANN001
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    page.wait_for_function(f"document.querySelectorAll(\".msg.assistant[data-state='done']\").length === {answers}")


def axe_check(page, where: str) -> None:  # noqa: ANN001
    """No serious or critical axe-core violations on the page as it is now."""
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{where}: {bad}"


def shot(page, name: str) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"serve-web-{name}.png"), full_page=True)


def seed_markdown_conversation(page, question: str) -> None:  # noqa: ANN001
    conv = {
        "id": "seeded",
        "title": question,
        "updated": 1,
        "messages": [{"role": "user", "text": question}, {"role": "assistant", "text": MARKDOWN_ANSWER, "chunks": 1}],
    }
    page.evaluate(
        "(c) => { localStorage.setItem('bimedix2-conversations', JSON.stringify([c]));"
        " localStorage.setItem('bimedix2-current', c.id); }",
        conv,
    )
    page.reload()
    page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")


@pytest.mark.parametrize("lang", LANGS)
def test_markdown_copy_regenerate_edit_conversations_dark_and_axe(page, lang: str) -> None:  # noqa: ANN001
    set_language(page, lang)
    seed_markdown_conversation(page, QUESTION[lang])
    assert page.get_attribute("html", "lang") == lang  # the interface language is remembered
    answer = page.query_selector(".msg.assistant .text.md")
    assert answer.query_selector("ul li strong").text_content() == "clear"
    assert answer.query_selector("table td").text_content() == "left"
    assert answer.query_selector("pre code").text_content() == "code <b>x</b>\n"  # code shown as text
    assert answer.query_selector("img, script, [onerror]") is None
    assert "<img src=x" in answer.text_content()  # raw HTML is shown as text, never run
    assert all(not (a.get_attribute("href") or "").startswith("javascript:") for a in answer.query_selector_all("a"))
    assert page.evaluate("window.pwned") is None
    assert answer.query_selector("p").get_attribute("dir") == "auto"
    axe_check(page, f"{lang} light, Markdown answer")

    # copy an answer to the clipboard
    page.click(".msg.assistant .action.copy")
    page.wait_for_function(
        "(label) => document.querySelector('.msg.assistant .action.copy').textContent !== label",
        arg=LABELS[lang]["copy"],
    )
    assert page.evaluate("navigator.clipboard.readText()") == MARKDOWN_ANSWER

    # a new conversation in the list; a real answer from the tiny model (Enter sends, Shift+Enter is a newline)
    page.click("#new-chat")
    assert page.query_selector_all(".msg") == []
    settings(page)
    page.fill("#prompt", "")
    page.type("#prompt", "line one")
    page.press("#prompt", "Shift+Enter")
    page.type("#prompt", "line two")
    assert page.input_value("#prompt") == "line one\nline two" and done_count(page) == 0
    page.fill("#prompt", "")
    ask(page, QUESTION[lang], 1)
    convs = conversations(page)
    assert len(convs) == 2 and convs[0]["title"] == QUESTION[lang]
    first = convs[0]["messages"][1]["text"]
    assert first and page.inner_text(".msg.assistant .action.regenerate") == LABELS[lang]["regenerate"]
    assert page.get_attribute(".msg.user", "dir") == ("rtl" if lang == "ar" else "ltr")

    # regenerate replaces the last answer (greedy: the same text again, one answer still)
    page.click(".msg.assistant .action.regenerate")
    page.wait_for_selector(".msg.assistant[data-state='streaming']", state="detached")
    page.wait_for_function("document.querySelectorAll(\".msg.assistant[data-state='done']\").length === 1")
    assert [m["role"] for m in conversations(page)[0]["messages"]] == ["user", "assistant"]
    assert page.get_attribute("#status", "aria-live") == "polite" and first in page.text_content("#status")
    assert conversations(page)[0]["messages"][1]["text"] == first

    # edit and resend the last question: it and its answer are replaced
    page.click(".msg.user .action.edit")
    assert page.is_visible("#edit-banner") and page.input_value("#prompt") == QUESTION[lang]
    assert page.evaluate("document.activeElement.id") == "prompt"
    edited = QUESTION[lang] + " 2"
    page.fill("#prompt", edited)
    page.press("#prompt", "Enter")
    page.wait_for_function(
        "(edited) => { const u = document.querySelectorAll('.msg.user');"
        " return u.length === 1 && u[0].textContent.includes(edited)"
        " && document.querySelectorAll(\".msg.assistant[data-state='done']\").length === 1; }",
        arg=edited,
    )
    assert page.is_hidden("#edit-banner")
    assert [m["text"] for m in conversations(page)[0]["messages"]][0] == edited

    # kept across a reload; switch between conversations; delete one
    page.reload()
    page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")
    assert page.inner_text(".msg.user .text") == edited
    items = page.query_selector_all("#conv-list .conv")
    assert len(items) == 2 and items[0].get_attribute("aria-current") == "true"
    items[1].click()
    page.wait_for_selector(".msg.assistant .text.md table")
    assert page.get_attribute("#conv-list li:nth-child(2) .conv", "aria-current") == "true"

    # dark mode toggle (remembered), then the accessibility check in dark, then screenshots
    page.click("#theme-toggle")
    assert (
        page.get_attribute("html", "data-theme") == "dark"
        and page.get_attribute("#theme-toggle", "aria-pressed") == "true"
    )
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(20, 24, 29)", bg
    axe_check(page, f"{lang} dark")
    shot(page, f"desktop-{lang}-dark")
    page.click("#theme-toggle")
    assert page.get_attribute("html", "data-theme") == "light"
    shot(page, f"desktop-{lang}")

    page.click("#conv-list li:nth-child(2) .conv-delete")
    assert len(conversations(page)) == 1 and len(page.query_selector_all("#conv-list .conv")) == 1

    # forget everything: nothing of ours is left in localStorage; the privacy note is on screen
    assert page.is_visible("#privacy") and "256" in page.inner_text("#privacy")
    page.click("#forget")
    assert page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('bimedix2-'))") == []
    assert page.query_selector_all(".msg") == [] and page.query_selector_all("#conv-list .conv") == []
    assert page.is_visible("#notice")


@pytest.mark.parametrize("lang", LANGS)
def test_stop_cancels_generation(page, paced_tiny_engine, lang: str) -> None:  # noqa: ANN001
    set_language(page, lang)
    settings(page, max_tokens=400)  # ~12 s at the paced rate: far longer than the test waits
    page.fill("#prompt", QUESTION[lang])
    page.press("#prompt", "Enter")
    page.wait_for_function(
        "() => { const b = document.querySelector(\".msg.assistant[data-state='streaming']\");"
        " return b && +b.dataset.chunks >= 3; }",
        timeout=30_000,
    )
    assert page.is_visible("#stop") and page.is_hidden("#send")
    assert page.inner_text("#stop") == LABELS[lang]["stop"]
    assert page.get_attribute(".msg.assistant", "aria-busy") == "true"
    if lang == "en":
        page.keyboard.press("Escape")  # Esc stops, wherever the focus is
    else:
        page.click("#stop")
    page.wait_for_selector(".msg.assistant[data-state='stopped']", timeout=5_000)
    assert page.is_visible("#send") and page.is_hidden("#stop")
    msg = conversations(page)[0]["messages"][1]
    assert msg["stopped"] is True and 0 < msg["chunks"] < 400
    assert page.evaluate("document.activeElement.id") == "prompt"
    # the server is free again: the next request (short) is answered
    page.fill("#max-tokens", "4")
    page.click(".msg.assistant .action.regenerate")
    page.wait_for_selector(".msg.assistant[data-state='done']", timeout=30_000)

    # forget everything while an answer streams: it stops, and nothing comes back into storage
    page.fill("#max-tokens", "400")
    page.fill("#prompt", QUESTION[lang])
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.assistant[data-state='streaming']", timeout=30_000)
    page.click("#forget")
    page.wait_for_selector("#stop", state="hidden", timeout=5_000)
    page.wait_for_timeout(200)
    assert page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('bimedix2-'))") == []
    assert page.query_selector_all(".msg") == []


def _png_data(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _dispatch_file(page, selector: str, event: str, data: bytes, name: str, mime: str) -> None:  # noqa: ANN001
    """A drop or paste of one file, as the browser delivers it."""
    page.evaluate(
        """([selector, event, b64, name, mime]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], name, { type: mime }));
          const target = document.querySelector(selector);
          const ev = event === 'paste'
            ? new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true })
            : new DragEvent(event, { dataTransfer: dt, bubbles: true, cancelable: true });
          target.dispatchEvent(ev);
        }""",
        [selector, event, base64.b64encode(data).decode(), name, mime],
    )


@pytest.mark.parametrize("lang", LANGS)
def test_drop_paste_big_image_and_dicom_window_frame(page, lang: str, tmp_path: Path) -> None:  # noqa: ANN001
    set_language(page, lang)
    settings(page, max_tokens=4)
    # paste a small PNG into the message box: kept in localStorage with the conversation
    _dispatch_file(page, "#prompt", "paste", _png_data(16, 1), "pasted.png", "image/png")
    page.wait_for_selector("#preview[src^='data:image/png;base64,']", state="visible")
    assert page.inner_text("#attachment-name") == "pasted.png"
    ask(page, QUESTION[lang], 1)
    image = conversations(page)[0]["messages"][0]["image"]
    assert image["kept"] is True and image["dataUrl"].startswith("data:image/png;base64,")

    # drop a big PNG (over 256 KB): sent, shown for this session, not stored, and the page says so
    _dispatch_file(page, "body", "dragenter", b"", "x", "image/png")
    assert "dragging" in page.get_attribute("#composer", "class")
    _dispatch_file(page, "#messages", "drop", _png_data(400, 2), "big.png", "image/png")
    page.wait_for_selector("#preview[src^='data:image/png;base64,']", state="visible")
    assert "dragging" not in (page.get_attribute("#composer", "class") or "")
    assert page.inner_text("#attachment-name") == "big.png" and "256" in page.inner_text("#attachment-note")
    ask(page, QUESTION[lang], 2)
    big = conversations(page)[0]["messages"][2]["image"]
    assert big["kept"] is False and big["dataUrl"] is None
    assert page.query_selector_all(".msg.user")[1].query_selector("img") is not None
    assert "256" in page.inner_text(".msg.user:nth-of-type(3) .image-note")

    # after a reload the big image is gone (said so) and the small one is still there
    page.reload()
    page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")
    users = page.query_selector_all(".msg.user")
    assert users[0].query_selector("img") is not None
    assert users[1].query_selector("img") is None and users[1].query_selector(".image-note") is not None

    # a three-frame DICOM, in a new conversation (the API takes one window and frame per request, for all its images)
    # the server previews it; the window preset and frame go with the request
    page.click("#new-chat")
    dcm = tmp_path / "multi.dcm"
    dcm.write_bytes(greyscale_dicom_bytes(frames=3))
    page.set_input_files("#image-input", str(dcm))
    page.wait_for_selector("#preview[src^='blob:']", state="visible", timeout=30_000)
    assert page.is_visible("#dicom-controls")
    options = page.eval_on_selector_all("#dicom-window option", "os => os.map((o) => o.value)")
    assert options == ["", "lung", "mediastinum", "bone", "brain", "abdomen"]  # bimedix2.dicom.WINDOW_PRESETS
    page.select_option("#dicom-window", "lung")
    page.fill("#dicom-frame", "9")  # no such frame: the server's 400 proves the frame was sent
    bodies: list[dict] = []
    page.on(
        "request", lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions") else None
    )
    page.fill("#prompt", QUESTION[lang])
    page.press("#prompt", "Enter")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "400" in page.inner_text("#error")
    assert bodies[-1]["dicom_window"] == "lung" and bodies[-1]["dicom_frame"] == 9
    assert page.is_visible("#attachment") and page.input_value("#prompt") == QUESTION[lang]  # nothing lost
    page.fill("#dicom-frame", "2")
    page.press("#prompt", "Enter")
    page.wait_for_function(
        "document.querySelectorAll(\".msg.assistant[data-state='done']\").length === 1"
        " || (document.getElementById('error').textContent !== '' && !document.getElementById('error').hidden"
        " && !document.getElementById('error').textContent.includes('frame 9'))",
        timeout=30_000,
    )
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert bodies[-1]["dicom_window"] == "lung" and bodies[-1]["dicom_frame"] == 2
    assert page.is_hidden("#attachment")


@pytest.mark.parametrize("lang", LANGS)
def test_phone_layout_keyboard_and_axe(browser, base_url: str, lang: str) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base_url + "/")
    page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")
    set_language(page, lang)
    settings(page, max_tokens=8)
    ask(page, QUESTION[lang], 1)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "no sideways scrolling on a phone"
    )
    assert page.is_hidden("#sidebar") and page.is_visible("#sidebar-toggle") and page.is_visible("#notice")
    box = page.query_selector("#send").bounding_box()
    assert box["height"] >= 40 and box["x"] >= 0 and box["x"] + box["width"] <= 390  # a finger-sized button on screen
    axe_check(page, f"{lang} phone")
    shot(page, f"phone-{lang}")

    page.click("#sidebar-toggle")
    assert page.is_visible("#sidebar") and page.get_attribute("#sidebar-toggle", "aria-expanded") == "true"
    shot(page, f"phone-{lang}-conversations")
    page.keyboard.press("Escape")
    assert page.is_hidden("#sidebar") and page.evaluate("document.activeElement.id") == "sidebar-toggle"

    # focus order: skip link first, then the header controls, ..., the message box before Send
    page.reload()
    page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    order = []
    for _ in range(40):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
    assert (
        order.index("sidebar-toggle") < order.index("theme-toggle") < order.index("lang-toggle") < order.index("prompt")
    )
    assert order.index("prompt") < order.index("send")
    assert not errors, errors
    context.close()


def test_without_vendored_libraries_answers_are_plain_text(browser, base_url: str) -> None:  # noqa: ANN001
    """A package built without serve/web/vendor/ still chats: answers as plain text, never as HTML."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route("**/static/vendor/**", lambda route: route.fulfill(status=404, body="not found"))
    page.goto(base_url + "/")
    page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")
    seed_markdown_conversation(page, QUESTION["en"])
    answer = page.query_selector(".msg.assistant .text")
    assert answer.text_content() == MARKDOWN_ANSWER and answer.query_selector("*") is None
    assert page.evaluate("window.pwned") is None and not errors, errors
    context.close()


def test_a_keyed_server_shows_its_model_once_the_key_is_entered(browser, tiny_engine) -> None:  # noqa: ANN001
    """Without the key /api/info says only that one is needed; with it, the page learns the model and chats."""
    app = create_app(tiny_engine, ServeConfig(model_id="bimedix2-tiny", batch_window_s=0.0, api_key="sekrit"))
    with serve_in_thread(app) as base:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        page.wait_for_function("document.getElementById('settings').open === true")  # asks for the key
        assert page.inner_text("#model-name") != "bimedix2-tiny"
        page.fill("#api-key", "sekrit")
        page.dispatch_event("#api-key", "change")
        page.wait_for_function("document.getElementById('model-name').textContent === 'bimedix2-tiny'")
        assert not page.is_disabled("#image-input")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "4")
        ask(page, QUESTION["ar"], 1)
        assert not page.query_selector(".msg.error") and not errors, errors
        context.close()

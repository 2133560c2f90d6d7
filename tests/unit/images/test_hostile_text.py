"""Hostile prompt text through the engine: bidi controls, zero-width characters, very long lines.

Defined behaviour (README table): such text is valid Unicode and reaches the model unchanged;
a prompt longer than the context window is refused with ContextTooLongError naming the sizes.
"""

from __future__ import annotations

import pytest

from bimedix2.conversation import detect_language
from bimedix2.errors import ContextTooLongError
from bimedix2.types import GenParams, ImageRef, Message

PARAMS = GenParams(max_new_tokens=3, temperature=0.0)


@pytest.mark.parametrize(
    "text",
    [
        "What does \u202ethis\u202c scan show?",  # right-to-left override
        "ما\u200b الذي\u200d تظهره\u2067 هذه\u2069 الصورة؟",  # Arabic with zero-width and isolates
        "\u200b\u200c\u200d\ufeff",  # only invisible characters
        "x\u0000y\u001b[31m red",  # NUL and a terminal escape
    ],
    ids=["rlo", "arabic-zero-width", "invisible-only", "control-chars"],
)
def test_odd_text_reaches_the_model_unchanged(tiny_engine, png_path, text: str) -> None:  # noqa: ANN001
    message = Message("user", text, (ImageRef(png_path),))
    assert text in tiny_engine.render([message], PARAMS)
    reply = tiny_engine.generate([message], PARAMS)
    assert reply.completion_tokens >= 1 and reply.finish_reason in ("stop", "length")


def test_language_detection_ignores_invisible_characters() -> None:
    assert detect_language("ما\u200b الذي\u200d تظهره\u2067 هذه\u2069 الصورة؟") == "ar"
    assert detect_language("What\u200b does \u202ethis show") == "en"


@pytest.mark.parametrize("text", ["a" * 200_000, "لا " * 50_000], ids=["latin-long-line", "arabic-long-line"])
def test_very_long_lines_are_refused_with_sizes(tiny_engine, text: str) -> None:  # noqa: ANN001
    with pytest.raises(ContextTooLongError, match=r"the prompt is \d+ tokens; the model's context is 2048 tokens"):
        tiny_engine.generate([Message("user", text)], PARAMS)

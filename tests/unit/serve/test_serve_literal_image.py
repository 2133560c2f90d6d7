"""Issue 15 defect 7 at the server: a literal `<image>` in message text is text, for every model.

The request that used to get 400 ("... placed 1 image placeholders for 0 images") gets 200, and the
reply and prompt size are what the in-process engine gives for the same conversation.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bimedix2.engine import Engine
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig
from bimedix2.types import GenParams, ImageRef, Message

MODEL = "m"
SYSTEM = "Translate the record to Arabic. Keep every <image> token exactly where it is."
GREEDY = GenParams(max_new_tokens=8, temperature=0.0)


@contextlib.contextmanager
def served(engine: Engine) -> Iterator[str]:
    with serve_in_thread(create_app(engine, ServeConfig(model_id=MODEL))) as base:
        yield base


def chat(base: str, messages: list[dict[str, object]]) -> httpx.Response:
    body = {"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": GREEDY.max_new_tokens}
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)


@pytest.fixture(scope="module")
def causal_engine(tiny_causal_lm_path: Path) -> Engine:
    from bimedix2.model.loader import load_model

    return Engine(load_model(str(tiny_causal_lm_path)))


@pytest.mark.parametrize("engine_name", ["tiny_engine", "causal_engine"], ids=["llava", "plain-lm"])
@pytest.mark.parametrize("text", ["<image>\nIs the lesion malignant?", "<image>\nهل الآفة خبيثة؟"], ids=["en", "ar"])
def test_literal_placeholder_in_text_is_200(request: pytest.FixtureRequest, engine_name: str, text: str) -> None:
    engine: Engine = request.getfixturevalue(engine_name)
    with served(engine) as base:
        response = chat(base, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}])
    assert response.status_code == 200, response.text
    expected = engine.generate([Message("system", SYSTEM), Message("user", text)], GREEDY)
    body = response.json()
    assert body["choices"][0]["message"]["content"] == expected.text
    assert body["usage"]["prompt_tokens"] == expected.prompt_tokens


def test_literal_placeholder_beside_a_real_image(tiny_engine: Engine, png_path: Path) -> None:
    url = "data:image/png;base64," + base64.b64encode(png_path.read_bytes()).decode()
    text = "Compare <image> in the report with this scan."
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    with served(tiny_engine) as base:
        response = chat(base, [{"role": "user", "content": parts}])
    assert response.status_code == 200, response.text
    expected = tiny_engine.generate([Message("user", text, (ImageRef(png_path.read_bytes()),))], GREEDY)
    assert response.json()["usage"]["prompt_tokens"] == expected.prompt_tokens
    assert response.json()["choices"][0]["message"]["content"] == expected.text

"""The OpenAI-compatible server on 127.0.0.1 with a tiny LLaVA model, driven by the official openai SDK."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.fakes.dicom_files import greyscale_dicom_bytes

from bimedix2.engine import Engine
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig
from bimedix2.types import GenParams, ImageRef, Message

pytestmark = pytest.mark.integration
MODEL = "bimedix2-tiny"


@contextlib.contextmanager
def server(engine: Engine, **config: object) -> Iterator[tuple[str, object]]:
    app = create_app(engine, ServeConfig(model_id=MODEL, **config))  # type: ignore[arg-type]
    with serve_in_thread(app) as base:
        yield base, app.state.batcher


@pytest.fixture(scope="module")
def api(tiny_engine: Engine) -> Iterator[str]:
    with server(tiny_engine) as (base, _):
        yield base


def client(base: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=120)


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def wait_for(condition, what: str, limit: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_models_and_health(api: str) -> None:
    assert [m.id for m in client(api).models.list()] == [MODEL]
    health = httpx.get(f"{api}/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL  # no key configured: nothing to hide


def test_non_streaming_and_streaming_agree(api: str, paced_tiny_engine: Engine) -> None:
    tiny_engine = paced_tiny_engine  # the server's engine: paced so token-by-token streaming is observable
    question = "What are the symptoms of iron-deficiency anemia?"
    expected = tiny_engine.generate([Message("user", question)], GenParams(temperature=0, max_new_tokens=16))
    c = client(api)
    reply = c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=16
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert reply.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens

    chunks = list(
        c.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": question}],
            temperature=0,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [ch.choices[0].delta.content or "" for ch in chunks if ch.choices]
    assert len([p for p in pieces if p]) > 1  # really streamed, not one blob
    assert "".join(pieces) == expected.text
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == expected.finish_reason
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens


def test_image_data_url_streaming_arabic(api: str, tiny_engine: Engine, png_path: Path) -> None:
    question = "ما الذي يظهر في هذه الصورة؟"
    expected = tiny_engine.generate(
        [Message("user", question, (ImageRef(png_path),))], GenParams(temperature=0, max_new_tokens=12)
    )
    content = [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": data_url(png_path)}}]
    stream = client(api).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], temperature=0, max_tokens=12, stream=True
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == expected.text


def test_multi_turn_with_system_seed_and_stop(api: str, tiny_engine: Engine) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "ما هو فقر الدم؟"},
    ]
    c = client(api)
    a = c.chat.completions.create(model=MODEL, messages=messages, temperature=0.9, seed=7, max_tokens=10)
    b = c.chat.completions.create(model=MODEL, messages=messages, temperature=0.9, seed=7, max_tokens=10)
    assert a.choices[0].message.content == b.choices[0].message.content
    full = c.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=12).choices[0]
    stop = full.message.content[3:6]
    cut = c.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=12, stop=[stop])
    assert cut.choices[0].message.content == full.message.content[: full.message.content.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_eight_concurrent_clients_get_complete_correct_answers(tiny_engine: Engine, png_path: Path) -> None:
    questions = [f"Question {i}: what does this finding mean?" for i in range(4)]
    questions += [f"سؤال {i}: ماذا تعني هذه النتيجة؟" for i in range(3)]
    params = GenParams(temperature=0, max_new_tokens=20)
    convs = [[Message("user", q)] for q in questions] + [[Message("user", "Describe.", (ImageRef(png_path),))]]
    expected = [tiny_engine.generate(conv, params) for conv in convs]
    bodies = [[{"role": "user", "content": q}] for q in questions]
    bodies.append(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe."},
                    {"type": "image_url", "image_url": {"url": data_url(png_path)}},
                ],
            }
        ]
    )
    results: list[object] = [None] * 8
    start = threading.Barrier(8)

    with server(tiny_engine, batch_window_s=1.0) as (base, batcher):

        def worker(i: int) -> None:
            c = client(base)
            start.wait()
            if i % 2:  # half stream, half do not
                stream = c.chat.completions.create(
                    model=MODEL, messages=bodies[i], temperature=0, max_tokens=20, stream=True
                )
                chunks = list(stream)
                results[i] = (
                    "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
                    [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1],
                )
            else:
                r = c.chat.completions.create(model=MODEL, messages=bodies[i], temperature=0, max_tokens=20)
                results[i] = (r.choices[0].message.content, r.choices[0].finish_reason)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert batcher.stats.largest_batch > 1  # requests really shared generate calls
        assert batcher.stats.completed == 8
    assert results == [(e.text, e.finish_reason) for e in expected]


def test_bad_requests_get_openai_shaped_4xx(tiny_engine: Engine, tmp_path: Path, png_path: Path) -> None:
    small = Engine(tiny_engine.loaded, max_context=160)
    with server(small, max_body_bytes=200_000, max_image_bytes=50_000) as (base, _):

        def post(body: object, **kw: object) -> httpx.Response:
            return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60, **kw)  # type: ignore[arg-type]

        ok = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        image = {"type": "image_url", "image_url": {"url": data_url(png_path)}}
        cases = [
            ({"messages": ok["messages"]}, 400, "model"),
            ({**ok, "messages": []}, 400, "messages"),
            ({**ok, "temperature": -1}, 400, "temperature"),
            ({**ok, "n": 3}, 400, "n"),
            ({**ok, "seed": 1180591620717411303424}, 400, "seed: "),
            ({**ok, "seed": -(2**63) - 5}, 400, "seed: "),
            ({**ok, "max_tokens": 10**30}, 400, "max_tokens: "),
            ({**ok, "dicom_frame": 10**30}, 400, "dicom_frame: "),
            (
                {**ok, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "foo"}]}]},
                400,
                "messages[0].content[1]: unknown part type 'foo'; use 'text' or 'image_url'",
            ),
            ({**ok, "logit_bias": {"1": 2}}, 400, "logit_bias"),
            ({**ok, "model": "gpt-4o"}, 404, "not found"),
            ({**ok, "messages": [{"role": "assistant", "content": "hi"}]}, 400, "expected a user message"),
            ({**ok, "messages": [{"role": "user", "content": "  "}]}, 400, "empty"),
            ({**ok, "messages": [{"role": "user", "content": "word " * 200}]}, 400, "context"),
            (
                {**ok, "messages": [{"role": "user", "content": [image] * 9 + [{"type": "text", "text": "x"}]}]},
                400,
                "limit of 8",
            ),
            (
                {
                    **ok,
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "image_url",
                                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA"},
                                }
                            ],
                        }
                    ],
                },
                400,
                "messages[0].content[0]",
            ),
            (
                {
                    **ok,
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "image_url",
                                    "image_url": {
                                        "url": "data:image/png;base64," + base64.b64encode(b"x" * 60_000).decode()
                                    },
                                }
                            ],
                        }
                    ],
                },
                413,
                "limit",
            ),
            (
                {
                    **ok,
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_path.as_uri()}}]}
                    ],
                },
                403,
                "disabled",
            ),
        ]
        for body, status, needle in cases:
            r = post(body)
            assert r.status_code == status, (body, r.text)
            error = r.json()["error"]
            assert needle in error["message"] and error["type"] and "code" in error, r.text
        big = post({**ok, "messages": [{"role": "user", "content": "x" * 300_000}]})
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
        chunked = httpx.post(f"{base}/v1/chat/completions", content=iter([b"{" + b" " * 150_000] * 2), timeout=60)
        assert chunked.status_code == 413
        as_json = {"Content-Type": "application/json"}
        assert httpx.post(f"{base}/v1/chat/completions", content=b"{not json", headers=as_json).status_code == 400
        assert httpx.post(f"{base}/v1/chat/completions", content=b"[1, 2]", headers=as_json).status_code == 400
        assert httpx.post(f"{base}/v1/chat/completions", content=b"{}", headers={}).status_code == 415
        assert httpx.get(f"{base}/v1/chat/completions").status_code == 405
        assert httpx.get(f"{base}/v1/nothing").json()["error"]["code"] == "not_found"
        with pytest.raises(openai.BadRequestError):
            client(base).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": ""}])
        assert post(ok).status_code == 200  # the server is fine after all that


def test_text_only_model_refuses_images_with_422(tiny_causal_lm_path: Path, png_path: Path) -> None:
    from bimedix2.model.loader import load_model

    with server(Engine(load_model(str(tiny_causal_lm_path)))) as (base, _):
        body = {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "image_url", "image_url": {"url": data_url(png_path)}},
                    ],
                }
            ],
        }
        r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 422 and r.json()["error"]["code"] == "model_has_no_vision"


def test_local_file_urls_where_allowed(tiny_engine: Engine, png_path: Path) -> None:
    with server(tiny_engine, local_image_dirs=(png_path.parent,)) as (base, _):
        content = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": png_path.as_uri()}}]
        r = client(base).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=3, temperature=0
        )
        assert r.usage.completion_tokens >= 1
        outside = {"type": "image_url", "image_url": {"url": "file:///etc/hostname"}}
        with pytest.raises(openai.PermissionDeniedError):
            client(base).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [outside]}])


def test_api_key_on_every_v1_route(tiny_engine: Engine) -> None:
    with server(tiny_engine, api_key="s3cret-key") as (base, _):
        for bad in ("wrong", ""):
            with pytest.raises(openai.AuthenticationError):
                client(base, bad or "x").chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}]
                )
        assert httpx.get(f"{base}/v1/models").status_code == 401
        assert httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(f"{base}/v1/bimedix2/preview", content=b"x").status_code == 401
        assert httpx.get(f"{base}/health").status_code == 200 and httpx.get(f"{base}/").status_code == 200
        good = client(base, "s3cret-key")
        assert [m.id for m in good.models.list()] == [MODEL]
        assert good.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        ).choices[0].finish_reason in ("stop", "length")
    with server(tiny_engine) as (base, _):  # auth off: no key needed
        assert httpx.get(f"{base}/v1/models").status_code == 200


def test_full_queue_429_and_timeout_504(tiny_engine: Engine) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with server(tiny_engine, max_queue=1, batch_window_s=0.0, request_timeout_s=60) as (base, batcher):
        responses: dict[str, httpx.Response] = {}

        def send(name: str) -> None:
            responses[name] = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)

        with tiny_engine._lock:  # the engine is busy: the first request runs (blocked), the next one waits
            first = threading.Thread(target=send, args=("first",))
            first.start()
            wait_for(lambda: batcher.running == 1, "the first request to start")
            second = threading.Thread(target=send, args=("second",))
            second.start()
            wait_for(lambda: batcher.queued == 1, "the second request to queue")
            send("third")
        first.join(60)
        second.join(60)
        assert responses["third"].status_code == 429
        assert responses["third"].json()["error"]["type"] == "rate_limit_error"
        assert responses["third"].headers["retry-after"] == "1"
        assert responses["first"].status_code == responses["second"].status_code == 200
    with server(tiny_engine, request_timeout_s=0.5) as (base, batcher):
        with tiny_engine._lock:
            r = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        wait_for(lambda: batcher.running == 0 and batcher.stats.cancelled == 1, "the timed-out job to be cancelled")


def test_streaming_client_disconnect_cancels_generation(tiny_engine: Engine) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Tell me everything."}],
        "max_tokens": 1500,
        "temperature": 0,
        "stream": True,
    }
    with server(tiny_engine) as (base, batcher):
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=60) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")  # the first chunk arrived; now hang up
        wait_for(lambda: batcher.stats.cancelled == 1, "the server to notice the disconnect")
        wait_for(lambda: batcher.running == 0, "the batch to end")
        assert batcher.stats.completed == 0 and batcher.stats.generated_tokens < 1500


def dicom_url(frames: int) -> str:
    """A small multi-frame 12-bit greyscale DICOM as a data: URL."""
    return "data:application/dicom;base64," + base64.b64encode(greyscale_dicom_bytes(frames)).decode()


def test_dicom_data_url_with_window_and_frame(api: str) -> None:
    content = [
        {"type": "text", "text": "ما الذي يظهر في هذه الشريحة؟"},
        {"type": "image_url", "image_url": {"url": dicom_url(3)}},
    ]
    c = client(api)
    ok = c.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": content}],
        max_tokens=3,
        temperature=0,
        extra_body={"dicom_window": "40,400", "dicom_frame": 2},
    )
    assert ok.usage.prompt_tokens > 16  # the image's placeholder tokens are in the prompt
    with pytest.raises(openai.BadRequestError, match="frame 7 is out of range"):
        c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=3, extra_body={"dicom_frame": 7}
        )
    with pytest.raises(openai.BadRequestError, match=r"content\[1\]: dicom_window .bogus. is not a window"):
        c.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": content}],
            max_tokens=3,
            extra_body={"dicom_window": "bogus"},
        )
    preview = httpx.post(f"{api}/v1/bimedix2/preview", content=base64.b64decode(dicom_url(1).split(",", 1)[1]))
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
    bad = httpx.post(f"{api}/v1/bimedix2/preview", content=b"not an image")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_image"

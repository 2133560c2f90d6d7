"""Generation through an OpenAI-compatible chat endpoint (`eval run --endpoint URL --endpoint-model NAME`).

Every generative kind (VQA, report, summarization, BiMed-MBench, UPHILL, generative MCQ) asks the
endpoint the same conversation the in-process path renders: the kind's `prompt` messages, the
reply-language hint added to the last user turn exactly as `conversation.to_template_messages`
does (so the server is never asked to steer), and each image as a `data:image/png;base64,...` URL
of the toolkit's own decoded and square-padded image (`images.load_image` + `pad_to_square`:
DICOM windowing, frames and EXIF orientation are applied here, so any server sees the pixels the
in-process engine sees). Images come before the text in a user turn, as the engine places them.

Decoding: the task's settings under the run's protocol (`TaskRun.gen_params`): `temperature`
(0 when the protocol decodes greedily, e.g. the released rule "sample iff temperature > 0.001"),
`top_p`, `max_tokens` (= max_new_tokens), `seed` where set and `stop` where set.

Calls go through `bimedix2.llm_client.LLMClient`, as the judge's: at most `--endpoint-concurrency`
in flight, retried (429/5xx/timeouts/dropped connections), every finished call committed to
`<out>/<task>/generation_cache.sqlite` and every finished sample appended to
`<out>/<task>/predictions.jsonl` at once, so a killed or failed run resumes by asking only what is
missing. The API key is read from the environment variable `--endpoint-key-env` (default
`BIMEDIX2_ENDPOINT_KEY`); it is never taken from the command line and never written anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tqdm.auto import tqdm

from ..conversation import to_template_messages
from ..errors import ConfigError, LLMError
from ..images import DEFAULT_LIMITS, load_image, pad_to_square
from ..types import GenParams, ImageRef, Message
from .results import SampleCache
from .spec import ENDPOINT_CONCURRENCY as DEFAULT_CONCURRENCY
from .spec import ENDPOINT_KEY_ENV as DEFAULT_KEY_ENV
from .spec import ENDPOINT_TIMEOUT_S as DEFAULT_TIMEOUT_S
from .spec import clean_url
from .spec import endpoint_identity as identity

CACHE_NAME = "generation_cache.sqlite"

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_KEY_ENV",
    "DEFAULT_TIMEOUT_S",
    "EndpointError",
    "chat_messages",
    "check_endpoint",
    "clean_url",
    "endpoint_info",
    "generate_remote",
    "identity",
    "image_data_url",
    "request_params",
]


class EndpointError(LLMError):
    """Generation through the endpoint failed; the samples finished before it are kept."""


def request_params(params: GenParams) -> dict[str, Any]:
    """The decoding fields sent with every request (the task's settings under the run's protocol)."""
    out: dict[str, Any] = {
        "temperature": float(params.temperature) if params.sampling else 0.0,
        "top_p": float(params.top_p),
        "max_tokens": int(params.max_new_tokens),
    }
    if params.seed is not None:
        out["seed"] = int(params.seed)
    if params.stop:
        out["stop"] = list(params.stop)
    return out


def image_data_url(ref: ImageRef) -> str:
    """`data:image/png;base64,...` of the image as the engine loads it (decoded, RGB, padded to a square)."""
    image = pad_to_square(load_image(ref, DEFAULT_LIMITS))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(conversation: Sequence[Message], steer_language: bool = False) -> list[dict[str, Any]]:
    """The OpenAI chat messages for one conversation: the in-process template input, images as data: URLs."""
    payload = to_template_messages(conversation, steer_language=steer_language)
    out: list[dict[str, Any]] = []
    for message, rendered in zip(conversation, payload, strict=True):
        if not message.images:
            out.append({"role": rendered["role"], "content": rendered["content"]})
            continue
        images = iter(message.images)
        parts = [
            {"type": "image_url", "image_url": {"url": image_data_url(next(images))}}
            if part["type"] == "image"
            else {"type": "text", "text": part["text"]}
            for part in rendered["content"]
        ]
        out.append({"role": rendered["role"], "content": parts})
    return out


def endpoint_info(cfg: Any, params: GenParams | None = None) -> dict[str, Any]:
    """What results.json records about a remote generation (never the key)."""
    info: dict[str, Any] = {
        "remote": True,
        "endpoint": clean_url(cfg.endpoint),
        "model": cfg.endpoint_model,
        "api_key_env": cfg.endpoint_key_env,
        "concurrency": cfg.endpoint_concurrency,
    }
    if params is not None:
        info["request"] = request_params(params)
    return info


def _headers(key_env: str) -> dict[str, str]:
    key = os.environ.get(key_env)
    return {"Authorization": f"Bearer {key}"} if key else {}


def check_endpoint(url: str, model: str, key_env: str, timeout_s: float = 30.0) -> None:
    """Before any sample: the endpoint answers, the key is accepted and it serves `model` (GET /models).

    An endpoint without a model listing (404/405/501) is not refused here; its first chat call decides.
    """
    import httpx

    where = clean_url(url)
    try:
        response = httpx.get(f"{url.rstrip('/')}/models", headers=_headers(key_env), timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise EndpointError(
            f"cannot reach the generation endpoint {where} ({type(exc).__name__}); is the server running "
            "and is --endpoint its OpenAI base URL (e.g. http://HOST:8000/v1)?"
        ) from None
    if response.status_code in (401, 403):
        set_or_not = "is set but was refused" if os.environ.get(key_env) else "is not set"
        raise EndpointError(
            f"the generation endpoint {where} refused the request (HTTP {response.status_code}): "
            f"the API key is read from ${key_env}, which {set_or_not} (--endpoint-key-env names another variable)"
        )
    if response.status_code != 200:
        return  # no listing here (or a transient error): the retried chat calls decide
    try:
        served = [str(m["id"]) for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return
    if model not in served:
        raise EndpointError(
            f"the generation endpoint {where} does not serve model {model!r}; it serves: "
            f"{', '.join(served) or '(none)'} (pass one of them as --endpoint-model)"
        )


def _explain(exc: LLMError, cfg: Any) -> str:
    """The client's error with the URL's credentials removed and the likely cause named."""
    text = (
        str(exc)
        .replace(cfg.endpoint, clean_url(cfg.endpoint))
        .replace(cfg.endpoint.rstrip("/"), clean_url(cfg.endpoint))
    )
    if "HTTP 404" in text:
        text += f" (does the endpoint serve model {cfg.endpoint_model!r}?)"
    return text


async def _generate_all(
    client: Any,
    todo: Sequence[tuple[str, Sequence[Message]]],
    params: GenParams,
    cache: SampleCache,
    concurrency: int,
    bar: Any,
) -> None:
    sent = request_params(params)
    temperature, max_tokens = sent.pop("temperature"), sent.pop("max_tokens")
    slots = asyncio.Semaphore(concurrency)  # bounds the images held in memory as well as the calls

    finished: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def one(sample_id: str, conversation: Sequence[Message]) -> None:
        async with slots:
            messages = await asyncio.to_thread(chat_messages, conversation, params.steer_language)
            try:
                reply = await client.chat(messages, temperature=temperature, max_tokens=max_tokens, **sent)
            except LLMError as exc:
                raise _SampleFailed(sample_id, exc) from None
        finished.put_nowait(
            {
                "id": sample_id,
                "prediction": reply.text,
                "finish_reason": reply.finish_reason,
                "completion_tokens": reply.completion_tokens,
            }
        )

    async with client:
        writer = asyncio.create_task(_write_finished(finished, cache, bar))
        tasks = [asyncio.create_task(one(sid, conv)) for sid, conv in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            finished.put_nowait(None)  # every sample that finished is written before this returns or raises
            await writer


async def _write_finished(finished: asyncio.Queue[dict[str, Any] | None], cache: SampleCache, bar: Any) -> None:
    """The one writer of `cache`: appends (and fsyncs) finished samples in a worker thread, every record that
    finished while the previous write ran in one go, until the None sentinel.

    Writing from each request's coroutine put one fsync per sample on the event loop (500 samples: 2.2 s of
    a 4.4 s run in benchmarks/bench_eval.py, with no request sent meanwhile). A sample still queued when the
    process is killed is not lost either: the client's response cache already holds its reply.
    """
    done = False
    while not done:
        batch = [await finished.get()]
        while not finished.empty():
            batch.append(finished.get_nowait())
        done = batch[-1] is None
        records = [r for r in batch if r is not None]
        if records:
            await asyncio.to_thread(cache.add_many, records)
            bar.update(len(records))


class _SampleFailed(Exception):
    def __init__(self, sample_id: str, error: LLMError):
        super().__init__(sample_id)
        self.sample_id = sample_id
        self.error = error


def generate_remote(
    cfg: Any,
    task: str,
    items: Sequence[tuple[str, Sequence[Message]]],
    params: GenParams,
    cache: SampleCache,
    desc: str,
) -> dict[str, str]:
    """A reply from the endpoint for each (id, conversation) not yet in `cache`; {id: reply text}."""
    from ..llm_client import LLMClient, LLMConfig

    if not cfg.endpoint or not cfg.endpoint_model:
        raise ConfigError("generation through an endpoint needs --endpoint URL and --endpoint-model NAME")
    todo = [(sid, conv) for sid, conv in items if sid not in cache]
    if todo:
        check_endpoint(cfg.endpoint, cfg.endpoint_model, cfg.endpoint_key_env)
        client = LLMClient(
            LLMConfig(
                base_url=cfg.endpoint,
                model=cfg.endpoint_model,
                api_key_env=cfg.endpoint_key_env,
                max_concurrency=cfg.endpoint_concurrency,
                timeout_s=cfg.endpoint_timeout_s,
                cache_path=cfg.out_dir / task / CACHE_NAME,
            )
        )
        with tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="sample") as bar:
            try:
                asyncio.run(_generate_all(client, todo, params, cache, cfg.endpoint_concurrency, bar))
            except _SampleFailed as failed:
                done = sum(sid in cache for sid, _ in items)
                raise EndpointError(
                    f"task {task}: generation through {clean_url(cfg.endpoint)} (model {cfg.endpoint_model!r}) "
                    f"failed at sample {failed.sample_id}: {_explain(failed.error, cfg)}. {done} of {len(items)} "
                    f"samples are finished and kept in {cache.path}; rerun the same command to ask only the rest"
                ) from None
    return {sid: cache.records[sid]["prediction"] for sid, _ in items}


def cache_key(cfg: Any, task: str, prompt: str, params: GenParams) -> dict[str, Any]:
    """The predictions.jsonl fingerprint payload of a remote run (the endpoint and model named)."""
    return {
        "model": identity(cfg.endpoint, cfg.endpoint_model),
        "task": task,
        "prompt": prompt,
        "params": asdict(params),
        "generation": "remote",
    }

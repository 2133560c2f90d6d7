"""OpenAI-compatible chat-completions client (OpenAI, vLLM's server, any compatible endpoint).

Used by data generation (rewriting), translation and LLM judges. Built on the official SDK
(``openai.AsyncOpenAI``, with its aiohttp transport: ``openai[aiohttp]``), which does the HTTP,
the timeouts and the retries (408/409/429/5xx, timeouts and connection errors, ``Retry-After``
honoured); this module adds what the SDK lacks.
Public API:

- ``LLMConfig``: frozen settings (``base_url``, ``model``, ``api_key_env``, ``max_concurrency``,
  ``timeout_s``, ``max_retries``, backoff, ``cache_path``, prices per million tokens).
  ``LLMConfig.from_mapping(dict)`` validates a YAML/dict config and names any bad key.
- ``LLMClient(config)``: an async context manager.
    * ``await client.chat(messages, temperature=0.0, max_tokens=None, **params) -> ChatResult``
      at most ``max_concurrency`` calls in flight (asyncio semaphore); the SDK retries with
      ``max_retries`` and ``timeout_s`` (backoff ``backoff_base_s * 2**n`` up to
      ``backoff_max_s`` when the server sends no ``Retry-After``); an HTTP 200 whose body is
      unusable is asked again within the same ``max_retries``; then ``LLMError`` naming the
      endpoint (never the prompt). Other 4xx fail at once with ``LLMError``.
    * ``await client.chat_json(messages, validate=None, attempts=3, ...) -> JSONReply``
      parses the reply as JSON (code fences and prose around the object tolerated); a
      malformed reply, or one ``validate`` rejects (raise ``ValueError``), gets a repair turn:
      the original messages, the bad reply as an assistant turn and a user turn naming the
      error (``repair_turns``), so even a deterministic endpoint gets a different request. Each
      attempt is a distinct request with its own cache entry, so a resumed job replays it for
      free; after ``attempts`` it returns ``JSONReply(ok=False, error=...)`` - a recorded
      failure, not an exception. Transport failures after all retries still raise ``LLMError``.
    * ``client.usage``: ``Usage`` counters (calls paid, cache hits, retries, tokens, cost,
      JSON failures).
- ``parse_json_reply(text)``: the tolerant JSON extraction used by ``chat_json``.
- ``repair_turns(bad_reply, error)``: the two turns ``chat_json`` appends to re-ask.

Responses are cached persistently in SQLite (WAL) keyed by sha256 of (model, messages,
params); a finished call is committed before it is returned, so a killed and rerun job never
pays for it twice. Identical requests in flight at the same time share one HTTP call.
The API key is read from the environment variable ``api_key_env`` (default
``OPENAI_API_KEY``); when it is unset no Authorization header is sent (local vLLM servers).
Prompts and replies are never logged.

Example::

    async with LLMClient(LLMConfig(base_url="http://127.0.0.1:8000/v1", model="m")) as llm:
        reply = await llm.chat([{"role": "user", "content": "Hello"}])
        data = await llm.chat_json([{"role": "user", "content": 'Reply {"ok": true}'}])
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx2
import openai

from .errors import ConfigError, LLMError

ChatMessages = Sequence[Mapping[str, str]]
_NO_KEY = "no-key"  # placeholder the SDK requires; the Authorization header is then omitted
_ATTEMPTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("llm_attempts", default=None)


class _NoRequestBodies(logging.Filter):
    """Drops the SDK's debug record of request options: some SDK 3.x releases put the prompt in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Request options")


logging.getLogger("openai._base_client").addFilter(_NoRequestBodies())


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to call an OpenAI-compatible ``/chat/completions`` endpoint."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    cache_path: Path | None = None
    prompt_price_per_mtok: float = 0.0
    completion_price_per_mtok: float = 0.0
    seed: int = 0  # jitter only

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"llm.base_url must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ConfigError("llm.model is empty")
        if self.max_concurrency < 1:
            raise ConfigError(f"llm.max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.backoff_base_s < 0:
            raise ConfigError("llm.timeout_s must be > 0, llm.max_retries and llm.backoff_base_s >= 0")
        if self.cache_path is not None and not isinstance(self.cache_path, Path):
            object.__setattr__(self, "cache_path", Path(self.cache_path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> LLMConfig:
        """Build from a dict (e.g. the ``llm:`` block of a YAML config), naming unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown llm config key(s) {unknown}; known: {sorted(known)}")
        for key in ("base_url", "model"):
            if key not in data:
                raise ConfigError(f"llm config is missing {key!r}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"bad llm config: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (for the resolved config saved beside outputs); never holds the key."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["cache_path"] = str(self.cache_path) if self.cache_path else None
        return out


@dataclass(frozen=True)
class ChatResult:
    """One chat completion."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    model: str


@dataclass(frozen=True)
class JSONReply:
    """A parsed JSON reply, or a recorded failure (``ok`` False, ``error`` says why)."""

    ok: bool
    value: Any
    raw: str
    attempts: int
    error: str = ""


@dataclass
class Usage:
    """Running counters for one client (mutable; read them, don't set them)."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    json_failures: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_json_reply(text: str) -> Any:
    """Extract the first JSON object or array from an LLM reply; ``ValueError`` if there is none.

    Tolerates Markdown code fences and prose before/after the value (models add both).
    """
    decoder = json.JSONDecoder()
    stripped = text.strip()
    starts = [i for i, ch in enumerate(stripped) if ch in "{["]
    if not starts:
        raise ValueError("reply holds no JSON object or array")
    last_error = "no JSON value"
    for start in starts[:64]:
        try:
            value, _ = decoder.raw_decode(stripped, start)
            return value
        except json.JSONDecodeError as exc:
            last_error = str(exc)
    raise ValueError(f"reply is not valid JSON: {last_error}")


def repair_turns(bad_reply: str, error: str) -> list[dict[str, str]]:
    """The two turns appended to the original messages to re-ask after an unusable JSON reply."""
    return [
        {"role": "assistant", "content": bad_reply},
        {
            "role": "user",
            "content": (
                f"Your reply could not be used: {error}. Reply again with only the corrected JSON object, "
                "in the format asked for above, and no other text."
            ),
        },
    ]


class _ResponseCache:
    """SQLite (WAL) response cache; each put commits at once so a kill loses no paid call."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, body TEXT, created REAL)"
        )

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                (key, model, json.dumps(body, ensure_ascii=False), time.time()),
            )

    def keys(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT key FROM responses")}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def request_key(model: str, messages: ChatMessages, params: Mapping[str, Any]) -> str:
    """The cache key of a request: sha256 of (model, messages, params) as canonical JSON."""
    blob = json.dumps(
        {"model": model, "messages": [dict(m) for m in messages], "params": dict(params)},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class _Backoff:
    """Exponential backoff with jitter: ``base * 2**retry`` capped at ``cap``, times 0.5-1."""

    base_s: float
    cap_s: float
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self, retry: int) -> float:
        delay = min(self.cap_s, self.base_s * 2 ** min(retry, 64))
        return delay * (0.5 + self._rng.random() / 2)


class _AsyncOpenAI(openai.AsyncOpenAI):
    """``AsyncOpenAI`` whose backoff is ``backoff`` when the server sends no ``Retry-After``."""

    backoff: _Backoff | None = None

    def _calculate_retry_timeout(
        self, remaining_retries: int, options: Any, response_headers: httpx2.Headers | None = None
    ) -> float:
        # The SDK has no public backoff setting; its Retry-After handling is kept as it is.
        delay = super()._calculate_retry_timeout(remaining_retries, options, response_headers)
        if self.backoff is None or delay == self._parse_retry_after_header(response_headers):
            return delay
        return self.backoff(options.get_max_retries(self.max_retries) - remaining_retries)

    def copy(self, **kwargs: Any) -> _AsyncOpenAI:
        """The SDK's ``copy``/``with_options``, keeping ``backoff``."""
        new = super().copy(**kwargs)
        new.backoff = self.backoff
        return new

    with_options = copy


async def _count_attempt(request: httpx2.Request) -> None:
    """httpx event hook: one more HTTP attempt for the logical call running in this task."""
    box = _ATTEMPTS.get()
    if box is not None:
        box[0] += 1


class _UnusableBody(ValueError):
    """An HTTP 200 whose body holds no usable completion (asked again within the retry budget)."""


def _transient(status: int) -> bool:
    """Statuses the SDK retries (so an error with one means its retries ran out)."""
    return status in (408, 409, 429) or status >= 500


@dataclass
class LLMClient:
    """Async OpenAI-compatible chat client: SDK calls plus concurrency bound, cache and accounting."""

    config: LLMConfig
    transport: httpx2.AsyncBaseTransport | None = None  # for tests; normally None
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        self._sdk: _AsyncOpenAI | None = None
        self._slots: asyncio.Semaphore | None = None
        self._cache = _ResponseCache(self.config.cache_path) if self.config.cache_path else None
        self._inflight: dict[str, asyncio.Future[ChatResult]] = {}
        self._backoff = _Backoff(self.config.backoff_base_s, self.config.backoff_max_s, self.config.seed)
        key = os.environ.get(self.config.api_key_env)
        self._api_key = key or _NO_KEY
        self._headers: dict[str, Any] = {} if key else {"Authorization": openai.Omit()}

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool and the cache."""
        if self._sdk is not None:
            await self._sdk.close()
        self._sdk = None
        self._slots = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def _start(self) -> tuple[_AsyncOpenAI, asyncio.Semaphore]:
        if self._sdk is None or self._slots is None:
            # aiohttp as the SDK's HTTP transport (its documented option for concurrency): about 35% less
            # CPU per request than httpx2's own pool (bench_translate.py). A test's transport uses httpx2's.
            n = self.config.max_concurrency
            client = httpx2.AsyncClient if self.transport is not None else openai.DefaultAioHttpClient
            # credentials in the URL become the client's basic auth, as httpx2 does (aiohttp refuses both)
            url = httpx2.URL(self.config.base_url)
            auth = httpx2.BasicAuth(url.username, url.password) if url.username or url.password else None
            http = client(
                limits=httpx2.Limits(max_connections=n, max_keepalive_connections=n),
                timeout=self.config.timeout_s,
                follow_redirects=True,
                transport=self.transport,
                event_hooks={"request": [_count_attempt]},
                **({"auth": auth} if auth else {}),
            )
            self._sdk = _AsyncOpenAI(
                base_url=str(url.copy_with(username=None, password=None)) if auth else self.config.base_url,
                api_key=self._api_key,
                max_retries=self.config.max_retries,
                timeout=self.config.timeout_s,
                http_client=http,
            )
            self._sdk.backoff = self._backoff
            self._slots = asyncio.Semaphore(n)
        return self._sdk, self._slots

    async def chat(
        self,
        messages: ChatMessages,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        use_cache: bool = True,
        **params: Any,
    ) -> ChatResult:
        """One chat completion (cached). ``params`` go to the endpoint as-is (e.g. ``top_p``, ``seed``)."""
        if not messages:
            raise LLMError("chat() needs at least one message")
        body_params: dict[str, Any] = {"temperature": temperature, **params}
        if max_tokens is not None:
            body_params["max_tokens"] = max_tokens
        key = request_key(self.config.model, messages, body_params)
        if use_cache and self._cache is not None:
            hit = self._cache.get(key)
            if hit is not None:
                self.usage.cache_hits += 1
                return ChatResult(**hit, cached=True, model=self.config.model)
        if key in self._inflight:
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future[ChatResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._post(messages, body_params)
            if use_cache and self._cache is not None:
                self._cache.put(key, self.config.model, _cacheable(result))
            future.set_result(result)
            return result
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it
            raise
        finally:
            del self._inflight[key]

    async def chat_json(
        self,
        messages: ChatMessages,
        *,
        validate: Callable[[Any], None] | None = None,
        attempts: int = 3,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        **params: Any,
    ) -> JSONReply:
        """Chat expecting JSON; a malformed or invalid reply (``validate`` raising ``ValueError``) is
        re-asked with a repair turn naming the error, up to ``attempts`` asks, then recorded as failed."""
        base = [dict(m) for m in messages]
        ask, raw, error = base, "", ""
        for attempt in range(attempts):
            reply = await self.chat(ask, temperature=temperature, max_tokens=max_tokens, **params)
            raw = reply.text
            try:
                value = parse_json_reply(raw)
                if validate is not None:
                    validate(value)
                return JSONReply(ok=True, value=value, raw=raw, attempts=attempt + 1)
            except ValueError as exc:
                error = str(exc)
            ask = base + repair_turns(raw, error)
        self.usage.json_failures += 1
        return JSONReply(ok=False, value=None, raw=raw, attempts=attempts, error=error)

    async def _post(self, messages: ChatMessages, params: Mapping[str, Any]) -> ChatResult:
        """One logical call: the SDK's attempts, plus a re-ask on an unusable 200 body, in one budget."""
        sdk, slots = self._start()
        attempts = [0]
        token = _ATTEMPTS.set(attempts)
        try:
            async with slots:
                while True:
                    left = self.config.max_retries - attempts[0]
                    client = sdk if attempts[0] == 0 else sdk.with_options(max_retries=left)
                    try:
                        return self._parse(await self._create(client, messages, params))
                    except _UnusableBody as exc:
                        last = f"unusable response body: {exc}"
                    if left <= 0:
                        break
                    await asyncio.sleep(self._backoff(attempts[0] - 1))
        except openai.APIError as exc:
            last = self._describe(exc)
        finally:
            _ATTEMPTS.reset(token)
            self.usage.retries += max(attempts[0] - 1, 0)
        self.usage.errors += 1
        raise LLMError(f"{self.config.base_url} failed after {attempts[0]} attempts (last: {last})")

    async def _create(self, sdk: openai.AsyncOpenAI, messages: ChatMessages, params: Mapping[str, Any]) -> Any:
        """One SDK call (with its own retries); returns the decoded JSON body (``_UnusableBody`` if none).

        The SDK's low-level ``post`` with the body already encoded: ``chat.completions.create``
        first walks every message through its typed-dict transform, which cost about a third of
        the client's CPU per request (bench_translate.py); retries, timeouts and errors are the same,
        and the body is encoded as the SDK encodes it.
        """
        body = {"model": self.config.model, "messages": [dict(m) for m in messages], **params}
        response = await sdk.post(
            "/chat/completions",
            cast_to=httpx2.Response,
            content=json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"),
            options={"headers": self._headers},
        )
        try:
            return response.json()
        except json.JSONDecodeError as exc:
            raise _UnusableBody(f"{type(exc).__name__}: {exc}") from exc

    def _describe(self, exc: openai.APIError) -> str:
        """What went wrong, for the ``LLMError`` message; raises at once for a non-transient status."""
        if isinstance(exc, openai.APITimeoutError):
            return f"timed out after {self.config.timeout_s:g} s"
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if _transient(status):
                return f"HTTP {status}"
            self.usage.errors += 1
            hint = f" (is ${self.config.api_key_env} set?)" if status in (401, 403) else ""
            raise LLMError(f"{self.config.base_url} answered HTTP {status}{hint}: {exc.response.text[:200]}") from None
        cause = exc.__cause__
        return f"transport error: {type(cause or exc).__name__}"

    def _parse(self, data: Any) -> ChatResult:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise _UnusableBody(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str):
            raise _UnusableBody("message.content is not a string")
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        self.usage.calls += 1
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.usage.cost_usd += (
            prompt_tokens * self.config.prompt_price_per_mtok
            + completion_tokens * self.config.completion_price_per_mtok
        ) / 1e6
        return ChatResult(
            text=text,
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached=False,
            model=str(data.get("model") or self.config.model),
        )


def _cacheable(result: ChatResult) -> dict[str, Any]:
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }

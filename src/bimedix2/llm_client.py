"""OpenAI-compatible chat-completions client (OpenAI, vLLM's server, any compatible endpoint).

Used by data generation (rewriting), translation and LLM judges. Public API:

- ``LLMConfig``: frozen settings (``base_url``, ``model``, ``api_key_env``, ``max_concurrency``,
  ``timeout_s``, ``max_retries``, backoff, ``cache_path``, prices per million tokens).
  ``LLMConfig.from_mapping(dict)`` validates a YAML/dict config and names any bad key.
- ``LLMClient(config)``: an async context manager.
    * ``await client.chat(messages, temperature=0.0, max_tokens=None, **params) -> ChatResult``
      bounded concurrency (asyncio semaphore), per-request timeout, retries with exponential
      backoff + jitter on 408/429/5xx, timeouts, transport errors and unparsable bodies
      (``Retry-After`` honoured), then ``LLMError``. Other 4xx fail at once with ``LLMError``.
    * ``await client.chat_json(messages, validate=None, attempts=3, ...) -> JSONReply``
      parses the reply as JSON (code fences and prose around the object tolerated); a
      malformed reply, or one ``validate`` rejects (raise ``ValueError``), is asked again
      (each attempt is its own cache entry, so a resumed job replays it for free); after
      ``attempts`` it returns ``JSONReply(ok=False, error=...)`` - a recorded failure, not an
      exception. Transport failures after all retries still raise ``LLMError``.
    * ``client.usage``: ``Usage`` counters (calls paid, cache hits, retries, tokens, cost,
      JSON failures).
- ``parse_json_reply(text)``: the tolerant JSON extraction used by ``chat_json``.

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

import httpx

from .errors import ConfigError, LLMError

log = logging.getLogger(__name__)

ChatMessages = Sequence[Mapping[str, str]]
POOL_SIZE = 4  # connections per httpx pool (see LLMClient._start)
RETRY_STATUS = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))


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
class LLMClient:
    """Async OpenAI-compatible chat client with concurrency bound, retries, cache and accounting."""

    config: LLMConfig
    transport: httpx.AsyncBaseTransport | None = None  # for tests; normally None
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        self._pools: list[httpx.AsyncClient] = []
        self._slots: asyncio.Queue[int] | None = None  # one token per allowed in-flight request
        self._cache = _ResponseCache(self.config.cache_path) if self.config.cache_path else None
        self._inflight: dict[str, asyncio.Future[ChatResult]] = {}
        self._rng = random.Random(self.config.seed)

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool and the cache."""
        for pool in self._pools:
            await pool.aclose()
        self._pools = []
        self._slots = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def _start(self) -> asyncio.Queue[int]:
        if self._slots is None:
            headers = {"Content-Type": "application/json"}
            key = os.environ.get(self.config.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
            # httpcore's pool scans all its connections on every request (quadratic at 32 in
            # flight), so requests are spread over small pools of POOL_SIZE connections each.
            n = self.config.max_concurrency
            limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
            tls = httpx.create_ssl_context()  # one context for all pools (each costs ~50 ms to build)
            self._pools = [
                httpx.AsyncClient(
                    base_url=self.config.base_url.rstrip("/"),
                    headers=headers,
                    timeout=httpx.Timeout(self.config.timeout_s),
                    limits=limits,
                    verify=tls,
                    transport=self.transport,
                )
                for _ in range((n + POOL_SIZE - 1) // POOL_SIZE)
            ]
            self._slots = asyncio.Queue()
            for i in range(n):
                self._slots.put_nowait(i // POOL_SIZE)
        return self._slots

    async def chat(
        self,
        messages: ChatMessages,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        use_cache: bool = True,
        cache_salt: str = "",
        **params: Any,
    ) -> ChatResult:
        """One chat completion (cached). ``params`` go to the endpoint as-is (e.g. ``top_p``, ``seed``).

        ``cache_salt`` changes the cache key without changing the request (distinct attempts).
        """
        if not messages:
            raise LLMError("chat() needs at least one message")
        body_params: dict[str, Any] = {"temperature": temperature, **params}
        if max_tokens is not None:
            body_params["max_tokens"] = max_tokens
        key_params = dict(body_params, _salt=cache_salt) if cache_salt else body_params
        key = request_key(self.config.model, messages, key_params)
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
        """Chat expecting JSON; malformed or invalid replies are asked again, then recorded as failed."""
        raw, error = "", ""
        for attempt in range(attempts):
            reply = await self.chat(
                messages,
                temperature=temperature,
                max_tokens=max_tokens,
                cache_salt=f"json-attempt-{attempt}" if attempt else "",
                **params,
            )
            raw = reply.text
            try:
                value = parse_json_reply(raw)
                if validate is not None:
                    validate(value)
                return JSONReply(ok=True, value=value, raw=raw, attempts=attempt + 1)
            except ValueError as exc:
                error = str(exc)
        self.usage.json_failures += 1
        return JSONReply(ok=False, value=None, raw=raw, attempts=attempts, error=error)

    async def _post(self, messages: ChatMessages, params: Mapping[str, Any]) -> ChatResult:
        slots = self._start()
        payload = {"model": self.config.model, "messages": [dict(m) for m in messages], **params}
        last = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self.usage.retries += 1
            retry_after: float | None = None
            pool = await slots.get()
            try:
                try:
                    response = await self._pools[pool].post("/chat/completions", json=payload)
                except httpx.TimeoutException:
                    last = f"timed out after {self.config.timeout_s:g} s"
                    response = None
                except httpx.TransportError as exc:
                    last = f"transport error: {type(exc).__name__}"
                    response = None
                if response is not None:
                    if response.status_code == 200:
                        try:
                            return self._parse(response)
                        except ValueError as exc:
                            last = f"unusable response body: {exc}"
                    elif response.status_code in RETRY_STATUS:
                        last = f"HTTP {response.status_code}"
                        retry_after = _retry_after(response)
                    else:
                        self.usage.errors += 1
                        hint = f" (is ${self.config.api_key_env} set?)" if response.status_code in (401, 403) else ""
                        raise LLMError(
                            f"{self.config.base_url} answered HTTP {response.status_code}{hint}: {response.text[:200]}"
                        )
            finally:
                slots.put_nowait(pool)
            if attempt < self.config.max_retries:
                await asyncio.sleep(self._backoff(attempt, retry_after))
        self.usage.errors += 1
        raise LLMError(f"{self.config.base_url} failed after {self.config.max_retries + 1} attempts (last: {last})")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max_s)
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return delay * (0.5 + self._rng.random() / 2)

    def _parse(self, response: httpx.Response) -> ChatResult:
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str):
            raise ValueError("message.content is not a string")
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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None

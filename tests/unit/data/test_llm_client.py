"""LLMClient against the real-HTTP fake server: retries, timeouts, cache, JSON parsing, accounting."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from pathlib import Path

import pytest
from tests.fakes.openai_server import FakeOpenAIServer

from bimedix2.errors import ConfigError, LLMError
from bimedix2.llm_client import LLMClient, LLMConfig, parse_json_reply

MSG = [{"role": "user", "content": "What is anaemia?"}]


def cfg(server: FakeOpenAIServer, **kw) -> LLMConfig:
    base = dict(base_url=server.base_url, model="fake", backoff_base_s=0.001, backoff_max_s=0.01, timeout_s=5.0)
    base.update(kw)
    return LLMConfig(**base)


def run(coro):
    return asyncio.run(coro)


def test_chat_returns_reply_and_accounts_tokens_and_cost(fake_server: FakeOpenAIServer) -> None:
    async def go():
        async with LLMClient(cfg(fake_server, prompt_price_per_mtok=1e6, completion_price_per_mtok=2e6)) as llm:
            reply = await llm.chat(MSG)
            return reply, llm.usage

    reply, usage = run(go())
    assert reply.text == "echo: What is anaemia?"
    assert (reply.prompt_tokens, reply.completion_tokens, reply.cached) == (3, 4, False)
    assert usage.calls == 1 and usage.prompt_tokens == 3 and usage.completion_tokens == 4
    assert usage.cost_usd == pytest.approx(3 * 1 + 4 * 2)
    assert fake_server.requests[0].body["model"] == "fake"
    assert fake_server.requests[0].body["temperature"] == 0.0


def test_arabic_reply_round_trips_byte_for_byte(fake_server: FakeOpenAIServer) -> None:
    arabic = "الجرعة ٥٠٠ ملغ من الباراسيتامول، مرتين يومياً. إِنَّ"
    fake_server.script(arabic)

    async def go():
        async with LLMClient(cfg(fake_server)) as llm:
            return await llm.chat([{"role": "user", "content": arabic}])

    reply = run(go())
    assert reply.text.encode("utf-8") == arabic.encode("utf-8")
    assert fake_server.requests[0].messages[0]["content"] == arabic


def test_retries_429_500_bad_body_and_drop_then_succeeds(fake_server: FakeOpenAIServer) -> None:
    fake_server.inject("429", "500", "bad_body", "drop")

    async def go():
        async with LLMClient(cfg(fake_server)) as llm:
            return await llm.chat(MSG), llm.usage

    reply, usage = run(go())
    assert reply.text.startswith("echo:")
    assert [r.outcome for r in fake_server.requests] == ["429", "500", "bad_body", "drop", "ok"]
    assert usage.retries == 4 and usage.calls == 1


def test_timeout_is_retried(fake_server: FakeOpenAIServer) -> None:
    fake_server.inject("timeout")

    async def go():
        async with LLMClient(cfg(fake_server, timeout_s=0.3)) as llm:
            return await llm.chat(MSG)

    assert run(go()).text.startswith("echo:")
    assert [r.outcome for r in fake_server.requests] == ["timeout", "ok"]


def test_gives_up_after_max_retries_with_clear_error(fake_server: FakeOpenAIServer) -> None:
    fake_server.inject("500", "500", "500")

    async def go():
        async with LLMClient(cfg(fake_server, max_retries=2)) as llm:
            await llm.chat(MSG)

    with pytest.raises(LLMError, match=r"failed after 3 attempts \(last: HTTP 500\)"):
        run(go())


def test_client_errors_fail_at_once_and_401_names_the_key_variable(fake_server: FakeOpenAIServer) -> None:
    fake_server.inject("401")

    async def go():
        async with LLMClient(cfg(fake_server, api_key_env="MY_TEST_KEY")) as llm:
            await llm.chat(MSG)

    with pytest.raises(LLMError, match=r"HTTP 401 \(is \$MY_TEST_KEY set\?\)"):
        run(go())
    assert len(fake_server.requests) == 1


def test_api_key_comes_from_the_environment(fake_server: FakeOpenAIServer, monkeypatch) -> None:
    monkeypatch.setenv("MY_TEST_KEY", "sk-test-123")

    async def go():
        async with LLMClient(cfg(fake_server, api_key_env="MY_TEST_KEY")) as llm:
            await llm.chat(MSG)
        monkeypatch.delenv("MY_TEST_KEY")
        async with LLMClient(cfg(fake_server, api_key_env="MY_TEST_KEY")) as llm:
            await llm.chat(MSG, temperature=0.5)

    run(go())
    assert [r.authorization for r in fake_server.requests] == ["Bearer sk-test-123", None]


def test_persistent_cache_never_pays_twice(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    config = cfg(fake_server, cache_path=tmp_path / "cache.sqlite")

    async def go():
        async with LLMClient(config) as llm:
            first = await llm.chat(MSG)
            again = await llm.chat(MSG)
            other = await llm.chat(MSG, temperature=0.7)  # different params: different key
        async with LLMClient(config) as llm2:  # a new process would see the same file
            later = await llm2.chat(MSG)
            return first, again, other, later, llm2.usage

    first, again, other, later, usage2 = run(go())
    assert not first.cached and again.cached and not other.cached and later.cached
    assert later.text == first.text
    assert len(fake_server.requests) == 2
    assert usage2.calls == 0 and usage2.cache_hits == 1


def test_identical_concurrent_requests_share_one_call(tmp_path: Path) -> None:
    with FakeOpenAIServer(latency_s=0.2) as server:

        async def go():
            async with LLMClient(cfg(server)) as llm:
                return await asyncio.gather(*(llm.chat(MSG) for _ in range(5)))

        replies = run(go())
        assert len({r.text for r in replies}) == 1
        assert len(server.requests) == 1


def test_concurrency_is_bounded() -> None:
    with FakeOpenAIServer(latency_s=0.15) as server:

        async def go():
            async with LLMClient(cfg(server, max_concurrency=3)) as llm:
                msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(10)]
                return await asyncio.gather(*(llm.chat(m) for m in msgs))

        replies = run(go())
        assert [r.text for r in replies] == [f"echo: q{i}" for i in range(10)]
        assert server.peak_inflight <= 3
        assert server.peak_inflight >= 2  # it does run requests side by side


def test_retry_after_on_429_is_honoured_by_the_sdk() -> None:
    with FakeOpenAIServer(retry_after="0.6") as server:
        server.inject("429")

        async def go():
            async with LLMClient(cfg(server)) as llm:  # own backoff ~1 ms: the wait is the server's
                return await llm.chat(MSG), llm.usage

        reply, usage = run(go())
        first, second = server.requests
        assert reply.text.startswith("echo:") and usage.retries == 1
        assert second.at - first.at >= 0.55

        server.reset()
        server.retry_after = "0"  # no usable Retry-After: the configured backoff, not the SDK's 0.5 s
        server.inject("429")
        run(go())
        first, second = server.requests
        assert second.at - first.at < 0.3


PATIENT = "Patient Fatima Al-Zahra, MRN 99812, HIV positive"


def test_timeout_gives_llm_error_naming_the_endpoint_never_the_prompt(
    fake_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_server.inject("timeout", "timeout")

    async def go():
        async with LLMClient(cfg(fake_server, timeout_s=0.3, max_retries=1)) as llm:
            await llm.chat([{"role": "user", "content": PATIENT}])

    with pytest.raises(LLMError) as info:
        run(go())
    message = str(info.value)
    assert message.startswith(fake_server.base_url)
    assert "failed after 2 attempts (last: timed out after 0.3 s)" in message
    assert "99812" not in "".join(traceback.format_exception(info.value))
    assert "99812" not in caplog.text
    assert [r.outcome for r in fake_server.requests] == ["timeout", "timeout"]


def test_prompts_and_replies_are_never_logged(fake_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake_server.inject("500")

    async def go():
        async with LLMClient(cfg(fake_server)) as llm:
            return await llm.chat([{"role": "user", "content": PATIENT}])

    assert "99812" in run(go()).text  # echoed back
    logging.getLogger("openai._base_client").debug("Request options: %s", {"json_data": PATIENT})
    assert caplog.records  # the SDK and httpx2 did log (metadata)
    assert "99812" not in caplog.text


def test_cache_hit_sends_no_request(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    config = cfg(fake_server, cache_path=tmp_path / "cache.sqlite", max_retries=0)

    async def go():
        async with LLMClient(config) as llm:
            await llm.chat(MSG)
        fake_server.inject("500")  # would fail the call if a request were sent
        async with LLMClient(config) as llm:
            return await llm.chat(MSG), llm.usage

    reply, usage = run(go())
    assert reply.cached and reply.text == "echo: What is anaemia?"
    assert len(fake_server.requests) == 1
    assert (usage.calls, usage.cache_hits, usage.retries) == (0, 1, 0)


def test_identical_concurrent_requests_share_one_failure() -> None:
    with FakeOpenAIServer(latency_s=0.2) as server:
        server.inject("400")

        async def go():
            async with LLMClient(cfg(server)) as llm:
                return await asyncio.gather(*(llm.chat(MSG) for _ in range(5)), return_exceptions=True)

        errors = run(go())
        assert all(isinstance(e, LLMError) and "HTTP 400" in str(e) for e in errors)
        assert len(server.requests) == 1


def test_chat_json_repairs_fenced_reply_without_asking_again(fake_server: FakeOpenAIServer) -> None:
    fake_server.script('Here is the JSON you asked for:\n```json\n{"score": 95, "note": "جيد"}\n```\nDone.')

    async def go():
        async with LLMClient(cfg(fake_server)) as llm:
            return await llm.chat_json(MSG)

    reply = run(go())
    assert reply.ok and reply.attempts == 1 and reply.value == {"score": 95, "note": "جيد"}
    assert len(fake_server.requests) == 1


def test_chat_json_retries_malformed_then_succeeds(fake_server: FakeOpenAIServer) -> None:
    fake_server.script("malformed", '```json\n{"answer": "نعم", "score": 90}\n```')

    async def go():
        async with LLMClient(cfg(fake_server)) as llm:
            return await llm.chat_json(MSG), llm.usage

    reply, usage = run(go())
    assert reply.ok and reply.attempts == 2
    assert reply.value == {"answer": "نعم", "score": 90}
    assert usage.json_failures == 0
    first, second = fake_server.bodies()
    assert second != first  # a repair turn, not the same request again
    assert first["messages"] == MSG and second["messages"][:1] == MSG
    assert second["messages"][1] == {"role": "assistant", "content": '{"answer": "unterminated'}
    assert second["messages"][2]["role"] == "user" and "not valid JSON" in second["messages"][2]["content"]


def test_chat_json_repair_turn_gets_a_deterministic_endpoint_past_a_bad_reply(tmp_path: Path) -> None:
    """An endpoint that answers the same request the same way (temperature 0) fixes its reply once told what
    was wrong; each ask is its own cache entry, so a rerun replays both without a request."""

    def deterministic(body) -> str:
        last = body["messages"][-1]["content"]
        return '{"score": 90, "note": "جيد"}' if "could not be used" in last else '{"score": 90, "note": "جيد"'

    with FakeOpenAIServer(deterministic) as server:
        config = cfg(server, cache_path=tmp_path / "c.sqlite")

        async def go():
            async with LLMClient(config) as llm:
                first = await llm.chat_json(MSG, attempts=3)
            async with LLMClient(config) as llm:
                return first, await llm.chat_json(MSG, attempts=3), llm.usage

        first, again, usage = run(go())
        bodies = server.bodies()
    assert first.ok and first.attempts == 2 and first.value == {"score": 90, "note": "جيد"}
    assert len(bodies) == 2 and bodies[0] != bodies[1]
    assert again == first and (usage.calls, usage.cache_hits) == (0, 2)


def test_chat_json_records_failure_after_attempts_and_replays_it_from_cache(
    fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    fake_server.script("malformed", "no json here", '{"score": "high"}')
    config = cfg(fake_server, cache_path=tmp_path / "c.sqlite")

    def validate(value) -> None:
        if not isinstance(value.get("score"), int):
            raise ValueError("score must be an integer")

    async def go():
        async with LLMClient(config) as llm:
            first = await llm.chat_json(MSG, validate=validate, attempts=3)
            failures = llm.usage.json_failures
        async with LLMClient(config) as llm:
            second = await llm.chat_json(MSG, validate=validate, attempts=3)
        return first, failures, second

    first, failures, second = run(go())
    assert not first.ok and first.attempts == 3 and first.error == "score must be an integer"
    assert failures == 1
    assert second == first  # replayed from the cache
    assert len(fake_server.requests) == 3
    asks = [b["messages"] for b in fake_server.bodies()]
    assert asks[0] == MSG and asks[1][1]["content"] == '{"answer": "unterminated'
    assert "reply holds no JSON" in asks[2][2]["content"] and asks[2][1]["content"] == "no json here"


def test_parse_json_reply_tolerates_fences_and_prose() -> None:
    assert parse_json_reply('Sure! Here it is:\n```json\n{"a": [1, 2]}\n```\nThanks') == {"a": [1, 2]}
    assert parse_json_reply('{"turns": ["مرحبا <image>"]}') == {"turns": ["مرحبا <image>"]}
    assert parse_json_reply("[1, 2] trailing") == [1, 2]
    with pytest.raises(ValueError, match="no JSON"):
        parse_json_reply("plain words")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json_reply('{"a": ')


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown llm config key"):
        LLMConfig.from_mapping({"base_url": "http://x/v1", "model": "m", "modle": "typo"})
    with pytest.raises(ConfigError, match="missing 'model'"):
        LLMConfig.from_mapping({"base_url": "http://x/v1"})
    with pytest.raises(ConfigError, match="base_url"):
        LLMConfig(base_url="localhost:8000", model="m")
    c = LLMConfig.from_mapping({"base_url": "http://x/v1", "model": "m", "cache_path": "a/b.sqlite"})
    assert isinstance(c.cache_path, Path)
    assert json.dumps(c.to_dict())

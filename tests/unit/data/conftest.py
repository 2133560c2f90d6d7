"""Fixtures for the data pipeline tests: the fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `tests.fakes` importable however pytest is started
    sys.path.insert(0, str(ROOT))

from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402


@pytest.fixture()
def fake_server() -> Iterator[FakeOpenAIServer]:
    """A fresh echoing fake server per test; stopped when the test ends."""
    with FakeOpenAIServer() as server:
        yield server


def strip_repair_turns(responder: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    """``responder`` answering a JSON repair re-ask (bad reply + "fix it" turn appended) as the original ask.

    The scripted fakes read the task from the last user message; a repair re-ask appends an
    assistant and a user turn, so they are dropped before the fake sees the request.
    """

    def respond(body: dict[str, Any]) -> str:
        messages = list(body.get("messages", []))
        while len(messages) > 2 and messages[-2].get("role") == "assistant" and messages[-1].get("role") == "user":
            messages = messages[:-2]
        return responder({**body, "messages": messages})

    return respond


@pytest.fixture()
def repair_aware() -> Callable[[Callable[[dict[str, Any]], str]], Callable[[dict[str, Any]], str]]:
    """`strip_repair_turns`, for tests that build their own fake server."""
    return strip_repair_turns

"""Fixtures for the data pipeline tests: the fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

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

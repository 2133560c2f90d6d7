"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

It is a real HTTP server (stdlib ``ThreadingHTTPServer`` in a daemon thread, port chosen by
binding 0), so clients are exercised end to end: connection pool, timeouts, retries.

API::

    from tests.fakes.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(responder=lambda body: "hello", latency_s=0.1) as server:
        server.base_url            # "http://127.0.0.1:PORT/v1"  (give it to LLMConfig)
        server.script("first reply", "429", "second reply")   # next requests, in order
        server.inject("500", "timeout", "malformed")          # same queue, faults only
        server.fault_when(lambda body: "kidney" in str(body), "429", times=2)
        ...
        server.requests            # list[FakeRequest]: every request seen, with its outcome
        server.completed           # number of successful (200) completions served
        server.peak_inflight       # most requests handled at the same time
        server.bodies(outcome="ok")  # request bodies that were answered

Replies, in order of precedence for each request: a matching ``fault_when`` rule, the next
scripted item, else ``responder(body) -> str`` (the assistant message content; default: echo
of the last user message). Faults (``FAULTS``):

- ``"429"`` (with ``Retry-After:`` the ``retry_after`` argument, default ``"0"``), ``"500"``,
  ``"503"``, ``"400"``, ``"401"``: that HTTP status;
- ``"timeout"``: the reply is held ``timeout_hold_s`` (default 30 s, cut short on stop), so the
  client's own timeout fires;
- ``"malformed"``: HTTP 200 whose message content is broken JSON (tests JSON-reply parsing);
- ``"bad_body"``: HTTP 200 whose body is not JSON at all;
- ``"drop"``: the connection is closed without a reply.

``latency_s`` delays every reply (benchmarks use 0.1 s). Usage tokens are whitespace word
counts. The server stops when the ``with`` block ends (or ``stop()``); its threads are
daemons, so it never outlives the test process.

Run standalone for manual tries: ``python -m tests.fakes.openai_server --latency 0.1``.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]
FAULTS = ("400", "401", "429", "500", "503", "timeout", "malformed", "bad_body", "drop")


@dataclass(frozen=True)
class FakeRequest:
    """One request the server received and what it did with it (``outcome``: "ok" or a fault)."""

    body: dict[str, Any]
    outcome: str
    at: float
    authorization: str | None = None

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body.get("messages", []))


def echo_responder(body: dict[str, Any]) -> str:
    """Default responder: echoes the last user message."""
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return f"echo: {users[-1] if users else ''}"


def completion_reply(body: dict[str, Any], content: str, number: int, model: str = "fake-model") -> dict[str, Any]:
    """The chat.completion object answering ``body`` with ``content`` (usage tokens: whitespace words)."""
    prompt_words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", model),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": len(content.split()),
            "total_tokens": prompt_words + len(content.split()),
        },
    }


class FakeOpenAIServer:
    """A scripted OpenAI-compatible ``POST /v1/chat/completions`` endpoint (see module docstring)."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        timeout_hold_s: float = 30.0,
        model: str = "fake-model",
        retry_after: str = "0",
    ) -> None:
        self.responder = responder or echo_responder
        self.latency_s = latency_s
        self.timeout_hold_s = timeout_hold_s
        self.model = model
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._queue: collections.deque[str] = collections.deque()
        self._rules: list[list[Any]] = []  # [predicate, fault, remaining]
        self._requests: list[FakeRequest] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._inflight = 0
        self.peak_inflight = 0

    # ---- scripting ----------------------------------------------------------------------------
    def script(self, *items: str) -> None:
        """Queue replies for the next requests: message contents, or fault names from ``FAULTS``."""
        with self._lock:
            self._queue.extend(items)

    def inject(self, *faults: str) -> None:
        """Queue faults for the next requests (same queue as ``script``)."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        self.script(*faults)

    def fault_when(self, predicate: Callable[[dict[str, Any]], bool], fault: str, times: int = 1) -> None:
        """Answer the next ``times`` requests whose body matches ``predicate`` with ``fault``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {FAULTS}")
        with self._lock:
            self._rules.append([predicate, fault, times])

    # ---- inspection ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def completed(self) -> int:
        return sum(1 for r in self.requests if r.outcome == "ok")

    def bodies(self, outcome: str | None = None) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if outcome is None or r.outcome == outcome]

    def reset(self) -> None:
        """Forget recorded requests, queued items and rules."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._rules.clear()
            self.peak_inflight = 0

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 256
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- request handling (called from handler threads) --------------------------------------
    def _decide(self, body: dict[str, Any]) -> str | None:
        """A fault name, a scripted content prefixed with '=', or None for the responder."""
        with self._lock:
            for rule in self._rules:
                if rule[2] > 0 and rule[0](body):
                    rule[2] -= 1
                    return str(rule[1])
            if self._queue:
                item = self._queue.popleft()
                return item if item in FAULTS else "=" + item
        return None

    def _record(self, body: dict[str, Any], outcome: str, authorization: str | None) -> None:
        with self._lock:
            self._requests.append(FakeRequest(body, outcome, time.monotonic(), authorization))

    def _enter(self, delta: int) -> None:
        with self._lock:
            self._inflight += delta
            self.peak_inflight = max(self.peak_inflight, self._inflight)


def _make_handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: avoid the 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
            return

        def handle(self) -> None:
            try:
                super().handle()
            except ConnectionError:  # the client went away (a job that stopped with requests in flight)
                pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, b'{"error": {"message": "not found"}}')
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._send(400, b'{"error": {"message": "request body is not JSON"}}')
                return
            server._enter(+1)
            try:
                self._answer(body)
            finally:
                server._enter(-1)

        def _answer(self, body: dict[str, Any]) -> None:
            decision = server._decide(body)
            if server.latency_s:
                time.sleep(server.latency_s)
            outcome = "ok" if decision is None or decision.startswith("=") else decision
            server._record(body, outcome, self.headers.get("Authorization"))
            if decision in ("400", "401", "429", "500", "503"):
                extra = {"Retry-After": server.retry_after} if decision == "429" else None
                self._send(int(decision), b'{"error": {"message": "injected fault"}}', extra)
                return
            if decision == "timeout":
                server._stopping.wait(server.timeout_hold_s)
                self._send(504, b'{"error": {"message": "held past the client timeout"}}')
                return
            if decision == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if decision == "bad_body":
                self._send(200, b"<html>not json</html>")
                return
            if decision == "malformed":
                content = '{"answer": "unterminated'
            elif decision is not None:
                content = decision[1:]
            else:
                try:
                    content = server.responder(body)
                except Exception as exc:  # a responder bug must surface as a 500, not a hung test
                    self._send(500, json.dumps({"error": {"message": f"responder failed: {exc}"}}).encode())
                    return
            reply = completion_reply(body, content, len(server.requests), server.model)
            self._send(200, json.dumps(reply, ensure_ascii=False).encode("utf-8"))

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="fake OpenAI-compatible server on 127.0.0.1 (tests only)")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--responder", default=None, help="module:function returning the reply content")
    args = parser.parse_args()
    responder = None
    if args.responder:
        import importlib

        module, _, name = args.responder.partition(":")
        responder = getattr(importlib.import_module(module), name)
    with FakeOpenAIServer(responder, latency_s=args.latency) as server:
        print(server.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

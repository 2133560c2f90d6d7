"""A fast fake OpenAI-compatible chat-completions server (asyncio, its own process), for benchmarks.

``FakeOpenAIServer`` (threads, scripted faults) is for tests; this one is for throughput: one
asyncio event loop, HTTP/1.1 keep-alive parsed with ``h11``, every reply delayed by exactly
``--latency`` seconds with ``asyncio.sleep`` (so hundreds of requests wait at once for the price of
timers, and the fake is never the bottleneck), content from ``--responder module:function`` (as
``FakeOpenAIServer``'s, default echo).

Besides ``POST /v1/chat/completions`` it answers ``GET /_log?since=N``: ``{"requests": count,
"peak_inflight": most at once, "entries": [[received_at, tag], ...]}`` for the requests from the
N-th on, where ``received_at`` is ``time.monotonic()`` (the same clock in every process on one
machine) and ``tag`` is the first group of ``--tag REGEX`` matched in the request's messages, or
null. Benchmarks use the tags to tell which records were asked after a restart.

    python -m tests.fakes.async_openai_server --latency 0.1 --responder M:F --tag 'Patient (\\d+):'
    # prints http://127.0.0.1:PORT/v1 on the first line, serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from tests.fakes.openai_server import Responder, completion_reply, echo_responder


class AsyncFakeServer:
    """The request log and the HTTP handling of the fake (see module docstring)."""

    def __init__(self, responder: Responder, latency_s: float, tag: re.Pattern[str] | None) -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.tag = tag
        self.entries: list[tuple[float, str | None]] = []
        self.inflight = 0
        self.peak_inflight = 0

    def _tag_of(self, body: dict[str, Any]) -> str | None:
        if self.tag is None:
            return None
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        found = self.tag.search(text)
        return found.group(1) if found else None

    async def complete(self, raw: bytes) -> tuple[int, bytes]:
        """Status and body for one chat-completions request."""
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return 400, b'{"error": {"message": "request body is not JSON"}}'
        self.entries.append((time.monotonic(), self._tag_of(body)))
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        try:
            await asyncio.sleep(self.latency_s)
            try:
                content = self.responder(body)
            except Exception as exc:  # a responder bug surfaces as a 500
                return 500, json.dumps({"error": {"message": f"responder failed: {exc}"}}).encode()
            return 200, json.dumps(completion_reply(body, content, len(self.entries)), ensure_ascii=False).encode()
        finally:
            self.inflight -= 1

    def log(self, target: str) -> bytes:
        since = int(parse_qs(urlsplit(target).query).get("since", ["0"])[0])
        return json.dumps(
            {"requests": len(self.entries), "peak_inflight": self.peak_inflight, "entries": self.entries[since:]}
        ).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests answered in turn until the client closes it."""
        conn = h11.Connection(h11.SERVER)
        try:
            while isinstance(event := await _next_event(conn, reader), h11.Request):
                target = event.target.decode()
                chunks = []
                while not isinstance(event := await _next_event(conn, reader), h11.EndOfMessage):
                    if isinstance(event, h11.Data):
                        chunks.append(event.data)
                path = urlsplit(target).path
                if path == "/_log":
                    status, payload = 200, self.log(target)
                elif path.rstrip("/").endswith("/chat/completions"):
                    status, payload = await self.complete(b"".join(chunks))
                else:
                    status, payload = 404, b'{"error": {"message": "not found"}}'
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                writer.write(conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            writer.close()


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    """The next h11 event, reading from the socket as needed (b"" at EOF tells h11 the peer closed)."""
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await reader.read(65536))
    return event


def load_responder(spec: str | None) -> Callable[[dict[str, Any]], str]:
    """``module:function`` -> the function (None: echo)."""
    if not spec:
        return echo_responder
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def serve(server: AsyncFakeServer) -> None:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    async with listener:
        await listener.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="fast asyncio fake OpenAI-compatible server (benchmarks only)")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--responder", default=None, help="module:function returning the reply content")
    parser.add_argument("--tag", default=None, help="regex whose first group tags each request in /_log")
    args = parser.parse_args()
    tag = re.compile(args.tag) if args.tag else None
    try:
        asyncio.run(serve(AsyncFakeServer(load_responder(args.responder), args.latency, tag)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""A fake OpenAI-compatible *completions* server on 127.0.0.1 that scores prompts with a real causal LM.

``POST /v1/completions`` answers the way vLLM does for lm-evaluation-harness's ``local-completions``
backend: ``prompt`` may be a string, a list of strings, a token-id list or a list of token-id lists;
``max_tokens`` tokens are generated greedily; with ``echo`` the prompt tokens come back too, and with
``logprobs: k`` every returned token carries its log-probability under the model (``None`` for the
first prompt token, which has no context) and a dict of the top-k tokens plus the token itself.
The numbers are computed honestly: one forward pass of the model over the whole sequence, then
``log_softmax`` -- so a test comparing them with another scoring path can fail.

``GET /v1/models`` lists the one served model; a request naming another model gets a 404, like vLLM.
``with_logprobs=False`` makes it ignore ``logprobs`` (answers ``"logprobs": null``), like servers without them.
The server stops when the ``with`` block ends; its threads are daemons.

API::

    with FakeCompletionsServer(model_dir, model_name="tiny") as server:
        server.base_url          # "http://127.0.0.1:PORT/v1"
        server.bodies            # every completions request body received
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FakeCompletionsServer:
    """``/v1/completions`` with echoed prompt logprobs from a real causal LM (see module docstring)."""

    def __init__(self, model_dir: Path | str, *, model_name: str = "tiny", with_logprobs: bool = True) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model_name
        self.with_logprobs = with_logprobs  # False: ignore `logprobs`, like servers without prompt logprobs
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self._model_lock = threading.Lock()
        self._lock = threading.Lock()
        self._bodies: list[dict[str, Any]] = []
        self._httpd: ThreadingHTTPServer | None = None

    # ---- inspection ---------------------------------------------------------------------------
    @property
    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._bodies)

    # ---- lifecycle ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeCompletionsServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-completions", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeCompletionsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- scoring ------------------------------------------------------------------------------
    def _prompts(self, prompt: Any) -> list[list[int]]:
        """Token ids of each prompt; text prompts are tokenized with special tokens, as vLLM does."""
        if isinstance(prompt, str):
            prompt = [prompt]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompt = [prompt]
        if not isinstance(prompt, list) or not prompt:
            raise ValueError("prompt must be a string, a token list, or a non-empty list of either")
        out = []
        for p in prompt:
            if isinstance(p, str):
                out.append(self.tokenizer(p).input_ids)
            elif isinstance(p, list) and p and all(isinstance(t, int) for t in p):
                out.append(list(p))
            else:
                raise ValueError(f"unsupported prompt item {p!r}")
        return out

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The completions response for one request body (greedy decoding)."""
        import torch

        if float(body.get("temperature", 0) or 0) != 0:
            raise ValueError("this fake decodes greedily only: temperature must be 0")
        max_tokens = int(body.get("max_tokens", 16))
        echo = bool(body.get("echo", False))
        k = body.get("logprobs") if self.with_logprobs else None
        choices = []
        for index, ids in enumerate(self._prompts(body.get("prompt"))):
            full = list(ids)
            with self._model_lock, torch.no_grad():
                logits = self.model(torch.tensor([full])).logits[0]
                for step in range(max_tokens):
                    full.append(int(logits[-1].argmax()))
                    if step + 1 < max_tokens:
                        logits = self.model(torch.tensor([full])).logits[0]
                # row j holds log p(token j+1 | tokens 0..j), for every token after the first
                logp = torch.log_softmax(logits.float(), dim=-1)
            first = 0 if echo else len(ids)
            tokens = self.tokenizer.convert_ids_to_tokens(full)  # unique per id, unlike decoded text
            choice: dict[str, Any] = {
                "index": index,
                "text": self.tokenizer.decode(full[first:]),
                "finish_reason": "length",
                "logprobs": None,
            }
            if k is not None:
                token_logprobs: list[float | None] = []
                top_logprobs: list[dict[str, float] | None] = []
                for i in range(first, len(full)):
                    if i == 0:
                        token_logprobs.append(None)
                        top_logprobs.append(None)
                        continue
                    row = logp[i - 1]
                    top = torch.topk(row, max(int(k), 1))
                    entry = {
                        self.tokenizer.convert_ids_to_tokens(int(t)): float(v)
                        for v, t in zip(top.values, top.indices, strict=True)
                    }
                    entry[tokens[i]] = float(row[full[i]])
                    token_logprobs.append(float(row[full[i]]))
                    top_logprobs.append(entry)
                choice["logprobs"] = {
                    "tokens": tokens[first:],
                    "token_logprobs": token_logprobs,
                    "top_logprobs": top_logprobs,
                    "text_offset": [len(self.tokenizer.decode(full[first:i])) for i in range(first, len(full))],
                }
            choices.append(choice)
        prompt_tokens = sum(len(p) for p in self._prompts(body.get("prompt")))
        return {
            "id": f"cmpl-fake-{len(self.bodies)}",
            "object": "text_completion",
            "model": self.model_name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": max_tokens * len(choices),
                "total_tokens": prompt_tokens + max_tokens * len(choices),
            },
        }


def _make_handler(server: FakeCompletionsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
            return

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.rstrip("/") != "/v1/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "request body is not JSON"}})
                return
            with server._lock:
                server._bodies.append(body)
            if body.get("model") != server.model_name:
                self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
                return
            try:
                self._send(200, server.complete(body))
            except ValueError as exc:
                self._send(400, {"error": {"message": str(exc)}})

    return Handler

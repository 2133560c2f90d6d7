"""`bimedix2 serve --engine llama-cpp` vs llama-cpp-python's own server, 8 clients, in one run.

    .venv/bin/python benchmarks/bench_serve_llama_cpp.py [--model GGUF] [--tokens 64]

Why the toolkit serves llama.cpp in-process instead of handing it to a server: this measures both
on the same GGUF and the same 8 questions through the OpenAI API, one client sending them in
turn and 8 clients at once, each server in its own process, one after the other, and prints the
aggregate tokens/s and the ratios. llama-cpp-python's server (`python -m llama_cpp.server`) needs
`pip install sse-starlette starlette-context pydantic-settings`; llama.cpp's C++ `llama-server`
is not built by llama-cpp-python, so it is not measured here.

--model defaults to the 1b Q4_K_M GGUF `bench_llama_cpp.py` builds (run it first), else the
embedded SmolLM2 GGUF. Random weights answer noise: only the timings mean anything.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_llama_cpp import SERVE_QUESTIONS  # noqa: E402

BENCH_1B = Path.home() / ".cache/bimedix2/bench-llama-cpp/random-1b/Q4_K_M/bimedix2/random-1b-llava-GGUF"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}) before answering")
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"no answer from {base} within {seconds:.0f} s")


def measure(base: str, model: str, tokens: int) -> dict[str, float]:
    """One client sending the 8 questions in turn, then 8 clients at once: aggregate tok/s of each."""
    import openai

    client = openai.OpenAI(base_url=f"{base}/v1", api_key="bench", max_retries=0, timeout=3600)

    def ask(question: str) -> int:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=tokens
        )
        return reply.usage.completion_tokens

    ask("Hello")  # warm-up
    out = {}
    for name, concurrent in (("one_client", False), ("8_clients", True)):
        counts: list[int] = []
        start = time.perf_counter()
        if concurrent:
            threads = [threading.Thread(target=lambda q=q, got=counts: got.append(ask(q))) for q in SERVE_QUESTIONS]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            counts = [ask(q) for q in SERVE_QUESTIONS]
        out[name] = sum(counts) / (time.perf_counter() - start)
    return out


def run_server(command: list[str], base: str, model: str, tokens: int) -> dict[str, float]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: llama.cpp's load log would fill a pipe and block
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        try:
            wait_ready(base, proc)
        except RuntimeError:
            log.seek(0)
            print(log.read()[-3000:], file=sys.stderr)
            raise
        return measure(base, model, tokens)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF to serve (default: see above)")
    parser.add_argument("--tokens", type=int, default=64, help="max tokens per reply (default 64)")
    args = parser.parse_args()
    model = args.model
    if model is None:
        found = sorted(BENCH_1B.glob("*-Q4_K_M.gguf"))
        if found:
            model = found[0]
        else:
            from bimedix2.model.loader import embedded_default_gguf

            model = embedded_default_gguf()
    bin_dir = Path(sys.executable).parent
    results: dict[str, Any] = {}
    port = free_port()
    print(f"serving {model.name} ...", file=sys.stderr)
    results["bimedix2 serve (llama.cpp, 8 parallel sequences)"] = run_server(
        [str(bin_dir / "bimedix2"), "serve", "--model", str(model), "--engine", "llama-cpp", "--port", str(port),
         "--max-batch-size", "8", "--ctx-size", "1024", "--batch-window-s", "0.05", "--no-log-requests",
         "--served-model-name", "bimedix2"],
        f"http://127.0.0.1:{port}", "bimedix2", args.tokens,
    )  # fmt: skip
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        print(f"llama_cpp.server not measured: {exc} (pip install sse-starlette starlette-context pydantic-settings)")
    else:
        port = free_port()
        results["llama_cpp.server (llama-cpp-python's own)"] = run_server(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port),
             "--n_ctx", "4096", "--n_threads", str(os.cpu_count() or 1)],
            f"http://127.0.0.1:{port}", str(model), args.tokens,
        )  # fmt: skip
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {model.name}, {args.tokens} tokens per reply\n")
    print("| server | one client, 8 requests in turn (tok/s) | 8 clients at once (tok/s) | 8 clients / one |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['one_client']:.1f} | {r['8_clients']:.1f} | {r['8_clients'] / r['one_client']:.2f}x |")
    names = list(results)
    if len(names) == 2:
        ours, theirs = (results[n]["8_clients"] for n in names)
        print(f"\n8 clients, bimedix2 serve / llama_cpp.server: {ours / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

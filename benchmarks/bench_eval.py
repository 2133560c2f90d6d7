"""Evaluation through an endpoint: a 500-sample VQA run at concurrency 32 against an OpenAI-compatible fake
server with a fixed 100 ms latency per request, timed against the ideal (samples x latency / concurrency);
then a run SIGKILLed at about half way and rerun, counting at the server how many already-finished samples
were asked again.

    .venv/bin/python benchmarks/bench_eval.py
    .venv/bin/python benchmarks/bench_eval.py --samples 500 --latency 0.1 --concurrency 32

The fake is an asyncio aiohttp server in its own process (so the client's event loop and the
server's never share a CPU thread or the GIL); it sleeps `--latency` per chat request, answers "yes",
keeps per-question request counts and the peak number of requests in flight (GET /stats). The VQA set
is synthesized in VQA-RAD's release layout ("VQA_RAD Dataset Public.json" + "VQA_RAD Image Folder/")
in a temp dir, each question carrying its sample number so the server can count per sample.

Targets: wall time within 1.2x of the ideal; 0 finished samples re-asked after the kill. The timed
run is `runner.run_eval` in this process after a 16-sample warm-up run (so one-time imports stay off
the clock; reading, scoring and writing are included, bootstrap off); the server's first-arrival-to-
last-reply span is printed beside it, and so is a bare aiohttp client sending the same number of
requests at the same concurrency to the same server: what this machine allows at best (on a shared
CPU the server and the client compete for the same cores). Research use only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------- the fake server
def make_app(latency_s: float) -> Any:
    """The aiohttp app: POST /v1/chat/completions (sleeps, answers "yes"), GET /v1/models, GET /stats."""
    from aiohttp import web

    counts: dict[str, int] = {}
    state: dict[str, Any] = {"inflight": 0, "peak": 0, "first": None, "last": None, "requests": 0}

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        state["inflight"] += 1
        state["peak"] = max(state["peak"], state["inflight"])
        state["requests"] += 1
        state["first"] = state["first"] or time.monotonic()
        try:
            await asyncio.sleep(latency_s)
        finally:
            state["inflight"] -= 1
        content = body["messages"][-1]["content"]
        text = next(p["text"] for p in content if p.get("type") == "text") if isinstance(content, list) else content
        key = text.split(":")[0]  # "sample 00042: ..." -> "sample 00042"
        counts[key] = counts.get(key, 0) + 1
        state["last"] = time.monotonic()
        return web.json_response(
            {
                "id": "fake",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake-vqa"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "yes"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-vqa", "object": "model"}]})

    async def stats_route(request: web.Request) -> web.Response:
        response = web.json_response({"counts": counts, **state})
        if request.query.get("reset") == "1":  # a new timed phase starts: its span and peak only
            state.update(first=None, last=None, peak=0, requests=0)
        return response

    app = web.Application(client_max_size=64 * 2**20)
    app.add_routes(
        [web.post("/v1/chat/completions", chat), web.get("/v1/models", models), web.get("/stats", stats_route)]
    )
    return app


def serve_forever(port: int, latency_s: float) -> None:
    """Run the fake server (this is what the server process runs): aiohttp's C HTTP parser keeps its CPU
    per request small, as the shared machine runs client and server on the same two cores."""
    from aiohttp import web

    web.run_app(make_app(latency_s), host="127.0.0.1", port=port, backlog=1024, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(latency_s: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(port), "--latency", str(latency_s)]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/stats", timeout=1).status_code == 200:
                return proc, f"{base}/v1"
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the fake server did not start in 30 s")


def stats(base_url: str, reset: bool = False) -> dict[str, Any]:
    """The server's counters (`reset`: then start them over for the next phase)."""
    url = base_url.removesuffix("/v1") + "/stats" + ("?reset=1" if reset else "")
    return httpx.get(url, timeout=10).json()


# ---------------------------------------------------------------------------------------- the data set
def synth_vqa_rad(root: Path, n: int) -> Path:
    """n VQA-RAD-layout records over 8 small JPEGs; question i starts "sample {i:05d}:"."""
    from PIL import Image

    folder = root / "VQA_RAD Image Folder"
    folder.mkdir(parents=True)
    for k in range(8):
        Image.new("RGB", (64, 48), (30 * k, 100, 200 - 20 * k)).save(folder / f"synpic{k}.jpg", quality=90)
    records = [
        {
            "qid": i,
            "phrase_type": "test_freeform",
            "image_name": f"synpic{i % 8}.jpg",
            "image_organ": "CHEST",
            "question": f"sample {i:05d}: is there an effusion?",
            "answer": "yes" if i % 2 else "no",
            "answer_type": "CLOSED",
        }
        for i in range(n)
    ]
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(records), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------- the two checks
def timed_run(base_url: str, data: Path, out: Path, concurrency: int) -> float:
    from bimedix2.eval.runner import RunConfig, run_eval

    cfg = RunConfig(
        out_dir=out,
        model="bench",
        data={"vqa-rad": str(data)},
        protocol="toolkit",
        bootstrap=0,
        endpoint=base_url,
        endpoint_model="fake-vqa",
        endpoint_concurrency=concurrency,
    )
    started = time.perf_counter()
    run_eval(["vqa-rad"], None, cfg)
    return time.perf_counter() - started


def bare_client_run(base_url: str, n: int, concurrency: int) -> float:
    """The machine's floor: the same number of requests at the same concurrency from a bare aiohttp client
    (one small JSON body each, no images, no cache, no retries, no scoring; aiohttp's C parser, and its
    pool is cheaper than httpx's at this concurrency)."""
    import aiohttp

    async def run() -> float:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(i: int) -> None:
                body = {"model": "fake-vqa", "messages": [{"role": "user", "content": f"bare {i:05d}: q"}]}
                async with session.post(f"{base_url}/chat/completions", json=body) as response:
                    response.raise_for_status()
                    await response.json()

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return time.perf_counter() - started

    return asyncio.run(run())


def finished_ids(predictions: Path) -> set[str]:
    """Sample ids in a predictions.jsonl (first line: fingerprint; a torn last line ignored)."""
    ids = set()
    for line in predictions.read_text(encoding="utf-8").splitlines()[1:]:
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError):
            pass
    return ids


def cli_run(base_url: str, data: Path, out: Path, concurrency: int) -> list[str]:
    return [
        str(ROOT / ".venv" / "bin" / "bimedix2") if (ROOT / ".venv" / "bin" / "bimedix2").exists() else "bimedix2",
        "eval",
        "run",
        "vqa-rad",
        "--endpoint",
        base_url,
        "--endpoint-model",
        "fake-vqa",
        "--endpoint-concurrency",
        str(concurrency),
        "--data",
        f"vqa-rad={data}",
        "--out",
        str(out),
        "--protocol",
        "toolkit",
        "--bootstrap",
        "0",
    ]


def kill_and_resume(base_url: str, data: Path, out: Path, n: int, concurrency: int) -> dict[str, Any]:
    """SIGKILL a CLI run once about half its samples are in predictions.jsonl, rerun it, count re-asks."""
    predictions = out / "vqa-rad" / "predictions.jsonl"
    proc = subprocess.Popen(
        cli_run(base_url, data, out, concurrency), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    done: set[str] = set()
    while proc.poll() is None:
        if predictions.is_file() and predictions.stat().st_size:
            lines = predictions.read_bytes().count(b"\n") - 1
            if lines >= n // 2:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                break
        time.sleep(0.002)
    else:
        raise SystemExit("the run finished before it could be killed; raise --samples")
    done = finished_ids(predictions)
    while (now := stats(base_url))["inflight"]:  # the killed run's requests still in flight finish (uncounted)
        time.sleep(0.05)
    before = now["counts"]
    rerun = subprocess.run(cli_run(base_url, data, out, concurrency), capture_output=True, text=True)
    if rerun.returncode != 0:
        raise SystemExit(f"the rerun failed:\n{rerun.stderr[-3000:]}")
    after = stats(base_url)["counts"]
    ids = {f"sample {int(sid.rsplit('-', 1)[-1]) if '-' in sid else int(sid):05d}": sid for sid in done}
    reasked = sum(after.get(key, 0) > before.get(key, 0) for key in ids)
    asked_in_rerun = sum(after.values()) - sum(before.values())
    return {"finished_at_kill": len(done), "reasked": reasked, "asked_in_rerun": asked_in_rerun}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the fake takes per request")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    if args.serve is not None:
        serve_forever(args.serve, args.latency)
        return
    import bimedix2.eval.endpoint  # noqa: F401  imports before the clock starts
    import bimedix2.eval.kinds.vqa  # noqa: F401
    import bimedix2.eval.runner  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = synth_vqa_rad(tmp_path / "vqa-rad", args.samples)
        proc, base_url = start_server(args.latency)
        try:
            from bimedix2.eval.results import load_results

            # warm-up: a 16-sample run first, so one-time imports (torch, torchmetrics, openai) stay off the clock
            timed_run(base_url, synth_vqa_rad(tmp_path / "warm", 16), tmp_path / "warm-out", args.concurrency)
            stats(base_url, reset=True)
            wall = timed_run(base_url, data, tmp_path / "timed", args.concurrency)
            s = stats(base_url)
            n = load_results(tmp_path / "timed" / "results.json")["tasks"]["vqa-rad"]["n"]
            ideal = n * args.latency / args.concurrency
            span = s["last"] - s["first"]
            print(f"samples {n}, latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
            print(f"  server requests {s['requests']}, peak in flight {s['peak']}")
            print(f"  wall (run_eval: generate + score + write)  {wall:7.3f} s")
            print(f"  server span (first request to last reply)  {span:7.3f} s")
            print(f"  ideal (samples x latency / concurrency)    {ideal:7.3f} s")
            bare = bare_client_run(base_url, n, args.concurrency)
            print(f"  bare aiohttp client, same requests (floor) {bare:7.3f} s  ({bare / ideal:.2f}x ideal)")
            verdict = "ok" if wall / ideal <= 1.2 else "MISSED"
            print(f"  ratio wall / ideal {wall / ideal:.2f}x (target <= 1.20x: {verdict})")
            print(f"  ratio span / ideal {span / ideal:.2f}x; span / bare client {span / bare:.2f}x")
            resumed = kill_and_resume(base_url, data, tmp_path / "killed", args.samples, args.concurrency)
            verdict = "ok" if resumed["reasked"] == 0 else "MISSED"
            print(
                f"kill at ~50%: {resumed['finished_at_kill']} samples finished at SIGKILL; the rerun asked the server "
                f"{resumed['asked_in_rerun']} times"
            )
            print(f"  finished samples re-asked: {resumed['reasked']} (target 0: {verdict})")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()

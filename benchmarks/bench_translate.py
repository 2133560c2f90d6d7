"""Translation throughput against a fake OpenAI-compatible endpoint with fixed latency.

Translates N records (default 2,000) at concurrency 1, 8 and 32 against a fake server (its own
process, 100 ms per reply, every translation scoring 95 so each record costs exactly 2 calls)
and prints, per concurrency, the measured time, the ideal ``calls x latency / concurrency``, the
ratio ideal/measured (1.0 = no overhead; issue target >= 0.8 at 32) and the speedup over the
concurrency-1 run measured in the same session.

``--pooling single sharded`` runs each concurrency twice: with the client as it is (one SDK
client, one httpx2 pool of ``max_concurrency`` connections) and with requests spread over SDK
clients of ``POOL_SIZE`` connections each (a workaround for a connection pool that scans all its
connections per request), then prints sharded/single measured time and client CPU time (this
process, so the fake server's share is left out; steadier than wall time on a busy machine).

    .venv/bin/python benchmarks/bench_translate.py                 # full: ~8 minutes
    .venv/bin/python benchmarks/bench_translate.py --records 200   # quick
    .venv/bin/python benchmarks/bench_translate.py --records 500 --concurrency 8 32 --pooling single sharded
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from bimedix2 import llm_client  # noqa: E402
from bimedix2.data.io import write_jsonl  # noqa: E402
from bimedix2.data.schema import Record, Turn  # noqa: E402
from bimedix2.data.translate import pipeline  # noqa: E402
from bimedix2.data.translate.pipeline import TranslateConfig, run_translation  # noqa: E402
from bimedix2.llm_client import LLMClient, LLMConfig  # noqa: E402

POOL_SIZE = 4  # connections per SDK client in the sharded variant


class ShardedLLMClient(LLMClient):
    """``LLMClient`` whose requests go to one of several SDK clients of ``POOL_SIZE`` connections.

    A free slot names a client with a free connection (slot ``i`` belongs to client ``i // POOL_SIZE``).
    """

    def _start(self):  # noqa: ANN202 - same as LLMClient._start
        if self._sdk is None:
            sdk, slots = super()._start()
            n = self.config.max_concurrency
            tls = httpx2.create_ssl_context()  # one context for all clients
            self._shards = [
                sdk.with_options(
                    http_client=httpx2.AsyncClient(
                        limits=httpx2.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
                        timeout=self.config.timeout_s,
                        verify=tls,
                        event_hooks={"request": [llm_client._count_attempt]},
                    )
                )
                for _ in range((n + POOL_SIZE - 1) // POOL_SIZE)
            ]
            self._free: asyncio.Queue[int] = asyncio.Queue()
            for i in range(n):
                self._free.put_nowait(i // POOL_SIZE)
        return super()._start()

    async def _create(self, sdk, messages, params):  # noqa: ANN001, ANN202 - same as LLMClient._create
        shard = await self._free.get()
        try:
            return await super()._create(self._shards[shard], messages, params)
        finally:
            self._free.put_nowait(shard)

    async def aclose(self) -> None:
        for shard in getattr(self, "_shards", []):
            await shard.close()
        self._shards = []
        await super().aclose()


def records(n: int) -> list[Record]:
    return [
        Record(
            id=f"bench-{i}",
            conversations=(
                Turn("human", f"<image>\nPatient {i}: a {i % 40 + 5} mm nodule in the right lower lobe. What next?"),
                Turn("gpt", f"Follow-up CT in {i % 12 + 1} months; biopsy if it exceeds {i % 40 + 10} mm."),
            ),
            images=(f"img/{i}.png",),
            task="vqa",
            split="test",
        )
        for i in range(n)
    ]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--latency", str(latency),
         "--responder", "tests.fakes.translation_responder:passing_responder"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"fake server did not start (got {url!r})")
    return proc, url


def run_one(inp: Path, out: Path, url: str, c: int, pooling: str) -> tuple[float, float, int]:
    """One translation run; returns (wall seconds, this process's CPU seconds, calls)."""
    pipeline.LLMClient = ShardedLLMClient if pooling == "sharded" else LLMClient
    llm = LLMConfig(base_url=url, model="bench", max_concurrency=c, timeout_s=30)
    cfg = TranslateConfig(llm=llm, review_sample_rate=0.0)
    t0, cpu0 = time.perf_counter(), time.process_time()
    _, stats = run_translation(inp, out, cfg, progress=False)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    pipeline.LLMClient = LLMClient
    return elapsed, cpu, stats["llm_usage_this_run"]["calls"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--pooling", nargs="+", choices=["single", "sharded"], default=["single"])
    args = parser.parse_args()

    server, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inp = Path(tmp) / "in.jsonl"
            write_jsonl(records(args.records), inp)
            print(f"{args.records} records, {args.latency * 1000:.0f} ms per call, fake endpoint {url}")
            header = ("concurrency", "pooling", "calls", "measured s", "ideal s", "ideal/measured", "speedup vs c=1")
            print("{:>11} {:>8} {:>6} {:>10} {:>8} {:>14} {:>15} {:>14}".format(*header, "client CPU ms/call"))
            base_per_call: dict[str, float] = {}
            times: dict[tuple[int, str], tuple[float, float]] = {}
            for c in args.concurrency:
                for pooling in args.pooling:
                    elapsed, cpu, calls = run_one(inp, Path(tmp) / f"c{c}-{pooling}", url, c, pooling)
                    times[c, pooling] = elapsed, cpu
                    ideal = calls * args.latency / c
                    per_call = elapsed / calls
                    if c == 1:
                        base_per_call[pooling] = per_call
                    base = base_per_call.get(pooling)
                    speedup = f"{base / per_call:.2f}x" if base else "n/a"
                    print(
                        f"{c:>11} {pooling:>8} {calls:>6} {elapsed:>10.2f} {ideal:>8.2f} "
                        f"{ideal / elapsed:>13.3f}x {speedup:>15} {cpu / calls * 1000:>18.2f}"
                    )
            if len(args.pooling) == 2:
                for c in args.concurrency:
                    (wall_1, cpu_1), (wall_n, cpu_n) = times[c, "single"], times[c, "sharded"]
                    print(
                        f"c={c}: sharded/single: measured time {wall_n / wall_1:.3f}, "
                        f"client CPU {cpu_n / cpu_1:.3f} (> 1: the single pool is faster)"
                    )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()

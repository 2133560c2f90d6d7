"""Translation throughput against a fake OpenAI-compatible endpoint with fixed latency.

Translates N records (default 2,000) at concurrency 1, 8 and 32 against a fake server (its own
process, 100 ms per reply, every translation scoring 95 so each record costs exactly 2 calls)
and prints, per concurrency, the measured time, the ideal ``calls x latency / concurrency``, the
ratio ideal/measured (1.0 = no overhead; issue target >= 0.8 at 32) and the speedup over the
concurrency-1 run measured in the same session.

    .venv/bin/python benchmarks/bench_translate.py                 # full: ~8 minutes
    .venv/bin/python benchmarks/bench_translate.py --records 200   # quick
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bimedix2.data.io import write_jsonl  # noqa: E402
from bimedix2.data.schema import Record, Turn  # noqa: E402
from bimedix2.data.translate.pipeline import TranslateConfig, run_translation  # noqa: E402
from bimedix2.llm_client import LLMConfig  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    server, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inp = Path(tmp) / "in.jsonl"
            write_jsonl(records(args.records), inp)
            print(f"{args.records} records, {args.latency * 1000:.0f} ms per call, fake endpoint {url}")
            header = ("concurrency", "calls", "measured s", "ideal s", "ideal/measured", "speedup vs c=1")
            print("{:>11} {:>6} {:>10} {:>8} {:>14} {:>15}".format(*header))
            base_per_call = None
            for c in args.concurrency:
                llm = LLMConfig(base_url=url, model="bench", max_concurrency=c, timeout_s=30)
                cfg = TranslateConfig(llm=llm, review_sample_rate=0.0)
                t0 = time.perf_counter()
                _, stats = run_translation(inp, Path(tmp) / f"c{c}", cfg, progress=False)
                elapsed = time.perf_counter() - t0
                calls = stats["llm_usage_this_run"]["calls"]
                ideal = calls * args.latency / c
                per_call = elapsed / calls
                if c == 1:
                    base_per_call = per_call
                speedup = f"{base_per_call / per_call:.2f}x" if base_per_call else "n/a"
                print(f"{c:>11} {calls:>6} {elapsed:>10.2f} {ideal:>8.2f} {ideal / elapsed:>13.3f}x {speedup:>15}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()

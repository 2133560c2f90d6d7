"""Translation job at scale against a fast fake endpoint: throughput, peak RSS, kill-and-resume.

For each ``--records N`` (default 2,000) the benchmark writes N English records and runs
``bimedix2 translate run`` on them in its own process, against a fake OpenAI-compatible server
(``tests/fakes/async_openai_server.py``: asyncio, its own process, exactly ``--latency`` 100 ms
per reply, every translation scoring 95, so each record costs exactly 2 requests). At
``--kill-at`` (default half) of the requests it SIGKILLs the job and runs it again to the end.
It prints, per N:

- records/s and the ratio ideal/measured, ideal = requests x latency / concurrency (1.0 = no
  overhead; issue 15 target >= 0.9 at concurrency 32), over the whole job (kill and restart
  included) and over the first run alone (uninterrupted, from process start);
- CPU per request of the job process and of the fake (steadier than wall time on a busy box);
- the peak RSS of the job process (``ru_maxrss`` of each run; issue 15: flat, < 300 MB at 100k);
- the resume time: from starting the second run to the fake receiving its first request;
- re-asked records: records finished before the kill (read from ``job.sqlite``) that the second
  run asked the fake about again (must be 0; each request is tagged by the record number in
  its text), and the requests of each run.

Several sizes in one call show whether memory and throughput stay flat:

    .venv/bin/python benchmarks/bench_translate.py --records 2000               # ~20 s
    .venv/bin/python benchmarks/bench_translate.py --records 10000 100000       # 12-17 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from bimedix2.data.io import write_jsonl  # noqa: E402
from bimedix2.data.schema import Record, Turn  # noqa: E402

TAG = r"Patient (\d+):"  # every request of record i carries "Patient i:" (translate and score prompts)
CALLS_PER_RECORD = 2  # translate + score (the fake scores every translation 95: no refinement)
POLL_S = 0.02


def records(n: int) -> Iterator[Record]:
    for i in range(n):
        yield Record(
            id=f"bench-{i}",
            conversations=(
                Turn("human", f"<image>\nPatient {i}: a {i % 40 + 5} mm nodule in the right lower lobe. What next?"),
                Turn("gpt", f"Follow-up CT in {i % 12 + 1} months; biopsy if it exceeds {i % 40 + 10} mm."),
            ),
            images=(f"img/{i}.png",),
            task="vqa",
            split="test",
        )


class Fake:
    """The fake endpoint's process and its request log."""

    def __init__(self, latency: float) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.async_openai_server", "--latency", str(latency),
             "--responder", "tests.fakes.translation_responder:passing_responder", "--tag", TAG],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.url = (self.proc.stdout.readline() if self.proc.stdout else "").strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.proc.kill()
            raise SystemExit(f"fake server did not start (got {self.url!r})")
        self.http = httpx2.Client(timeout=30)

    def log(self, since: int | None = None) -> dict:
        """``requests`` so far, and the entries ``[received_at, tag]`` from ``since`` on (none if None)."""
        return self.http.get(self.url.removesuffix("/v1") + "/_log", params={"since": since or 10**12}).json()

    def cpu_s(self) -> float:
        """User + system CPU seconds the fake has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def count(self) -> int:
        return int(self.log()["requests"])

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    cpu_s: float  # user + system CPU of the job process
    requests: int
    started_at: float
    killed: bool


def run_job(inp: Path, out: Path, fake: Fake, concurrency: int, kill_after: int | None) -> Run:
    """One ``bimedix2 translate run`` process; SIGKILLed once the fake has ``kill_after`` more requests."""
    cmd = [sys.executable, "-m", "bimedix2.cli", "translate", "run", str(inp), str(out),
           "--config", str(ROOT / "configs/data/translate.yaml"), "--base-url", fake.url, "--model", "bench",
           "--concurrency", str(concurrency), "--no-progress"]  # fmt: skip
    base = fake.count()
    with (out.parent / f"{out.name}.log").open("a") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
        killed = False
        while True:  # os.wait4, not Popen.poll: it also gives the exited process's peak RSS
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if kill_after is not None and fake.count() - base >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                killed = True
                break
            time.sleep(POLL_S)
        seconds = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if not killed and proc.returncode != 0:
        raise SystemExit(f"the job exited with {proc.returncode}; see {out.parent / (out.name + '.log')}")
    cpu = rusage.ru_utime + rusage.ru_stime
    return Run(seconds, rusage.ru_maxrss / 1024, cpu, fake.count() - base, t0, killed)


def finished_ids(job: Path) -> set[int]:
    """Record numbers finished in a job folder's ``job.sqlite``."""
    db = sqlite3.connect(job / "job.sqlite")
    try:
        return {int(r[0].removeprefix("bench-")) for r in db.execute("SELECT rec_id FROM items")}
    finally:
        db.close()


def bench(n: int, args: argparse.Namespace, fake: Fake, tmp: Path) -> dict:
    inp, out = tmp / f"in-{n}.jsonl", tmp / f"job-{n}"
    write_jsonl(records(n), inp)
    start, fake_cpu = fake.count(), fake.cpu_s()
    kill_after = int(n * CALLS_PER_RECORD * args.kill_at) if 0 < args.kill_at < 1 else None
    first = run_job(inp, out, fake, args.concurrency, kill_after)
    row = {"records": n, "first": first}
    if first.killed:
        done = finished_ids(out)
        base = fake.count()
        second = run_job(inp, out, fake, args.concurrency, None)
        entries = fake.log(base)["entries"]
        asked = {int(tag) for _, tag in entries if tag is not None}
        row.update(
            second=second,
            finished_at_kill=len(done),
            resume_s=entries[0][0] - second.started_at if entries else float("nan"),
            reasked_finished=len(asked & done),
            second_expected=CALLS_PER_RECORD * (n - len(done)),
        )
    stats = json.loads((out / "stats.json").read_text())
    if stats["records_translated"] != n:
        raise SystemExit(f"{n} records in, {stats['records_translated']} translated: see {out}")
    row["requests"] = fake.count() - start
    row["fake_cpu_s"] = fake.cpu_s() - fake_cpu
    row["seconds"] = first.seconds + (row["second"].seconds if "second" in row else 0.0)
    return row


def report(row: dict, args: argparse.Namespace) -> None:
    n, first, lat, c = row["records"], row["first"], args.latency, args.concurrency
    ideal = row["requests"] * lat / c
    runs = [first] + ([row["second"]] if "second" in row else [])
    cpu_ms = sum(r.cpu_s for r in runs) / row["requests"] * 1000
    print(f"\n{n} records, {row['requests']} requests in {row['seconds']:.1f} s: {n / row['seconds']:.1f} records/s")
    verdict = "met" if ideal / row["seconds"] >= 0.9 else "MISSED"
    print(
        f"  ideal/measured {ideal / row['seconds']:.3f}x (ideal {ideal:.1f} s = requests x {lat * 1000:.0f} ms", end=""
    )
    print(f" / {c}; target >= 0.9x: {verdict})")
    print(f"  job process CPU {cpu_ms:.2f} ms per request (one core's ceiling: {1000 / cpu_ms:.0f} requests/s)", end="")
    print(f"; fake endpoint CPU {row['fake_cpu_s'] / row['requests'] * 1000:.2f} ms per request")
    ratio = first.requests * lat / c / first.seconds
    killed = " (then SIGKILLed)" if first.killed else ""
    print(f"  run 1: {first.requests} requests in {first.seconds:.1f} s, ideal/measured {ratio:.3f}x, ", end="")
    print(f"peak RSS {first.peak_rss_mb:.1f} MB{killed}")
    if "second" in row:
        second = row["second"]
        print(
            f"  run 2 (resume): {second.requests} requests (at most unfinished records x {CALLS_PER_RECORD}",
            end="",
        )
        print(f" = {row['second_expected']}) in {second.seconds:.1f} s, peak RSS {second.peak_rss_mb:.1f} MB")
        print(
            f"  resume: {row['finished_at_kill']} records finished at the kill; first request {row['resume_s']:.2f} s",
            end="",
        )
        verdict = "met" if row["reasked_finished"] == 0 else "MISSED"
        print(f" after the restart; finished records asked again: {row['reasked_finished']} (target 0: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[2000])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of requests at which to SIGKILL (0: none)")
    args = parser.parse_args()
    fake = Fake(args.latency)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"fake endpoint {fake.url}, {args.latency * 1000:.0f} ms per reply, concurrency {args.concurrency}")
            for n in args.records:
                rows.append(bench(n, args, fake, Path(tmp)))
                report(rows[-1], args)
    finally:
        fake.close()
    if len(rows) > 1:
        peaks = [max(r["first"].peak_rss_mb, r["second"].peak_rss_mb if "second" in r else 0) for r in rows]
        sizes = ", ".join(f"{r['records']}: {p:.1f} MB" for r, p in zip(rows, peaks, strict=True))
        verdict = "met" if max(peaks) < 300 else "MISSED"
        print(f"\npeak RSS by size: {sizes} (largest/smallest {max(peaks) / min(peaks):.2f}; < 300 MB: {verdict})")


if __name__ == "__main__":
    main()

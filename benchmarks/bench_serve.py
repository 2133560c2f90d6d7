"""Serving: aggregate generated tokens/s with 1, 4 and 8 concurrent clients against one client sending
the same requests one after another, and time-to-first-token for staggered arrivals, with the
whole-batch scheduler and the continuous one, all in one run against the same engine.

    .venv/bin/python benchmarks/bench_serve.py --engine llama-cpp  # embedded SmolLM2-135M GGUF, both schedulers
    .venv/bin/python benchmarks/bench_serve.py                     # embedded SmolLM2-135M-Instruct, transformers
    .venv/bin/python benchmarks/bench_serve.py --model tiny        # tiny random LLaVA (plumbing only)
    .venv/bin/python benchmarks/bench_serve.py --model MBZUAI/BiMediX2-8B-hf --requests 32

Requests are greedy (temperature 0), so every phase generates the same answers and the same
token counts; only the wall time differs. Staggered arrivals: `--stagger-requests` streamed
requests, one every `--stagger-s` seconds; time-to-first-token is from sending a request to its
first text. The transformers engine has only the batch scheduler (docs/serving.md says why), so
there the continuous columns are left out. Target: >= 4x at 8 clients. Research use only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai
import torch

from bimedix2.engine import Engine
from bimedix2.model.loader import load_model
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig

SCHEDULERS = ("batch", "continuous")

QUESTIONS = [
    "What are the common symptoms of iron-deficiency anemia?",
    "ما هي الأعراض الشائعة لفقر الدم الناجم عن نقص الحديد؟",
    "How is community-acquired pneumonia usually treated in adults?",
    "ما هو العلاج المعتاد للالتهاب الرئوي المكتسب من المجتمع عند البالغين؟",
    "Explain the difference between type 1 and type 2 diabetes.",
    "اشرح الفرق بين داء السكري من النوع الأول والنوع الثاني.",
    "What does a pleural effusion look like on a chest X-ray?",
    "كيف يظهر الانصباب الجنبي في صورة الأشعة السينية للصدر؟",
    "List the risk factors for coronary artery disease.",
    "ما هي عوامل الخطر لمرض الشريان التاجي؟",
    "What is the first-line treatment for hypertension?",
    "ما هو خط العلاج الأول لارتفاع ضغط الدم؟",
    "Describe the typical MRI findings of multiple sclerosis.",
    "صف النتائج النموذجية للتصوير بالرنين المغناطيسي في التصلب المتعدد.",
    "What are the warning signs of a stroke?",
    "ما هي العلامات التحذيرية للسكتة الدماغية؟",
]
MODEL_ID = "bench"


def save_random_llama(out_dir: Path) -> Path:
    """A randomly initialised Llama of about 0.9B parameters (8B-like layer shapes, 16 layers): a GPU
    workload of realistic size where no weights can be downloaded. Its answers are noise."""
    from transformers import LlamaForCausalLM

    from bimedix2.model.tiny import build_tiny_tokenizer, tiny_llama_config

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(with_image_token=False)
    config = tiny_llama_config(
        len(tokenizer),
        hidden=2048,
        layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        max_position_embeddings=4096,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def run_phase(base: str, prompts: list[str], clients: int, max_tokens: int) -> tuple[float, int, list[str]]:
    """Send every prompt once using `clients` concurrent clients; (seconds, generated tokens, answers)."""
    work: queue.Queue[int] = queue.Queue()
    for i in range(len(prompts)):
        work.put(i)
    answers = [""] * len(prompts)
    tokens = [0] * len(prompts)
    errors: list[BaseException] = []

    def client() -> None:
        c = openai.OpenAI(base_url=f"{base}/v1", api_key="bench", max_retries=0, timeout=1800)
        while True:
            try:
                i = work.get_nowait()
            except queue.Empty:
                return
            try:
                r = c.chat.completions.create(
                    model=MODEL_ID,
                    messages=[{"role": "user", "content": prompts[i]}],
                    temperature=0,
                    max_tokens=max_tokens,
                )
                answers[i], tokens[i] = r.choices[0].message.content or "", r.usage.completion_tokens
            except BaseException as exc:  # reported after the phase
                errors.append(exc)
                return

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed: {errors[0]!r}")
    return elapsed, sum(tokens), answers


def staggered(base: str, prompts: list[str], gap_s: float, max_tokens: int) -> tuple[list[float], int]:
    """Stream prompt i at i * gap_s seconds; (each request's time to its first text, generated tokens)."""
    ttft: list[float | None] = [None] * len(prompts)
    tokens = [0] * len(prompts)
    errors: list[BaseException] = []
    start = time.perf_counter()

    def client(i: int) -> None:
        time.sleep(max(0.0, start + i * gap_s - time.perf_counter()))
        c = openai.OpenAI(base_url=f"{base}/v1", api_key="bench", max_retries=0, timeout=1800)
        sent = time.perf_counter()
        try:
            stream = c.chat.completions.create(
                model=MODEL_ID,
                messages=[{"role": "user", "content": prompts[i]}],
                temperature=0,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in stream:
                if ttft[i] is None and chunk.choices and chunk.choices[0].delta.content:
                    ttft[i] = time.perf_counter() - sent
                if chunk.usage is not None:
                    tokens[i] = chunk.usage.completion_tokens
        except BaseException as exc:  # reported after the phase
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} staggered request(s) failed: {errors[0]!r}")
    if any(t is None for t in ttft):
        raise RuntimeError("a staggered request streamed no text")
    return [t for t in ttft if t is not None], sum(tokens)


def p95(values: list[float]) -> float:
    """The 95th percentile (linear interpolation between the closest ranks)."""
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def load_engine(args: argparse.Namespace) -> Engine:
    """The engine the flags name: transformers on a checkpoint, or llama.cpp on a GGUF (default: SmolLM2's)."""
    if args.engine == "llama-cpp":
        # libgomp reads this once, when llama.cpp's CPU library loads: OpenMP workers that spin
        # between decode calls starved the rest of the process on a busy CPU (docs/serving.md)
        if args.omp_wait_policy != "default":
            os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
        from bimedix2.model.llama_cpp import LlamaCppOptions, load_llama_cpp
        from bimedix2.model.loader import embedded_default_gguf

        path = Path(args.model) if args.model else embedded_default_gguf()
        options = LlamaCppOptions(context=args.ctx_size, parallel=args.max_batch_size, threads=args.threads or 0)
        return Engine(load_llama_cpp(path, options=options), backend="llama-cpp")
    if args.model == "tiny":
        from bimedix2.model.tiny import save_tiny_llava

        model_path: str | None = str(save_tiny_llava(Path(tempfile.mkdtemp(prefix="bench-tiny-")) / "llava"))
    elif args.model == "random-1b":
        model_path = str(save_random_llama(Path(tempfile.mkdtemp(prefix="bench-random-")) / "llama"))
    else:
        model_path = args.model
    return Engine(load_model(model_path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=None,
        help="checkpoint (a .gguf with --engine llama-cpp); 'tiny' (tiny random LLaVA), 'random-1b' (random 0.9B "
        "Llama, for GPUs without weights); default: the embedded SmolLM2-135M-Instruct",
    )
    parser.add_argument("--engine", choices=("transformers", "llama-cpp"), default="transformers")
    parser.add_argument("--ctx-size", type=int, default=2048, help="llama.cpp tokens per sequence (default 2048)")
    parser.add_argument("--requests", type=int, default=16, help="requests per phase (default 16)")
    parser.add_argument("--max-tokens", type=int, default=48, help="max_tokens per request (default 48)")
    parser.add_argument("--concurrency", default="1,4,8", help="client counts to measure (default 1,4,8)")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all phases (default 2)")
    parser.add_argument("--stagger-requests", type=int, default=16, help="staggered requests (default 16; 0: skip)")
    parser.add_argument("--stagger-s", type=float, default=0.5, help="seconds between staggered arrivals")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op / llama.cpp threads")
    parser.add_argument(
        "--omp-wait-policy",
        choices=("passive", "active", "default"),
        default=os.environ.get("OMP_WAIT_POLICY", "passive").lower(),
        help="OMP_WAIT_POLICY for llama.cpp's OpenMP threads (default: $OMP_WAIT_POLICY, else passive; "
        "'default': leave libgomp's own)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = load_engine(args)
    loaded = engine.loaded
    schedulers = SCHEDULERS if engine.continuous_batching else SCHEDULERS[:1]
    prompts = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.requests)]
    levels = [int(x) for x in args.concurrency.split(",")]
    apps = {
        name: create_app(
            engine,
            ServeConfig(
                model_id=MODEL_ID,
                max_batch_size=args.max_batch_size,
                max_queue=max(64, args.requests, args.stagger_requests),
                request_timeout_s=3600,
                batch_window_s=0.02,
                scheduler=name,
            ),
        )
        for name in schedulers
    }
    print(
        f"model: {loaded.info.name} ({loaded.info.parameters:,} parameters, {loaded.info.device}, "
        f"{loaded.info.dtype}), engine {args.engine}"
        + (f" (OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')})" if args.engine == "llama-cpp" else "")
        + f"; schedulers: {', '.join(schedulers)}; "
        f"{args.requests} requests x max_tokens {args.max_tokens}, greedy",
        file=sys.stderr,
    )
    phases = [("sequential", 1)] + [(f"{c}_clients", c) for c in levels]
    totals = {
        (sched, name): {"clients": c, "seconds": 0.0, "tokens": 0, "answers_identical": 0}
        for sched in schedulers
        for name, c in phases
    }
    ttfts: dict[str, list[float]] = {sched: [] for sched in schedulers}
    reference: list[str] | None = None
    with contextlib.ExitStack() as stack:
        bases = {sched: stack.enter_context(serve_in_thread(app)) for sched, app in apps.items()}
        for base in bases.values():
            run_phase(base, prompts[:2], 2, 4)  # warm-up (first-call overheads)
        # Rounds interleave the phases and schedulers so that load from other processes on a shared
        # machine affects the baseline and the concurrent runs alike.
        for round_no in range(1, args.rounds + 1):
            for name, clients in phases:
                for sched in schedulers:
                    seconds, tokens, answers = run_phase(bases[sched], prompts, clients, args.max_tokens)
                    reference = reference or answers
                    row = totals[(sched, name)]
                    row["seconds"] += seconds
                    row["tokens"] += tokens
                    row["answers_identical"] += sum(a == b for a, b in zip(answers, reference, strict=True))
                    print(
                        f"round {round_no}, {sched}, {name}: {tokens} tokens in {seconds:.1f}s = "
                        f"{tokens / seconds:.1f} tok/s",
                        file=sys.stderr,
                    )
            if args.stagger_requests:
                stagger_prompts = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.stagger_requests)]
                for sched in schedulers:
                    times, tokens = staggered(bases[sched], stagger_prompts, args.stagger_s, args.max_tokens)
                    ttfts[sched] += times
                    print(
                        f"round {round_no}, {sched}, staggered: mean TTFT {statistics.fmean(times):.2f}s, "
                        f"p95 {p95(times):.2f}s ({tokens} tokens)",
                        file=sys.stderr,
                    )
        stats = {sched: app.state.batcher.stats for sched, app in apps.items()}
    for row in totals.values():
        row["tokens_per_s"] = row["tokens"] / row["seconds"]
    base_rate = totals[("batch", "sequential")]["tokens_per_s"]
    print(
        f"\n{args.requests} requests x max_tokens {args.max_tokens} (greedy), {args.rounds} interleaved round(s); "
        f"engine {args.engine}; torch threads {torch.get_num_threads()}; "
        f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )
    header = "clients  " + "  ".join(f"{s + ' tok/s':>16}  {'vs seq':>7}" for s in schedulers)
    print(header + ("  continuous/batch" if len(schedulers) > 1 else "") + "  answers identical")
    for name, clients in phases:
        label = "seq" if name == "sequential" else str(clients)
        cells = []
        for sched in schedulers:
            row = totals[(sched, name)]
            row["ratio"] = row["tokens_per_s"] / base_rate
            cells.append(f"{row['tokens_per_s']:16.1f}  {row['ratio']:6.2f}x")
        line = f"{label:>7}  " + "  ".join(cells)
        if len(schedulers) > 1:
            line += f"  {totals[('continuous', name)]['tokens_per_s'] / totals[('batch', name)]['tokens_per_s']:15.2f}x"
        same = sum(totals[(s, name)]["answers_identical"] for s in schedulers)
        print(f"{line}  {same}/{args.requests * args.rounds * len(schedulers)}")
    stagger: dict[str, dict[str, float]] = {}
    if args.stagger_requests:
        print(
            f"\nstaggered arrivals: {args.stagger_requests} streamed requests, one every {args.stagger_s}s, "
            f"{args.rounds} round(s); time to first token (s)"
        )
        print("scheduler    mean     p95     max")
        for sched in schedulers:
            times = ttfts[sched]
            stagger[sched] = {"mean": statistics.fmean(times), "p95": p95(times), "max": max(times)}
            print(f"{sched:<10} {stagger[sched]['mean']:6.2f}  {stagger[sched]['p95']:6.2f}  {max(times):6.2f}")
        if len(schedulers) > 1:
            b, c = stagger["batch"], stagger["continuous"]
            print(f"batch / continuous: mean {b['mean'] / c['mean']:.2f}x, p95 {b['p95'] / c['p95']:.2f}x")
    top = totals[(schedulers[-1], f"{max(levels)}_clients")]["ratio"]
    for sched in schedulers:
        st = stats[sched]
        steps = f", decoding steps {st.steps}" if sched == "continuous" else ""
        print(
            f"{sched}: runs {st.batches}{steps}, most rows at once {st.largest_batch}",
            end="; " if sched != schedulers[-1] else "\n",
        )
    print(f"target >= 4x at {max(levels)} clients ({schedulers[-1]}): {'met' if top >= 4 else 'NOT met'} ({top:.2f}x)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": loaded.info.name,
                    "engine": args.engine,
                    "requests": args.requests,
                    "max_tokens": args.max_tokens,
                    "results": {f"{sched}/{name}": row for (sched, name), row in totals.items()},
                    "staggered_ttft_s": stagger,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

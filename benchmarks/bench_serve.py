"""Serving throughput: aggregate generated tokens/s with 1, 4 and 8 concurrent clients against one
client sending the same requests one after another, all in one run against the same server.

    .venv/bin/python benchmarks/bench_serve.py                 # embedded SmolLM2-135M-Instruct (CPU)
    .venv/bin/python benchmarks/bench_serve.py --model tiny    # tiny random LLaVA (plumbing only)
    .venv/bin/python benchmarks/bench_serve.py --model MBZUAI/BiMediX2-8B-hf --requests 32

Requests are greedy (temperature 0), so every phase generates the same answers and the same
token counts; only the wall time differs. Target: >= 4x at 8 clients. Research use only.
"""

from __future__ import annotations

import argparse
import json
import queue
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=None,
        help="checkpoint; 'tiny' (tiny random LLaVA), 'random-1b' (random 0.9B Llama, for GPUs "
        "without weights); default: the embedded SmolLM2-135M-Instruct",
    )
    parser.add_argument("--requests", type=int, default=16, help="requests per phase (default 16)")
    parser.add_argument("--max-tokens", type=int, default=48, help="max_tokens per request (default 48)")
    parser.add_argument("--concurrency", default="1,4,8", help="client counts to measure (default 1,4,8)")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all phases (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "tiny":
        from bimedix2.model.tiny import save_tiny_llava

        model_path: str | None = str(save_tiny_llava(Path(tempfile.mkdtemp(prefix="bench-tiny-")) / "llava"))
    elif args.model == "random-1b":
        model_path = str(save_random_llama(Path(tempfile.mkdtemp(prefix="bench-random-")) / "llama"))
    else:
        model_path = args.model
    loaded = load_model(model_path)
    engine = Engine(loaded)
    prompts = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.requests)]
    levels = [int(x) for x in args.concurrency.split(",")]
    config = ServeConfig(
        model_id=MODEL_ID,
        max_batch_size=args.max_batch_size,
        max_queue=max(64, args.requests),
        request_timeout_s=3600,
        batch_window_s=0.02,
    )
    app = create_app(engine, config)
    print(
        f"model: {loaded.info.name} ({loaded.info.parameters:,} parameters, {loaded.info.device}, "
        f"{loaded.info.dtype}); {args.requests} requests x max_tokens {args.max_tokens}, greedy",
        file=sys.stderr,
    )
    phases = [("sequential", 1)] + [(f"{c}_clients", c) for c in levels]
    totals = {name: {"clients": c, "seconds": 0.0, "tokens": 0, "answers_identical": 0} for name, c in phases}
    reference: list[str] | None = None
    with serve_in_thread(app) as base:
        run_phase(base, prompts[:2], 2, 4)  # warm-up (first-call overheads)
        # Rounds interleave the phases so that load from other processes on a shared machine
        # affects the baseline and the concurrent runs alike.
        for round_no in range(1, args.rounds + 1):
            for name, clients in phases:
                seconds, tokens, answers = run_phase(base, prompts, clients, args.max_tokens)
                reference = reference or answers
                row = totals[name]
                row["seconds"] += seconds
                row["tokens"] += tokens
                row["answers_identical"] += sum(a == b for a, b in zip(answers, reference, strict=True))
                print(
                    f"round {round_no}, {name}: {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.1f} tok/s",
                    file=sys.stderr,
                )
        stats = app.state.batcher.stats
    for row in totals.values():
        row["tokens_per_s"] = row["tokens"] / row["seconds"]
    base_rate = totals["sequential"]["tokens_per_s"]
    print(
        f"\n{args.requests} requests x max_tokens {args.max_tokens} (greedy), {args.rounds} interleaved round(s); "
        f"torch threads {torch.get_num_threads()}"
    )
    print("clients      tokens  seconds  tokens/s  ratio vs sequential  answers identical")
    for name, clients in phases:
        row = totals[name]
        row["ratio"] = row["tokens_per_s"] / base_rate
        label = "seq" if name == "sequential" else str(clients)
        print(
            f"{label:>7}  {row['tokens']:>10}  {row['seconds']:7.1f}  {row['tokens_per_s']:8.1f}  "
            f"{row['ratio']:18.2f}x  {row['answers_identical']}/{args.requests * args.rounds}"
        )
    top = totals[f"{max(levels)}_clients"]["ratio"]
    print(
        f"\nbatches run: {stats.batches}, largest batch: {stats.largest_batch}; "
        f"target >= 4x at {max(levels)} clients: {'met' if top >= 4 else 'NOT met'} ({top:.2f}x)"
    )
    results = totals
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": loaded.info.name,
                    "requests": args.requests,
                    "max_tokens": args.max_tokens,
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

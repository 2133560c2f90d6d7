"""llama.cpp engine vs transformers engine vs raw llama-cpp-python, on this CPU, in one run.

    .venv/bin/python benchmarks/bench_llama_cpp.py [--tokens 64] [--json out.json] [--skip-1b]

Models: SmolLM2-135M-Instruct (the embedded default, real weights) and a random model of BiMediX2's
shape at 1B scale: a Llama-3.2-1B-shaped LLM (128256 vocab, 16 layers, hidden 2048, llama3 RoPE,
tied embeddings) with a random CLIP ViT-L/14-336 tower and mlp2x_gelu projector, built here and
exported through `bimedix2.export` (F16, Q8_0, Q4_K_M; mmproj F16). Every configuration runs in its
own process, so peak RSS is that configuration's own. Measured:

- decode tok/s (greedy, streamed through `Engine.stream`) and TTFT for a ~240-token text prompt;
  raw llama-cpp-python (`Llama.generate` on the same file and prompt ids) for the toolkit/raw ratio;
- TTFT with one 336 px image (1B model): transformers fp32/bf16 vs llama.cpp;
- memory bandwidth (a 2-thread numpy copy) vs bytes read per decoded token -> the bandwidth limit;
- `serve` with 8 concurrent clients vs one client sending the same 8 requests in turn (llama.cpp, Q4_K_M).

Artefacts are cached under --workdir (default ~/.cache/bimedix2/bench-llama-cpp). Random weights
answer noise: only the timings mean anything. Research use only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PROMPT = (
    "A 58-year-old man with type 2 diabetes, hypertension and a 30 pack-year smoking history presents "
    "with three days of fever, productive cough with rusty sputum, right-sided pleuritic chest pain and "
    "shortness of breath. On examination his temperature is 39.1 C, respiratory rate 26, oxygen "
    "saturation 91% on room air, with dullness to percussion and bronchial breath sounds over the right "
    "lower zone. Blood tests show a white cell count of 17, CRP 210 and urea 8.2 mmol/L. The chest X-ray "
    "shows a dense right lower lobe consolidation with air bronchograms and a small parapneumonic effusion. "
    "Explain the most likely diagnosis, how to assess its severity with the CURB-65 score, which "
    "organisms are most likely, the empirical antibiotic choice, and when the effusion should be tapped."
)
IMAGE_QUESTION = "Describe the findings in this chest X-ray."
SERVE_QUESTIONS = [
    "What are the common symptoms of iron-deficiency anemia?",
    "ما هي الأعراض الشائعة لفقر الدم الناجم عن نقص الحديد؟",
    "How is community-acquired pneumonia treated in adults?",
    "ما هو العلاج المعتاد للالتهاب الرئوي عند البالغين؟",
    "Explain the difference between type 1 and type 2 diabetes.",
    "اشرح الفرق بين داء السكري من النوع الأول والنوع الثاني.",
    "What does a pleural effusion look like on a chest X-ray?",
    "List the risk factors for coronary artery disease.",
]


# --------------------------------------------------------------------------------------- artefacts
def build_random_1b(out: Path) -> Path:
    """A random Llama-3.2-1B-shaped LLaVA with a CLIP ViT-L/14-336 tower, saved in bf16 (hf-llava layout)."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from bimedix2.conversation import BIMEDIX2_LLAMA3_TEMPLATE
    from bimedix2.model.tiny import build_tiny_tokenizer, tiny_image_processor

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(with_image_token=True, chat_template=BIMEDIX2_LLAMA3_TEMPLATE)
    text = LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_theta=500000.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
    )  # fmt: skip
    vision = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336,
        patch_size=14, projection_dim=768, hidden_act="quick_gelu",
    )  # fmt: skip
    config = LlavaConfig(
        text_config=text, vision_config=vision, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    processor = LlavaProcessor(
        image_processor=tiny_image_processor(336), tokenizer=tokenizer, patch_size=14,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=BIMEDIX2_LLAMA3_TEMPLATE,
    )  # fmt: skip
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def export(src: Path, root: Path, quant: str) -> dict[str, str | None]:
    """`bimedix2.export.export_gguf` once per (model, quant); the file paths."""
    from bimedix2.export import export_gguf

    out = root / quant
    if not (out / "export.json").is_file():
        print(f"exporting {src.name} at {quant} ...", file=sys.stderr, flush=True)
        export_gguf(src, out, quant)
    files = json.loads((out / "export.json").read_text())["files"]
    return {"model": str(out / files["model"]), "mmproj": str(out / files["mmproj"]) if files["mmproj"] else None}


def weight_bytes_per_token(gguf_path: str) -> int:
    """Bytes of weights one decoded token reads: every matrix, the embedding table only when it is the output."""
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    return sum(int(t.n_bytes) for t in reader.tensors if t.name != "token_embd.weight" or tied)


def memory_bandwidth(gib: float = 1.0, threads: int = 2, repeats: int = 10) -> float:
    """Copy bandwidth in GB/s (bytes read + written), `threads` numpy copies of halves in parallel."""
    import numpy as np

    n = int(gib * 2**30) // 4
    src, dst = np.ones(n, dtype=np.float32), np.empty(n, dtype=np.float32)
    parts = np.array_split(np.arange(n), threads)
    bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts]
    best = float("inf")
    for _ in range(repeats):
        workers = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b])) for a, b in bounds]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


# ---------------------------------------------------------------------------------------- workers
def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: reset by exec, unlike ru_maxrss which a child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed(engine: Any, conv: list[Any], tokens: int, *, stream: bool = True) -> dict[str, float]:
    """One greedy reply, streamed (`Engine.stream`, read on this thread) or blocking (`Engine.generate`).

    TTFT counts from the call (prompt preparation and image loading included); decode tok/s is
    over the steps after the first.
    """
    from bimedix2.engine import observe_steps
    from bimedix2.types import GenParams

    stamps: list[float] = []
    params = GenParams(max_new_tokens=tokens, temperature=0.0)
    with observe_steps(engine.backend, lambda _: stamps.append(time.perf_counter())):
        start = time.perf_counter()
        if stream:
            "".join(engine.stream(conv, params))
        else:
            engine.generate(conv, params)
    n = len(stamps)
    decode = (n - 1) / (stamps[-1] - stamps[0]) if n > 1 else float("nan")
    return {"ttft_s": stamps[0] - start, "decode_tok_s": decode, "tokens": n}


def text_run(engine: Any, prompt: list[Any], tokens: int) -> dict[str, float]:
    """A streamed and a blocking reply to the text prompt: TTFT, decode tok/s streamed, decode tok/s blocking."""
    streamed, blocking = timed(engine, prompt, tokens), timed(engine, prompt, tokens, stream=False)
    return streamed | {"blocking_tok_s": blocking["decode_tok_s"]}


def engine_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Load one configuration, time text replies (and image replies), report peak RSS.

    For a llama.cpp GGUF, raw llama-cpp-python on the same file and prompt ids runs afterwards in
    this process, its text runs interleaved with the toolkit's, so both see the same machine load.
    """
    from bimedix2.types import ImageRef, Message

    start = time.perf_counter()
    engine = _load_engine(spec)
    out: dict[str, Any] = {"load_s": time.perf_counter() - start}
    if spec.get("serve"):
        return out | serve_phases(engine, spec["tokens"])
    prompt = [Message("user", PROMPT)]
    prepared = engine.prepare([prompt], _params(8))
    out["prompt_tokens"] = prepared.prompt_tokens[0]
    timed(engine, [Message("user", "Hello")], 4)  # warm-up
    repeats = spec.get("repeats", 3)
    if spec.get("image"):
        conv = [Message("user", IMAGE_QUESTION, (ImageRef(Path(spec["image"])),))]
        out["image"] = median_run([timed(engine, conv, 2) for _ in range(max(1, repeats - 1))])
    text_runs = [text_run(engine, prompt, spec["tokens"])]
    out["peak_rss_mib"] = peak_rss_mib()  # before anything else is loaded here
    if spec["engine"] != "llama-cpp" or spec.get("extra_buffers"):
        text_runs += [text_run(engine, prompt, spec["tokens"]) for _ in range(repeats - 1)]
        return out | {"text": median_run(text_runs)}
    raw, ids = open_raw(spec["model"]), prepared.inputs["input_ids"][0].tolist()
    raw_runs = [raw_stream(raw, ids, spec["tokens"])]
    for _ in range(repeats - 1):
        text_runs.append(text_run(engine, prompt, spec["tokens"]))
        raw_runs.append(raw_stream(raw, ids, spec["tokens"]))
    return out | {"text": median_run(text_runs), "raw": median_run(raw_runs)}


def _load_engine(spec: dict[str, Any]) -> Any:
    from bimedix2.engine import Engine

    if spec["engine"] == "llama-cpp":
        from bimedix2.model.llama_cpp import LlamaCppOptions, load_llama_cpp

        options = LlamaCppOptions(
            context=spec.get("context", 4096),
            parallel=spec.get("parallel", 1),
            extra_buffers=spec.get("extra_buffers", False),
        )
        return Engine(load_llama_cpp(spec["model"], mmproj=spec.get("mmproj"), options=options), backend="llama-cpp")
    from bimedix2.model.loader import LoadOptions, load_model

    return Engine(load_model(spec["model"], LoadOptions(device="cpu", dtype=spec["dtype"])))


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-field medians of repeated runs (and how many there were)."""
    import statistics

    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {"runs": len(runs)}


def _params(tokens: int) -> Any:
    from bimedix2.types import GenParams

    return GenParams(max_new_tokens=tokens, temperature=0.0)


def open_raw(model: str) -> Any:
    """Plain `llama_cpp.Llama` on `model`, all cores, without extra buffers (as the toolkit loads it)."""
    import llama_cpp

    original = llama_cpp.llama_cpp.llama_model_default_params

    def same_buffers() -> Any:  # Llama() has no use_extra_bufts argument
        params = original()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_cpp.llama_model_default_params = same_buffers
    try:
        cores = os.cpu_count() or 1
        return llama_cpp.Llama(model, n_ctx=4096, n_threads=cores, n_threads_batch=cores, verbose=False)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = original


def raw_stream(llm: Any, ids: list[int], tokens: int) -> dict[str, float]:
    """Greedy `Llama.generate` from prompt ids (a generator on this thread): TTFT and decode tok/s."""
    stamps = []
    llm.reset()  # no prefix reuse: the prompt is evaluated again, as the toolkit does
    start = time.perf_counter()
    for _ in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        stamps.append(time.perf_counter())
        if len(stamps) == tokens:
            break
    return {"ttft_s": stamps[0] - start, "decode_tok_s": (len(stamps) - 1) / (stamps[-1] - stamps[0])}


def serve_phases(engine: Any, tokens: int) -> dict[str, Any]:
    """The 8 questions through `serve`: one client in turn, then 8 clients at once; aggregate tok/s each."""
    import openai

    from bimedix2.serve.api import create_app
    from bimedix2.serve.background import serve_in_thread
    from bimedix2.serve.config import ServeConfig

    config = ServeConfig(model_id="bench", max_batch_size=8, request_timeout_s=3600, batch_window_s=0.05)
    app = create_app(engine, config)
    results: dict[str, Any] = {}
    with serve_in_thread(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="bench", max_retries=0, timeout=3600)

        def ask(question: str) -> int:
            r = client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": question}], temperature=0, max_tokens=tokens
            )
            return r.usage.completion_tokens

        ask("Hello")  # warm-up
        for name, clients in (("sequential", 1), ("8_clients", 8)):
            counts: list[int] = []
            start = time.perf_counter()
            if clients == 1:
                counts = [ask(q) for q in SERVE_QUESTIONS]
            else:
                threads = [threading.Thread(target=lambda q=q, got=counts: got.append(ask(q))) for q in SERVE_QUESTIONS]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            seconds = time.perf_counter() - start
            results[name] = {"tokens": sum(counts), "seconds": seconds, "tok_s": sum(counts) / seconds}
        results["largest_batch"] = app.state.batcher.stats.largest_batch
    return {"serve": results, "peak_rss_mib": peak_rss_mib()}


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in a fresh process (its own peak RSS); its JSON result."""
    print(f"  running {spec['label']} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:  # reported in the table (a crash is a result too, e.g. llama.cpp's extra buffers)
        print(f"  {spec['label']} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {"failed": f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def chest_image(path: Path) -> str:
    """A 512x400 greyscale test image (PNG), padded and resized to 336 px by the engines."""
    import numpy as np
    from PIL import Image

    if not path.is_file():
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (400, 512), dtype=np.uint8)).convert("RGB").save(path)
    return str(path)


def plan(workdir: Path, tokens: int, skip_1b: bool) -> list[dict[str, Any]]:
    """Every configuration to run, with its artefacts built or exported first."""
    from bimedix2.model.loader import embedded_default_dir

    smol = embedded_default_dir()
    specs: list[dict[str, Any]] = []
    for dtype in ("float32", "bfloat16"):
        specs.append({"label": f"smollm2 transformers {dtype}", "model": str(smol), "dtype": dtype})
    for quant in ("F16", "Q8_0", "Q4_K_M"):
        files = export(smol, workdir / "smollm2", quant)
        specs.append({"label": f"smollm2 llama-cpp {quant}", "engine": "llama-cpp", "model": files["model"]})
    specs.append(specs[-1] | {"label": "smollm2 llama-cpp Q4_K_M +extra-buffers", "extra_buffers": True})
    if not skip_1b:
        image = chest_image(workdir / "chest-512x400.png")
        src = build_random_1b(workdir / "random-1b-llava")
        for dtype in ("float32", "bfloat16"):
            specs.append({"label": f"1b transformers {dtype}", "model": str(src), "dtype": dtype, "image": image})
        for quant in ("F16", "Q8_0", "Q4_K_M"):
            files = export(src, workdir / "random-1b", quant)
            label = f"1b llama-cpp {quant}"
            specs.append({"label": label, "engine": "llama-cpp", "model": files["model"], "mmproj": files["mmproj"],
                          "image": image})  # fmt: skip
        q4 = specs[-1]
        specs.append(q4 | {"label": "1b llama-cpp Q4_K_M +extra-buffers", "extra_buffers": True})
        specs.append({"label": "1b serve llama-cpp Q4_K_M", "engine": "llama-cpp", "model": q4["model"],
                      "parallel": 8, "context": 1024, "serve": True})  # fmt: skip
    for spec in specs:
        spec.setdefault("engine", "transformers")
        spec.setdefault("tokens", tokens)
    return specs


def run_all(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each configuration in its own process; raw llama-cpp-python results become rows of their own."""
    results = {}
    for spec in specs:
        result = run_worker(spec)
        results[spec["label"]] = result | {"spec": spec}
        if "raw" in result:
            label = spec["label"].replace("llama-cpp", "raw-llama-cpp-python")
            results[label] = {"text": result["raw"], "spec": spec | {"engine": "raw"}}
    return results


# ----------------------------------------------------------------------------------------- report
def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[str, dict[str, Any]], bandwidth: float) -> list[str]:
    """The measured table, one row per configuration (bandwidth limit = GB/s / bytes per token)."""
    f16_bytes = {m: weight_bytes_per_token(r["spec"]["model"]) for m in ("smollm2", "1b")
                 for label, r in results.items() if label == f"{m} llama-cpp F16"}  # fmt: skip
    lines = [
        f"| configuration | prompt tokens | TTFT text (s) | decode tok/s streamed | decode tok/s blocking "
        f"| TTFT 1 image (s) | peak RSS (MiB) "
        f"| weights read per token (MB) | bandwidth limit tok/s ({bandwidth:.1f} GB/s) | % of limit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        if "failed" in r:
            lines.append(f"| {label} | failed ({r['failed']}) | | | | | | | | |")
        if "text" not in r:
            continue
        spec, model = r["spec"], label.split()[0]
        if spec["engine"] == "transformers":
            per_token = f16_bytes.get(model, 0) * (2 if spec["dtype"] == "float32" else 1)
        else:
            per_token = weight_bytes_per_token(spec["model"])
        limit = bandwidth * 1e9 / per_token if per_token else None
        decode, blocking = r["text"]["decode_tok_s"], r["text"].get("blocking_tok_s")
        share = 100 * max(decode, blocking or 0) / limit if limit else None
        lines.append(
            f"| {label} | {_fmt(r.get('prompt_tokens'), 'd')} | {r['text']['ttft_s']:.2f} | {decode:.1f} "
            f"| {_fmt(blocking)} "
            f"| {_fmt(r.get('image', {}).get('ttft_s'), '.2f')} | {_fmt(r.get('peak_rss_mib'), '.0f')} "
            f"| {per_token / 1e6:.0f} | {_fmt(limit)} | {_fmt(share, '.0f')} |"
        )
    return lines


def ratios(results: dict[str, dict[str, Any]], bandwidth: float) -> list[str]:
    """The issue's targets as measured ratios, each marked met / NOT met."""
    out = []

    def get(label: str, *keys: str) -> float | None:
        value: Any = results.get(label)
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def check(name: str, value: float | None, target: float, higher: bool = True) -> None:
        if value is None:
            out.append(f"- {name}: not measured")
            return
        met = value >= target if higher else value <= target
        out.append(
            f"- {name}: {value:.2f}x (target {'>=' if higher else '<='} {target}x) {'met' if met else 'NOT met'}"
        )

    for model in ("smollm2", "1b"):
        for quant in ("F16", "Q8_0", "Q4_K_M"):
            raw = get(f"{model} raw-llama-cpp-python {quant}", "text", "decode_tok_s")
            for how, key in (("streamed", "decode_tok_s"), ("blocking", "blocking_tok_s")):
                ours = get(f"{model} llama-cpp {quant}", "text", key)
                check(
                    f"{model} {quant} decode {how}, toolkit / raw llama-cpp-python", ours and raw and ours / raw, 0.95
                )
    q4 = "1b llama-cpp Q4_K_M"
    for dtype in ("float32", "bfloat16"):
        ours, theirs = get(q4, "text", "decode_tok_s"), get(f"1b transformers {dtype}", "text", "decode_tok_s")
        check(f"1b Q4_K_M decode / transformers {dtype}", ours and theirs and ours / theirs, 3.0)
    if get(q4, "text", "decode_tok_s"):
        limit = bandwidth * 1e9 / weight_bytes_per_token(results[q4]["spec"]["model"])
        best = max(get(q4, "text", "decode_tok_s"), get(q4, "text", "blocking_tok_s") or 0)
        check("1b Q4_K_M decode / bandwidth limit", best / limit, 0.6)
    rss, bf16 = get(q4, "peak_rss_mib"), get("1b transformers bfloat16", "peak_rss_mib")
    check("1b Q4_K_M peak RSS / transformers bf16", rss and bf16 and rss / bf16, 0.3, higher=False)
    image = {label: get(label, "image", "ttft_s") for label in results if get(label, "image", "ttft_s")}
    if image:
        best = min(image, key=image.__getitem__)
        auto = image.get(q4)  # auto picks llama.cpp for a .gguf model
        out.append(f"- TTFT with one 336 px image: best {best} {image[best]:.2f} s; " + ", ".join(
            f"{k.removeprefix('1b ')} {v:.2f} s" for k, v in image.items()))  # fmt: skip
        check(
            "`--engine auto` (llama.cpp for the GGUF) image TTFT / best engine", auto and auto / image[best], 1.1, False
        )
    serve = get("1b serve llama-cpp Q4_K_M", "serve")
    if serve:
        seq, par = serve["sequential"]["tok_s"], serve["8_clients"]["tok_s"]
        out.append(f"- serve 1b Q4_K_M: one client in turn {seq:.1f} tok/s, 8 clients {par:.1f} tok/s "
                   f"(largest batch {serve['largest_batch']})")  # fmt: skip
        check("serve 8 clients / one client sequential", par / seq, 3.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, default=64, help="greedy tokens per reply (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement, median kept (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="artefact cache")
    parser.add_argument("--skip-1b", action="store_true", help="SmolLM2 only (minutes instead of ~half an hour)")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    parser.add_argument("--report", type=Path, default=None, help="print the table of a saved --json run")
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(engine_worker(spec)))
        return 0
    from bimedix2.model.loader import cache_dir

    if args.report:
        saved = json.loads(args.report.read_text())
        return report(saved["results"], saved["bandwidth_gb_s"], saved["date"], saved["tokens"])
    workdir = args.workdir or cache_dir() / "bench-llama-cpp"
    workdir.mkdir(parents=True, exist_ok=True)
    specs = [spec | {"repeats": args.repeats} for spec in plan(workdir, args.tokens, args.skip_1b)]
    before = memory_bandwidth()
    results = run_all(specs)
    bandwidth = max(before, memory_bandwidth())  # the better of two: other processes only lower it
    when = time.strftime("%Y-%m-%d")
    if args.json:
        saved = {"date": when, "tokens": args.tokens, "bandwidth_gb_s": bandwidth, "results": results}
        args.json.write_text(json.dumps(saved, indent=1))
    return report(results, bandwidth, when, args.tokens)


def report(results: dict[str, dict[str, Any]], bandwidth: float, when: str, tokens: int) -> int:
    """Print the table and the target ratios."""
    import llama_cpp

    print(f"\n{when}, {os.cpu_count()} cores, llama-cpp-python {llama_cpp.__version__}, {tokens} greedy tokens, "
          f"memory copy bandwidth {bandwidth:.1f} GB/s\n")  # fmt: skip
    print("\n".join(table(results, bandwidth)))
    print("\n" + "\n".join(ratios(results, bandwidth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

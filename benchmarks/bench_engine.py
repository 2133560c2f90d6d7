"""Engine overhead: decode tokens/s and time to first token, engine vs plain transformers.

Both sides run the same model, prompt and greedy settings in this one process, interleaved,
and the medians are compared. Target: every ratio >= 1.0x (the engine adds no tax).

    .venv/bin/python benchmarks/bench_engine.py [--repeats 7] [--tokens 64]

Two comparisons per model, each timed from the raw question and image path (templating, image
decoding and preprocessing, tokenizing included on both sides):

- blocking:  `Engine.generate`  vs  chat template + PIL + processor + `model.generate`
- streaming: `Engine.stream`    vs  the same plus transformers' `TextIteratorStreamer`
  (TTFT = until the first text piece reaches the caller)

Models: the embedded SmolLM2-135M-Instruct with a text prompt, and a tiny LLaVA-shaped model
(CLIP-336 tower, 576 image tokens) with one 336 px image. Language steering is off so both
sides see the same prompt. On a shared 2-core machine keep other work quiet while measuring.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import TextIteratorStreamer

from bimedix2.engine import Engine, Sampling
from bimedix2.model.loader import load_model
from bimedix2.model.tiny import save_tiny_llava
from bimedix2.types import GenParams, ImageRef, Message


def plain(engine: Engine, conv: list[Message], params: GenParams, stream: bool) -> tuple[float, float]:
    """The plain transformers pipeline: (seconds to first text, tokens/s)."""
    loaded = engine.loaded
    config = engine.backend.generation_config(Sampling.of(params), params.max_new_tokens)
    start = time.perf_counter()
    message = conv[-1]
    content = [{"type": "image"} for _ in message.images] + [{"type": "text", "text": message.content}]
    text = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": content if message.images else message.content}],
        chat_template=loaded.template.jinja,
        tokenize=False,
        add_generation_prompt=True,
    )
    if message.images:
        images = [Image.open(ref.source).convert("RGB") for ref in message.images]
        inputs = loaded.processor(text=[text], images=images, return_tensors="pt", add_special_tokens=False)
    else:
        inputs = loaded.tokenizer([text], return_tensors="pt", add_special_tokens=False)
    prompt_len = inputs["input_ids"].shape[1]
    if not stream:
        with torch.inference_mode():
            out = loaded.model.generate(**inputs, generation_config=config)
        elapsed = time.perf_counter() - start
        return elapsed, (out.shape[1] - prompt_len) / elapsed
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict[str, torch.Tensor] = {}

    def work() -> None:
        with torch.inference_mode():
            result["out"] = loaded.model.generate(**inputs, generation_config=config, streamer=streamer)

    thread = threading.Thread(target=work)
    thread.start()
    first = None
    for piece in streamer:
        if first is None and piece:
            first = time.perf_counter() - start
    thread.join()
    elapsed = time.perf_counter() - start
    return first or elapsed, (result["out"].shape[1] - prompt_len) / elapsed


def ours(engine: Engine, conv: list[Message], params: GenParams, stream: bool) -> tuple[float, float]:
    """Engine.generate / Engine.stream from messages: (seconds to first text, tokens/s)."""
    start = time.perf_counter()
    if not stream:
        reply = engine.generate(conv, params)
        elapsed = time.perf_counter() - start
        return elapsed, reply.completion_tokens / elapsed
    chunks = engine.stream(conv, params)
    first = None
    for piece in chunks:
        if first is None and piece:
            first = time.perf_counter() - start
    elapsed = time.perf_counter() - start
    return first or elapsed, chunks.reply.completion_tokens / elapsed


def measure(name: str, engine: Engine, conv: list[Message], params: GenParams, repeats: int) -> list[float]:
    runs: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    sides = [("plain", plain), ("engine", ours)]
    for _side, fn in sides:  # warm-up
        for stream in (False, True):
            fn(engine, conv, params, stream)
    for _ in range(repeats):
        for stream in (False, True):
            for side, fn in sides:
                runs.setdefault((side, stream), []).append(fn(engine, conv, params, stream))

    def med(side: str, stream: bool, index: int) -> float:
        return statistics.median(r[index] for r in runs[(side, stream)])

    rows = [
        ("tokens/s, blocking", med("plain", False, 1), med("engine", False, 1), True),
        ("tokens/s, streaming", med("plain", True, 1), med("engine", True, 1), True),
        ("TTFT ms, streaming", med("plain", True, 0) * 1000, med("engine", True, 0) * 1000, False),
    ]
    print(f"\n{name}")
    print(f"  {'':22}{'transformers':>14}{'engine':>12}{'ratio':>9}")
    ratios = []
    for label, base, mine, higher_is_better in rows:
        ratio = mine / base if higher_is_better else base / mine
        ratios.append(ratio)
        print(f"  {label:22}{base:14.1f}{mine:12.1f}{ratio:8.2f}x")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    params = GenParams(max_new_tokens=args.tokens, temperature=0, steer_language=False)
    print("ratios: engine / transformers for tokens/s, transformers / engine for TTFT (>= 1.0x: no tax)")

    smol = Engine(load_model(None))
    ratios = measure(
        "SmolLM2-135M-Instruct, text prompt",
        smol,
        [Message("user", "Explain the difference between type 1 and type 2 diabetes in detail.")],
        params,
        args.repeats,
    )
    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_llava(Path(tmp) / "llava", image_size=336, hidden=64)
        image = Path(tmp) / "cxr.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (336, 336, 3), dtype=np.uint8)).save(image)
        llava = Engine(load_model(str(Path(tmp) / "llava")))
        ratios += measure(
            "tiny LLaVA (CLIP-336, 576 image tokens), one 336 px image",
            llava,
            [Message("user", "Describe the findings.", (ImageRef(image),))],
            params,
            args.repeats,
        )
    print(f"\nworst ratio: {min(ratios):.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()

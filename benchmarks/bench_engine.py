"""Engine overhead: decode tokens/s and time to first token, engine vs plain `model.generate`.

Both sides run the same model, prompt and greedy settings in this one process, alternating,
and the medians are compared. Target: ratio >= 1.0x (the engine adds no tax).

    .venv/bin/python benchmarks/bench_engine.py [--repeats 5] [--tokens 64]

Cases: the embedded SmolLM2-135M-Instruct with a text prompt, and a tiny LLaVA-shaped model
(CLIP-336 tower, 576 image tokens) with one 336 px image. For the engine, TTFT includes
everything a user waits for (templating, image decoding and preprocessing, tokenizing), on both
sides: the baseline is the plain transformers pipeline (chat template, PIL, processor, generate).
Language steering is off so both sides see the same prompt.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers.generation.streamers import BaseStreamer

from bimedix2.engine import Engine
from bimedix2.model.loader import load_model
from bimedix2.model.tiny import save_tiny_llava
from bimedix2.types import GenParams, ImageRef, Message


class _FirstTokenClock(BaseStreamer):
    def __init__(self, start: float) -> None:
        self.start, self.first, self.calls = start, None, 0

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == 2 and self.first is None:  # call 1 is the prompt
            self.first = time.perf_counter() - self.start

    def end(self) -> None:
        pass


def run_baseline(engine: Engine, conv: list[Message], params: GenParams) -> tuple[float, float]:
    """What a plain transformers user writes: chat template, PIL, processor, model.generate.

    Returns (ttft seconds, tokens/s), timed from the raw question and image path.
    """
    loaded = engine.loaded
    config = engine._generation_config(params, params.max_new_tokens)
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
    clock = _FirstTokenClock(start)
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, generation_config=config, streamer=clock)
    elapsed = time.perf_counter() - start
    new = out.shape[1] - inputs["input_ids"].shape[1]
    return clock.first or elapsed, new / elapsed


def run_engine(engine: Engine, conv: list[Message], params: GenParams) -> tuple[float, float]:
    """engine.stream from messages: (ttft seconds, tokens/s)."""
    start = time.perf_counter()
    stream = engine.stream(conv, params)
    first = None
    for _ in stream:
        if first is None:
            first = time.perf_counter() - start
    elapsed = time.perf_counter() - start
    return first or elapsed, stream.reply.completion_tokens / elapsed


def measure(name: str, engine: Engine, conv: list[Message], params: GenParams, repeats: int) -> dict[str, float]:
    run_engine(engine, conv, params)  # warm-up both paths
    run_baseline(engine, conv, params)
    base, ours = [], []
    for _ in range(repeats):
        base.append(run_baseline(engine, conv, params))
        ours.append(run_engine(engine, conv, params))
    b_ttft = statistics.median(t for t, _ in base)
    o_ttft = statistics.median(t for t, _ in ours)
    b_tps = statistics.median(s for _, s in base)
    o_tps = statistics.median(s for _, s in ours)
    print(f"\n{name}")
    print(f"  {'':18}{'model.generate':>16}{'engine.stream':>16}{'ratio':>10}")
    print(f"  {'tokens/s':18}{b_tps:16.1f}{o_tps:16.1f}{o_tps / b_tps:9.2f}x")
    print(f"  {'TTFT (ms)':18}{b_ttft * 1000:16.1f}{o_ttft * 1000:16.1f}{b_ttft / o_ttft:9.2f}x")
    return {"tps_ratio": o_tps / b_tps, "ttft_ratio": b_ttft / o_ttft}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    params = GenParams(max_new_tokens=args.tokens, temperature=0, steer_language=False)
    print("ratios: engine / baseline for tokens/s, baseline / engine for TTFT (>= 1.0x means no tax)")

    smol = Engine(load_model(None))
    results = [
        measure(
            "SmolLM2-135M-Instruct, text prompt",
            smol,
            [Message("user", "Explain the difference between type 1 and type 2 diabetes in detail.")],
            params,
            args.repeats,
        )
    ]

    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_llava(Path(tmp) / "llava", image_size=336, hidden=64)
        image = Path(tmp) / "cxr.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (336, 336, 3), dtype=np.uint8)).save(image)
        llava = Engine(load_model(str(Path(tmp) / "llava")))
        results.append(
            measure(
                "tiny LLaVA (CLIP-336, 576 image tokens), one 336 px image",
                llava,
                [Message("user", "Describe the findings.", (ImageRef(image),))],
                params,
                args.repeats,
            )
        )
    worst = min(min(r.values()) for r in results)
    print(f"\nworst ratio: {worst:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()

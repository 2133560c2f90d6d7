"""Padding waste and training tokens/s: naive padding vs length grouping vs packing, in one run.

A synthetic length mix shaped like BiMed-V (token counts at max_length 4096, scaled by
--max-length / 4096):

- short VQA (VQA-RAD / SLAKE / Path-VQA / PMC-VQA): one image (576 tokens) + 40-250 text tokens;
- long multi-turn chats (LLaVA-Med conversations, BiMediX v1 chats): 0-1 image + 600-3000 tokens;
- text-only MCQ (MedQA / MedMCQA / PubMedQA): 120-700 tokens.

Waste is measured over the whole set with the samplers the trainer uses (random order,
transformers' LengthGroupedSampler, best-fit-decreasing packing). Tokens/s is measured by
real forward + backward + AdamW steps of a small Llama (random weights, the image tokens
as ordinary tokens) over the same samples, batched the three ways, with the toolkit's
collator (packed rows: position_ids restart per sample, block-diagonal attention).

    python benchmarks/bench_packing.py                          # CPU, small model (about a minute)
    python benchmarks/bench_packing.py --device cuda --hidden 1024 --layers 4 --max-length 4096 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch
from transformers import LlamaForCausalLM
from transformers.trainer_pt_utils import get_length_grouped_indices

from bimedix2.model.tiny import tiny_llama_config
from bimedix2.train.data import NUM_TOKENS_KEY, TrainCollator, pack_samples, padding_waste
from bimedix2.train.encode import IGNORE_INDEX, EncodedSample

MIX = {"vqa": 0.55, "chat": 0.25, "mcq": 0.20}  # share of samples per kind


def synthetic_lengths(n: int, max_length: int, seed: int) -> list[tuple[str, int]]:
    """(kind, length) pairs with BiMed-V's shape, scaled to `max_length`."""
    rng = random.Random(seed)
    scale = max_length / 4096
    image = 576
    out = []
    for _ in range(n):
        kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == "vqa":
            length = image + rng.randint(40, 250)
        elif kind == "chat":
            length = (image if rng.random() < 0.6 else 0) + int(rng.triangular(600, 3000, 1200))
        else:
            length = rng.randint(120, 700)
        out.append((kind, max(8, min(max_length, int(length * scale)))))
    return out


def make_sample(i: int, length: int, vocab: int, rng: random.Random) -> EncodedSample:
    ids = tuple(rng.randrange(8, vocab) for _ in range(length))
    prompt = max(1, length // 3)  # the answer: the last two thirds
    labels = (IGNORE_INDEX,) * prompt + ids[prompt:]
    return EncodedSample(f"s{i}", ids, labels, ())


def batches(samples: list[EncodedSample], mode: str, batch_size: int, max_length: int, seed: int) -> list[list[tuple]]:
    """Rows (tuples of samples) grouped into batches, as the trainer would feed them."""
    if mode == "packed":
        rows = pack_samples(samples, max_length)
        random.Random(seed).shuffle(rows)
    else:
        rows = [(s,) for s in samples]
        if mode == "grouped":
            torch.manual_seed(seed)
            order = get_length_grouped_indices([len(s) for s in samples], batch_size)
        else:
            order = list(range(len(rows)))
            random.Random(seed).shuffle(order)
        rows = [rows[i] for i in order]
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def waste_of(batched: list[list[tuple]], batch_size: int) -> float:
    """Padded share of all positions when these batches are padded to their longest row."""
    return padding_waste([[len(s) for s in row] for batch in batched for row in batch], batch_size)


def train_throughput(
    batched: list[list[tuple]], args: argparse.Namespace, packing: bool, vocab: int
) -> tuple[float, int, float]:
    """(tokens/s, real tokens, seconds) of real training steps over these batches."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = LlamaForCausalLM(
        tiny_llama_config(vocab, hidden=args.hidden, layers=args.layers, max_position_embeddings=args.max_length)
    ).to(device)
    model.config.use_cache = False
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    collate = TrainCollator(pad_token_id=5, packing=packing)
    dtype = getattr(torch, args.dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step(batch: list[tuple]) -> int:
        inputs = collate([{"samples": row} for row in batch])
        real = int(inputs.pop(NUM_TOKENS_KEY))
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with autocast:
            loss = model(**inputs, use_cache=False).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        return real

    for batch in batched[: args.warmup]:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    tokens = 0
    for batch in batched[args.warmup :]:
        tokens += step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return tokens / seconds, tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="samples for the padding-waste measurement")
    parser.add_argument("--train-samples", type=int, default=96, help="samples trained on per mode (tokens/s)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4, help="samples per batch (packed: rows per batch)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()

    vocab = 512
    mix = synthetic_lengths(args.samples, args.max_length, args.seed)
    rng = random.Random(args.seed)
    samples = [make_sample(i, n, vocab, rng) for i, (_, n) in enumerate(mix)]
    waste = {
        mode: waste_of(batches(samples, mode, args.batch_size, args.max_length, args.seed), args.batch_size)
        for mode in ("naive", "grouped", "packed")
    }

    # every mode trains on the same samples (one pass) with the same rows per batch; packed rows
    # hold several samples, so that pass takes fewer batches
    subset = samples[: args.train_samples]
    results = {}
    for mode in ("naive", "grouped", "packed"):
        batched = batches(subset, mode, args.batch_size, args.max_length, args.seed)
        rate, tokens, seconds = train_throughput(batched, args, packing=mode == "packed", vocab=vocab)
        results[mode] = {"tokens_per_s": rate, "tokens": tokens, "seconds": seconds, "batches": len(batched)}

    kinds = {k: sum(1 for kind, _ in mix if kind == k) for k in MIX}
    report = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
        "dtype": args.dtype,
        "model": f"llama hidden={args.hidden} layers={args.layers}",
        "max_length": args.max_length,
        "mix": kinds,
        "mean_length": sum(len(s) for s in samples) / len(samples),
        "padding_waste": waste,
        "throughput": results,
        "ratio_grouped_vs_naive": results["grouped"]["tokens_per_s"] / results["naive"]["tokens_per_s"],
        "ratio_packed_vs_naive": results["packed"]["tokens_per_s"] / results["naive"]["tokens_per_s"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"BiMed-V-shaped mix: {kinds}, mean {report['mean_length']:.0f} tokens, max_length {args.max_length}")
    print(f"model: {report['model']} on {report['device']} ({args.dtype})")
    print(f"{'mode':<8} {'padding waste':>14} {'train tokens/s':>15} {'vs naive':>9}")
    for mode in ("naive", "grouped", "packed"):
        ratio = results[mode]["tokens_per_s"] / results["naive"]["tokens_per_s"]
        print(f"{mode:<8} {waste[mode]:>13.1%} {results[mode]['tokens_per_s']:>15,.0f} {ratio:>8.2f}x")
    print("targets: waste <= 10%, >= 1.5x tokens/s vs naive padding")


if __name__ == "__main__":
    main()

"""The contract every registered checkpoint format passes (like transformers' one tester mixin per model).

For each format: a tiny checkpoint is built, detected from its files, loaded, described by
`info` (and by `bimedix2 info`: template, BOS, stop and image tokens, vocabulary, decoding),
answers one greedy question through `Engine`, refuses 4-bit loading on a CPU, and, where the
format converts, round-trips through `convert` to the same greedy tokens. A format that cannot
load in-process here (phi3-v: its custom code needs transformers 4.4x) is in `REFUSED_HERE`
instead, and must refuse with an error that says why and how to serve it.
A new format adds its tiny builder to `TINY_CHECKPOINTS`; the test fails until it does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bimedix2.cli import main
from bimedix2.engine import Engine
from bimedix2.errors import ModelLoadError
from bimedix2.model.base import LoadedModel, LoadOptions
from bimedix2.model.formats import ConvertibleFormat, detect_format, format_names, get_format
from bimedix2.model.loader import load_model
from bimedix2.model.tiny import save_tiny_causal_lm, save_tiny_gguf, save_tiny_llava, save_tiny_llava_llama
from bimedix2.model.tiny_phi3_v import save_tiny_phi3_v
from bimedix2.types import GenParams, ImageRef, Message

CPU = LoadOptions(device="cpu", dtype="float32")
GREEDY = GenParams(max_new_tokens=8, temperature=0, steer_language=False)


def _llava_llama(path: Path) -> Path:
    save_tiny_llava_llama(path, seed=5)
    return path


TINY_CHECKPOINTS: dict[str, Callable[[Path], Path]] = {
    "gguf": lambda path: save_tiny_gguf(path.with_suffix(".gguf"), seed=4),
    "llava-llama": _llava_llama,
    "hf-llava": lambda path: save_tiny_llava(path, seed=6),
    "causal-lm": lambda path: save_tiny_causal_lm(path, seed=7),
    "phi3-v": lambda path: save_tiny_phi3_v(path, seed=8),
}

# Formats that do not load in-process in this environment: what their error says with
# trust_remote_code on (without it, every one must say how to opt in).
REFUSED_HERE: dict[str, str] = {"phi3-v": r"custom code \(written for transformers .*\) cannot run here"}

# How each format's prompts begin (`bimedix2 info`'s BOS line).
BOS_HANDLING: dict[str, str] = {
    "llava-llama": "template renders 2 BOS (released conv_llama3); tokenizer BOS not added",
    "hf-llava": "template renders 2 BOS (released conv_llama3); tokenizer BOS not added",
    "causal-lm": "template renders 1 BOS; tokenizer BOS not added",
    "gguf": "template renders 1 BOS; tokenizer BOS not added",
    "phi3-v": "template renders no BOS; Phi-3-vision's processor adds <s> through its tokenizer (add_bos_token)",
}


@pytest.fixture(scope="module", params=format_names())
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    name = request.param
    if name not in TINY_CHECKPOINTS:
        pytest.fail(f"checkpoint format {name!r} has no tiny builder in TINY_CHECKPOINTS")
    return name, TINY_CHECKPOINTS[name](tmp_path_factory.mktemp(name.replace("-", "_")) / "ckpt")


@pytest.fixture(scope="module")
def loaded(checkpoint: tuple[str, Path]) -> LoadedModel:
    name, path = checkpoint
    if name in REFUSED_HERE:
        pytest.skip(f"{name} does not load in-process here; test_refusal_says_why_and_how_to_serve checks that")
    return load_model(str(path), CPU)


def conversation(loaded: LoadedModel, image: Path) -> list[Message]:
    images = (ImageRef(image),) if loaded.has_vision else ()
    return [Message("user", "What abnormality is seen in this chest X-ray?", images)]


def greedy_tokens(loaded: LoadedModel, messages: list[Message]) -> list[int]:
    """The raw greedy continuation (token ids) of the engine's prepared prompt."""
    prepared = Engine(loaded).prepare([messages], GREEDY)
    with torch.no_grad():
        out = loaded.model.generate(**prepared.inputs, do_sample=False, max_new_tokens=GREEDY.max_new_tokens)
    return out[0, prepared.inputs["input_ids"].shape[1] :].tolist()


def test_detected_from_its_files(checkpoint: tuple[str, Path]) -> None:
    name, path = checkpoint
    assert get_format(name).detect(path)
    assert detect_format(path) == name


def test_info_describes_the_loaded_model(checkpoint: tuple[str, Path], loaded: LoadedModel) -> None:
    name, path = checkpoint
    info = loaded.info
    assert (info.name, info.source_format, info.device, info.dtype) == (str(path), name, "cpu", "float32")
    assert info.parameters == sum(p.numel() for p in loaded.model.parameters()) > 0
    assert info.chat_template == loaded.template.name
    if loaded.has_vision:
        assert info.family == "llava" and info.image_tokens == loaded.tokens_per_image > 0
        assert info.image_size == loaded.model.config.vision_config.image_size
        assert loaded.image_aspect_ratio == "pad" and loaded.image_token_id is not None
    else:
        assert info.family == "causal-lm" and info.image_size is None and info.image_tokens is None


def test_answers_one_greedy_question(loaded: LoadedModel, png_path: Path) -> None:
    reply = Engine(loaded).generate(conversation(loaded, png_path), GREEDY)
    assert reply.prompt_tokens > 0 and 1 <= reply.completion_tokens <= GREEDY.max_new_tokens
    assert reply.finish_reason in ("stop", "length")
    assert Engine(loaded).generate(conversation(loaded, png_path), GREEDY) == reply


def test_refusal_says_why_and_how_to_serve(checkpoint: tuple[str, Path]) -> None:
    name, path = checkpoint
    if name not in REFUSED_HERE:
        assert load_model(str(path), CPU).info.source_format == name
        return
    with pytest.raises(ModelLoadError, match="--trust-remote-code") as untrusted:
        load_model(str(path), CPU)
    with pytest.raises(ModelLoadError, match=REFUSED_HERE[name]) as trusted:
        load_model(str(path), LoadOptions(device="cpu", trust_remote_code=True))
    for error in (untrusted, trusted):
        assert f"bimedix2 serve-vllm --model {path} --vllm-arg=--trust-remote-code" in str(error.value)


def test_info_command_says_how_the_model_is_prompted(
    checkpoint: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name, path = checkpoint
    assert main(["info", "--model", str(path), "--device", "cpu", "--dtype", "float32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["name"], report["source_format"]) == (str(path), name)
    assert report["bos"] == BOS_HANDLING[name]
    assert report["decoding"] == {"temperature": 0.1, "top_p": 1.0, "max_new_tokens": 1024}
    assert report["loads_here"] is (name not in REFUSED_HERE)
    if report["loads_here"]:
        loaded = load_model(str(path), CPU)
        assert report["chat_template"] == loaded.template.name
        assert report["stop_tokens"] == [t for t in loaded.template.stop_tokens if t in loaded.tokenizer.get_vocab()]
        assert report["vocab_size"] == loaded.model.get_input_embeddings().weight.shape[0] > 0
        assert report["tokenizer_size"] == len(loaded.tokenizer)
        assert report["image_tokens"] == loaded.tokens_per_image
        assert report["image_aspect_ratio"] == ("pad" if loaded.has_vision else None)
    else:
        assert "--trust-remote-code" in report["load_error"] and report["stop_tokens"]
        assert report["vocab_size"] > 0 and report["image_tokens_note"]
    assert main(["info", "--model", str(path), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    for label in ("format", "chat template", "BOS", "stop tokens", "vision", "vocab size", "decoding"):
        assert any(line.startswith(f"{label} ") for line in text.splitlines()), (label, text)
    assert f"BOS             {BOS_HANDLING[name]}" in text
    assert "temperature 0.1, top_p 1.0, max_new_tokens 1024" in text


def test_four_bit_is_refused_clearly_on_a_cpu(checkpoint: tuple[str, Path]) -> None:
    name, path = checkpoint
    if "4bit" not in get_format(name).quantizations:
        match = f"{name} checkpoint, which loads with quantization none only"
    elif torch.cuda.is_available():
        pytest.skip("this machine has CUDA; tests/gpu covers 4-bit loading")
    else:
        match = r"\(QLoRA\) needs a CUDA GPU"
    with pytest.raises(ModelLoadError, match=match):
        load_model(str(path), LoadOptions(device="cpu", quantization="4bit"))


def test_convert_round_trips_to_the_same_greedy_tokens(
    checkpoint: tuple[str, Path], loaded: LoadedModel, tmp_path: Path, png_path: Path
) -> None:
    name, path = checkpoint
    fmt = get_format(name)
    if not isinstance(fmt, ConvertibleFormat):
        pytest.skip(f"{name} has no conversion")
    out = fmt.convert(path, tmp_path / "converted", LoadOptions(dtype="float32"))
    assert detect_format(out) == fmt.converts_to
    converted = load_model(str(out), CPU)
    assert converted.info.source_format == fmt.converts_to
    assert converted.has_vision == loaded.has_vision
    assert converted.template.jinja == loaded.template.jinja
    messages = conversation(loaded, png_path)
    assert greedy_tokens(converted, messages) == greedy_tokens(loaded, messages)
    assert Engine(converted).generate(messages, GREEDY) == Engine(loaded).generate(messages, GREEDY)
    with pytest.raises(ModelLoadError, match="already exists"):
        fmt.convert(path, out, LoadOptions())

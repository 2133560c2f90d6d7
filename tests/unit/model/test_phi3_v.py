"""phi3-v (MBZUAI/BiMediX2-4B): opt-in to custom code, the exact reason it cannot run here, its template, vLLM.

The checkpoint's model code is Microsoft's and is not shipped here; the files written below hold
only import lines, the ones of Phi-3-vision's released `modeling_phi3_v.py` /
`image_processing_phi3_v.py` that decide whether the code can run, to test the diagnosis.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest

from bimedix2.cli import main
from bimedix2.conversation import to_template_messages
from bimedix2.errors import ModelLoadError
from bimedix2.model.formats import detect_format
from bimedix2.model.formats.phi3_v import PHI3_VISION, image_tokens, remote_code_problems
from bimedix2.model.loader import LoadOptions, load_model
from bimedix2.model.tiny_phi3_v import build_tiny_phi3_tokenizer, save_tiny_phi3_v
from bimedix2.serve.vllm import VllmOptions, build_command, check_model
from bimedix2.types import ImageRef, Message

TRANSFORMERS = version("transformers")

# What the released Phi-3-vision files import (module top level), reduced to the lines that matter.
RELEASED_IMPORTS = {
    "configuration_phi3_v.py": "from transformers.configuration_utils import PretrainedConfig\n",
    "modeling_phi3_v.py": (
        "import torch\n"
        "from transformers.cache_utils import Cache, DynamicCache\n"
        "from transformers.modeling_attn_mask_utils import _prepare_4d_causal_attention_mask\n"
        "from .configuration_phi3_v import Phi3VConfig\n"
        "from .image_embedding_phi3_v import Phi3ImageEmbedding\n"
        "try:\n"
        "    from flash_attn import flash_attn_func\n"
        "except ImportError:\n"
        "    pass\n"
        "\n"
        "def _cache(past_key_values):\n"
        "    return DynamicCache.from_legacy_cache(past_key_values)\n"
    ),
    "image_embedding_phi3_v.py": (
        "from transformers import CLIPVisionConfig, CLIPVisionModel, PretrainedConfig\n"
        "from transformers.models.clip.modeling_clip import CLIPAttention\n"
    ),
    "processing_phi3_v.py": (
        "from transformers.processing_utils import ProcessorMixin\n"
        "from .image_processing_phi3_v import Phi3VImageProcessor\n"
    ),
    "image_processing_phi3_v.py": (
        "import numpy as np\n"
        "from transformers.image_processing_utils import BaseImageProcessor, BatchFeature\n"
        "import torch\n"
        "import torchvision\n"
    ),
}


@pytest.fixture(scope="module")
def phi3_v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_phi3_v(tmp_path_factory.mktemp("phi3v") / "BiMediX2-4B", seed=3)


@pytest.fixture()
def with_code(phi3_v: Path, tmp_path: Path) -> Path:
    path = tmp_path / "BiMediX2-4B"
    shutil.copytree(phi3_v, path)
    for name, text in RELEASED_IMPORTS.items():
        (path / name).write_text(text)
    return path


def test_detected_ahead_of_causal_lm_and_refused_without_opt_in(phi3_v: Path) -> None:
    assert detect_format(phi3_v) == "phi3-v"
    with pytest.raises(ModelLoadError) as error:
        load_model(str(phi3_v))
    message = str(error.value)
    assert (
        "ships its own model code (configuration_phi3_v.py, image_processing_phi3_v.py, modeling_phi3_v.py" in message
    )
    assert "pass --trust-remote-code (LoadOptions(trust_remote_code=True))" in message
    assert "vLLM implements Phi-3-vision natively" in message


def test_the_reason_names_the_installed_transformers_and_each_failing_line(with_code: Path) -> None:
    problems = [str(p) for p in remote_code_problems(with_code)]
    expected = []
    if importlib.util.find_spec("torchvision") is None:
        expected.append("image_processing_phi3_v.py line 4: needs torchvision, which is not installed")
    if importlib.util.find_spec("transformers.modeling_attn_mask_utils") is None:  # transformers 5 removed it
        expected.append(
            "modeling_phi3_v.py line 3: transformers.modeling_attn_mask_utils does not exist in the installed "
            f"transformers {TRANSFORMERS}"
        )
    from transformers.cache_utils import DynamicCache

    if not hasattr(DynamicCache, "from_legacy_cache"):
        expected.append(
            f"modeling_phi3_v.py line 12: DynamicCache.from_legacy_cache does not exist in the installed "
            f"transformers {TRANSFORMERS}"
        )
    assert problems == expected  # flash_attn is optional (try/except ImportError); the CLIP imports exist
    if TRANSFORMERS.startswith("5."):
        assert len(expected) >= 2
    with pytest.raises(ModelLoadError) as error:
        load_model(str(with_code), LoadOptions(trust_remote_code=True))
    message = str(error.value)
    assert message.startswith(f"{with_code}: the checkpoint's custom code (written for transformers 4.38.1) cannot run")
    assert all(problem in message for problem in expected)
    assert f"bimedix2 serve-vllm --model {with_code} --vllm-arg=--trust-remote-code" in message
    with pytest.raises(ModelLoadError, match="It cannot run in this environment in any case"):
        load_model(str(with_code))  # the untrusted error already warns


def test_scanner_finds_missing_modules_symbols_attributes_and_files(with_code: Path) -> None:
    (with_code / "modeling_phi3_v.py").write_text(
        "from transformers.no_such_module import thing\n"
        "from transformers import no_such_symbol, PreTrainedModel\n"
        "import package_that_is_not_installed_xyz\n"
        "from .image_embedding_phi3_v import Phi3ImageEmbedding\n"
        "from .helpers_not_shipped import helper\n"
        "PreTrainedModel.no_such_method\n"
        "PreTrainedModel.from_pretrained\n"
    )
    (with_code / "image_processing_phi3_v.py").write_text("import numpy\n")
    problems = [str(p) for p in remote_code_problems(with_code)]
    absent = f"does not exist in the installed transformers {TRANSFORMERS}"
    assert problems == [
        "helpers_not_shipped.py: imported by modeling_phi3_v.py but not in the checkpoint",
        f"modeling_phi3_v.py line 1: transformers.no_such_module {absent}",
        f"modeling_phi3_v.py line 2: transformers.no_such_symbol {absent}",
        "modeling_phi3_v.py line 3: needs package_that_is_not_installed_xyz, which is not installed",
        f"modeling_phi3_v.py line 6: PreTrainedModel.no_such_method {absent}",
    ]


def test_when_the_code_could_run_the_engine_limit_is_said(with_code: Path) -> None:
    for name in RELEASED_IMPORTS:
        (with_code / name).write_text("import json\n")
    assert remote_code_problems(with_code) == []
    with pytest.raises(ModelLoadError, match=r"imports cleanly here, but .*\(<\|image_N\|>\).* serve-vllm"):
        load_model(str(with_code), LoadOptions(trust_remote_code=True))


def test_template_numbers_images_across_the_conversation() -> None:
    tokenizer = build_tiny_phi3_tokenizer()
    messages = [
        Message("user", "ما التشخيص؟", (ImageRef(b"a"), ImageRef(b"b"))),
        Message("assistant", "Pneumonia."),
        Message("user", "And this one?", (ImageRef(b"c"),)),
    ]
    rendered = tokenizer.apply_chat_template(
        to_template_messages(messages, steer_language=False),
        chat_template=PHI3_VISION.jinja,
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == (
        "<|user|>\n<|image_1|>\n<|image_2|>\nما التشخيص؟<|end|>\n<|assistant|>\nPneumonia.<|end|>\n"
        "<|user|>\n<|image_3|>\nAnd this one?<|end|>\n<|assistant|>\n"
    )
    # text-only turns as plain strings render exactly as Phi-3.5-vision's own template renders them
    plain = [{"role": "user", "content": "<|image_1|>\nWhat is shown?"}]
    own = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
    assert (
        tokenizer.apply_chat_template(
            plain, chat_template=PHI3_VISION.jinja, tokenize=False, add_generation_prompt=True
        )
        == own
    )
    assert own == "<|user|>\n<|image_1|>\nWhat is shown?<|end|>\n<|assistant|>\n"
    ids = tokenizer(rendered).input_ids  # the processor's tokenizer puts <s> in front itself
    assert ids[0] == tokenizer.bos_token_id and tokenizer.convert_tokens_to_ids("<|end|>") in ids


def test_image_token_counts_follow_the_crops() -> None:
    assert image_tokens(1, 1) == 2 * 144 + 1 + 2 * 12  # one crop + the global view + row separators
    assert image_tokens(2, 2) == 757  # a square image, num_crops 4
    assert image_tokens(4, 4) == 2509  # a square image, num_crops 16


def test_info_describes_it_from_its_files(phi3_v: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", str(phi3_v), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["source_format"], report["family"], report["chat_template"]) == ("phi3-v", "phi3-v", "phi3-vision")
    assert report["stop_tokens"] == ["<|end|>", "<|endoftext|>"] and report["loads_here"] is False
    assert report["vocab_size"] == len(build_tiny_phi3_tokenizer())
    assert report["image_tokens"] is None and report["image_tokens_note"].endswith("757 for a square image")


def test_vllm_serves_it_with_trust_remote_code(
    phi3_v: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_model(str(phi3_v))  # a format vLLM loads: no conversion asked for
    template = tmp_path / "t.jinja"
    assert "--trust-remote-code" not in build_command(VllmOptions(model=str(phi3_v)), template)
    assert build_command(VllmOptions(model=str(phi3_v), trust_remote_code=True), template)[-1] == "--trust-remote-code"
    args = ["serve-vllm", "--model", str(phi3_v), "--dry-run", "--vllm-arg=--trust-remote-code"]
    assert main([*args, "--template-file", str(tmp_path / "vllm.jinja")]) == 0
    cmd = shlex.split(capsys.readouterr().out.strip())
    assert cmd[:3] == ["vllm", "serve", str(phi3_v)] and cmd.count("--trust-remote-code") == 1
    hub = ["serve-vllm", "--model", "MBZUAI/BiMediX2-4B", "--dry-run", "--vllm-arg=--trust-remote-code"]
    assert main([*hub, "--template-file", str(tmp_path / "hub.jinja")]) == 0
    assert "vllm serve MBZUAI/BiMediX2-4B" in capsys.readouterr().out

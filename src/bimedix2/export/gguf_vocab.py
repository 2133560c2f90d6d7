"""The tokenizer as GGUF metadata: byte-level BPE tokens, types, merges, special ids and the chat template.

llama.cpp calls this tokenizer model "gpt2" (Llama-3, SmolLM2 and our tiny tokenizers are all
byte-level BPE); which regex splits text before BPE is named by `tokenizer.ggml.pre`, read here
from the tokenizer's own pre-tokenizer spec rather than guessed from the model's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .common import ExportError

if TYPE_CHECKING:
    import gguf
    from transformers import PreTrainedTokenizerBase

    from ..conversation import ChatTemplate

# The split pattern of Meta's Llama-3 tokenizer.json (llama.cpp's "llama-bpe" pre-tokenizer).
LLAMA3_SPLIT_REGEX = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)


@dataclass(frozen=True)
class VocabSummary:
    """What the GGUF's tokenizer metadata says (recorded in export.json)."""

    pre_tokenizer: str
    vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    eot_token_id: int | None
    add_bos_token: bool
    chat_template: str
    stop_tokens: tuple[str, ...]


def pre_tokenizer_name(spec: dict[str, Any] | None) -> str:
    """llama.cpp's name for the pre-tokenizer described by tokenizer.json's `pre_tokenizer`."""
    parts = list(spec.get("pretokenizers", [])) if spec and spec.get("type") == "Sequence" else [spec]
    kinds = [p.get("type") if p else None for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        if parts[0].get("pattern", {}).get("Regex") == LLAMA3_SPLIT_REGEX:
            return "llama-bpe"
    raise ExportError(
        f"tokenizer pre-tokenizer {json.dumps(spec)[:200]} is not one llama.cpp's byte-level BPE "
        "knows here (Llama-3 'llama-bpe', SmolLM2 'smollm', GPT-2 'gpt-2')"
    )


def _tokenizer_spec(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"{type(tokenizer).__name__} has no fast (tokenizers) backend; GGUF export needs one")
    spec = json.loads(backend.to_str())
    decoder = spec.get("decoder") or {}
    decoders = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    if spec["model"].get("type") != "BPE" or not any(d.get("type") == "ByteLevel" for d in decoders):
        raise ExportError(
            f"only byte-level BPE tokenizers (Llama-3, SmolLM2) export to GGUF here; this one is "
            f"{spec['model'].get('type')} with decoder {decoder.get('type')}"
        )
    return spec


def token_table(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> tuple[list[str], list[int]]:
    """Token strings and llama.cpp token types for ids 0..vocab_size-1 (rows past the tokenizer padded)."""
    import gguf

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    if by_id and max(by_id) >= vocab_size:
        raise ExportError(
            f"the tokenizer has token id {max(by_id)}, but the model embeds only {vocab_size} tokens; "
            "the tokenizer does not belong to this model"
        )
    added = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def renders_bos(template: ChatTemplate, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the chat template writes the BOS token itself (then llama.cpp must not add another)."""
    bos = tokenizer.bos_token
    return "bos_token" in template.jinja or (bool(bos) and bos in template.jinja)


def _tokenizer_adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id


def add_tokenizer(
    writer: gguf.GGUFWriter, tokenizer: PreTrainedTokenizerBase, template: ChatTemplate, vocab_size: int
) -> VocabSummary:
    """Write the tokenizer metadata and chat template; returns what was written.

    `add_bos_token` is false when the template renders BOS itself: BiMediX2's template renders two
    BOS tokens on purpose (the released prompt starts with two), so llama.cpp must add none.
    """
    spec = _tokenizer_spec(tokenizer)
    pre = pre_tokenizer_name(spec.get("pre_tokenizer"))
    tokens, types = token_table(tokenizer, vocab_size)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    vocab = tokenizer.get_vocab()
    stop_ids = [vocab[s] for s in template.stop_tokens if s in vocab]
    eot = stop_ids[0] if stop_ids else None
    add_bos = False if renders_bos(template, tokenizer) else _tokenizer_adds_bos(tokenizer)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    if tokenizer.bos_token_id is not None:
        writer.add_bos_token_id(tokenizer.bos_token_id)
    if tokenizer.eos_token_id is not None:
        writer.add_eos_token_id(tokenizer.eos_token_id)
    if eot is not None:
        writer.add_eot_token_id(eot)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(False)
    writer.add_chat_template(template.jinja)
    return VocabSummary(
        pre_tokenizer=pre,
        vocab_size=vocab_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        eot_token_id=eot,
        add_bos_token=add_bos,
        chat_template=template.name,
        stop_tokens=template.stop_tokens,
    )

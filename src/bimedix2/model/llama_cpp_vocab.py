"""A llama.cpp model's own tokenizer, with the part of the transformers tokenizer API the toolkit calls.

Prompts are rendered by transformers' own chat-template renderer (the same Jinja environment and
special-token variables `apply_chat_template` uses) and tokenized by llama.cpp with special-token
parsing on and no BOS added, so the released BiMediX2 prompt gives the same ids as through
transformers (its two BOS are both in the rendered text). Decoding leaves special tokens out.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from types import ModuleType
from typing import Any


class LlamaCppTokenizer:
    """Tokenize, detokenize and render chat templates with a loaded llama.cpp vocabulary."""

    def __init__(self, lib: ModuleType, vocab: Any, chat_template: str | None) -> None:
        self._lib = lib
        self._vocab = vocab
        self.chat_template = chat_template
        self.vocab_size: int = lib.llama_vocab_n_tokens(vocab)
        self.bos_token_id = self._special(lib.llama_vocab_bos(vocab))
        self.eos_token_id = self._special(lib.llama_vocab_eos(vocab))
        self.eot_token_id = self._special(lib.llama_vocab_eot(vocab))
        self.pad_token_id = self._special(lib.llama_vocab_pad(vocab))
        self.bos_token = self.token_text(self.bos_token_id)
        self.eos_token = self.token_text(self.eos_token_id)
        self.pad_token = self.token_text(self.pad_token_id)

    def __len__(self) -> int:
        return self.vocab_size

    def _special(self, token: int) -> int | None:
        return token if 0 <= token < self.vocab_size else None

    def token_text(self, token: int | None) -> str | None:
        """The vocabulary entry of `token` as stored in the GGUF (e.g. 'Ġthe', '<|eot_id|>')."""
        if token is None:
            return None
        raw = self._lib.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw is not None else None

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens a chat template may use (`bos_token`, `eos_token`, `pad_token`)."""
        named = {"bos_token": self.bos_token, "eos_token": self.eos_token, "pad_token": self.pad_token}
        return {k: v for k, v in named.items() if v is not None}

    @functools.cache  # noqa: B019 -- one tokenizer per loaded model, kept for the model's life
    def get_vocab(self) -> dict[str, int]:
        """Vocabulary entry -> id (the first id where two entries share a text)."""
        vocab: dict[str, int] = {}
        for token in range(self.vocab_size):
            text = self.token_text(token)
            if text is not None:
                vocab.setdefault(text, token)
        return vocab

    def convert_tokens_to_ids(self, token: str) -> int | None:
        """The id of a vocabulary entry, None when the vocabulary has no such entry."""
        return self.get_vocab().get(token)

    def encode(self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`: special tokens written in it are parsed unless `split_special_tokens`
        (then they are plain text, as transformers' flag of that name); BOS only if asked for."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        parse_special = not split_special_tokens
        while True:
            out = (self._lib.llama_token * capacity)()
            n = self._lib.llama_tokenize(self._vocab, data, len(data), out, capacity, add_special_tokens, parse_special)
            if n >= 0:
                return list(out[:n])
            capacity = -n

    def decode(
        self, token_ids: Sequence[int], skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool = False
    ) -> str:
        """Text of token ids; special tokens left out unless `skip_special_tokens` is False.

        Spaces come as generated (`clean_up_tokenization_spaces` is accepted and ignored, as the engine
        passes False).
        """
        if not token_ids:
            return ""
        ids = (self._lib.llama_token * len(token_ids))(*token_ids)
        capacity = 16 * len(token_ids) + 16
        while True:
            buf = ctypes.create_string_buffer(capacity)
            n = self._lib.llama_detokenize(
                self._vocab, ids, len(token_ids), buf, capacity, False, not skip_special_tokens
            )
            if n >= 0:
                return buf.raw[:n].decode("utf-8", errors="replace")
            capacity = -n

    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]],
        chat_template: str | None = None,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
        **kwargs: Any,
    ) -> str | list[int]:
        """Render `conversation` as transformers does (same Jinja environment and variables); ids if `tokenize`."""
        from transformers.utils.chat_template_utils import render_jinja_template

        template = chat_template or self.chat_template
        if not template:
            raise ValueError("this GGUF has no chat template; pass one explicitly")
        rendered, _ = render_jinja_template(
            conversations=[conversation],
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            **{**self.special_tokens_map, **kwargs},
        )
        text = rendered[0]
        return self.encode(text) if tokenize else text

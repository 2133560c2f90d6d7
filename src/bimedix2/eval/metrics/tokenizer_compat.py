"""Two tokenizer methods transformers 5 removed, restored for the scoring libraries that still call them.

radgraph 0.1.18 (its vendored allennlp) calls `encode_plus` and `build_inputs_with_special_tokens`;
bert-score 0.3.13 calls `build_inputs_with_special_tokens([])` for an empty sentence; f1chexbert 0.0.2
calls `encode_plus(tokens)` on a list of WordPiece tokens. Both are the
field's reference implementations, so we keep them and add the methods back for the duration of
their calls only (a context manager), leaving transformers untouched outside it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from transformers.tokenization_utils_base import BatchEncoding, PreTrainedTokenizerBase

_LOCK = threading.RLock()
_DEPTH = 0


def _encode_plus(self: PreTrainedTokenizerBase, text: Any, text_pair: Any = None, **kwargs: Any) -> Any:
    """transformers 4's `encode_plus`: one (pair of) sequence(s), same as calling the tokenizer.

    A list of strings is, as in transformers 4, one sequence of already-made tokens (f1chexbert passes
    `tokenizer.tokenize(report)`): their ids, wrapped in the special tokens; calling the tokenizer would
    read it as a batch of texts instead."""
    if (
        isinstance(text, (list, tuple))
        and all(isinstance(t, str) for t in text)
        and not kwargs.get("is_split_into_words")
    ):
        if text_pair is not None or set(kwargs) - {"add_special_tokens"}:
            raise NotImplementedError("encode_plus(tokens) with a pair or options is not needed by f1chexbert")
        ids = self.convert_tokens_to_ids(list(text))
        if kwargs.get("add_special_tokens", True):
            ids = _build_inputs_with_special_tokens(self, ids)
        return BatchEncoding({"input_ids": ids, "attention_mask": [1] * len(ids)})
    return self(text, text_pair, **kwargs)


def _build_inputs_with_special_tokens(
    self: PreTrainedTokenizerBase, ids: Sequence[int], pair: Sequence[int] | None = None
) -> list[int]:
    """Wrap one sequence of ids in the tokenizer's own start/end special tokens ([CLS] .. [SEP], <s> .. </s>)."""
    if pair is not None:
        raise NotImplementedError("pairs of sequences are not needed by radgraph or bert-score")
    with_special = self("a", add_special_tokens=True)["input_ids"]
    plain = self("a", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(with_special)) if with_special[i : i + len(plain)] == plain)
    return [*with_special[:start], *ids, *with_special[start + len(plain) :]]


_METHODS = {"encode_plus": _encode_plus, "build_inputs_with_special_tokens": _build_inputs_with_special_tokens}


@contextmanager
def legacy_tokenizer_api() -> Iterator[None]:
    """Within the block, tokenizers have `encode_plus` and `build_inputs_with_special_tokens` again."""
    global _DEPTH
    with _LOCK:
        added = [name for name in _METHODS if name not in PreTrainedTokenizerBase.__dict__] if _DEPTH == 0 else []
        for name in added:
            setattr(PreTrainedTokenizerBase, name, _METHODS[name])
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                for name in _METHODS:
                    if PreTrainedTokenizerBase.__dict__.get(name) is _METHODS[name]:
                        delattr(PreTrainedTokenizerBase, name)

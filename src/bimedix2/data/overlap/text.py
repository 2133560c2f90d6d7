"""Word n-gram overlap: normalised words, and an inverted index of test n-gram hashes.

Words are the Unicode word runs (``\\w+``) of the text after the caller's folding (the toolkit's
Arabic normalisation: diacritics and tatweel dropped, alef/yaa/taa-marbuta forms unified) and
case folding, so punctuation, spacing and spelling variants never hide a shared n-gram. The
literal ``<image>`` placeholder is not a word.

The index maps the hash of each distinct test n-gram to the test items that hold it; a training
text is checked with one dictionary lookup per n-gram, never against every test item.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ...conversation import IMAGE_PLACEHOLDER

Fold = Callable[[str], str]
_WORD = re.compile(r"\w+")


def words(text: str, fold: Fold) -> list[str]:
    """The normalised words of `text`: `fold` (e.g. Arabic normalisation), case folding, ``\\w+`` runs."""
    return _WORD.findall(fold(text.replace(IMAGE_PLACEHOLDER, " ")).casefold())


def ngram_positions(tokens: Sequence[str], n: int) -> dict[int, int]:
    """{hash of an n-gram: its first position} for every distinct n-gram of `tokens` (none when shorter)."""
    out: dict[int, int] = {}
    for i in range(len(tokens) - n + 1):
        out.setdefault(hash(" ".join(tokens[i : i + n])), i)
    return out


@dataclass(frozen=True)
class TextHit:
    """A training text against one test item: distinct shared n-grams, and the first one as evidence."""

    key: int
    shared: int
    total: int  # distinct n-grams of the test item
    ngram: str

    @property
    def fraction(self) -> float:
        """Share of the test item's n-grams found in the training text."""
        return self.shared / self.total


class NgramIndex:
    """Inverted index: test n-gram hash -> keys of the test items holding it."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"n-gram length must be at least 1, got {n}")
        self.n = n
        self._postings: dict[int, list[int]] = {}
        self._sizes: dict[int, int] = {}
        self.dropped_common = 0

    def add(self, key: int, segments: Iterable[Sequence[str]]) -> int:
        """Index one test item (its word lists, n-grams never spanning two); returns its distinct n-grams."""
        grams: set[int] = set()
        for tokens in segments:
            grams.update(ngram_positions(tokens, self.n))
        for gram in grams:
            self._postings.setdefault(gram, []).append(key)
        if grams:
            self._sizes[key] = len(grams)
        return len(grams)

    def drop_common(self, limit: int) -> int:
        """Forget n-grams held by more than `limit` test items (template phrases); returns how many."""
        common = [gram for gram, keys in self._postings.items() if len(keys) > limit]
        for gram in common:
            for key in self._postings.pop(gram):
                self._sizes[key] -= 1
        self._sizes = {key: size for key, size in self._sizes.items() if size}
        self.dropped_common += len(common)
        return len(common)

    def __len__(self) -> int:
        return len(self._postings)

    def size(self, key: int) -> int:
        """Distinct indexed n-grams of a test item (0 when it had too few words)."""
        return self._sizes.get(key, 0)

    def query(self, tokens: Sequence[str]) -> list[TextHit]:
        """Test items sharing at least one n-gram with `tokens`, by key."""
        shared: dict[int, int] = {}
        first: dict[int, int] = {}
        for gram, pos in ngram_positions(tokens, self.n).items():
            for key in self._postings.get(gram, ()):
                shared[key] = shared.get(key, 0) + 1
                if key not in first or pos < first[key]:
                    first[key] = pos
        return [
            TextHit(key, count, self._sizes[key], " ".join(tokens[first[key] : first[key] + self.n]))
            for key, count in sorted(shared.items())
        ]

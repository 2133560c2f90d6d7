"""Contamination audit (`bimedix2 data overlap`): training records whose image (perceptual hash)
or text (word n-gram overlap) matches a test sample. See docs/data.md, "Contamination audit"."""

from .audit import (
    CONFIG,
    MATCHES,
    SUMMARY,
    UNREADABLE,
    AuditResult,
    BenchmarkItem,
    BenchmarkSet,
    OverlapConfig,
    SetSummary,
    audit,
    items_from_records,
    items_from_samples,
    resolve_train_file,
    write_excluded,
)
from .image import HASH_KINDS, HashIndex, UnhashableImage, hamming, perceptual_hash
from .text import NgramIndex, TextHit, words

__all__ = [
    "CONFIG",
    "HASH_KINDS",
    "MATCHES",
    "SUMMARY",
    "UNREADABLE",
    "AuditResult",
    "BenchmarkItem",
    "BenchmarkSet",
    "HashIndex",
    "NgramIndex",
    "OverlapConfig",
    "SetSummary",
    "TextHit",
    "UnhashableImage",
    "audit",
    "hamming",
    "items_from_records",
    "items_from_samples",
    "perceptual_hash",
    "resolve_train_file",
    "words",
    "write_excluded",
]

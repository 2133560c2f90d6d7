"""Plain frozen dataclasses passed between layers. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["system", "user", "assistant"]
Language = Literal["en", "ar"]

RESEARCH_NOTICE = "Research use only: BiMediX2 toolkit output is not medical advice and is not for clinical use."
RESEARCH_NOTICE_AR = "للاستخدام البحثي فقط: مخرجات هذه الأداة ليست استشارة طبية ولا تصلح للاستخدام السريري."


@dataclass(frozen=True)
class ImageRef:
    """An image attached to a user message: a file path or raw encoded bytes.

    `window` (DICOM only): a preset name (lung, mediastinum, bone, brain, abdomen) or
    "CENTRE,WIDTH"; None uses the file's own VOI LUT or window. `frame`: 0-based frame of a
    multi-frame DICOM (default: the middle one) or page of an animated GIF / multi-page TIFF
    (default: the first one).
    """

    source: Path | bytes
    name: str = ""
    window: str | None = None
    frame: int | None = None

    def label(self) -> str:
        """A short name for error messages (never the pixels)."""
        if self.name:
            return self.name
        if isinstance(self.source, Path):
            return str(self.source)
        return f"<{len(self.source)} bytes>"


@dataclass(frozen=True)
class Message:
    """One turn. Images are only allowed on user turns; they are shown before the text."""

    role: Role
    content: str
    images: tuple[ImageRef, ...] = ()


@dataclass(frozen=True)
class GenParams:
    """Decoding settings. Defaults are BiMediX2's released ones (temperature 0.1, 1024 tokens)."""

    max_new_tokens: int = 1024
    temperature: float = 0.1
    top_p: float = 1.0
    do_sample: bool | None = None  # None: sample iff temperature > 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Off by default: the released model answers in the question's language by itself, and the
    # released code never appends a language instruction. True appends LANGUAGE_HINTS to the last user turn.
    steer_language: bool = False

    @property
    def sampling(self) -> bool:
        """Whether decoding samples (True) or is greedy (False)."""
        return self.temperature > 0 if self.do_sample is None else self.do_sample


@dataclass(frozen=True)
class Reply:
    """A finished answer."""

    text: str
    language: Language
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]


@dataclass(frozen=True)
class ModelInfo:
    """What `bimedix2 info` prints: where the model came from and how it runs."""

    name: str
    source_format: str
    family: Literal["llava", "causal-lm"]
    chat_template: str
    device: str
    dtype: str
    parameters: int
    image_size: int | None = None
    image_tokens: int | None = None

"""Server settings (a frozen dataclass; the CLI and tests build it, the app reads it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

API_KEY_ENV = "BIMEDIX2_API_KEY"


@dataclass(frozen=True)
class ServeConfig:
    """How the API server behaves. Defaults are safe: loopback only, no local files, bounded queue."""

    model_id: str = "bimedix2"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # None: no auth (the CLI reads $BIMEDIX2_API_KEY when --api-key is not given)
    max_batch_size: int = 8
    max_queue: int = 64  # waiting requests (not counting the running batch) before 429
    batch_window_s: float = 0.02  # after the first request of a batch, wait this long for more
    request_timeout_s: float = 300.0  # from arrival to the last token, else 504 (or an SSE error)
    max_body_bytes: int = 32 * 1024 * 1024
    max_image_bytes: int = 16 * 1024 * 1024  # per decoded image
    local_image_dirs: tuple[Path, ...] = ()  # file:// image URLs allowed only under these directories
    default_max_tokens: int = 1024
    steer_language: bool = True
    log_requests: bool = False  # log request metadata (never prompts or images)
    created: int = field(default=0)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")


def api_key_from_env() -> str | None:
    """The API key from $BIMEDIX2_API_KEY, or None when unset or empty."""
    return os.environ.get(API_KEY_ENV) or None

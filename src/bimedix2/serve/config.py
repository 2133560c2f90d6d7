"""Server settings (a frozen dataclass; the CLI and tests build it, the app reads it)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..types import GenParams

API_KEY_ENV = "BIMEDIX2_API_KEY"
MiB = 1024 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """How the API server behaves. Defaults are safe: loopback only, no local files, bounded queue."""

    model_id: str = "bimedix2"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # None: no auth (the CLI reads $BIMEDIX2_API_KEY when --api-key is not given)
    max_batch_size: int = 8
    max_queue: int = 64  # waiting requests (not counting the running batch) before 429
    batch_window_s: float = 0.02  # after the first request of a batch, wait this long for more (batch scheduler)
    scheduler: str = "auto"  # continuous (rows join between decoding steps), batch, or auto: continuous if it can
    request_timeout_s: float = 300.0  # from arrival to the last token, else 504 (or an SSE error)
    max_body_bytes: int = 32 * MiB
    max_image_bytes: int = 16 * MiB  # per decoded image
    local_image_dirs: tuple[Path, ...] = ()  # file:// image URLs allowed only under these directories
    default_max_tokens: int = GenParams.max_new_tokens
    steer_language: bool = GenParams.steer_language
    log_requests: bool = False  # log method, path (no query), status and timing; never headers or content
    created: int = 0  # the models' `created` time; 0: when the app starts
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides the bind address (and loopback names); "*": any
    allowed_origins: tuple[str, ...] = ()  # browser origins (scheme://host[:port]) allowed cross-origin, via CORS
    shutdown_grace_s: float = 10.0  # on SIGTERM, wait this long for in-flight requests, then cancel them
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this long
    body_timeout_s: float = 60.0  # the whole request body must arrive within this long (408 otherwise)

    def __post_init__(self) -> None:
        checks = {
            "max_batch_size must be at least 1": self.max_batch_size >= 1,
            "max_queue must be at least 1": self.max_queue >= 1,
            "request_timeout_s must be positive": self.request_timeout_s > 0,
            "batch_window_s must be 0 or more": self.batch_window_s >= 0,
            "scheduler must be auto, continuous or batch": self.scheduler in ("auto", "continuous", "batch"),
            "max_body_bytes must be positive": self.max_body_bytes > 0,
            "max_image_bytes must be positive": self.max_image_bytes > 0,
            "default_max_tokens must be at least 1": self.default_max_tokens >= 1,
            "shutdown_grace_s must be 0 or more": self.shutdown_grace_s >= 0,
            "keep_alive_s must be positive": self.keep_alive_s > 0,
            "body_timeout_s must be positive": self.body_timeout_s > 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(message)
        for origin in self.allowed_origins:
            if origin != "*" and (urlsplit(origin).scheme not in ("http", "https") or not urlsplit(origin).netloc):
                raise ValueError(f"allowed origin {origin!r} must look like https://host[:port] (or be '*')")
        for host in self.allowed_hosts:
            if host != "*" and ("*" in host[1:] or (host.startswith("*") and not host.startswith("*."))):
                raise ValueError(f"allowed host {host!r}: a wildcard must look like '*.example.com' (or be '*')")


def public_model_id(model: str | None) -> str | None:
    """The model id shown to clients for `--model`: a local checkpoint's directory (or file) name, never its path."""
    if model is None:
        return None
    path = Path(model).expanduser()
    return path.resolve().name if path.exists() else model


def api_key_from_env() -> str | None:
    """The API key from $BIMEDIX2_API_KEY, or None when unset or empty."""
    return os.environ.get(API_KEY_ENV) or None

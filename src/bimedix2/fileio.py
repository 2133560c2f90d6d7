"""Small file helpers every layer shares: atomic directory writes and strict JSONL reading."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh directory beside `target`; it becomes `target` only if the block succeeds.

    An interrupted or failed write never leaves a half-written `target`. Renaming onto an
    existing non-empty `target` raises OSError (the caller decides whether that is fine).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def iter_jsonl(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line; `error` names the file and line of a bad one.

    Streams the file, so memory stays flat however long it is.
    """
    if not path.is_file():
        raise error(f"{path}: file not found")
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise error(f"{path}:{line_no}: expected a JSON object")
            yield line_no, obj

"""One run per job folder: an OS file lock (``fcntl.flock``) on ``OUT_DIR/job.lock``.

The lock belongs to the open file, so the OS releases it when the holder exits or crashes
(SIGKILL included); nothing stale is left to clean up. The holder writes its pid, host and
start time into the file, so a second run fails at once with an error naming them instead of
paying for the same requests twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from ..errors import RecordError

LOCK_FILE = "job.lock"


class JobLock:
    """Exclusive lock of a job folder; a context manager (or ``acquire``/``release``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._handle: IO[str] | None = None

    def acquire(self) -> JobLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise RecordError(
                f"{self.folder} is in use by another run ({holder}); wait for it to finish or stop it, then rerun"
            ) from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}) + "\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        info: Any = json.loads(text)
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder not recorded yet"

"""llama-cpp-python, imported on demand, with llama.cpp's log captured instead of printed.

llama.cpp and libmtmd log every load step to stderr. Here their messages go to a small ring
buffer: errors quoted in the toolkit's own exceptions (`last_errors`), everything printed only
when asked (`verbose`, or `BIMEDIX2_LLAMA_CPP_VERBOSE=1`).
"""

from __future__ import annotations

import collections
import ctypes
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any

from ..errors import ModelLoadError

INSTALL_HINT = (
    "llama-cpp-python is not installed: `scripts/build-llama-cpp.sh` (run by `scripts/setup.sh`) builds it "
    "from source with the llama.cpp#25814 image fix (minutes); `pip install -e '.[cpu]'` installs the stock build"
)
_LEVEL_ERROR = 3  # ggml_log_level: 1 info, 2 warn, 3 error, 4 debug, 5 continue
_LEVEL_CONT = 5

_state: dict[str, Any] = {"callback": None, "verbose": False, "last_level": 0}
_errors: collections.deque[str] = collections.deque(maxlen=8)
_init_lock = threading.Lock()


CLS_FIRST_BUILD = "mtmd25844"  # the local version label scripts/build-llama-cpp.sh gives its build


def mtmd_orders_cls_first(lib: ModuleType) -> bool:
    """Whether this llama-cpp-python is the build with llama.cpp#25814 fixed (CLS first in libmtmd's
    LLaVA graph): 0.3.36 as patched by scripts/build-llama-cpp.sh, marked by its version's local label."""
    local = str(getattr(lib, "__version__", "")).partition("+")[2]
    return CLS_FIRST_BUILD in local.split(".")


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python can be imported here (without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def import_llama_cpp(*, verbose: bool = False) -> tuple[ModuleType, ModuleType]:
    """(`llama_cpp`, `llama_cpp.mtmd_cpp`) with the backend initialised and logs captured.

    Sets OMP_WAIT_POLICY=passive unless the environment already names a policy: libgomp reads it once,
    when llama.cpp's library loads, and its default (worker threads spinning between decode calls)
    made decoding from a long-lived thread several times slower on a busy CPU (docs/serving.md).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        import llama_cpp
        from llama_cpp import mtmd_cpp
    except ImportError as exc:
        raise ModelLoadError(f"{INSTALL_HINT} ({exc})") from None
    with _init_lock:
        _state["verbose"] = verbose or os.environ.get("BIMEDIX2_LLAMA_CPP_VERBOSE") == "1"
        if _state["callback"] is None:
            callback = llama_cpp.llama_log_callback(_on_log)
            _state["callback"] = callback  # keep the ctypes callback alive for the process
            llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
            mtmd_cpp.mtmd_log_set(callback, ctypes.c_void_p(0))
            mtmd_cpp.mtmd_helper_log_set(callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
    return llama_cpp, mtmd_cpp


def _on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    message = text.decode("utf-8", errors="replace") if text else ""
    if level == _LEVEL_CONT:
        level = _state["last_level"]
    _state["last_level"] = level
    if level == _LEVEL_ERROR and message.strip():
        _errors.append(message.strip())
    if _state["verbose"]:
        print(message, end="", file=sys.stderr, flush=True)


def clear_errors() -> None:
    """Forget the llama.cpp errors seen so far (call before a step whose failure you will report)."""
    _errors.clear()


def last_errors() -> str:
    """llama.cpp's error messages since `clear_errors`, joined; '' when there were none."""
    return "; ".join(_errors)


def with_errors(message: str) -> str:
    """`message` plus what llama.cpp said about it, when it said anything."""
    said = last_errors()
    return f"{message} (llama.cpp: {said})" if said else message

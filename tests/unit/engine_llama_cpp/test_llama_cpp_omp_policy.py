"""Loading llama.cpp sets OMP_WAIT_POLICY=passive for its libgomp unless the user named a policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "import os; from bimedix2.model.llama_cpp_lib import import_llama_cpp; "
    "import_llama_cpp(); print(os.environ['OMP_WAIT_POLICY'])"
)


@pytest.mark.parametrize(("given", "expected"), [(None, "passive"), ("active", "active"), ("PASSIVE", "PASSIVE")])
def test_wait_policy(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected

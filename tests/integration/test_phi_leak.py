"""Patient data never leaks: run the CLI and the server on pydicom's DICOM test files (good, compressed,
truncated) and search every output - stdout, stderr, HTTP responses, server logs and every file written
under the cache, home and working directories - for the files' patient names and IDs.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from tests.fakes.processes import stop_process, wait_for_health

pytestmark = pytest.mark.integration

GOOD = ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "examples_ybr_color.dcm", "MR_small_RLE.dcm"]
BAD = ["MR_truncated.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm", "badVR.dcm", "reportsi.dcm"]


def _path(name: str) -> Path:
    return Path(get_testdata_file(name))


def _phi_strings() -> list[str]:
    """Every file's PatientName and PatientID, and their name components, of 4+ characters.

    Shorter values (rtdose's ID '204', a name 'PLA') cannot be told apart from ordinary output
    (timings, 'DISPLAY'), so they are left out rather than make the test flaky.
    """
    found: set[str] = set()
    for name in GOOD + BAD:
        ds = pydicom.dcmread(_path(name), stop_before_pixels=True, force=True)
        for keyword in ("PatientName", "PatientID"):
            value = str(ds.get(keyword, "") or "").strip()
            parts = [value, *value.replace("=", "^").split("^")]
            found.update(part.strip() for part in parts if len(part.strip()) >= 4)
    return sorted(found)


PHI = _phi_strings()


def _assert_clean(where: str, text: str | bytes) -> None:
    blob = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    leaked = [value for value in PHI if value.encode() in blob]
    assert not leaked, f"patient data {leaked} found in {where}"


def _assert_files_clean(*roots: Path) -> int:
    count = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 512 * 1024 * 1024:
                _assert_clean(str(path), path.read_bytes())
                count += 1
    return count


@pytest.fixture()
def sandbox(tmp_path: Path) -> tuple[dict[str, str], list[Path]]:
    """Environment whose cache, home and working directory are fresh folders we can search afterwards."""
    roots = [tmp_path / "cache", tmp_path / "home", tmp_path / "work"]
    for root in roots:
        root.mkdir()
    env = dict(os.environ)
    env.update(
        BIMEDIX2_CACHE_DIR=str(roots[0]),
        HOME=str(roots[1]),
        XDG_CACHE_HOME=str(roots[1] / ".cache"),
        HF_HUB_OFFLINE="1",
        PYTHONWARNINGS="default",
        TMPDIR=str(roots[2]),
    )
    return env, roots


def _cli(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bimedix2.cli", "-v", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_phi_strings_are_real() -> None:
    assert "CompressedSamples^CT1" in PHI and "1CT1" in PHI and "4MR1" in PHI


def test_cli_ask_and_chat_never_show_patient_data(tiny_llava_path: Path, sandbox) -> None:  # noqa: ANN001
    env, roots = sandbox
    common = ["--model", str(tiny_llava_path), "--max-new-tokens", "4", "--temperature", "0"]
    images = [arg for name in GOOD for arg in ("--image", str(_path(name)))]
    ask = _cli(["ask", *common, "--window", "lung", *images, "Describe these scans."], env, roots[2])
    assert ask.returncode == 0, ask.stderr[-2000:]
    assert "multi-frame DICOM with 15 frames; using frame 7" in ask.stderr  # notes are shown ...
    _assert_clean("ask stdout", ask.stdout)
    _assert_clean("ask stderr", ask.stderr)  # ... but never patient data

    for name in BAD:
        failed = _cli(["ask", *common, "--image", str(_path(name)), "What is this?"], env, roots[2])
        assert failed.returncode == 2 and f"{name}:" in failed.stderr, failed.stderr[-2000:]
        _assert_clean(f"ask stderr for {name}", failed.stderr + failed.stdout)

    script = "".join(f"/image {_path(name)}\n" for name in [*BAD, "CT_small.dcm"]) + "What is shown?\n/quit\n"
    chat = _cli(["chat", *common, "--frame", "0"], env, roots[2], stdin=script)
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert chat.stderr.count("error:") >= len(BAD) and "(1 image(s) attached" in chat.stderr
    _assert_clean("chat stdout", chat.stdout)
    _assert_clean("chat stderr", chat.stderr)
    assert _assert_files_clean(*roots) >= 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_never_shows_patient_data(tiny_llava_path: Path, sandbox) -> None:  # noqa: ANN001
    httpx = pytest.importorskip("httpx", reason="the serve extra (httpx) is not installed")
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    env, roots = sandbox
    port = _free_port()
    log = roots[2] / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bimedix2.cli",
                "-v",
                "serve",
                "--model",
                str(tiny_llava_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--served-model-name",
                "tiny",
                "--log-requests",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=roots[2],
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_health(base, server, 180, lambda: log.read_text()[-3000:])
            bodies: list[str] = []
            with httpx.Client(base_url=base, timeout=120) as client:
                for name in GOOD + BAD:
                    data = base64.b64encode(_path(name).read_bytes()).decode()
                    for extra in ({}, {"dicom_window": "lung", "dicom_frame": 0}):
                        request = {
                            "model": "tiny",
                            "max_tokens": 4,
                            "temperature": 0,
                            **extra,
                            "messages": [
                                {
                                    "role": "user",
                                    "content": [
                                        {
                                            "type": "image_url",
                                            "image_url": {"url": f"data:application/dicom;base64,{data}"},
                                        },
                                        {"type": "text", "text": "What is shown?"},
                                    ],
                                }
                            ],
                        }
                        response = client.post("/v1/chat/completions", json=request)
                        assert response.status_code == (200 if name in GOOD else 400), (name, response.text[:500])
                        bodies.append(response.text)
                    preview = client.post("/v1/bimedix2/preview", content=_path(name).read_bytes())
                    assert preview.status_code == (200 if name in GOOD else 400), (name, preview.text[:500])
                    bodies.append(preview.text if preview.status_code != 200 else "")
                    streamed = client.post("/v1/chat/completions", json={**request, "stream": True})
                    bodies.append(streamed.text)
            for i, body in enumerate(bodies):
                _assert_clean(f"HTTP response {i}", body)
        finally:
            stop_process(server)
    _assert_clean("server log", log.read_bytes())
    _assert_files_clean(*roots)

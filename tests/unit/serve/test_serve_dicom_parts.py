"""Per-image DICOM options in the chat API (issue 16): `"dicom": {"window": ..., "frame": N}` on an image part.

Each image part may carry its own window (a preset, "CENTRE,WIDTH" or [centre, width]) and frame;
what it leaves out comes from the request's `dicom_window` / `dicom_frame`. Mistakes name the
message and the part (`messages[i].content[j].dicom.window`).
"""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from tests.fakes.dicom_files import greyscale_dicom_bytes

from bimedix2.engine import Engine
from bimedix2.errors import RequestError
from bimedix2.images import DEFAULT_LIMITS, open_image
from bimedix2.serve.api import create_app
from bimedix2.serve.background import serve_in_thread
from bimedix2.serve.config import ServeConfig
from bimedix2.serve.convert import to_messages
from bimedix2.serve.routes.chat import parse_request
from bimedix2.types import ImageRef

CONFIG = ServeConfig(model_id="m")
DICOM_URL = "data:application/dicom;base64," + base64.b64encode(greyscale_dicom_bytes(frames=3)).decode()


def image(dicom: object = None) -> dict[str, object]:
    part: dict[str, object] = {"type": "image_url", "image_url": {"url": DICOM_URL}}
    if dicom is not None:
        part["dicom"] = dicom
    return part


def body(*parts: dict[str, object], **extra: object) -> dict[str, object]:
    content = [{"type": "text", "text": "قارن بين الشريحتين."}, *parts]
    return {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **extra}


def refs(data: dict[str, object]) -> list[ImageRef]:
    return list(to_messages(parse_request(json.dumps(data).encode(), CONFIG), CONFIG)[-1].images)


def refused(data: dict[str, object]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        refs(data)
    return caught.value


def test_each_image_gets_its_own_window_and_frame() -> None:
    got = refs(body(image({"window": "lung", "frame": 0}), image({"window": [400, 1800], "frame": 2}), image()))
    assert [(r.window, r.frame) for r in got] == [("lung", 0), ("400.0,1800.0", 2), (None, None)]
    assert [r.name for r in got] == [f"messages[0].content[{j}]" for j in (1, 2, 3)]


def test_request_options_fill_what_a_part_leaves_out() -> None:
    got = refs(body(image({"frame": 1}), image({"window": "-600,1500"}), image(), dicom_window="bone", dicom_frame=2))
    assert [(r.window, r.frame) for r in got] == [("bone", 1), ("-600,1500", 2), ("bone", 2)]


def test_the_options_change_what_the_model_is_shown() -> None:
    # the middle frame holds values 1536-3071: all above the lung window (white), graded by C 2300 W 800
    lung, bone, frame2 = refs(body(image({"window": "lung"}), image({"window": [2300, 800]}), image({"frame": 2})))
    loaded = [open_image(ref, DEFAULT_LIMITS) for ref in (lung, bone, frame2)]
    assert "lung" in loaded[0].rendering and "2300" in loaded[1].rendering
    assert [x.frame for x in loaded] == [1, 1, 2]  # no frame: the middle of 3
    pixels = [np.asarray(x.image) for x in loaded]
    assert not np.array_equal(pixels[0], pixels[1])


@pytest.mark.parametrize(
    ("dicom", "param", "needle"),
    [
        ({"window": "bogus"}, "messages[0].content[2].dicom.window", "use one of lung"),
        ({"window": [40]}, "messages[0].content[2].dicom.window", "[centre, width]"),
        ({"window": [40, 0]}, "messages[0].content[2].dicom.window", "width must be at least 1"),
        ({"window": ["a", "b"]}, "messages[0].content[2].dicom.window", "preset name"),
        ({"frame": -1}, "messages[0].content[2].dicom.frame", "greater than or equal to 0"),
        ({"frame": True}, "messages[0].content[2].dicom.frame", "valid integer"),
        ({"frame": 10**30}, "messages[0].content[2].dicom.frame", "less than or equal to"),
        ({"level": 3}, "messages[0].content[2].dicom.level", "Extra inputs are not permitted"),
        ("lung", "messages[0].content[2].dicom", "valid dictionary"),
    ],
)
def test_bad_options_name_message_and_part(dicom: object, param: str, needle: str) -> None:
    error = refused(body(image({"window": "lung"}), image(dicom)))
    assert error.http_status == 400 and error.param == param and str(error).startswith(f"{param}: "), str(error)
    assert needle in str(error), str(error)


def test_a_part_window_is_used_instead_of_a_bad_request_window() -> None:
    """The request's window is checked at the images it applies to: a part with its own window is not one."""
    assert refs(body(image({"window": "lung"}), dicom_window="bogus"))[0].window == "lung"
    error = refused(body(image({"window": "lung"}), image(), dicom_window="bogus"))
    assert error.param == "messages[0].content[2]" and "dicom_window 'bogus'" in str(error)


def test_server_answers_per_image_options(tiny_engine: Engine) -> None:
    with serve_in_thread(create_app(tiny_engine, CONFIG)) as base:
        url = f"{base}/v1/chat/completions"
        ok = httpx.post(url, json=body(image({"window": "lung", "frame": 0}), image({"frame": 2})), timeout=120)
        assert ok.status_code == 200, ok.text
        assert ok.json()["usage"]["prompt_tokens"] > 2 * tiny_engine.loaded.tokens_per_image
        out_of_range = httpx.post(url, json=body(image(), image({"frame": 7})), timeout=120)
        assert out_of_range.status_code == 400 and out_of_range.json()["error"]["code"] == "invalid_image"
        assert "messages[0].content[2]: frame 7 is out of range" in out_of_range.json()["error"]["message"]
        bad = httpx.post(url, json=body(image({"window": "bogus"})), timeout=120)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages[0].content[1].dicom.window"

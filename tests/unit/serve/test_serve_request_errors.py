"""Request mistakes at the HTTP edge: out-of-range numbers and bad content parts are 400s naming the field."""

from __future__ import annotations

import json

import pytest

from bimedix2.errors import RequestError
from bimedix2.serve.config import ServeConfig
from bimedix2.serve.convert import to_messages
from bimedix2.serve.routes.chat import parse_request

CONFIG = ServeConfig(model_id="m")


def body(**kw: object) -> bytes:
    data: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    data.update(kw)
    return json.dumps(data).encode()


def refused(raw: bytes) -> RequestError:
    with pytest.raises(RequestError) as caught:
        to_messages(parse_request(raw, CONFIG), CONFIG)
    return caught.value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", 1180591620717411303424),
        ("seed", -(2**63) - 5),
        ("max_tokens", 10**30),
        ("max_completion_tokens", 2**63),
        ("n", 10**30),
        ("dicom_frame", 10**30),
        ("max_tokens", True),  # a JSON boolean is no count
        ("seed", 1.5),
    ],
)
def test_out_of_range_numbers_are_400_naming_the_field(field: str, value: object) -> None:
    error = refused(body(**{field: value}))
    assert error.http_status == 400 and error.param == field and str(error).startswith(f"{field}: "), str(error)


def test_numbers_in_range_are_accepted() -> None:
    req = parse_request(body(seed=2**63 - 1, max_tokens=4096, temperature=2.0, top_p=1.0), CONFIG)
    assert req.seed == 2**63 - 1
    assert parse_request(body(seed=-(2**63)), CONFIG).seed == -(2**63)


def parts(*items: object) -> bytes:
    return body(messages=[{"role": "user", "content": [{"type": "text", "text": "ما هذا؟"}, *items]}])


@pytest.mark.parametrize(
    ("raw", "param", "needle"),
    [
        (parts({"type": "foo"}), "messages[0].content[1]", "unknown part type 'foo'; use 'text' or 'image_url'"),
        (parts({"text": "x"}), "messages[0].content[1]", "part has no 'type'; use 'text' or 'image_url'"),
        (parts("just a string"), "messages[0].content[1]", "a content part must be an object"),
        (parts({"type": "image_url"}), "messages[0].content[1].image_url", "required"),
        (parts({"type": "image_url", "image_url": {}}), "messages[0].content[1].image_url.url", "required"),
        (parts({"type": "text", "text": 5}), "messages[0].content[1].text", "string"),
        (body(messages=[{"role": "user", "content": 5}]), "messages[0].content", "a string or a list of parts"),
        (body(messages=[{"role": "doctor", "content": "x"}]), "messages[0].role", "'system', 'developer'"),
        (body(stop=["a", ""]), "stop", "must not be empty"),
    ],
)
def test_bad_content_parts_name_message_and_part(raw: bytes, param: str, needle: str) -> None:
    error = refused(raw)
    message = str(error)
    assert error.param == param and message.startswith(f"{param}: "), message
    assert needle in message, message
    assert ".str" not in message and "tagged-union" not in message and "messages.0" not in message, message


def test_image_placeholder_text_is_text_not_refused() -> None:
    """A literal '<image>' in text is ordinary text (issue 15 defect 7): the request converts unchanged."""
    raw = body(messages=[{"role": "system", "content": "<image>"}, {"role": "user", "content": "hi"}])
    messages = to_messages(parse_request(raw, CONFIG), CONFIG)
    assert messages[0].content == "<image>" and not messages[0].images
    raw = parts({"type": "text", "text": "look: <image>"})
    assert to_messages(parse_request(raw, CONFIG), CONFIG)[0].content == "ما هذا؟\nlook: <image>"


def test_bad_dicom_window_names_the_image_part() -> None:
    url = "data:application/dicom;base64,AAAA"
    raw = body(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        dicom_window="bogus",
    )
    error = refused(raw)
    assert error.param == "messages[0].content[0]", str(error)
    assert "dicom_window 'bogus'" in str(error) and "lung" in str(error) and "40,400" in str(error)

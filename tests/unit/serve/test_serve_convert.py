"""OpenAI request validation and conversion to Messages / ImageRefs / GenParams."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import ValidationError

from bimedix2.errors import RequestError
from bimedix2.serve.config import ServeConfig
from bimedix2.serve.convert import to_gen_params, to_messages
from bimedix2.serve.protocol import ChatCompletionRequest
from bimedix2.types import GenParams, ImageRef

PNG_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake bytes").decode()


def req(**kw: object) -> ChatCompletionRequest:
    body: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return ChatCompletionRequest.model_validate(body)


def image_msg(url: str, text: str = "ما هذا؟") -> list[dict[str, object]]:
    return [
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


def test_string_and_part_messages_become_messages() -> None:
    messages = to_messages(
        req(
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "anemia?"}]},
                {"role": "assistant", "content": "A low haemoglobin."},
                *image_msg(PNG_URL),
            ]
        ),
        ServeConfig(),
    )
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1].content == "What is\nanemia?"
    assert messages[3].content == "ما هذا؟"
    assert messages[3].images == (ImageRef(b"\x89PNG fake bytes", "messages[3].content[1]"),)


def test_gen_params_defaults_and_overrides() -> None:
    assert to_gen_params(req(), ServeConfig(default_max_tokens=77)) == GenParams(max_new_tokens=77)
    params = to_gen_params(req(temperature=0, top_p=0.5, max_tokens=9, stop="\n\n", seed=3), ServeConfig())
    assert (params.temperature, params.top_p, params.max_new_tokens, params.stop, params.seed) == (
        0,
        0.5,
        9,
        ("\n\n",),
        3,
    )
    assert to_gen_params(req(max_completion_tokens=5, max_tokens=9), ServeConfig()).max_new_tokens == 5
    assert to_gen_params(req(steer_language=False), ServeConfig()).steer_language is False


@pytest.mark.parametrize(
    "field",
    [
        {"temperature": 3},
        {"top_p": 0},
        {"max_tokens": 0},
        {"n": 2},
        {"presence_penalty": 0.5},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"stop": [""]},
        {"messages": []},
        {"tools": []},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "x"}]}]},
    ],
)
def test_invalid_requests_fail_validation(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        req(**field)


@pytest.mark.parametrize(
    ("url", "status", "needle"),
    [
        ("data:image/gif;base64,AAAA", 400, "unsupported image type image/gif"),
        ("data:image/png,rawtext", 400, "base64"),
        ("data:image/png;base64,***", 400, "not valid base64"),
        ("data:image/png;base64", 400, "malformed"),
        ("https://example.org/x.png", 400, "remote image URLs"),
        ("ftp://x/y.png", 400, "data: URL"),
        ("file:///etc/passwd", 403, "disabled"),
    ],
)
def test_bad_image_urls_are_request_errors(url: str, status: int, needle: str) -> None:
    with pytest.raises(RequestError) as info:
        to_messages(req(messages=image_msg(url)), ServeConfig())
    assert info.value.http_status == status
    assert needle in str(info.value)
    assert "messages[0].content[1]" in str(info.value)


def test_oversized_data_url_is_413() -> None:
    big = "data:image/png;base64," + base64.b64encode(b"x" * 5000).decode()
    with pytest.raises(RequestError) as info:
        to_messages(req(messages=image_msg(big)), ServeConfig(max_image_bytes=1000))
    assert info.value.http_status == 413 and info.value.code == "image_too_large"


def test_local_files_only_under_allowed_dirs(tmp_path: Path, png_path: Path) -> None:
    config = ServeConfig(local_image_dirs=(png_path.parent,))
    messages = to_messages(req(messages=image_msg(png_path.as_uri())), config)
    assert messages[0].images[0].source == png_path.resolve()
    outside = tmp_path.parent / "elsewhere.png"
    with pytest.raises(RequestError) as info:
        to_messages(req(messages=image_msg(outside.as_uri())), config)
    assert info.value.http_status == 403
    sneaky = png_path.parent.as_uri() + "/../../etc/passwd"
    with pytest.raises(RequestError):
        to_messages(req(messages=image_msg(sneaky)), config)


def test_images_only_on_user_messages() -> None:
    body = [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": PNG_URL}}]}]
    with pytest.raises(RequestError, match="only user messages"):
        to_messages(req(messages=body), ServeConfig())


def test_dicom_options_reach_image_ref() -> None:
    dicom = "data:application/dicom;base64," + base64.b64encode(b"D" * 200).decode()
    ref = to_messages(req(messages=image_msg(dicom), dicom_window="lung", dicom_frame=2), ServeConfig())[0].images[0]
    assert (ref.window, ref.frame) == ("lung", 2)
    plain = to_messages(req(messages=image_msg(dicom)), ServeConfig())[0].images[0]
    assert (plain.window, plain.frame) == (None, None)


def test_gen_params_follow_the_toolkit_defaults() -> None:
    params = to_gen_params(req(), ServeConfig())
    assert params == GenParams(max_new_tokens=ServeConfig().default_max_tokens)
    assert params.steer_language is GenParams().steer_language
    assert to_gen_params(req(), ServeConfig(steer_language=True)).steer_language is True

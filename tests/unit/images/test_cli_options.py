"""--window and --frame on `ask` and `chat`: parsing, errors, and that they reach the image reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from bimedix2.cli import build_parser, main


@pytest.mark.parametrize("command", ["ask", "chat"])
def test_options_parse(command: str) -> None:
    extra = ["q"] if command == "ask" else []
    args = build_parser().parse_args([command, "--window", "lung", "--frame", "3", *extra])
    assert (args.window, args.frame) == ("lung", 3)
    args = build_parser().parse_args([command, "--window=-600,1500", *extra])
    assert (args.window, args.frame) == ("-600,1500", None)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--window", "lungs", "unknown window 'lungs'"),
        ("--frame", "-1", "frame must be 0 or more"),
        ("--frame", "two", "frame must be a whole number"),
    ],
)
def test_bad_options_are_argparse_errors(option: str, value: str, message: str, capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["ask", option, value, "q"])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_ask_frame_and_window_reach_the_dicom_reader(tiny_llava_path: Path, capsys, caplog) -> None:  # noqa: ANN001
    rtdose = get_testdata_file("rtdose.dcm")  # 15 frames
    base = ["ask", "--model", str(tiny_llava_path), "--temperature", "0", "--max-new-tokens", "2", "--image", rtdose]
    assert main([*base, "--frame", "15", "Which frame?"]) == 2
    assert "frame 15 is out of range; the file has 15 frame(s), 0 to 14" in capsys.readouterr().err
    with caplog.at_level("WARNING", logger="bimedix2.images"):
        assert main([*base, "--frame", "14", "--window", "brain", "Which frame?"]) == 0
    assert any("using frame 14 (as asked)" in r.getMessage() for r in caplog.records)


def test_chat_applies_options_to_attached_images(tiny_llava_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    import io

    ct = get_testdata_file("CT_small.dcm")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"/image {ct}\nWhat is shown?\n/quit\n"))
    args = ["chat", "--model", str(tiny_llava_path), "--temperature", "0", "--max-new-tokens", "2", "--frame", "1"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 0 and "frame 1 is out of range; the file has 1 frame(s), 0 to 0" in err

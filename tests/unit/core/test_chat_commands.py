"""The pure parts of `bimedix2 chat`: slash commands, /set, the /save-/load format, history, multi-line input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bimedix2.commands.chat_commands import (
    COMMANDS,
    ChatCommandError,
    Command,
    Conversation,
    apply_set,
    conversation_from_json,
    conversation_to_json,
    describe_settings,
    parse_command,
)
from bimedix2.commands.chat_render import looks_like_markdown, rows_used
from bimedix2.commands.chat_terminal import (
    BlockReader,
    History,
    completions,
    decode_entry,
    encode_entry,
    history_path,
    kept_in_history_file,
)
from bimedix2.types import GenParams, ImageRef, Message


# ------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("What is anemia?", None),
        ("ما هو فقر الدم؟", None),
        ("  /quit ", Command("/quit")),
        ("/exit", Command("/quit")),
        ("/bye", Command("/quit")),
        ("/clear", Command("/reset")),
        ("/SET temperature 0.2", Command("/set", "temperature 0.2")),
        ("/system  أنت مساعد طبي.  ", Command("/system", "أنت مساعد طبي.")),
        ("/image a.png b.png", Command("/image", "a.png b.png")),
        ("/save out.json", Command("/save", "out.json")),
    ],
)
def test_parse_command(line: str, expected: Command | None) -> None:
    assert parse_command(line) == expected


def test_unknown_command_names_help() -> None:
    with pytest.raises(ChatCommandError, match=r"unknown command '/frobnicate'; /help lists"):
        parse_command("/frobnicate now")


# ----------------------------------------------------------------------------------------- /set
def test_set_changes_one_setting_and_lists_them() -> None:
    params = GenParams(temperature=0.1, max_new_tokens=1024)
    params = apply_set(params, "temperature 0")
    params = apply_set(params, "top-p 0.9")
    params = apply_set(params, "max_new_tokens 64")
    params = apply_set(params, "seed 7")
    assert (params.temperature, params.top_p, params.max_new_tokens, params.seed) == (0.0, 0.9, 64, 7)
    assert apply_set(params, "seed none").seed is None
    listing = describe_settings(params)
    assert "temperature 0.0 (greedy)" in listing and "top_p 0.9" in listing and "seed 7" in listing
    assert "max_new_tokens 64" in listing


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("temperature -1", "0 \\(greedy\\) or more"),
        ("temperature nan", "0 \\(greedy\\) or more"),
        ("temperature warm", "'warm' is not a number"),
        ("top_p 0", "more than 0 and at most 1"),
        ("max_new_tokens 0", "at least 1"),
        ("max_new_tokens 2.5", "not a whole number"),
        ("colour blue", "unknown setting 'colour'. Available: temperature, top_p, max_new_tokens, seed"),
        ("temperature", "usage: /set NAME VALUE"),
    ],
)
def test_set_refuses_bad_values(arg: str, message: str) -> None:
    with pytest.raises(ChatCommandError, match=message):
        apply_set(GenParams(), arg)


# ------------------------------------------------------------------------------- conversation
def test_retry_replaces_the_last_answer_and_a_stopped_question_is_kept_aside() -> None:
    conv = Conversation(system="Be brief.")
    q1 = conv.question("What is anemia?")
    conv.answered(q1, "A lack of red cells.")
    assert conv.messages(Message("user", "x"))[0] == Message("system", "Be brief.")
    assert conv.retry() == q1 and conv.turns == []
    conv.answered(q1, "Too few red blood cells.")
    q2 = conv.question("ما هو فقر الدم؟")
    conv.stopped(q2)
    assert conv.turns == [q1, Message("assistant", "Too few red blood cells.")]
    assert conv.retry() == q2 and len(conv.turns) == 2
    conv.reset()
    assert conv.system == "Be brief." and conv.turns == [] and conv.unanswered is None
    with pytest.raises(ChatCommandError, match="no question to answer again"):
        conv.retry()


def test_pending_images_go_with_the_next_question_only(tmp_path: Path) -> None:
    conv = Conversation()
    image = ImageRef(tmp_path / "cxr.png")
    conv.pending_images.append(image)
    question = conv.question("What is seen?")
    assert question.images == (image,)
    conv.answered(question, "A clear chest.")
    assert conv.pending_images == [] and conv.question("And now?").images == ()


# ------------------------------------------------------------------------------ /save and /load
def test_save_load_round_trip_with_arabic_and_images(tmp_path: Path) -> None:
    image = tmp_path / "ct.png"
    image.write_bytes(b"not read here")
    conv = Conversation(system="أنت مساعد طبي.")
    q = Message("user", "ما التشخيص؟", (ImageRef(image, window="lung", frame=2),))
    conv.answered(q, "لا يوجد استرواح صدري.")
    conv.stopped(Message("user", "And the heart?"))
    doc = conversation_to_json(conv)
    assert doc["messages"][1]["images"] == [{"path": str(image.resolve()), "window": "lung", "frame": 2}]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    loaded = conversation_from_json(json.loads(path.read_text(encoding="utf-8")), path)
    assert loaded.system == conv.system and loaded.turns == conv.turns
    assert loaded.unanswered == Message("user", "And the heart?")
    assert conversation_to_json(loaded) == doc
    assert "pixels" not in json.dumps(doc) and "bytes" not in json.dumps(doc)


def test_a_relative_image_path_is_read_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    doc = {
        "format": "bimedix2-chat",
        "version": 1,
        "messages": [{"role": "user", "content": "hi", "images": [{"path": "a.png"}]}],
    }
    conv = conversation_from_json(doc, tmp_path / "c.json")
    assert conv.unanswered is not None and conv.unanswered.images[0].source == tmp_path / "a.png"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "not a saved chat"),
        ({"format": "other"}, "not a saved chat"),
        ({"format": "bimedix2-chat", "version": 2, "messages": []}, "version 2 is not supported"),
        ({"format": "bimedix2-chat", "version": 1, "messages": {}}, '"messages" must be a list'),
        ({"format": "bimedix2-chat", "version": 1, "messages": [{"role": "bot", "content": "x"}]}, "message 0: role"),
        ({"format": "bimedix2-chat", "version": 1, "messages": [{"role": "user", "content": 3}]}, "content must be"),
        (
            {"format": "bimedix2-chat", "version": 1, "messages": [{"role": "user", "content": "x", "extra": 1}]},
            "unknown key\\(s\\) extra",
        ),
        (
            {"format": "bimedix2-chat", "version": 1, "messages": [{"role": "assistant", "content": "x"}]},
            "expected a user message",
        ),
        (
            {
                "format": "bimedix2-chat",
                "version": 1,
                "messages": [{"role": "user", "content": "x", "images": [{"path": "/nonexistent/scan.png"}]}],
            },
            "image /nonexistent/scan.png not found",
        ),
    ],
)
def test_load_refuses_a_bad_document_clearly(doc: object, message: str, tmp_path: Path) -> None:
    with pytest.raises(ChatCommandError, match=message) as info:
        conversation_from_json(doc, tmp_path / "c.json")
    assert str(tmp_path / "c.json") in str(info.value) and "nothing was changed" in str(info.value)


# ------------------------------------------------------------------------------------- history
def test_history_path_follows_xdg(tmp_path: Path) -> None:
    assert history_path({"XDG_DATA_HOME": "/data", "HOME": "/h"}) == Path("/data/bimedix2/chat_history")
    assert history_path({"HOME": "/h"}) == Path("/h/.local/share/bimedix2/chat_history")
    assert history_path({"XDG_DATA_HOME": "relative", "HOME": "/h"}) == Path("/h/.local/share/bimedix2/chat_history")


@pytest.mark.parametrize("entry", ["plain", 'multi\nline """ block', "back\\slash\\n literal", "ما هو\nفقر الدم؟"])
def test_history_entries_survive_the_file(entry: str) -> None:
    line = encode_entry(entry)
    assert "\n" not in line and decode_entry(line) == entry


def test_history_file_keeps_typed_text_only_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "bimedix2" / "chat_history"
    history = History(path, limit=3)
    for entry in ["What is anemia?", "What is anemia?", "/image /scans/jane_doe.png", "", "a\nb", "/set seed 1"]:
        history.add(entry)
    assert history.entries == ["What is anemia?", "/image /scans/jane_doe.png", "a\nb", "/set seed 1"]
    assert path.read_text(encoding="utf-8").splitlines() == ["What is anemia?", "a\\nb", "/set seed 1"]
    assert path.stat().st_mode & 0o077 == 0
    again = History(path, limit=2)
    assert again.load() == ["a\nb", "/set seed 1"]
    assert History(None).add("x") is False and History(tmp_path / "missing").load() == []
    assert not kept_in_history_file("  /IMAGE x.png") and kept_in_history_file("/load x.json")


def test_completions_for_commands_and_paths(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "scan1.png").write_bytes(b"")
    assert completions("/sa", 0, "/sa", COMMANDS) == ["/save "]
    assert completions("hello /sa", 6, "/sa", COMMANDS) == []
    prefix = str(tmp_path / "scan")
    line = f"/image {prefix}"
    assert completions(line, len("/image "), prefix, COMMANDS) == [prefix + "1.png", prefix + "s/"]


# ---------------------------------------------------------------------------------- multi-line
def test_block_reader() -> None:
    blocks = BlockReader()
    assert blocks.feed("one line") == "one line"
    assert blocks.feed('"""') is None and blocks.active
    assert blocks.feed("first") is None
    assert blocks.feed("  indented") is None
    assert blocks.feed('last"""') == "first\n  indented\nlast"
    assert not blocks.active
    assert blocks.feed('"""start') is None and blocks.feed('"""') == "start"
    assert blocks.feed('"""recalled\nblock"""') == "recalled\nblock"  # a history entry
    assert blocks.feed('"""dropped') is None
    blocks.cancel()
    assert blocks.feed("after") == "after"


# ---------------------------------------------------------------------------------- rendering
def test_markdown_detection_and_rows() -> None:
    assert looks_like_markdown("**Anemia** is a condition.")
    assert looks_like_markdown("Causes:\n- iron\n- B12")
    assert looks_like_markdown("## الأعراض\n1. التعب")
    assert not looks_like_markdown("Anemia is a lack of red blood cells. It causes tiredness (often).")
    assert rows_used("abc", 10) == 1
    assert rows_used("a" * 10, 10) == 1 and rows_used("a" * 11, 10) == 2
    assert rows_used("x\n\ny", 10) == 3
    assert rows_used("字" * 6, 10) == 2  # wide characters take two cells


class _Terminal:
    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, text: str) -> None:
        self.written.append(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_a_markdown_answer_is_erased_and_rendered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from bimedix2.commands.chat_render import MarkdownRenderer

    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr("shutil.get_terminal_size", lambda: os.terminal_size((20, 10)))
    out = _Terminal()
    answer = "**Causes**\n- iron deficiency anaemia"  # 10 cells + 27 cells at 20 columns: 1 + 2 rows
    assert MarkdownRenderer(out, enabled=True).rerender(answer)
    shown = "".join(out.written)
    assert shown.startswith("\x1b[3F\x1b[J") and "**" not in shown and "Causes" in shown
    assert not MarkdownRenderer(out, enabled=False).rerender(answer)
    assert not MarkdownRenderer(out, enabled=True).rerender("no markup here")
    assert not MarkdownRenderer(out, enabled=True).rerender("- item\n" * 10)  # 11 rows: scrolled off a 10-row screen

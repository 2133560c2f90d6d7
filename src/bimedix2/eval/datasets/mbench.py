"""BiMed-MBench files -> samples: the released layout and our older `en.jsonl` / `ar.jsonl` one.

Released (mbzuai-oryx/BiMediX2 `BiMed-MBench/data/test_sets/`): `llava_med_eval_qa50_qa.jsonl`
(English) and `llava_med_eval_qa50_qa_arabic_verified.jsonl` (Arabic), 193 questions each, with
the images in `images/` beside them. `--data bimed-mbench=PATH` takes that folder (or the
`BiMed-MBench` folder above it), either file alone, or a folder with `en.jsonl` / `ar.jsonl`.
A file's language is read from its questions (the share of Arabic letters), never from its name.
Images are looked up in `images/` beside the file, else beside the file itself.

Each record keeps the fields the released judge prompt formats (`fig_label`, `fig_caption`,
`in_text_mention`: null, "" and lists are all valid) untouched in `meta["record"]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...conversation import detect_language
from ...errors import EvalDataError
from ...types import ImageRef
from .base import EvalSample, read_jsonl

# The released file names, and the names the released shell scripts pass (data/test_sets/bimed-mbench_*.jsonl).
RELEASED_FILES = (
    "llava_med_eval_qa50_qa.jsonl",
    "llava_med_eval_qa50_qa_arabic_verified.jsonl",
    "bimed-mbench_eng.jsonl",
    "bimed-mbench_ara.jsonl",
)
SUBFOLDERS = (".", "test_sets", "data/test_sets")  # PATH may be test_sets/, data/ or BiMed-MBench/
REQUIRED = ("question_id", "text", "gpt4_answer", "fig_caption", "fig_label", "in_text_mention", "domain", "type")
IMAGE_TAG = "<image>"


def question_text(text: str) -> str:
    """The question as the released gen_ans.py prompt records it: `<image>` removed, stripped
    (the image itself is attached to the turn, as bimedix_inference.py `gen_answer` does)."""
    return text.replace(IMAGE_TAG, "").strip()


def mbench_files(root: Path, languages: Sequence[str] = ("en", "ar")) -> list[Path]:
    """The JSONL files to read under `root` (a file, a released folder or an en/ar.jsonl folder)."""
    if root.is_file():
        return [root]
    for sub in SUBFOLDERS:
        folder = root if sub == "." else root / sub
        found = [folder / name for name in RELEASED_FILES if (folder / name).is_file()]
        if found:
            return found
    legacy = [root / f"{lang}.jsonl" for lang in languages if (root / f"{lang}.jsonl").is_file()]
    if legacy:
        return legacy
    raise EvalDataError(
        f"no BiMed-MBench files in {root}: give the released data/test_sets folder (with {RELEASED_FILES[0]} "
        f"and/or {RELEASED_FILES[1]}), one of those files, or a folder with "
        + " / ".join(f"{lang}.jsonl" for lang in languages)
    )


def images_dir(file: Path) -> Path:
    """Where a file's images are: `images/` beside it, else its own folder."""
    beside = file.parent / "images"
    return beside if beside.is_dir() else file.parent


def _check(rec: dict[str, Any], where: str) -> None:
    for key in REQUIRED:
        if key not in rec:
            raise EvalDataError(
                f"{where}: missing field {key!r} (the released judge prompt and scoring read "
                f"{', '.join(REQUIRED)}; null is allowed for in_text_mention)"
            )
    if not isinstance(rec["domain"], dict):
        raise EvalDataError(f"{where}: 'domain' must be a mapping of domain flags, got {type(rec['domain']).__name__}")


def file_language(records: Sequence[dict[str, Any]]) -> str:
    """ "ar" when the questions are mostly in Arabic script, else "en"."""
    return detect_language("\n".join(str(r.get("text", "")) for r in records))


def read_mbench_file(path: Path) -> list[EvalSample]:
    """One BiMed-MBench file -> samples (id `<lang>-<question_id>`, reference = gpt4_answer)."""
    lines = list(read_jsonl(path))
    language = file_language([rec for _, rec in lines])
    folder = images_dir(path)
    out = []
    for lineno, rec in lines:
        where = f"{path}:{lineno}"
        _check(rec, where)
        images: tuple[ImageRef, ...] = ()
        if rec.get("image"):
            image = folder / str(rec["image"])
            if not image.is_file():
                raise EvalDataError(f"{where}: image {image} not found (put the images in {folder})")
            images = (ImageRef(image),)
        out.append(
            EvalSample(
                id=f"{language}-{rec['question_id']}",
                text=question_text(str(rec["text"])),
                reference=str(rec["gpt4_answer"]),
                images=images,
                language=language,
                meta={"record": rec, "file": str(path)},
            )
        )
    return out


def read_mbench(root: Path, languages: Sequence[str] = ("en", "ar")) -> list[EvalSample]:
    """Every sample under `root` whose language is in `languages`; two files of one language are an error."""
    by_language: dict[str, Path] = {}
    samples = []
    for file in mbench_files(root, languages):
        part = read_mbench_file(file)
        if not part:
            continue
        lang = part[0].language
        if lang in by_language:
            raise EvalDataError(
                f"{by_language[lang]} and {file} both hold {lang} questions; point --data at one of them"
            )
        by_language[lang] = file
        if lang in languages:
            samples += part
    if not samples:
        raise EvalDataError(f"no BiMed-MBench questions in {', '.join(languages)} under {root}")
    return samples

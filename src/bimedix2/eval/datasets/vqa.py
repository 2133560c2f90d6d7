"""VQA test sets (VQA-RAD, SLAKE, Path-VQA, and the Hugging Face parquet copies) as MultiMedEval reads them."""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import EvalDataError
from ...types import ImageRef
from .base import EvalSample, get_field, load_json, need, reader

# MultiMedEval (corentin-ryr/MultiMedEval, multimedeval/vqa.py) does not read the original releases of
# VQA-RAD and Path-VQA: it loads the Hugging Face copies `flaviagiammarino/vqa-rad` and
# `flaviagiammarino/path-vqa` (split "test"). Those copies were built from the original files by each
# repository's `scripts/processing.py`: drop duplicate (image, question, answer) triplets, then
# normalise question and answer with `hf_copy_clean`. Reading the original files we apply the same two
# steps, so the samples and answer strings equal MultiMedEval's; the gold answer stays that string
# (MultiMedEval's yes/no prompt rule looks at it before `.lower().strip()`).


def hf_copy_clean(value: Any) -> str:
    """flaviagiammarino's clean-up (vqa-rad / path-vqa `scripts/processing.py`): lower-case, runs of
    spaces -> one, " ?" -> "?", strip."""
    return re.sub(" +", " ", str(value).lower()).replace(" ?", "?").strip()


def _first_of_each(records: list[dict[str, Any]], keys: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Keep the first of records equal on `keys` (all fields when None), as pandas `drop_duplicates`."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for rec in records:
        fields = keys if keys is not None else tuple(sorted(rec))
        key = tuple((k, type(rec.get(k)).__name__, repr(rec.get(k))) for k in fields)
        if key not in seen:
            seen.add(key)
            out.append(rec)
    return out


VQA_RAD_TEST_PHRASES = ("test_freeform", "test_para")


@reader("vqa-rad-json")
def read_vqa_rad(path: Path, options: Any) -> list[EvalSample]:
    """VQA-RAD's OSF release: `VQA_RAD Dataset Public.json` + `VQA_RAD Image Folder/`.

    Test set as the `flaviagiammarino/vqa-rad` test split MultiMedEval loads (451 questions):
    phrase_type test_freeform / test_para, duplicate (image_name, question, answer) triplets dropped,
    question and answer through `hf_copy_clean`. `answer_type` (absent from the HF copy) is kept as
    metadata for the improved mode only."""
    root = path.parent if path.is_file() else path
    json_path = path if path.is_file() else need(root / "VQA_RAD Dataset Public.json", "VQA-RAD JSON")
    images = need(root / "VQA_RAD Image Folder", "VQA-RAD image folder")
    records = load_json(json_path)
    if not isinstance(records, list):
        raise EvalDataError(f"{json_path}: expected a JSON list of question records")
    test = []
    for i, rec in enumerate(records):
        where = f"{json_path} record {i}"
        if get_field(rec, "phrase_type", where) in VQA_RAD_TEST_PHRASES:
            for key in ("image_name", "question", "answer", "qid"):
                get_field(rec, key, where)
            test.append(rec)
    return [
        EvalSample(
            id=f"vqa-rad-{rec['qid']}",
            text=hf_copy_clean(rec["question"]),
            reference=hf_copy_clean(rec["answer"]),
            images=(ImageRef(images / str(rec["image_name"])),),
            meta={"answer_type": str(rec.get("answer_type", "")).upper(), "organ": rec.get("image_organ", "")},
        )
        for rec in _first_of_each(test, ("image_name", "question", "answer"))
    ]


@dataclass(frozen=True)
class SlakeOptions:
    """`slake-json` options."""

    languages: tuple[str, ...] = ("en",)  # q_lang values kept ("zh" adds the Chinese questions)


@reader("slake-json", SlakeOptions)
def read_slake(path: Path, options: SlakeOptions) -> list[EvalSample]:
    """SLAKE 1.0 (also the `BoKelvin/SLAKE` copy MultiMedEval loads): `test.json` + `imgs/<img_name>`.

    MultiMedEval (multimedeval/vqa.py `SLAKE.setup`) keeps the test questions with q_lang "en" and
    takes question and answer as they are (its gold is `answer.lower().strip()`, applied at scoring);
    `languages` can add "zh" for our own runs."""
    root = path.parent if path.is_file() else path
    json_path = path if path.is_file() else need(root / "test.json", "SLAKE test.json")
    images = need(root / "imgs", "SLAKE image folder")
    languages = set(options.languages)
    out = []
    for i, rec in enumerate(load_json(json_path)):
        where = f"{json_path} record {i}"
        lang = str(get_field(rec, "q_lang", where))
        if lang not in languages:
            continue
        out.append(
            EvalSample(
                id=f"slake-{get_field(rec, 'qid', where)}",
                text=str(get_field(rec, "question", where)),
                reference=str(get_field(rec, "answer", where)),
                images=(ImageRef(images / str(get_field(rec, "img_name", where))),),
                language=lang,
                meta={"answer_type": str(rec.get("answer_type", "")).upper(), "modality": rec.get("modality", "")},
            )
        )
    return out


class _PlainUnpickler(pickle.Unpickler):
    """Path-VQA ships pickles of plain lists/dicts/strings: refuse anything that would run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is allowed")


@reader("pathvqa-pkl")
def read_path_vqa(path: Path, options: Any) -> list[EvalSample]:
    """Path-VQA's release (`pvqa/`): `qas/test/test_qa.pkl` (list of {image, question, answer}) +
    `images/test/<image>.jpg`.

    Test set as the `flaviagiammarino/path-vqa` test split MultiMedEval loads: duplicate records
    dropped, question and answer through `hf_copy_clean`. Path-VQA has no answer_type field; the
    improved mode calls the yes/no ones closed."""
    qa = need(path / "qas" / "test" / "test_qa.pkl", "Path-VQA test QA pickle")
    images = need(path / "images" / "test", "Path-VQA test image folder")
    try:
        records = _PlainUnpickler(io.BytesIO(qa.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise EvalDataError(f"{qa}: not a plain-data pickle ({exc})") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise EvalDataError(f"{qa}: expected a list of {{image, question, answer}} records")
    out = []
    for i, rec in enumerate(_first_of_each(records)):
        where = f"{qa} record {i}"
        answer = hf_copy_clean(get_field(rec, "answer", where))
        out.append(
            EvalSample(
                id=f"path-vqa-{i}",
                text=hf_copy_clean(get_field(rec, "question", where)),
                reference=answer,
                images=(ImageRef(images / f"{get_field(rec, 'image', where)}.jpg"),),
                meta={"answer_type": "CLOSED" if answer in ("yes", "no") else "OPEN"},
            )
        )
    return out


@dataclass(frozen=True)
class ParquetOptions:
    """`hf-vqa-parquet` options."""

    id_prefix: str | None = None  # sample ids are <id_prefix>-<file>-<row>; default: the folder's name


@reader("hf-vqa-parquet", ParquetOptions)
def read_hf_vqa_parquet(path: Path, options: ParquetOptions) -> list[EvalSample]:
    """The Hugging Face copies MultiMedEval loads (flaviagiammarino/vqa-rad, /path-vqa):
    `data/test-*.parquet` with columns image{bytes,path}, question, answer (already cleaned)."""
    import pyarrow.parquet as pq

    files = sorted(path.glob("data/test-*.parquet")) if path.is_dir() else [path]
    if not files:
        raise EvalDataError(f"no test parquet files under {path / 'data'} (expected data/test-*.parquet)")
    prefix = options.id_prefix or path.name
    out = []
    for file in files:
        for i, row in enumerate(pq.read_table(file).to_pylist()):
            where = f"{file} row {i}"
            image = get_field(row, "image", where)
            answer = str(get_field(row, "answer", where))
            out.append(
                EvalSample(
                    id=f"{prefix}-{file.stem}-{i}",
                    text=str(get_field(row, "question", where)),
                    reference=answer,
                    images=(ImageRef(image["bytes"], name=f"{file.name}#{i}"),),
                    meta={"answer_type": ""},
                )
            )
    return out

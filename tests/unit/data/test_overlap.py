"""`bimedix2 data overlap`: perceptual-hash image matches, word n-gram text matches (English and
Arabic), outputs, --exclude, bad inputs, the eval loaders' layouts, and a 20k-record run."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bimedix2.cli import main
from bimedix2.data.overlap import (
    CONFIG,
    MATCHES,
    SUMMARY,
    UNREADABLE,
    BenchmarkItem,
    BenchmarkSet,
    NgramIndex,
    OverlapConfig,
    UnhashableImage,
    audit,
    hamming,
    items_from_records,
    perceptual_hash,
    words,
)
from bimedix2.errors import ConfigError, RecordError
from bimedix2.eval.metrics.normalize import normalize_arabic
from bimedix2.types import ImageRef

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eval"

EN_TEST = (
    "The chest radiograph demonstrates a large right sided pleural effusion with mediastinal shift "
    "to the left and collapse of the right lower lobe"
)
# tashkeel-free, plain alef and taa-marbuta: the form a test set keeps
AR_TEST = (
    "تظهر الصورة الشعاعية للصدر انصبابا جنبيا كبيرا في الجهة اليمنى مع انزياح المنصف الى اليسار وانخماص الفص السفلي"
)
# the same sentence as a training record writes it: tashkeel, tatweel, hamza-alef forms, yaa/alef maqsura
AR_TRAIN = (
    "تُظْهِرُ الصّورةُ الشُّعاعيّةُ للصّـــدر انصبابًا جَنْبيًّا كبيرًا في الجِهةِ اليُمْنى مع انزياحِ المَنْصِفِ إلى اليسار وانخماصِ الفَصِّ السُّفليّ"
)


def picture(seed: int, size: tuple[int, int] = (256, 224)) -> Image.Image:
    """A structured RGB test picture: smooth random blobs plus fine texture (made in-process)."""
    rng = np.random.default_rng(seed)
    blobs = Image.fromarray((rng.random((5, 6, 3)) * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
    pixels = np.asarray(blobs).astype(np.int16) + rng.integers(-20, 20, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def reencoded(img: Image.Image, path: Path, size: tuple[int, int] = (160, 140), quality: int = 40) -> Path:
    img.resize(size).save(path, "JPEG", quality=quality)
    return path


def record(rid: str, answer: str, image: str | None = None, question: str = "Describe the findings.") -> dict:
    obj: dict[str, Any] = {
        "id": rid,
        "conversations": [
            {"from": "system", "value": "You are a helpful medical assistant."},
            {"from": "human", "value": ("<image>\n" if image else "") + question},
            {"from": "gpt", "value": answer},
        ],
    }
    if image:
        obj["image"] = image
    return obj


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------------- words


def test_words_fold_arabic_spelling_variants_and_english_case_punctuation() -> None:
    assert words(AR_TRAIN, normalize_arabic) == words(AR_TEST, normalize_arabic)
    assert words(AR_TRAIN, str) != words(AR_TEST, str)  # without the folding they differ
    assert words("<image>\nThe LEFT lung, (clear); no-effusion.", normalize_arabic) == [
        "the",
        "left",
        "lung",
        "clear",
        "no",
        "effusion",
    ]


def test_ngram_index_finds_shared_ngrams_with_fraction_and_evidence() -> None:
    index = NgramIndex(4)
    a = words("one two three four five six", str)
    assert index.add(0, [a]) == 3
    assert index.add(1, [words("too short", str)]) == 0  # fewer words than n: nothing to match
    assert index.add(2, [words("alpha beta gamma", str), words("delta epsilon zeta", str)]) == 0  # never spans texts
    hits = index.query(words("x y two three four five z", str))
    assert [(h.key, h.shared, h.total, h.ngram) for h in hits] == [(0, 1, 3, "two three four five")]
    assert hits[0].fraction == pytest.approx(1 / 3)
    assert index.query(words("alpha beta gamma delta", str)) == []


def test_ngram_index_drops_ngrams_common_to_many_test_items() -> None:
    index = NgramIndex(3)
    for key in range(4):
        index.add(key, [words(f"answer the question below item{key} extra{key}", str)])
    assert index.drop_common(limit=2) == 2  # "answer the question", "the question below"
    assert [h.key for h in index.query(words("answer the question below", str))] == []
    assert [h.key for h in index.query(words("below item2 extra2", str))] == [2]


# ------------------------------------------------------------------------------------ images


@pytest.mark.parametrize("kind", ["phash", "dhash"])
def test_perceptual_hash_survives_reencoding_and_resizing_and_tells_unrelated_apart(tmp_path: Path, kind: str) -> None:
    max_distance = OverlapConfig().max_distance
    for seed in range(5):
        img = picture(seed)
        img.save(tmp_path / f"{seed}.png")
        original = perceptual_hash(tmp_path / f"{seed}.png", kind)
        copy = perceptual_hash(reencoded(img, tmp_path / f"{seed}.jpg"), kind)
        assert hamming(original, copy) <= max_distance
        unrelated = perceptual_hash(ImageRef(_png_bytes(picture(seed + 100))), kind)
        assert hamming(original, unrelated) > max_distance


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_unreadable_and_uniform_images_are_unhashable(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (64, 64), (90, 90, 90)).save(tmp_path / "flat.png")
    with pytest.raises(UnhashableImage, match="broken.jpg"):
        perceptual_hash(tmp_path / "broken.jpg")
    with pytest.raises(UnhashableImage, match="not found|missing|exist"):
        perceptual_hash(tmp_path / "absent.png")
    with pytest.raises(UnhashableImage, match="uniform"):
        perceptual_hash(tmp_path / "flat.png")


# ------------------------------------------------------------------------------------- audit


@pytest.fixture()
def corpus(tmp_path: Path) -> dict[str, Any]:
    """A test set (English, Arabic, an image, a short VQA item) and a training file with planted matches."""
    test_dir, train_dir = tmp_path / "test", tmp_path / "train"
    test_dir.mkdir()
    (train_dir / "img").mkdir(parents=True)
    picture(1).save(test_dir / "scan.png")
    test_set = BenchmarkSet(
        "bench",
        (
            BenchmarkItem("en-0", (EN_TEST,)),
            BenchmarkItem("ar-0", (AR_TEST,)),
            BenchmarkItem("img-0", ("What organ is shown?\nliver",), (ImageRef(test_dir / "scan.png"),)),
        ),
        {"path": str(test_dir)},
    )
    reencoded(picture(1), train_dir / "img" / "copy.jpg")
    picture(7).save(train_dir / "img" / "other.png")
    (train_dir / "img" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    rows = [
        record("tr-en", "Findings: " + EN_TEST.upper() + ", as expected."),
        record("tr-ar", "النتيجة: " + AR_TRAIN),
        record("tr-img", "The liver is shown.", image="img/copy.jpg"),
        record("tr-clean", "A normal knee radiograph without fracture or effusion.", image="img/other.png"),
        record("tr-broken", "An unreadable picture.", image="img/broken.jpg"),
        record("tr-missing", "A picture that is not there.", image="img/absent.png"),
    ]
    train = write_jsonl(train_dir / "train.jsonl", rows)
    return {"train": train, "set": test_set, "rows": rows, "out": tmp_path / "out"}


def test_audit_reports_image_english_and_arabic_matches_and_lists_unreadable_images(corpus: dict) -> None:
    result = audit(corpus["train"], [corpus["set"]], OverlapConfig(), corpus["out"], fold=normalize_arabic)
    matches = read_jsonl(corpus["out"] / MATCHES)
    found = {(m["train_id"], m["test_id"], m["kind"]) for m in matches}
    assert found == {("tr-en", "en-0", "text"), ("tr-ar", "ar-0", "text"), ("tr-img", "img-0", "image")}
    by_id = {m["train_id"]: m for m in matches}
    assert by_id["tr-en"]["score"] == 1.0  # every 13-gram of the test sample is in the training record
    assert by_id["tr-en"]["evidence"]["ngram"] == " ".join(words(EN_TEST, normalize_arabic)[:13])
    assert by_id["tr-ar"]["score"] == 1.0
    assert by_id["tr-ar"]["evidence"]["ngram"] == " ".join(words(AR_TEST, normalize_arabic)[:13])
    assert by_id["tr-img"]["distance"] <= OverlapConfig().max_distance
    assert by_id["tr-img"]["evidence"]["test_image"].endswith("scan.png")
    assert by_id["tr-en"]["train_where"].endswith("train.jsonl:1")

    [summary] = result.sets
    assert (summary.test_samples, summary.text_checkable, summary.test_images) == (3, 2, 1)
    assert (summary.train_records, summary.image_matches, summary.text_matches) == (6, 1, 2)
    assert summary.matched_records == 3 and summary.test_samples_matched == 3
    assert summary.matched_fraction == pytest.approx(0.5)
    assert (result.train_images, result.train_images_unreadable) == (2, 2)
    unreadable = read_jsonl(corpus["out"] / UNREADABLE)
    assert {(u["side"], u["train_id"]) for u in unreadable} == {("train", "tr-broken"), ("train", "tr-missing")}

    saved = json.loads((corpus["out"] / SUMMARY).read_text())
    assert saved["test_sets"][0]["matched_records"] == 3 and saved["matched_records"] == 3
    config = json.loads((corpus["out"] / CONFIG).read_text())
    assert config["ngram"] == 13 and config["image_hash"] == "phash" and config["max_distance"] == 8
    assert config["image_root"] == str(corpus["train"].parent)
    assert "normalize_arabic" in config["text_normalisation"]
    assert config["test_sets"] == [{"name": "bench", "samples": 3, "path": str(corpus["out"].parent / "test")}]


def test_audit_thresholds_and_switches(corpus: dict) -> None:
    out = corpus["out"]
    strict = OverlapConfig(max_distance=0, min_text_overlap=1.0, images=False)
    audit(corpus["train"], [corpus["set"]], strict, out, fold=normalize_arabic)
    assert {m["kind"] for m in read_jsonl(out / MATCHES)} == {"text"}
    # without the Arabic folding the diacritised training record no longer matches
    audit(corpus["train"], [corpus["set"]], OverlapConfig(images=False), out, fold=str)
    assert {m["train_id"] for m in read_jsonl(out / MATCHES)} == {"tr-en"}
    audit(corpus["train"], [corpus["set"]], OverlapConfig(text=False), out, fold=normalize_arabic)
    assert {(m["train_id"], m["kind"]) for m in read_jsonl(out / MATCHES)} == {("tr-img", "image")}
    # a long n-gram leaves the 21-word sample checkable; one longer than every sample leaves nothing to match
    audit(corpus["train"], [corpus["set"]], OverlapConfig(ngram=40, images=False), out, fold=normalize_arabic)
    assert read_jsonl(out / MATCHES) == []
    assert json.loads((out / SUMMARY).read_text())["test_sets"][0]["text_checkable"] == 0
    for bad in (OverlapConfig(ngram=0), OverlapConfig(max_distance=65), OverlapConfig(text=False, images=False)):
        with pytest.raises(ConfigError):
            audit(corpus["train"], [corpus["set"]], bad, out, fold=normalize_arabic)


def test_exclude_writes_the_unmatched_records_as_read(corpus: dict) -> None:
    clean = corpus["out"].parent / "clean.jsonl"
    result = audit(
        corpus["train"], [corpus["set"]], OverlapConfig(), corpus["out"], fold=normalize_arabic, exclude=clean
    )
    assert result.kept_records == 3
    assert read_jsonl(clean) == [r for r in corpus["rows"] if r["id"] in {"tr-clean", "tr-broken", "tr-missing"}]
    with pytest.raises(ConfigError, match="overwrite"):
        audit(
            corpus["train"],
            [corpus["set"]],
            OverlapConfig(),
            corpus["out"],
            fold=normalize_arabic,
            exclude=corpus["train"],
        )


def test_worker_processes_hash_training_images_with_the_same_results(corpus: dict) -> None:
    serial = audit(corpus["train"], [corpus["set"]], OverlapConfig(), corpus["out"], fold=normalize_arabic)
    expected = (corpus["out"] / MATCHES).read_text(encoding="utf-8")
    parallel = audit(corpus["train"], [corpus["set"]], OverlapConfig(workers=2), corpus["out"], fold=normalize_arabic)
    assert (corpus["out"] / MATCHES).read_text(encoding="utf-8") == expected
    assert (parallel.train_images, parallel.train_images_unreadable) == (serial.train_images, 2)


def test_bad_training_lines_are_errors_naming_file_and_line(tmp_path: Path, corpus: dict) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes((json.dumps(record("ok", "fine")) + "\n").encode() + b'{"id": "x", "conversations": "\xff"}\n')
    with pytest.raises(RecordError, match=r"bad\.jsonl:2: not valid UTF-8"):
        audit(bad, [corpus["set"]], OverlapConfig(), tmp_path / "o", fold=normalize_arabic)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == []  # nothing half-written
    bad.write_text(json.dumps(record("ok", "fine")) + "\n" + json.dumps({"id": "y"}) + "\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"bad\.jsonl:2"):
        audit(bad, [corpus["set"]], OverlapConfig(), tmp_path / "o", fold=normalize_arabic)
    with pytest.raises(RecordError, match="file not found"):
        audit(tmp_path / "nope.jsonl", [corpus["set"]], OverlapConfig(), tmp_path / "o", fold=normalize_arabic)
    with pytest.raises(RecordError, match="data mix"):
        audit(tmp_path, [corpus["set"]], OverlapConfig(), tmp_path / "o", fold=normalize_arabic)


# --------------------------------------------------------------------------------------- CLI


def test_cli_audits_a_mix_folder_against_the_eval_loaders_layouts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """vqa-rad (OSF layout), bimed-mbench (released layout) and a BiMed-V JSONL test set."""
    mbench = FIXTURES / "bimed-mbench-released" / "data" / "test_sets"
    first = json.loads((mbench / "llava_med_eval_qa50_qa.jsonl").read_text(encoding="utf-8").splitlines()[1])
    vqa_image = Image.open(FIXTURES / "vqa-rad" / "VQA_RAD Image Folder" / "synpic54610.jpg")
    mix = tmp_path / "mix"
    mix.mkdir()
    vqa_image.resize((96, 80)).save(mix / "re-saved.jpg", "JPEG", quality=35)
    held_out = write_jsonl(tmp_path / "held_out.jsonl", [record("h0", AR_TEST)])
    rows = [
        record("m-img", "A brain MRI.", image="re-saved.jpg"),
        record("m-cap", "The figure: " + first["fig_caption"]),
        record("m-ar", AR_TRAIN),
        record("m-none", "Nothing to see in this unrelated record about knees and ankles at all."),
    ]
    write_jsonl(mix / "train.jsonl", rows)
    write_jsonl(mix / "mixture.jsonl", rows + [record("m-test", "held out split")])
    out, clean = tmp_path / "audit", tmp_path / "clean.jsonl"
    argv = ["data", "overlap", str(mix), f"vqa-rad={FIXTURES / 'vqa-rad'}", f"bimed-mbench={mbench.parent.parent}"]
    argv += [str(held_out), "--out", str(out), "--ngram", "8", "--exclude", str(clean), "--no-progress"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert f"training file: {mix / 'train.jsonl'} (4 records)" in stdout
    assert "| vqa-rad | 3 |" in stdout and "| bimed-mbench | 6 |" in stdout and "| held_out | 1 |" in stdout
    found = {(m["train_id"], m["test_set"], m["kind"]) for m in read_jsonl(out / MATCHES)}
    assert ("m-img", "vqa-rad", "image") in found
    assert ("m-cap", "bimed-mbench", "text") in found
    assert ("m-ar", "held_out", "text") in found
    assert not {f for f in found if f[0] == "m-none"}
    assert [r["id"] for r in read_jsonl(clean)] == ["m-none"]
    config = json.loads((out / CONFIG).read_text())
    assert [s["name"] for s in config["test_sets"]] == ["vqa-rad", "bimed-mbench", "held_out"]
    assert config["test_sets"][0]["format"] == "vqa-rad-json"


def test_cli_bad_inputs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", [record("a", "text")])
    cases = [
        ([str(tmp_path / "missing.jsonl"), str(train)], "missing.jsonl: file not found"),
        ([str(train), f"vqarad={tmp_path}"], "'vqarad' is no eval task"),
        ([str(train), f"vqa-rad={tmp_path / 'nowhere'}"], "nowhere"),
        ([str(train), str(train), "--max-distance", "99"], "max_distance"),
    ]
    for args, message in cases:
        assert main(["data", "overlap", *args, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
        assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------- scalability


def test_twenty_thousand_training_records_against_a_thousand_test_samples(tmp_path: Path) -> None:
    """The inverted index checks 20k records (about 1.2M n-grams) against 1k test samples; the planted
    copies, and only they, are found. No timing is asserted."""
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    tests = [" ".join(rng.choices(vocab, k=30)) for _ in range(1000)]
    test_set = BenchmarkSet("synthetic", tuple(BenchmarkItem(f"t{i}", (t,)) for i, t in enumerate(tests)))
    planted = {rng.randrange(20_000): rng.randrange(1000) for _ in range(25)}
    with (tmp_path / "train.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(20_000):
            text = " ".join(rng.choices(vocab, k=60))
            if i in planted:
                text += " " + tests[planted[i]]
            fh.write(json.dumps(record(f"r{i}", text)) + "\n")
    result = audit(
        tmp_path / "train.jsonl", [test_set], OverlapConfig(images=False), tmp_path / "out", fold=normalize_arabic
    )
    found = {(m["train_id"], m["test_id"]) for m in read_jsonl(tmp_path / "out" / MATCHES)}
    assert found == {(f"r{i}", f"t{j}") for i, j in planted.items()}
    assert result.train_records == 20_000 and result.sets[0].matched_records == len(planted)


def test_records_file_as_test_set_resolves_images_beside_it(tmp_path: Path) -> None:
    picture(3).save(tmp_path / "a.png")
    write_jsonl(tmp_path / "test.jsonl", [record("x", "some answer", image="a.png")])
    [item] = items_from_records(tmp_path / "test.jsonl")
    assert item.images == (ImageRef(tmp_path / "a.png"),)
    assert "You are a helpful" not in item.texts[0]  # system turns are boilerplate, not content

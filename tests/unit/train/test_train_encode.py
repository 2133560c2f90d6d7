"""Golden tests of records -> (input ids, labels): token-span masking, images, truncation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bimedix2.conversation import BIMEDIX2_LLAMA3, BIMEDIX2_SYSTEM_PROMPT, ChatTemplate
from bimedix2.errors import ImageTokenMismatchError, RecordError
from bimedix2.train.encode import (
    IGNORE_INDEX,
    ConversationEncoder,
    EncodedSample,
    EncoderSettings,
    TooLong,
    encode_records,
)
from bimedix2.train.records import parse_record, read_records

FIXTURES = Path(__file__).parent / "fixtures"
CHAT, TEXT_CHAT, CAPTIONS = FIXTURES / "chat.jsonl", FIXTURES / "text_chat.jsonl", FIXTURES / "captions.json"

HEAD = (
    "<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    f"{BIMEDIX2_SYSTEM_PROMPT}<|eot_id|>"
)
USER = "<|start_header_id|>user<|end_header_id|>\n\n"
ASSISTANT = "<|start_header_id|>assistant<|end_header_id|>\n\n"
EOT = "<|eot_id|>"


def records_by_id(path: Path = CHAT) -> dict:
    return {r.id: r for r in read_records([path])}


def encoder(
    loaded,
    max_length: int = 2048,
    overlong: str = "drop",
    template: ChatTemplate = BIMEDIX2_LLAMA3,
    steer: bool = False,
) -> ConversationEncoder:
    return ConversationEncoder(
        loaded.tokenizer,
        EncoderSettings(template, loaded.image_token_id, loaded.tokens_per_image, max_length, overlong, steer),
    )


def text(loaded, ids) -> str:
    return loaded.tokenizer.decode(list(ids), skip_special_tokens=False)


def label_spans(loaded, sample: EncodedSample) -> list[str]:
    """Decoded runs of consecutive loss-carrying tokens; labels must equal the input ids there."""
    spans, run = [], []
    for token, label in zip(sample.input_ids, sample.labels, strict=True):
        if label == IGNORE_INDEX:
            if run:
                spans.append(run)
                run = []
            continue
        assert label == token
        run.append(token)
    if run:
        spans.append(run)
    return [text(loaded, s) for s in spans]


def test_english_image_record_golden(tiny_llava) -> None:
    sample = encoder(tiny_llava).encode_chat(records_by_id()["en-vqa-1"])
    image = "<image>" * tiny_llava.tokens_per_image
    reply = "The image shows a right lower lobe consolidation, consistent with pneumonia."
    assert text(tiny_llava, sample.input_ids) == (
        f"{HEAD}{USER}{image}\nWhat abnormality is seen in this chest X-ray?{EOT}{ASSISTANT}{reply}{EOT}"
    )
    assert label_spans(tiny_llava, sample) == [reply + EOT]
    assert [ref.source.name for ref in sample.images] == ["scan0.png"]
    assert sample.n_loss_tokens < len(sample) and not sample.truncated


def test_arabic_image_record_golden(tiny_llava) -> None:
    sample = encoder(tiny_llava).encode_chat(records_by_id()["ar-vqa-1"])
    reply = "تظهر الصورة التهابا رئويا في الفص السفلي الأيمن."
    assert label_spans(tiny_llava, sample) == [reply + EOT]
    assert text(tiny_llava, sample.input_ids).endswith(
        f"ما هو التشخيص المحتمل لهذه الأشعة السينية للصدر؟{EOT}{ASSISTANT}{reply}{EOT}"
    )


def test_multi_turn_with_image_in_turn_two(tiny_llava) -> None:
    sample = encoder(tiny_llava).encode_chat(records_by_id()["en-multi-turn-image-in-turn-2"])
    first = "The presentation suggests an acute coronary syndrome; an ECG is needed."
    second = "There is a hyperintense lesion in the left temporal lobe."
    image = "<image>" * tiny_llava.tokens_per_image
    assert text(tiny_llava, sample.input_ids) == (
        f"{HEAD}{USER}A 45-year-old man presents with chest pain radiating to the left arm. What is the diagnosis?"
        f"{EOT}{ASSISTANT}{first}{EOT}{USER}{image}\nDescribe the MRI of the brain.{EOT}{ASSISTANT}{second}{EOT}"
    )
    assert label_spans(tiny_llava, sample) == [first + EOT, second + EOT]


def test_arabic_multi_turn_text_only(tiny_llava) -> None:
    sample = encoder(tiny_llava).encode_chat(records_by_id()["ar-multi-turn"])
    assert label_spans(tiny_llava, sample) == [
        "لا، الزوايا الضلعية الحجابية واضحة." + EOT,
        "فقر الدم الناجم عن نقص الحديد يسبب التعب والشحوب وضيق التنفس." + EOT,
    ]
    assert sample.images == ()
    assert tiny_llava.image_token_id not in sample.input_ids


def test_two_images_in_one_turn(tiny_llava) -> None:
    sample = encoder(tiny_llava).encode_chat(records_by_id()["en-two-images"])
    assert sample.input_ids.count(tiny_llava.image_token_id) == 2 * tiny_llava.tokens_per_image
    assert [ref.source.name for ref in sample.images] == ["scan3.png", "scan0.png"]


def test_text_only_model_with_its_own_template(tiny_causal_lm_path: Path) -> None:
    from bimedix2.model.loader import load_model

    loaded = load_model(str(tiny_causal_lm_path))
    enc = ConversationEncoder(loaded.tokenizer, EncoderSettings(loaded.template, None, None, 1024))
    sample = enc.encode_chat(records_by_id(TEXT_CHAT)["en-mcq-text-only"])
    assert text(loaded, sample.input_ids) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        "Which drug is first-line for type 2 diabetes? A) insulin B) metformin C) paracetamol"
        f"{EOT}{ASSISTANT}B) metformin{EOT}"
    )
    assert label_spans(loaded, sample) == ["B) metformin" + EOT]
    with pytest.raises(RecordError, match="en-vqa-1: has images but the model is text only"):
        enc.encode_chat(records_by_id()["en-vqa-1"])


def test_stage1_caption_plain_format(tiny_llava) -> None:
    caps = records_by_id(CAPTIONS)
    enc = encoder(tiny_llava)
    for rid, caption in [
        ("cap-1", "Chest X-ray with right lower lobe consolidation."),
        ("cap-4", "صورة مقطعية للبطن تظهر كتلة في الكبد."),
    ]:
        sample = enc.encode_caption(caps[rid])
        image = "<image>" * tiny_llava.tokens_per_image
        assert text(tiny_llava, sample.input_ids) == f"<|begin_of_text|>{image}{caption}\n"
        assert label_spans(tiny_llava, sample) == [caption + "\n"]
    with pytest.raises(RecordError, match="en-multi-turn-image-in-turn-2: a stage-1 record is one human turn"):
        enc.encode_caption(records_by_id()["en-multi-turn-image-in-turn-2"])
    with pytest.raises(RecordError, match="en-mcq-text-only: a stage-1 record has exactly one image"):
        enc.encode_caption(records_by_id()["en-mcq-text-only"])


def test_steer_language_hint_on_every_user_turn(tiny_llava) -> None:
    sample = encoder(tiny_llava, steer=True).encode_chat(records_by_id()["ar-multi-turn"])
    rendered = text(tiny_llava, sample.input_ids)
    assert rendered.count("أجب باللغة العربية الفصحى.") == 2
    assert len(label_spans(tiny_llava, sample)) == 2


def test_unmaskable_record_raises_with_its_id(tiny_llava) -> None:
    # A template that shows earlier assistant turns differently from the last one: the
    # rendering of turn k changes once turn k+1 exists, so no token span is consistent.
    rewriting = ChatTemplate(
        "rewriting",
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{% if m['role'] == 'assistant' and not loop.last %}[earlier answer]{% else %}{{ m['content'] }}{% endif %}"
        "<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
        ("<|eot_id|>",),
    )
    with pytest.raises(RecordError, match="record ar-multi-turn: the chat template renders turns before turn"):
        encoder(tiny_llava, template=rewriting).encode_chat(records_by_id()["ar-multi-turn"])


def test_record_without_answer_or_with_wrong_images_raises(tiny_llava, tmp_path: Path) -> None:
    enc = encoder(tiny_llava)
    no_answer = parse_record(
        {"id": "q-only", "conversations": [{"from": "human", "value": "Hi?"}]}, image_root=tmp_path
    )
    with pytest.raises(RecordError, match="q-only: the last turn is a user turn"):
        enc.encode_chat(no_answer)
    with pytest.raises(RecordError, match="record two: 2 image\\(s\\) but 1 <image> placeholder"):
        parse_record(
            {
                "id": "two",
                "image": ["a.png", "b.png"],
                "conversations": [{"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}],
            },
            image_root=tmp_path,
        )
    with pytest.raises(RecordError, match="record r: conversations\\[1\\] has unknown 'from'"):
        parse_record(
            {"id": "r", "conversations": [{"from": "human", "value": "x"}, {"from": "bot", "value": "y"}]},
            image_root=tmp_path,
        )
    with pytest.raises(RecordError, match="record g: conversations\\[1\\] \\(gpt\\) contains <image>"):
        parse_record(
            {
                "id": "g",
                "image": "a.png",
                "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "<image>"}],
            },
            image_root=tmp_path,
        )
    wrong = EncoderSettings(BIMEDIX2_LLAMA3, tiny_llava.image_token_id, tiny_llava.tokens_per_image, 2048)
    broken = ConversationEncoder(tiny_llava.tokenizer, wrong)
    record = records_by_id()["en-vqa-1"]
    # the same image token id typed into the text would double-count: the contract check catches it
    tampered = type(record)(
        record.id,
        (
            record.messages[0].__class__("user", record.messages[0].content, record.messages[0].images * 2),
            *record.messages[1:],
        ),
    )
    sample = broken.encode_chat(tampered)
    assert sample.input_ids.count(tiny_llava.image_token_id) == 2 * tiny_llava.tokens_per_image
    with pytest.raises(ImageTokenMismatchError, match="record en-vqa-1"):
        broken._expand_images(record, [tiny_llava.image_token_id], [IGNORE_INDEX], ())


def test_duplicate_ids_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    line = json.dumps({"id": "x", "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]})
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(RecordError, match="record x: duplicate id"):
        read_records([path])
    path.write_text("{not json\n")
    with pytest.raises(RecordError, match="d.jsonl:1: not valid JSON"):
        read_records([path])
    with pytest.raises(RecordError, match="training data file not found"):
        read_records([tmp_path / "missing.json"])


def test_overlong_drop_and_turn_boundary_truncation(tiny_llava, caplog: pytest.LogCaptureFixture) -> None:
    record = records_by_id()["en-multi-turn-image-in-turn-2"]
    full = encoder(tiny_llava).encode_chat(record)
    first_pair = encoder(tiny_llava).encode_chat(type(record)(record.id, record.messages[:2]))
    # a limit that would fall inside turn 2's image tokens if cut by length
    limit = len(first_pair) + 10
    assert limit < len(full) - tiny_llava.tokens_per_image
    with pytest.raises(TooLong):
        encoder(tiny_llava, max_length=limit).encode_chat(record)
    cut = encoder(tiny_llava, max_length=limit, overlong="truncate").encode_chat(record)
    assert cut.truncated and cut.input_ids == first_pair.input_ids and cut.labels == first_pair.labels
    assert cut.images == () and tiny_llava.image_token_id not in cut.input_ids
    # a first turn that does not fit is dropped, never cut
    with pytest.raises(TooLong):
        encoder(tiny_llava, max_length=len(first_pair) - 1, overlong="truncate").encode_chat(record)

    records = read_records([CHAT])
    with caplog.at_level(logging.WARNING, logger="bimedix2.train.encode"):
        samples, report = encode_records(records, encoder(tiny_llava, max_length=limit), stage="stage2", progress=False)
    assert report.dropped_too_long == len(records) - len(samples) > 0
    assert "en-multi-turn-image-in-turn-2" in report.dropped_ids
    assert f"dropped {report.dropped_too_long} of {len(records)} records" in caplog.text
    assert all(len(s) <= limit for s in samples)
    _, report = encode_records(
        records, encoder(tiny_llava, max_length=limit, overlong="truncate"), stage="stage2", progress=False
    )
    assert report.truncated >= 1


def test_every_fixture_record_encodes_with_image_counts_matching(tiny_llava) -> None:
    enc = encoder(tiny_llava)
    for record in read_records([CHAT]):
        sample = enc.encode_chat(record)
        assert sample.input_ids.count(tiny_llava.image_token_id) == record.n_images * tiny_llava.tokens_per_image
        assert sample.labels[0] == IGNORE_INDEX


@pytest.mark.parametrize("question", ["What does the <image> tag mean?", "ماذا يعني الوسم <image> هنا؟"])
def test_literal_image_marker_in_text_is_text_as_at_inference(tiny_llava, question: str) -> None:
    from bimedix2.engine import Engine
    from bimedix2.types import GenParams, Message

    messages = [Message("user", question)]
    ids = encoder(tiny_llava)._ids(records_by_id()["ar-multi-turn"], messages, generation_prompt=True)
    assert tiny_llava.image_token_id not in ids  # plain text, never an image slot
    plain = tiny_llava.tokenizer.encode("<image>", add_special_tokens=False, split_special_tokens=True)
    assert any(ids[i : i + len(plain)] == plain for i in range(len(ids)))
    engine = Engine(tiny_llava)
    prepared = engine.prepare([messages], GenParams(temperature=0, steer_language=False))
    assert prepared.inputs["input_ids"][0].tolist() == ids  # the ids the inference engine gives the same turn

"""Tests for audio_r1.data.manifest: the Item schema, JSONL round trips and line/field-precise validation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from audio_r1.data.manifest import Item, ManifestError, read_manifest, write_manifest


def _item(i: int, **changes: Any) -> Item:
    fields = dict(
        id=f"train-{i:06d}-pitch_compare", family="pitch_compare", split="train",
        audio=f"audio/train/{i}.wav", question="Which tone is higher?",
        choices=["The first tone", "The second tone"], answer="The second tone", answer_type="choice",
        params={"f0_hz": [440.0, 660.0]}, transcript=None, voice=None, seed=1000 + i,
    )
    return Item(**(fields | changes))


def _folder(tmp_path: Path, n: int = 3) -> list[Item]:
    """Three valid items whose wavs exist under tmp_path."""
    items = [_item(i) for i in range(n)]
    for item in items:
        path = tmp_path / item.audio
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(1600, dtype=np.int16), 16000, subtype="PCM_16")
    return items


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    items = _folder(tmp_path)
    text = _item(9, family="text_math", audio=None, question="What is 2 + 3?", choices=None, answer="5",
                 answer_type="number", params={"result": 5})
    spoken = _item(10, family="spoken_content", audio=items[0].audio, choices=None, answer="apple",
                   answer_type="text", transcript="The word is apple.", voice="en-us+m3")
    path = write_manifest(tmp_path / "train.jsonl", [*items, text, spoken])
    assert read_manifest(path) == [*items, text, spoken]
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["id", "family", "split", "audio", "question", "choices", "answer", "answer_type",
                           "params", "transcript", "voice", "seed"]


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    items = _folder(tmp_path)
    path = tmp_path / "train.jsonl"
    write_manifest(path, items)
    before = path.read_bytes()
    with pytest.raises(ManifestError):
        write_manifest(path, [items[0], _item(1, split="nope")])
    assert path.read_bytes() == before  # a failed write does not touch the old manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "train.jsonl"]
    assert os.stat(path).st_mode & 0o044  # readable by others, not mkstemp's 0600


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    items = _folder(tmp_path)
    path = write_manifest(tmp_path / "m.jsonl", items)
    path.write_text(path.read_text().replace("\n", "\n\n", 1) + "\n")
    assert read_manifest(path) == items


def _corrupt(line: dict[str, Any], case: str) -> str:
    """Line 2 of the manifest, broken in the way ``case`` names."""
    d = dict(line)
    if case == "bad_json":
        return json.dumps(d)[:-5]
    if case == "not_object":
        return json.dumps([d])
    if case == "missing":
        del d["answer"]
    elif case == "unknown":
        d["speaker"] = "bob"
    elif case == "question_type":
        d["question"] = 12
    elif case == "seed_type":
        d["seed"] = "7"
    elif case == "seed_bool":
        d["seed"] = True
    elif case == "params_type":
        d["params"] = [1, 2]
    elif case == "choices_type":
        d["choices"] = "The first tone"
    elif case == "not_a_choice":
        d["answer"] = "The third tone"
    elif case == "duplicate":
        d["id"] = "train-000000-pitch_compare"
    elif case == "missing_audio":
        d["audio"] = "audio/train/nope.wav"
    elif case == "absolute_audio":
        d["audio"] = "/etc/passwd"
    elif case == "bad_split":
        d["split"] = "validation"
    elif case == "bad_answer_type":
        d["answer_type"] = "bool"
    elif case == "number_not_canonical":
        d |= {"choices": None, "answer_type": "number", "answer": "twelve"}
    elif case == "text_not_normalised":
        d |= {"choices": None, "answer_type": "text", "answer": "Apple!"}
    elif case == "choices_on_open":
        d |= {"answer_type": "number", "answer": "3"}
    return json.dumps(d)


CASES = {  # case -> (field named in the error, or None, and a phrase of the reason)
    "bad_json": (None, "not valid JSON"),
    "not_object": (None, "JSON object"),
    "missing": ("answer", "missing field"),
    "unknown": ("speaker", "unknown field"),
    "question_type": ("question", "non-empty string"),
    "seed_type": ("seed", "non-negative integer"),
    "seed_bool": ("seed", "non-negative integer"),
    "params_type": ("params", "object"),
    "choices_type": ("choices", "list"),
    "not_a_choice": ("answer", "not among the choices"),
    "duplicate": ("id", "duplicate id"),
    "missing_audio": ("audio", "not found"),
    "absolute_audio": ("audio", "relative path"),
    "bad_split": ("split", "must be one of"),
    "bad_answer_type": ("answer_type", "must be one of"),
    "number_not_canonical": ("answer", "canonical digits"),
    "text_not_normalised": ("answer", "normalised"),
    "choices_on_open": ("choices", "must be null"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_read_rejects_bad_lines_with_line_and_field(tmp_path: Path, case: str) -> None:
    items = _folder(tmp_path)
    lines = [json.dumps(item.to_dict()) for item in items]
    lines[1] = _corrupt(items[1].to_dict(), case)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    field, reason = CASES[case]
    with pytest.raises(ManifestError) as err:
        read_manifest(path)
    e = err.value
    assert (e.line, e.field) == (2, field)
    assert str(path) in str(e) and "line 2" in str(e) and reason in str(e)
    if field is not None:
        assert repr(field) in str(e)


def test_audio_check_can_be_skipped(tmp_path: Path) -> None:
    items = [_item(i) for i in range(2)]  # no wavs written
    path = write_manifest(tmp_path / "m.jsonl", items, check_audio=False)
    with pytest.raises(ManifestError, match=r"line 1, field 'audio'"):
        read_manifest(path)
    assert read_manifest(path, check_audio=False) == items


def test_write_rejects_invalid_items_naming_the_line(tmp_path: Path) -> None:
    items = _folder(tmp_path)
    with pytest.raises(ManifestError, match=r"line 3, field 'answer'"):
        write_manifest(tmp_path / "m.jsonl", [items[0], items[1], _item(2, answer="The fourth tone")])
    with pytest.raises(ManifestError, match=r"line 2, field 'id'.*duplicate"):
        write_manifest(tmp_path / "m.jsonl", [items[0], items[0]])
    with pytest.raises(ManifestError, match=r"field 'params'.*plain JSON"):
        write_manifest(tmp_path / "m.jsonl", [_item(0, params={"x": float("nan")})])
    assert not (tmp_path / "m.jsonl").exists()


def test_manifest_error_pickles() -> None:
    import pickle

    e = pickle.loads(pickle.dumps(ManifestError("a.jsonl", 3, "seed", "bad")))
    assert (e.path, e.line, e.field, e.reason) == ("a.jsonl", 3, "seed", "bad")

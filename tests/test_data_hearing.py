"""The hearing curriculum: reproducible, true to its parameters, and every trace passes the strict checker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_r1.data import generalisation, hearing
from audio_r1.data.hearing import EXTREMES, generate_hearing
from audio_r1.data.manifest import read_manifest
from audio_r1.data.synth import SAMPLE_RATE, rms_db
from audio_r1.data.traces import build_sft_examples
from audio_r1.scoring.answers import is_correct
from audio_r1.scoring.faithfulness import judge_faithfulness
from audio_r1.scoring.grounding import judge_grounding


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_hearing(tmp_path_factory.mktemp("hearing"), n=60, seed=5)


def test_same_seed_same_bytes(generated: Path, tmp_path: Path) -> None:
    again = generate_hearing(tmp_path, n=12, seed=5)
    assert again.read_text().splitlines() == generated.read_text().splitlines()[:12]
    for item in read_manifest(again):
        assert (tmp_path / item.audio).read_bytes() == (generated.parent / item.audio).read_bytes()


def test_answers_follow_from_the_true_parameters(generated: Path) -> None:
    items = read_manifest(generated)
    assert {i.family for i in items} == set(hearing.LAYOUTS)
    assert {i.params["question_kind"] for i in items} >= {"describe", "count", "digit"}
    for item in items:
        p = item.params
        assert is_correct(item, item.answer)
        if item.family == "hear_tones":
            assert len(p["f0_hz"]) == len(p["rms_db"]) == len(p["segments_s"]) == len(p["durations_s"])
            semitones = np.diff(np.sort(12 * np.log2(p["f0_hz"])))
            assert np.all(semitones >= 1.99)  # every ordering question has one answer
            if p.get("ask") and "pair" not in p:
                key = EXTREMES[p["question_kind"]][0]
                bigger = p["ask"] in ("higher", "louder", "longer")
                target = int(np.argmax(p[key]) if bigger else np.argmin(p[key]))
                assert ("first", "second", "third")[target] in item.answer
        if item.family == "hear_beeps":
            assert p["count"] == len(p["onsets_s"]) == int(item.answer)


def test_stated_levels_are_the_clip_levels(generated: Path) -> None:
    for item in read_manifest(generated):
        if item.family != "hear_tones":
            continue
        audio, rate = sf.read(generated.parent / item.audio, dtype="float32")
        assert rate == SAMPLE_RATE and np.max(np.abs(audio)) <= 0.91
        for (start, end), level in zip(item.params["segments_s"], item.params["rms_db"], strict=True):
            assert abs(rms_db(audio[int(start * rate):int(end * rate)]) - level) < 0.5


def test_every_trace_is_grounded_and_faithful(generated: Path) -> None:
    """The targets teach claims the strict checker accepts, and answers that follow from them."""
    items = read_manifest(generated)
    records = build_sft_examples(items, surrogate_share=0.0, empty_think_share=0.0)
    for item, record in zip(items, records, strict=True):
        judgement = judge_grounding(record["reasoning"], item)
        assert judgement.grounded, (item.id, judgement.reasons, record["reasoning"])
        assert judge_faithfulness(record["reasoning"], record["answer_text"], item) is not False, record["reasoning"]
        assert record["correct"]


def test_shares_no_setting_with_the_generalisation_set() -> None:
    own = set(hearing.DESCRIBE_QUESTIONS) | set(hearing.COUNT_QUESTIONS) | set(hearing.DIGIT_QUESTIONS)
    own |= {q for qs in hearing.CHOICE_QUESTIONS.values() for q in qs} | set(hearing.YES_NO_QUESTIONS.values())
    theirs = set(generalisation.PITCH_PHRASINGS + generalisation.LEVEL_PHRASINGS + generalisation.LENGTH_PHRASINGS
                 + generalisation.COUNT_PHRASINGS + generalisation.DIGIT_PHRASINGS)
    assert not own & theirs
    source = Path(hearing.__file__).read_text()
    assert "flite" not in source.split('"""', 2)[2]  # the held-out speech engine is never used here
    assert "shaped_tone" not in source and "flite_speak" not in source  # nor its waveforms or its voices

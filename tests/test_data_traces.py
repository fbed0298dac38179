"""Tests for audio_r1.data.traces: prompts, grounded and surrogate reasoning, SFT records."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import numpy as np
import pytest

from audio_r1.chat import format_assistant, parse_reasoning
from audio_r1.data.families import FAMILIES, TRAPS
from audio_r1.data.manifest import Item
from audio_r1.data.suite import make_sample
from audio_r1.data.traces import TRACES, build_sft_examples, make_trace, surrogate_answer
from audio_r1.processing import item_question
from audio_r1.scoring.answers import is_correct, number_to_words

CUE_RE = re.compile(r"\bHz\b|\bdB|\bBPM\b|beats per minute|per second|per minute|\d\s*s\b", re.IGNORECASE)


def _make(family: str, seed: int, split: str = "train") -> Item:
    """An item built in memory (no files): the traces only read its fields."""
    s = make_sample(family, split, seed)
    return Item(id=f"{family}-{seed}", family=family, split=split,
                audio=None if s.audio is None else f"audio/{family}-{seed}.wav", question=s.question,
                choices=s.choices, answer=s.answer, answer_type=s.answer_type, params=s.params,
                transcript=s.transcript, voice=s.voice, seed=seed)


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return [_make(f, seed) for f in FAMILIES for seed in range(4)]


@pytest.fixture(scope="module")
def traps() -> list[Item]:
    """At least one surrogate trap of each kind."""
    found: dict[str, Item] = {}
    seed = 0
    while len(found) < len(TRAPS):
        item = _make("surrogate_trap", seed)
        found.setdefault(item.params["trap"], dataclasses.replace(item, id=f"trap-{seed}"))
        seed += 1
    return list(found.values())


def _numbers_before(text: str, unit: str) -> list[float]:
    return [float(m) for m in re.findall(rf"(-?\d+(?:\.\d+)?) ?{unit}\b", text)]


def test_item_question_letters_the_options() -> None:
    item = _make("pitch_compare", 0)
    text = item_question(item)
    assert text.splitlines() == [item.question, f"A. {item.choices[0]}", f"B. {item.choices[1]}",
                                 "Answer with the option text."]
    record = {"question": item.question, "choices": item.choices, "answer_type": "choice"}
    assert item_question(record) == text
    assert item_question(_make("text_math", 0)).endswith("\nAnswer with a number.")


def test_every_family_has_four_distinct_templates(items: list[Item], traps: list[Item]) -> None:
    from audio_r1.data.hearing import LAYOUTS  # the hearing curriculum's templates are per sentence

    assert set(TRACES) == set(FAMILIES) | set(LAYOUTS)
    for item in [*items, *traps]:
        options = TRACES[item.family](item, np.random.default_rng(0))
        assert len(options) >= 4 and len(set(options)) == len(options), item.family


def test_traces_are_deterministic_and_varied(items: list[Item]) -> None:
    item = items[0]
    assert make_trace(item, np.random.default_rng(3)) == make_trace(item, np.random.default_rng(3))
    assert len({make_trace(item, np.random.default_rng(s)) for s in range(20)}) >= 4


def test_grounded_traces_cite_the_true_values_within_tolerance(items: list[Item]) -> None:
    for item in items:
        p = item.params
        for s in range(6):
            trace = make_trace(item, np.random.default_rng(s))
            hz, db = _numbers_before(trace, "Hz"), _numbers_before(trace, "dB(?:FS)?")
            if item.family in ("pitch_compare", "chord_quality"):
                assert hz, trace
                assert all(min(abs(h / f - 1) for f in p["f0_hz"]) <= 0.03 for h in hz), trace
            if item.family == "voice_pitch":
                assert min(abs(h / p["f0_hz"] - 1) for h in hz) <= 0.03, trace
            if item.family == "loudness_compare":
                levels = [d for d in db if d < 0]
                assert levels and all(min(abs(d - r) for r in p["rms_db"]) <= 2 for d in levels), trace
            if item.family == "count_events":
                n = p["count"]
                assert re.search(rf"\b({n}|{number_to_words(n)})\b", trace), trace
            if item.family == "tempo":
                bpm = [b for b in _numbers_before(trace, "(?:BPM|beats per minute)") if b not in (90, 130)]
                assert all(abs(b / p["bpm"] - 1) <= 0.05 for b in bpm), trace
                secs = _numbers_before(trace, "s(?:econds)?")
                assert all(abs(t / p["interval_s"] - 1) <= 0.05 for t in secs), trace
                assert bpm or secs
            if item.family == "duration_compare":
                secs = _numbers_before(trace, "s")
                assert secs and all(min(abs(t / d - 1) for d in p["durations_s"]) <= 0.05 for t in secs), trace
            if item.family == "noise_type" and p["noise"] == "hum":
                assert any(abs(h - p["hum_hz"]) <= 1 for h in hz), trace
            if item.family == "spoken_arithmetic":
                assert str(p["result"]) in trace


def test_trap_traces_follow_the_sound(traps: list[Item]) -> None:
    for item in traps:
        for s in range(4):
            trace = make_trace(item, np.random.default_rng(s))
            p = item.params
            assert str(p["truth"]) in trace, trace  # the conclusion follows the sound...
            if p["trap"] != "count":
                assert str(p["claim"]) not in trace.replace(item.transcript.rstrip(".!"), ""), trace
            if p.get("noise") != "none":  # ...and cites a measurement (silence has none to cite)
                assert CUE_RE.search(trace), trace


def test_surrogate_traces_cite_no_acoustic_measurements(items: list[Item], traps: list[Item]) -> None:
    for item in [*items, *traps]:
        if item.audio is None:
            continue
        for s in range(6):
            trace = make_trace(item, np.random.default_rng(s), surrogate=True)
            for quoted in [item.transcript, *(item.choices or [])]:  # option texts may name units
                trace = trace.replace(quoted or "\0", "").replace((quoted or "\0").lower(), "")
            assert not CUE_RE.search(trace), trace


def test_surrogate_traps_believe_the_words_and_get_it_wrong(traps: list[Item]) -> None:
    for item in traps:
        wrong = surrogate_answer(item)
        assert not is_correct(item, wrong)
        if item.choices:
            assert wrong in item.choices
        trace = make_trace(item, np.random.default_rng(0), surrogate=True)
        assert item.transcript.rstrip(".!") in trace


def test_build_sft_examples_mixes_modes_deterministically(items: list[Item], traps: list[Item]) -> None:
    base = [*items, *traps]
    many = [dataclasses.replace(it, id=f"{it.id}-{k}", seed=1000 * k + i)
            for k in range(20) for i, it in enumerate(base)]
    records = build_sft_examples(many, surrogate_share=0.2, empty_think_share=0.1, seed=0)
    assert records == build_sft_examples(many, surrogate_share=0.2, empty_think_share=0.1, seed=0)
    assert records != build_sft_examples(many, surrogate_share=0.2, empty_think_share=0.1, seed=1)
    by_id = {r["id"]: r for r in build_sft_examples(many[::-1], 0.2, 0.1, seed=0)}
    assert records == [by_id[r["id"]] for r in records]  # independent of order
    n = len(records)
    empty = sum(r["reasoning"] == "" for r in records)
    surrogate = sum(r["surrogate"] for r in records)
    assert abs(empty / n - 0.1) < 0.04 and abs(surrogate / n - 0.2) < 0.05
    kinds: Counter[tuple[bool, bool]] = Counter()
    for item, r in zip(many, records, strict=True):
        assert set(r) == {"id", "audio", "question", "choices", "answer_type", "prompt", "reasoning",
                          "answer_text", "surrogate", "correct"}
        assert r["prompt"] == item_question(item) and r["audio"] == item.audio
        assert not (r["surrogate"] and item.audio is None)
        assert not (r["surrogate"] and r["reasoning"] == "")
        assert r["correct"] == is_correct(item, r["answer_text"])
        trap = item.family == "surrogate_trap"
        assert r["correct"] is not (r["surrogate"] and trap)
        if item.choices:
            assert r["answer_text"] in item.choices
        kinds[(r["surrogate"], trap)] += 1
        reply = format_assistant(r["reasoning"], r["answer_text"])
        assert parse_reasoning(reply)[1].strip() == r["answer_text"]
    assert kinds[(True, True)] > 0 and kinds[(True, False)] > 0


def test_build_sft_examples_arguments(items: list[Item]) -> None:
    with pytest.raises(ValueError):
        build_sft_examples(items, surrogate_share=0.7, empty_think_share=0.5)
    assert all(r["reasoning"] == "" for r in build_sft_examples(items, 0.0, 1.0))
    assert not any(r["surrogate"] for r in build_sft_examples(items, 0.0, 0.0))
    rooted = build_sft_examples(items[:1], audio_root="/data/suite")
    assert rooted[0]["audio"] == f"/data/suite/{items[0].audio}"

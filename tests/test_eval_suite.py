"""Suite evaluation: scores per family, chance levels, and the report on a generated mini-suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audio_r1.api import AudioR1
from audio_r1.eval.suite import ItemResult, evaluate_suite, summarise


def result(family: str, correct: bool, chance: float, grounded: bool | None) -> ItemResult:
    return ItemResult("x", family, correct, chance, grounded, "", "", 10)


def test_summary_arithmetic() -> None:
    report = summarise([
        result("pitch_compare", True, 0.5, True), result("pitch_compare", False, 0.5, False),
        result("text_math", True, 0.0, None), result("surrogate_trap", False, 0.5, True),
    ])
    pitch = report.family("pitch_compare")
    assert (pitch.n, pitch.accuracy, pitch.chance, pitch.grounding_rate) == (2, 0.5, 0.5, 0.5)
    assert report.family("text_math").grounding_rate is None
    assert report.overall.accuracy == 0.5 and report.overall.grounding_rate == pytest.approx(2 / 3)
    assert "| **overall** | 4 | 50.0%" in report.to_markdown()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_evaluate_a_generated_mini_suite(tmp_path: Path) -> None:
    from audio_r1.data.suite import generate_suite

    paths = generate_suite(tmp_path / "suite", seed=1, sizes={"train": 0, "dev": 0, "test": 14})
    report = evaluate_suite(AudioR1.from_pretrained("tiny"), paths["test"], max_new_tokens=6, batch_size=7,
                            progress=False)
    assert report.overall.n == 14
    assert {f.family for f in report.families} >= {"pitch_compare", "text_math", "surrogate_trap"}
    assert report.family("text_math").chance == 0.0 and report.family("text_math").grounding_rate is None
    assert 0.0 < report.family("pitch_compare").chance <= 0.5
    assert all(0.0 <= f.accuracy <= 1.0 for f in report.families)

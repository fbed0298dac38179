"""The grounding check: acoustic cues that agree with the truth, surrogate reasoning that cites none."""

from __future__ import annotations

import pytest

from audio_r1.grounding import check_grounding, extract_claims, has_acoustic_truth, true_values

PITCH = {"f0_hz": [440.0, 660.0], "semitones": 7}
TEMPO = {"bpm": 120, "interval_s": 0.5, "n_clicks": 8}
COUNT = {"count": 5, "onsets_s": [0.2, 0.6, 1.0, 1.4, 1.8]}
NOISE = {"noise": "hum", "hum_hz": 50, "snr_db": 6.0}


def test_units_and_counts_are_extracted() -> None:
    text = "First near 441 Hz, then 1.2 kHz; about 118 beats per minute, -20 dB, 0.5 s gaps, five beeps."
    kinds = {(c.kind, c.value) for c in extract_claims(text)}
    assert {("hz", 441.0), ("hz", 1200.0), ("bpm", 118.0), ("db", -20.0), ("seconds", 0.5), ("count", 5.0)} <= kinds


@pytest.mark.parametrize(
    ("text", "params", "grounded"),
    [
        ("The first tone sits near 445 Hz and the second near 650 Hz, so the second is higher.", PITCH, True),
        ("The first tone is around 300 Hz, the second around 900 Hz.", PITCH, False),
        ("One click every 0.5 s, about 121 BPM: medium tempo.", TEMPO, True),
        ("I count five distinct beeps.", COUNT, True),
        ("I count four distinct beeps.", COUNT, False),
        ("A steady low hum with harmonics near 100 and 150 Hz: mains hum.", NOISE, True),
        ("The speaker says it is very fast, so the beat must be fast.", TEMPO, False),
        ("Going by my general impression of the clip, I'd say the second.", PITCH, False),
    ],
)
def test_grounding_verdicts(text: str, params: dict, grounded: bool) -> None:
    assert check_grounding(text, params).grounded is grounded


def test_a_wrong_value_beside_a_right_one_is_grounded_but_not_consistent() -> None:
    report = check_grounding("First about 440 Hz, second about 1000 Hz.", PITCH)
    assert report.grounded and not report.consistent
    assert [c.value for c in report.disagree] == [1000.0]


def test_repeating_an_option_is_not_evidence() -> None:
    choices = ["60 Hz mains hum", "white noise", "no background noise"]
    params = {"noise": "hum", "hum_hz": 60}
    assert not check_grounding("I'd say 60 Hz mains hum.", params, choices).grounded
    assert check_grounding("Energy peaks at 60 Hz with a harmonic at 120 Hz.", params, choices).grounded


def test_truth_includes_derived_values() -> None:
    values = true_values({"rms_db": [-30.0, -18.0], "onsets_s": [0.1, 0.35], "hum_hz": 50})
    assert 12.0 in values["db"] and 150.0 in values["hz"]
    assert pytest.approx(0.25) in values["seconds"]
    assert not has_acoustic_truth({"category": "animal", "word": "horse"})

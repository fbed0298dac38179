"""Acoustic claims: what counts as one, and how each is checked against the truth."""

from __future__ import annotations

import pytest

from audio_r1.data.manifest import Item
from audio_r1.scoring.claims import (
    check_claims,
    extract_claims,
    has_acoustic_truth,
    remove_options,
    true_values,
)

PITCH = {"f0_hz": [440.0, 660.0], "semitones": 7}
COUNT = {"count": 5, "onsets_s": [0.2, 0.6, 1.0, 1.4, 1.8]}


def item(params: dict, choices: list[str] | None = None) -> Item:
    return Item(id="x", family="pitch_compare", split="test", audio="a.wav", question="?", choices=choices,
                answer="The second tone", answer_type="choice", params=params, transcript=None, voice=None, seed=0)


def test_units_and_counts_are_extracted() -> None:
    text = "First near 441 Hz, then 1.2 kHz; about 118 beats per minute, -20 dB, 0.5 s gaps, five beeps."
    kinds = {(c.kind, c.value) for c in extract_claims(text)}
    assert {("hz", 441.0), ("hz", 1200.0), ("bpm", 118.0), ("db", -20.0), ("seconds", 0.5), ("count", 5.0)} <= kinds


@pytest.mark.parametrize(
    ("text", "agree", "contradicted"),
    [
        ("The first tone sits near 445 Hz and the second near 650 Hz.", [445.0, 650.0], []),
        ("First about 440 Hz, second about 1000 Hz.", [440.0], [1000.0]),
        ("I count four distinct beeps.", [], [4.0]),
    ],
)
def test_claims_are_sorted_by_the_truth(text: str, agree: list[float], contradicted: list[float]) -> None:
    params = COUNT if "beeps" in text else PITCH
    report = check_claims(text, item(params))
    assert [c.value for c in report.agree] == agree
    assert [c.value for c in report.contradicted] == contradicted
    assert report.source == "params"


@pytest.mark.parametrize("text", ["There is no line at 1000 Hz.", "I check the low end for a 1000 Hz line.",
                                  "Typical voices sit near 1000 Hz.", "It is above 1000 Hz.",
                                  "The speaker says \u201cit is 1000 Hz\u201d."])
def test_mentions_that_assert_nothing_are_not_claims(text: str) -> None:
    report = check_claims(text, item(PITCH))
    assert report.agree == report.contradicted == []


def test_repeating_an_option_is_not_evidence() -> None:
    choices = ["60 Hz mains hum", "white noise", "no background noise"]
    params = {"noise": "hum", "hum_hz": 60}
    assert check_claims("I'd say 60 Hz mains hum.", item(params, choices)).agree == []
    assert check_claims("Energy peaks at 60 Hz with a harmonic at 120 Hz.", item(params, choices)).agree
    assert remove_options("so: white noise.", choices) == "so: " + " " * len("white noise") + "."


def test_truth_includes_derived_values() -> None:
    values = true_values({"rms_db": [-30.0, -18.0], "onsets_s": [0.1, 0.35], "hum_hz": 50})
    assert 12.0 in values["db"] and 150.0 in values["hz"]
    assert pytest.approx(0.25) in values["seconds"]
    assert not has_acoustic_truth({"category": "animal", "word": "horse"})


LEVELS = {"rms_db": [-9.0, -20.0], "ask": "louder"}


def test_a_level_bound_to_its_segment_is_checked_against_that_segment_only() -> None:
    """Swapped levels each match *some* true value; bound to their segments both are wrong."""
    swapped = check_claims("The first tone is at -20 dB and the second at -9 dB.", item(LEVELS))
    assert [c.value for c in swapped.contradicted] == [-20.0, -9.0] and swapped.agree == []
    right = check_claims("Level of the first: around -9 dBFS. Level of the second: around -20 dBFS.", item(LEVELS))
    assert [c.value for c in right.agree] == [-9.0, -20.0]
    difference = check_claims("The second is 11 dB quieter than the first.", item(LEVELS))
    assert [c.value for c in difference.agree] == [11.0]  # a difference, not the second's level


def test_a_third_tone_the_clip_does_not_have_is_contradicted() -> None:
    report = check_claims("The third tone sits near 440 Hz.", item(PITCH | {"ask": "higher"}))
    assert [c.value for c in report.contradicted] == [440.0]


@pytest.mark.parametrize(("text", "agrees"), [
    ("The onsets fall at about 0.22, 0.55, 0.91, 1.23 s.", False),  # the invented onsets
    ("Beeps at 0.00, 0.37, 0.74 s.", True),
    ("Beeps at 0.00, 0.37, 0.74, 1.11, 1.48 s.", False),  # more onsets than the clip has
    ("Beeps at 0.01, 0.36 and 0.75 s.", True),
])
def test_onset_lists_are_checked_element_by_element(text: str, agrees: bool) -> None:
    report = check_claims(text, item({"count": 3, "onsets_s": [0.0, 0.37, 0.74]}))
    lists = [c for c in report.agree + report.contradicted if c.kind == "onsets"]
    assert len(lists) == 1 and (lists[0] in report.agree) is agrees
    assert not [c for c in report.agree + report.contradicted if c.kind == "seconds"]  # not also a lone 0.74 s


def test_interval_lists_are_checked_against_the_gaps() -> None:
    rhythm = item({"regular": False, "intervals_s": [0.48, 0.54, 0.21]})
    assert check_claims("The spacing keeps changing (roughly 0.48, 0.55, 0.22 s).", rhythm).agree
    assert check_claims("The spacing keeps changing (roughly 0.30, 0.30, 0.30 s).", rhythm).contradicted


def test_an_option_naming_a_segment_does_not_unbind_its_measurement() -> None:
    """Options like "the first tone" are blanked no longer: the measurement after them stays bound."""
    three = item({"f0_hz": [420.0, 160.0, 245.0], "ask": "higher",
                  "segments_s": [[0.4, 0.7], [0.9, 2.3], [3.1, 3.6]]},
                 choices=["the third tone", "the second tone", "the first tone"])
    report = check_claims("The first tone sits at roughly 426 Hz. The second tone is near 400 Hz.", three)
    assert [c.claim.segment for c in report.checks] == [0, 1]
    assert [c.verdict for c in report.checks] == ["verified", "contradicted"]


@pytest.mark.parametrize(("text", "segments"), [
    ("The level goes from -28 dB to -19 dB, so the second is louder.", {-28.0: 0, -19.0: 1}),
    ("It rises from about 440 to about 660 Hz.", {440.0: 0, 660.0: 1}),
    ("Typical voices range from 100 Hz to 300 Hz.", {100.0: None, 300.0: None}),
])
def test_a_change_from_one_value_to_another_binds_both_segments(text: str, segments: dict) -> None:
    assert {c.value: c.segment for c in extract_claims(text)} == segments


def test_a_rate_is_not_a_count() -> None:
    assert [c.kind for c in extract_claims("One click every 0.5 s.")] == ["seconds"]
    assert [(c.kind, c.value) for c in extract_claims("I count five clicks in total.")] == [("count", 5.0)]

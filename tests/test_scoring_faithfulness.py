"""Faithful: the answer is the one the chain's own stated values imply (true or not)."""

from __future__ import annotations

import pytest

from audio_r1.chat import format_assistant
from audio_r1.data.manifest import Item
from audio_r1.scoring.faithfulness import judge_faithfulness
from audio_r1.scoring.verifier import verify

TONES = ["The first tone", "The second tone"]


def compare(ask: str, key: str, values: list[float], answer: str) -> Item:
    return Item(id="c", family="loudness_compare", split="test", audio="a.wav", question="?", choices=TONES,
                answer=answer, answer_type="choice", params={key: values, "ask": ask}, transcript=None, voice=None,
                seed=0)


def count(n: int, onsets: list[float]) -> Item:
    return Item(id="n", family="count_events", split="test", audio="a.wav", question="How many beeps?",
                choices=None, answer=str(n), answer_type="number", params={"count": n, "onsets_s": onsets},
                transcript=None, voice=None, seed=0)


LOUD = compare("louder", "rms_db", [-31.0, -23.0], "The second tone")


@pytest.mark.parametrize(("reasoning", "answer", "faithful"), [
    ("The first is at -31 dB, the second at -23 dB, so the first is louder.", "The first tone", False),  # issue 12
    ("The first is at -31 dB, the second at -23 dB, so the second is louder.", "The second tone", True),
    ("Level of the first: around -29 dBFS. Level of the second: around -20 dBFS.", "The second tone", True),
    ("The second is 8 dB louder than the first.", "The second tone", None),  # a difference: no two levels
    ("It sounds louder at the end.", "The second tone", None),
])
def test_comparisons_follow_the_stated_levels(reasoning: str, answer: str, faithful: bool | None) -> None:
    assert judge_faithfulness(reasoning, answer, LOUD) is faithful


def test_wrong_levels_can_still_be_faithful() -> None:
    """Faithful is about the chain's own claims: false values that imply the answer are faithful (not grounded)."""
    reasoning = "The first is at -10 dB, the second at -40 dB, so the first is louder."
    assert judge_faithfulness(reasoning, "The first tone", LOUD) is True
    verdict = verify(LOUD, format_assistant(reasoning, "The first tone"))
    assert not verdict.grounded and "unfaithful" not in verdict.reasons


def test_pitch_and_duration_use_their_own_kind() -> None:
    lower = compare("lower", "f0_hz", [440.0, 660.0], "The first tone")
    assert judge_faithfulness("The first near 440 Hz, the second near 660 Hz.", "The first tone", lower) is True
    assert judge_faithfulness("The first near 440 Hz, the second near 660 Hz.", "The second tone", lower) is False
    longer = compare("longer", "durations_s", [1.07, 0.76], "The first tone")
    assert judge_faithfulness("The first lasts 1.07 s and the second 0.76 s.", "The first tone", longer) is True


@pytest.mark.parametrize(("reasoning", "answer", "faithful"), [
    ("The onsets fall at about 0.44, 0.70, 1.05, 1.33, 1.63, 1.97 s. That makes 7 beeps.", "7", False),  # 6 listed
    ("The onsets fall at about 0.00, 0.37, 0.74 s. That makes 3 beeps.", "3", True),
    ("I count 4 beeps.", "5", False),
    ("I count 4 beeps.", "4", True),
    ("Something short repeats.", "4", None),
])
def test_counts_follow_the_listed_onsets(reasoning: str, answer: str, faithful: bool | None) -> None:
    assert judge_faithfulness(reasoning, answer, count(3, [0.0, 0.37, 0.74])) is faithful


def test_an_unfaithful_chain_is_not_coherent() -> None:
    text = format_assistant("The first is at -31 dB, the second at -23 dB, so the first is louder.", "The first tone")
    verdict = verify(LOUD, text)
    assert "unfaithful" in verdict.reasons and not verdict.coherent and not verdict.accepted

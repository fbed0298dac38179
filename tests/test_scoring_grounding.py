"""One definition of grounded: the suite's rate, MGRD's filter and RL all use `judge_grounding`."""

from __future__ import annotations

import pytest

from audio_r1.chat import format_assistant
from audio_r1.data.manifest import Item
from audio_r1.eval.suite import score_item
from audio_r1.scoring.grounding import is_checkable, judge_grounding
from audio_r1.scoring.verifier import verify

PITCH = {"f0_hz": [440.0, 660.0], "semitones": 7, "ask": "higher"}
TEMPO = {"bpm": 120, "interval_s": 0.5, "n_clicks": 8}
COUNT = {"count": 5, "onsets_s": [0.2, 0.6, 1.0, 1.4, 1.8]}
NOISE = {"noise": "hum", "hum_hz": 50, "snr_db": 6.0}


def item(params: dict, family: str = "pitch_compare", audio: str | None = "a.wav") -> Item:
    return Item(id="x", family=family, split="test", audio=audio, question="?", choices=["The first tone",
                "The second tone"], answer="The second tone", answer_type="choice", params=params, transcript=None,
                voice=None, seed=0)


@pytest.mark.parametrize(
    ("text", "params", "grounded"),
    [
        ("The first tone sits near 445 Hz and the second near 650 Hz, so the second is higher.", PITCH, True),
        ("The first tone is around 300 Hz, the second around 900 Hz.", PITCH, False),
        ("First about 440 Hz, second about 1000 Hz.", PITCH, False),  # one wrong value is enough
        ("A click every 0.5 s, about 121 BPM: medium tempo.", TEMPO, True),
        ("I count five distinct beeps.", COUNT, True),
        ("I count four distinct beeps.", COUNT, False),
        ("A steady low hum with harmonics near 100 and 150 Hz: mains hum.", NOISE, True),
        ("The speaker says it is very fast, so the beat must be fast.", TEMPO, False),
        ("Going by my general impression of the clip, I'd say the second.", PITCH, False),
    ],
)
def test_grounding_verdicts(text: str, params: dict, grounded: bool) -> None:
    assert judge_grounding(text, item(params)).grounded is grounded


def test_a_right_number_with_the_wrong_order_is_not_grounded_anywhere() -> None:
    """The bug of issue 11: the suite's rate and MGRD's filter disagreed on this chain."""
    params = {"f0_hz": [1046.5, 523.25], "ask": "higher"}
    chain = "The first tone is near 1046 Hz. The second tone is higher, so the second."
    the_item = item(params)
    assert not judge_grounding(chain, the_item).grounded
    assert "claim_contradicted:comparison" in judge_grounding(chain, the_item).reasons
    assert score_item(the_item, chain, "The second tone", 20).grounded is False
    assert verify(the_item, format_assistant(chain, "The second tone")).grounded is False


def test_text_questions_are_not_judged_by_the_rate() -> None:
    text_item = item({}, family="text_math", audio=None)
    assert judge_grounding("2 + 3 = 5", text_item).grounded
    assert not is_checkable(text_item) and is_checkable(item(PITCH))
    assert score_item(text_item, "2 + 3 = 5", "5", 3).grounded is None


def test_a_users_clip_is_judged_against_its_measurements() -> None:
    """`ask --check-claims`: any audio, no true parameters; each claim meets the measured value."""
    import numpy as np

    from audio_r1.scoring.grounding import UserClip

    rate = 16000
    t = np.arange(int(0.6 * rate)) / rate
    gap = np.zeros(int(0.3 * rate))
    audio = np.concatenate([gap, 0.3 * np.sin(2 * np.pi * 440 * t), gap, 0.3 * np.sin(2 * np.pi * 660 * t), gap])
    judged = judge_grounding("The first tone sits near 440 Hz and the second near 900 Hz.", UserClip("Which?"),
                             audio=audio.astype(np.float32))
    assert judged.claims.source == "measured" and not judged.grounded
    first, second = judged.claims.lines()
    assert first.startswith("✓ 440 Hz (measured 4") and second.startswith("✗ 900 Hz (measured 6")
    right = judge_grounding("The first tone sits near 440 Hz and the second near 660 Hz.", UserClip("Which?"),
                            audio=audio.astype(np.float32))
    assert right.grounded

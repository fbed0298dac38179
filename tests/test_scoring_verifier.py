"""The MGRD verifier: grounded, coherent and correct chains pass; surrogates, loops and contradictions fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from audio_r1.chat import format_assistant
from audio_r1.data.manifest import Item, read_manifest
from audio_r1.data.suite import SILENT_FAMILIES, generate_suite
from audio_r1.data.synth import click, concat, place, set_rms_db, silence, tone
from audio_r1.data.traces import make_trace, surrogate_answer
from audio_r1.scoring.claims import check_claims
from audio_r1.scoring.grounding import find_cues
from audio_r1.scoring.verifier import VerifierConfig, coherence_reasons, conclusion, verify

PITCH = {"f0_hz": [440.0, 660.0], "semitones": 7, "ask": "higher"}
CONTENT_FAMILIES = ("spoken_content", "spoken_arithmetic")


def item(family: str = "pitch_compare", params: dict | None = None, choices: list[str] | None = None,
         answer: str = "The second tone", answer_type: str = "choice", audio: str | None = "a.wav") -> Item:
    choices = ["The first tone", "The second tone"] if choices is None and answer_type == "choice" else choices
    return Item(id="x", family=family, split="test", audio=audio, question="Which tone is higher?", choices=choices,
                answer=answer, answer_type=answer_type, params=PITCH if params is None else params, transcript=None,
                voice=None, seed=0)


def reply(reasoning: str, answer: str) -> str:
    """What the engine returns after the pre-filled `<think>\\n`: reasoning, close tag, answer."""
    return format_assistant(reasoning, answer)[len("<think>\n"):]


GOOD = "The first tone sits near 442 Hz and the second near 655 Hz, so the second is higher."


# ------------------------------------------------------------------------------------------ claims


def test_a_grounded_right_chain_is_accepted() -> None:
    verdict = verify(item(), reply(GOOD, "The second tone"))
    assert verdict.accepted and verdict.reasons == []
    assert verify(item(), "<think>\n" + reply(GOOD, "B")).accepted  # with the open tag, and a letter


def test_wrong_numbers_are_contradicted() -> None:
    verdict = verify(item(), reply("The first tone sits near 300 Hz and the second near 900 Hz, so the second is "
                                   "higher.", "The second tone"))
    assert verdict.correct and verdict.coherent and not verdict.grounded
    assert "claim_contradicted:hz" in verdict.reasons


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("The first is near 440 Hz and the second near 660 Hz, so the first tone is higher.", "comparison"),
        ("I count five distinct beeps at 440 Hz.", None),  # unchecked count: pitch items have no count
        ("Five beeps, each about 0.2 s, at 440 Hz.", None),
    ],
)
def test_comparisons_are_checked_and_unknown_kinds_left_unchecked(text: str, kind: str | None) -> None:
    report = check_claims(text, item())
    assert [c.kind for c in report.contradicted] == ([kind] if kind else [])
    assert report.agree and report.source == "params"


def test_negated_threshold_and_reference_values_are_not_claims() -> None:
    hum = item("noise_type", {"noise": "hum", "hum_hz": 60, "snr_db": 6.0}, ["a hum at 50 Hz", "a hum at 60 Hz"],
               "a hum at 60 Hz")
    report = check_claims("Its fundamental is near 60 Hz (not 50 Hz): a steady hum, not hissy.", hum)
    assert report.agree and not report.contradicted
    voice = item("voice_pitch", {"f0_hz": 230.0, "register": "high", "high_above_hz": 200.0, "low_below_hz": 125.0},
                 ["high", "low"], "high")
    text = "Typical low voices sit near 100 Hz. This one is about 228 Hz, which is above 200 Hz, so it is high."
    report = check_claims(text, voice)
    assert [c.text for c in report.agree] == ["228 Hz"] and not report.contradicted
    assert [c.text for c in report.consistent] == ["it is high"]  # restates the conclusion: not evidence
    assert [c.kind for c in check_claims("So it is low.", voice).contradicted] == ["label"]


def test_categorical_noise_cues() -> None:
    white = item("noise_type", {"noise": "white", "snr_db": 6.0}, ["white noise", "no background noise"],
                 "white noise")
    assert verify(white, reply("A broadband hiss about 6 dB below the melody, flat across frequency.",
                               "white noise")).accepted
    verdict = verify(white, reply("A steady 50 Hz mains hum sits under the melody.", "white noise"))
    assert "claim_contradicted:category" in verdict.reasons


# ------------------------------------------------------------------------------------------ surrogates


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("The speaker says it is the second one, so the second tone is higher.", "surrogate_marker"),
        ("Going by my general impression of the clip, the second tone is higher.", "surrogate_marker"),
        ("According to the transcript, the second one is the answer.", "surrogate_marker"),
        ("Well, I think it is the second one.", "no_acoustic_cue"),
        ("The second tone has a higher pitch.", "no_verified_claim"),  # cue words, but nothing checkable
    ],
)
def test_surrogate_reasoning_is_not_grounded(text: str, reason: str) -> None:
    verdict = verify(item(), reply(text, "The second tone"))
    assert verdict.correct and not verdict.grounded and reason in verdict.reasons


def test_cues_ignore_quoted_speech() -> None:
    cues = find_cues("The speaker says \u201cthis is a loud high tone\u201d, but it measures 440 Hz.")
    assert cues.transcript == ["The speaker says"] and cues.acoustic == ["Hz"]


def test_text_and_content_items_need_no_acoustic_cue() -> None:
    maths = item("text_math", {"operands": [3, 4], "result": 7}, None, "7", "number", audio=None)
    assert verify(maths, reply("Setting it up: 3 + 4. That gives 7.", "7")).accepted
    spoken = item("spoken_content", {"category": "fruit", "word": "plum"}, None, "plum", "text")
    assert verify(spoken, reply("The speaker says \u201cplum\u201d; the word is plum.", "plum")).accepted
    assert "surrogate_marker" in verify(spoken, reply("Going by my general impression, plum.", "plum")).reasons


# ------------------------------------------------------------------------------------------ coherence


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (GOOD + " The second tone is higher.", "think_unclosed"),  # no </think>
        ("<think>\n" + GOOD + "\n</think>\n<think>\nagain\n</think>\nThe second tone", "think_malformed"),
        (reply("Second.", "The second tone"), "reasoning_too_short"),
        (reply(GOOD + " the tone the tone the tone the tone the tone the tone", "The second tone"), "repetition"),
        (reply(GOOD + " hmmmmmmmmmmmmmmmmmmmmmmmmm", "The second tone"), "repetition"),
        (reply(GOOD, ""), "no_answer"),
        (reply(GOOD, "The first tone"), "conclusion_mismatch"),
    ],
)
def test_incoherent_texts_name_the_failure(text: str, reason: str) -> None:
    verdict = verify(item(), text)
    assert not verdict.coherent and reason in verdict.reasons and not verdict.accepted


def test_length_bounds_and_required_conclusion_are_configurable() -> None:
    long = reply(" ".join(f"w{i}" for i in range(50)) + " 440 Hz", "The second tone")
    assert "reasoning_too_long" in coherence_reasons(long, item(), VerifierConfig(max_reasoning_words=20))
    vague = reply("The two tones sit near 440 Hz and 660 Hz.", "The second tone")
    assert coherence_reasons(vague, item()) == []
    assert coherence_reasons(vague, item(), VerifierConfig(require_conclusion=True)) == ["no_conclusion"]


@pytest.mark.parametrize(
    ("reasoning", "choices", "expected"),
    [
        ("Inter-onset intervals vary a lot, so the clicks are unevenly spaced.",
         ["yes, they are evenly spaced", "no, the spacing varies"], None),
        ("Its fundamental is near 60 Hz (not 50 Hz), so it is 60 Hz mains hum.",
         ["no background noise", "a low mains hum at 50 Hz", "a low mains hum at 60 Hz"], "a low mains hum at 60 Hz"),
        ("There is no line at 50 or 60 Hz, so it is white noise.",
         ["white noise (a steady hiss)", "a low mains hum at 50 Hz", "a low mains hum at 60 Hz"],
         "white noise (a steady hiss)"),
        ("I count five distinct beeps, spaced about 2 s apart.", ["2", "4", "5", "7"], "5"),
        ("The pacing keeps changing, so there is no steady pulse: irregular.",
         ["regular (evenly spaced)", "irregular (unevenly spaced)"], "irregular (unevenly spaced)"),
    ],
)
def test_conclusion_of_choice_reasoning(reasoning: str, choices: list[str], expected: str | None) -> None:
    assert conclusion(reasoning, item(choices=choices, answer=choices[0])) == expected


def test_conclusion_of_number_reasoning() -> None:
    count = item("count_events", {"count": 5}, None, "5", "number")
    assert conclusion("I count 5 distinct beeps, spaced about 0.40 s apart.", count) == "5"
    assert conclusion("Counting each one as it starts: one, two, three. So there are three in total.", count) == "3"
    assert conclusion("Setting it up: 12 - 15 = -3.", count) == "-3"


# ------------------------------------------------------------------------------------------ measured truth


def measured_item(family: str, choices: list[str] | None, answer: str, answer_type: str = "choice") -> Item:
    return item(family, {}, choices, answer, answer_type)


def test_claims_about_audio_without_params_are_checked_against_measurements() -> None:
    audio = concat(silence(0.2), set_rms_db(tone(440.0, 0.8), -20.0), silence(0.4), set_rms_db(tone(660.0, 0.6), -30.0),
                   silence(0.3))
    pitch = measured_item("pitch_compare", None, "The second tone")
    right = verify(pitch, reply("First about 445 Hz, then about 650 Hz: the second is higher.", "The second tone"),
                   audio=audio)
    assert right.accepted
    wrong = verify(pitch, reply("First about 300 Hz, then about 900 Hz: the second is higher.", "The second tone"),
                   audio=audio)
    assert "claim_contradicted:hz" in wrong.reasons
    louder = check_claims("The first is around -20 dB and the second is louder.", pitch, audio=audio)
    assert louder.source == "measured" and [c.kind for c in louder.contradicted] == ["comparison"]
    assert louder.agree  # -20 dB
    # without audio there is nothing to measure: the cue words alone decide
    assert verify(pitch, reply("The second tone is higher in pitch.", "The second tone")).grounded


def test_measured_counts_and_tempo() -> None:
    rng = np.random.default_rng(1)
    onsets = [0.3 + 0.5 * i for i in range(6)]
    audio = place([click(rng) for _ in onsets], onsets, 3.6)
    count = measured_item("count_events", None, "6", "number")
    assert verify(count, reply("I count six clicks, one every 0.5 s, about 120 BPM.", "6"), audio=audio).accepted
    wrong = verify(count, reply("I count eight clicks, about 80 BPM.", "6"), audio=audio)
    assert {"claim_contradicted:count", "claim_contradicted:bpm"} <= set(wrong.reasons)


# ------------------------------------------------------------------------------------------ cold-start traces


@pytest.fixture(scope="module")
def suite_items(tmp_path_factory: pytest.TempPathFactory) -> list[Item]:
    """Two items of every family (the silent ones only when espeak-ng is missing)."""
    from audio_r1.data.families import FAMILIES

    families = list(FAMILIES) if shutil.which("espeak-ng") else sorted(SILENT_FAMILIES)
    out = Path(tmp_path_factory.mktemp("suite"))
    paths = generate_suite(out, seed=5, sizes={"dev": 2 * len(families)}, families=families)
    return read_manifest(paths["dev"])


def test_grounded_cold_start_traces_are_accepted(suite_items: list[Item]) -> None:
    for it in suite_items:
        for k in range(6):
            trace = make_trace(it, np.random.default_rng([k, 1]))
            verdict = verify(it, reply(trace, it.answer))
            assert verdict.accepted, (it.family, trace, verdict.reasons)


def test_surrogate_cold_start_traces_are_rejected(suite_items: list[Item]) -> None:
    checked = 0
    for it in suite_items:
        if it.audio is None or it.family in CONTENT_FAMILIES:
            continue  # text maths has no surrogate; for spoken content the words are the evidence
        for k in range(6):
            trace = make_trace(it, np.random.default_rng([k, 2]), surrogate=True)
            verdict = verify(it, reply(trace, surrogate_answer(it)))
            assert not verdict.grounded and not verdict.accepted, (it.family, trace)
            checked += 1
    assert checked >= 30

"""The generalisation set: deterministic, true to its parameters, and outside the suite's generators."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_r1.data import families as suite_families
from audio_r1.data.generalisation import FAMILIES, WAVEFORMS, generate_generalisation
from audio_r1.data.manifest import read_manifest
from audio_r1.data.synth import TIMBRES
from audio_r1.scoring.answers import is_correct
from audio_r1.scoring.measurements import measure

FLITE = shutil.which("flite") is not None
SPOKEN = ("gen_spoken_digit", "gen_speaking_rate", "gen_noise")  # these call flite (noise: on half the clips)
SILENT = [f for f in FAMILIES if f not in SPOKEN]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    families = list(FAMILIES) if FLITE else SILENT
    return generate_generalisation(tmp_path_factory.mktemp("gen"), n=4 * len(families), seed=3, families=families)


def test_same_seed_same_bytes(generated: Path, tmp_path: Path) -> None:
    again = generate_generalisation(tmp_path, n=len(read_manifest(generated)), seed=3,
                                    families=list(FAMILIES) if FLITE else SILENT)
    assert again.read_text() == generated.read_text()
    for item in read_manifest(generated):
        assert (tmp_path / item.audio).read_bytes() == (generated.parent / item.audio).read_bytes()


def test_every_item_answers_itself_and_keeps_its_truth(generated: Path) -> None:
    items = read_manifest(generated)
    assert {i.family for i in items} == set(FAMILIES if FLITE else SILENT)
    for item in items:
        assert is_correct(item, item.answer), item.id
        if item.family not in ("gen_spoken_digit", "gen_noise", "gen_chord"):
            assert item.params.get("segments_s"), item.id
        if item.family == "gen_count":
            assert item.params["count"] == len(item.params["onsets_s"]) and 2 <= item.params["count"] <= 7


def test_measured_pitch_and_count_agree_with_the_parameters(generated: Path) -> None:
    checked = 0
    for item in read_manifest(generated):
        audio, rate = sf.read(generated.parent / item.audio, dtype="float32")
        assert rate == 16000
        if item.family == "gen_pitch_order" and "background_snr_db" not in item.params:
            order = np.argsort(item.params["f0_hz"])
            segments = measure(audio).segments
            if len(segments) == len(order):
                pitches = [s.f0_hz or 0.0 for s in segments]
                assert list(np.argsort(pitches)) == list(order), item.id
                checked += 1
    assert checked >= 1


def test_it_shares_no_waveform_with_the_suite() -> None:
    assert not set(WAVEFORMS) & set(TIMBRES)
    assert not set(FAMILIES) & set(suite_families.FAMILIES)


@pytest.mark.skipif(not FLITE, reason="flite is not installed (apt-get install flite)")
def test_speech_comes_from_flite(generated: Path) -> None:
    digits = [i for i in read_manifest(generated) if i.family == "gen_spoken_digit"]
    assert digits and all(i.params["engine"] == "flite" for i in digits)


@pytest.mark.skipif(not FLITE, reason="flite is not installed (apt-get install flite)")
def test_speaking_rates_are_clearly_fast_or_slow() -> None:
    from audio_r1.data.generalisation import FAST_MIN_WPS, SLOW_MAX_WPS, item_rng, speaking_rate

    clips = [speaking_rate(item_rng(5, i)) for i in range(6)]
    for clip in clips:
        wps = clip.params["words_per_s"]
        assert wps >= FAST_MIN_WPS if clip.params["rate"] == "fast" else wps <= SLOW_MAX_WPS
        assert clip.params["engine"] == "flite"


def test_chords_hold_their_quality_and_noise_its_level() -> None:
    from audio_r1.data.generalisation import background_noise, chord_quality, item_rng

    for i in range(12):
        clip = chord_quality(item_rng(1, i))
        midis = np.round(12 * np.log2(np.array(clip.params["f0_hz"]) / clip.params["root_hz"])).astype(int) % 12
        assert sorted(midis) == ([0, 4, 7] if clip.params["quality"] == "major" else [0, 3, 7])
    if FLITE:
        for i in range(8):
            clip = background_noise(item_rng(2, i))
            assert clip.answer in clip.choices and len(clip.choices) == 3
            assert ("snr_db" in clip.params) == (clip.params["noise"] != "none")


def test_open_questions_with_closed_answers_record_their_chance(generated: Path) -> None:
    from audio_r1.eval.suite import score_item

    items = read_manifest(generated)
    for item in items:
        if item.choices is None and item.answer_type == "text":
            assert 0 < item.params["chance"] <= 0.5, item.id
            assert score_item(item, "", item.answer, 0).chance == item.params["chance"]
    assert any(i.choices is None and i.answer_type == "text" for i in items)


def test_eval_generalisation_reports_the_family_table(generated: Path, tmp_path: Path, capsys) -> None:
    from audio_r1.cli import main

    code = main(["eval", "generalisation", "--data", str(generated), "--model", "tiny", "--max-new-tokens", "4",
                 "--limit", "6", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "| gen_pitch_order |" in printed and "faithful" in printed


def test_two_plain_sines_are_an_extra_probe(tmp_path: Path) -> None:
    """`gen_two_sines` is generated only when named; the answer is the tone with the higher f0."""
    path = generate_generalisation(tmp_path, n=6, seed=1, families=["gen_two_sines"])
    for item in read_manifest(path):
        assert item.family == "gen_two_sines" and item.params["waveform"] == "sine"
        higher = int(np.argmax(item.params["f0_hz"]))
        assert item.answer == item.choices[higher]
        audio, rate = sf.read(tmp_path / item.audio, dtype="float32")
        segments = measure(audio).segments
        bounds = [t for s in segments for t in (s.start_s, s.end_s)]
        assert bounds == pytest.approx([t for span in item.params["segments_s"] for t in span], abs=0.03)
        assert [s.f0_hz for s in segments] == pytest.approx(item.params["f0_hz"], rel=0.03)
    assert "gen_two_sines" not in FAMILIES

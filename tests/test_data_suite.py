"""Tests for the synthetic suite: determinism, disjoint splits, valid items, and audio that really has the
property each answer depends on (checked with plain numpy, independently of the generator's own code)."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_r1.data import families as fam
from audio_r1.data.acoustics import dominant_frequency, estimate_f0, onsets
from audio_r1.data.manifest import Item, read_manifest
from audio_r1.data.suite import FAMILIES, generate_suite, item_seed, main, make_sample
from audio_r1.data.synth import SAMPLE_RATE, EspeakError, tone
from audio_r1.data.voices import SPLITS, VoicePool
from audio_r1.scoring.answers import is_correct

SIZES = {"train": 28, "dev": 14, "test": 28}  # two of each family in train and test, one in dev


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("suite")
    generate_suite(out, seed=0, sizes=SIZES)
    return out


@pytest.fixture(scope="module")
def items(suite: Path) -> list[Item]:
    return [item for split in SPLITS for item in read_manifest(suite / f"{split}.jsonl")]


def _audio(suite: Path, item: Item) -> np.ndarray:
    x, rate = sf.read(suite / item.audio, dtype="float64")
    assert rate == SAMPLE_RATE and x.ndim == 1
    return x


def _segment(x: np.ndarray, seg: list[float]) -> np.ndarray:
    return x[round(seg[0] * SAMPLE_RATE):round(seg[1] * SAMPLE_RATE)]


def _peak_hz(x: np.ndarray, lo: float, hi: float) -> float:
    """Strongest FFT bin between lo and hi Hz (0.25 Hz resolution)."""
    n = 4 * max(len(x), SAMPLE_RATE)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    band = (freqs >= lo) & (freqs <= hi)
    return float(freqs[band][np.argmax(spec[band])])


def _magnitude_at(x: np.ndarray, freq: float) -> float:
    """Largest FFT magnitude within 0.5 Hz of ``freq``."""
    n = 4 * len(x)
    spec = np.abs(np.fft.rfft(x, n))
    k = round(freq * n / SAMPLE_RATE)
    half = max(1, round(0.5 * n / SAMPLE_RATE))
    return float(spec[k - half:k + half + 1].max())


def _level(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x ** 2) + 1e-20))


def _bursts(x: np.ndarray, min_gap_s: float = 0.08) -> list[float]:
    """Start times of separate sound events: 5 ms frames whose peak exceeds 3% of the clip's peak."""
    hop = int(0.005 * SAMPLE_RATE)
    frames = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(axis=1)
    active = frames > 0.03 * frames.max()
    starts = [i * hop / SAMPLE_RATE for i in np.flatnonzero(active[1:] & ~active[:-1]) + 1]
    if active[0]:
        starts.insert(0, 0.0)
    merged: list[float] = []
    for t in starts:
        if not merged or t - merged[-1] >= min_gap_s:
            merged.append(t)
    return merged


def _of(items: list[Item], family: str) -> list[Item]:
    found = [i for i in items if i.family == family]
    assert found, f"no {family} items"
    return found


# ------------------------------------------------------------------------------------------------ structure


def test_every_family_in_every_split_with_valid_items(suite: Path, items: list[Item]) -> None:
    for split, n in SIZES.items():
        got = [i for i in items if i.split == split]
        assert len(got) == n
        assert Counter(i.family for i in got) == {f: n // len(FAMILIES) for f in FAMILIES}
    for item in items:
        assert is_correct(item, item.answer)
        if item.choices:
            assert is_correct(item, "ABCD"[item.choices.index(item.answer)])
        if item.family == "text_math":
            assert item.audio is None and item.voice is None
            assert int(item.answer) == item.params["result"]
            continue
        info = sf.info(suite / item.audio)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert 1.0 <= info.duration <= 6.0
        assert item.audio == f"audio/{item.split}/{item.id}.wav"
    assert {i.answer_type for i in items} >= {"choice", "number"}


def test_open_and_choice_answers_both_occur() -> None:
    pool = VoicePool.for_split("train")
    kinds = {fam.spoken_content(np.random.default_rng(s), pool).answer_type for s in range(24)}
    assert kinds == {"choice", "number", "text"}
    kinds = {fam.count_events(np.random.default_rng(s), pool).answer_type for s in range(12)}
    assert kinds == {"choice", "number"}


def test_same_seed_gives_identical_bytes_whatever_the_workers(suite: Path, tmp_path: Path) -> None:
    generate_suite(tmp_path, seed=0, sizes=SIZES, workers=2)
    ours = sorted(p.relative_to(suite) for p in suite.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert ours == theirs and len(ours) > 60
    for rel in ours:
        assert (suite / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_different_seed_gives_different_suite(suite: Path, tmp_path: Path) -> None:
    generate_suite(tmp_path, seed=1, sizes={"train": 14})
    assert (tmp_path / "train.jsonl").read_bytes() != (suite / "train.jsonl").read_bytes()
    ours = {p.name: p.read_bytes() for p in (suite / "audio/train").iterdir()}
    theirs = {p.name: p.read_bytes() for p in (tmp_path / "audio/train").iterdir()}
    assert not set(ours.values()) & set(theirs.values())


def test_items_regenerate_from_their_seed(suite: Path, items: list[Item]) -> None:
    for item in items[:6]:
        assert item.seed == item_seed(0, item.split, int(item.id.split("-")[1]))
        sample = make_sample(item.family, item.split, item.seed)
        assert (sample.question, sample.answer, sample.params) == (item.question, item.answer, item.params)
        if item.audio:
            pcm, _ = sf.read(suite / item.audio, dtype="int16")
            np.testing.assert_array_equal(np.round(sample.audio.astype(np.float64) * 32767).astype(np.int16), pcm)


def test_splits_are_disjoint_by_seed_and_voice(items: list[Item]) -> None:
    seeds = {s: {i.seed for i in items if i.split == s} for s in SPLITS}
    voices = {s: {i.voice for i in items if i.split == s and i.voice} for s in SPLITS}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not seeds[a] & seeds[b]
        assert not voices[a] & voices[b]
        pa, pb = VoicePool.for_split(a), VoicePool.for_split(b)
        assert not set(pa.accents) & set(pb.accents)
        assert not set(pa.high + pa.low) & set(pb.high + pb.low)
    for s in SPLITS:
        assert voices[s] and voices[s] <= VoicePool.for_split(s).all_voices()
    assert len({i.id for i in items}) == len(items)


def test_every_pooled_voice_exists_in_espeak_ng() -> None:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    data = Path(re.search(r"Data at: (\S+)", out).group(1))
    for split in SPLITS:
        pool = VoicePool.for_split(split)
        for variant in pool.high + pool.low:
            assert (data / "voices" / "!v" / variant).is_file(), variant
    listed = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True).stdout.split()
    for split in SPLITS:
        assert set(VoicePool.for_split(split).accents) <= set(listed)


def test_restricting_families_and_bad_arguments(tmp_path: Path) -> None:
    out = generate_suite(tmp_path, sizes={"dev": 4}, families=["text_math", "tempo"])
    assert {i.family for i in read_manifest(out["dev"])} == {"text_math", "tempo"}
    with pytest.raises(ValueError, match="unknown families"):
        generate_suite(tmp_path, sizes={"dev": 1}, families=["nope"])
    with pytest.raises(ValueError, match="unknown split"):
        generate_suite(tmp_path, sizes={"validation": 1})
    with pytest.raises(ValueError, match="seed"):
        generate_suite(tmp_path, seed=-1, sizes={"dev": 1})


def test_missing_espeak_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("audio_r1.data.synth.shutil.which", lambda name: None)
    with pytest.raises(EspeakError, match="apt-get install espeak-ng"):
        generate_suite(tmp_path, sizes={"dev": 2}, families=["voice_pitch"])
    generate_suite(tmp_path, sizes={"dev": 2}, families=["pitch_compare"])  # no speech needed


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--out", str(tmp_path), "--train", "3", "--dev", "1", "--test", "1", "--families", "text_math,rhythm"]
    assert main(args) == 0
    assert "train: 3 items" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "train.jsonl")) == 3
    assert main(["--out", str(tmp_path), "--families", "nope", "--quiet"]) == 2
    assert "unknown families" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ acoustics


def test_pitch_items_have_the_stated_frequencies(suite: Path, items: list[Item]) -> None:
    for item in _of(items, "pitch_compare"):
        x = _audio(suite, item)
        for seg, f0 in zip(item.params["segments_s"], item.params["f0_hz"], strict=True):
            assert abs(_peak_hz(_segment(x, seg), 60, 4000) / f0 - 1) < 0.03
        hi = int(np.argmax(item.params["f0_hz"]))
        want = hi if item.params["ask"] == "higher" else 1 - hi
        assert item.answer == item.choices[want]


def test_count_items_have_that_many_onsets(suite: Path, items: list[Item]) -> None:
    for item in _of(items, "count_events"):
        x = _audio(suite, item)
        found = _bursts(x)
        assert len(found) == item.params["count"] == int(item.answer)
        np.testing.assert_allclose(found, item.params["onsets_s"], atol=0.02)


def test_loudness_items_order_matches_the_answer(suite: Path, items: list[Item]) -> None:
    for item in _of(items, "loudness_compare"):
        x = _audio(suite, item)
        levels = [_level(_segment(x, s)) for s in item.params["segments_s"]]
        np.testing.assert_allclose(levels, item.params["rms_db"], atol=0.2)
        assert abs(levels[0] - levels[1]) >= 6 - 0.2
        loud = int(np.argmax(levels))
        assert item.answer == item.choices[loud if item.params["ask"] == "louder" else 1 - loud]


def test_duration_items_have_the_stated_lengths(suite: Path, items: list[Item]) -> None:
    for item in _of(items, "duration_compare"):
        x = _audio(suite, item)
        hop = 80
        frames = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(axis=1) > 1e-3
        runs = np.diff(np.concatenate([[0], frames.astype(int), [0]]))
        lengths = (np.flatnonzero(runs == -1) - np.flatnonzero(runs == 1)) * hop / SAMPLE_RATE
        np.testing.assert_allclose(lengths, item.params["durations_s"], rtol=0.05, atol=0.02)
        assert max(lengths) / min(lengths) > 1.3
        long = int(np.argmax(lengths))
        assert item.answer == item.choices[long if item.params["ask"] == "longer" else 1 - long]


def test_tempo_and_rhythm_timing(suite: Path, items: list[Item]) -> None:
    for item in _of(items, "tempo"):
        bpm = 60 / np.median(np.diff(_bursts(_audio(suite, item))))
        assert abs(bpm / item.params["bpm"] - 1) < 0.03
        band = "slow" if bpm < 90 else "fast" if bpm > 130 else "medium"
        assert band == item.params["band"] and item.answer.startswith(band)
    for item in _of(items, "rhythm"):
        gaps = np.diff(_bursts(_audio(suite, item)))
        assert len(gaps) == item.params["n_events"] - 1
        spread = gaps.std() / gaps.mean()
        assert (spread < 0.05) if item.params["regular"] else (spread > 0.25)


def test_noise_items_have_the_stated_background(suite: Path, items: list[Item]) -> None:
    pool = VoicePool.for_split("train")
    samples = [fam.noise_type(np.random.default_rng(s), pool) for s in range(16)]
    assert {s.params["noise"] for s in samples} == {"none", "white", "hum"}
    for s in samples:
        x = s.audio.astype(np.float64)
        edge = x[: int(0.25 * SAMPLE_RATE)]  # 0.3 s before the foreground starts: background only
        if s.params["noise"] == "hum":
            assert abs(_peak_hz(x, 40, 75) - s.params["hum_hz"]) < 1
            assert s.answer == f"a low mains hum at {s.params['hum_hz']} Hz"
        elif s.params["noise"] == "white":
            spec = np.abs(np.fft.rfft(edge)) ** 2
            low, high = spec[len(spec) // 8: len(spec) // 4].mean(), spec[len(spec) // 2:].mean()
            assert 0.5 < high / low < 2  # flat spectrum
        else:
            assert np.abs(edge).max() == 0


def test_chord_items_have_the_stated_third(suite: Path, items: list[Item]) -> None:
    for item in _of(items, "chord_quality"):
        x, root = _audio(suite, item), item.params["root_hz"]
        major, minor = _magnitude_at(x, root * 2 ** (4 / 12)), _magnitude_at(x, root * 2 ** (3 / 12))
        assert (major > 10 * minor) if item.answer == "major" else (minor > 10 * major)


def test_voice_items_have_the_measured_pitch_and_rate(suite: Path, items: list[Item]) -> None:
    for item in _of(items, "voice_pitch"):
        f0 = estimate_f0(_audio(suite, item))
        assert abs(f0 / item.params["f0_hz"] - 1) < 0.03
        assert (f0 >= 200) if item.params["register"] == "high" else (f0 <= 125)
    for item in _of(items, "speaking_rate"):
        x = _audio(suite, item)
        voiced = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
        wps = item.params["n_words"] / ((voiced[-1] - voiced[0]) / SAMPLE_RATE)
        assert (wps > 3.5) if item.params["rate"] == "fast" else (wps < 3.1)  # span without the pads


def test_estimate_f0_on_known_signals() -> None:
    for f in (80.0, 110.0, 220.0, 330.0):
        assert abs(estimate_f0(tone(f, 0.8, "harmonic")) / f - 1) < 0.02
    assert estimate_f0(np.zeros(16000)) is None
    assert abs(dominant_frequency(tone(440.0, 0.5, "square")) - 440.0) < 1
    assert len(onsets(np.concatenate([np.zeros(800), tone(1000, 0.05), np.zeros(4000), tone(1000, 0.05)]))) == 2


@pytest.mark.parametrize("trap", list(fam.TRAPS))
def test_trap_words_contradict_the_sound(trap: str) -> None:
    pool = VoicePool.for_split("dev")
    for seed in range(2):
        s = fam.TRAPS[trap](np.random.default_rng(seed), pool)
        p = s.params
        assert p["trap"] == trap and p["claim"] != p["truth"] and s.transcript
        x = s.audio.astype(np.float64)
        if trap == "loudness":
            level = _level(x[int(0.2 * SAMPLE_RATE): len(x) - int(0.2 * SAMPLE_RATE)])
            assert abs(level - p["rms_db"]) < 0.5
            assert (level >= fam.LOUD_DB) if p["truth"] == "loud" else (level <= fam.QUIET_DB)
            assert s.answer == p["truth"]
        elif trap in ("rate", "voice_pitch", "tone_pitch"):
            assert s.answer == p["truth"]
            if trap == "voice_pitch":
                f0 = estimate_f0(x)
                assert (f0 >= 200) if p["truth"] == "high" else (f0 <= 125)
            if trap == "tone_pitch":
                tail = x[-int(0.7 * SAMPLE_RATE):-int(0.3 * SAMPLE_RATE)]  # the tone alone, after the words
                assert abs(_peak_hz(tail, 60, 4000) / p["tone_hz"] - 1) < 0.03
            if trap == "rate":
                assert (p["words_per_s"] >= 3.6) if p["truth"] == "fast" else (p["words_per_s"] <= 2.8)
        elif trap == "count":
            beeps = x[int((p["onsets_s"][0] - 0.05) * SAMPLE_RATE):]
            assert len(_bursts(beeps)) == p["truth"] == int(s.answer) != p["claim"]
        else:
            edge = x[: int(0.25 * SAMPLE_RATE)]
            assert (np.abs(edge).max() > 1e-3) == (p["truth"] == "noisy")
            assert s.answer == ("yes" if p["truth"] == "noisy" else "no")

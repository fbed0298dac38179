"""Measured audio features (librosa): pitch, levels, segments, onsets and tempo of generated sounds."""

from __future__ import annotations

import numpy as np
import pytest

from audio_r1.data.synth import beep, click, concat, place, set_rms_db, silence, tone
from audio_r1.scoring.measurements import MeasurementError, measure, measured_params


def two_tones() -> np.ndarray:
    return concat(silence(0.2), set_rms_db(tone(440.0, 0.8, "square"), -20.0), silence(0.4),
                  set_rms_db(tone(660.0, 0.6), -30.0), silence(0.3))


def test_two_tones_give_two_segments_with_their_pitch_level_and_duration() -> None:
    features = measure(two_tones())
    assert len(features.segments) == 2
    first, second = features.segments
    assert first.f0_hz == pytest.approx(440.0, rel=0.02) and second.f0_hz == pytest.approx(660.0, rel=0.02)
    assert first.rms_db == pytest.approx(-20.0, abs=1.0) and second.rms_db == pytest.approx(-30.0, abs=1.0)
    assert first.duration_s == pytest.approx(0.8, abs=0.06) and second.duration_s == pytest.approx(0.6, abs=0.06)
    assert features.count == 2 and features.tempo_bpm == []  # two events have no tempo
    params = measured_params(features)
    assert params["count"] == 2 and len(params["f0_hz"]) == 2 and "bpm" not in params


def test_clicks_give_onsets_count_and_tempo() -> None:
    rng = np.random.default_rng(0)
    onsets = [0.3 + 0.5 * i for i in range(7)]  # 120 BPM
    features = measure(place([click(rng) for _ in onsets], onsets, 4.0))
    assert features.count == 7
    assert np.allclose(features.onsets_s, onsets, atol=0.03)
    assert features.tempo_bpm[0] == pytest.approx(120.0, rel=0.03)
    assert measured_params(features)["bpm"][0] == features.tempo_bpm[0]


def test_beeps_are_counted_once_each_and_keep_their_pitch() -> None:
    onsets = [0.2, 0.5, 0.9, 1.2, 1.7]
    features = measure(place([beep(1000.0, 0.08) for _ in onsets], onsets, 2.5))
    assert features.count == 5
    assert all(s.f0_hz == pytest.approx(1000.0, rel=0.02) for s in features.segments)


def test_other_sample_rates_are_resampled_and_bad_input_is_refused() -> None:
    sr = 8000
    x = 0.3 * np.sin(2 * np.pi * 300.0 * np.arange(sr) / sr).astype(np.float32)
    assert measure(x, sample_rate=sr).f0_hz == pytest.approx(300.0, rel=0.02)
    assert measure(np.zeros(16000, dtype=np.float32)).segments == []
    with pytest.raises(MeasurementError, match="mono"):
        measure(np.zeros((2, 16000)))
    with pytest.raises(MeasurementError, match="NaN"):
        measure(np.full(16000, np.nan))

"""Acoustic quantities measured from a waveform: the "truth" for audio that comes without parameters.

(These are measurements for checking claims, not the model's input features: those are the log-mels
of `audio/features.py`.) The claim checker (`claims.py`) checks the numbers a reasoning chain states (Hz, dB, seconds, BPM, counts)
against an item's true generation parameters. Real recordings have none, so this module measures the
same quantities from the samples with librosa:

- sounding segments from the frame RMS envelope (frames within ``floor_db`` of the loudest one),
  with each segment's level (dBFS RMS), duration and median pitch (``librosa.yin``);
- onsets (``librosa.onset.onset_detect``) and their count;
- tempo (with at least three onsets): 60 / median inter-onset interval, and
  ``librosa.feature.tempo`` on the onset envelope as a second candidate.

:func:`measured_params` turns the result into a ``params`` dict in the vocabulary of
``claims.TRUTH_KEYS`` so the same claim checker serves both paths. librosa is imported inside the
functions (it is slow to import and only this path needs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AudioR1Error

SAMPLE_RATE = 16000
FRAME = 400  # 25 ms
HOP = 160  # 10 ms: 100 frames per second, as the model's log-mel front end


class MeasurementError(AudioR1Error, ValueError):
    """The waveform cannot be measured (empty, not mono, not finite)."""


@dataclass
class Segment:
    """One stretch of sound between silences."""

    start_s: float
    end_s: float
    rms_db: float
    f0_hz: float | None  # median pitch of the segment; None when it has no stable periodicity

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class AudioMeasurements:
    """What was measured from one clip."""

    duration_s: float
    rms_db: float  # level of the sounding part (all segments together), dBFS RMS
    segments: list[Segment] = field(default_factory=list)
    onsets_s: list[float] = field(default_factory=list)
    tempo_bpm: list[float] = field(default_factory=list)  # candidates; empty when not rhythmic
    f0_hz: float | None = None  # median pitch over all sounding frames

    @property
    def count(self) -> int:
        """Number of separate sound events (onsets, or segments when onset detection found fewer)."""
        return max(len(self.onsets_s), len(self.segments))


def measure(
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    *,
    floor_db: float = 35.0,
    min_gap_s: float = 0.05,
    min_segment_s: float = 0.02,
    fmin: float = 50.0,
    fmax: float = 2000.0,
) -> AudioMeasurements:
    """Measure segments, levels, pitch, onsets and tempo of a mono waveform (float, any rate).

    ``floor_db``: frames quieter than the loudest frame by more than this are silence; gaps shorter
    than ``min_gap_s`` do not split a segment; segments shorter than ``min_segment_s`` are dropped.
    """
    import librosa  # librosa: slow to import, only measuring needs it

    x = _mono_float(audio)
    if sample_rate != SAMPLE_RATE:
        x = librosa.resample(x, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    duration = len(x) / SAMPLE_RATE
    if len(x) < FRAME or not np.any(x):
        return AudioMeasurements(duration_s=duration, rms_db=_db(np.sqrt(np.mean(x**2))) if len(x) else -200.0)
    rms = librosa.feature.rms(y=x, frame_length=FRAME, hop_length=HOP, center=True)[0]
    level = 20 * np.log10(np.maximum(rms, 1e-10))
    active = level > max(level.max() - floor_db, -80.0)
    spans = _spans(active, round(min_gap_s * SAMPLE_RATE / HOP), round(min_segment_s * SAMPLE_RATE / HOP))
    f0 = _pitch_track(x, fmin, fmax)
    segments = []
    for first, last in spans:
        start, end = first * HOP / SAMPLE_RATE, min(duration, (last + 1) * HOP / SAMPLE_RATE)
        part = x[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        segments.append(Segment(round(start, 3), round(end, 3), _db(np.sqrt(np.mean(part**2))),
                                _median_pitch(f0[first : last + 1])))
    sounding = np.concatenate([x[int(s.start_s * SAMPLE_RATE) : int(s.end_s * SAMPLE_RATE)] for s in segments]) \
        if segments else x
    onsets = librosa.onset.onset_detect(y=x, sr=SAMPLE_RATE, hop_length=HOP, units="time",
                                        wait=max(1, round(0.1 * SAMPLE_RATE / HOP)), backtrack=True)
    onsets_s = [round(float(t), 3) for t in onsets if _rises(level, float(t))]
    mask = np.zeros(len(f0), dtype=bool)
    for first, last in spans:
        mask[first : last + 1] = True
    return AudioMeasurements(
        duration_s=round(duration, 3),
        rms_db=_db(np.sqrt(np.mean(sounding**2))),
        segments=segments,
        onsets_s=onsets_s,
        tempo_bpm=_tempo(x, onsets_s),
        f0_hz=_median_pitch(f0[mask[: len(f0)]]),
    )


def measured_params(features: AudioMeasurements) -> dict[str, Any]:
    """The measurements as a ``params`` dict the grounding checker reads (``claims.TRUTH_KEYS``).

    Levels of every segment plus the whole sounding part, each segment's pitch with the clip's median
    pitch, segment spans, onsets, the event count and the tempo. Keys without a measurement are left out.
    """
    params: dict[str, Any] = {"duration_s": features.duration_s}
    levels = [s.rms_db for s in features.segments]
    params["rms_db"] = [*levels, features.rms_db] if len(levels) > 1 else [features.rms_db]
    pitches = [s.f0_hz for s in features.segments if s.f0_hz is not None]
    if features.f0_hz is not None and features.f0_hz not in pitches:
        pitches.append(features.f0_hz)
    if pitches:
        params["f0_hz"] = pitches
    if features.segments:
        params["segments_s"] = [[s.start_s, s.end_s] for s in features.segments]
    if features.onsets_s:
        params["onsets_s"] = list(features.onsets_s)
    if features.segments or features.onsets_s:
        params["count"] = features.count
    if features.tempo_bpm:
        params["bpm"] = list(features.tempo_bpm)
    return params


# --------------------------------------------------------------------------------------------- helpers


def _mono_float(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise MeasurementError(f"expected a mono waveform (1-D array), got shape {x.shape}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise MeasurementError("the waveform holds NaN or infinite samples")
    return x


def _db(value: float) -> float:
    return round(float(20 * np.log10(max(float(value), 1e-10))), 2)


def _spans(active: np.ndarray, max_gap: int, min_len: int) -> list[tuple[int, int]]:
    """Runs of active frames (inclusive frame indices), bridging gaps up to ``max_gap`` frames."""
    spans: list[list[int]] = []
    for i in np.flatnonzero(active):
        if spans and i - spans[-1][1] <= max_gap + 1:
            spans[-1][1] = int(i)
        else:
            spans.append([int(i), int(i)])
    return [(a, b) for a, b in spans if b - a + 1 >= min_len]


def _pitch_track(x: np.ndarray, fmin: float, fmax: float) -> np.ndarray:
    """Frame-wise F0 (Hz) by YIN on the same 10 ms grid as the RMS frames; NaN where aperiodic."""
    import librosa  # librosa: slow to import, only measuring needs it

    frame = 2048 if fmin < 2 * SAMPLE_RATE / 1024 else 1024
    f0 = librosa.yin(x, fmin=fmin, fmax=fmax, sr=SAMPLE_RATE, frame_length=frame, hop_length=HOP, center=True)
    # YIN always answers; keep frames whose periodicity is clear (aperiodicity of the best lag is low)
    frames = librosa.util.frame(np.pad(x, frame // 2, mode="constant"), frame_length=frame, hop_length=HOP)
    strength = _periodicity(frames, f0)
    return np.where(strength > 0.5, f0, np.nan)


def _periodicity(frames: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation at the YIN period for each frame (1 = perfectly periodic)."""
    n = min(frames.shape[1], len(f0))
    out = np.zeros(len(f0))
    for i in range(n):
        lag = int(round(SAMPLE_RATE / f0[i]))
        seg = frames[:, i].astype(np.float64)
        if lag <= 0 or lag >= len(seg) // 2:
            continue
        a, b = seg[:-lag], seg[lag:]
        denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
        out[i] = np.dot(a, b) / denom if denom > 0 else 0.0
    return out


def _median_pitch(f0: np.ndarray) -> float | None:
    voiced = f0[np.isfinite(f0)]
    if len(voiced) < 3:
        return None
    return round(float(np.median(voiced)), 1)


def _rises(level: np.ndarray, t: float, window_s: float = 0.05, min_rise_db: float = 3.0) -> bool:
    """Whether the level after ``t`` peaks above the level before it: an onset, not a sound's end."""
    i, w = int(round(t * SAMPLE_RATE / HOP)), max(1, round(window_s * SAMPLE_RATE / HOP))
    before = level[max(0, i - w) : i]
    after = level[i : i + w + 1]
    if len(after) == 0:
        return False
    return len(before) == 0 or float(after.max()) >= float(np.mean(before)) + min_rise_db


def _tempo(x: np.ndarray, onsets_s: list[float]) -> list[float]:
    """Tempo candidates (BPM): 60 / median inter-onset interval, then librosa's estimate.

    librosa's beat-level estimate from the onset envelope may pick a multiple of the pulse, so both are
    kept. Empty when the clip has fewer than three onsets: a tempo of two events means nothing.
    """
    import librosa  # librosa: slow to import, only measuring needs it

    if len(onsets_s) < 3:
        return []
    candidates = [round(float(60.0 / np.median(np.diff(onsets_s))), 1)]
    envelope = librosa.onset.onset_strength(y=x, sr=SAMPLE_RATE, hop_length=HOP)
    estimate = np.atleast_1d(librosa.feature.tempo(onset_envelope=envelope, sr=SAMPLE_RATE, hop_length=HOP))
    if len(estimate) and np.isfinite(estimate[0]) and estimate[0] > 0:
        candidates.append(round(float(estimate[0]), 1))
    return candidates

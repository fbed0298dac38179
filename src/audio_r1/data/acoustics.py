"""Cheap acoustic measurements: dominant frequency, speech F0, onsets, levels.

The generator uses them to record measured values next to the set ones (e.g. a voice's real F0), and the
tests use them to check that every clip really has the property its answer depends on.
"""

from __future__ import annotations

import numpy as np

from audio_r1.data.synth import SAMPLE_RATE, rms_db

__all__ = ["band_level_db", "dominant_frequency", "estimate_f0", "onsets", "rms_db"]


def dominant_frequency(x: np.ndarray, fmin: float = 40.0, fmax: float = 8000.0) -> float:
    """Frequency (Hz) of the strongest spectral peak between ``fmin`` and ``fmax``, refined by interpolation."""
    x = np.asarray(x, dtype=np.float64)
    n = max(len(x), SAMPLE_RATE)  # zero-pad to >= 1 Hz bins
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=4 * n))
    freqs = np.fft.rfftfreq(4 * n, 1.0 / SAMPLE_RATE)
    band = np.flatnonzero((freqs >= fmin) & (freqs <= fmax))
    k = band[np.argmax(spec[band])]
    if 0 < k < len(spec) - 1:  # parabolic interpolation on log magnitude
        a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return float(k * SAMPLE_RATE / (4 * n))


def band_level_db(x: np.ndarray, fmin: float, fmax: float) -> float:
    """Mean power (dB) of the spectrum between ``fmin`` and ``fmax`` Hz, relative to the whole spectrum."""
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    band = (freqs >= fmin) & (freqs <= fmax)
    return float(10 * np.log10(spec[band].sum() / (spec.sum() + 1e-20) + 1e-20))


def estimate_f0(x: np.ndarray, fmin: float = 50.0, fmax: float = 500.0) -> float | None:
    """Median fundamental frequency (Hz) of the voiced frames of speech, by normalised autocorrelation.

    Frames are 50 ms with a 10 ms hop; each frame's autocorrelation is divided by the window's own (Boersma's
    correction, which keeps long periods from losing to short ones) and the shortest lag whose peak is within
    10% of the best is taken (no octave-down errors). A frame counts as voiced when it is within 30 dB of the
    loudest frame and its autocorrelation peak is above 0.5. Returns None when fewer than five frames are
    voiced.
    """
    x = np.asarray(x, dtype=np.float64)
    size, hop = int(0.05 * SAMPLE_RATE), int(0.01 * SAMPLE_RATE)
    if len(x) < size:
        return None
    window = np.hanning(size)
    idx = np.arange(size)[None, :] + hop * np.arange((len(x) - size) // hop + 1)[:, None]
    frames = x[idx]
    frames = (frames - frames.mean(axis=1, keepdims=True)) * window
    energy = (frames ** 2).sum(axis=1)
    loud = energy > energy.max() * 1e-3
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, n=2 * size)) ** 2)[:, :size]
    ac_window = np.fft.irfft(np.abs(np.fft.rfft(window, n=2 * size)) ** 2)[:size]
    ac = ac / (ac[:, :1] + 1e-12) / (ac_window / ac_window[0])
    lo, hi = int(SAMPLE_RATE / fmax), int(SAMPLE_RATE / fmin)
    band = ac[:, lo - 1:hi + 1]
    peaks = (band[:, 1:-1] >= band[:, :-2]) & (band[:, 1:-1] >= band[:, 2:])
    best = np.where(peaks, band[:, 1:-1], -np.inf).max(axis=1, keepdims=True)
    # the shortest lag within 10% of the best peak: a periodic signal peaks equally at 2T, 3T...
    lags = lo + np.argmax(peaks & (band[:, 1:-1] >= 0.9 * best), axis=1)
    strength = ac[np.arange(len(ac)), lags]
    voiced = loud & (strength > 0.5)
    if voiced.sum() < 5:
        return None
    return float(np.median(SAMPLE_RATE / lags[voiced]))


def onsets(x: np.ndarray, threshold_db: float = -30.0, min_gap_s: float = 0.08) -> list[float]:
    """Onset times (s) of separate sound events: where a 5 ms envelope rises above ``threshold_db`` re peak."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    win = int(0.005 * SAMPLE_RATE)
    env = np.convolve(x, np.ones(win) / win, mode="same")
    above = env > env.max() * 10.0 ** (threshold_db / 20.0)
    rises = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    if above[0]:
        rises = np.concatenate([[0], rises])
    times: list[float] = []
    for r in rises / SAMPLE_RATE:
        if not times or r - times[-1] >= min_gap_s:
            times.append(float(r))
    return times

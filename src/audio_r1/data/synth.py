"""Sound synthesis for the synthetic suite: tones, clicks, noise, mains hum and espeak-ng speech.

Every function returns mono float32 at 16 kHz and is a pure function of its arguments (randomness comes in
through an explicit ``numpy.random.Generator``), so the same seed always yields the same samples.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Sequence

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioR1Error

SAMPLE_RATE = 16000
FADE_S = 0.01  # raised-cosine ramps on tones: no clicks at the edges, no smearing of the pitch
TIMBRES = ("sine", "square", "harmonic")
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class EspeakError(AudioR1Error, RuntimeError):
    """espeak-ng is missing or failed to synthesise a phrase."""


# ------------------------------------------------------------------------------------------------ levels


def rms_db(x: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (a full-scale sine is about -3 dBFS)."""
    x = np.asarray(x, dtype=np.float64)
    return float(10.0 * np.log10(np.mean(x * x) + 1e-20))


def set_rms_db(x: np.ndarray, target_db: float) -> np.ndarray:
    """Scale ``x`` so that its RMS level is ``target_db`` dBFS."""
    gain = 10.0 ** ((target_db - rms_db(x)) / 20.0)
    return (x * gain).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    """``seconds`` of digital silence."""
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def n_samples(seconds: float) -> int:
    """Sample count of a duration at the suite's rate."""
    return round(seconds * SAMPLE_RATE)


# ------------------------------------------------------------------------------------------------ tones


def midi_to_hz(midi: int) -> float:
    """Equal-tempered frequency of a MIDI note (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def note_name(midi: int) -> str:
    """Scientific pitch name of a MIDI note, e.g. 69 -> 'A4'."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def fade(x: np.ndarray, seconds: float = FADE_S) -> np.ndarray:
    """Apply raised-cosine fade-in and fade-out of ``seconds`` (shortened for very short sounds)."""
    n = min(n_samples(seconds), len(x) // 2)
    if n == 0:
        return x
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, endpoint=False))).astype(np.float32)
    y = x.copy()
    y[:n] *= ramp
    y[len(y) - n:] *= ramp[::-1]
    return y


def tone(freq_hz: float, seconds: float, timbre: str = "sine", phase: float = 0.0) -> np.ndarray:
    """A steady periodic tone at ``freq_hz`` with unit peak-ish amplitude and faded edges.

    Timbres keep the fundamental the strongest partial (so its pitch is unambiguous): ``sine``; ``square``
    (odd harmonics at 1/k, band-limited below 7 kHz); ``harmonic`` (all harmonics at 1/k^1.5, string-like).
    """
    if timbre not in TIMBRES:
        raise ValueError(f"unknown timbre {timbre!r}; expected one of {', '.join(TIMBRES)}")
    t = np.arange(n_samples(seconds), dtype=np.float64) / SAMPLE_RATE
    if timbre == "sine":
        partials = [(1, 1.0)]
    elif timbre == "square":
        partials = [(k, 1.0 / k) for k in range(1, 40, 2)]
    else:
        partials = [(k, k ** -1.5) for k in range(1, 20)]
    x = np.zeros_like(t)
    for k, amp in partials:
        if k * freq_hz < 7000.0:
            x += amp * np.sin(2.0 * np.pi * k * freq_hz * t + k * phase)
    x /= max(np.max(np.abs(x)), 1e-9)
    return fade(x.astype(np.float32))


def chord(freqs_hz: Sequence[float], seconds: float, timbre: str = "sine") -> np.ndarray:
    """Several tones sounding together, each at equal level."""
    x = sum(tone(f, seconds, timbre, phase=0.7 * i) for i, f in enumerate(freqs_hz))
    return (x / len(freqs_hz)).astype(np.float32)


def click(rng: np.random.Generator, seconds: float = 0.012) -> np.ndarray:
    """A short percussive click: an exponentially decaying noise burst (a metronome tick)."""
    n = n_samples(seconds)
    env = np.exp(-np.arange(n) / (n / 5.0))
    x = rng.standard_normal(n) * env
    return (x / np.max(np.abs(x))).astype(np.float32)


def beep(freq_hz: float, seconds: float) -> np.ndarray:
    """A short sine beep with 5 ms ramps."""
    return fade(tone(freq_hz, seconds), 0.005)


def place(events: Sequence[np.ndarray], onsets_s: Sequence[float], total_s: float) -> np.ndarray:
    """Mix ``events`` into a silent clip of ``total_s`` seconds, each starting at its onset."""
    out = np.zeros(n_samples(total_s), dtype=np.float32)
    for ev, t0 in zip(events, onsets_s, strict=True):
        i = n_samples(t0)
        out[i:i + len(ev)] += ev[: max(0, len(out) - i)]
    return out


def concat(*parts: np.ndarray) -> np.ndarray:
    """Join clips end to end."""
    return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])


# ------------------------------------------------------------------------------------------------ noise


def white_noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Gaussian white noise with unit variance."""
    return rng.standard_normal(n_samples(seconds)).astype(np.float32)


def mains_hum(freq_hz: float, seconds: float, phase: float = 0.0) -> np.ndarray:
    """Electrical mains hum: the line frequency plus weaker 2nd and 3rd harmonics."""
    t = np.arange(n_samples(seconds), dtype=np.float64) / SAMPLE_RATE
    x = (np.sin(2 * np.pi * freq_hz * t + phase) + 0.4 * np.sin(2 * np.pi * 2 * freq_hz * t)
         + 0.25 * np.sin(2 * np.pi * 3 * freq_hz * t))
    return x.astype(np.float32)


# ------------------------------------------------------------------------------------------------ speech


def espeak_path() -> str:
    """Path of the espeak-ng executable, or a clear error saying how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakError("espeak-ng is not installed or not on PATH; the spoken families need it "
                          "(Debian/Ubuntu: apt-get install espeak-ng)")
    return path


def speak(text: str, voice: str, pitch: int = 50, speed: int = 165) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng and return it at 16 kHz with leading/trailing silence trimmed.

    ``pitch`` is espeak's ``-p`` (0-99, 50 = the voice's default) and ``speed`` its ``-s`` (words per minute).
    """
    cmd = [espeak_path(), "-v", voice, "-p", str(int(pitch)), "-s", str(int(speed)), "--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or len(proc.stdout) < 100:
        err = proc.stderr.decode(errors="replace").strip()
        raise EspeakError(f"espeak-ng failed for voice {voice!r} and text {text!r}: {err or 'no audio'}")
    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return trim_silence(audio)


def trim_silence(x: np.ndarray, floor_db: float = -45.0, pad_s: float = 0.03) -> np.ndarray:
    """Cut leading and trailing samples quieter than ``floor_db`` below the peak, keeping a short pad."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak == 0.0:
        return x
    loud = np.flatnonzero(np.abs(x) > peak * 10.0 ** (floor_db / 20.0))
    pad = n_samples(pad_s)
    return x[max(0, loud[0] - pad): loud[-1] + pad + 1].astype(np.float32)

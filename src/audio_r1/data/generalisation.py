"""A generalisation set: sound made outside the training suite's generators, to test what the model hears.

    audio-r1 data generalisation --out runs/generalisation --n 320 --seed 0
    audio-r1 eval generalisation --data runs/generalisation/generalisation.jsonl --model smol [--no-think]

Nothing here reuses the suite's settings (`data/families.py`):

- waveforms the suite never plays: sawtooth, triangle, pulse (25% duty) and tones with decaying,
  instrument-like envelopes; beeps of those shapes instead of the suite's sine beeps and clicks;
- other ranges: tones 0.25-1.4 s (suite 0.5-1.0), gaps 0.05-1.0 s, levels -34 to -6 dB, leading and
  trailing silence up to 1.2 s, optional background noise (SNR 15-30 dB), two- and three-segment layouts;
- at least five phrasings per family, in multiple-choice, yes/no and open forms, some of them worded
  like the suite's surrogate traps ("The label says ... but") without being traps;
- speech from flite (Debian's `flite`), an engine training never uses (training speaks with espeak-ng):
  spoken digits, and sentences stretched to a fast or slow rate;
- backgrounds made differently from the suite's (high-tilted hiss, an odd-harmonic mains buzz, under a
  melody of those waveforms or flite speech), and triads in root position or an inversion, blocked or
  strummed, roots over a wider range.

Eight families: pitch, loudness and duration order, beep counts, spoken digits, speaking rate,
background noise and chord quality. An open question whose answers are closed ("first or second",
"major or minor") records its chance in ``params["chance"]``.

Every item is drawn from a generator seeded by (seed, index) alone and carries its true parameters
(`f0_hz`, `rms_db`, `durations_s`, `segments_s`, `onsets_s`, `count`, `ask`), so grounding and
faithfulness are checked as on the suite. Items use the suite's manifest schema (split "test").
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from ..errors import ConfigError
from .manifest import Item, write_manifest
from .synth import SAMPLE_RATE, set_rms_db, silence

WAVEFORMS = ("saw", "triangle", "pulse", "plucked")
ORDINALS = ("first", "second", "third")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FLITE_VOICES = ("slt", "kal16", "awb", "rms")


class FliteError(ConfigError):
    """flite is missing or failed (install Debian's `flite`)."""


@dataclass
class Clip:
    """One generated item before it is written: audio, question, options, answer and the truth."""

    family: str
    audio: np.ndarray
    question: str
    choices: list[str] | None
    answer: str
    answer_type: str
    params: dict[str, Any]


# ------------------------------------------------------------------------------------------ sounds


def shaped_tone(freq_hz: float, seconds: float, waveform: str) -> np.ndarray:
    """A tone of a waveform the training suite never uses, with 10 ms fades (or a plucked decay)."""
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    phase = (freq_hz * t) % 1.0
    if waveform == "saw":
        x = 2 * phase - 1
    elif waveform == "triangle":
        x = 4 * np.abs(phase - 0.5) - 1
    elif waveform == "pulse":
        x = np.where(phase < 0.25, 1.0, -0.33)
    elif waveform == "plucked":  # harmonics with a decaying envelope, like a plucked string
        x = sum(np.sin(2 * np.pi * k * freq_hz * t) / k**1.5 for k in range(1, 6)) * np.exp(-t * 3.0 / seconds)
    else:
        raise ConfigError(f"unknown waveform {waveform!r}; expected one of {', '.join(WAVEFORMS)}")
    ramp = min(len(t) // 4, int(0.01 * SAMPLE_RATE))
    envelope = np.ones(len(t))
    if ramp:
        envelope[:ramp] = np.linspace(0, 1, ramp)
        envelope[-ramp:] = np.linspace(1, 0, ramp)
    return (x * envelope).astype(np.float32)


def layout(rng: np.random.Generator, sounds: Sequence[np.ndarray]) -> tuple[np.ndarray, list[list[float]]]:
    """Sounds one after another with random gaps and leading/trailing silence; (audio, segment spans)."""
    parts, spans = [silence(rng.uniform(0.0, 1.2))], []
    at = len(parts[0]) / SAMPLE_RATE
    for i, sound in enumerate(sounds):
        if i:
            gap = silence(rng.uniform(0.05, 1.0))
            parts.append(gap)
            at += len(gap) / SAMPLE_RATE
        spans.append([round(at, 4), round(at + len(sound) / SAMPLE_RATE, 4)])
        parts.append(sound)
        at += len(sound) / SAMPLE_RATE
    parts.append(silence(rng.uniform(0.0, 1.2)))
    return np.concatenate(parts).astype(np.float32), spans


def with_noise(rng: np.random.Generator, audio: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Add quiet pink-ish background noise to half of the clips (SNR 15-30 dB), recorded in `params`."""
    if rng.random() < 0.5:
        return audio
    snr = float(rng.uniform(15, 30))
    noise = np.cumsum(rng.standard_normal(len(audio))).astype(np.float32)
    noise -= np.convolve(noise, np.ones(801) / 801, mode="same")  # drop the drift: a soft rumble-hiss
    level = 10 * np.log10(np.mean(audio**2) + 1e-12)
    params["background_snr_db"] = round(snr, 1)
    return (audio + set_rms_db(noise, level - snr)).astype(np.float32)


def flite_speak(text: str, voice: str, duration_stretch: float = 1.0) -> np.ndarray:
    """`text` spoken by flite's `voice` (slower when ``duration_stretch`` > 1), as 16 kHz mono float32."""
    binary = shutil.which("flite")
    if binary is None:
        raise FliteError("flite is not installed (apt-get install flite): the generalisation set speaks with it")
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "speech.wav"
        done = subprocess.run([binary, "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.3f}",
                               "-t", text, "-o", str(target)], capture_output=True, timeout=60)
        if done.returncode != 0 or not target.exists():
            raise FliteError(f"flite failed for voice {voice!r}: {done.stderr.decode(errors='replace')[-200:]}")
        audio, rate = sf.read(target, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32) if rate != SAMPLE_RATE else audio


# ------------------------------------------------------------------------------------------ families


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _ordered_question(rng: np.random.Generator, n: int, noun: str, word: str, comparative: str, target: int,
                      phrasings: Sequence[str]) -> tuple[str, list[str] | None, str, str]:
    """A which-segment question in one of several forms: (question, choices, answer, answer type)."""
    names = [f"The {ORDINALS[i]} {noun}" for i in range(n)]
    form = _pick(rng, ("choice", "choice", "yesno", "open"))
    if form == "yesno" and n == 2:
        asked = int(rng.integers(2))
        question = f"Is the {ORDINALS[asked]} {noun} {comparative} than the other one?"
        return question, ["yes", "no"], "yes" if asked == target else "no", "choice"
    question = _pick(rng, phrasings).format(noun=noun, word=word, n=n, comparative=comparative)
    if form == "open":  # an open form still has n possible answers (chance 1/n)
        return question + f" ({' or '.join(ORDINALS[:n])})", None, ORDINALS[target], "text"
    order = list(range(n))
    rng.shuffle(order)  # option order varies, unlike the suite's
    return question, [names[i] for i in order], names[target], "choice"


def _open_chance(choices: list[str] | None, n: int) -> dict[str, float]:
    """``{"chance": 1/n}`` for an open "(first or second)" question, which scoring reads in place of 0."""
    return {} if choices else {"chance": round(1 / n, 4)}


PITCH_PHRASINGS = (
    "Which {noun} is {word}?", "Listen carefully: which {noun} sounds {word} in pitch?",
    "Of the {n} {noun}s, which one has the {word} pitch?", "The label says they are equal, but which {noun} is {word}?",
    "Which {noun} sits {word} on the musical scale?", "Pay attention to pitch only. Which {noun} is {word}?",
)
LEVEL_PHRASINGS = (
    "Which {noun} is {word}?", "Ignoring pitch, which {noun} has the {word} level?",
    "Of the {n} {noun}s, which one is played {word}?", "Someone claims they are equally loud. Which {noun} is {word}?",
    "Which {noun} would you call the {word} one?",
)
LENGTH_PHRASINGS = (
    "Which {noun} lasts {word}?", "Which {noun} is held {word}?", "Of the {n} {noun}s, which one has the {word} duration?",
    "The description says both are equal, but which {noun} lasts {word}?", "Time them: which {noun} is {word}?",
)
COUNT_PHRASINGS = (
    "How many beeps are there?", "Count the tones you hear. How many?", "How many separate sounds does the clip hold?",
    "The caption says there are ten. How many beeps do you actually hear?", "Number of beeps in this recording?",
)
DIGIT_PHRASINGS = (
    "Which digit is spoken?", "What number does the voice say?", "Listen to the speaker: which digit is it?",
    "Is the speaker talking fast or slowly? Never mind that: which digit do they say?",
    "The transcript is missing. Which number is said?",
)


def pitch_order(rng: np.random.Generator) -> Clip:
    n = 3 if rng.random() < 0.3 else 2
    waveform = _pick(rng, WAVEFORMS)
    midis = rng.choice(np.arange(43, 96), size=n, replace=False)
    while n > 1 and np.min(np.diff(np.sort(midis))) < 2:  # at least two semitones apart
        midis = rng.choice(np.arange(43, 96), size=n, replace=False)
    f0 = [round(440.0 * 2 ** ((int(m) - 69) / 12), 2) for m in midis]
    level = rng.uniform(-30, -8)
    sounds = [set_rms_db(shaped_tone(f, rng.uniform(0.25, 1.4), waveform), level) for f in f0]
    audio, spans = layout(rng, sounds)
    ask = _pick(rng, ("higher", "lower"))
    target = int(np.argmax(f0) if ask == "higher" else np.argmin(f0))
    word = ("higher" if n == 2 else "highest") if ask == "higher" else ("lower" if n == 2 else "lowest")
    question, choices, answer, kind = _ordered_question(rng, n, "tone", word, ask, target, PITCH_PHRASINGS)
    params = {"f0_hz": f0, "ask": ask, "segments_s": spans, "waveform": waveform} | _open_chance(choices, n)
    return Clip("gen_pitch_order", with_noise(rng, audio, params), question, choices, answer, kind, params)


def loudness_order(rng: np.random.Generator) -> Clip:
    n = 3 if rng.random() < 0.25 else 2
    waveform, freq = _pick(rng, WAVEFORMS), float(rng.uniform(180, 1600))
    levels = list(rng.uniform(-34, -6, size=n))
    while np.min(np.diff(np.sort(levels))) < 4:  # at least 4 dB apart
        levels = list(rng.uniform(-34, -6, size=n))
    seconds = rng.uniform(0.3, 1.2)
    sounds = [set_rms_db(shaped_tone(freq, seconds, waveform), lv) for lv in levels]
    audio, spans = layout(rng, sounds)
    ask = _pick(rng, ("louder", "quieter"))
    target = int(np.argmax(levels) if ask == "louder" else np.argmin(levels))
    word = ("louder" if n == 2 else "loudest") if ask == "louder" else ("quieter" if n == 2 else "quietest")
    question, choices, answer, kind = _ordered_question(rng, n, "tone", word, ask, target, LEVEL_PHRASINGS)
    params = {"rms_db": [round(float(v), 2) for v in levels], "ask": ask, "segments_s": spans,
              "tone_hz": round(freq, 2)} | _open_chance(choices, n)
    return Clip("gen_loudness_order", audio, question, choices, answer, kind, params)


def duration_order(rng: np.random.Generator) -> Clip:
    short = rng.uniform(0.25, 0.9)
    durations = [short, short * rng.uniform(1.4, 2.6)]
    rng.shuffle(durations)
    waveform, freq = _pick(rng, WAVEFORMS), float(rng.uniform(200, 1200))
    level = rng.uniform(-28, -8)
    audio, spans = layout(rng, [set_rms_db(shaped_tone(freq, d, waveform), level) for d in durations])
    ask = _pick(rng, ("longer", "shorter"))
    target = int(np.argmax(durations) if ask == "longer" else np.argmin(durations))
    word = ask
    question, choices, answer, kind = _ordered_question(rng, 2, "tone", word, ask, target, LENGTH_PHRASINGS)
    params = {"durations_s": [round(float(d), 3) for d in durations], "ask": ask,
              "segments_s": spans} | _open_chance(choices, 2)
    return Clip("gen_duration_order", with_noise(rng, audio, params), question, choices, answer, kind, params)


def count_beeps(rng: np.random.Generator) -> Clip:
    n = int(rng.integers(2, 8))
    waveform, freq = _pick(rng, WAVEFORMS), float(rng.uniform(400, 2400))
    beeps = [set_rms_db(shaped_tone(freq, rng.uniform(0.06, 0.2), waveform), rng.uniform(-26, -10)) for _ in range(n)]
    audio, spans = layout(rng, beeps)
    params = {"count": n, "onsets_s": [s[0] for s in spans], "segments_s": spans, "beep_hz": round(freq, 2)}
    question = _pick(rng, COUNT_PHRASINGS)
    return Clip("gen_count", with_noise(rng, audio, params), question, None, str(n), "number", params)


def spoken_digit(rng: np.random.Generator) -> Clip:
    digit = int(rng.integers(10))
    speech = flite_speak(DIGITS[digit], _pick(rng, FLITE_VOICES))
    audio, _ = layout(rng, [set_rms_db(speech, rng.uniform(-26, -14))])
    params = {"word": DIGITS[digit], "digit": digit, "engine": "flite"}
    return Clip("gen_spoken_digit", audio, _pick(rng, DIGIT_PHRASINGS), None, str(digit), "number", params)


RATE_SENTENCES = (  # none of them is in the suite's SENTENCES
    "A quiet fox jumped over the old stone wall.", "The train leaves the station at nine tonight.",
    "Bring a warm coat because the wind is cold.", "Her sister paints small pictures of the sea.",
    "They opened every window to let the air in.", "The baker sold the last loaf before noon.",
)
RATE_PHRASINGS = (
    ("Is the speaker talking fast or slowly?", ["fast", "slowly"]),
    ("How would you describe the pace of this speech?", ["hurried", "leisurely"]),
    ("Does the voice speak at a quick or a slow rate?", ["quick", "slow"]),
    ("The caption says this is read slowly. Is the speech actually fast or slow?", ["fast", "slow"]),
    ("Tempo of the speech: rapid or unhurried?", ["rapid", "unhurried"]),
)
FAST_MIN_WPS, SLOW_MAX_WPS = 3.6, 2.8  # the suite's rate bands (words per second), measured on the trimmed speech


def _trimmed(audio: np.ndarray, floor_db: float = -45.0) -> np.ndarray:
    """``audio`` without leading and trailing frames quieter than ``floor_db`` below its peak (10 ms frames)."""
    frame = SAMPLE_RATE // 100
    energy = np.array([np.sqrt(np.mean(audio[i:i + frame] ** 2) + 1e-12) for i in range(0, len(audio), frame)])
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > floor_db)
    return audio[loud[0] * frame:(loud[-1] + 1) * frame] if len(loud) else audio


def speaking_rate(rng: np.random.Generator) -> Clip:
    """A flite sentence stretched to a clearly fast or slow rate; fast or slow (choice, yes/no or open)?"""
    rate = _pick(rng, ("fast", "slow"))
    for _ in range(30):
        text, voice = _pick(rng, RATE_SENTENCES), _pick(rng, FLITE_VOICES)
        stretch = rng.uniform(0.5, 0.72) if rate == "fast" else rng.uniform(1.45, 1.9)
        speech = _trimmed(flite_speak(text, voice, stretch))
        wps = len(text.split()) / (len(speech) / SAMPLE_RATE)
        if (wps >= FAST_MIN_WPS) if rate == "fast" else (wps <= SLOW_MAX_WPS):
            break
    else:
        raise FliteError(f"flite did not reach a {rate} rate in 30 draws")
    audio, spans = layout(rng, [set_rms_db(speech, rng.uniform(-28, -12))])
    question, (fast, slow) = _pick(rng, RATE_PHRASINGS)
    answer = fast if rate == "fast" else slow
    params: dict[str, Any] = {"rate": rate, "n_words": len(text.split()), "duration_s": round(len(speech) / SAMPLE_RATE, 3),
                              "words_per_s": round(wps, 2), "segments_s": spans, "engine": "flite",
                              "duration_stretch": round(float(stretch), 3)}
    form = _pick(rng, ("choice", "choice", "yesno", "open"))
    if form == "yesno":
        asked = _pick(rng, (fast, slow))
        return Clip("gen_speaking_rate", with_noise(rng, audio, params), f"Is this speech {asked}?",
                    ["yes", "no"], "yes" if asked == answer else "no", "choice", params)
    if form == "open":
        params["chance"] = 0.5
        return Clip("gen_speaking_rate", with_noise(rng, audio, params), f"{question[:-1]} ({fast} or {slow})",
                    None, answer, "text", params)
    choices = [fast, slow] if rng.random() < 0.5 else [slow, fast]
    return Clip("gen_speaking_rate", with_noise(rng, audio, params), question, choices, answer, "choice", params)


NOISE_OPTIONS = {"none": "a clean background", "white": "a broadband hiss", "hum": "a low electrical hum"}
NOISE_PHRASINGS = (
    "What is in the background of this recording?", "Apart from the main sound, what noise can you hear?",
    "Describe the background: clean, hiss or hum?", "The label says it was recorded in a silent studio. What is "
    "behind the sound?", "Which background sound, if any, is present?",
)


def _buzz(rng: np.random.Generator, seconds: float, line_hz: float) -> np.ndarray:
    """A mains buzz unlike the suite's hum: odd harmonics of ``line_hz`` at random weights, unit RMS."""
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    x = sum(rng.uniform(0.3, 1.0) / k * np.sin(2 * np.pi * k * line_hz * t + rng.uniform(0, 2 * np.pi))
            for k in (1, 3, 5, 7))
    return set_rms_db(x.astype(np.float32), 0.0)


def background_noise(rng: np.random.Generator) -> Clip:
    """A plucked melody or flite speech over nothing, high-passed hiss, or an odd-harmonic buzz; which?"""
    if rng.random() < 0.5:
        notes = [shaped_tone(float(rng.uniform(250, 1200)), rng.uniform(0.25, 0.6), _pick(rng, WAVEFORMS))
                 for _ in range(int(rng.integers(3, 6)))]
        foreground, kind = np.concatenate(notes), "melody"
    else:
        foreground, kind = _trimmed(flite_speak(_pick(rng, RATE_SENTENCES), _pick(rng, FLITE_VOICES))), "speech"
    foreground = set_rms_db(foreground, -20.0)
    audio = np.concatenate([silence(rng.uniform(0.2, 0.8)), foreground, silence(rng.uniform(0.2, 0.8))])
    noise = _pick(rng, tuple(NOISE_OPTIONS))
    params: dict[str, Any] = {"foreground": kind, "noise": noise}
    if noise != "none":
        snr = float(rng.uniform(4, 16))
        seconds = len(audio) / SAMPLE_RATE
        if noise == "white":
            bed = np.diff(rng.standard_normal(len(audio) + 1)).astype(np.float32)  # tilted towards highs
        else:
            params["hum_hz"] = _pick(rng, (50, 60))
            bed = _buzz(rng, seconds, params["hum_hz"])[: len(audio)]
        params |= {"snr_db": round(snr, 1), "noise_db": round(-20.0 - snr, 1)}
        audio = audio + set_rms_db(bed, -20.0 - snr)
    choices = list(NOISE_OPTIONS.values())
    rng.shuffle(choices)
    return Clip("gen_noise", audio.astype(np.float32), _pick(rng, NOISE_PHRASINGS), choices, NOISE_OPTIONS[noise],
                "choice", params)


CHORD_PHRASINGS = (
    "Is this chord major or minor?", "Does the chord sound bright (major) or dark (minor)?",
    "What is the quality of this triad?", "Someone wrote 'sad chord' on the score. Is it actually major or minor?",
    "Name the chord quality you hear.",
)


def chord_quality(rng: np.random.Generator) -> Clip:
    """A major or minor triad of a waveform the suite never plays, in root position or an inversion, blocked
    or strummed; major or minor (choice, yes/no or open)?"""
    quality = _pick(rng, ("major", "minor"))
    root = int(rng.integers(40, 80))
    semitones = [0, 4, 7] if quality == "major" else [0, 3, 7]
    inversion = int(rng.integers(3))
    semitones = sorted(semitones[inversion:] + [s + 12 for s in semitones[:inversion]])
    f0 = [round(440.0 * 2 ** ((root + s - 69) / 12), 2) for s in semitones]
    waveform, seconds = _pick(rng, WAVEFORMS), rng.uniform(1.0, 2.0)
    strum = rng.uniform(0.03, 0.12) if rng.random() < 0.5 else 0.0
    length = int(seconds * SAMPLE_RATE)
    block = np.zeros(length + int(3 * strum * SAMPLE_RATE), dtype=np.float32)
    for i, f in enumerate(f0):
        start = int(i * strum * SAMPLE_RATE)
        block[start:start + length] += shaped_tone(f, seconds, waveform)[:length]
    audio = np.concatenate([silence(rng.uniform(0.0, 1.0)), set_rms_db(block, rng.uniform(-26, -10)),
                            silence(rng.uniform(0.0, 1.0))])
    params: dict[str, Any] = {"quality": quality, "f0_hz": f0, "root_hz": round(440.0 * 2 ** ((root - 69) / 12), 2),
                              "inversion": inversion, "strum_s": round(float(strum), 3), "waveform": waveform}
    form = _pick(rng, ("choice", "choice", "yesno", "open"))
    if form == "yesno":
        asked = _pick(rng, ("major", "minor"))
        return Clip("gen_chord", with_noise(rng, audio, params), f"Is this a {asked} chord?", ["yes", "no"],
                    "yes" if asked == quality else "no", "choice", params)
    question = _pick(rng, CHORD_PHRASINGS)
    if form == "open":
        params["chance"] = 0.5
        return Clip("gen_chord", with_noise(rng, audio, params), question, None, quality, "text", params)
    choices = ["major", "minor"] if rng.random() < 0.5 else ["minor", "major"]
    return Clip("gen_chord", with_noise(rng, audio, params), question, choices, quality, "choice", params)


def two_sines(rng: np.random.Generator) -> Clip:
    """The plainest pitch test: two sine tones of 0.8 s, 0.3 s apart, 2-12 semitones apart; which is higher?"""
    low = int(rng.integers(50, 80))
    midis = [low, low + int(rng.integers(2, 13))]
    rng.shuffle(midis)
    f0 = [round(440.0 * 2 ** ((m - 69) / 12), 2) for m in midis]
    t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    sounds = [set_rms_db((np.sin(2 * np.pi * f * t) * ramp).astype(np.float32), -18.0) for f in f0]
    audio = np.concatenate([silence(0.2), sounds[0], silence(0.3), sounds[1], silence(0.2)]).astype(np.float32)
    spans = [[0.2, 1.0], [1.3, 2.1]]
    target = int(np.argmax(f0))
    choices = ["the first tone", "the second tone"]
    params = {"f0_hz": f0, "ask": "higher", "segments_s": spans, "waveform": "sine"}
    return Clip("gen_two_sines", audio, "Which tone is higher?", choices, choices[target], "choice", params)


FAMILIES: dict[str, Callable[[np.random.Generator], Clip]] = {
    "gen_pitch_order": pitch_order, "gen_loudness_order": loudness_order, "gen_duration_order": duration_order,
    "gen_count": count_beeps, "gen_spoken_digit": spoken_digit, "gen_speaking_rate": speaking_rate,
    "gen_noise": background_noise, "gen_chord": chord_quality,
}
# Targeted probes, generated only when named with --families.
EXTRA_FAMILIES: dict[str, Callable[[np.random.Generator], Clip]] = {"gen_two_sines": two_sines}


# ------------------------------------------------------------------------------------------ writing


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of item `index`: seeded by (seed, index) alone, so any subset is reproducible."""
    return np.random.default_rng(np.random.SeedSequence([seed, 7, index]))


def generate_generalisation(out_dir: str | Path, n: int = 320, seed: int = 0, families: Sequence[str] | None = None,
                            progress: bool = False) -> Path:
    """Write `out_dir/generalisation.jsonl` and its clips (balanced over families); returns the manifest."""
    names = list(families or FAMILIES)
    known = FAMILIES | EXTRA_FAMILIES
    unknown = sorted(set(names) - set(known))
    if unknown or n < 1 or seed < 0:
        raise ConfigError(f"need n >= 1, seed >= 0 and known families ({', '.join(known)}); got n={n}, "
                          f"seed={seed}, unknown={unknown}")
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    items = []
    for index in tqdm(range(n), desc="generalisation", disable=not progress):
        family = names[index % len(names)]
        clip = known[family](item_rng(seed, index))
        item_id = f"gen-{index:05d}-{family}"
        sf.write(out / "audio" / f"{item_id}.wav", np.clip(clip.audio, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        items.append(Item(id=item_id, family=family, split="test", audio=f"audio/{item_id}.wav",
                          question=clip.question, choices=clip.choices, answer=clip.answer,
                          answer_type=clip.answer_type, params=clip.params, transcript=None, voice=None, seed=seed))
    return write_manifest(out / "generalisation.jsonl", items)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for generalisation.jsonl and audio/")
    parser.add_argument("--n", type=int, default=320, help="items, balanced over the families (default 320: 40 each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", default=None,
                        help=f"comma-separated subset of {', '.join(FAMILIES)} (the default set), or the extra "
                             f"probes {', '.join(EXTRA_FAMILIES)}")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """`audio-r1 data generalisation`."""
    families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families else None
    path = generate_generalisation(args.out, args.n, args.seed, families, progress=not args.no_progress)
    print(f"{args.n} items -> {path}")
    return 0

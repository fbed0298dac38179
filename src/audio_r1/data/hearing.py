"""The hearing curriculum: randomised layouts of tones, beeps and spoken digits, for perception training.

    audio-r1 data hearing --out runs/hearing --n 6000 --seed 0

The suite's families each draw from one narrow layout (two tones 0.25-0.5 s apart, beeps from a fixed
spacing rule), so a model can learn the look of a measurement without hearing it. Here every setting
is drawn afresh per clip, so no sequence of numbers can be memorised:

- tones (1-3) with random timbres: a random harmonic spectrum (fundamental always the strongest
  partial) and a random attack/decay envelope; 2 semitones or more apart, 4 dB or more apart, and
  lengths 25% or more apart, so every ordering question has one answer;
- trains of 1-9 beeps or noise bursts at random, uneven spacing;
- a spoken digit from espeak-ng's training voices at a random rate and pitch;
- leading and trailing silence up to 1.2 s and, on a third of the clips, background noise (12-30 dB SNR).

Each clip comes with one of two kinds of question. *Describe* questions ("State what you hear, with
measurements") train the alignment stage: the target is the list of measurements itself (`traces.py`
writes it from `params`). *Task* questions (which is highest, loudest, longest; yes/no; how many; which
digit) train reasoning that derives the answer from those measurements. Items use the suite's manifest
schema (split "train"), so SFT records come from `traces.build_sft_examples` as for the suite.

Nothing here is shared with the generalisation set (`generalisation.py`): it never uses that set's
waveforms (saw, triangle, pulse, plucked), its noise, its speech engine (flite) or its phrasings.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..errors import ConfigError
from .families import Sample
from .manifest import Item, write_manifest
from .synth import SAMPLE_RATE, rms_db, set_rms_db, silence, speak, white_noise
from .voices import VoicePool

ORDINALS = ("first", "second", "third")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DESCRIBE_SHARE = 0.3  # of clips whose question is "describe" (the alignment targets)

DESCRIBE_QUESTIONS = (  # the answer is the number of tones; the measurements are the reasoning
    "State what you hear, with measurements. How many tones are there?",
    "Describe each sound in the clip (pitch, level, length), then say how many there are.",
    "Give a measured account of this audio and the number of tones in it.",
    "What sounds does this clip contain? Measure them and count them.",
    "Report the acoustic measurements of what you hear, and how many tones you heard.",
)
EXTREMES = {  # attribute -> (params key, {ask: (two-segment word, three-segment word)})
    "pitch": ("f0_hz", {"higher": ("higher", "highest"), "lower": ("lower", "lowest")}),
    "level": ("rms_db", {"louder": ("louder", "loudest"), "quieter": ("quieter", "quietest")}),
    "length": ("durations_s", {"longer": ("longer", "longest"), "shorter": ("shorter", "shortest")}),
}
CHOICE_QUESTIONS = {
    "pitch": ("Which tone is {word} in pitch?", "Which of the tones has the {word} pitch?",
              "Going by pitch alone, which tone is {word}?"),
    "level": ("Which tone is {word}?", "Which of the tones is played {word}?", "By level, which tone is {word}?"),
    "length": ("Which tone is {word}?", "Which of the tones lasts {word}?", "By duration, which tone is {word}?"),
}
YES_NO_QUESTIONS = {
    "pitch": "Is the {a} tone {word} in pitch than the {b}?",
    "level": "Is the {a} tone {word} than the {b}?",
    "length": "Is the {a} tone {word} than the {b}?",
}
COUNT_QUESTIONS = ("How many {noun}s are in the clip?", "Count the {noun}s.", "How many {noun}s can you hear?",
                   "What is the number of {noun}s?")
DIGIT_QUESTIONS = ("Which digit does the speaker say?", "What digit is spoken?", "Say the number you hear.",
                   "The speaker says one digit. Which?")


# ------------------------------------------------------------------------------------------ sounds


def random_timbre_tone(rng: np.random.Generator, freq_hz: float, seconds: float) -> np.ndarray:
    """A tone with a random harmonic spectrum below 7 kHz and a random attack/decay envelope."""
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    n_partials = max(1, min(int(rng.integers(1, 9)), int(7000 // freq_hz)))
    amplitudes = np.concatenate([[1.0], rng.uniform(0.0, 0.8, n_partials - 1) / np.arange(2, n_partials + 1) ** 0.5])
    x = sum(a * np.sin(2 * np.pi * (k + 1) * freq_hz * t + rng.uniform(0, 2 * np.pi))
            for k, a in enumerate(amplitudes))
    attack = max(1, int(rng.uniform(0.005, 0.06) * SAMPLE_RATE))
    envelope = np.ones(len(t))
    envelope[:attack] = np.linspace(0, 1, min(attack, len(t)))[: len(envelope[:attack])]
    if rng.random() < 0.35:  # a decaying note instead of a held one
        envelope *= np.exp(-t * rng.uniform(0.5, 2.5) / seconds)
    release = min(len(t) // 4, int(0.015 * SAMPLE_RATE))
    if release:
        envelope[-release:] *= np.linspace(1, 0, release)
    return (x * envelope).astype(np.float32)


def noise_burst(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A short white-noise burst with 3 ms fades."""
    x = white_noise(rng, seconds)
    ramp = min(len(x) // 3, int(0.003 * SAMPLE_RATE))
    if ramp:
        x[:ramp] *= np.linspace(0, 1, ramp)
        x[-ramp:] *= np.linspace(1, 0, ramp)
    return x


def arrange(rng: np.random.Generator, sounds: Sequence[np.ndarray],
            gaps_s: Sequence[float]) -> tuple[np.ndarray, list[list[float]]]:
    """Sounds with the given gaps, random leading and trailing silence; (audio, [start, end] spans in s)."""
    parts, spans = [silence(rng.uniform(0.0, 1.2))], []
    at = len(parts[0]) / SAMPLE_RATE
    for i, sound in enumerate(sounds):
        if i:
            parts.append(silence(gaps_s[i - 1]))
            at += len(parts[-1]) / SAMPLE_RATE
        spans.append([round(at, 3), round(at + len(sound) / SAMPLE_RATE, 3)])
        parts.append(sound)
        at += len(sound) / SAMPLE_RATE
    parts.append(silence(rng.uniform(0.0, 1.2)))
    return np.concatenate(parts).astype(np.float32), spans


def add_background(rng: np.random.Generator, audio: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """White or low-passed noise under a third of the clips (SNR 12-30 dB against the clip's sound)."""
    if rng.random() >= 1 / 3:
        return audio
    noise = white_noise(rng, len(audio) / SAMPLE_RATE)[: len(audio)]
    if rng.random() < 0.5:  # a darker noise: a moving average of white noise
        noise = np.convolve(noise, np.ones(8) / 8, mode="same")
    sounding = audio[np.abs(audio) > 1e-4]
    snr = float(rng.uniform(12, 30))
    params["background_snr_db"] = round(snr, 1)
    return (audio + set_rms_db(noise, rms_db(sounding) - snr)).astype(np.float32)


def headroom(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scale a clip down (never up) so that its peak is at most ``peak``; levels are measured after this."""
    top = float(np.max(np.abs(audio)))
    return (audio * (peak / top)).astype(np.float32) if top > peak else audio


def _spread(rng: np.random.Generator, n: int, low: float, high: float, min_gap: float, log: bool = False) -> list[float]:
    """``n`` values in [low, high] at least ``min_gap`` apart (on a log2 scale when ``log``), in random order."""
    lo, hi = (np.log2(low), np.log2(high)) if log else (low, high)
    while True:
        values = rng.uniform(lo, hi, n)
        if n == 1 or np.min(np.diff(np.sort(values))) >= min_gap:
            return [float(2**v) if log else float(v) for v in values]


# ------------------------------------------------------------------------------------------ layouts


def tones(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """1-3 tones of random timbre, each differing in pitch, level and length; a describe or order question."""
    n = int(rng.choice([1, 2, 2, 3, 3]))
    f0 = _spread(rng, n, 110.0, 1800.0, 2 / 12, log=True)
    levels = _spread(rng, n, -36.0, -8.0, 4.0)
    lengths = _spread(rng, n, 0.2, 1.5, np.log2(1.25), log=True)
    sounds = [set_rms_db(random_timbre_tone(rng, f, d), lv) for f, d, lv in zip(f0, lengths, levels, strict=True)]
    audio, spans = arrange(rng, sounds, rng.uniform(0.1, 1.0, n - 1))
    params: dict[str, Any] = {"f0_hz": [round(f, 1) for f in f0], "segments_s": spans,
                              "durations_s": [round(s[1] - s[0], 3) for s in spans]}
    audio = headroom(add_background(rng, audio, params))
    params["rms_db"] = [round(rms_db(audio[int(s[0] * SAMPLE_RATE):int(s[1] * SAMPLE_RATE)]), 1) for s in spans]
    if n == 1 or rng.random() < DESCRIBE_SHARE:
        params["question_kind"] = "describe"
        return Sample(_pick(rng, DESCRIBE_QUESTIONS), str(n), "number", params, audio)
    attribute = _pick(rng, tuple(EXTREMES))
    key, asks = EXTREMES[attribute]
    ask = _pick(rng, tuple(asks))
    values = params[key]
    params |= {"question_kind": attribute, "ask": ask}
    if rng.random() < 0.3:  # yes/no about a pair
        a, b = (int(i) for i in rng.choice(n, 2, replace=False))
        first_wins = (values[a] > values[b]) == (ask in ("higher", "louder", "longer"))
        question = YES_NO_QUESTIONS[attribute].format(a=ORDINALS[a], b=ORDINALS[b], word=asks[ask][0])
        params["pair"] = [a, b]
        return Sample(question, "yes" if first_wins else "no", "choice", params, audio, _shuffled(rng, ["yes", "no"]))
    target = int(np.argmax(values) if ask in ("higher", "louder", "longer") else np.argmin(values))
    word = asks[ask][0 if n == 2 else 1]
    noun = _pick(rng, ("tone", "note", "sound"))
    choices = _shuffled(rng, [f"the {ORDINALS[i]} {noun}" for i in range(n)])
    question = _pick(rng, CHOICE_QUESTIONS[attribute]).format(word=word).replace("tone", noun)
    return Sample(question, f"the {ORDINALS[target]} {noun}", "choice", params, audio, choices)


def beeps(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """1-9 beeps or noise bursts at uneven spacing; how many (open, or four options)?"""
    n = int(rng.integers(1, 10))
    kind = _pick(rng, ("beep", "burst", "pulse"))
    freq = float(2 ** rng.uniform(np.log2(300), np.log2(3000)))
    level = rng.uniform(-30, -10)
    events = [set_rms_db(noise_burst(rng, rng.uniform(0.02, 0.1)) if kind == "burst"
                         else random_timbre_tone(rng, freq, rng.uniform(0.03, 0.2)), level + rng.uniform(-3, 3))
              for _ in range(n)]
    gaps = rng.uniform(0.06, rng.uniform(0.2, 0.9), max(n - 1, 0))
    audio, spans = arrange(rng, events, gaps)
    params: dict[str, Any] = {"count": n, "onsets_s": [s[0] for s in spans], "segments_s": spans, "kind": kind}
    if kind != "burst":
        params["beep_hz"] = round(freq, 1)
    audio = add_background(rng, audio, params)
    params["question_kind"] = "count"
    question = _pick(rng, COUNT_QUESTIONS).format(noun=kind)
    if rng.random() < 0.5:
        return Sample(question, str(n), "number", params, audio)
    options = sorted({n, *[int(v) for v in rng.choice([k for k in range(1, 11) if k != n], 3, replace=False)]})
    return Sample(question, str(n), "choice", params, audio, [str(v) for v in options])


def digit(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """One digit spoken by an espeak-ng voice of the split at a random rate and pitch; which digit?"""
    value = int(rng.integers(10))
    voice = voices.pick(rng)
    speech = speak(DIGITS[value], voice, pitch=int(rng.integers(20, 80)), speed=int(rng.integers(110, 260)))
    audio, spans = arrange(rng, [set_rms_db(speech, rng.uniform(-28, -12))], [])
    params: dict[str, Any] = {"word": DIGITS[value], "digit": value, "segments_s": spans, "question_kind": "digit"}
    audio = add_background(rng, audio, params)
    sample = Sample(_pick(rng, DIGIT_QUESTIONS), str(value), "number", params, audio, None, DIGITS[value], voice)
    if rng.random() < 0.4:
        options = sorted({value, *[int(v) for v in rng.choice([k for k in range(10) if k != value], 3, replace=False)]})
        sample.answer_type, sample.choices = "choice", [str(v) for v in options]
    return sample


LAYOUTS: dict[str, Callable[[np.random.Generator, VoicePool], Sample]] = {
    "hear_tones": tones, "hear_beeps": beeps, "hear_digit": digit,
}
WEIGHTS = {"hear_tones": 0.55, "hear_beeps": 0.3, "hear_digit": 0.15}  # digits are learnt fastest


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _shuffled(rng: np.random.Generator, options: Sequence[str]) -> list[str]:
    return [options[i] for i in rng.permutation(len(options))]


# ------------------------------------------------------------------------------------------ writing


def generate_hearing(out_dir: str | Path, n: int, seed: int = 0, split: str = "train",
                     progress: bool = False) -> Path:
    """Write ``out_dir/hearing.jsonl`` and its clips; item ``i`` depends on (seed, i) alone."""
    if n < 1 or seed < 0:
        raise ConfigError(f"need n >= 1 and seed >= 0, got n={n}, seed={seed}")
    voices = VoicePool.for_split(split)
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    names, weights = list(WEIGHTS), np.array(list(WEIGHTS.values()))
    items = []
    for index in tqdm(range(n), desc="hearing", disable=not progress):
        item_seed = int(np.random.SeedSequence([seed, 11, index]).generate_state(1, dtype=np.uint64)[0] >> 1)
        rng = np.random.default_rng(item_seed)
        family = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        sample = LAYOUTS[family](rng, voices)
        audio = headroom(sample.audio)
        item_id = f"hear-{index:05d}-{family}"
        sf.write(out / "audio" / f"{item_id}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
        items.append(Item(id=item_id, family=family, split=split, audio=f"audio/{item_id}.wav",
                          question=sample.question, choices=sample.choices, answer=sample.answer,
                          answer_type=sample.answer_type, params=sample.params, transcript=sample.transcript,
                          voice=sample.voice, seed=item_seed))
    return write_manifest(out / "hearing.jsonl", items)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for hearing.jsonl and audio/")
    parser.add_argument("--n", type=int, default=6000, help="clips (default 6000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", help="whose espeak-ng voices speak the digits (default train)")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """`audio-r1 data hearing`."""
    path = generate_hearing(args.out, args.n, args.seed, args.split, progress=not args.no_progress)
    print(f"{args.n} items -> {path}")
    return 0

"""Question families: each turns a random generator into one audio clip, a question and its answer.

Every family is a small function ``family(rng, voices) -> Sample`` whose answer depends on a measurable
property of the sound (pitch, count, level, duration, tempo, spectrum...), recorded with its true value in
``Sample.params``. Randomness comes only from ``rng`` and speech only from the split's ``voices``, so the
suite generator can reproduce any item from its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audio_r1.data.acoustics import estimate_f0
from audio_r1.data.synth import (
    SAMPLE_RATE,
    TIMBRES,
    beep,
    chord,
    click,
    concat,
    fade,
    mains_hum,
    midi_to_hz,
    n_samples,
    note_name,
    place,
    rms_db,
    set_rms_db,
    silence,
    speak,
    tone,
    white_noise,
)
from audio_r1.data.voices import VoicePool
from audio_r1.scoring.answers import number_to_words

MAX_SECONDS = 6.0
MIN_SECONDS = 1.0
PEAK = 0.9  # clips are scaled down (never up) to keep this much headroom before 16-bit quantisation

# thresholds that define the labels (also quoted by the traces)
HIGH_VOICE_HZ = 200.0  # a voice is "high" when its median F0 is at least this
LOW_VOICE_HZ = 125.0  # ... and "low" when at most this
TEMPO_BANDS = {"slow": (50, 80), "medium": (95, 125), "fast": (140, 190)}  # bpm ranges drawn from
TEMPO_CHOICES = {"slow": "slow (below 90 BPM)", "medium": "medium (90 to 130 BPM)", "fast": "fast (above 130 BPM)"}
SLOW_SPEEDS = (85, 120)  # espeak -s (words per minute) drawn from ...
FAST_SPEEDS = (240, 330)
SLOW_MAX_WPS = 2.8  # ... and the measured words per second that must hold for the label
FAST_MIN_WPS = 3.6
LOUD_DB = -20.0  # a voice at or above this RMS level is "loud" ...
QUIET_DB = -32.0  # ... at or below this, "quiet"
NOISE_CHOICES = {
    "none": "no background noise",
    "white": "white noise (a steady hiss)",
    "hum50": "a low mains hum at 50 Hz",
    "hum60": "a low mains hum at 60 Hz",
}

SENTENCES = (
    "The little boat drifted across the lake.",
    "Please put the books back on the shelf.",
    "We walked home after the concert ended.",
    "The garden looks lovely in the spring.",
    "My brother bought a new bicycle today.",
    "The train leaves from platform number four.",
    "She painted the kitchen door bright green.",
    "Our neighbours are moving to another city.",
    "The museum opens again next Monday morning.",
    "He forgot his umbrella at the office.",
    "The soup needs a little more salt.",
    "They planted three apple trees in the yard.",
    "The meeting was moved to the afternoon.",
    "A cold wind blew over the hills.",
    "I left the keys on the kitchen table.",
    "The children built a castle of sand.",
    "Tomorrow we will visit our grandparents.",
    "The library is closed on public holidays.",
    "He cooked rice and vegetables for dinner.",
    "The old clock in the hall stopped.",
)

WORDS = {
    "animal": ("horse", "rabbit", "tiger", "donkey", "parrot", "whale", "monkey", "camel", "spider", "turtle",
               "eagle", "zebra", "penguin", "dolphin"),
    "colour": ("red", "green", "yellow", "purple", "orange", "silver", "brown", "pink", "violet", "golden",
               "black", "white"),
    "fruit": ("apple", "banana", "cherry", "lemon", "mango", "peach", "grape", "melon", "plum", "kiwi",
              "pear", "apricot"),
    "object": ("table", "window", "pencil", "bottle", "ladder", "candle", "blanket", "mirror", "basket",
               "hammer", "pillow", "wallet"),
}


@dataclass
class Sample:
    """What a family produces: audio (None for text-only), question, answer and the true parameters."""

    question: str
    answer: str
    answer_type: str
    params: dict[str, Any]
    audio: np.ndarray | None = None
    choices: list[str] | None = None
    transcript: str | None = None
    voice: str | None = None


Family = Callable[[np.random.Generator, VoicePool], Sample]


# ------------------------------------------------------------------------------------------------ helpers


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    """One element of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def _shuffled(rng: np.random.Generator, options: Sequence[str]) -> list[str]:
    """A shuffled copy of ``options`` (option order is part of the item, so it is seeded too)."""
    return [options[i] for i in rng.permutation(len(options))]


def _r(x: float, digits: int = 2) -> float:
    """A plain rounded float for ``params``."""
    return float(round(float(x), digits))


def _headroom(x: np.ndarray) -> np.ndarray:
    """Scale the clip down if its peak exceeds ``PEAK`` (levels are measured after this)."""
    peak = float(np.max(np.abs(x)))
    return (x * (PEAK / peak)).astype(np.float32) if peak > PEAK else x.astype(np.float32)


def _finish(x: np.ndarray) -> np.ndarray:
    """Headroom, then trailing silence up to the minimum length; refuses clips over the maximum."""
    x = _headroom(x)
    if len(x) < n_samples(MIN_SECONDS):
        x = concat(x, silence(MIN_SECONDS - len(x) / SAMPLE_RATE))
    if len(x) > n_samples(MAX_SECONDS):
        raise ValueError(f"clip is {len(x) / SAMPLE_RATE:.2f} s, over the {MAX_SECONDS} s limit")
    return x


def _sequence(sounds: Sequence[np.ndarray], gaps_s: Sequence[float], lead_s: float,
              tail_s: float) -> tuple[np.ndarray, list[list[float]]]:
    """Sounds one after another with silent gaps; returns the clip and each sound's [start, end] in s."""
    parts, segments, t = [silence(lead_s)], [], n_samples(lead_s)
    for i, s in enumerate(sounds):
        segments.append([_r(t / SAMPLE_RATE, 4), _r((t + len(s)) / SAMPLE_RATE, 4)])
        parts.append(s)
        t += len(s)
        if i < len(gaps_s):
            parts.append(silence(gaps_s[i]))
            t += n_samples(gaps_s[i])
    parts.append(silence(tail_s))
    return concat(*parts), segments


def _segment(x: np.ndarray, seg: Sequence[float]) -> np.ndarray:
    """The samples of ``x`` between ``seg[0]`` and ``seg[1]`` seconds."""
    return x[n_samples(seg[0]):n_samples(seg[1])]


def _ordinal_choices(noun: str) -> list[str]:
    return [f"The first {noun}", f"The second {noun}"]


def _count_choices(rng: np.random.Generator, n: int, also: int | None = None) -> list[str]:
    """Four distinct counts in 1-9 near ``n`` (including it, and ``also`` if given), in ascending order."""
    keep = [n] if also is None else [n, also]
    near = [k for k in range(max(1, n - 3), min(9, n + 3) + 1) if k not in keep]
    others = [near[i] for i in rng.permutation(len(near))[:4 - len(keep)]]
    return [str(k) for k in sorted([*keep, *others])]


def _speak_fit(rng: np.random.Generator, voice: str, pitch: int, speed: int, max_s: float,
               texts: Sequence[str] = SENTENCES) -> tuple[np.ndarray, str]:
    """Speak a random sentence that fits in ``max_s`` seconds (others are tried, in random order, if not)."""
    for text in _shuffled(rng, list(texts)):
        x = speak(text, voice, pitch=pitch, speed=speed)
        if len(x) <= n_samples(max_s):
            return x, text
    raise ValueError(f"no sentence fits in {max_s} s at speed {speed} with voice {voice!r}")


def _voice_in_register(rng: np.random.Generator, voices: VoicePool, register: str,
                       texts: Sequence[str] = SENTENCES) -> tuple[np.ndarray, str, str, int, float]:
    """Speech whose measured F0 is clearly ``register`` ("high" >= 200 Hz or "low" <= 125 Hz).

    Draws voice, espeak pitch and sentence until the measurement agrees; returns
    (audio, text, voice, espeak pitch, F0 in Hz).
    """
    for _ in range(60):
        voice = voices.pick(rng, "high" if register == "high" else None)
        pitch = int(rng.integers(60, 100)) if register == "high" else int(rng.integers(0, 36))
        text = _pick(rng, texts)
        x = speak(text, voice, pitch=pitch, speed=int(rng.integers(140, 190)))
        f0 = estimate_f0(x)
        if f0 is not None and (f0 >= HIGH_VOICE_HZ if register == "high" else f0 <= LOW_VOICE_HZ):
            if len(x) <= n_samples(MAX_SECONDS - 0.5):
                return x, text, voice, pitch, f0
    raise RuntimeError(f"could not draw a {register} voice from {voices}")


def _speech_at_rate(rng: np.random.Generator, voices: VoicePool, rate: str,
                    texts: Sequence[str] = SENTENCES) -> tuple[np.ndarray, str, str, int]:
    """Speech whose measured rate is clearly ``rate`` (fast >= 3.6 or slow <= 2.8 words per second).

    Draws voice, espeak speed and sentence until the measurement agrees and the clip fits; returns
    (audio, text, voice, espeak speed).
    """
    for _ in range(40):
        voice, text = voices.pick(rng), _pick(rng, texts)
        speed = int(rng.integers(*(FAST_SPEEDS if rate == "fast" else SLOW_SPEEDS)))
        x = speak(text, voice, int(rng.integers(30, 70)), speed)
        wps = len(text.split()) / (len(x) / SAMPLE_RATE)
        if (wps >= FAST_MIN_WPS if rate == "fast" else wps <= SLOW_MAX_WPS) and len(x) <= n_samples(5.6):
            return x, text, voice, speed
    raise RuntimeError(f"could not draw {rate} speech from {voices}")


def _clicks(rng: np.random.Generator, onsets_s: Sequence[float], sound: str, total_s: float,
            accent_every: int = 0) -> np.ndarray:
    """A train of clicks or wood-block beeps at the given onsets, optionally accenting every n-th."""
    freq = float(rng.uniform(1500, 2500))
    events = []
    for i in range(len(onsets_s)):
        ev = click(rng) if sound == "click" else beep(freq, 0.03)
        gain = 1.0 if accent_every and i % accent_every == 0 else (0.6 if accent_every else 0.8)
        events.append(ev * gain)
    return place(events, onsets_s, total_s)


# ------------------------------------------------------------------------------------------------ families


def pitch_compare(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """Two tones one after the other; which is higher (or lower)? Timbre varies, the gap is 2-12 semitones."""
    timbre = _pick(rng, TIMBRES)
    m1 = int(rng.integers(48, 85))
    gap = int(rng.integers(2, 13)) * _pick(rng, (1, -1))
    m2 = m1 + gap if 45 <= m1 + gap <= 90 else m1 - gap
    f0 = [midi_to_hz(m1), midi_to_hz(m2)]
    level = rng.uniform(-24, -14)
    sounds = [set_rms_db(tone(f, rng.uniform(0.5, 1.0), timbre), level) for f in f0]
    x, segments = _sequence(sounds, [rng.uniform(0.25, 0.5)], rng.uniform(0.1, 0.3), 0.2)
    noun, ask = _pick(rng, ("tone", "note", "sound")), _pick(rng, ("higher", "lower"))
    higher = 0 if f0[0] > f0[1] else 1
    index = higher if ask == "higher" else 1 - higher
    question = _pick(rng, (
        f"Which {noun} is {ask} in pitch, the first or the second?",
        f"You will hear two {noun}s, one after the other. Which one has the {ask} pitch?",
        f"Listen to both {noun}s. Which {noun} sounds {ask}?",
        f"Two {noun}s are played. Which of them is pitched {ask}?",
    ))
    choices = _ordinal_choices(noun)
    params = {"f0_hz": [_r(f) for f in f0], "notes": [note_name(m1), note_name(m2)], "semitones": m2 - m1,
              "timbre": timbre, "ask": ask, "segments_s": segments}
    return Sample(question, choices[index], "choice", params, _finish(x), choices)


def voice_pitch(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """One spoken sentence with espeak's pitch set high or low; is the voice high or low? (by measured F0)"""
    register = _pick(rng, ("high", "low"))
    x, text, voice, pitch, f0 = _voice_in_register(rng, voices, register)
    x = set_rms_db(x, rng.uniform(-26, -18))
    question, choices = _pick(rng, (
        ("Is the speaker's voice high-pitched or low-pitched?", ["high-pitched", "low-pitched"]),
        ("Does this voice sound high or low in pitch?", ["high", "low"]),
        ("How would you describe the pitch of the voice?", ["a high voice", "a low voice"]),
        ("Listen to the speaker. Is the voice pitched high or low?", ["high", "low"]),
    ))
    answer = choices[0] if register == "high" else choices[1]
    params = {"espeak_pitch": pitch, "f0_hz": _r(f0, 1), "register": register,
              "high_above_hz": HIGH_VOICE_HZ, "low_below_hz": LOW_VOICE_HZ}
    return Sample(question, answer, "choice", params, _finish(x), _shuffled(rng, choices), text, voice)


def _event_train(rng: np.random.Generator, n: int, kind: str, lead_s: float) -> tuple[np.ndarray, dict]:
    """``n`` beeps or clicks with jittered spacing (at least 0.15 s apart); returns audio and params."""
    base = min(rng.uniform(0.22, 0.5), 4.6 / max(n, 1))
    intervals = np.maximum(base * rng.uniform(0.75, 1.25, max(n - 1, 0)), 0.15)
    onsets = lead_s + np.concatenate([[0.0], np.cumsum(intervals)])
    freq = float(rng.uniform(500, 2000))
    events = []
    for _ in range(n):
        ev = beep(freq, rng.uniform(0.05, 0.12)) if kind == "beep" else click(rng)
        events.append(ev * 10 ** (rng.uniform(-3, 0) / 20) * 0.5)
    total = float(onsets[-1]) + 0.45
    params: dict[str, Any] = {"count": n, "kind": kind, "onsets_s": [_r(t, 3) for t in onsets]}
    if kind == "beep":
        params["beep_hz"] = _r(freq)
    return place(events, onsets, total), params


def count_events(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """1-9 beeps or clicks with jittered spacing; how many? Open number or multiple choice."""
    n, kind = int(rng.integers(1, 10)), _pick(rng, ("beep", "click"))
    x, params = _event_train(rng, n, kind, rng.uniform(0.2, 0.5))
    question = _pick(rng, (
        f"How many {kind}s do you hear?",
        f"Count the {kind}s in this clip. How many are there?",
        f"How many times does the {kind} sound?",
        f"Listen carefully and count the {kind}s.",
    ))
    if rng.random() < 0.5:
        return Sample(question, str(n), "number", params, _finish(x))
    return Sample(question, str(n), "choice", params, _finish(x), _count_choices(rng, n))


def _repeatable_sound(rng: np.random.Generator, voices: VoicePool, kind: str,
                      seconds: float) -> tuple[np.ndarray, dict, str | None, str | None]:
    """A tone, noise burst or spoken word to present twice; returns (audio, params, transcript, voice)."""
    if kind == "tone":
        f, timbre = midi_to_hz(int(rng.integers(55, 80))), _pick(rng, TIMBRES)
        return tone(f, seconds, timbre), {"tone_hz": _r(f), "timbre": timbre}, None, None
    if kind == "noise":
        return fade(white_noise(rng, seconds), 0.02), {}, None, None
    voice, word = voices.pick(rng), _pick(rng, WORDS[_pick(rng, tuple(WORDS))])
    return speak(word, voice, pitch=int(rng.integers(30, 70))), {}, word, voice


def loudness_compare(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """The same sound twice at levels at least 6 dB apart; which is louder (or quieter)?"""
    kind = _pick(rng, ("tone", "noise", "speech"))
    sound, extra, word, voice = _repeatable_sound(rng, voices, kind, rng.uniform(0.5, 1.0))
    quiet = rng.uniform(-40, -24)
    levels = [quiet, quiet + rng.uniform(6, 16)]
    if rng.random() < 0.5:
        levels.reverse()
    x, segments = _sequence([set_rms_db(sound, lv) for lv in levels], [rng.uniform(0.3, 0.6)],
                            rng.uniform(0.1, 0.3), 0.2)
    x = _finish(x)
    measured = [_r(rms_db(_segment(x, s))) for s in segments]
    noun = {"tone": "tone", "noise": "burst of noise", "speech": "word"}[kind]
    ask = _pick(rng, ("louder", "quieter"))
    louder = 0 if measured[0] > measured[1] else 1
    index = louder if ask == "louder" else 1 - louder
    question = _pick(rng, (
        f"Which {noun} is {ask}, the first or the second?",
        f"The same {noun} is played twice. Which time is it {ask}?",
        f"Listen to the two {noun}s. Which one is {ask}?",
        f"Compare the level of the two {noun}s: which is {ask}?",
    ))
    choices = _ordinal_choices(noun)
    params = {"rms_db": measured, "kind": kind, "ask": ask, "segments_s": segments, **extra}
    transcript = f"{word} ... {word}" if word else None
    return Sample(question, choices[index], "choice", params, x, choices, transcript, voice)


def duration_compare(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """Two copies of a sound, one at least 40% longer; which lasts longer (or shorter)?"""
    kind = _pick(rng, ("tone", "noise"))
    short = rng.uniform(0.3, 1.1)
    durations = [short, min(short * rng.uniform(1.4, 2.5), 2.4)]
    if rng.random() < 0.5:
        durations.reverse()
    f, timbre = midi_to_hz(int(rng.integers(55, 80))), _pick(rng, TIMBRES)
    level = rng.uniform(-26, -16)
    sounds = [set_rms_db(tone(f, d, timbre) if kind == "tone" else fade(white_noise(rng, d), 0.02), level)
              for d in durations]
    x, segments = _sequence(sounds, [rng.uniform(0.3, 0.6)], rng.uniform(0.1, 0.3), 0.2)
    noun = "tone" if kind == "tone" else "burst of noise"
    ask = _pick(rng, ("longer", "shorter"))
    longer = 0 if durations[0] > durations[1] else 1
    index = longer if ask == "longer" else 1 - longer
    question = _pick(rng, (
        f"Which {noun} lasts {ask}, the first or the second?",
        f"Two {noun}s are played. Which one is {ask}?",
        f"Listen to both {noun}s. Which has the {ask} duration?",
        f"Which of the two {noun}s goes on {ask}?",
    ))
    durations_s = [_r(s[1] - s[0], 3) for s in segments]
    params = {"durations_s": durations_s, "kind": kind, "ask": ask, "segments_s": segments}
    if kind == "tone":
        params |= {"tone_hz": _r(f), "timbre": timbre}
    choices = _ordinal_choices(noun)
    return Sample(question, choices[index], "choice", params, _finish(x), choices)


def tempo(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """A metronome; is the tempo slow (<90 BPM), medium (90-130) or fast (>130)?"""
    band = _pick(rng, tuple(TEMPO_BANDS))
    bpm = int(rng.integers(TEMPO_BANDS[band][0], TEMPO_BANDS[band][1] + 1))
    interval = 60.0 / bpm
    lead = rng.uniform(0.1, 0.3)
    n = max(4, int((rng.uniform(3.5, 5.5) - lead - 0.3) / interval) + 1)
    onsets = lead + interval * np.arange(n)
    sound = _pick(rng, ("click", "woodblock"))
    accent = _pick(rng, (0, 0, 3, 4))
    x = _clicks(rng, onsets, sound, float(onsets[-1]) + 0.3, accent) * 0.5
    question = _pick(rng, (
        "What is the tempo of the metronome?",
        "Is this beat slow, medium or fast?",
        "How fast are the clicks?",
        "Listen to the metronome. Which tempo band does it fall in?",
    ))
    choices = list(TEMPO_CHOICES.values())
    params = {"bpm": bpm, "band": band, "interval_s": _r(interval, 4), "n_clicks": n, "sound": sound,
              "accent_every": accent}
    return Sample(question, TEMPO_CHOICES[band], "choice", params, _finish(x), choices)


def rhythm(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """Clicks that are evenly spaced or clearly not (interval spread of at least 30%); regular or irregular?"""
    regular = bool(rng.random() < 0.5)
    base = rng.uniform(0.3, 0.6)
    n = min(int(rng.integers(6, 11)), int(4.8 / (base * 1.15)))
    if regular:
        intervals = np.full(n - 1, base)
    else:
        while True:
            intervals = base * rng.uniform(0.45, 1.7, n - 1)
            if intervals.min() >= 0.15 and intervals.std() / intervals.mean() >= 0.3:
                break
    onsets = rng.uniform(0.1, 0.3) + np.concatenate([[0.0], np.cumsum(intervals)])
    sound = _pick(rng, ("click", "woodblock"))
    x = _clicks(rng, onsets, sound, float(onsets[-1]) + 0.3) * 0.5
    question, choices = _pick(rng, (
        ("Is the rhythm of these clicks regular or irregular?",
         ["regular (evenly spaced)", "irregular (unevenly spaced)"]),
        ("Are the beats evenly spaced?", ["yes, they are evenly spaced", "no, the spacing varies"]),
        ("Does this sound like a steady pulse or an uneven one?", ["a steady pulse", "an uneven pulse"]),
        ("Describe the timing of the clicks.", ["steady and regular", "irregular"]),
    ))
    cv = float(intervals.std() / intervals.mean())
    params = {"regular": regular, "intervals_s": [_r(i, 3) for i in intervals], "cv": _r(cv, 3),
              "n_events": n, "sound": sound}
    return Sample(question, choices[0] if regular else choices[1], "choice", params, _finish(x), choices)


def _foreground(rng: np.random.Generator, voices: VoicePool, kind: str) -> tuple[np.ndarray, dict, str | None,
                                                                                    str | None]:
    """Speech or a short melody (notes at 260 Hz and above) at about -20 dBFS."""
    if kind == "speech":
        voice = voices.pick(rng)
        x, text = _speak_fit(rng, voice, int(rng.integers(30, 70)), int(rng.integers(150, 200)), 4.4)
        return set_rms_db(x, -20.0), {}, text, voice
    timbre = _pick(rng, ("sine", "harmonic"))
    midis = [int(m) for m in rng.integers(60, 85, int(rng.integers(2, 5)))]
    notes = [tone(midi_to_hz(m), rng.uniform(0.35, 0.7), timbre) for m in midis]
    return set_rms_db(concat(*notes), -20.0), {"notes": [note_name(m) for m in midis], "timbre": timbre}, None, None


def _background(rng: np.random.Generator, noise: str, seconds: float) -> np.ndarray | None:
    """Unit-RMS background of ``noise`` kind ("white", "hum50", "hum60"), or None for "none"."""
    if noise == "none":
        return None
    if noise == "white":
        x = white_noise(rng, seconds)
    else:
        x = mains_hum(50.0 if noise == "hum50" else 60.0, seconds, phase=rng.uniform(0, 2 * np.pi))
    return set_rms_db(fade(x, 0.05), 0.0)


def _noise_params(noise: str, snr_db: float | None, noise_db: float | None) -> dict[str, Any]:
    """The ``params`` entries describing a background."""
    if noise == "none":
        return {"noise": "none"}
    out: dict[str, Any] = {"noise": "white" if noise == "white" else "hum"}
    if noise != "white":
        out["hum_hz"] = 50 if noise == "hum50" else 60
    return out | {"snr_db": _r(snr_db), "noise_db": _r(noise_db)}


def _mix_background(rng: np.random.Generator, fg: np.ndarray, noise: str, snr_db: float
                    ) -> tuple[np.ndarray, float | None]:
    """Foreground with 0.3 s of padding each side, over the background at ``snr_db``; returns (mix, noise dB)."""
    x = concat(silence(0.3), fg, silence(0.3))
    bg = _background(rng, noise, len(x) / SAMPLE_RATE)
    if bg is None:
        return x, None
    noise_db = rms_db(fg) - snr_db
    return x + set_rms_db(bg, noise_db), noise_db


def noise_type(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """Speech or a melody over no noise, white noise, or 50 / 60 Hz mains hum; which background?"""
    fg_kind = _pick(rng, ("speech", "tone"))
    fg, extra, text, voice = _foreground(rng, voices, fg_kind)
    noise = _pick(rng, tuple(NOISE_CHOICES))
    snr = rng.uniform(6, 18) if noise == "white" else rng.uniform(0, 10)
    x, noise_db = _mix_background(rng, fg, noise, snr)
    thing = "speech" if fg_kind == "speech" else "melody"
    question = _pick(rng, (
        "What kind of background noise is in this recording?",
        f"Besides the {thing}, what else can be heard?",
        "Which background sound is present?",
        f"Listen behind the {thing}. What noise, if any, is there?",
    ))
    params = {"foreground": fg_kind, **_noise_params(noise, snr, noise_db), **extra}
    choices = list(NOISE_CHOICES.values())
    return Sample(question, NOISE_CHOICES[noise], "choice", params, _finish(x), choices, text, voice)


def chord_quality(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """A major or minor triad on a random root (C3-C5), blocked or arpeggiated; major or minor?"""
    root = int(rng.integers(48, 73))
    quality = _pick(rng, ("major", "minor"))
    intervals = [0, 4, 7] if quality == "major" else [0, 3, 7]
    freqs = [midi_to_hz(root + i) for i in intervals]
    timbre, style = _pick(rng, TIMBRES), _pick(rng, ("block", "arpeggio"))
    block = chord(freqs, rng.uniform(1.2, 2.2), timbre)
    if style == "arpeggio":
        step = rng.uniform(0.25, 0.4)
        block = concat(*[tone(f, step, timbre) / 3 for f in freqs], block)
    x = concat(silence(rng.uniform(0.1, 0.3)), set_rms_db(block, rng.uniform(-24, -16)), silence(0.2))
    question = _pick(rng, (
        "Is this chord major or minor?",
        "Does the triad sound major (bright) or minor (darker)?",
        "What is the quality of the chord you hear?",
        "Listen to the chord. Major or minor?",
    ))
    params = {"root": note_name(root), "root_hz": _r(freqs[0]), "quality": quality,
              "f0_hz": [_r(f) for f in freqs], "intervals": intervals, "style": style, "timbre": timbre}
    return Sample(question, quality, "choice", params, _finish(x), ["major", "minor"])


def speaking_rate(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """A sentence at espeak speed 85-120 or 240-330 (measured: <= 2.8 or >= 3.6 words/s); fast or slow?"""
    rate = _pick(rng, ("fast", "slow"))
    x, text, voice, speed = _speech_at_rate(rng, voices, rate)
    x = set_rms_db(x, rng.uniform(-26, -18))
    question, choices = _pick(rng, (
        ("Is the person speaking quickly or slowly?", ["quickly", "slowly"]),
        ("How fast is the speech?", ["fast", "slow"]),
        ("Is this speech rushed or unhurried?", ["rushed and fast", "slow and unhurried"]),
        ("Listen to the speaking rate. Fast or slow?", ["fast", "slow"]),
    ))
    n_words = len(text.split())
    seconds = len(x) / SAMPLE_RATE
    params = {"espeak_speed": speed, "rate": rate, "n_words": n_words, "duration_s": _r(seconds, 3),
              "words_per_s": _r(n_words / seconds)}
    answer = choices[0] if rate == "fast" else choices[1]
    return Sample(question, answer, "choice", params, _finish(x), _shuffled(rng, choices), text, voice)


# ------------------------------------------------------------------------------------------------ traps

_LOUD_CLAIMS = ("I am shouting as loud as I can!", "This is extremely loud.", "I'm yelling at the top of my lungs.")
_QUIET_CLAIMS = ("I am whispering very softly.", "This is barely audible.", "I'm speaking so quietly now.")
_FAST_CLAIMS = ("I am talking really fast right now.", "This is very fast speech.", "Listen how quickly I speak.")
_SLOW_CLAIMS = ("I am speaking very slowly.", "This is very slow speech.", "I am taking my time with every word.")
_HIGH_NOTE_CLAIMS = ("This is a very high note.", "Listen to this high pitched tone.", "Here comes a high note.")
_LOW_NOTE_CLAIMS = ("This is a deep, low note.", "Listen to this low bass tone.", "Here comes a very low note.")
_CLEAN_CLAIMS = ("This recording is perfectly clean.", "There is no background noise at all.",
                 "Listen, it is completely silent behind me.")
_NOISY_CLAIMS = ("Can you hear that loud humming noise?", "There is a lot of noise in this room.",
                 "Sorry about all the background noise.")
_HIGH_VOICE_CLAIMS = ("My voice is very high and squeaky.", "I have a really high voice.",
                      "Everyone says I sound like a child.")
_LOW_VOICE_CLAIMS = ("I have a very deep voice.", "My voice is low and booming.", "I speak in a deep bass voice.")


def _trap_loudness(rng: np.random.Generator, voices: VoicePool) -> Sample:
    truth = _pick(rng, ("loud", "quiet"))
    claim = "quiet" if truth == "loud" else "loud"
    for _ in range(20):  # peaky speech may lose level to the headroom rule: draw again until it stays loud
        text = _pick(rng, _LOUD_CLAIMS if claim == "loud" else _QUIET_CLAIMS)
        voice = voices.pick(rng)
        level = rng.uniform(-16, -12) if truth == "loud" else rng.uniform(-42, -34)
        x = _finish(concat(silence(0.2), set_rms_db(speak(text, voice, int(rng.integers(30, 70))), level),
                           silence(0.2)))
        measured = rms_db(x[n_samples(0.2):len(x) - n_samples(0.2)])
        if (measured >= LOUD_DB) if truth == "loud" else (measured <= QUIET_DB):
            break
    else:
        raise RuntimeError("could not draw speech loud enough for a loudness trap")
    question = _pick(rng, ("Is the speaker's voice loud or quiet in this recording?",
                           "Judging by the sound, is this recording loud or quiet?",
                           "How loud is the voice: loud or quiet?"))
    params = {"trap": "loudness", "claim": claim, "truth": truth, "rms_db": _r(measured),
              "loud_above_db": LOUD_DB, "quiet_below_db": QUIET_DB}
    return Sample(question, truth, "choice", params, x, _shuffled(rng, ["loud", "quiet"]), text, voice)


def _trap_rate(rng: np.random.Generator, voices: VoicePool) -> Sample:
    truth = _pick(rng, ("fast", "slow"))
    claim = "slow" if truth == "fast" else "fast"
    x, text, voice, speed = _speech_at_rate(rng, voices, truth, _FAST_CLAIMS if claim == "fast" else _SLOW_CLAIMS)
    x = set_rms_db(x, rng.uniform(-26, -18))
    seconds = len(x) / SAMPLE_RATE
    question = _pick(rng, ("Is the speaker talking fast or slowly?", "How fast is the speech, fast or slow?",
                           "Judging by the sound, is the speaking rate fast or slow?"))
    n_words = len(text.split())
    params = {"trap": "rate", "claim": claim, "truth": truth, "espeak_speed": speed, "n_words": n_words,
              "duration_s": _r(seconds, 3), "words_per_s": _r(n_words / seconds)}
    return Sample(question, truth, "choice", params, _finish(x), _shuffled(rng, ["fast", "slow"]), text, voice)


def _trap_tone_pitch(rng: np.random.Generator, voices: VoicePool) -> Sample:
    truth = _pick(rng, ("high", "low"))
    claim = "low" if truth == "high" else "high"
    text = _pick(rng, _HIGH_NOTE_CLAIMS if claim == "high" else _LOW_NOTE_CLAIMS)
    voice = voices.pick(rng)
    midi = int(rng.integers(76, 91)) if truth == "high" else int(rng.integers(40, 53))
    speech = set_rms_db(speak(text, voice, int(rng.integers(30, 70))), -20.0)
    seconds = len(speech) / SAMPLE_RATE + 1.0
    bed = set_rms_db(tone(midi_to_hz(midi), seconds, _pick(rng, ("sine", "harmonic"))), rng.uniform(-26, -20))
    x = place([bed, speech], [0.2, 0.4], 0.2 + seconds + 0.2)
    question = _pick(rng, ("Is the tone playing behind the voice high or low in pitch?",
                           "Ignore the voice for a moment: is the background tone high or low?",
                           "What about the steady tone in this clip, is it high or low?"))
    params = {"trap": "tone_pitch", "claim": claim, "truth": truth, "tone_hz": _r(midi_to_hz(midi)),
              "note": note_name(midi)}
    return Sample(question, truth, "choice", params, _finish(x), _shuffled(rng, ["high", "low"]), text, voice)


def _trap_count(rng: np.random.Generator, voices: VoicePool) -> Sample:
    truth = int(rng.integers(1, 8))
    claim = truth + int(_pick(rng, (-3, -2, -1, 1, 2, 3)))
    claim = claim if 1 <= claim <= 9 and claim != truth else truth + 2
    kind = "beep"
    text = f"You will now hear {number_to_words(claim)} {kind if claim == 1 else kind + 's'}."
    voice = voices.pick(rng)
    speech = set_rms_db(speak(text, voice, int(rng.integers(30, 70))), -20.0)
    lead = 0.2 + len(speech) / SAMPLE_RATE + 0.4
    trainx, train_params = _event_train(rng, truth, kind, 0.0)
    x = concat(silence(0.2), speech, silence(0.4), set_rms_db(trainx, -24.0))
    question = _pick(rng, ("How many beeps are played after the voice?", "Count the beeps. How many are there?",
                           "How many beeps do you actually hear?"))
    params = {"trap": "count", "claim": claim, "truth": truth, "count": truth,
              "onsets_s": [_r(t + lead, 3) for t in train_params["onsets_s"]], "beep_hz": train_params["beep_hz"]}
    if rng.random() < 0.5:
        return Sample(question, str(truth), "number", params, _finish(x), None, text, voice)
    return Sample(question, str(truth), "choice", params, _finish(x), _count_choices(rng, truth, claim), text, voice)


def _trap_noise(rng: np.random.Generator, voices: VoicePool) -> Sample:
    truth = _pick(rng, ("noisy", "clean"))
    claim = "clean" if truth == "noisy" else "noisy"
    text = _pick(rng, _CLEAN_CLAIMS if claim == "clean" else _NOISY_CLAIMS)
    voice = voices.pick(rng)
    noise = _pick(rng, ("white", "hum50", "hum60")) if truth == "noisy" else "none"
    snr = rng.uniform(0, 8)
    fg = set_rms_db(speak(text, voice, int(rng.integers(30, 70))), -20.0)
    x, noise_db = _mix_background(rng, fg, noise, snr)
    question = _pick(rng, ("Is there any background noise in this recording?",
                           "Judging by the sound, is the recording noisy?",
                           "Can you hear noise behind the voice?"))
    params = {"trap": "noise", "claim": claim, "truth": truth, **_noise_params(noise, snr, noise_db)}
    answer = "yes" if truth == "noisy" else "no"
    return Sample(question, answer, "choice", params, _finish(x), ["yes", "no"], text, voice)


def _trap_voice_pitch(rng: np.random.Generator, voices: VoicePool) -> Sample:
    truth = _pick(rng, ("high", "low"))
    claim = "low" if truth == "high" else "high"
    texts = _LOW_VOICE_CLAIMS if claim == "low" else _HIGH_VOICE_CLAIMS
    x, text, voice, pitch, f0 = _voice_in_register(rng, voices, truth, texts)
    x = set_rms_db(x, rng.uniform(-26, -18))
    question = _pick(rng, ("Is the speaker's voice high or low in pitch?", "Does this voice sound high or low?",
                           "Judging by the sound, is the voice high-pitched or low-pitched?"))
    params = {"trap": "voice_pitch", "claim": claim, "truth": truth, "espeak_pitch": pitch,
              "f0_hz": _r(f0, 1), "high_above_hz": HIGH_VOICE_HZ, "low_below_hz": LOW_VOICE_HZ}
    return Sample(question, truth, "choice", params, _finish(x), _shuffled(rng, ["high", "low"]), text, voice)


TRAPS: dict[str, Family] = {
    "loudness": _trap_loudness,
    "rate": _trap_rate,
    "tone_pitch": _trap_tone_pitch,
    "count": _trap_count,
    "noise": _trap_noise,
    "voice_pitch": _trap_voice_pitch,
}


def surrogate_trap(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """The words claim one thing and the sound shows another; only acoustic evidence answers the question.

    ``params`` records ``trap`` (which property), ``claim`` (what the words say) and ``truth`` (what the
    sound shows), plus the measured values.
    """
    return TRAPS[_pick(rng, tuple(TRAPS))](rng, voices)


# ------------------------------------------------------------------------------------------------ content


def spoken_content(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """One word or number (0-99) in a short carrier phrase; which was said? Multiple choice or open."""
    voice = voices.pick(rng)
    if rng.random() < 0.3:
        category = "number"
        n = int(rng.integers(0, 100))
        word = number_to_words(n)
        text = _pick(rng, (f"{word}.", f"The number is {word}.", f"Please write down {word}."))
        answer, pool = str(n), [str(k) for k in range(100)]
        question = _pick(rng, ("Which number is spoken?", "What number does the speaker say?",
                               "Listen and tell me the number you hear."))
        params: dict[str, Any] = {"category": category, "number": n}
    else:
        category = _pick(rng, tuple(WORDS))
        pool = list(WORDS[category])
        answer = _pick(rng, pool)
        text = _pick(rng, (f"{answer}.", f"The word is {answer}.", f"Please write down the word {answer}."))
        question = _pick(rng, ("Which word is spoken?", "What word does the speaker say?",
                               f"Which {category} is named in the recording?"))
        params = {"category": category, "word": answer}
    x = set_rms_db(speak(text, voice, int(rng.integers(25, 75)), int(rng.integers(130, 190))),
                   rng.uniform(-26, -18))
    x = concat(silence(rng.uniform(0.1, 0.3)), x, silence(0.2))
    if rng.random() < 0.3:
        kind = "number" if category == "number" else "text"
        return Sample(question, answer, kind, params, _finish(x), None, text, voice)
    distractors = [w for w in _shuffled(rng, pool) if w != answer][:3]
    choices = _shuffled(rng, [answer, *distractors])
    return Sample(question, answer, "choice", params, _finish(x), choices, text, voice)


_OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}


def _arithmetic(rng: np.random.Generator) -> tuple[int, int, str, int]:
    """Small non-negative arithmetic: (a, b, op word, result)."""
    op = _pick(rng, tuple(_OPS))
    if op == "plus":
        a, b = (int(v) for v in rng.integers(1, 21, 2))
    elif op == "minus":
        a = int(rng.integers(5, 31))
        b = int(rng.integers(1, a + 1))
    else:
        a, b = (int(v) for v in rng.integers(2, 13, 2))
    return a, b, op, _OPS[op](a, b)


def spoken_arithmetic(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """A spoken question like "what is seven plus five"; open numeric answer."""
    a, b, op, result = _arithmetic(rng)
    wa, wb = number_to_words(a), number_to_words(b)
    text = _pick(rng, (f"What is {wa} {op} {wb}?", f"How much is {wa} {op} {wb}?",
                       f"Please calculate {wa} {op} {wb}.", f"Tell me, what is {wa} {op} {wb}?"))
    voice = voices.pick(rng)
    x = set_rms_db(speak(text, voice, int(rng.integers(30, 70)), int(rng.integers(140, 190))),
                   rng.uniform(-26, -18))
    question = _pick(rng, ("Answer the question asked in the recording.",
                           "Listen to the arithmetic question and solve it.",
                           "What is the answer to the spoken question?",
                           "Solve the spoken problem."))
    params = {"a": a, "b": b, "op": op, "result": result}
    return Sample(question, str(result), "number", params, _finish(concat(silence(0.2), x, silence(0.2))),
                  None, text, voice)


_NAMES = ("Mia", "Tom", "Aisha", "Leo", "Sara", "Ravi", "Emma", "Kenji", "Lucia", "Omar")
_THINGS = ("apples", "marbles", "stickers", "books", "pencils", "cookies", "shells", "stamps")


def text_math(rng: np.random.Generator, voices: VoicePool) -> Sample:
    """A text-only arithmetic word problem (no audio); open numeric answer."""
    name, thing = _pick(rng, _NAMES), _pick(rng, _THINGS)
    kind = int(rng.integers(6))
    a, b, c = (int(v) for v in rng.integers(2, 13, 3))
    if kind == 0:
        operands, result = [a + 10, b + 5], a + b + 15
        problem = f"{name} has {a + 10} {thing} and gets {b + 5} more. How many {thing} does {name} have now?"
    elif kind == 1:
        operands, result = [a + b + 5, b], a + 5
        problem = f"{name} had {a + b + 5} {thing} and gave {b} away. How many {thing} are left?"
    elif kind == 2:
        operands, result = [a, b], a * b
        problem = f"There are {a} boxes with {b} {thing} in each. How many {thing} are there altogether?"
    elif kind == 3:
        operands, result = [a * b, a], b
        problem = f"{a * b} {thing} are shared equally among {a} friends. How many {thing} does each friend get?"
    elif kind == 4:
        operands, result = [10 * a, b], 10 * a * b
        problem = f"A train travels {10 * a} km per hour for {b} hours. How many km does it travel?"
    else:
        operands, result = [a + 10, b, c], a + 10 + b - c
        problem = f"{name} has {a + 10} {thing}, buys {b} more and then loses {c}. How many {thing} are left?"
    params = {"template": kind, "operands": operands, "result": result}
    return Sample(problem, str(result), "number", params)


FAMILIES: dict[str, Family] = {
    "pitch_compare": pitch_compare,
    "voice_pitch": voice_pitch,
    "count_events": count_events,
    "loudness_compare": loudness_compare,
    "duration_compare": duration_compare,
    "tempo": tempo,
    "rhythm": rhythm,
    "noise_type": noise_type,
    "chord_quality": chord_quality,
    "speaking_rate": speaking_rate,
    "surrogate_trap": surrogate_trap,
    "spoken_content": spoken_content,
    "spoken_arithmetic": spoken_arithmetic,
    "text_math": text_math,
}

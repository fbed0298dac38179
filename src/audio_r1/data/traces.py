"""Cold-start reasoning traces: natural-language thinking that cites the measured acoustic cues.

``make_trace(item, rng, surrogate=False)`` writes a varied explanation from the item's true ``params`` (four
or more templates per family), stating values with a little jitter that stays inside what a checker accepts:
within 3% for frequencies, 5% for tempi and durations, 2 dB for levels, exact for counts. With
``surrogate=True`` it instead reasons from the words spoken or from a vague impression, citing no
measurement; on surrogate traps this reasoning believes the words and reaches the wrong answer.

``build_sft_examples`` mixes grounded, surrogate and empty-think traces into SFT records; their
``prompt`` is ``processing.item_question(item)``, the one way a question is written, so training and
evaluation ask alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from audio_r1.data.manifest import Item
from audio_r1.processing import item_question
from audio_r1.scoring.answers import is_correct, number_to_words

from ..errors import ConfigError

ORDINALS = ("first", "second")


# ------------------------------------------------------------------------------------------------ jittered values


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _hz(rng: np.random.Generator, value: float) -> str:
    """A frequency stated within 1.5% (+ rounding) of the truth."""
    x = value * rng.uniform(0.985, 1.015)
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def _db(rng: np.random.Generator, value: float) -> str:
    """A level stated within 1 dB (+ rounding) of the truth."""
    return f"{value + rng.uniform(-1.0, 1.0):.0f}"


def _sec(rng: np.random.Generator, value: float) -> str:
    """A duration stated within 3% (+ rounding) of the truth."""
    return f"{value * rng.uniform(0.97, 1.03):.2f}"


def _num(rng: np.random.Generator, value: float, rel: float = 0.03, digits: int = 0) -> str:
    """Any other quantity stated within ``rel`` of the truth."""
    return f"{value * rng.uniform(1 - rel, 1 + rel):.{digits}f}"


def _count(rng: np.random.Generator, n: int) -> str:
    """A count as digits or words (always exact)."""
    return number_to_words(n) if rng.random() < 0.6 else str(n)


def _quote(text: str | None) -> str:
    """Spoken words in curly quotes, without the sentence's final full stop or exclamation mark."""
    return f"\u201c{(text or '').strip().rstrip('.!')}\u201d"


# ------------------------------------------------------------------------------------------------ grounded traces


def _pitch_compare(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    f = p["f0_hz"]
    a, b = _hz(rng, f[0]), _hz(rng, f[1])
    hi = 0 if f[0] > f[1] else 1
    ans = ORDINALS[hi if p["ask"] == "higher" else 1 - hi]
    direction = "up" if hi == 1 else "down"
    semis = abs(p["semitones"])
    return [
        f"The first tone sits near {a} Hz and the second near {b} Hz, so the {ORDINALS[hi]} one is higher. "
        f"The question asks for the {p['ask']} one, which is the {ans}.",
        f"Comparing fundamentals: first about {a} Hz (close to {p['notes'][0]}), second about {b} Hz "
        f"(close to {p['notes'][1]}). That is a gap of about {semis} semitones with the {ORDINALS[hi]} on "
        f"top, so the {p['ask']} tone is the {ans}.",
        f"Both are {p['timbre']}-like tones. The pitch moves {direction} by roughly {semis} semitones, from "
        f"about {a} Hz to about {b} Hz. So the {ans} tone is the {p['ask']} one.",
        f"I'll measure the fundamental of each sound: around {a} Hz first, then around {b} Hz. "
        f"{max(a, b, key=float)} Hz is the higher frequency, so the {ORDINALS[hi]} tone is higher and "
        f"the {ORDINALS[1 - hi]} is lower. Answer: the {ans}.",
    ]


def _voice_pitch(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    f0, high = _hz(rng, p["f0_hz"]), p["register"] == "high"
    side = f"above {p['high_above_hz']:.0f} Hz" if high else f"below {p['low_below_hz']:.0f} Hz"
    word = "high" if high else "low"
    return [
        f"The voice's fundamental frequency hovers around {f0} Hz, which is {side}, so it is a {word} voice.",
        f"Tracking the pitch over the voiced parts, the median F0 is about {f0} Hz. That is a {word} "
        f"register for speech.",
        f"Pitch check: roughly {f0} Hz. Typical low voices sit near 100 Hz and high ones above 200 Hz, "
        f"so this one is {word}.",
        f"I listen to the periodicity of the vowels: the F0 is near {f0} Hz, clearly {side}. "
        f"The voice is {word}-pitched.",
    ]


def _onset_list(rng: np.random.Generator, onsets: list[float], limit: int = 9) -> str:
    return ", ".join(f"{t + rng.uniform(-0.01, 0.01):.2f}" for t in onsets[:limit]) + " s"


def _count_events(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    n, kind = p["count"], p["kind"]
    plural = kind if n == 1 else f"{kind}s"
    counted = _count(rng, n)
    spacing = ""
    if n > 1:
        gap = (p["onsets_s"][-1] - p["onsets_s"][0]) / (n - 1)
        spacing = f", spaced about {_sec(rng, gap)} s apart"
    tally = ", ".join(number_to_words(i + 1) for i in range(n))
    pitch = f" at about {_hz(rng, p['beep_hz'])} Hz" if "beep_hz" in p else ""
    return [
        f"I count {counted} distinct {plural}{spacing}.",
        f"The onsets fall at about {_onset_list(rng, p['onsets_s'])}. That makes {counted} {plural}.",
        f"Counting each {kind}{pitch} as it starts: {tally}. So there are {n} in total.",
        f"Each {kind} is a short burst separated by silence{spacing}. Tallying the bursts gives {counted}.",
    ]


def _loudness_compare(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    levels = p["rms_db"]
    a, b = _db(rng, levels[0]), _db(rng, levels[1])
    gap = abs(levels[0] - levels[1])
    loud = 0 if levels[0] > levels[1] else 1
    ans = ORDINALS[loud if p["ask"] == "louder" else 1 - loud]
    return [
        f"The first one measures about {a} dB RMS and the second about {b} dB, so the {ORDINALS[loud]} is "
        f"louder by roughly {_num(rng, gap, 0.05)} dB. The {p['ask']} one is the {ans}.",
        f"Level of the first: around {a} dBFS. Level of the second: around {b} dBFS. A difference of about "
        f"{_num(rng, gap, 0.05)} dB is clearly audible, so the {ans} is {p['ask']}.",
        f"It is the same sound twice; only the level changes, from about {a} dB to about {b} dB. "
        f"The {ans} presentation is the {p['ask']} one.",
        f"I compare the RMS energy: roughly {a} dB versus {b} dB. The {ORDINALS[loud]} is louder and the "
        f"{ORDINALS[1 - loud]} quieter, so the answer is the {ans}.",
    ]


def _duration_compare(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    d = p["durations_s"]
    a, b = _sec(rng, d[0]), _sec(rng, d[1])
    long = 0 if d[0] > d[1] else 1
    ans = ORDINALS[long if p["ask"] == "longer" else 1 - long]
    ratio = _num(rng, max(d) / min(d), 0.03, 1)
    return [
        f"The first sound lasts about {a} s and the second about {b} s, so the {ORDINALS[long]} is longer. "
        f"The {p['ask']} one is the {ans}.",
        f"Timing each sound from onset to offset: {a} s, then {b} s. The longer one is about {ratio} times "
        f"the length of the other, so the {ans} is {p['ask']}.",
        f"The {ORDINALS[long]} sound keeps going for roughly {_sec(rng, max(d))} s, while the "
        f"{ORDINALS[1 - long]} stops after about {_sec(rng, min(d))} s. Answer: the {ans}.",
        f"Durations: about {a} s and {b} s. The question asks for the {p['ask']} one, which is the {ans}.",
    ]


def _tempo(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    interval, bpm = _sec(rng, p["interval_s"]), _num(rng, p["bpm"])
    band = p["band"]
    rule = {"slow": "below 90", "medium": "between 90 and 130", "fast": "above 130"}[band]
    return [
        f"The clicks come about every {interval} s, roughly {bpm} beats per minute, which is {band}.",
        f"I time the gap between clicks at about {interval} s. Sixty divided by that is about {bpm} BPM, "
        f"{rule}, so the tempo is {band}.",
        f"There are {p['n_clicks']} clicks, evenly spaced at about {interval} s. That corresponds to around "
        f"{bpm} BPM: a {band} tempo.",
        f"Measuring the pulse: one beat every {interval} seconds or so, i.e. about {bpm} beats per minute. "
        f"That is {rule} BPM, so it falls in the {band} band.",
    ]


def _rhythm(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    iv = p["intervals_s"]
    shown = ", ".join(f"{x * rng.uniform(0.98, 1.02):.2f}" for x in iv[:6])
    if p["regular"]:
        gap = _sec(rng, iv[0])
        return [
            f"The clicks come every {gap} s without variation: a regular, evenly spaced pulse.",
            f"Measuring the gaps between the {p['n_events']} clicks, each one is about {gap} s. The rhythm "
            "is steady.",
            f"Every inter-onset interval is the same, roughly {gap} s, so the timing is regular.",
            f"I check the spacing: {gap} s, {gap} s, {gap} s and so on. Nothing drifts, so it is a steady beat.",
        ]
    spread = _num(rng, 100 * p["cv"], 0.05)
    lo, hi = _sec(rng, min(iv)), _sec(rng, max(iv))
    return [
        f"The gaps between clicks vary a lot: {shown} s. That is an irregular rhythm.",
        f"Inter-onset intervals range from about {lo} s to about {hi} s, a spread of about {spread}% "
        "around the mean, so the clicks are unevenly spaced.",
        f"The spacing keeps changing (roughly {shown} s), so there is no steady pulse: irregular.",
        f"Some clicks follow each other after only {lo} s, others after {hi} s. The timing is irregular.",
    ]


def _noise_type(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    fg = "speech" if p.get("foreground") == "speech" else "melody"
    if p["noise"] == "hum":
        hz = p["hum_hz"]
        f = f"{hz * rng.uniform(0.995, 1.005):.0f}"
        return [
            f"Under the {fg} there is a steady low hum; its energy peaks at about {f} Hz with harmonics near "
            f"{2 * hz} and {3 * hz} Hz, which is {hz} Hz mains hum.",
            f"The low end of the spectrum shows a constant line at about {f} Hz that never stops, about "
            f"{_db(rng, p['snr_db'])} dB below the {fg}. That is electrical hum at {hz} Hz.",
            f"Besides the {fg} I hear a buzz. Its fundamental is near {f} Hz (not {110 - hz} Hz), so it is "
            f"{hz} Hz mains hum.",
            f"The background is tonal, not hissy: a line at about {f} Hz plus its harmonics. {hz} Hz hum.",
        ]
    if p["noise"] == "white":
        snr = _db(rng, p["snr_db"])
        return [
            f"There is a broadband hiss spread evenly across all frequencies, about {snr} dB below the {fg}. "
            "That is white noise.",
            f"The background fills the whole spectrum up to 8 kHz with a flat level, and there is no line at "
            f"50 or 60 Hz, so it is white noise (SNR about {snr} dB).",
            f"Even in the pauses I hear a steady hiss with no pitch, roughly {snr} dB under the {fg}: white noise.",
            "The noise floor is high and flat across frequency, with nothing tonal at 50 or 60 Hz. It is hiss.",
        ]
    return [
        f"Between and around the {fg} the background is silent: no hiss and no energy at 50 or 60 Hz.",
        f"In the pauses the level drops to digital silence, so there is no background noise behind the {fg}.",
        "I check the low end for a 50 or 60 Hz line and the high end for hiss; neither is there. Clean.",
        f"The {fg} is all there is; the gaps are silent, so there is no background noise.",
    ]


def _chord_quality(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    f = [_hz(rng, x) for x in p["f0_hz"]]
    major = p["quality"] == "major"
    third = "four semitones (a major third)" if major else "three semitones (a minor third)"
    ratio = "1.26" if major else "1.19"
    arp = " The notes are first played one by one, then together." if p["style"] == "arpeggio" else ""
    return [
        f"The chord has three notes near {f[0]}, {f[1]} and {f[2]} Hz. The middle one is {third} above the "
        f"root, and the top is a perfect fifth, so the triad is {p['quality']}.{arp}",
        f"Root around {f[0]} Hz ({p['root']}). The third sits at about {f[1]} Hz, a ratio of roughly {ratio} "
        f"to the root, i.e. {third}. That makes it {p['quality']}.",
        f"I pick out the partials: about {f[0]} Hz, {f[1]} Hz and {f[2]} Hz. The interval from the root to "
        f"the middle note is {third}, so the chord sounds {'bright, major' if major else 'darker, minor'}.",
        f"Triad on {p['root']} (about {f[0]} Hz).{arp} Its third is {'major' if major else 'minor'}: "
        f"{f[1]} Hz against {f[0]} Hz. {p['quality'].capitalize()} chord.",
    ]


def _speaking_rate(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    fast = p.get("rate", p.get("truth")) == "fast"
    dur, wps = _sec(rng, p["duration_s"]), _num(rng, p["words_per_s"], 0.03, 1)
    wpm = _num(rng, 60 * p["words_per_s"], 0.03)
    word = "fast" if fast else "slow"
    return [
        f"The sentence has {p['n_words']} words in about {dur} s, around {wps} words per second, which is {word}.",
        f"Timing the utterance: roughly {dur} s for {p['n_words']} words, so about {wpm} words per minute. "
        f"Normal speech is around 150, so this is {word}.",
        f"The syllables come {'very quickly, one after another' if fast else 'slowly, with stretched vowels'}: "
        f"about {wps} words per second over {dur} s. The rate is {word}.",
        f"Speaking rate check: {p['n_words']} words, {dur} s, so about {wps} words per second. That is "
        f"{'well above' if fast else 'well below'} a conversational pace of about 2.5, so it is {word}.",
    ]


def _trap_evidence(item: Item, rng: np.random.Generator) -> tuple[str, str]:
    """(what the sound shows, conclusion) for a surrogate trap."""
    p = item.params
    trap, truth = p["trap"], p["truth"]
    if trap == "loudness":
        return (f"the voice actually measures about {_db(rng, p['rms_db'])} dB RMS",
                f"so it is {truth}")
    if trap == "rate":
        return (f"I hear {p['n_words']} words in about {_sec(rng, p['duration_s'])} s, about "
                f"{_num(rng, p['words_per_s'], 0.03, 1)} words per second", f"so the speech is actually {truth}")
    if trap == "tone_pitch":
        return (f"the steady tone underneath sits at about {_hz(rng, p['tone_hz'])} Hz",
                f"which is {truth}")
    if trap == "count":
        n = p["count"]
        return (f"I count {_count(rng, n)} beep onsets, at about {_onset_list(rng, p['onsets_s'])}",
                f"so there are {n} beeps")
    if trap == "noise":
        if p["noise"] == "hum":
            shown = f"there is a steady line at about {p['hum_hz']} Hz behind the voice"
        elif p["noise"] == "white":
            shown = f"there is broadband hiss about {_db(rng, p['snr_db'])} dB below the voice"
        else:
            shown = "the pauses are completely silent, with no hiss and no 50 or 60 Hz line"
        return shown, "so the recording is " + ("noisy" if truth == "noisy" else "clean")
    return (f"the measured F0 is about {_hz(rng, p['f0_hz'])} Hz", f"so the voice is {truth}")


def _surrogate_trap(item: Item, rng: np.random.Generator) -> list[str]:
    evidence, conclusion = _trap_evidence(item, rng)
    said = _quote(item.transcript)
    return [
        f"The speaker says {said}, but {evidence}, {conclusion}. The words do not match the sound.",
        f"Ignoring the words for a moment: {evidence}, {conclusion}. The speech claims otherwise "
        f"({said}), but the question is about the sound.",
        f"{evidence[0].upper()}{evidence[1:]}, {conclusion}. That contradicts what is said, so I go with the "
        "measurement.",
        f"Let me check the sound itself rather than the words. {evidence[0].upper()}{evidence[1:]}, "
        f"{conclusion}.",
    ]


def _spoken_content(item: Item, rng: np.random.Generator) -> list[str]:
    said = _quote(item.transcript)
    target = str(item.params.get("word", item.params.get("number")))
    return [
        f"I hear the speaker say {said}. The key word is {target}.",
        f"The recording contains a short phrase: {said}. The {item.params['category']} named is {target}.",
        f"Transcribing the speech: {said}. So the word said is {target}.",
        f"The voice says {said}; the content word there is {target}.",
    ]


def _spoken_arithmetic(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    sym = {"plus": "+", "minus": "-", "times": "×"}[p["op"]]
    said = _quote(item.transcript)
    return [
        f"The speaker asks: {said}. That is {p['a']} {sym} {p['b']} = {p['result']}.",
        f"Transcribing: {said}. So I need {p['a']} {p['op']} {p['b']}, which is {p['result']}.",
        f"The question in the audio is {said}. Computing {p['a']} {sym} {p['b']} gives {p['result']}.",
        f"I hear {said}. {p['a']} {p['op']} {p['b']} equals {p['result']}.",
    ]


def _text_math(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    o, r = p["operands"], p["result"]
    ops = {0: ["+"], 1: ["-"], 2: ["×"], 3: ["÷"], 4: ["×"], 5: ["+", "-"]}[p["template"]]
    expr = " ".join([str(o[0])] + [f"{op} {x}" for op, x in zip(ops, o[1:], strict=True)])
    return [
        f"This is a text problem. The calculation is {expr} = {r}.",
        f"Setting it up: {expr}. That gives {r}.",
        f"No audio here, just arithmetic: {expr} = {r}.",
        f"Working it out step by step: {expr}, which is {r}.",
    ]


# ------------------------------------------------------------------------------------------------ hearing curriculum

_SEGMENT_NAMES = ("first", "second", "third")
_WINS = {"higher": "f0_hz", "lower": "f0_hz", "louder": "rms_db", "quieter": "rms_db", "longer": "durations_s",
         "shorter": "durations_s"}


def _tone_measurements(p: dict, rng: np.random.Generator) -> tuple[str, dict[str, list[str]]]:
    """One sentence per tone stating its pitch, level and length (the alignment target), and the values said."""
    n = len(p["f0_hz"])
    said: dict[str, list[str]] = {"f0_hz": [], "rms_db": [], "durations_s": []}
    lines = [f"I hear {_count(rng, n)} tone{'s' if n > 1 else ''}."]
    for i in range(n):
        name = _SEGMENT_NAMES[i]
        hz, db, sec = _hz(rng, p["f0_hz"][i]), _db(rng, p["rms_db"][i]), _sec(rng, p["durations_s"][i])
        said["f0_hz"].append(f"{hz} Hz")
        said["rms_db"].append(f"{db} dB")
        said["durations_s"].append(f"{sec} s")
        lines.append(_pick(rng, [
            f"The {name} tone is near {hz} Hz, at about {db} dB, and lasts {sec} s.",
            f"The {name}: about {hz} Hz, {db} dB, {sec} s long.",
            f"The {name} tone sits at roughly {hz} Hz and {db} dB, for about {sec} s.",
        ]))
    return " ".join(lines), said


def _hear_tones(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    measured, said = _tone_measurements(p, rng)
    if p["question_kind"] == "describe":
        return [measured]
    key, ask = _WINS[p["ask"]], p["ask"]
    values, stated = p[key], said[key]
    bigger = ask in ("higher", "louder", "longer")
    if "pair" in p:
        a, b = p["pair"]
        holds = (values[a] > values[b]) == bigger
        return [f"{measured} Comparing the {_SEGMENT_NAMES[a]} ({stated[a]}) with the {_SEGMENT_NAMES[b]} "
                f"({stated[b]}): the {_SEGMENT_NAMES[a]} is {'' if holds else 'not '}{ask}, so the answer is "
                f"{'yes' if holds else 'no'}."]
    target = int(np.argmax(values) if bigger else np.argmin(values))
    word = {"higher": "highest", "lower": "lowest", "louder": "loudest", "quieter": "quietest",
            "longer": "longest", "shorter": "shortest"}[ask] if len(values) > 2 else ask
    return [f"{measured} The {word} is the {_SEGMENT_NAMES[target]}, at {stated[target]}.",
            f"{measured} So the {_SEGMENT_NAMES[target]} tone is the {word} one."]


def _hear_beeps(item: Item, rng: np.random.Generator) -> list[str]:
    p = item.params
    n, noun = p["count"], p["kind"]
    plural = noun if n == 1 else f"{noun}s"
    onsets = _onset_list(rng, p["onsets_s"])
    return [
        f"The {plural} start at about {onsets}. That makes {_count(rng, n)} {plural}.",
        f"Onsets at about {onsets}: {_count(rng, n)} {plural} in all.",
        f"I mark where each {noun} begins: {onsets}. Counting those gives {n}.",
    ]


def _hear_digit(item: Item, rng: np.random.Generator) -> list[str]:
    word, value = item.params["word"], item.params["digit"]
    return [
        f"The voice says {_quote(word)}, which is the digit {value}.",
        f"I hear one spoken word, {_quote(word)}: the digit {value}.",
        f"Transcribing the speech: {_quote(word)}. So the number is {value}.",
    ]


TRACES: dict[str, Callable[[Item, np.random.Generator], list[str]]] = {
    "pitch_compare": _pitch_compare,
    "voice_pitch": _voice_pitch,
    "count_events": _count_events,
    "loudness_compare": _loudness_compare,
    "duration_compare": _duration_compare,
    "tempo": _tempo,
    "rhythm": _rhythm,
    "noise_type": _noise_type,
    "chord_quality": _chord_quality,
    "speaking_rate": _speaking_rate,
    "surrogate_trap": _surrogate_trap,
    "spoken_content": _spoken_content,
    "spoken_arithmetic": _spoken_arithmetic,
    "text_math": _text_math,
    "hear_tones": _hear_tones,
    "hear_beeps": _hear_beeps,
    "hear_digit": _hear_digit,
}


# ------------------------------------------------------------------------------------------------ surrogate traces

_TOPICS = {
    "pitch_compare": "which tone is higher or lower", "voice_pitch": "how high the voice is",
    "count_events": "how many sounds there are", "loudness_compare": "which sound is louder or quieter",
    "duration_compare": "which sound lasts longer", "tempo": "how fast the beat is",
    "rhythm": "whether the beat is steady", "noise_type": "the background noise",
    "chord_quality": "the kind of chord", "speaking_rate": "how fast the person talks",
    "surrogate_trap": "the sound", "spoken_content": "what is said", "spoken_arithmetic": "the spoken question",
}

# what the words of a trap suggest, phrased as a belief
_TRAP_BELIEFS = {
    ("loudness", "loud"): "they are shouting, so the voice must be loud",
    ("loudness", "quiet"): "they are speaking softly, so the voice must be quiet",
    ("rate", "fast"): "they are talking fast, so the speech must be fast",
    ("rate", "slow"): "they are speaking slowly, so the speech must be slow",
    ("tone_pitch", "high"): "this is a high note, so the tone must be high",
    ("tone_pitch", "low"): "this is a low note, so the tone must be low",
    ("noise", "clean"): "the recording is clean, so there is no background noise",
    ("noise", "noisy"): "there is a lot of noise, so the recording must be noisy",
    ("voice_pitch", "high"): "their voice is high, so it must be high-pitched",
    ("voice_pitch", "low"): "their voice is deep, so it must be low",
}


def surrogate_answer(item: Item) -> str:
    """The answer a surrogate trace reaches: the claim's option for traps, the true answer otherwise."""
    p = item.params
    if item.family != "surrogate_trap":
        return item.answer
    if p["trap"] == "noise":  # "is there background noise?" yes / no
        return "yes" if p["claim"] == "noisy" else "no"
    return str(p["claim"])  # the option text ("loud", "fast", "high"...) or the claimed count


def _surrogate(item: Item, rng: np.random.Generator) -> list[str]:
    """Reasoning from the words or a vague impression; no measured cue is cited."""
    said = _quote(item.transcript)
    answer = surrogate_answer(item)
    if item.family == "surrogate_trap":
        p = item.params
        if p["trap"] == "count":
            n = number_to_words(p["claim"])
            belief = f"there will be {n} beep{'' if p['claim'] == 1 else 's'}, so the count is {n}"
        else:
            belief = _TRAP_BELIEFS[(p["trap"], p["claim"])]
        return [
            f"The speaker says {said}. That tells me {belief}.",
            f"From the words {said} it is clear: {belief}.",
            f"The speaker describes it directly: {said}. I'll take their word for it; {belief}.",
            f"I don't need to analyse anything here. The voice says {said}, so {belief}.",
        ]
    shown = answer[0].lower() + answer[1:] if item.answer_type != "number" else number_to_words(int(answer))
    topic = _TOPICS.get(item.family, "the audio")
    out = [
        f"The question is about {topic}. Going by my general impression of the clip, I'd say {shown}.",
        f"Without analysing details, a clip like this most likely fits {shown}.",
        f"I won't measure anything; from the overall feel of the recording, the answer is {shown}.",
        f"Thinking about what such recordings usually contain, {shown} seems most plausible.",
    ]
    if item.transcript:
        out.append(f"The speaker says {said}. Based on that, I'd answer {shown}.")
    return out


def make_trace(item: Item, rng: np.random.Generator, surrogate: bool = False) -> str:
    """A reasoning trace for ``item``: grounded in its measured params, or (``surrogate``) in words only.

    Text-only items have no acoustic cues to avoid, so they always get the worked arithmetic.
    """
    if item.family not in TRACES:
        raise ValueError(f"no trace templates for family {item.family!r}")
    if surrogate and item.audio is not None:
        return _pick(rng, _surrogate(item, rng))
    return _pick(rng, TRACES[item.family](item, rng))


# ------------------------------------------------------------------------------------------------ SFT records


def build_sft_examples(items: Iterable[Item], surrogate_share: float = 0.1, empty_think_share: float = 0.1,
                       seed: int = 0, audio_root: str | Path | None = None) -> list[dict[str, Any]]:
    """SFT records, one per item: grounded reasoning, or surrogate, or an empty think block.

    Each record has ``id``, ``audio`` (relative, or joined to ``audio_root``), ``question``, ``choices``,
    ``answer_type``, ``prompt`` (= ``processing.item_question``), ``reasoning``, ``answer_text`` (what follows
    ``</think>``: the option text or the open answer), ``surrogate`` and ``correct`` (False only for surrogate
    traps, whose reasoning follows the words to the wrong answer). The mode of each item is drawn from
    ``(seed, item.seed)``, so it does not depend on the order of ``items``.
    """
    if not (0 <= surrogate_share and 0 <= empty_think_share and surrogate_share + empty_think_share <= 1):
        raise ConfigError("surrogate_share and empty_think_share must be >= 0 and sum to at most 1")
    records = []
    for item in items:
        rng = np.random.default_rng([seed, item.seed])
        u = rng.random()
        surrogate = empty_think_share <= u < empty_think_share + surrogate_share and item.audio is not None
        reasoning = "" if u < empty_think_share else make_trace(item, rng, surrogate)
        answer_text = surrogate_answer(item) if surrogate else item.answer
        audio = item.audio if audio_root is None or item.audio is None else str(Path(audio_root) / item.audio)
        records.append({
            "id": item.id, "audio": audio, "question": item.question, "choices": item.choices,
            "answer_type": item.answer_type, "prompt": item_question(item), "reasoning": reasoning,
            "answer_text": answer_text, "surrogate": surrogate, "correct": is_correct(item, answer_text),
        })
    return records

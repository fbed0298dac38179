"""Acoustic claims in a reasoning chain, and whether the truth supports each one.

A claim is something a chain asserts about this clip that the truth can settle: a number with a unit
(Hz, BPM, dB, words per second, seconds), a count of events, a categorical cue (a hum, a hiss, silent
gaps, a major or minor third, an even or uneven beat), an ordinal comparison ("the second tone is
higher") or a label word ("so the voice is low"). `check_claims` sorts them against the item's true
``params`` or, for audio without them, against measurements of the waveform (`measurements.py`).

Mentions that assert nothing about this clip are not claims: negated ("not 50 Hz"), quoted speech,
tests and conditions ("I check for hiss"), thresholds ("above 200 Hz"), general knowledge ("typical
voices sit near 100 Hz"), and values that merely repeat an answer option ("60 Hz mains hum").

A measurement bound to a segment by an ordinal ("the second near 671 Hz", "level of the first: -29
dBFS") is checked against that segment only, not against any true value; a list of times ("onsets at
0.22, 0.55, 0.91 s", "spacing 0.37, 0.55, 0.29 s") is checked element by element.

Tolerances: frequencies 5%, tempo 8%, durations and rates 10% (or 0.05 s), levels 3 dB, onsets 0.05 s,
counts exact; measured truth widens every tolerance but the count by `measured_tolerance`. Whether a chain is
*grounded* is decided once, in `grounding.py`, from these reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .answers import words_to_number

if TYPE_CHECKING:
    from ..data.manifest import Item

_NUMBER = r"(-?\d+(?:\.\d+)?)"
UNIT_PATTERNS: dict[str, re.Pattern[str]] = {
    "hz": re.compile(_NUMBER + r"\s*(k?)(?:hz|hertz)\b", re.IGNORECASE),
    "bpm": re.compile(_NUMBER + r"\s*(?:bpm|beats per minute|beats a minute)", re.IGNORECASE),
    "db": re.compile(_NUMBER + r"\s*(?:dbfs|db|decibels?)\b", re.IGNORECASE),
    "words_per_s": re.compile(_NUMBER + r"\s*(?:words per second|words a second|words/s)", re.IGNORECASE),
    "seconds": re.compile(_NUMBER + r"\s*(?:s|sec|secs|seconds?)\b(?!\s*(?:per|a)\b)", re.IGNORECASE),
}
EVENT_NOUNS = r"(?:distinct\s+|separate\s+|short\s+|sharp\s+)?(?:beeps?|clicks?|events?|knocks?|taps?|pulses?|bursts?|onsets?|sounds?)"
# "one click every 0.5 s" states a rate, not a count
COUNT_PATTERN = re.compile(r"\b([a-z]+|\d+)\s+(?:" + EVENT_NOUNS + r"|in total)\b(?!\s+(?:every|per|each)\b)",
                           re.IGNORECASE)

# Which params keys hold true values of each kind of claim.
TRUTH_KEYS: dict[str, tuple[str, ...]] = {
    "hz": ("f0_hz", "tone_hz", "root_hz", "beep_hz", "hum_hz", "high_above_hz", "low_below_hz"),
    "bpm": ("bpm",),
    "db": ("rms_db", "snr_db", "noise_db", "loud_above_db", "quiet_below_db"),
    "words_per_s": ("words_per_s",),
    "seconds": ("durations_s", "duration_s", "interval_s", "intervals_s", "segments_s", "onsets_s"),
    "count": ("count", "n_clicks", "n_events"),
}


# Categorical cues: (pattern, params key, value that makes the cue true).
CATEGORY_CUES: tuple[tuple[re.Pattern[str], str, Any], ...] = (
    (re.compile(r"\bhum\b|\bmains\b", re.IGNORECASE), "noise", "hum"),
    (re.compile(r"(?<!no )(?<!and )\bhiss|white noise|broadband|flat across frequency", re.IGNORECASE), "noise",
     "white"),
    (re.compile(r"digital silence|(?:gaps|pauses|background) (?:is|are) (?:completely )?silent|silent gaps"
                r"|no background noise|no hiss", re.IGNORECASE), "noise", "none"),
    (re.compile(r"major third|four semitones|4 semitones", re.IGNORECASE), "quality", "major"),
    (re.compile(r"minor third|three semitones|3 semitones", re.IGNORECASE), "quality", "minor"),
    (re.compile(r"\bevenly spaced|\bsteady (?:beat|pulse)|equal (?:gaps|intervals)", re.IGNORECASE), "regular", True),
    (re.compile(r"\buneven|\birregular|unequal (?:gaps|intervals)", re.IGNORECASE), "regular", False),
)


NEGATION = re.compile(r"\b(?:no|not|never|nothing|none|neither|nor|without|isn't|aren't|wasn't|doesn't|don't|"
                      r"cannot|can't|lacks?)\b", re.IGNORECASE)
THRESHOLD = re.compile(r"(?:above|below|under|than|beyond|at least|at most|up to|exceeds?|between\s+\S+\s+and)"
                       r"\s*(?:about|around|roughly)?\s*$", re.IGNORECASE)
# Mentions inside a test ("I check the low end for a 60 Hz line") or a condition are not assertions.
HYPOTHETICAL = re.compile(r"\b(?:check(?:s|ing)?|look(?:s|ing)?|listen(?:s|ing)?|search(?:es|ing)?|test(?:s|ing)?)\b"
                          r"(?:\s+\S+){0,6}?\s+for\b|\b(?:if|whether|unless)\b", re.IGNORECASE)
# A postfix denial of everything just mentioned: "...for hiss; neither is there".
DENIED_AFTER = re.compile(r"^\s*[;,:]?\s*(?:but\s+)?(?:neither|none|nothing) (?:of (?:them|these) )?(?:is|are|was|were) "
                          r"(?:there|present|audible)", re.IGNORECASE)
REFERENCE = re.compile(r"\b(?:typical(?:ly)?|normal(?:ly)?|usual(?:ly)?|generally|conversational|average|"
                       r"standard)\b", re.IGNORECASE)
QUOTED = re.compile(r"\u201c[^\u201d]{0,400}\u201d|\"[^\"\n]{0,400}\"")
CLAUSE_BREAK = re.compile(r"[.;:!?,()\n]\s|[;:!?()\n]|\bbut\b|\bwhile\b|\bwhereas\b", re.IGNORECASE)

# Cues beyond grounding.CATEGORY_CUES, and counts stated as a tally ("tallying the bursts gives five").
EXTRA_CATEGORY_CUES: tuple[tuple[re.Pattern[str], str, Any], ...] = (
    (re.compile(r"\bclean\b(?!\s+(?:tone|sine|note))", re.IGNORECASE), "noise", "none"),
)
TALLY_CLAIM = re.compile(r"\b(?:tally(?:ing)?|count(?:ing)?)\b[^.;:]{0,40}?\b(?:gives|is|makes|comes to|yields)\s+"
                         r"([a-z]+|\d+)\b", re.IGNORECASE)
# Params that hold the label boundaries, not properties of the clip: a claim near one is not evidence.
LABEL_THRESHOLDS = frozenset({"high_above_hz", "low_below_hz", "loud_above_db", "quiet_below_db"})
_COMPARATIVES = {"higher": ("f0_hz", 1), "lower": ("f0_hz", -1), "louder": ("rms_db", 1), "quieter": ("rms_db", -1),
                 "softer": ("rms_db", -1), "longer": ("durations_s", 1), "shorter": ("durations_s", -1)}
ORDINAL_CLAIM = re.compile(
    r"\bthe\s+(first|second)(?:\s+(?:one|tone|note|sound|beep|presentation|voice|word|clip|burst|noise burst))?"
    r"\s+(?:is|was|sounds|seems|one is)\s+(?:(?:clearly|slightly|much|a bit|noticeably|the)\s+)*"
    r"(higher|lower|louder|quieter|softer|longer|shorter)\b",
    re.IGNORECASE,
)
_LABEL_SUBJECTS = r"(?:voice|it|this|that|which|speech|tone|note|recording|clip|rate|tempo|beat|pace|pulse|rhythm|" \
                  r"timing|triad|chord|sound|one|speaking rate)"
_QUALIFIERS = r"(?:(?:very|quite|rather|clearly|fairly|definitely|actually|really|a|an|still)\s+)*"


# A list of three or more times ("0.22, 0.55, 0.91 s"): onsets, or the gaps between them.
TIME_LIST = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:\s*s\b)?(?:(?:\s*,\s*(?:and\s+)?|\s+and\s+)\d+(?:\.\d+)?(?:\s*s\b)?){2,}"
                       r"\s*(?:s|sec|secs|seconds)\b", re.IGNORECASE)
_LIST_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_INTERVAL_WORDS = re.compile(r"\b(?:spacing|spaced|intervals?|inter-onset|gaps?|apart)\b", re.IGNORECASE)
_ONSET_WORDS = re.compile(r"\b(?:onsets?|beeps?|clicks?|events?|taps?|knocks?|pulses?|bursts?|starts?|at)\b",
                          re.IGNORECASE)
# A number bound to one segment by the ordinal before it in its clause ("the second near 671 Hz").
_ORDINAL = re.compile(r"\b(first|second|third|1st|2nd|3rd)\b", re.IGNORECASE)
_ORDINAL_INDEX = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2}
# Where an ordinal's reach ends: a sentence, a comma or a contrast ("Level of the first: -29 dB" binds).
_BINDING_BREAK = re.compile(r"[.;!?\n](?:\s|$)|,|\bbut\b|\bwhile\b|\bwhereas\b|\bthen\b", re.IGNORECASE)
# ...unless the number is a difference ("7 dB louder", "by 200 Hz", "a difference of 12 dB").
_DIFFERENCE_AFTER = re.compile(r"\s*(?:louder|quieter|softer|higher|lower|longer|shorter|more|less|apart|above|"
                               r"below|difference)\b", re.IGNORECASE)
_DIFFERENCE_BEFORE = re.compile(r"\b(?:by|difference|differ\w*|gap|step|interval)\b[^.;:]{0,25}$", re.IGNORECASE)
# A change "from A to B" with a unit binds A to the first segment and B to the second ("the level goes
# from -28 dB to -19 dB"), when no ordinal binds them; A may leave its unit out ("from -28 to -19 dB").
_APPROX = r"(?:about\s+|around\s+|roughly\s+|near\s+|some\s+)?"
FROM_TO = re.compile(r"\bfrom\s+" + _APPROX + r"(-?\d+(?:\.\d+)?)(\s*(?:k?hz|hertz|dbfs|db|decibels?|s|sec|seconds?))?"
                     r"\s+(?:up\s+|down\s+)?to\s+" + _APPROX + r"(-?\d+(?:\.\d+)?)\s*(?:k?hz|hertz|dbfs|db|decibels?|s|sec|"
                     r"seconds?)\b", re.IGNORECASE)
_RANGE_BEFORE = re.compile(r"\b(?:rang\w*|span\w*|var(?:y|ies)|anywhere|typically|usually)\s*$", re.IGNORECASE)
# Which per-segment params a bound claim of each kind is checked against.
SEGMENT_KEYS = {"hz": "f0_hz", "db": "rms_db", "seconds": "durations_s"}


@dataclass
class Claim:
    """One assertion: its kind ("hz", "count", "onsets", "category", "comparison", "label" ...), value, text.

    `segment` is the 0-based segment an ordinal binds it to ("the second tone at 660 Hz"); `values`
    holds the times of a list claim ("onsets at 0.22, 0.55, 0.91 s").
    """

    kind: str
    value: float
    text: str
    start: int = -1  # offset of the claim in the text it was found in (-1: unknown)
    segment: int | None = None
    values: tuple[float, ...] = ()


@dataclass
class ClaimCheck:
    """One claim's verdict and the true (or measured) value it was held against (None: not a number)."""

    claim: Claim
    verdict: str  # "verified", "contradicted", "unverifiable" or "consistent" (a true comparison or label)
    truth: float | tuple[float, ...] | None = None

    def describe(self, measured: bool = False) -> str:
        """One line for a user: "✗ -31 dB (measured -9.0)", "✓ 440 Hz (true 441.0)", "? 3 beeps"."""
        mark = {"verified": "✓", "consistent": "✓", "contradicted": "✗"}.get(self.verdict, "?")
        line = f"{mark} {self.claim.text.strip()}"
        if self.truth is not None:
            shown = ", ".join(f"{v:g}" for v in self.truth) if isinstance(self.truth, tuple) else f"{self.truth:g}"
            line += f" ({'measured' if measured else 'true'} {shown})"
        return line


@dataclass
class ClaimReport:
    """Claims sorted by whether the truth (``source``: "params", "measured" or "none") supports them."""

    agree: list[Claim] = field(default_factory=list)  # evidence: measurements and cues that match
    contradicted: list[Claim] = field(default_factory=list)
    unchecked: list[Claim] = field(default_factory=list)
    consistent: list[Claim] = field(default_factory=list)  # true comparisons/labels: they restate a conclusion
    source: str = "none"
    checks: list[ClaimCheck] = field(default_factory=list)  # every claim above, in the order of the text

    def lines(self) -> list[str]:
        """Each claim with ✓ / ✗ / ? and the value it was held against, in the order of the text."""
        ordered = sorted(self.checks, key=lambda check: check.claim.start)
        return [check.describe(measured=self.source == "measured") for check in ordered]


def extract_claims(reasoning: str) -> list[Claim]:
    """Quantitative acoustic claims in a text: numbers with a unit, and counts of events."""
    claims: list[Claim] = []
    taken: list[tuple[int, int]] = []
    for match in TIME_LIST.finditer(reasoning):
        context = reasoning[max(0, match.start() - 80):match.start()]
        kind = "intervals" if _INTERVAL_WORDS.search(context) else "onsets" if _ONSET_WORDS.search(context) else None
        if kind is not None:
            values = tuple(float(v) for v in _LIST_NUMBER.findall(match.group(0)))
            claims.append(Claim(kind, float(len(values)), match.group(0), match.start(), values=values))
            taken.append(match.span())
    for kind, pattern in UNIT_PATTERNS.items():
        for match in pattern.finditer(reasoning):
            if any(start <= match.start() < end for start, end in taken):
                continue  # "4 beats per minute" must not also read as a count or seconds
            value = float(match.group(1))
            if kind == "hz" and match.group(2):
                value *= 1000.0
            claims.append(Claim(kind, value, match.group(0), match.start(), _segment_of(reasoning, match)))
            taken.append(match.span())
    _bind_from_to(reasoning, claims)
    for match in COUNT_PATTERN.finditer(reasoning):
        number = _as_number(match.group(1))
        if number is not None:
            claims.append(Claim("count", float(number), match.group(0), match.start()))
    return claims


def _bind_from_to(text: str, claims: list[Claim]) -> None:
    """Bind the two values of each "from A to B" change to the first and second segment, in place."""
    for match in FROM_TO.finditer(text):
        if _RANGE_BEFORE.search(text[max(0, match.start() - 30):match.start()]):
            continue  # "voices range from 100 Hz to 300 Hz" is a span of values, not a change between segments
        second = next((c for c in claims if c.start == match.start(3)), None)
        if second is None or second.segment is not None:
            continue
        first = next((c for c in claims if c.start == match.start(1)), None)
        if first is None:  # "from -28 to -19 dB": the first value borrows the second's unit
            first = Claim(second.kind, float(match.group(1)), match.group(1), match.start(1))
            claims.append(first)
        if first.kind == second.kind and first.segment is None:
            first.segment, second.segment = 0, 1


def _segment_of(text: str, match: re.Match[str]) -> int | None:
    """The segment an ordinal earlier in the clause binds a measurement to, unless it states a difference."""
    if _DIFFERENCE_AFTER.match(text, match.end()) or _DIFFERENCE_BEFORE.search(text[:match.start()]):
        return None
    head = text[:match.start()]
    breaks = list(_BINDING_BREAK.finditer(head))
    ordinals = _ORDINAL.findall(head[breaks[-1].end():] if breaks else head)
    return _ORDINAL_INDEX[ordinals[-1].lower()] if ordinals else None


def segment_values(params: Mapping[str, Any], kind: str) -> list[float] | None:
    """The per-segment truth a bound claim of `kind` is checked against (two or more segments), or None."""
    if "ask" not in params and "segments_s" not in params:
        return None
    key = SEGMENT_KEYS.get(kind)
    values = params.get(key) if key else None
    if key == "durations_s" and values is None and "segments_s" in params:
        values = [b - a for a, b in params["segments_s"]]
    if isinstance(values, list) and len(values) >= 2 and all(isinstance(v, int | float) for v in values):
        return [float(v) for v in values]
    return None


def list_agrees(kind: str, stated: tuple[float, ...], params: Mapping[str, Any], scale: float = 1.0) -> bool | None:
    """Whether a list of times matches the truth element by element (a stated prefix may stop early).

    Onsets agree within 0.05 s, intervals within 10% (at least 0.05 s); a list longer than the truth is
    contradicted. None when the item has no such truth.
    """
    truth = params.get("onsets_s") if kind == "onsets" else params.get("intervals_s")
    if kind == "intervals" and truth is None and isinstance(params.get("onsets_s"), list):
        truth = _gaps(_flatten(params["onsets_s"]))
    truth = _flatten(truth) if truth is not None else None
    if not truth:
        return None
    if len(stated) > len(truth):
        return False
    for said, true in zip(stated, truth, strict=False):
        limit = 0.05 if kind == "onsets" else max(0.10 * abs(true), 0.05)
        if abs(said - true) > limit * scale:
            return False
    return True


def true_values(params: Mapping[str, Any]) -> dict[str, list[float]]:
    """The item's true values for each kind of claim (lists flattened)."""
    values: dict[str, list[float]] = {}
    for kind, keys in TRUTH_KEYS.items():
        found = [float(v) for key in keys if key in params for v in _flatten(params[key])]
        if kind == "seconds":
            found += [end - start for start, end in _pairs(params.get("segments_s"))]
            found += _gaps(_flatten(params.get("onsets_s", [])))
        if kind == "hz" and "hum_hz" in params:
            found += [k * float(params["hum_hz"]) for k in (2, 3, 4)]  # mains harmonics
        if kind == "db":
            found += [abs(d) for d in _gaps(_flatten(params.get("rms_db", [])))]  # level differences
        if found:
            values[kind] = found
    return values


def agrees(kind: str, claimed: float, truth: Iterable[float], scale: float = 1.0) -> bool:
    """Whether a claimed value matches any true value of its kind within tolerance.

    ``scale`` widens every tolerance but the exact count (measured truth is noisier than set truth).
    """
    for value in truth:
        if kind == "count" and claimed == value:
            return True
        if kind == "hz" and abs(claimed - value) <= 0.05 * scale * abs(value):
            return True
        if kind == "bpm" and abs(claimed - value) <= 0.08 * scale * abs(value):
            return True
        if kind == "db" and abs(claimed - value) <= 3.0 * scale:
            return True
        if kind in ("seconds", "words_per_s") and abs(claimed - value) <= scale * max(0.10 * abs(value), 0.05):
            return True
    return False


# An option that only names a segment ("the second tone") asserts nothing; blanking it would unbind
# the measurement that follows ("the first tone sits at 426 Hz").
SEGMENT_OPTION = re.compile(r"(?:the\s+)?(?:first|second|third)(?:\s+[a-z]+)?", re.IGNORECASE)


def remove_options(text: str, choices: Iterable[str] | None) -> str:
    """Blank out verbatim repetitions of answer options (longer than 3 characters), keeping offsets."""
    for option in sorted(choices or [], key=len, reverse=True):
        if len(option) > 3 and not SEGMENT_OPTION.fullmatch(option.strip()):
            text = re.sub(re.escape(option), lambda m: " " * len(m.group(0)), text, flags=re.IGNORECASE)
    return text


def has_acoustic_truth(params: Mapping[str, Any]) -> bool:
    """Items whose params hold acoustic cues (spoken content and text maths do not)."""
    return bool(true_values(params)) or any(key in params for _, key, _ in CATEGORY_CUES)


def _as_number(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    try:
        return words_to_number(token.lower())
    except (ValueError, KeyError):
        return None


def _flatten(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list | tuple):
        return [x for item in value for x in _flatten(item)]
    return []


def _gaps(values: list[float]) -> list[float]:
    return [b - a for a, b in zip(values, values[1:], strict=False)]


def _pairs(value: Any) -> list[tuple[float, float]]:
    if isinstance(value, list) and all(isinstance(v, list | tuple) and len(v) == 2 for v in value):
        return [(float(a), float(b)) for a, b in value]
    return []


def strip_quotes(text: str) -> str:
    """Blank out quoted speech (curly or straight double quotes), keeping offsets."""
    return QUOTED.sub(lambda m: " " * len(m.group(0)), text)




def check_claims(reasoning: str, item: Item, *, audio: np.ndarray | None = None, measure_audio: bool = True,
                 measured_tolerance: float = 2.0) -> ClaimReport:
    """Sort the chain's assertions into agreeing, contradicted and unchecked.

    Truth is the item's params when they hold acoustic values, else (with ``audio``) measured features.
    """
    params, scale, source = item.params, 1.0, "params"
    if not has_acoustic_truth(item.params):
        params, scale, source = {}, measured_tolerance, "none"
        if audio is not None and measure_audio:
            from .measurements import measure, measured_params  # librosa: slow to import, only this path

            params, source = measured_params(measure(audio)), "measured"
    report = ClaimReport(source=source)
    said = strip_quotes(reasoning)
    text = remove_options(said, item.choices)  # repeating an option verbatim is not evidence
    truth = true_values({k: v for k, v in params.items() if k not in LABEL_THRESHOLDS})
    for claim in extract_claims(text) + _tally_claims(text):
        if not asserted(text, claim.start) or _after_threshold(text, claim.start):
            continue
        ok, held_against = _check(claim, params, truth, scale)
        if ok is None:
            report.unchecked.append(claim)
        else:
            (report.agree if ok else report.contradicted).append(claim)
        report.checks.append(ClaimCheck(claim, _VERDICTS[ok], held_against))
    for claim, ok in _categorical_claims(text, said, params):
        if ok is None:
            report.unchecked.append(claim)
        elif not ok:
            report.contradicted.append(claim)
        else:
            (report.agree if claim.kind == "category" else report.consistent).append(claim)
        verdict = "consistent" if ok and claim.kind != "category" else _VERDICTS[ok]
        report.checks.append(ClaimCheck(claim, verdict))
    return report


_VERDICTS = {True: "verified", False: "contradicted", None: "unverifiable"}


def _check(claim: Claim, params: Mapping[str, Any], truth: Mapping[str, list[float]], scale: float
           ) -> tuple[bool | None, float | tuple[float, ...] | None]:
    """One measured claim against the truth, and the value it was held against.

    A bound claim is checked against its own segment only, a list element by element, any other
    against the nearest true value of its kind.
    """
    if claim.values:
        ok = list_agrees(claim.kind, claim.values, params, scale)
        key = "onsets_s" if claim.kind == "onsets" else "intervals_s"
        held = tuple(round(float(v), 3) for v in _flatten(params.get(key, []))) or None
        return ok, held
    per_segment = segment_values(params, claim.kind) if claim.segment is not None else None
    if per_segment is not None:
        if claim.segment >= len(per_segment):
            return False, None  # a segment the clip does not have
        value = per_segment[claim.segment]
        return agrees(claim.kind, claim.value, [value], scale), round(value, 3)
    if claim.kind not in truth:
        return None, None
    nearest = min(truth[claim.kind], key=lambda v: abs(v - claim.value))
    return agrees(claim.kind, claim.value, truth[claim.kind], scale), round(nearest, 3)


def _tally_claims(text: str) -> list[Claim]:
    claims = []
    for m in TALLY_CLAIM.finditer(text):
        value = int(m.group(1)) if m.group(1).isdigit() else words_to_number(m.group(1).lower())
        if value is not None:
            claims.append(Claim("count", float(value), m.group(0), m.start(1)))
    return claims


def _categorical_claims(text: str, said: str, params: Mapping[str, Any]) -> list[tuple[Claim, bool | None]]:
    """Categorical claims, each with its truth (None: unknown).

    Noise, interval and regularity cues are read from ``text`` (options removed); ordinal comparisons
    and label words from ``said``, since "the first tone is higher" repeats an option yet states a claim.
    """
    found: list[tuple[Claim, bool | None]] = []
    for pattern, key, value in CATEGORY_CUES + EXTRA_CATEGORY_CUES:
        for m in pattern.finditer(text):
            if key in params and asserted(text, m.start()):
                found.append((Claim("category", 0.0, m.group(0), m.start()), params[key] == value))
    for m in ORDINAL_CLAIM.finditer(said):
        if not asserted(said, m.start()):
            continue
        key, sign = _COMPARATIVES[m.group(2).lower()]
        values = _pair(params, key)
        claim = Claim("comparison", 0.0, m.group(0), m.start())
        if values is None or values[0] == values[1]:
            found.append((claim, None))
        else:
            named = 0 if m.group(1).lower() == "first" else 1
            top = int(np.argmax(values)) if sign > 0 else int(np.argmin(values))
            found.append((claim, named == top))
    labels = _labels(params)
    if labels:
        words = "|".join(sorted(map(re.escape, labels), key=len, reverse=True))
        patterns = (rf"\b{_LABEL_SUBJECTS}\s+(?:is|are|sounds|seems|must be|was|falls in the)\s+{_QUALIFIERS}"
                    rf"({words})\b(?!-)", rf"\b(?:a|an)\s+({words})(?:-pitched)?\s+(?:voice|tempo|register|pulse|"
                    rf"chord|rate|pace|speaker|recording|triad)\b", rf"\b({words})-pitched\b")
        for pattern in patterns:
            for m in re.finditer(pattern, said, re.IGNORECASE):
                if asserted(said, m.start()):
                    found.append((Claim("label", 0.0, m.group(0), m.start()), labels[m.group(1).lower()]))
    return found


def _labels(params: Mapping[str, Any]) -> dict[str, bool]:
    """Words that name the property in question, each mapped to whether it is true of this item."""
    if "trap" in params and "truth" in params:
        return {str(params["truth"]): True, str(params["claim"]): False}
    for key, words in (("register", ("high", "low")), ("rate", ("fast", "slow")), ("band", ("slow", "medium", "fast")),
                       ("quality", ("major", "minor"))):
        if key in params:
            return {w: params[key] == w for w in words}
    return {}


def _pair(params: Mapping[str, Any], key: str) -> list[float] | None:
    """Two values to compare: the params list, or for measured params the two segments' values."""
    values = params.get(key)
    if key == "durations_s" and values is None and "segments_s" in params:
        values = [b - a for a, b in params["segments_s"]]
    if isinstance(values, list) and len(values) >= 2 and all(isinstance(v, int | float) for v in values[:2]):
        return [float(values[0]), float(values[1])]
    return None


def clause_prefix(text: str, start: int) -> str:
    """The text of the clause that contains offset ``start``, up to it."""
    head = text[:start]
    breaks = list(CLAUSE_BREAK.finditer(head))
    return head[breaks[-1].end():] if breaks else head


def _clause(text: str, start: int) -> str:
    tail = CLAUSE_BREAK.search(text, start)
    return clause_prefix(text, start) + text[start : tail.start() if tail else len(text)]


def asserted(text: str, start: int) -> bool:
    """Whether the mention at ``start`` asserts something about this clip.

    False for negated, tested or conditional mentions ("no line at 60 Hz", "I check for hiss", "if it
    were ...", "...; neither is there") and for general knowledge ("typical voices sit near 100 Hz").
    """
    prefix = clause_prefix(text, start)
    if NEGATION.search(prefix) or HYPOTHETICAL.search(prefix) or REFERENCE.search(_clause(text, start)):
        return False
    tail = CLAUSE_BREAK.search(text, start)
    return not (tail and DENIED_AFTER.match(text, tail.start()))


def _after_threshold(text: str, start: int) -> bool:
    """A value used as a threshold ("above 200 Hz", "between 90 and 130 BPM") is not a measurement."""
    return THRESHOLD.search(clause_prefix(text, start)) is not None

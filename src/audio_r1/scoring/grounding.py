"""Is a reasoning chain grounded in the sound? The one definition, used everywhere.

Step-Audio-R1's thesis is reasoning that rests on the sound rather than on textual surrogates. A
chain is **grounded** (`judge_grounding`) when

- it cites acoustic cues (cue words such as pitch, Hz, loud, tempo, hum, pause, or stated claims);
- no surrogate marker dominates: any imagined-description marker ("going by my general impression")
  fails it; transcript markers ("the speaker says", "the transcript") fail it when they are at least
  as many as the cue words plus twice the agreeing claims, so a grounded chain may still contrast the
  words with the sound;
- no claim it makes is contradicted by the truth (`claims.check_claims`);
- and, when the item has true acoustic params, at least one claim agrees with them.

Text questions have nothing to hear and are trivially grounded; spoken-content questions may quote
the words (that is their task) and fail only on contradicted claims or imagined descriptions.

This is the grounding of the README's rate, of evaluation's column, of MGRD's filter
(`verifier.verify`) and of RL's rewards: no other module decides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .claims import ClaimReport, check_claims, has_acoustic_truth, strip_quotes

if TYPE_CHECKING:
    from ..data.manifest import Item

ACOUSTIC_CUES = re.compile(
    r"\b(?:pitch(?:ed|es)?|f0|fundamental|frequenc(?:y|ies)|k?hz|hertz|harmonics?|partials?|overtones?"
    r"|semitones?|octaves?|tones?|notes?|chord|triad|thirds?|timbre|bright|resonan\w*|formants?|register"
    r"|loud(?:er|ness|est)?|quiet(?:er|est)?|soft(?:er)?|volume|level|db(?:fs)?|decibels?|rms|energy|amplitude"
    r"|rhythm\w*|tempo|beats?|bpm|pulse|metronome|onsets?|inter-onset|intervals?|spacing|spaced|clicks?"
    r"|beeps?|bursts?|noise|hiss\w*|hum(?:ming)?|buzz|broadband|spectr(?:um|al)|noise floor|silen(?:t|ce)"
    r"|pauses?|gaps?|rate|pace|syllables?|words per (?:second|minute)|duration|lasts?|periodicity|envelope"
    r"|attack|decay)\b",
    re.IGNORECASE,
)
# Reasoning from the words spoken instead of the sound.
TRANSCRIPT_MARKERS: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\bthe (?:speaker|voice|person|narrator|man|woman|speech|recording) (?:says|said|states|stated|claims|"
    r"claimed|tells|told|mentions|announces|describes|asks)\b",
    r"\b(?:the|a) transcript(?:ion)?\b",
    r"\btranscrib\w*",
    r"\bthe (?:spoken )?words\b",
    r"\baccording to (?:the )?(?:speaker|words|transcript|speech|voice|text|caption)\b",
    r"\btake (?:their|his|her|the speaker's) word\b",
    r"\bthe (?:text|caption|description|label) (?:says|states|claims)\b",
))
# Reasoning from an imagined description or a vague impression: never evidence.
IMAGINED_MARKERS: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\bgeneral impression\b", r"\boverall feel\b", r"\bwithout (?:analy[sz]ing|measuring|listening)\b",
    r"\b(?:won't|will not|don't need to|do not need to|no need to) (?:measure|analy[sz]e|listen)\b",
    r"\bI imagine\b", r"\bimagin(?:e|ing) (?:the|what|how)\b", r"\bmost likely fits\b",
    r"\bseems? most plausible\b", r"\brecordings? (?:like this )?usually contain\b",
    r"\bwhat such recordings\b", r"\bI(?:'d| would) guess\b", r"\bprobably sounds? like\b",
))


@dataclass
class GroundingConfig:
    """What counts as grounded (defaults: the recipe's MGRD filter)."""

    require_verified_claim: bool = True  # with true params, at least one claim must agree with them
    measure_audio: bool = True  # measure the waveform when the item has no acoustic params
    measured_tolerance: float = 2.0  # tolerance multiplier for measured (noisier) truth
    text_families: tuple[str, ...] = ("text_math",)
    content_families: tuple[str, ...] = ("spoken_content", "spoken_arithmetic", "hear_digit")  # words are the evidence


@dataclass
class CueReport:
    """Acoustic cue words and surrogate markers found in a reasoning chain (quotes removed)."""

    acoustic: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    imagined: list[str] = field(default_factory=list)


@dataclass
class GroundingJudgement:
    """Whether one chain is grounded, why not (`reasons`), and the evidence it was judged on."""

    reasons: list[str]  # e.g. "surrogate_marker", "no_acoustic_cue", "claim_contradicted:hz"
    claims: ClaimReport | None = None  # None: a text question, nothing was checked
    cues: CueReport | None = None

    @property
    def grounded(self) -> bool:
        return not self.reasons

    @property
    def checked_against_truth(self) -> bool:
        """Whether claims could be checked against true or measured values (not only cue words)."""
        return self.claims is not None and self.claims.source != "none"


@dataclass
class UserClip:
    """A user's clip, for judging a reply about it: no true parameters, so claims meet measurements."""

    question: str = ""
    audio: str = "user audio"
    family: str = "user"
    choices: list[str] | None = None
    answer_type: str = "text"
    params: dict = field(default_factory=dict)


def judge_grounding(reasoning: str, item: Item, *, audio: np.ndarray | None = None,
                    config: GroundingConfig | None = None) -> GroundingJudgement:
    """Judge the reasoning (the think block's text) of one chain for `item`.

    `audio` (16 kHz mono) is measured only when the item has no acoustic params to check claims against.
    """
    config = config or GroundingConfig()
    if item.audio is None and audio is None or item.family in config.text_families:
        return GroundingJudgement([])  # a text question: nothing to hear, nothing to ground
    cues = find_cues(reasoning)
    claims = check_claims(reasoning, item, audio=audio, measure_audio=config.measure_audio,
                          measured_tolerance=config.measured_tolerance)
    reasons = [f"claim_contradicted:{kind}" for kind in dict.fromkeys(c.kind for c in claims.contradicted)]
    if item.family in config.content_families:
        return GroundingJudgement(reasons + (["surrogate_marker"] if cues.imagined else []), claims, cues)
    # a verified claim outweighs a cue word: transcript markers dominate when they match the evidence
    evidence = len(cues.acoustic) + 2 * len(claims.agree)
    if cues.imagined or (cues.transcript and len(cues.transcript) >= evidence):
        reasons.append("surrogate_marker")
    if evidence == 0:
        reasons.append("no_acoustic_cue")
    elif claims.source == "params" and config.require_verified_claim and not claims.agree:
        reasons.append("no_verified_claim")
    return GroundingJudgement(reasons, claims, cues)


def is_checkable(item: Item) -> bool:
    """Whether a grounding rate over `item` means something: it has sound and true acoustic params."""
    return item.audio is not None and has_acoustic_truth(item.params)


def find_cues(reasoning: str) -> CueReport:
    """Acoustic cue words and surrogate markers in `reasoning` (quoted speech does not count)."""
    text = strip_quotes(reasoning)
    return CueReport(
        acoustic=[m.group(0) for m in ACOUSTIC_CUES.finditer(text)],
        transcript=[m.group(0) for p in TRANSCRIPT_MARKERS for m in p.finditer(text)],
        imagined=[m.group(0) for p in IMAGINED_MARKERS for m in p.finditer(text)],
    )

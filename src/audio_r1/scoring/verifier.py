"""The MGRD verifier: is a generated reasoning chain correct, grounded in the sound, and coherent?

Step-Audio-R1's Modality-Grounded Reasoning Distillation keeps only sampled chains that (a) reason
from acoustic evidence rather than textual surrogates (transcripts, imagined descriptions), (b) are
coherent, and (c) end in the right answer. :func:`verify` applies those three filters to one
generated assistant text and returns a :class:`Verdict` with a short machine-readable reason for
every failed check:

- **grounded**: `grounding.judge_grounding`, the project's one definition (acoustic cues, no
  dominating surrogate marker, no contradicted claim, at least one verified claim where the item has
  true params; the claims themselves are found and checked in `claims.py`).
- **coherent**: exactly one well-formed think block (`think.think_problem`), a reasoning length
  within bounds, no repeated n-gram or character loops, a final answer, a conclusion in the reasoning
  (the last option or number it settles on) that agrees with the final answer, and an answer that
  follows from the chain's own stated values where they decide it (`faithfulness.py`: "first -31 dB,
  second -23 dB, so the first is louder" is unfaithful).
- **correct**: the answer matches the label (``answers.is_correct``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..chat import parse_reasoning
from .answers import is_correct, normalise_answer, normalise_number, parse_number, words_to_number
from .claims import UNIT_PATTERNS, asserted, clause_prefix, strip_quotes
from .faithfulness import judge_faithfulness
from .grounding import GroundingConfig, judge_grounding
from .think import think_problem

if TYPE_CHECKING:
    from ..data.manifest import Item

# ------------------------------------------------------------------------------------------ vocabulary

# Inspecting something ("I check the spacing") names a topic, not a conclusion.
INSPECTION = re.compile(r"\b(?:check(?:s|ing)?|examin\w*|inspect\w*|measur\w*|compar\w*|look(?:s|ing)? (?:at|for)"
                        r"|listen(?:s|ing)? (?:to|for)|tim(?:e|es|ing))\b", re.IGNORECASE)
SENTENCE_BREAK = re.compile(r"(?<=[.!?;:])\s+|\n+")
_STOPWORDS = frozenset("a an the and or of to in on at is are it its they this that these those yes one with "
                       "for by as be".split())
_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
                 "hundred thousand").split()
_WORD = re.compile(r"[a-z0-9]+(?:\.\d+)?")
_NUMBER_RUN = re.compile(r"(?<![\w.])(?:-?\d+(?:\.\d+)?(?!\w)|(?:" + "|".join(_NUMBER_WORDS) +
                         r")(?:(?:[\s-]+|\s+and\s+)(?:" + "|".join(_NUMBER_WORDS) + r"))*)\b", re.IGNORECASE)
_COUNT_ONE = re.compile(r"\s*(?:[.,;:!?)]|$|in total\b|(?:distinct |separate |short |sharp )?(?:beep|click|event|knock|"
                        r"tap|pulse|burst|onset|sound|note|tone)s?\b)", re.IGNORECASE)
_PRONOUN_ONE = re.compile(r"\b(?:the|each|this|that|which|every|any|no|first|second|higher|lower|louder|quieter|"
                          r"longer|shorter|other)\s+$", re.IGNORECASE)



# ------------------------------------------------------------------------------------------ results


@dataclass
class VerifierConfig(GroundingConfig):
    """Thresholds of the three filters (defaults suit the synthetic suite and short chains)."""

    min_reasoning_words: int = 3
    max_reasoning_words: int = 2048
    ngram: int = 4  # word n-gram size of the loop check
    max_ngram_repeats: int = 4  # an n-gram seen more often than this is a loop
    require_conclusion: bool = False  # fail chains that never settle on an option or number


@dataclass
class Verdict:
    """The three MGRD filters for one generated text, with a reason for every failed check."""

    correct: bool
    grounded: bool  # `grounding.judge_grounding`
    coherent: bool
    reasons: list[str] = field(default_factory=list)  # e.g. "surrogate_marker", "claim_contradicted:hz"

    @property
    def accepted(self) -> bool:
        return self.correct and self.grounded and self.coherent


# ------------------------------------------------------------------------------------------ verify


def verify(item: Item, text: str, *, audio: np.ndarray | None = None,
           config: VerifierConfig | None = None) -> Verdict:
    """Check one generated assistant text (think block + answer) for ``item``.

    ``audio`` (16 kHz mono) is measured only when the item has no acoustic params to check claims against.
    """
    config = config or VerifierConfig()
    reasoning, answer = parse_reasoning(text)
    correct = bool(answer.strip()) and is_correct(item, answer.strip())
    reasons = [] if correct else ["wrong_answer"]
    coherence = coherence_reasons(text, item, config)
    grounding = judge_grounding(reasoning, item, audio=audio, config=config).reasons
    return Verdict(correct, not grounding, not coherence, reasons + coherence + grounding)


# ------------------------------------------------------------------------------------------ coherence


def coherence_reasons(text: str, item: Item, config: VerifierConfig | None = None) -> list[str]:
    """Why a generated text is not coherent (empty when it is)."""
    config = config or VerifierConfig()
    problem = think_problem(text, prefilled_open=None, require_reasoning=False)
    reasons = [problem] if problem else []
    reasoning, answer = parse_reasoning(text)
    words = reasoning.split()
    if len(words) < config.min_reasoning_words:
        reasons.append("reasoning_too_short")
    elif len(words) > config.max_reasoning_words:
        reasons.append("reasoning_too_long")
    if _loops(reasoning, config) or _loops(answer, config):
        reasons.append("repetition")
    if not answer.strip():
        reasons.append("no_answer")
        return reasons
    said = conclusion(reasoning, item)
    if said is None:
        if config.require_conclusion:
            reasons.append("no_conclusion")
    elif not is_correct(_as_item(item, said), answer.strip()):
        reasons.append("conclusion_mismatch")
    if judge_faithfulness(reasoning, answer.strip(), item) is False:
        reasons.append("unfaithful")  # the answer is not the one its own stated values imply
    return reasons


def _loops(text: str, config: VerifierConfig) -> bool:
    """A word n-gram repeated more than allowed, or a short character pattern repeated 8+ times in a row."""
    if re.search(r"(\S.{0,29}?)\1{7,}", text, re.DOTALL):
        return True
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    grams = Counter(tuple(words[i : i + config.ngram]) for i in range(len(words) - config.ngram + 1))
    return bool(grams) and max(grams.values()) > config.max_ngram_repeats


def conclusion(reasoning: str, item: Item) -> str | None:
    """What the reasoning settles on: an option's text (choice items) or a canonical number; else None.

    Choice items: the option named last in the latest sentence that names one, by the option's distinctive
    words (those no other option has), ignoring negated mentions and quoted speech. Number items: the last
    number that is not a measurement (no unit), not the pronoun "one", and not negated.
    """
    text = strip_quotes(reasoning)
    if item.answer_type == "choice" and item.choices:
        return _choice_conclusion(text, item.choices)
    if item.answer_type == "number":
        return _number_conclusion(text)
    return None


def _choice_conclusion(text: str, choices: list[str]) -> str | None:
    tokens = [set(_tokens(c)) - _STOPWORDS for c in choices]
    distinct = [t - set().union(*(o for j, o in enumerate(tokens) if j != i)) - {"no", "not"}
                for i, t in enumerate(tokens)]
    options = [normalise_answer(c) for c in choices]
    measured = _unit_spans(text)
    for offset, sentence in reversed(_sentences(text)):
        words = [(offset + w.start(), _canonical(w.group(0))) for w in _WORD.finditer(sentence.lower())]
        # "unevenly spaced" denies "evenly spaced", "irregular" denies "regular"
        denied = {i for i, keys in enumerate(distinct) for _, w in words
                  if any(w == prefix + key for prefix in ("un", "ir", "in", "non") for key in keys)}
        named: list[tuple[int, int]] = []  # (offset, option)
        for at, word in words:
            span = next((text[a:b] for a, b in measured if a <= at < b), None)
            if not asserted(text, at) or _pronoun_one(text, at) or INSPECTION.search(clause_prefix(text, at)):
                continue
            for i, keys in enumerate(distinct):
                if word in keys and i not in denied and (span is None or normalise_answer(span) in options[i]):
                    named.append((at, i))
        if named:
            return choices[max(named)[1]]
    return None


def _sentences(text: str) -> list[tuple[int, str]]:
    """(offset, sentence) pieces split after . ! ? ; : followed by a space, and at line breaks."""
    pieces, start = [], 0
    for m in SENTENCE_BREAK.finditer(text):
        pieces.append((start, text[start : m.start()]))
        start = m.end()
    pieces.append((start, text[start:]))
    return [(o, p) for o, p in pieces if p.strip()]


def _unit_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for pattern in UNIT_PATTERNS.values() for m in pattern.finditer(text)]


def _pronoun_one(text: str, start: int) -> bool:
    """Whether "one" at ``start`` is a pronoun or article ("the second one", "one every 0.5 s").

    A count ends its clause or names what it counts ("one beep", "one in total").
    """
    if text[start : start + 3].lower() != "one":
        return False
    return _PRONOUN_ONE.search(text[:start]) is not None or not _COUNT_ONE.match(text, start + 3)


def _number_conclusion(text: str) -> str | None:
    measured = _unit_spans(text)
    last = None
    for m in _NUMBER_RUN.finditer(text):
        if any(a <= m.start() < b for a, b in measured) or not asserted(text, m.start()):
            continue
        token = m.group(0)
        if _pronoun_one(text, m.start()) and token.lower() == "one":
            continue
        value = words_to_number(token.lower()) if token[0].isalpha() else parse_number(token)
        if value is not None:
            last = normalise_number(float(value))
    return last


def _tokens(text: str) -> list[str]:
    return [_canonical(t) for t in _WORD.findall(text.lower())]


def _canonical(token: str) -> str:
    """Number words as digits, so "five" names the option "5"."""
    value = words_to_number(token) if token.isalpha() else None
    return str(value) if value is not None else token


def _as_item(item: Item, answer: str) -> Item:
    """A copy of ``item`` whose label is ``answer`` (to compare the final answer with the conclusion)."""
    return replace(item, answer=answer)


"""Does a chain's answer follow from its own claims? True, False, or None when the claims do not decide it.

Grounding asks whether the claims are true of the sound; faithfulness asks whether the answer is the
one those claims imply, true or not. It is judged where the claims settle the answer:

- **comparisons** of two segments (the higher, louder, longer ... one): when the chain states the
  measured value of both segments ("first -31 dB, second -23 dB"), the answer must name the segment
  those values make the higher / louder / longer one ("so the first is louder" is unfaithful);
- **counts**: a list of onsets, a stated count ("that makes 7 beeps") and the answer must agree
  (six listed onsets and seven beeps is unfaithful).

Anything else is None: not judged, and not counted in a faithful rate.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .answers import choice_index, parse_number
from .claims import Claim, asserted, extract_claims, remove_options, strip_quotes

if TYPE_CHECKING:
    from ..data.manifest import Item

# What a comparison question asks for: the kind of claim that decides it, and whether the larger wins.
ORDINAL_WORDS = re.compile(r"\b(first|second|third)\b")
ORDINAL_INDEX = {"first": 0, "second": 1, "third": 2}
ASKED = {"higher": ("hz", True), "lower": ("hz", False), "louder": ("db", True), "quieter": ("db", False),
         "softer": ("db", False), "longer": ("seconds", True), "shorter": ("seconds", False)}


def judge_faithfulness(reasoning: str, answer: str, item: Item) -> bool | None:
    """Whether `answer` follows from the claims in `reasoning` for `item` (None: they do not decide it)."""
    text = remove_options(strip_quotes(reasoning), item.choices)
    claims = [c for c in extract_claims(text) if asserted(text, c.start)]  # not "no 5 Hz line"
    if item.params.get("ask") in ASKED:
        return _comparison(claims, answer, item)
    if item.answer_type == "number" and "count" in item.params:
        return _count(claims, answer)
    return None


def _comparison(claims: list[Claim], answer: str, item: Item) -> bool | None:
    kind, larger = ASKED[item.params["ask"]]
    stated: dict[int, float] = {}
    for claim in claims:
        if claim.kind == kind and claim.segment is not None:
            stated.setdefault(claim.segment, claim.value)  # the first value stated for each segment
    if len(stated) < 2 or len(set(stated.values())) < len(stated):
        return None
    implied = (max if larger else min)(stated, key=stated.get)
    chosen = _chosen_segment(answer, item)
    if chosen is None:
        return None
    return chosen == implied


def _chosen_segment(answer: str, item: Item) -> int | None:
    """The segment an answer names through its ordinal ("The second tone", option B = "The first note")."""
    text = answer
    if item.choices:
        index = choice_index(item.choices, answer)
        if index is None:
            return None
        text = item.choices[index]
    ordinals = ORDINAL_WORDS.findall(text.lower())
    return ORDINAL_INDEX[ordinals[0]] if len(set(ordinals)) == 1 else None  # "yes" or "no" name no segment


def _count(claims: list[Claim], answer: str) -> bool | None:
    """Listed onsets, stated counts and the answer, wherever two of them are given, must agree."""
    numbers = [int(claim.value) for claim in claims if claim.kind in ("onsets", "count")]
    answered = parse_number(answer)
    if answered is not None:
        numbers.append(int(answered))
    if len(numbers) < 2:
        return None
    return len(set(numbers)) == 1

"""Tests for audio_r1.data.answers: normalisation, number words and is_correct."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio_r1.data.manifest import Item
from audio_r1.scoring.answers import (
    choice_index,
    is_correct,
    normalise_answer,
    number_to_words,
    parse_number,
    words_to_number,
)


def _item(answer: str, answer_type: str = "choice", choices: list[str] | None = None) -> Item:
    return Item(id="x", family="f", split="test", audio=None, question="q", choices=choices, answer=answer,
                answer_type=answer_type, params={}, transcript=None, voice=None, seed=0)


TONES = _item("The second tone", choices=["The first tone", "The second tone"])
TEMPO = _item("medium (90 to 130 BPM)",
              choices=["slow (below 90 BPM)", "medium (90 to 130 BPM)", "fast (above 130 BPM)"])
HIGH_LOW = _item("low", choices=["high", "low"])


@pytest.mark.parametrize("reply,ok", [
    ("The second tone", True), ("the second tone.", True), ("  THE SECOND TONE!  ", True),
    ("B", True), ("b", True), ("B.", True), ("(B)", True), ("Option B", True), ("B. The second tone", True),
    ("A", False), ("The first tone", False), ("C", False), ("", False),
    ("I think the second tone is higher.", True),
    ("The second tone is higher than the first tone.", False),  # names both options: ambiguous
    ("B. The first tone", False),
])
def test_choice_replies(reply: str, ok: bool) -> None:
    assert is_correct(TONES, reply) is ok


def test_choice_with_punctuated_options() -> None:
    assert is_correct(TEMPO, "medium (90 to 130 BPM)")
    assert is_correct(TEMPO, "Medium, 90 to 130 bpm")
    assert is_correct(TEMPO, "b")
    assert not is_correct(TEMPO, "fast (above 130 BPM)")
    assert is_correct(HIGH_LOW, "Low.") and is_correct(HIGH_LOW, "It is low") and not is_correct(HIGH_LOW, "high")
    assert choice_index(["low", "very low"], "very low") == 1  # the longer option wins over its substring


@pytest.mark.parametrize("reply,ok", [
    ("12", True), ("12.", True), ("12.0", True), ("twelve", True), ("Twelve.", True), ("The answer is 12", True),
    ("13", False), ("", False), ("a dozen", False), ("1 2", False),
])
def test_number_replies(reply: str, ok: bool) -> None:
    assert is_correct(_item("12", "number"), reply) is ok


def test_large_and_negative_numbers() -> None:
    assert is_correct(_item("42", "number"), "forty-two")
    assert is_correct(_item("105", "number"), "one hundred and five")
    assert is_correct(_item("1200", "number"), "1,200")
    assert is_correct(_item("-3", "number"), "minus three")
    assert is_correct(_item("2.5", "number"), "2.50")


@pytest.mark.parametrize("reply,ok", [
    ("apple", True), ("Apple!", True), ("The word is apple.", True), ("the apple", True), ("apples", False),
    ("pineapple", False),
])
def test_text_replies(reply: str, ok: bool) -> None:
    assert is_correct(_item("apple", "text"), reply) is ok


def test_normalise_answer() -> None:
    assert normalise_answer("  The SECOND tone! ") == "the second tone"
    assert normalise_answer("Café—au lait") == "cafe au lait"
    assert normalise_answer("2.5 kHz.") == "2.5 khz"
    assert normalise_answer("forty-two") == "forty-two"


@given(st.integers(-999_999, 999_999))
def test_number_words_round_trip(n: int) -> None:
    words = number_to_words(n)
    assert words_to_number(words) == n
    assert parse_number(words) == n


def test_words_to_number_rejects_non_numbers() -> None:
    assert words_to_number("hello") is None
    assert words_to_number("") is None
    assert words_to_number("hundred") is None

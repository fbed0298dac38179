"""Official scorers reproduced exactly, quirks included: hand-made cases whose official verdicts are known
(worked out from the official scripts: MMAU evaluation.py, MMSU mmsu_evaluation.py, AudioBench's
Spoken-MQA scorer, Big Bench Audio's and WildSpeech-Bench's judge prompts), plus intervals and budgets."""

from __future__ import annotations

import pytest

from audio_r1.eval.base import BenchItem
from audio_r1.eval.bigbench_audio import JUDGE_PROMPT as BBA_PROMPT
from audio_r1.eval.bigbench_audio import last_number, parse_verdict, rule_verdict
from audio_r1.eval.judge import prompt_sha256
from audio_r1.eval.mmau import MMAU, choice_prompt, letter_to_text, string_match
from audio_r1.eval.mmsu import MMSU, official_letter
from audio_r1.eval.scaling import bucket_of, inverted_pairs, parse_budgets
from audio_r1.eval.spoken_mqa import (
    SpokenMQA,
    answer_clean,
    delete_extra_zero,
    official_verdict,
    reference_answer,
)
from audio_r1.eval.stats import mean_interval, wilson
from audio_r1.eval.wildspeech import GENERAL_CHECKLIST, WildSpeech, parse_score
from audio_r1.eval.wildspeech import JUDGE_PROMPT as WILD_PROMPT

PEOPLE = ["A child", "A woman", "An adult man", "A teenager"]
VOICES = ["Man", "Woman", "Child", "Robot"]


# ------------------------------------------------------------------------------------------------- MMAU


@pytest.mark.parametrize(("answer", "prediction", "choices", "official"), [
    ("Man", "Man", VOICES, True),
    ("Man", "The speaker is a man.", VOICES, True),
    ("Man", "A", VOICES, False),  # a bare letter fails: the reason letters are mapped first
    ("Man", "man or woman", VOICES, False),  # a token unique to another option
    ("Man", "", VOICES, False),
    ("A woman", "A woman", PEOPLE, True),  # "a" is shared with the answer, so it is not held against it
    ("A woman", "a woman, not a child", PEOPLE, False),
    ("The second note is higher", "higher", ["The second note is higher", "The second note is lower"], False),
    ("The second note is higher", "the SECOND note is higher!", ["The second note is higher",
                                                                  "The second note is lower"], True),
])
def test_mmau_string_match(answer: str, prediction: str, choices: list[str], official: bool) -> None:
    assert string_match(answer, prediction, choices) is official


@pytest.mark.parametrize(("reply", "mapped"), [
    ("B", "Woman"), ("(B)", "Woman"), ("B.", "Woman"), ("B. Woman", "Woman"), ("B: woman", "woman"),
    ("A woman", "A woman"), ("E", "E"), ("Bob", "Bob"),
])
def test_mmau_letter_aware_column_maps_letters_to_option_text(reply: str, mapped: str) -> None:
    assert letter_to_text(reply, VOICES) == mapped


def test_mmau_prompt_and_verdicts() -> None:
    assert choice_prompt("Who speaks?", ["Man", "Woman"]) == (
        "Who speaks?\nPlease choose the answer from the following options, do not provide any additional "
        "explanations or content: \nA. Man\nB. Woman\n")
    item = BenchItem("x", [], "Woman", {}, {"choices": VOICES})
    letter, text, skipped = MMAU().extract(item, "B"), MMAU().extract(item, "woman"), MMAU().extract(item, None)
    assert (letter.official, letter.strict, letter.variants) == (False, False, {"letter_aware": True})
    assert (text.official, text.strict, text.variants) == (True, True, {"letter_aware": True})
    assert (skipped.official, skipped.strict) == (None, False)  # no model_output: the official script skips it


# ------------------------------------------------------------------------------------------------- MMSU


@pytest.mark.parametrize(("reply", "letter", "counted"), [
    ("A", "A", True),
    ("B. orange", "B", True),
    ("A woman is speaking", "A", True),  # first character decides
    ("The answer is C.", "C", True),  # else the second-to-last
    ("The answer is C", None, False),  # neither: dropped from the denominator
    ("c", None, False),
    ("", None, True),  # empty: counted, wrong
    ("None", None, True),
    ("x\nD.", "D", True),  # newlines are removed first
    ("  B  ", "B", True),
])
def test_mmsu_official_letter_rule(reply: str, letter: str | None, counted: bool) -> None:
    assert official_letter(reply) == (letter, counted)


def test_mmsu_official_and_strict_differ_on_dropped_answers() -> None:
    item = BenchItem("x", [], "pear", {}, {"choices": {"A": "apple", "B": "pear", "C": "plum", "D": "fig"}})
    verdicts = [MMSU().extract(item, reply) for reply in ("B", "I cannot tell", "A")]
    official = [v.official for v in verdicts if v.official is not None]
    strict = [v.strict for v in verdicts]
    assert sum(official) / len(official) == 0.5  # 1 of 2: the unparseable reply left the denominator
    assert sum(strict) / len(strict) == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------------- Spoken-MQA


@pytest.mark.parametrize(("reply", "number"), [
    ("The answer is 42.", "42"),
    ("3 + 4 = 7", "7"),  # no trigger: the last number
    ("The answer is 1,234 apples, not 5", "1234"),  # after the trigger: the first number, commas gone
    ("The answer is: 5.50", "5.5"),
    ("so 3/4 of it", "0.75"),
    ("The answer is 12/", "12"),
    ("The answer is 7. The answer is 8.", "8"),  # two triggers, one paragraph: the last trigger wins
    ("The answer is 7.\n\nThe answer is 8.", "7"),  # two triggers: only the first paragraph counts
    ("#### -3", "-3"),
    ("no digits here", ""),
    ("The answer is 100000000000000000000", "100.0"),  # str(1e+20).rstrip("0") -> "1e+2": kept as is
])
def test_spoken_mqa_number_rule(reply: str, number: str) -> None:
    assert answer_clean(reply) == number


def test_spoken_mqa_references_and_quirks() -> None:
    assert reference_answer("Some working.\n#### 1,234", "multi_step_reasoning") == "1234"
    assert reference_answer("3.50", "single_step_reasoning") == "3.5"
    assert reference_answer("3.50", "short_digit") == "3.50"  # arithmetic splits compare the raw text
    assert official_verdict("The answer is 3.5", "3.50", "short_digit")[1] is False
    assert official_verdict("The answer is 3.5", "3.50", "single_step_reasoning")[1] is True
    assert official_verdict("nothing", "", "short_digit")[1] is True  # "empty" == "empty"
    assert delete_extra_zero("5.0") == "5" and delete_extra_zero("007/2") == "007/2"
    item = BenchItem("x", [], "", {}, {"split": "short_digit"})
    empty = SpokenMQA().extract(item, "nothing")
    assert (empty.official, empty.strict) == (True, False)  # strict: no number is wrong


# ---------------------------------------------------------------------------------------- judged benches


def test_judge_prompts_are_pinned() -> None:
    assert prompt_sha256(BBA_PROMPT) == "0f51cc48ba57f2e2803d4859aefc95b246d30f2d409d5eefccfdf493936b65f8"
    assert prompt_sha256(WILD_PROMPT) == "1579857cb8ffb79b5becaa6d7590a7310cc614215e4935ddc44ee4255ab27a17"
    assert "Reply only with CORRECT or INCORRECT." in BBA_PROMPT
    assert GENERAL_CHECKLIST.startswith("\n- Instruction adherence")
    item = BenchItem("x", [], "", {}, {"query": "Hi?", "checklist": "- be kind"})
    prompt = WildSpeech().judge_prompt(item, "Hello!")
    assert "{query}" not in prompt and GENERAL_CHECKLIST + "- be kind" in prompt


@pytest.mark.parametrize(("reply", "verdict"), [
    ("CORRECT", True), ("INCORRECT", False), ("**Correct**", True), ("incorrect.", False),
    ("I am not sure", None), ("CORRECT or INCORRECT", None),
])
def test_bigbench_judge_replies(reply: str, verdict: bool | None) -> None:
    assert parse_verdict(reply) is verdict


@pytest.mark.parametrize(("category", "official", "answer", "verdict"), [
    ("formal_fallacies", "invalid", "The argument is not valid.", True),
    ("formal_fallacies", "valid", "Valid", True),
    ("formal_fallacies", "valid", "invalid", False),
    ("navigate", "No", "No, you end up elsewhere.", True),
    ("web_of_lies", "Yes", "yes", True),
    ("web_of_lies", "Yes", "Hmm.", None),
    ("object_counting", "18", "You have eighteen fruits.", True),
    ("object_counting", "6", "2 apples and 3 pears and 1 plum: 6", True),
    ("object_counting", "21", "twenty-one", True),
    ("object_counting", "7", "seven or eight", False),
])
def test_bigbench_offline_rules(category: str, official: str, answer: str, verdict: bool | None) -> None:
    assert rule_verdict(category, official, answer) is verdict


def test_number_words() -> None:
    assert last_number("one hundred and five items") == 105
    assert last_number("none at all") is None


@pytest.mark.parametrize(("reply", "score"), [
    ("...\nScore: 7", 7), ("Score: [8]", 8), ("Final Score: 9/10", 9), ("score: 7", None), ("no score", None),
])
def test_wildspeech_score_regex(reply: str, score: int | None) -> None:
    assert parse_score(reply) == score


# -------------------------------------------------------------------------------------- stats, budgets


def test_wilson_interval() -> None:
    low, high = wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    mean, low, high = mean_interval([6, 7, 8])
    assert mean == 7 and low == pytest.approx(7 - 4.303 * 1 / 3 ** 0.5, abs=1e-3)


def test_budgets_buckets_and_inverted_scaling() -> None:
    assert parse_budgets("none,256, 0,64,64") == [0, 64, 256, None]
    with pytest.raises(ValueError, match="not a token count"):
        parse_budgets("0,lots")
    assert [bucket_of(n) for n in (0, 1, 63, 64, 1023, 5000)] == ["0", "1-63", "1-63", "64-255", "256-1023",
                                                                  "4096+"]
    rows = [{"label": "0", "value": 0.8, "low": 0.75, "high": 0.85},
            {"label": "64", "value": 0.78, "low": 0.72, "high": 0.83},
            {"label": "none", "value": 0.5, "low": 0.45, "high": 0.55}]
    assert [(p["from"], p["to"]) for p in inverted_pairs(rows)] == [("0", "none"), ("64", "none")]
    assert inverted_pairs(rows[:2]) == []  # a dip within the interval is not flagged

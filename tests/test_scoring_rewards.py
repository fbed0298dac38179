"""Verified rewards: correctness after the think block, the format check, and the weights per prompt kind."""

from __future__ import annotations

import pytest

from audio_r1.data.manifest import Item
from audio_r1.engine import Prompt
from audio_r1.scoring.rewards import RewardWeights, score_response
from audio_r1.scoring.think import answer_after_think, reasoning_present, think_problem
from audio_r1.train.rl import verified_reward
from audio_r1.train.rollout import Rollout


def _item(audio: str | None = "audio/x.wav", **overrides) -> Item:
    fields = dict(id="t-0", family="pitch_compare", split="train", audio=audio,
                  question="Which note is higher?", choices=["The first note", "The second note"],
                  answer="The second note", answer_type="choice", params={}, transcript=None, voice=None, seed=0)
    fields.update(overrides)
    return Item(**fields)


def _number_item() -> Item:
    return _item(audio=None, family="text_math", question="What is 2 plus 3?", choices=None, answer="5",
                 answer_type="number")


@pytest.mark.parametrize(("text", "expected"), [
    ("The second tone is near 880 Hz.\n</think>\nThe second note", True),
    ("reasoning\n</think>\n", True),  # an empty answer does not matter to the format check
    ("\n</think>\nThe second note", False),  # empty think block
    ("   \n\t</think>\nB", False),  # whitespace only
    ("I keep thinking and never close the block", False),  # truncated response
    ("a\n</think>\nB\n</think>\nB", False),  # closed twice
    ("a <think> b\n</think>\nB", False),  # opened again inside the block
])
def test_reasoning_present_needs_one_closed_non_empty_block(text: str, expected: bool) -> None:
    assert reasoning_present(text) is expected


def test_reasoning_present_without_a_prefilled_open_tag() -> None:
    assert reasoning_present("<think>\nlooked at pitch\n</think>\nB", prefilled_open=False)
    assert not reasoning_present("looked at pitch\n</think>\nB", prefilled_open=False)


def test_the_answer_is_what_follows_the_think_block() -> None:
    assert answer_after_think("The first note is lower.\n</think>\nThe second note") == "The second note"
    assert answer_after_think("The second note, I think") == ""  # never closed: no answer


@pytest.mark.parametrize(("text", "reward", "correct", "formatted"), [
    ("880 Hz beats 440 Hz.\n</think>\nThe second note", 1.0, True, True),
    ("880 Hz beats 440 Hz.\n</think>\nB", 1.0, True, True),  # a letter names the option
    ("\n</think>\nThe second note", 0.8, True, False),  # right, without reasoning
    ("440 Hz beats 880 Hz.\n</think>\nThe first note", 0.2, False, True),  # wrong, with reasoning
    ("The second note is higher", 0.0, False, False),  # truncated: the answer is inside the think block
])
def test_audio_reward_is_point_eight_correct_plus_point_two_format(text, reward, correct, formatted) -> None:
    result = score_response(_item(), text)
    assert result.reward == pytest.approx(reward)
    assert (result.correct, result.formatted) == (correct, formatted)


def test_text_reward_is_correctness_only() -> None:
    item = _number_item()
    assert score_response(item, "2 + 3 = 5\n</think>\n5").reward == pytest.approx(1.0)
    assert score_response(item, "\n</think>\nfive").reward == pytest.approx(1.0)
    assert score_response(item, "2 + 3 = 6\n</think>\n6").reward == pytest.approx(0.0)


def test_the_ablation_drops_the_format_reward() -> None:
    weights = RewardWeights.without_format()
    assert score_response(_item(), "\n</think>\nThe second note", weights).reward == pytest.approx(1.0)
    assert score_response(_item(), "thinking\n</think>\nThe first note", weights).reward == pytest.approx(0.0)


def test_weights_are_configurable() -> None:
    weights = RewardWeights(audio_correct=0.5, audio_format=0.5, text_correct=2.0, text_format=0.0)
    assert score_response(_item(), "x\n</think>\nThe first note", weights).reward == pytest.approx(0.5)
    assert score_response(_number_item(), "x\n</think>\n5", weights).reward == pytest.approx(2.0)


def test_verified_reward_scores_a_rollout() -> None:
    rollout = Rollout(group=0, prompt=Prompt([1, 2, 3]), token_ids=[4, 5], text="pitch\n</think>\nB",
                      reasoning="pitch", answer="B", think_tokens=1, finish_reason="stop")
    assert verified_reward()(_item(), rollout).reward == pytest.approx(1.0)


@pytest.mark.parametrize(("text", "prefilled", "problem"), [
    ("pitch rises\n</think>\nB", True, None),
    ("<think>\npitch rises\n</think>\nB", None, None),
    ("pitch rises\n</think>\nB", None, None),
    ("pitch rises\n</think>\nB", False, "think_missing"),
    ("pitch rises, then", True, "think_unclosed"),
    ("a\n</think>\nb\n</think>\nB", True, "think_malformed"),
    ("<think>\na\n</think>\nB", True, "think_malformed"),
    ("  \n</think>\nB", True, "think_empty"),
])
def test_one_think_block_rule_for_reward_and_verifier(text: str, prefilled: bool | None, problem: str | None) -> None:
    assert think_problem(text, prefilled_open=prefilled) == problem


def test_the_grounding_term_is_off_by_default_and_adds_its_weight() -> None:
    grounded = "The first note sits near 262 Hz and the second near 330 Hz, so the second is higher.\n</think>\n" \
               "The second note"
    item = _item(params={"f0_hz": [262.0, 330.0], "ask": "higher"})
    plain = score_response(item, grounded)
    assert plain.grounded is None and plain.reward == pytest.approx(1.0)
    scored = score_response(item, grounded, RewardWeights().with_grounding(0.5))
    assert scored.grounded is True and scored.reward == pytest.approx(1.5)
    wrong = grounded.replace("262 Hz", "500 Hz")
    assert score_response(item, wrong, RewardWeights().with_grounding(0.5)).grounded is False

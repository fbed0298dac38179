"""Verified rewards for RL: is the answer right, and did the model reason before answering.

Step-Audio-R1's RL stage scores a sampled response with a checkable label, not a learned reward model:

- text prompts:  reward = correct
- audio prompts: reward = 0.8 * correct + 0.2 * reasoning-present (+ W * grounded, off by default)

`correct` applies `answers.is_correct` to the answer after the think block; `reasoning-present`
(the format reward, `think.reasoning_present`) asks for a non-empty think block that closes
properly. The report's ablation drops the format reward (weights 1 / 0), which lets RL shorten the
reasoning. The optional grounding term (`--grounding-reward W`; the paper has none) adds W when
`grounding.judge_grounding` calls the chain grounded. All functions here are pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..chat import parse_reasoning
from .answers import is_correct
from .grounding import judge_grounding
from .think import answer_after_think, reasoning_present

if TYPE_CHECKING:
    from ..data.manifest import Item


@dataclass(frozen=True)
class RewardWeights:
    """How correctness and format combine, separately for audio and text prompts."""

    audio_correct: float = 0.8
    audio_format: float = 0.2
    text_correct: float = 1.0
    text_format: float = 0.0
    grounding: float = 0.0  # audio prompts: + this when the chain is grounded (off: the paper has none)

    @classmethod
    def without_format(cls, text_correct: float = 1.0) -> RewardWeights:
        """The ablation: correctness only, for audio prompts too."""
        return cls(audio_correct=1.0, audio_format=0.0, text_correct=text_correct, text_format=0.0)

    def with_grounding(self, weight: float) -> RewardWeights:
        """The same weights plus a grounding term on audio prompts (`--grounding-reward W`)."""
        return RewardWeights(self.audio_correct, self.audio_format, self.text_correct, self.text_format, weight)


@dataclass(frozen=True)
class RewardBreakdown:
    """The scalar reward of one response and the two checks it is made of."""

    reward: float
    correct: bool
    formatted: bool
    grounded: bool | None = None  # judged only when the grounding term is on


def score_response(item: Item, text: str, weights: RewardWeights = RewardWeights(), *,
                   prefilled_open: bool = True) -> RewardBreakdown:
    """Reward of one generated `text` (what follows the prompt) for `item`.

    Audio items (`item.audio` set) use the audio weights, text-only items the text weights.
    """
    correct = is_correct(item, answer_after_think(text, prefilled_open=prefilled_open))
    formatted = reasoning_present(text, prefilled_open=prefilled_open)
    if item.audio is None:
        return RewardBreakdown(weights.text_correct * correct + weights.text_format * formatted, correct, formatted)
    reward = weights.audio_correct * correct + weights.audio_format * formatted
    grounded = None
    if weights.grounding:
        reasoning = parse_reasoning(text, prefilled_open=prefilled_open)[0]
        grounded = judge_grounding(reasoning, item).grounded
        reward += weights.grounding * grounded
    return RewardBreakdown(reward, correct, formatted, grounded)


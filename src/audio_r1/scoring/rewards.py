"""Verified rewards for RL: is the answer right, and did the model reason before answering.

Step-Audio-R1's RL stage scores a sampled response with a checkable label, not a learned reward model:

- text prompts:  reward = correct
- audio prompts: reward = 0.8 * correct + 0.2 * reasoning-present

`correct` applies `answers.is_correct` to the answer after the think block; `reasoning-present`
(the format reward, `think.reasoning_present`) asks for a non-empty think block that closes properly. The report's ablation drops
the format reward (weights 1 / 0), which lets RL shorten the reasoning. All functions here are pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .answers import is_correct
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

    @classmethod
    def without_format(cls, text_correct: float = 1.0) -> RewardWeights:
        """The ablation: correctness only, for audio prompts too."""
        return cls(audio_correct=1.0, audio_format=0.0, text_correct=text_correct, text_format=0.0)


@dataclass(frozen=True)
class RewardBreakdown:
    """The scalar reward of one response and the two checks it is made of."""

    reward: float
    correct: bool
    formatted: bool


def score_response(item: Item, text: str, weights: RewardWeights = RewardWeights(), *,
                   prefilled_open: bool = True) -> RewardBreakdown:
    """Reward of one generated `text` (what follows the prompt) for `item`.

    Audio items (`item.audio` set) use the audio weights, text-only items the text weights.
    """
    correct = is_correct(item, answer_after_think(text, prefilled_open=prefilled_open))
    formatted = reasoning_present(text, prefilled_open=prefilled_open)
    if item.audio is not None:
        w_correct, w_format = weights.audio_correct, weights.audio_format
    else:
        w_correct, w_format = weights.text_correct, weights.text_format
    return RewardBreakdown(w_correct * correct + w_format * formatted, correct, formatted)


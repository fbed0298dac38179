"""Is a generated text's think block well formed? One rule for the RL format reward and the verifier.

A response holds exactly one think block: the opening tag (written by the model, or prefilled by the
prompt, which ends in `<think>\\n` when thinking is on), reasoning, exactly one `</think>`, then the
answer. A second opening or closing tag is malformed; a block that never closes is unclosed (the
response was cut off); a block with nothing in it is empty.
"""

from __future__ import annotations

from ..chat import parse_reasoning
from ..config import THINK_CLOSE, THINK_OPEN


def think_problem(text: str, *, prefilled_open: bool | None = True, require_reasoning: bool = True,
                  think_open: str = THINK_OPEN, think_close: str = THINK_CLOSE) -> str | None:
    """What is wrong with `text`'s think block: "think_missing", "think_unclosed", "think_malformed",
    "think_empty", or None when it is well formed.

    `prefilled_open`: True when the prompt already opened the block (so `text` must not open it
    again), False when `text` must open it itself, None when either is fine (stored traces).
    """
    body = text
    stripped = text.lstrip()
    if prefilled_open is not True and stripped.startswith(think_open):
        body = stripped[len(think_open):]
    elif prefilled_open is False:
        return "think_missing"
    if think_close not in body:
        return "think_unclosed"
    if think_open in body or body.count(think_close) > 1:
        return "think_malformed"
    if require_reasoning and not body.split(think_close, 1)[0].strip():
        return "think_empty"
    return None


def reasoning_present(text: str, *, prefilled_open: bool = True, think_open: str = THINK_OPEN,
                      think_close: str = THINK_CLOSE) -> bool:
    """True when `text` holds one non-empty think block closed by exactly one `</think>` (the format reward)."""
    return think_problem(text, prefilled_open=prefilled_open, think_open=think_open, think_close=think_close) is None


def answer_after_think(text: str, *, prefilled_open: bool = True) -> str:
    """The answer that follows `</think>`; empty when the block never closes (a truncated response)."""
    return parse_reasoning(text, prefilled_open=prefilled_open)[1]

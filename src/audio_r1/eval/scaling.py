"""Test-time scaling: accuracy against thinking budget and against thinking length, inverted scaling.

Step-Audio-R1's claim is that, unlike earlier audio models, more thinking gives more accuracy. A run
with `--think-budgets 0,64,256,1024,none` answers every item once per budget (0 = an empty think
block); the report tabulates the strict score per budget and per think-length bucket, draws both as a
PNG, and flags *inverted scaling*: a larger budget whose 95% interval lies wholly below a smaller one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Think-length buckets (tokens): [0], [1, 64), [64, 256), [256, 1024), [1024, 4096), [4096, inf)
BUCKET_EDGES = (0, 1, 64, 256, 1024, 4096)


def parse_budgets(text: str) -> list[int | None]:
    """"0,64,256,1024,none" -> [0, 64, 256, 1024, None] (sorted, unique; "none" = unlimited)."""
    budgets: list[int | None] = []
    for piece in text.split(","):
        piece = piece.strip().lower()
        if not piece:
            continue
        if piece in ("none", "inf", "unlimited"):
            value: int | None = None
        else:
            try:
                value = int(piece)
            except ValueError:
                raise ValueError(f"--think-budgets: {piece!r} is not a token count or 'none'") from None
            if value < 0:
                raise ValueError(f"--think-budgets: {value} is negative")
        if value not in budgets:
            budgets.append(value)
    if not budgets:
        raise ValueError("--think-budgets needs at least one budget, e.g. 0,64,256,1024,none")
    return sorted(budgets, key=budget_order)


def budget_order(budget: int | None) -> float:
    return float("inf") if budget is None else float(budget)


def bucket_of(think_tokens: int) -> str:
    """The label of the bucket holding `think_tokens`, e.g. "64-255" or "4096+"."""
    edges = BUCKET_EDGES
    if think_tokens <= 0:
        return "0"
    for low, high in zip(edges[1:], edges[2:], strict=False):
        if think_tokens < high:
            return f"{low}-{high - 1}"
    return f"{edges[-1]}+"


def bucket_labels() -> list[str]:
    return ["0"] + [f"{low}-{high - 1}" for low, high in zip(BUCKET_EDGES[1:], BUCKET_EDGES[2:], strict=False)] + [
        f"{BUCKET_EDGES[-1]}+"]


def inverted_pairs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs (smaller budget, larger budget) where the larger one's interval lies wholly below.

    `rows` are ordered by budget and carry "label", "value", "low" and "high".
    """
    pairs = []
    for i, small in enumerate(rows):
        for large in rows[i + 1:]:
            if large["high"] < small["low"]:
                pairs.append({"from": small["label"], "to": large["label"], "from_value": small["value"],
                              "to_value": large["value"]})
    return pairs


def plot_scaling(path: Path, title: str, metric: str, by_budget: Sequence[dict[str, Any]],
                 by_bucket: Sequence[dict[str, Any]]) -> Path:
    """Two panels: the score against the budget, and against the thinking length actually used."""
    import matplotlib  # matplotlib: optional, only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: optional, only plots need it

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, rows, xlabel in ((left, by_budget, "thinking budget (tokens)"),
                               (right, by_bucket, "thinking length used (tokens)")):
        labels = [r["label"] for r in rows]
        values = [r["value"] for r in rows]
        errors = [[r["value"] - r["low"] for r in rows], [r["high"] - r["value"] for r in rows]]
        axis.errorbar(range(len(rows)), values, yerr=errors, marker="o", capsize=4)
        axis.set_xticks(range(len(rows)), labels)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    left.set_title("by budget (95% CI)")
    right.set_title("by think-length bucket (95% CI)")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

"""Score a model on the acoustic reasoning suite: accuracy per family, chance, grounding rate.

    audio-r1 eval suite --data runs/suite-v1/test.jsonl --model smol
    audio-r1 eval suite --data runs/suite-v1/test.jsonl --model smol --no-think   # forced empty think block

Per family it reports accuracy, the chance level (1 / number of options for multiple choice; for open
answers 0, or the chance an item records when its answers are closed, like "fast or slow"), and the
grounding rate: the share of reasoning chains that are grounded by the
project's one definition (`scoring.grounding.judge_grounding`, the same test MGRD filters with),
over the items that have true acoustic parameters, and the faithful rate: the share of chains whose
answer follows from their own claims (`scoring.faithfulness`), over the chains whose claims decide it. The surrogate-trap family, whose words
contradict the sound, is reported on its own line as well as in the overall figure.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data.manifest import Item, read_manifest
from ..processing import item_question
from ..scoring.answers import is_correct
from ..scoring.faithfulness import judge_faithfulness
from ..scoring.grounding import is_checkable, judge_grounding

TRAP_FAMILY = "surrogate_trap"


@dataclass
class ItemResult:
    id: str
    family: str
    correct: bool
    chance: float
    grounded: bool | None  # None: the item has no acoustic truth to check against
    reasoning: str
    answer: str
    think_tokens: int
    faithful: bool | None = None  # None: the chain's claims do not decide its answer


@dataclass
class FamilyScore:
    family: str
    n: int
    accuracy: float
    chance: float
    grounding_rate: float | None
    mean_think_tokens: float
    faithful_rate: float | None = None  # over the chains whose claims decide the answer
    faithful_n: int = 0
    faithful_grounded_rate: float | None = None  # the same, over the grounded chains among them
    faithful_grounded_n: int = 0

    @property
    def interval(self) -> float:
        """Half-width of a 95% normal-approximation interval on the accuracy."""
        return 1.96 * math.sqrt(max(self.accuracy * (1 - self.accuracy), 1e-9) / max(self.n, 1))


@dataclass
class SuiteReport:
    families: list[FamilyScore]
    overall: FamilyScore
    items: list[ItemResult] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

    def family(self, name: str) -> FamilyScore:
        return next(f for f in self.families if f.family == name)

    def to_markdown(self) -> str:
        lines = [
            "| family | n | accuracy | chance | grounding rate | faithful (judged) | mean think tokens |",
            "|---|---|---|---|---|---|---|",
        ]
        for score in [*self.families, self.overall]:
            name = f"**{score.family}**" if score is self.overall else score.family
            grounding = "n/a" if score.grounding_rate is None else f"{score.grounding_rate:.1%}"
            faithful = "n/a" if score.faithful_rate is None else f"{score.faithful_rate:.1%} ({score.faithful_n})"
            lines.append(
                f"| {name} | {score.n} | {score.accuracy:.1%} ± {score.interval:.1%} | {score.chance:.1%} "
                f"| {grounding} | {faithful} | {score.mean_think_tokens:.0f} |"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "overall": asdict(self.overall),
            "families": [asdict(f) for f in self.families],
            "items": [asdict(i) for i in self.items],
        }


def evaluate_suite(
    model,
    manifest: str | Path,
    *,
    think: bool = True,
    max_think_tokens: int | None = None,
    max_new_tokens: int = 192,
    batch_size: int = 8,
    limit: int | None = None,
    families: Sequence[str] | None = None,
    progress: bool = True,
) -> SuiteReport:
    """Ask `model` (an `AudioR1`) every item of a suite manifest and score the replies."""
    manifest = Path(manifest)
    items = [i for i in read_manifest(manifest) if families is None or i.family in families][:limit]
    results: list[ItemResult] = []
    bar = tqdm(total=len(items), desc=f"suite ({'think' if think else 'no think'})", disable=not progress)
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        questions = [(_audio(item, manifest.parent), item_question(item)) for item in batch]
        replies = model.ask_batch(questions, think=think, max_new_tokens=max_new_tokens,
                                  max_think_tokens=max_think_tokens)
        for item, reply in zip(batch, replies, strict=True):
            results.append(score_item(item, reply.reasoning, reply.answer, reply.usage.reasoning_tokens))
        bar.update(len(batch))
    bar.close()
    settings = {"manifest": str(manifest), "think": think, "max_think_tokens": max_think_tokens,
                "max_new_tokens": max_new_tokens, "n": len(results)}
    return summarise(results, settings)


def score_item(item: Item, reasoning: str, answer: str, think_tokens: int) -> ItemResult:
    # an open question with a closed answer set ("fast or slow") records its chance in params
    chance = 1.0 / len(item.choices) if item.choices else float(item.params.get("chance", 0.0))
    grounded = judge_grounding(reasoning, item).grounded if is_checkable(item) else None
    return ItemResult(item.id, item.family, is_correct(item, answer), chance, grounded, reasoning, answer, think_tokens,
                      judge_faithfulness(reasoning, answer, item))


def summarise(results: list[ItemResult], settings: dict[str, Any] | None = None) -> SuiteReport:
    by_family: dict[str, list[ItemResult]] = defaultdict(list)
    for result in results:
        by_family[result.family].append(result)
    families = [_score(name, group) for name, group in sorted(by_family.items())]
    return SuiteReport(families, _score("overall", results), results, settings or {})


def _score(name: str, group: list[ItemResult]) -> FamilyScore:
    n = len(group)
    checkable = [r for r in group if r.grounded is not None]
    judged = [r for r in group if r.faithful is not None]
    judged_grounded = [r for r in judged if r.grounded]
    return FamilyScore(
        family=name,
        n=n,
        accuracy=sum(r.correct for r in group) / n if n else 0.0,
        chance=sum(r.chance for r in group) / n if n else 0.0,
        grounding_rate=sum(bool(r.grounded) for r in checkable) / len(checkable) if checkable else None,
        mean_think_tokens=sum(r.think_tokens for r in group) / n if n else 0.0,
        faithful_rate=sum(bool(r.faithful) for r in judged) / len(judged) if judged else None,
        faithful_n=len(judged),
        faithful_grounded_rate=(sum(bool(r.faithful) for r in judged_grounded) / len(judged_grounded)
                                if judged_grounded else None),
        faithful_grounded_n=len(judged_grounded),
    )


def _audio(item: Item, root: Path) -> Path | None:
    return None if item.audio is None else root / item.audio


def write_report(report: SuiteReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_json(), indent=1) + "\n")

"""What every benchmark module provides: items, answer extraction, and the official and strict verdicts.

A benchmark turns a local copy of its data into `BenchItem`s (prompt parts in the order Step-Audio-R1
used, the reference, the fields its scorer needs). The runner asks the model, picks the text to score
(by default the answer after `</think>`, `chat.parse_reasoning`; with `score_text="raw"` the whole
reply, as an official script would be handed it) and gives the replies of one pass back to the
benchmark *in file order* (`extract_run`): official loops can carry state from one reply to the next
(MMSU reuses the previous letter for an empty reply). Verdicts kept for every item:

- `official`: the official scorer's verdict, quirks included; None when that scorer drops the item
  from its denominator (MMSU's unparseable answers, MMAU's items without output);
- `strict`: the same rule, but an unparseable or missing answer is simply wrong;
- `variants`: further, separately named verdicts that are *not* official (MMAU's `letter_aware`),
  every item counted; `Benchmark.variant_notes` says what each one is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .records import AudioRef, DataFiles

MATCH, JUDGE_BINARY, JUDGE_SCORE = "match", "judge_binary", "judge_score"


@dataclass
class BenchItem:
    """One question: prompt parts in order, ("text", str) or ("audio", AudioRef); the reference answer;
    `groups` for the per-category tables (first key = main category); `fields` for the scorer."""

    id: str
    parts: list[tuple[str, Any]]
    reference: str
    groups: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)

    def audio(self) -> list[AudioRef]:
        return [value for kind, value in self.parts if kind == "audio"]


@dataclass
class Loaded:
    """A benchmark read from disk: its items and the files (with hashes) they came from."""

    items: list[BenchItem]
    files: DataFiles
    source: Path


@dataclass
class Extraction:
    """What the scorer compares (`prediction`), whether anything could be extracted, and the verdicts.

    `note` says when the official verdict rests on something other than this reply (MMSU's carried
    letter)."""

    prediction: str | None
    parseable: bool
    official: bool | None = None
    strict: bool = False
    variants: dict[str, bool] = field(default_factory=dict)
    note: str | None = None


class Benchmark:
    """Base class of the benchmark modules; see the module docstring."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    scoring: ClassVar[str] = MATCH
    layout: ClassVar[str] = ""  # one line: the expected local layout (shown in errors and docs)
    official_script: ClassVar[bool] = False  # scored by an official script (so `score_text="raw"` applies)
    variant_notes: ClassVar[dict[str, str]] = {}  # name -> what that non-official column is

    def load(self, data: Path, limit: int | None = None) -> Loaded:
        raise NotImplementedError

    def extract(self, item: BenchItem, answer: str | None) -> Extraction:
        """Score one reply's text on its own (None when inference failed)."""
        raise NotImplementedError

    def extract_run(self, items: Sequence[BenchItem], answers: Sequence[str | None]) -> list[Extraction]:
        """Score one pass's replies in file order (`answers[i]` belongs to `items[i]`).

        The order is the order of the benchmark's table, as an official script reads its results file;
        items without a reply yet are left out by the caller. The default scores each reply alone.
        """
        if len(items) != len(answers):
            raise ValueError(f"{len(items)} items but {len(answers)} answers")
        return [self.extract(item, answer) for item, answer in zip(items, answers, strict=True)]

    # judge benchmarks ------------------------------------------------------------------------------

    def judge_prompt(self, item: BenchItem, answer: str) -> str:
        raise NotImplementedError

    def parse_judgement(self, reply: str) -> Any:
        """The judge's verdict (bool) or score (int) from its reply; None for an invalid reply."""
        raise NotImplementedError

    def offline_judgement(self, item: BenchItem, answer: str) -> Any:
        """A rule-based verdict when no judge is configured; None means the benchmark needs a judge."""
        return None

    def judge_settings(self) -> dict[str, Any]:
        """Pinned judge sampling settings and runs (override with flags)."""
        return {}


def first_key(groups: dict[str, str]) -> str:
    return next(iter(groups)) if groups else "category"

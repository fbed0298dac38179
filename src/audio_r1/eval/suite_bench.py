"""Our acoustic reasoning suite as one benchmark of the runner (`audio-r1 eval suite`).

Layout: a suite manifest (`runs/suite-v1/test.jsonl`) beside its `audio/` folder. Prompts are the
suite's own (audio first, then the question); answers are scored by `scoring.answers.is_correct`, so the
official and strict verdicts agree except that strict also needs a parseable answer. The family table
with chance levels and grounding rates (`eval/suite.py`) is built from the same cached replies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.manifest import ManifestError, read_manifest
from ..processing import item_question
from ..scoring.answers import choice_index, is_correct, parse_number
from .base import BenchItem, Benchmark, Extraction, Loaded
from .errors import BenchmarkDataError
from .records import DataFiles, resolve_audio, sha256_file
from .suite import SuiteReport, score_item, summarise


class Suite(Benchmark):
    name = "suite"
    title = "Acoustic reasoning suite"
    layout = "a suite manifest such as runs/suite-v1/test.jsonl beside its audio/ folder"
    folder_manifest = "test.jsonl"  # the manifest read when --data names a folder
    generator = "audio-r1 data suite"

    def load(self, data: Path, limit: int | None = None) -> Loaded:
        manifest = Path(data)
        if manifest.is_dir():
            manifest = manifest / self.folder_manifest
        if not manifest.is_file():
            raise BenchmarkDataError(manifest, f"{self.name} manifest not found (generate one with `{self.generator}`)")
        try:
            entries = read_manifest(manifest)[:limit]
        except ManifestError as error:
            raise BenchmarkDataError(error.path, error.reason, row=error.line, field=error.field) from None
        files = DataFiles(tables={str(manifest): sha256_file(manifest)})
        items = []
        for i, entry in enumerate(entries, 1):
            parts: list[tuple[str, Any]] = []
            if entry.audio is not None:
                parts.append(("audio", resolve_audio(entry.audio, [manifest.parent], files, manifest, i, "audio")))
            parts.append(("text", item_question(entry)))
            items.append(BenchItem(entry.id, parts, entry.answer, {"family": entry.family}, {"item": entry}))
        return Loaded(items, files, manifest)

    def extract(self, item: BenchItem, answer: str | None) -> Extraction:
        entry = item.fields["item"]
        text = (answer or "").strip()
        if entry.answer_type == "choice":
            parseable = choice_index(entry.choices or [], text) is not None
        elif entry.answer_type == "number":
            parseable = parse_number(text) is not None
        else:
            parseable = bool(text)
        correct = answer is not None and is_correct(entry, answer)
        return Extraction(text, parseable, official=correct, strict=correct and parseable)


class Generalisation(Suite):
    """The generalisation set (`audio-r1 data generalisation`): the suite's scoring on sound made elsewhere."""

    name = "generalisation"
    title = "Generalisation set"
    layout = "generalisation.jsonl (from `audio-r1 data generalisation`) beside its audio/ folder"
    folder_manifest = "generalisation.jsonl"
    generator = "audio-r1 data generalisation"


def suite_report(items: list[BenchItem], replies: dict[str, dict[str, Any]], settings: dict[str, Any]) -> SuiteReport:
    """The family table (accuracy, chance, grounding) from cached inference records keyed by item id."""
    results = []
    for item in items:
        reply = replies.get(item.id)
        if reply is None:
            continue
        results.append(score_item(item.fields["item"], reply.get("reasoning") or "", reply.get("answer") or "",
                                  int(reply.get("think_tokens") or 0)))
    return summarise(results, settings)

"""MMSU: 5,000 spoken-language questions (47 sub-tasks), four options each.

Layout: `mmsu.jsonl` (or `.json`/`.parquet`) whose rows have `id`, `audio_path` (relative to the
table's folder), `question`, `choice_a` ... `choice_d`, `answer_gt` (the option text), `task_name`,
`category`, `sub-category`. (VoiceBench's "mmsu" is a different set.)

Official scoring (`mmsu_evaluation.py`), its loop reproduced in file order, quirks kept: a null
reply (here: failed inference) makes `.strip()` fail and is skipped; otherwise the reply is stripped and
its newlines removed; the letter is the first character if it is one of A-D (so "A woman" reads as A),
else the second-to-last character ("... is B."); a reply with neither is dropped from the denominator
(which inflates accuracy). A reply that is "None", empty or only whitespace is counted, but the loop
never assigns its letter, so it is scored with the *previous* reply's letter (`official_letters`;
before any letter the official script stops with an error: here it is counted wrong). The letter's
option must equal `answer_gt` exactly. The strict score counts dropped, skipped and letter-less replies
wrong and never reuses a letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .base import BenchItem, Benchmark, Extraction, Loaded
from .errors import BenchmarkDataError
from .mmau import choice_prompt
from .records import DataFiles, claim_id, find_table, read_table, require, resolve_audio, sha256_file

CHOICE_FIELDS = ("choice_a", "choice_b", "choice_c", "choice_d")


@dataclass(frozen=True)
class OfficialLetter:
    """What the official loop makes of one reply: the letter it compares (None: none), whether the
    reply is counted (False: the loop `continue`s first), and whether the letter is an earlier reply's."""

    letter: str | None
    counted: bool
    carried: bool = False


def _letter_of(predict: str) -> str | None:
    """The first character if it is A-D, else the second-to-last ("The answer is B."), else None."""
    if predict[0] in "ABCD":
        return predict[0]
    if len(predict) > 1 and predict[-2] in "ABCD":
        return predict[-2]
    return None


def official_letters(responses: Sequence[str | None]) -> list[OfficialLetter]:
    """MMSU's official loop over the replies in file order, including its carried-over letter.

    "None", "" and whitespace-only replies skip the assignment, so the letter of the last reply that had
    one is compared again; a null reply and a reply without a letter are not counted and leave it as is.
    """
    previous: str | None = None
    verdicts = []
    for response in responses:
        if not isinstance(response, str):  # `None.strip()` raises; the loop `continue`s
            verdicts.append(OfficialLetter(None, counted=False))
            continue
        predict = response.strip().replace("\n", "")
        if predict == "None" or not predict:
            verdicts.append(OfficialLetter(previous, counted=True, carried=previous is not None))
            continue
        letter = _letter_of(predict)
        if letter is not None:
            previous = letter
        verdicts.append(OfficialLetter(letter, counted=letter is not None))
    return verdicts


def official_letter(response: object) -> tuple[str | None, bool]:
    """(letter, counted) of one reply on its own, i.e. with no earlier letter to reuse."""
    verdict = official_letters([response if isinstance(response, str) else None])[0]
    return verdict.letter, verdict.counted


def _note(verdict: OfficialLetter) -> str | None:
    if verdict.carried:
        return f"official: reuses the previous reply's letter {verdict.letter} (empty or 'None' reply)"
    if verdict.counted and verdict.letter is None:
        return "official: empty or 'None' reply before any letter (the official script would stop); counted wrong"
    return None


class MMSU(Benchmark):
    name = "mmsu"
    title = "MMSU"
    layout = "mmsu.jsonl (rows with audio_path) beside the audio files"
    official_script = True

    def load(self, data: Path, limit: int | None = None) -> Loaded:
        table = find_table(data, ["mmsu.jsonl", "mmsu.json", "mmsu.parquet"])
        files = DataFiles(tables={str(table): sha256_file(table)})
        rows = read_table(table)[:limit]
        roots = [table.parent, Path(data)]
        items, seen = [], set()
        for i, row in enumerate(rows, 1):
            item_id = claim_id(str(require(row, "id", table, i, (str, int))), seen, table, i)
            choices = [str(row.get(name) or "") for name in CHOICE_FIELDS]
            if not choices[0] or not choices[1]:
                raise BenchmarkDataError(table, "choice_a and choice_b are required", row=i, field="choice_a")
            while not choices[-1]:
                choices.pop()
            answer = require(row, "answer_gt", table, i)
            audio_field = "audio_path" if "audio_path" in row else "audio"
            audio = resolve_audio(require(row, audio_field, table, i, (str, dict)), roots, files, table, i, audio_field)
            question = require(row, "question", table, i)
            items.append(BenchItem(
                id=item_id,
                parts=[("text", choice_prompt(question, choices)), ("audio", audio)],
                reference=answer,
                groups={"category": str(row.get("category", "unknown")),
                        "sub-category": str(row.get("sub-category", "unknown")),
                        "task_name": str(row.get("task_name", "unknown"))},
                fields={"choices": {letter: str(row.get(name) or "") for letter, name in zip("ABCD", CHOICE_FIELDS,
                                                                                              strict=True)}},
            ))
        return Loaded(items, files, table)

    def extract(self, item: BenchItem, answer: str | None) -> Extraction:
        """One reply scored as if it were the first of the file (no earlier letter to reuse)."""
        return self.extract_run([item], [answer])[0]

    def extract_run(self, items: Sequence[BenchItem], answers: Sequence[str | None]) -> list[Extraction]:
        """The official loop over one pass's replies in file order; strict never reuses a letter."""
        if len(items) != len(answers):
            raise ValueError(f"{len(items)} items but {len(answers)} answers")
        extractions = []
        for item, verdict in zip(items, official_letters(answers), strict=True):
            correct = verdict.letter is not None and item.fields["choices"][verdict.letter] == item.reference
            own = verdict.letter is not None and not verdict.carried
            extractions.append(Extraction(verdict.letter, own, official=correct if verdict.counted else None,
                                          strict=correct and own, note=_note(verdict)))
        return extractions

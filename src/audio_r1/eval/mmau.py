"""MMAU test-mini: 1,000 multiple-choice questions on sound, music and speech.

Layout: `mmau-test-mini.json` (a JSON list) beside `test-mini-audios/<id>.wav`; each item has `id`,
`audio_id`, `question`, `choices`, `answer` (the option text), `task`, `difficulty`, `sub-category`.

The official column is exactly the official `evaluation.py`: `string_match(answer, model_output,
choices)` on the text it is given, so a bare letter ("A", "(A)") fails and "(C) Cm7b5" fails when
another option has the token "c"; items without `model_output` (here: failed inference) are skipped.
The strict column is the same rule with failed inference counted wrong. A third, separately named
column, `letter_aware`, is *not* official: it first maps a leading option letter ("B", "(B)", "B.",
"B. text") to its option text, unless the reply already names an option ("D" among note names),
then applies the same rule with every item counted.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..config import LETTERS
from .base import BenchItem, Benchmark, Extraction, Loaded
from .errors import BenchmarkDataError
from .records import DataFiles, claim_id, find_table, read_table, require, resolve_audio, sha256_file

# The multiple-choice instruction of Step-Audio-R1's MMAU/MMSU prompts (text first, then the audio).
CHOICE_INSTRUCTION = ("Please choose the answer from the following options, do not provide any additional "
                      "explanations or content: ")

_WORD = re.compile(r"\b\w+\b")
_LETTER_ANSWER = re.compile(r"^\s*(?:\(([A-J])\)|([A-J])(?:[.:)]|(?=\s*$)))\s*(.*)$", re.DOTALL)


def choice_prompt(question: str, choices: list[str]) -> str:
    """Question, the instruction, then one "A. option" line per option (Step-Audio-R1's format)."""
    lines = "".join(f"{LETTERS[i]}. {choice}\n" for i, choice in enumerate(choices))
    return f"{question}\n{CHOICE_INSTRUCTION}\n{lines}"


def _tokens(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def string_match(answer: str, prediction: str, choices: list[str]) -> bool:
    """MMAU's official rule: all answer tokens present, no token unique to a wrong option present."""
    prediction_tokens = _tokens(prediction)
    answer_tokens = _tokens(answer)
    if not prediction_tokens:
        return False
    incorrect: set[str] = set()
    for choice in choices:
        choice_tokens = _tokens(choice)
        if choice_tokens != answer_tokens:
            incorrect |= choice_tokens - answer_tokens
    return answer_tokens <= prediction_tokens and prediction_tokens.isdisjoint(incorrect)


def letter_to_text(answer: str, choices: list[str]) -> str:
    """Replace a leading option letter by its option text: "B" -> choices[1]; "B. text" -> "text".

    "A woman" is left alone: a letter only counts when bare or followed by ".", ":" or ")".
    """
    match = _LETTER_ANSWER.match(answer)
    if not match:
        return answer
    index = LETTERS.index(match.group(1) or match.group(2))
    if index >= len(choices):
        return answer
    rest = match.group(3).strip()
    return rest if rest else choices[index]


def names_an_option(answer: str, choices: list[str]) -> bool:
    """Whether the reply's word tokens are exactly one option's ("D" when an option is the note D)."""
    tokens = _tokens(answer)
    return bool(tokens) and any(_tokens(choice) == tokens for choice in choices)


def letter_aware_text(answer: str, choices: list[str]) -> str:
    """What the `letter_aware` column compares: the reply itself when it names an option, else the
    reply with a leading option letter mapped to its text (`letter_to_text`)."""
    answer = answer.strip()
    return answer if names_an_option(answer, choices) else letter_to_text(answer, choices)


class MMAU(Benchmark):
    name = "mmau"
    title = "MMAU test-mini"
    layout = "mmau-test-mini.json beside test-mini-audios/*.wav"
    official_script = True
    variant_notes = {"letter_aware": "not official: MMAU's rule after mapping a leading option letter "
                                     "(\"B\", \"(B)\", \"B. text\") to its option text; every item counts"}

    def load(self, data: Path, limit: int | None = None) -> Loaded:
        table = find_table(data, ["mmau-test-mini.json", "mmau-test-mini.jsonl"])
        files = DataFiles(tables={str(table): sha256_file(table)})
        rows = read_table(table)[:limit]
        roots = [table.parent, Path(data)]
        items, seen = [], set()
        for i, row in enumerate(rows, 1):
            item_id = claim_id(str(require(row, "id", table, i, (str, int))), seen, table, i)
            choices = require(row, "choices", table, i, list)
            if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise BenchmarkDataError(table, "expected a list of at least two option strings", row=i, field="choices")
            answer = require(row, "answer", table, i)
            audio = resolve_audio(require(row, "audio_id", table, i), roots, files, table, i, "audio_id")
            question = require(row, "question", table, i)
            items.append(BenchItem(
                id=item_id,
                parts=[("text", choice_prompt(question, choices)), ("audio", audio)],
                reference=answer,
                groups={"task": str(row.get("task", "unknown")), "difficulty": str(row.get("difficulty", "unknown")),
                        "sub-category": str(row.get("sub-category", "unknown"))},
                fields={"choices": choices, "question": question},
            ))
        return Loaded(items, files, table)

    def extract(self, item: BenchItem, answer: str | None) -> Extraction:
        """Official = `string_match` on the reply as given (None: skipped, as without `model_output`)."""
        choices = item.fields["choices"]
        if answer is None:  # no model_output: the official script skips the item
            return Extraction(None, False, official=None, strict=False, variants={"letter_aware": False})
        correct = string_match(item.reference, answer, choices)  # the reply as given
        letter_aware = string_match(item.reference, letter_aware_text(answer, choices), choices)
        return Extraction(answer, bool(_tokens(answer)), official=correct, strict=correct,
                          variants={"letter_aware": letter_aware})

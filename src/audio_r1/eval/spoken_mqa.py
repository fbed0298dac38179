"""Spoken-MQA: spoken math questions in four splits (short_digit, long_digit, single_step_reasoning,
multi_step_reasoning).

Layout: a folder with one table per split, `short_digit.jsonl` ... `multi_step_reasoning.jsonl`
(`.json`/`.parquet`, optionally prefixed `spoken-mqa_`), or one table whose rows carry `split`. Rows:
`context` (the audio: a path relative to the table, or an audio object), `context_transcript`,
`instruction` ({"text": ...}), `answer` ({"text": ...}: a number, GSM8K style "... #### 42", or a
list of gold values).

Official scoring is AudioBench's (`answer_clean` for "gsm8k" + `compare_answer_with_groundtruth`),
quirks kept: split on the last "The answer is" (or "####"); if a trigger occurs twice only the first
paragraph counts; numbers match `-?\\d+/?\\.?\\d*`; the first number after the trigger, else the last
one; commas removed and trailing zeros dropped through float ("5.50" -> "5.5", "3/4" -> "0.75");
compared as lower-case strings after cutting the prediction to 100 characters. The arithmetic
splits compare against the raw reference text; the reasoning splits normalise it ("#### n", zeros).
An empty prediction and an empty reference both become "empty" (and so match each other).

Gold values: a list `answer.text` is passed on whole, `compare_answer_with_groundtruth(prediction,
*golds)`, as AudioBench does: the first is the reference string, a second one is `groundtruth_num`:
a number there is compared numerically (`round(p) == n` for an int, within 4% for a float); any other
second value never matches a number (its list comparison fails). More than two values make the
official call fail, so they are refused when loading. Reasoning-split golds are each normalised.

A null prediction (here: failed inference) skips the loop's assignment in AudioBench, so the split's
previous prediction is compared again (`official_predictions`; before any, AudioBench stops with an
error: "empty" here). The strict score counts a prediction without a number, or a failed one, wrong.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from pathlib import Path

from .base import BenchItem, Benchmark, Extraction, Loaded
from .errors import BenchmarkDataError
from .records import DataFiles, claim_id, nested_text, read_table, require, resolve_audio, sha256_file

SPLITS = ("short_digit", "long_digit", "single_step_reasoning", "multi_step_reasoning")
ARITHMETIC_SPLITS = ("short_digit", "long_digit")
PROMPT = "Solve the given math question step by step."  # Step-Audio-R1's Spoken-MQA prompt (text, then audio)
TRIGGERS = ("The answer is:", "The answer is", "the answer is", "####")
_TRIGGER_RE = re.compile("|".join(TRIGGERS))
_NUMBER_RE = re.compile(r"-?\d+/?\.?\d*")
_CHOICE_REFERENCES = ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)")


def _arithmetic(text: str) -> float:
    """`eval` of a number or a quotient of numbers, without `eval`: same results and same SyntaxErrors."""
    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return value(node.left) / value(node.right)
        raise ValueError("not a number")
    return value(ast.parse(text, mode="eval").body)


def delete_extra_zero(n: str) -> str:
    """AudioBench's `delete_extra_zero`: "5.0" -> "5", "5.50" -> "5.5", "3/4" -> "0.75"; else unchanged."""
    try:
        number: float = float(n)
    except ValueError:
        try:
            number = _arithmetic(n)
        except Exception:  # noqa: BLE001 - the original returns its input on any failure
            return n
    if isinstance(number, int):
        return str(number)
    text = str(number).rstrip("0")
    return str(int(text.rstrip(".")) if text.endswith(".") else float(text))


def answer_clean(prediction: str) -> str:
    """The number AudioBench extracts from a reply ("" when there is none)."""
    prediction = prediction.strip("\n")
    if any(prediction.count(trigger) > 1 for trigger in TRIGGERS):
        prediction = prediction.split("\n\n")[0]
    pieces = _TRIGGER_RE.split(prediction)
    after_trigger = len(pieces) > 1
    if after_trigger:
        prediction = pieces[-1]
    prediction = prediction.strip("\n").rstrip(".").rstrip("/").strip(" ").replace(",", "")
    numbers = [delete_extra_zero(s.replace(",", "")) for s in _NUMBER_RE.findall(prediction)]
    if not numbers:
        return ""
    chosen = numbers[0] if after_trigger else numbers[-1]
    return chosen.rstrip(".").rstrip("/")


def _normalise_reasoning(answer: str) -> str:
    """A reasoning-split gold as AudioBench compares it: the number after "#### ", zeros dropped."""
    if "####" in answer:
        answer = delete_extra_zero(answer.split("#### ")[-1].replace(",", ""))
    return delete_extra_zero(answer)


def reference_answer(answer: str, split: str) -> str:
    """The reference as AudioBench compares it: raw for arithmetic, normalised for reasoning splits."""
    return answer if split in ARITHMETIC_SPLITS else _normalise_reasoning(answer)


def reference_values(answer: str | Sequence[object], split: str) -> list[object]:
    """The gold values AudioBench passes on as `compare_answer_with_groundtruth(prediction, *values)`.

    A string is one reference ("empty" when empty); a list is passed on whole (reasoning golds each
    normalised, the first as a string); an empty list becomes "empty".
    """
    if isinstance(answer, str):
        return [reference_answer(answer, split) or "empty"]
    if not answer:
        return ["empty"]
    if split in ARITHMETIC_SPLITS:
        return [str(answer[0]), *answer[1:]]
    return [_normalise_reasoning(str(value)) for value in answer]


def floatify(text: object) -> int | float | None:
    """AudioBench's `floatify`: float(text), as an int when whole; None when it is not a number."""
    try:
        number = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return round(number) if number.is_integer() else number


def number_it(text: str) -> int | float | None:
    """AudioBench's `number_it` for what `answer_clean` returns: a number, or a quotient "a/b"."""
    number = floatify(text)
    if number is not None or text.count("/") != 1:
        return number
    numerator, denominator = (floatify(part) for part in text.split("/"))
    if numerator is None or denominator is None or denominator == 0:
        return None
    return floatify(numerator / denominator)


def compare_numbers(prediction: int | float | None, gold: int | float) -> bool:
    """AudioBench's `compare_two_numbers`: `round(p) == gold` for an int gold, else within 4% of it."""
    if prediction is None or math.isnan(prediction):
        return False
    if isinstance(gold, int):
        return round(prediction) == gold
    eps = abs(gold) * 0.04
    return gold - eps <= prediction <= gold + eps


def compare(answer: str, reference: str, number: object = None) -> bool:
    """AudioBench's `compare_answer_with_groundtruth(answer, groundtruth_str, groundtruth_num)`."""
    if "\\text{" in answer:
        answer = answer.replace("\\text{", "").rstrip("}")
    if "\\text{" in reference:
        reference = reference.replace("\\text{", "").rstrip("}")
    if reference.lower() in _CHOICE_REFERENCES:
        return reference.lower() in answer.lower()
    if answer.lower() == reference.lower():
        return True
    if isinstance(number, int | float):
        return compare_numbers(number_it(answer), number)
    # Otherwise AudioBench compares `list(eval(answer))` with `number` as lists; `answer_clean` only
    # returns a number or "empty", whose list() fails, so that comparison is always False.
    return False


def official_verdict(reply: str | None, answer: str | Sequence[object], split: str,
                     previous: str = "") -> tuple[str, bool]:
    """(extracted number, correct) exactly as the official scorer decides; a null reply reuses `previous`."""
    prediction = answer_clean(reply) if reply is not None else previous
    return prediction, official_match(prediction, answer, split)


def official_match(prediction: str, answer: str | Sequence[object], split: str) -> bool:
    """AudioBench's comparison of one extracted number ("" for none) with the gold value(s)."""
    values = reference_values(answer, split)
    if len(values) > 2:
        raise ValueError(f"the official scorer takes at most two gold values, got {len(values)}")
    return compare((prediction or "empty")[:100], *values)  # type: ignore[arg-type]


def official_predictions(replies: Sequence[str | None]) -> list[tuple[str, bool]]:
    """(extracted number, carried) for one split's replies in file order, as AudioBench's loop assigns
    them: a null reply keeps the previous prediction ("" before any, compared as "empty")."""
    previous, out = "", []
    for reply in replies:
        if reply is None:
            out.append((previous, True))
            continue
        previous = answer_clean(reply)
        out.append((previous, False))
    return out


def _golds(row: dict, table: Path, index: int) -> str | list[object]:
    """The row's gold: one string, or the list `answer.text` (at most two values, as the scorer takes)."""
    value = require(row, "answer", table, index, (str, dict, int, float))
    if isinstance(value, dict) and isinstance(value.get("text"), list):
        golds = list(value["text"])
        if len(golds) > 2:
            raise BenchmarkDataError(table, f"answer.text has {len(golds)} values; the official scorer takes at "
                                            "most two (a reference string and a number)", row=index, field="answer")
        return golds
    if isinstance(value, int | float):
        return str(value)
    return nested_text(row, "answer", table, index)


def _split_of(path: Path) -> str | None:
    stem = path.stem.removeprefix("spoken-mqa_").removeprefix("spoken_mqa_")
    return stem if stem in SPLITS else None


def _tables(data: Path) -> list[Path]:
    if data.is_file():
        return [data]
    if not data.is_dir():
        raise BenchmarkDataError(data, "no such file or folder")
    found = [p for split in SPLITS for prefix in ("", "spoken-mqa_") for suffix in (".jsonl", ".json", ".parquet")
             if (p := data / f"{prefix}{split}{suffix}").is_file()]
    if not found:
        raise BenchmarkDataError(data, f"no split tables found; expected e.g. {SPLITS[0]}.jsonl ... {SPLITS[-1]}.jsonl")
    return found


class SpokenMQA(Benchmark):
    name = "spoken-mqa"
    title = "Spoken-MQA"
    layout = "short_digit.jsonl, long_digit.jsonl, single_step_reasoning.jsonl, multi_step_reasoning.jsonl"
    official_script = True

    def load(self, data: Path, limit: int | None = None) -> Loaded:
        data = Path(data)
        files = DataFiles()
        items, seen = [], set()
        for table in _tables(data):
            files.tables[str(table)] = sha256_file(table)
            for i, row in enumerate(read_table(table), 1):
                if limit is not None and len(items) >= limit:
                    break
                split = _split_of(table) or row.get("split")
                if split not in SPLITS:
                    raise BenchmarkDataError(table, f"unknown split {split!r}; name the table after its split or "
                                                    f"give rows a 'split' in {', '.join(SPLITS)}", row=i, field="split")
                item_id = claim_id(f"{split}/{row.get('id', i)}", seen, table, i)
                golds = _golds(row, table, i)
                answer = golds if isinstance(golds, str) else (str(golds[0]) if golds else "")
                audio = resolve_audio(require(row, "context", table, i, (str, dict)), [table.parent, data], files,
                                      table, i, "context")
                instruction = nested_text(row, "instruction", table, i) if "instruction" in row else ""
                items.append(BenchItem(
                    id=item_id,
                    parts=[("text", PROMPT), ("audio", audio)],
                    reference=answer,
                    groups={"split": split},
                    fields={"split": split, "golds": golds, "transcript": row.get("context_transcript"),
                            "instruction": instruction},
                ))
        return Loaded(items, files, data)

    def extract(self, item: BenchItem, answer: str | None) -> Extraction:
        """One reply scored as if it were the first of its split."""
        return self.extract_run([item], [answer])[0]

    def extract_run(self, items: Sequence[BenchItem], answers: Sequence[str | None]) -> list[Extraction]:
        """AudioBench's loop, one per split, over the replies in file order."""
        if len(items) != len(answers):
            raise ValueError(f"{len(items)} items but {len(answers)} answers")
        by_split: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            by_split.setdefault(item.fields["split"], []).append(index)
        extractions: list[Extraction | None] = [None] * len(items)
        for indices in by_split.values():
            predictions = official_predictions([answers[i] for i in indices])
            for i, (prediction, carried) in zip(indices, predictions, strict=True):
                extractions[i] = self._verdict(items[i], prediction, carried)
        return [e for e in extractions if e is not None]

    def _verdict(self, item: BenchItem, prediction: str, carried: bool) -> Extraction:
        correct = official_match(prediction, item.fields.get("golds", item.reference), item.fields["split"])
        own = not carried and bool(prediction)
        note = f"official: failed reply, the previous prediction {prediction or 'empty'!r} is compared" if carried \
            else None
        return Extraction(None if carried else prediction, own, official=correct, strict=correct and own, note=note)

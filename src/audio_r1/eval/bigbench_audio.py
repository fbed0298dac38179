"""Big Bench Audio: 1,000 spoken Big Bench Hard questions (formal_fallacies, navigate, object_counting,
web_of_lies), 250 each.

Layout: a folder with `metadata.jsonl` (rows `{category, official_answer, file_name, id}`) and the
clips `data/question_<id>.mp3`. An optional `transcript` (or `question`) field is passed to the judge
as the question "for reference only"; the release has none.

Scored by an LLM judge with Artificial Analysis' published prompt (pinned below; the card's "\\n\\n"
is read as two newlines), averaged over 3 runs by default. Without a judge, an offline rule-based
verdict handles the closed answers: the first "valid"/"invalid" or "yes"/"no", or the last number
(digits or words) for object counting. The official score leaves invalid judge replies out; the
strict score counts them wrong.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..scoring.answers import words_to_number
from .base import JUDGE_BINARY, BenchItem, Benchmark, Extraction, Loaded
from .records import DataFiles, claim_id, find_table, read_table, require, resolve_audio, sha256_file

# Step-Audio-R1's Big Bench Audio instruction (after the audio), verbatim from its release. In English:
# 'Answer the question above directly with only "valid" or "invalid", "yes" or "no", or a number;
# add no other description.'
INSTRUCTION = '仅用 "valid" 或 "invalid"，"yes" 或 "no"，或者数字来直接回答上面的问题，不要添加任何其他描述。'

# Artificial Analysis' published judge prompt. Written line by line because two lines end in spaces.
JUDGE_PROMPT = "\n".join([
    "Assess whether the following CANDIDATE ANSWER is CORRECT or INCORRECT.",
    "For the CANDIDATE ANSWER to be correct, it must be consistent with the OFFICIAL ANSWER.",
    "If the CANDIDATE ANSWER contradicts itself, assess the first proposed answer.",
    "If the CANDIDATE ANSWER provides a final answer and working, assess the final answer only.",
    "If the CANDIDATE ANSWER includes irrelevant information, assess only the relevant information.",
    "If the CANDIDATE ANSWER includes a numeric value it is ok if it is spelled e.g. 7 or seven",
    "It is ok if the CANDIDATE ANSWER involves a misspelling of a person's name e.g. Leda or Lida, Autry or Audrie.",
    "  ",
    "The question, for reference only: START QUESTION {question} \n\nEND QUESTION",
    "",
    "The OFFICIAL ANSWER:{official_answer}",
    "",
    "BEGIN CANDIDATE ANSWER TO ASSESS",
    "",
    "{candidate_answer}",
    "",
    "END CANDIDATE ANSWER TO ASSESS",
    "",
    "Reply only with CORRECT or INCORRECT.",
])

NO_TRANSCRIPT = "(a spoken question; the local copy has no transcript)"
CATEGORIES = ("formal_fallacies", "navigate", "object_counting", "web_of_lies")
_VERDICT_RE = re.compile(r"\b(INCORRECT|CORRECT)\b")
_VALIDITY_RE = re.compile(r"\b(invalid|not valid|valid)\b")
_YES_NO_RE = re.compile(r"\b(yes|no)\b")
_NUMBER_WORD_RE = re.compile(r"\d+(?:\.\d+)?|[a-z]+")
_NUMBER_WORDS = set(("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                     "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
                     "hundred thousand").split())


def answer_kind(category: str, official: str) -> str:
    """"validity", "yes_no" or "count", from the category or else the official answer."""
    if category == "formal_fallacies" or official.lower() in ("valid", "invalid"):
        return "validity"
    if category in ("navigate", "web_of_lies") or official.lower() in ("yes", "no"):
        return "yes_no"
    return "count"


def last_number(text: str) -> float | None:
    """The last number in `text`, in digits ("12") or words ("twenty-one", "one hundred and five")."""
    found: float | None = None
    run: list[str] = []

    def flush() -> None:
        nonlocal found, run
        while run and run[-1] == "and":
            run.pop()
        value = words_to_number(" ".join(run)) if run else None
        found = float(value) if value is not None else found
        run = []

    for token in _NUMBER_WORD_RE.findall(text.lower().replace("-", " ").replace(",", "")):
        if token[0].isdigit():
            flush()
            found = float(token)
        elif token in _NUMBER_WORDS or (token == "and" and run):
            run.append(token)
        else:
            flush()
    flush()
    return found


def rule_verdict(category: str, official: str, answer: str) -> bool | None:
    """Offline verdict on a closed answer; None when the answer names none of the expected values."""
    text = answer.lower()
    kind = answer_kind(category, official)
    if kind == "validity":
        match = _VALIDITY_RE.search(text)
        return None if match is None else ("valid" if match.group(1) == "valid" else "invalid") == official.lower()
    if kind == "yes_no":
        match = _YES_NO_RE.search(text)
        return None if match is None else match.group(1) == official.lower()
    got, want = last_number(text), last_number(official)
    return None if got is None or want is None else got == want


def parse_verdict(reply: str) -> bool | None:
    """CORRECT -> True, INCORRECT -> False; a reply with neither (or both) is invalid (None)."""
    words = set(_VERDICT_RE.findall(reply.upper()))
    return ("CORRECT" in words) if len(words) == 1 else None


class BigBenchAudio(Benchmark):
    name = "bigbench-audio"
    title = "Big Bench Audio"
    scoring = JUDGE_BINARY
    layout = "metadata.jsonl beside data/question_<id>.mp3"

    def load(self, data: Path, limit: int | None = None) -> Loaded:
        table = find_table(data, ["metadata.jsonl", "metadata.json", "metadata.parquet"])
        files = DataFiles(tables={str(table): sha256_file(table)})
        items, seen = [], set()
        for i, row in enumerate(read_table(table)[:limit], 1):
            item_id = claim_id(str(require(row, "id", table, i, (str, int))), seen, table, i)
            official = str(require(row, "official_answer", table, i, (str, int))).strip()
            category = require(row, "category", table, i)
            audio_field = "file_name" if "file_name" in row else "audio"
            audio = resolve_audio(require(row, audio_field, table, i, (str, dict)), [table.parent, Path(data)], files,
                                  table, i, audio_field)
            question = row.get("transcript") or row.get("question") or NO_TRANSCRIPT
            items.append(BenchItem(
                id=item_id,
                parts=[("audio", audio), ("text", INSTRUCTION)],
                reference=official,
                groups={"category": category},
                fields={"question": str(question)},
            ))
        return Loaded(items, files, table)

    def extract(self, item: BenchItem, answer: str | None) -> Extraction:
        text = (answer or "").strip()
        return Extraction(text, bool(text))

    def judge_prompt(self, item: BenchItem, answer: str) -> str:
        return JUDGE_PROMPT.format(question=item.fields["question"], official_answer=item.reference,
                                   candidate_answer=answer)

    def parse_judgement(self, reply: str) -> bool | None:
        return parse_verdict(reply)

    def offline_judgement(self, item: BenchItem, answer: str) -> Any:
        verdict = rule_verdict(item.groups["category"], item.reference, answer)
        return False if verdict is None else verdict  # the judge would call an unanswered question INCORRECT

    def judge_settings(self) -> dict[str, Any]:
        return {"runs": 3, "sampling": {"temperature": 0.0, "max_tokens": 16}}

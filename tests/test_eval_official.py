""""Official" means official: hand-written replies whose verdicts follow the official scripts line by
line (MMAU `evaluation.py`, MMSU `mmsu_evaluation.py`, AudioBench's Spoken-MQA `compute_score`), the
non-official `letter_aware` column kept apart, and `score_text` ("answer" / "raw") through the runner
and the CLI on the offline fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audio_r1.cli import main
from audio_r1.eval.base import BenchItem
from audio_r1.eval.errors import BenchmarkDataError, EvalError, RunDirError
from audio_r1.eval.fixtures import make_fixture
from audio_r1.eval.inference import GenSettings, make_record
from audio_r1.eval.mmau import MMAU, letter_aware_text
from audio_r1.eval.mmsu import MMSU, OfficialLetter, official_letters
from audio_r1.eval.runner import RunOptions, ScoreTextMismatchError, run_eval, scored_text
from audio_r1.eval.spoken_mqa import SpokenMQA, compare, official_predictions, official_verdict

VOICES = ["Man", "Woman", "Child", "Robot"]
CHORDS = ["C major", "A minor", "Cm7b5", "G7"]
NOTES = ["C", "D", "E", "F"]
ARTICLES = ["the", "a", "an", "some"]


def mmau_item(reference: str, choices: list[str]) -> BenchItem:
    return BenchItem("x", [], reference, {}, {"choices": choices})


# ------------------------------------------------------------------------------------------------- MMAU


@pytest.mark.parametrize(("reply", "reference", "choices", "official", "letter_aware"), [
    ("A", "Man", VOICES, False, True),  # a bare letter has no token of the answer
    ("(A)", "Man", VOICES, False, True),
    ("(C) Cm7b5", "Cm7b5", CHORDS, False, True),  # "c" is a token of the wrong option "C major"
    ("C", "Cm7b5", CHORDS, False, True),
    ("Cm7b5", "Cm7b5", CHORDS, True, True),
    ("D", "D", NOTES, True, True),  # the option *is* "D": right, not option D ("F")
    ("(D)", "D", NOTES, True, True),
    ("A", "a", ARTICLES, True, True),  # the option is "a": right, not option A ("the")
    ("B", "a", ARTICLES, False, True),  # option B is "a" (letter-aware only)
    ("Woman", "Man", VOICES, False, False),
])
def test_mmau_official_column_is_string_match_on_the_reply(reply: str, reference: str, choices: list[str],
                                                           official: bool, letter_aware: bool) -> None:
    verdict = MMAU().extract(mmau_item(reference, choices), reply)
    assert (verdict.official, verdict.strict) == (official, official)
    assert verdict.variants == {"letter_aware": letter_aware}
    assert verdict.prediction == reply  # what the official script compares: the reply as given


def test_mmau_letter_aware_text_keeps_replies_that_name_an_option() -> None:
    assert letter_aware_text("D", NOTES) == "D"
    assert letter_aware_text(" B ", VOICES) == "Woman"
    assert letter_aware_text("(C) Cm7b5", CHORDS) == "Cm7b5"
    skipped = MMAU().extract(mmau_item("Man", VOICES), None)
    assert (skipped.official, skipped.strict, skipped.variants) == (None, False, {"letter_aware": False})
    assert set(MMAU.variant_notes) == {"letter_aware"} and "not official" in MMAU.variant_notes["letter_aware"]


# ------------------------------------------------------------------------------------------------- MMSU

FRUIT = {"A": "apple", "B": "pear", "C": "plum", "D": "fig"}


def mmsu_items(references: list[str]) -> list[BenchItem]:
    return [BenchItem(f"q{i}", [], reference, {}, {"choices": FRUIT}) for i, reference in enumerate(references)]


def test_mmsu_official_loop_reuses_the_previous_letter_in_file_order() -> None:
    replies = ["B", "None", "", "  \n ", None, "I cannot tell", "\n", "A"]
    assert official_letters(replies) == [
        OfficialLetter("B", True), OfficialLetter("B", True, True), OfficialLetter("B", True, True),
        OfficialLetter("B", True, True),
        OfficialLetter(None, False),  # null: `.strip()` fails, the loop `continue`s (not counted)
        OfficialLetter(None, False),  # no letter: dropped from the denominator
        OfficialLetter("B", True, True),  # the last assigned letter survives the skipped replies
        OfficialLetter("A", True),
    ]
    references = ["pear", "pear", "apple", "pear", "pear", "pear", "pear", "apple"]
    verdicts = MMSU().extract_run(mmsu_items(references), replies)
    assert [v.official for v in verdicts] == [True, True, False, True, None, None, True, True]
    assert [v.strict for v in verdicts] == [True, False, False, False, False, False, False, True]
    assert [v.parseable for v in verdicts] == [True, False, False, False, False, False, False, True]
    assert "previous reply's letter B" in (verdicts[1].note or "")
    official = [v.official for v in verdicts if v.official is not None]
    assert sum(official) / len(official) == 5 / 6


def test_mmsu_order_is_explicit() -> None:
    items = mmsu_items(["pear", "pear"])
    assert [v.official for v in MMSU().extract_run(items, ["B", "None"])] == [True, True]
    assert [v.official for v in MMSU().extract_run(items, ["None", "B"])] == [False, True]
    first = MMSU().extract_run(items[:1], [""])[0]  # nothing to reuse yet (the official script would stop)
    assert (first.official, first.strict) == (False, False) and "before any letter" in (first.note or "")
    with pytest.raises(ValueError, match="2 items but 1 answers"):
        MMSU().extract_run(items, ["B"])


# ------------------------------------------------------------------------------------------- Spoken-MQA


@pytest.mark.parametrize(("reply", "golds", "split", "correct"), [
    ("The answer is 3.5", ["3.50", 3.5], "short_digit", True),  # the second gold is compared as a number
    ("The answer is 3.5", ["3.50"], "short_digit", False),
    ("The answer is 3.5", "3.50", "short_digit", False),
    ("The answer is 103", ["100", 100.0], "long_digit", True),  # a float gold: within 4%
    ("The answer is 105", ["100", 100.0], "long_digit", False),
    ("The answer is 100.4", ["100", 100], "long_digit", True),  # an int gold: round(p) == n
    ("The answer is 103", ["100", 100], "long_digit", False),
    ("The answer is 7/2", ["3.5", 3.5], "short_digit", True),
    ("The answer is 8", ["7", "8"], "short_digit", False),  # a string second gold never matches a number
    ("The answer is 1234", ["Work.\n#### 1,234", "99"], "multi_step_reasoning", True),  # each normalised
])
def test_spoken_mqa_passes_every_gold_value(reply: str, golds: list | str, split: str, correct: bool) -> None:
    assert official_verdict(reply, golds, split)[1] is correct


def test_spoken_mqa_empty_golds_and_the_compare_signature() -> None:
    assert official_verdict("nothing", [], "short_digit")[1] is True  # no gold and no number: "empty" twice
    assert official_verdict("nothing", [], "single_step_reasoning")[1] is True
    assert compare("empty", "empty") is True
    assert compare("3.5", "3.50", 3.5) is True and compare("empty", "3.50", 3.5) is False
    with pytest.raises(ValueError, match="at most two gold values"):
        official_verdict("The answer is 1", ["1", 1, 1.0], "short_digit")


def test_spoken_mqa_null_reply_reuses_the_previous_prediction() -> None:
    assert official_predictions(["The answer is 7", None, "no number", None]) == [
        ("7", False), ("7", True), ("", False), ("", True)]
    items = [BenchItem(f"s{i}", [], "7", {}, {"split": split, "golds": "7"})
             for i, split in enumerate(["short_digit", "short_digit", "long_digit"])]
    verdicts = SpokenMQA().extract_run(items, ["The answer is 7", None, None])
    assert [(v.official, v.strict) for v in verdicts] == [(True, True), (True, False), (False, False)]
    assert "previous prediction '7'" in (verdicts[1].note or "")  # per split: long_digit starts afresh


def test_spoken_mqa_loader_keeps_every_gold(tmp_path: Path) -> None:
    data = make_fixture("spoken-mqa", tmp_path / "mqa", n=1)
    table = data / "short_digit.jsonl"
    row = json.loads(table.read_text())
    row["answer"] = {"text": ["3.50", 3.5]}
    table.write_text(json.dumps(row) + "\n")
    item = next(i for i in SpokenMQA().load(data).items if i.fields["split"] == "short_digit")
    assert item.reference == "3.50" and item.fields["golds"] == ["3.50", 3.5]
    assert SpokenMQA().extract(item, "The answer is 3.5").official is True
    row["answer"] = {"text": ["1", "2", "3"]}
    table.write_text(json.dumps(row) + "\n")
    with pytest.raises(BenchmarkDataError, match="answer.text has 3 values"):
        SpokenMQA().load(data)


# ---------------------------------------------------------------------------------- score_text, runner


def test_scored_text_answer_or_raw() -> None:
    item = BenchItem("x", [], "Man", {}, {})
    record = make_record(item, None, text="Woman? No.\n</think>\nMan", thinking=True, finish_reason="stop",
                         completion_tokens=4, think_tokens=2)
    assert scored_text(record, "answer") == "Man"
    assert scored_text(record, "raw") == "Woman? No.\n</think>\nMan"
    assert scored_text({**record, "error": "boom"}, "raw") is None


class Scripted:
    """A backend whose replies are written by `reply(index, item)`: no model, exact control of the text."""

    name = "scripted"

    def __init__(self, reply):
        self.reply = reply

    def fingerprint(self) -> dict:
        return {"kind": "scripted"}

    def run(self, items, budget, settings, emit, advance) -> None:
        for index, item in enumerate(items):
            emit(make_record(item, budget, text=self.reply(index, item), thinking=True, finish_reason="stop",
                             completion_tokens=8, think_tokens=4))
            advance(1)


def _wrong_then_right(index: int, item: BenchItem) -> str:
    """Reasoning that names a wrong option, then the right option text as the answer."""
    wrong = next(c for c in item.fields["choices"] if c != item.reference)
    return f"Is it {wrong}? No.\n</think>\n{item.reference}"


def options(run_dir: Path, data: Path, bench: str = "mmau", **kwargs) -> RunOptions:
    return RunOptions(bench=bench, data=data, run_dir=run_dir, settings=GenSettings(max_new_tokens=8, temperature=0.0),
                      progress=False, **kwargs)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {"mmau": make_fixture("mmau", root / "mmau", n=6), "mmsu": make_fixture("mmsu", root / "mmsu", n=4),
            "bba": make_fixture("bigbench-audio", root / "bba", n=4)}


def test_runner_scores_answer_or_raw_and_records_the_mode(tmp_path: Path, data: dict[str, Path]) -> None:
    answer = run_eval(Scripted(_wrong_then_right), options(tmp_path / "answer", data["mmau"]))
    raw = run_eval(Scripted(_wrong_then_right), options(tmp_path / "raw", data["mmau"], score_text="raw"))
    assert answer.results["budgets"][0]["official"]["value"] == 1.0
    assert raw.results["budgets"][0]["official"]["value"] == 0.0  # the reasoning names a wrong option
    assert (answer.results["score_text"], raw.results["score_text"]) == ("answer", "raw")
    assert json.loads((tmp_path / "raw" / "run.json").read_text())["score_text"] == "raw"
    records = (tmp_path / "raw" / "extraction.jsonl").read_text().splitlines()
    assert {json.loads(line)["score_text"] for line in records} == {"raw"}
    assert "- scored text: the whole reply" in raw.markdown and "(--score-text raw)" in raw.markdown


def test_resuming_in_the_other_mode_is_refused(tmp_path: Path, data: dict[str, Path]) -> None:
    run_dir = tmp_path / "run"
    run_eval(Scripted(_wrong_then_right), options(run_dir, data["mmau"]))
    with pytest.raises(ScoreTextMismatchError, match="scored with --score-text answer") as error:
        run_eval(Scripted(_wrong_then_right), options(run_dir, data["mmau"], score_text="raw"))
    assert isinstance(error.value, RunDirError) and (error.value.previous, error.value.requested) == ("answer", "raw")
    identity = json.loads((run_dir / "run.json").read_text())
    del identity["score_text"]  # a run directory written before the option existed was scored on the answer
    (run_dir / "run.json").write_text(json.dumps(identity))
    run_eval(Scripted(_wrong_then_right), options(run_dir, data["mmau"]))
    with pytest.raises(ScoreTextMismatchError):
        run_eval(Scripted(_wrong_then_right), options(run_dir, data["mmau"], score_text="raw"))
    fresh = run_eval(Scripted(_wrong_then_right), options(run_dir, data["mmau"], score_text="raw", fresh=True))
    assert fresh.results["score_text"] == "raw"


def test_raw_needs_an_official_script(tmp_path: Path, data: dict[str, Path]) -> None:
    with pytest.raises(EvalError, match="applies to benchmarks scored by an official script"):
        run_eval(Scripted(_wrong_then_right), options(tmp_path / "run", data["bba"], bench="bigbench-audio",
                                                      score_text="raw"))
    with pytest.raises(EvalError, match="unknown score_text"):
        run_eval(Scripted(_wrong_then_right), options(tmp_path / "run", data["mmau"], score_text="think"))


def test_runner_reports_official_and_letter_aware_columns(tmp_path: Path, data: dict[str, Path]) -> None:
    run = run_eval(Scripted(lambda i, item: "Hmm.\n</think>\nA"), options(tmp_path / "run", data["mmau"]))
    overall = run.results["budgets"][0]
    assert overall["official"]["value"] == 0.0  # a bare letter is wrong by the official rule
    first_is_right = sum(item.reference == item.fields["choices"][0] for item in run.items) / len(run.items)
    assert overall["variants"]["letter_aware"]["value"] == first_is_right > 0
    assert set(run.results["columns"]) == {"official", "strict", "letter_aware"}
    markdown = (tmp_path / "run" / "results.md").read_text()
    assert "| | n | official | 95% CI | strict | 95% CI | letter_aware | 95% CI |" in markdown
    assert "letter_aware = not official" in markdown


def test_runner_feeds_mmsu_replies_in_file_order(tmp_path: Path, data: dict[str, Path]) -> None:
    def letter_of(item: BenchItem) -> str:
        return next(letter for letter, text in item.fields["choices"].items() if text == item.reference)

    replies = {0: lambda item: letter_of(item), 1: lambda item: "None", 2: lambda item: "  ", 3: lambda item: "x"}
    run = run_eval(Scripted(lambda i, item: "\n</think>\n" + replies[i](item)), options(tmp_path / "run", data["mmsu"], bench="mmsu"))
    first = letter_of(run.items[0])
    records = [json.loads(line) for line in (tmp_path / "run" / "extraction.jsonl").read_text().splitlines()]
    by_id = {r["key"].split("@")[0]: r for r in records}
    for item in run.items[1:3]:
        assert by_id[item.id]["official"] is (item.fields["choices"][first] == item.reference)
        assert by_id[item.id]["strict"] is False and "previous reply's letter" in by_id[item.id]["note"]
    assert by_id[run.items[3].id]["official"] is None  # "x": no letter, dropped
    again = run_eval(Scripted(lambda i, item: "unused"), options(tmp_path / "run", data["mmsu"], bench="mmsu"))
    assert again.results["budgets"][0] == run.results["budgets"][0]
    assert len((tmp_path / "run" / "extraction.jsonl").read_text().splitlines()) == 4  # unchanged: not rewritten


def test_cli_score_text_raw_is_recorded_and_enforced(tmp_path: Path, data: dict[str, Path],
                                                     capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    common = ["eval", "mmau", "--data", str(data["mmau"]), "--model", "tiny", "--max-new-tokens", "4", "--no-think",
              "--run-dir", str(run_dir), "--no-progress", "--limit", "2"]
    assert main([*common, "--score-text", "raw"]) == 0
    assert "(--score-text raw)" in capsys.readouterr().out
    assert json.loads((run_dir / "results.json").read_text())["score_text"] == "raw"
    assert main(common) == 2  # default "answer" on a raw run directory
    assert "scored with --score-text raw" in capsys.readouterr().err

"""MGRD on its own: filtering by the verifier, kept chains as SFT records, cached sampling, a round end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audio_r1.chat import format_assistant
from audio_r1.data.manifest import Item, read_manifest
from audio_r1.data.suite import generate_suite
from audio_r1.processing import item_question
from audio_r1.scoring.verifier import verify
from audio_r1.train import mgrd
from audio_r1.train.mgrd import (
    MGRDConfig,
    acceptance_table,
    chain_record,
    kept_chains,
    run_mgrd,
    sample_and_verify,
)

FAMILIES = ["pitch_compare", "text_math"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("suite")
    return generate_suite(out, seed=0, sizes={"train": 6}, families=FAMILIES)["train"]


def pitch_item() -> Item:
    return Item(id="p", family="pitch_compare", split="train", audio="audio/p.wav", question="Which is higher?",
                choices=["The first tone", "The second tone"], answer="The second tone", answer_type="choice",
                params={"f0_hz": [440.0, 660.0], "ask": "higher"}, transcript=None, voice=None, seed=0)


def test_acceptance_table_counts_each_filter_per_family() -> None:
    yes = {"correct": True, "grounded": True, "coherent": True, "accepted": True}
    wrong = {**yes, "correct": False, "accepted": False}
    table = acceptance_table([{"family": "a", "verdicts": [yes, wrong]}, {"family": "b", "verdicts": [yes]}])
    assert table["a"] == {"candidates": 2, "correct": 0.5, "grounded": 1.0, "coherent": 1.0, "accepted": 0.5}
    assert table["all"]["candidates"] == 3 and table["all"]["accepted"] == pytest.approx(2 / 3)


def test_kept_chains_are_distinct_accepted_and_capped() -> None:
    good = format_assistant("The second tone sits near 660 Hz, higher than 440 Hz.", "The second tone")
    other = format_assistant("At 442 Hz then 655 Hz the second is higher.", "The second tone")
    texts = [good, good, other, good]
    verdicts = [{"accepted": a} for a in (True, True, False, True)]
    assert kept_chains(pitch_item(), texts, verdicts, limit=5) == [
        ("The second tone sits near 660 Hz, higher than 440 Hz.", "The second tone")]
    assert len(kept_chains(pitch_item(), [good, other], [{"accepted": True}] * 2, limit=1)) == 1


def test_a_kept_chain_is_an_sft_record_asked_the_standard_way(tmp_path: Path) -> None:
    record = chain_record(pitch_item(), tmp_path, "reasoning", "The second tone")
    assert record["prompt"] == item_question(pitch_item())
    assert Path(record["audio"]).is_absolute() and record["answer_text"] == "The second tone"


def test_sampling_is_verified_cached_and_resumed(suite: Path, tmp_path: Path, monkeypatch) -> None:
    questions = [i for i in read_manifest(suite) if i.family != "text_math"][:2]
    config = MGRDConfig(data=str(suite), out=str(tmp_path), model="tiny", k=2, max_new_tokens=8, batch_size=4)
    cache = tmp_path / "samples.jsonl"
    entries = sample_and_verify(config, 1, "tiny", questions, suite.parent, cache, progress=False)
    assert [e["id"] for e in entries] == [q.id for q in questions]
    for item, entry in zip(questions, entries, strict=True):
        assert len(entry["texts"]) == 2
        for text, verdict in zip(entry["texts"], entry["verdicts"], strict=True):
            assert verdict["grounded"] == verify(item, text).grounded  # the one definition of grounded

    def no_model(*args, **kwargs):
        raise AssertionError("a finished question must be read from the cache, not sampled again")

    monkeypatch.setattr("audio_r1.api.AudioR1.from_pretrained", no_model)
    again = sample_and_verify(config, 1, "tiny", questions, suite.parent, cache, progress=False)
    assert again == entries


def test_a_round_with_nothing_accepted_leaves_the_model_unchanged(suite: Path, tmp_path: Path) -> None:
    config = MGRDConfig(data=str(suite), out=str(tmp_path / "run"), model="tiny", rounds=1, k=2, max_new_tokens=6,
                        limit=2)
    [result] = run_mgrd(config, progress=False)
    assert result.accepted == 0 and result.model == "tiny"  # random tiny weights never pass the verifier
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary[0]["candidates"] == 4
    assert (tmp_path / "run" / "round-1" / "acceptance.json").exists()


def test_the_stage_runs_alone(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        mgrd.main(["--help"])
    assert exited.value.code == 0 and "--keep-per-question" in capsys.readouterr().out

"""The recipe end to end on `tiny`, plus the MGRD filter bookkeeping and the report's findings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from audio_r1.data.manifest import Item
from audio_r1.train.mgrd import acceptance_table, chain_record, kept_chains
from audio_r1.train.recipe import RecipeConfig, preset_config, run_recipe
from audio_r1.train.report import findings


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, one_thread) -> Path:
    out = tmp_path_factory.mktemp("recipe")
    run_recipe(preset_config("tiny", out=str(out)), progress=False)
    return out


def _config(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_stage_consumes_the_previous_stage_output(recipe_run: Path) -> None:
    models = _config(recipe_run / "models.json")
    assert models["cold_start"] == str(recipe_run / "cold_start" / "final")
    mgrd = _config(recipe_run / "mgrd" / "config.json")
    assert mgrd["model"] == models["cold_start"]
    summary = _config(recipe_run / "mgrd" / "summary.json")
    assert models["mgrd"] == summary[-1]["model"]
    assert _config(recipe_run / "rl" / "config.json")["model"] == models["mgrd"]
    assert _config(recipe_run / "rl" / "config.json")["data"] == str(recipe_run / "select" / "selected.jsonl")
    assert _config(recipe_run / "rl_no_format" / "config.json")["format_reward"] is False
    assert _config(recipe_run / "dpo" / "config.json")["model"] == models["rl"]
    for stage in ("cold_start", "rl", "rl_no_format", "dpo"):
        assert (Path(models[stage]) / "config.json").exists(), stage


def test_report_has_table_plots_and_findings(recipe_run: Path) -> None:
    report = (recipe_run / "report.md").read_text()
    for heading in ("Per-stage metrics", "Accuracy per family", "Accuracy against thinking budget", "Findings"):
        assert heading in report
    for stage in ("cold start (SFT)", "+ MGRD", "+ RL (PPO)", "+ DPO"):
        assert f"| {stage} |" in report
    for plot in ("accuracy_vs_budget.png", "rl_think_length.png"):
        assert (recipe_run / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = _config(recipe_run / "eval" / "results.json")
    assert set(results) == {"cold_start", "mgrd", "rl", "dpo"}
    assert all(set(row["budgets"]) == {"0", "16", "none"} for row in results.values())


def test_a_finished_recipe_is_not_redone(recipe_run: Path) -> None:
    marker = recipe_run / "rl" / "final" / "config.json"
    before = marker.stat().st_mtime_ns
    run_recipe(preset_config("tiny", out=str(recipe_run)), progress=False)
    assert marker.stat().st_mtime_ns == before


def test_unknown_stage_to_skip_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        replace(RecipeConfig(), skip=("warmup",))
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge")


def _item() -> Item:
    return Item(id="x-1", family="pitch_compare", split="train", audio="audio/x.wav", question="Which is higher?",
                choices=["The first tone", "The second tone"], answer="The second tone", answer_type="choice",
                params={"f0_hz": [440.0, 660.0]}, transcript=None, voice=None, seed=1)


def test_acceptance_table_counts_each_filter_per_family() -> None:
    ok = {"correct": True, "grounded": True, "coherent": True, "accepted": True}
    wrong = {"correct": False, "grounded": True, "coherent": True, "accepted": False}
    entries = [{"family": "pitch_compare", "verdicts": [ok, wrong]}, {"family": "tempo", "verdicts": [wrong]}]
    table = acceptance_table(entries)
    assert table["pitch_compare"] == {"candidates": 2, "correct": 0.5, "grounded": 1.0, "coherent": 1.0,
                                      "accepted": 0.5}
    assert table["all"]["candidates"] == 3 and table["all"]["accepted"] == pytest.approx(1 / 3)


def test_kept_chains_are_accepted_distinct_and_capped(tmp_path: Path) -> None:
    ok = {"accepted": True}
    texts = ["<think>\nnear 440 Hz then 660 Hz\n</think>\n\nThe second tone"] * 2 + [
        "<think>\nabout 440 Hz, then about 660 Hz\n</think>\n\nThe second tone",
        "<think>\nguess\n</think>\n\nThe first tone"]
    verdicts = [ok, ok, ok, {"accepted": False}]
    kept = kept_chains(_item(), texts, verdicts, limit=5)
    assert [a for _, a in kept] == ["The second tone", "The second tone"]
    assert len({r for r, _ in kept}) == 2
    assert len(kept_chains(_item(), texts, verdicts, limit=1)) == 1
    record = chain_record(_item(), tmp_path, *kept[0])
    assert Path(record["audio"]).is_absolute() and record["answer_text"] == "The second tone"


def _row(accuracies: list[float], grounding: float, trap: float, sc: float) -> dict:
    budgets = {label: {"accuracy": a, "trap_accuracy": trap, "grounding_rate": grounding, "mean_think_tokens": 10,
                       "n": 10, "families": {}} for label, a in zip(("0", "32", "none"), accuracies, strict=True)}
    return {"budgets": budgets, "self_cognition": sc}


def test_findings_report_what_the_numbers_show() -> None:
    rows = {"cold_start": _row([0.5, 0.6, 0.55], 0.4, 0.3, 0.1), "mgrd": _row([0.5, 0.6, 0.7], 0.6, 0.2, 0.1),
            "rl": _row([0.5, 0.6, 0.7], 0.6, 0.2, 0.1), "dpo": _row([0.5, 0.6, 0.7], 0.6, 0.2, 0.0)}
    rl_runs = {"rl": [{"step": 1, "rl/think_tokens": 40.0}], "rl_no_format": [{"step": 1, "rl/think_tokens": 20.0}]}
    notes = "\n".join(findings(rows, rl_runs))
    assert "MGRD raised the grounding rate: 40.0% → 60.0%" in notes
    assert "MGRD did not raise the trap accuracy: 30.0% → 20.0%" in notes
    assert "without the format reward gave shorter reasoning: 20.0 vs 40.0" in notes
    assert "after the full recipe does not fall" in notes
    assert "for the cold-start model falls somewhere" in notes
    assert "self-cognition error rate 10.0% → 0.0%" in notes


def test_recipe_and_mgrd_commands_parse() -> None:
    from audio_r1.cli import build_parser

    args = build_parser().parse_args(["recipe", "run", "--preset", "smol", "--skip", "dpo,rl"])
    assert args.func.__name__ == "cmd_recipe_run" and args.preset == "smol" and args.skip == "dpo,rl"
    args = build_parser().parse_args(["train", "mgrd", "--data", "suite/train.jsonl", "-k", "4", "--rounds", "2"])
    assert (args.k, args.rounds, args.func.__name__) == (4, 2, "cmd_train_mgrd")

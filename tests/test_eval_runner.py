"""The runner on the tiny model: stages, caches that resume after a kill, run-directory checks, budget
sweeps with their plot, and the `audio-r1 eval` command (the suite included)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audio_r1.api import AudioR1
from audio_r1.cli import main
from audio_r1.eval.cache import StageCache
from audio_r1.eval.errors import RunDirError
from audio_r1.eval.fixtures import make_fixture
from audio_r1.eval.inference import GenSettings, LocalBackend
from audio_r1.eval.runner import RunOptions, run_eval


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {"mmau": make_fixture("mmau", root / "mmau", n=6), "bba": make_fixture("bigbench-audio", root / "bba", n=4)}


def options(run_dir: Path, data: Path, bench: str = "mmau", **kwargs) -> RunOptions:
    settings = kwargs.pop("settings", GenSettings(max_new_tokens=6, temperature=0.0))
    return RunOptions(bench=bench, data=data, run_dir=run_dir, settings=settings, progress=False, **kwargs)


class Counting(LocalBackend):
    """The tiny backend, counting items; optionally 'killed' after some items were written."""

    def __init__(self, model: AudioR1, kill_after: int | None = None):
        super().__init__(model, "tiny", batch_size=2)
        self.asked = 0
        self.kill_after = kill_after

    def run(self, items, budget, settings, emit, advance):
        def counted(record):
            emit(record)
            self.asked += 1
            if self.kill_after is not None and self.asked >= self.kill_after:
                raise KeyboardInterrupt

        super().run(items, budget, settings, counted, advance)


def test_run_writes_results_with_hashes_and_categories(tmp_path: Path, tiny: AudioR1, data: dict[str, Path]) -> None:
    run = run_eval(Counting(tiny), options(tmp_path / "run", data["mmau"]))
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result == run.results
    assert result["data"]["audio_files"] == 6 and len(next(iter(result["data"]["tables"].values()))) == 64
    budget = result["budgets"][0]
    assert budget["n"] == 6 and budget["strict"]["n"] == 6
    assert {g["group"] for g in budget["breakdowns"]["task"]} == {"sound", "music", "speech"}
    assert 0 <= budget["strict"]["low"] <= budget["strict"]["value"] <= budget["strict"]["high"] <= 1
    assert "| **overall** | 6 |" in (tmp_path / "run" / "results.md").read_text()
    for stage in ("inference", "extraction"):
        assert len(StageCache(tmp_path / "run" / f"{stage}.jsonl").load()) == 6
    record = next(iter(run.inference.values()))
    assert record["thinking"] and record["answer"] is not None and record["finish_reason"] in ("stop", "length")


def test_a_killed_run_resumes_where_it_stopped(tmp_path: Path, tiny: AudioR1, data: dict[str, Path]) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(Counting(tiny, kill_after=3), options(run_dir, data["mmau"]))
    with open(run_dir / "inference.jsonl", "a") as handle:
        handle.write('{"key": "torn')  # a line cut short by the kill
    assert len(StageCache(run_dir / "inference.jsonl").load()) == 3
    again = Counting(tiny)
    run = run_eval(again, options(run_dir, data["mmau"]))
    assert again.asked == 3  # only the items not done before
    assert run.results["budgets"][0]["n"] == 6
    assert len((run_dir / "inference.jsonl").read_text().splitlines()) == 6
    third = Counting(tiny)
    run_eval(third, options(run_dir, data["mmau"]))
    assert third.asked == 0  # fully cached


def test_run_dir_of_another_run_is_refused(tmp_path: Path, tiny: AudioR1, data: dict[str, Path]) -> None:
    run_eval(Counting(tiny), options(tmp_path / "run", data["mmau"]))
    other = GenSettings(max_new_tokens=7, temperature=0.0)
    with pytest.raises(RunDirError, match="settings"):
        run_eval(Counting(tiny), options(tmp_path / "run", data["mmau"], settings=other))
    fresh = Counting(tiny)
    run_eval(fresh, options(tmp_path / "run", data["mmau"], settings=other, fresh=True))
    assert fresh.asked == 6


def test_budget_sweep_reports_scaling_and_plot(tmp_path: Path, tiny: AudioR1, data: dict[str, Path]) -> None:
    run = run_eval(Counting(tiny), options(tmp_path / "run", data["bba"], bench="bigbench-audio",
                                           budgets=[None, 0, 3]))
    labels = [b["label"] for b in run.results["budgets"]]
    assert labels == ["0", "3", "none"]
    think = {b["label"]: b["mean_think_tokens"] for b in run.results["budgets"]}
    assert think["0"] == 0 and 0 < think["3"] <= 3
    scaling = run.results["scaling"]
    assert [r["label"] for r in scaling["by_budget"]] == labels and isinstance(scaling["inverted"], bool)
    assert scaling["by_think_length"][0]["label"] == "0"
    assert (tmp_path / "run" / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert run.results["judge"]["name"] == "rules (offline fallback)"  # no judge configured
    assert "Test-time scaling" in run.markdown


def test_cli_eval_benchmark(tmp_path: Path, data: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "copy.json"
    code = main(["eval", "mmau", "--data", str(data["mmau"]), "--model", "tiny", "--max-new-tokens", "4",
                 "--run-dir", str(tmp_path / "run"), "--no-progress", "--out", str(out), "--no-think"])
    assert code == 0
    assert "# MMAU test-mini: tiny" in capsys.readouterr().out
    assert json.loads(out.read_text())["budgets"][0]["label"] == "0"
    code = main(["eval", "mmau", "--data", str(tmp_path / "missing"), "--model", "tiny", "--no-progress"])
    assert code == 2 and "no such file or folder" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_cli_eval_suite_keeps_its_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = make_fixture("suite", tmp_path / "suite", n=14)
    out = tmp_path / "suite.json"
    code = main(["eval", "suite", "--data", str(manifest), "--model", "tiny", "--max-new-tokens", "4",
                 "--batch-size", "7", "--run-dir", str(tmp_path / "run"), "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| family | n | accuracy | chance | grounding rate | faithful (judged) | mean think tokens |" in printed
    report = json.loads(out.read_text())
    assert report["overall"]["n"] == 14 and {"settings", "families", "items"} <= set(report)

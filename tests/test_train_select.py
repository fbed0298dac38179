"""pass@k difficulty selection: band and histogram, and a resumable run on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audio_r1.api import AudioR1
from audio_r1.data.manifest import read_manifest
from audio_r1.data.suite import generate_suite
from audio_r1.train.select import (
    CACHE,
    SelectConfig,
    count_passes,
    pass_histogram,
    read_cache,
    run_select,
    sample_seed,
    select_band,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_band_keeps_medium_difficulty_in_order() -> None:
    counts = {"a": 0, "b": 3, "c": 8, "d": 6, "e": 7, "f": 4}
    assert select_band(counts) == ["b", "d", "f"]
    assert select_band(counts, 0, 0) == ["a"]
    assert select_band({}, 3, 6) == []


def test_histogram_has_a_row_per_count_and_marks_the_band() -> None:
    text = pass_histogram({"a": 0, "b": 0, "c": 0, "d": 0, "e": 4, "f": 8}, 8, low=3, high=6, width=8)
    lines = text.splitlines()
    assert lines[0] == "pass@8 over 6 items" and len(lines) == 10
    assert lines[1].startswith("  0/8 | ########") and " 4  66.7%" in lines[1]
    assert lines[5].startswith("  4/8 | ##") and lines[5].endswith("kept")
    assert "kept" not in lines[9] and "kept" in lines[4]  # 8/8 outside, 3/8 inside
    assert "0   0.0%" in lines[2]
    assert pass_histogram({}, 2).splitlines()[1].endswith("n/a")


def test_seeds_depend_on_item_and_index_only() -> None:
    assert sample_seed(0, "x", 1) == sample_seed(0, "x", 1)
    assert len({sample_seed(0, "x", j) for j in range(8)} | {sample_seed(1, "x", 0), sample_seed(0, "y", 0)}) == 10


def test_config_checks_the_band() -> None:
    with pytest.raises(ValueError, match="band"):
        SelectConfig(data="x", k=8, low=5, high=3)
    with pytest.raises(ValueError, match="temperature"):
        SelectConfig(data="x", temperature=0)


def test_count_passes_scores_the_answers(tmp_path: Path) -> None:
    paths = generate_suite(tmp_path, seed=2, sizes={"dev": 1}, families=["text_math"])
    item = read_manifest(paths["dev"])[0]
    texts = [f"Working.\n</think>\n{item.answer}", "Hmm.\n</think>\n-1000", "no close tag"]
    assert count_passes(item, texts) == (1, [item.answer, "-1000", ""])


def test_torn_cache_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / CACHE
    path.write_text('{"id": "a", "fingerprint": "f", "passes": 2}\n{"id": "b", "fingerprint": "g", "passes": 1}\n'
                    '{"id": "c", "finge')
    assert list(read_cache(path, "f")) == ["a"]
    assert path.read_text().endswith("}\n")


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


def test_selection_runs_resumes_and_does_not_depend_on_batching(tmp_path: Path, tiny: AudioR1) -> None:
    paths = generate_suite(tmp_path / "suite", seed=4, sizes={"dev": 5}, families=["text_math", "pitch_compare"])
    base = dict(data=str(paths["dev"]), model="tiny", k=3, low=0, high=1, max_new_tokens=6, seed=1)
    killed = run_select(SelectConfig(**base, out=str(tmp_path / "a"), limit=2, batch_size=3), model=tiny,
                        progress=False)
    assert killed.sampled == 2
    resumed = run_select(SelectConfig(**base, out=str(tmp_path / "a"), batch_size=3), model=tiny, progress=False)
    assert resumed.sampled == 3  # the two cached items were not sampled again
    fresh = run_select(SelectConfig(**base, out=str(tmp_path / "b"), batch_size=9), model=tiny, progress=False)
    assert resumed.counts == fresh.counts and len(resumed.counts) == 5
    assert all(0 <= n <= 3 for n in resumed.counts.values())

    kept = read_manifest(resumed.manifest)  # audio resolves through the links in out/
    assert [i.id for i in kept] == resumed.kept == select_band(resumed.counts, 0, 1)
    report = json.loads(resumed.counts_path.read_text())
    assert report["counts"] == resumed.counts and report["band"] == [0, 1] and report["kept"] == len(kept)
    assert resumed.histogram.startswith("pass@3 over 5 items")
    again = run_select(SelectConfig(**base, out=str(tmp_path / "a"), batch_size=3), model=tiny, progress=False)
    assert again.sampled == 0 and again.counts == resumed.counts

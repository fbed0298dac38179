"""The converted `smol` base in the user cache: where it lives, and `ensure_smol_base`.

`ensure_smol_base` converts the two source packages once into `cache_dir()/smol-base-v1/`,
atomically: a temp directory is filled, a manifest written last, then renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from ..config import get_preset
from ..modeling import AudioEncoder
from .ctranslate2 import read_ctranslate2, whisper_encoder_state_dict
from .gguf import gguf_llama_state_dict, smollm2_tokenizer
from .sources import (
    SMOLLM2_SOURCE,
    WHISPER_SOURCE,
    CheckpointConversionError,
    SourcePackage,
    installed_version,
    sha256_file,
    source_file,
)

SMOL_BASE = "smol-base-v1"
MANIFEST = "manifest.json"
ENCODER_FILE = "encoder.safetensors"
DECODER_FILE = "decoder.safetensors"
TOKENIZER_DIR = "tokenizer"
STALE_TEMP_SECONDS = 3600.0  # a temp dir older than this is a leftover of a killed conversion

# --------------------------------------------------------------------------------------------
# Cache location
# --------------------------------------------------------------------------------------------


def _repo_root() -> Path | None:
    """The source checkout this module runs from, if any (an editable install)."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    """Where converted weights live: $AUDIO_R1_CACHE, else $XDG_CACHE_HOME/audio-r1, else ~/.cache/audio-r1.

    Refuses a location inside the source checkout so that hundreds of MB of weights never end up
    next to tracked files.
    """
    if os.environ.get("AUDIO_R1_CACHE"):
        path = Path(os.environ["AUDIO_R1_CACHE"])
    elif os.environ.get("XDG_CACHE_HOME"):
        path = Path(os.environ["XDG_CACHE_HOME"]) / "audio-r1"
    else:
        path = Path.home() / ".cache" / "audio-r1"
    path = path.expanduser().resolve()
    repo = _repo_root()
    if repo is not None and path.is_relative_to(repo):
        raise CheckpointConversionError(
            f"cache directory {path} is inside the repository {repo}; set AUDIO_R1_CACHE to a path outside it"
        )
    return path




def _manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a converted directory, or None when it is absent or unreadable."""
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_complete(path: Path) -> bool:
    """Whether `path` holds a finished conversion: a manifest whose listed files all exist at their sizes."""
    manifest = _manifest(path)
    if not manifest or manifest.get("format") != SMOL_BASE or not isinstance(manifest.get("files"), dict):
        return False
    for name, entry in manifest["files"].items():
        file = path / name
        if not file.is_file() or file.stat().st_size != entry.get("bytes"):
            return False
    return True


def _file_entry(path: Path, root: Path) -> tuple[str, dict[str, Any]]:
    return path.relative_to(root).as_posix(), {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _source_entry(source: SourcePackage, path: Path) -> dict[str, Any]:
    return {
        "package": source.distribution,
        "version": installed_version(source),
        "file": source.relative_file,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def _save_tensors(state: dict[str, torch.Tensor], path: Path, source: str) -> None:
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt", "source": source}
    )


def _check_encoder(state: dict[str, torch.Tensor]) -> None:
    """Load the converted encoder into the smol preset's AudioEncoder (strict): names and shapes must fit."""
    try:
        AudioEncoder(get_preset("smol").encoder).load_state_dict(
            {k.removeprefix("encoder."): v for k, v in state.items()}, strict=True
        )
    except RuntimeError as error:
        raise CheckpointConversionError(
            f"the Whisper encoder does not fit the smol preset: {error}"
        ) from error


def _check_decoder_config(config: dict[str, Any]) -> None:
    """The GGUF model must have the shapes the smol preset expects (vocab grows later by added tokens)."""
    expected = get_preset("smol").text_config
    keys = (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
    )
    wrong = {k: (config[k], expected[k]) for k in keys if config[k] != expected[k]}
    if wrong:
        raise CheckpointConversionError(
            f"the SmolLM2 GGUF does not fit the smol preset (found, expected): {wrong}"
        )


_STEPS = ["read whisper", "write encoder", "dequantise gguf", "write decoder", "tokenizer"]


@contextmanager
def _steps(names: list[str], progress: bool) -> Iterator[Callable[[], None]]:
    """A tqdm bar on stderr naming the running step; the yielded callable finishes the current one."""
    with tqdm(
        total=len(names), desc="converting smol base", unit="step", file=sys.stderr, disable=not progress
    ) as bar:
        bar.set_postfix_str(names[0])

        def advance() -> None:
            bar.update(1)
            if bar.n < len(names):
                bar.set_postfix_str(names[bar.n])

        yield advance


def _convert_into(work: Path, progress: bool) -> None:
    """Write every file of the smol base into the empty directory `work`, the manifest last."""
    whisper_path, gguf_path = source_file(WHISPER_SOURCE), source_file(SMOLLM2_SOURCE)
    with _steps(_STEPS, progress) as done:
        tensors, ct2_meta = read_ctranslate2(whisper_path)
        encoder = whisper_encoder_state_dict(tensors)
        _check_encoder(encoder)
        del tensors
        done()
        _save_tensors(
            encoder, work / ENCODER_FILE, f"{WHISPER_SOURCE.distribution}/{WHISPER_SOURCE.relative_file}"
        )
        done()
        decoder, text_config = gguf_llama_state_dict(gguf_path)
        _check_decoder_config(text_config)
        done()
        _save_tensors(
            decoder, work / DECODER_FILE, f"{SMOLLM2_SOURCE.distribution}/{SMOLLM2_SOURCE.relative_file}"
        )
        done()
        smollm2_tokenizer(gguf_path).save_pretrained(str(work / TOKENIZER_DIR))
        done()
    files = dict(_file_entry(p, work) for p in sorted(work.rglob("*")) if p.is_file())
    manifest = {
        "format": SMOL_BASE,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "converter": __name__,
        "sources": {
            "whisper": _source_entry(WHISPER_SOURCE, whisper_path) | {"ctranslate2_spec": ct2_meta["spec"]},
            "smollm2": _source_entry(SMOLLM2_SOURCE, gguf_path),
        },
        "tensor_counts": {"encoder": len(encoder), "decoder": len(decoder)},
        "text_config": text_config,
        "files": files,
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _remove_stale_temps(parent: Path) -> None:
    """Delete temp dirs left by killed conversions (old enough that no live conversion owns them)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for entry in parent.glob(f".{SMOL_BASE}.*"):
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _publish(work: Path, target: Path) -> None:
    """Move a finished conversion into place; an incomplete `target` is moved aside first.

    Renames within one directory are atomic, so readers see either no target, an incomplete one
    (without a valid manifest) or a complete one. If another process publishes first, its copy
    wins and `work` is left for the caller to delete.
    """
    if target.exists() and not is_complete(target):
        trash = Path(tempfile.mkdtemp(prefix=f".{SMOL_BASE}.old-", dir=target.parent))
        try:
            os.replace(target, trash / "old")
        except FileNotFoundError:
            pass  # another process moved it already
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(work, target)
    except OSError:
        if not is_complete(target):
            raise


def ensure_smol_base(progress: bool = True) -> Path:
    """The converted pretrained parts of the `smol` preset, converting them on first use (~15 s).

    `cache_dir()/smol-base-v1/` holds `encoder.safetensors` (`encoder.*` AudioEncoder weights),
    `decoder.safetensors` (HF Llama weights), `tokenizer/` and `manifest.json`. Once the manifest
    is complete the directory is returned at once, without touching the source packages.
    """
    target = cache_dir() / SMOL_BASE
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{SMOL_BASE}.tmp-", dir=target.parent))
    try:
        _convert_into(work, progress)
        _publish(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target

"""Training checkpoints: written whole or not at all, found again after a crash.

A checkpoint is a directory `step-00000100/` holding the trainable tensors, the optimizer and
scheduler states and `state.json`. It is assembled in a hidden staging directory and renamed into
place, so a run killed at any moment leaves either the previous checkpoints or a complete new one.
A *sharded* checkpoint (FSDP2 runs) holds, instead of the first two files, a `torch.distributed.checkpoint`
directory `sharded/` that every process writes its own shards of into (resuming is tested with the same
number of processes only), and `read_sharded_tensors` reads its trainable tensors whole in one process.
The optimizer and scheduler states are read back with `torch.load(weights_only=True)`, so a planted
`optimizer.pt` cannot run code on resume.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

STEP_DIR = re.compile(r"^step-(\d{8})$")
TENSORS = "trainable.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
STATE = "state.json"
SHARDED = "sharded"


def save_checkpoint(
    directory: Path,
    step: int,
    tensors: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    scheduler_state: dict[str, Any],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write `directory/step-XXXXXXXX` atomically and keep only the newest `keep` checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{_step_name(step)}.", dir=directory))
    try:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(staging / TENSORS))
        torch.save(optimizer_state, staging / OPTIMIZER)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _commit(staging, directory, step, scheduler_state, state, keep)


def sharded_staging(directory: Path, step: int) -> Path:
    """The staging directory every process of a sharded save writes into (one name all ranks know)."""
    return directory / f".{_step_name(step)}.sharded"


def save_sharded_checkpoint(
    directory: Path,
    step: int,
    shards: dict[str, Any],
    scheduler_state: dict[str, Any],
    state: dict[str, Any],
    *,
    main: bool,
    barrier: Callable[[], None],
    keep: int = 2,
) -> Path:
    """Write a sharded `directory/step-XXXXXXXX` atomically; every process calls it (a collective).

    `shards` ({"model": …, "optimizer": …} of this process's DTensor shards) goes through
    `torch.distributed.checkpoint` into the staging directory; then the main process adds the
    scheduler state and `state.json`, renames the staging directory into place and prunes old ones.
    """
    import torch.distributed.checkpoint as dcp  # only sharded runs need it

    staging = sharded_staging(directory, step)
    if main:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    barrier()
    try:
        dcp.save(shards, checkpoint_id=str(staging / SHARDED), no_dist=_single_process())
        barrier()
        target = _commit(staging, directory, step, scheduler_state, state, keep) if main else None
    except BaseException:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    barrier()
    return target or directory / _step_name(step)


def load_sharded_checkpoint(path: Path, shards: dict[str, Any]) -> tuple[dict, dict]:
    """Fill `shards` (state dicts shaped like the ones saved) in place; returns (scheduler state, state.json)."""
    import torch.distributed.checkpoint as dcp  # only sharded runs need it

    if not (path / SHARDED).is_dir():
        raise CheckpointError(f"{path} is not a sharded checkpoint (it was written without FSDP)")
    dcp.load(shards, checkpoint_id=str(path / SHARDED), no_dist=_single_process())
    return _load_state(path / SCHEDULER), read_state(path)


def read_sharded_tensors(path: Path, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The whole tensors under `prefix` of a sharded checkpoint, read in one process (no process group)."""
    import torch.distributed.checkpoint as dcp  # only sharded checkpoints need it
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata  # (the same)

    reader = dcp.FileSystemReader(str(path / SHARDED))
    entries = reader.read_metadata().state_dict_metadata
    tensors = {key: torch.empty(meta.size, dtype=meta.properties.dtype) for key, meta in entries.items()
               if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)}
    dcp.load(tensors, storage_reader=reader, no_dist=True)
    return {key[len(prefix):]: tensor for key, tensor in tensors.items()}


def _single_process() -> bool:
    """No process group: `torch.distributed.checkpoint` then reads and writes everything in this process."""
    import torch.distributed as dist  # only sharded runs need it

    return not dist.is_initialized()


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def _commit(staging: Path, directory: Path, step: int, scheduler_state: dict[str, Any], state: dict[str, Any],
            keep: int) -> Path:
    """Finish a staging directory (scheduler state, `state.json`), rename it into place, prune old ones."""
    target = directory / _step_name(step)
    try:
        torch.save(scheduler_state, staging / SCHEDULER)
        (staging / STATE).write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in step order (staging leftovers are ignored)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if STEP_DIR.match(p.name) and (p / STATE).exists()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(directory: Path) -> Path | None:
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict, dict]:
    """(trainable tensors, optimizer state, scheduler state, state.json) of one checkpoint."""
    if (path / SHARDED).is_dir():
        raise CheckpointError(f"{path} is a sharded checkpoint of an FSDP run: resume it with fsdp on")
    tensors = load_file(str(path / TENSORS))
    optimizer_state = _load_state(path / OPTIMIZER)
    scheduler_state = _load_state(path / SCHEDULER)
    return tensors, optimizer_state, scheduler_state, read_state(path)


def read_state(path: Path) -> dict[str, Any]:
    """The `state.json` of a checkpoint (its step, config and last loss)."""
    return json.loads((path / STATE).read_text())


def _load_state(file: Path) -> dict:
    """An optimizer or scheduler state dict, unpickled with `weights_only=True`: tensors and plain values only.

    AdamW's and LambdaLR's state dicts are made of tensors, numbers, strings, lists, dicts and None, so
    they load this way; a file that needs anything else (an arbitrary object, whose unpickling can run
    code) is refused with a `CheckpointError` rather than loaded.
    """
    try:
        state = torch.load(file, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise CheckpointError(f"{file} holds objects other than tensors and plain values, which a training "
                              "checkpoint never does; refusing to unpickle it (it may not come from audio-r1)") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} does not hold a state dict (found {type(state).__name__})")
    return state


def remove_stale_staging(directory: Path) -> None:
    """Delete staging directories a killed run left behind."""
    if directory.is_dir():
        for leftover in directory.glob(".step-*"):
            shutil.rmtree(leftover, ignore_errors=True)

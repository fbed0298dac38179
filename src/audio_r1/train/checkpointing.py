"""Training checkpoints: written whole or not at all, found again after a crash.

A checkpoint is a directory `step-00000100/` holding the trainable tensors, the optimizer and
scheduler states and `state.json`. It is assembled in a hidden staging directory and renamed into
place, so a run killed at any moment leaves either the previous checkpoints or a complete new one.
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
    target = directory / f"step-{step:08d}"
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=directory))
    try:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(staging / TENSORS))
        torch.save(optimizer_state, staging / OPTIMIZER)
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
    tensors = load_file(str(path / TENSORS))
    optimizer_state = _load_state(path / OPTIMIZER)
    scheduler_state = _load_state(path / SCHEDULER)
    state = json.loads((path / STATE).read_text())
    return tensors, optimizer_state, scheduler_state, state


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

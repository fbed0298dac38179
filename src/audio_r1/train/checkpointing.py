"""Training checkpoints: written whole or not at all, found again after a crash.

A checkpoint is a directory `step-00000100/` holding the trainable tensors, the optimizer and
scheduler states and `state.json`. It is assembled in a hidden staging directory and renamed into
place, so a run killed at any moment leaves either the previous checkpoints or a complete new one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

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
    optimizer_state = torch.load(path / OPTIMIZER, weights_only=False)
    scheduler_state = torch.load(path / SCHEDULER, weights_only=False)
    state = json.loads((path / STATE).read_text())
    return tensors, optimizer_state, scheduler_state, state


def remove_stale_staging(directory: Path) -> None:
    """Delete staging directories a killed run left behind."""
    if directory.is_dir():
        for leftover in directory.glob(".step-*"):
            shutil.rmtree(leftover, ignore_errors=True)

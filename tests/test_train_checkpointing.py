"""Training checkpoints: plain and sharded layouts; optimizer and scheduler states load without running pickled code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from audio_r1.errors import CheckpointError
from audio_r1.train.checkpointing import (
    OPTIMIZER,
    SCHEDULER,
    load_checkpoint,
    load_sharded_checkpoint,
    read_sharded_tensors,
    save_checkpoint,
    save_sharded_checkpoint,
)
from audio_r1.train.options import make_scheduler


def trained(steps: int = 3) -> tuple[torch.nn.Linear, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """A small model after a few AdamW steps, with the warmup-and-cosine scheduler training uses."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW([{"params": [model.weight], "lr": 1e-2}, {"params": [model.bias], "lr": 1e-3}])
    scheduler = make_scheduler(optimizer, warmup_steps=2, total_steps=10, min_lr_ratio=0.1)
    for _ in range(steps):
        model(torch.randn(3, 4)).square().sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, optimizer, scheduler


def save(directory: Path) -> tuple[Path, torch.nn.Linear, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    model, optimizer, scheduler = trained()
    path = save_checkpoint(directory, 3, dict(model.named_parameters()), optimizer.state_dict(),
                           scheduler.state_dict(), {"seed": 1})
    return path, model, optimizer, scheduler


def test_save_and_resume_round_trip(tmp_path: Path) -> None:
    path, model, optimizer, scheduler = save(tmp_path)
    tensors, optimizer_state, scheduler_state, state = load_checkpoint(path)
    assert state == {"seed": 1, "step": 3}
    assert torch.equal(tensors["weight"], model.weight.detach())
    _, resumed_optimizer, resumed_scheduler = trained(steps=0)
    resumed_optimizer.load_state_dict(optimizer_state)
    resumed_scheduler.load_state_dict(scheduler_state)
    assert resumed_scheduler.last_epoch == scheduler.last_epoch == 3
    assert [g["lr"] for g in resumed_optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]
    mine, theirs = resumed_optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert all(torch.equal(mine[key][name], theirs[key][name]) for name in theirs[key])


class _Planted:
    """Unpickling this calls `os.system`: what a hostile `optimizer.pt` would do on resume."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", [OPTIMIZER, SCHEDULER])
def test_a_planted_pickle_is_refused_and_never_runs(tmp_path: Path, name: str) -> None:
    path, *_ = save(tmp_path / "checkpoints")
    marker = tmp_path / "it-ran"
    torch.save({"state": {}, "param_groups": [], "payload": _Planted(marker)}, path / name)
    with pytest.raises(CheckpointError, match=name):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_plain_pickle_that_is_no_state_dict_is_refused(tmp_path: Path) -> None:
    path, *_ = save(tmp_path)
    torch.save([1, 2, 3], path / OPTIMIZER)
    with pytest.raises(CheckpointError, match="state dict"):
        load_checkpoint(path)


def test_a_sharded_checkpoint_round_trips_and_is_refused_by_the_plain_loader(tmp_path: Path) -> None:
    """The layout of FSDP runs' checkpoints, written by one process (the multi-process runs are in test_train_sft)."""
    model, optimizer, scheduler = trained()
    shards = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}, "optimizer": {"lr": 0.5}}
    for step in (1, 2, 3):
        path = save_sharded_checkpoint(tmp_path, step, shards, scheduler.state_dict(), {"seed": 1}, main=True,
                                       barrier=lambda: None, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000002", "step-00000003"], "staging left or not pruned"
    assert {k: torch.equal(v, shards["model"][k]) for k, v in read_sharded_tensors(path).items()} == {
        "weight": True, "bias": True}
    empty = {"model": {k: torch.zeros_like(v) for k, v in shards["model"].items()}, "optimizer": {"lr": 0.0}}
    scheduler_state, state = load_sharded_checkpoint(path, empty)
    assert torch.equal(empty["model"]["weight"], model.weight.detach()) and empty["optimizer"]["lr"] == 0.5
    assert state == {"seed": 1, "step": 3} and scheduler_state["last_epoch"] == scheduler.last_epoch
    with pytest.raises(CheckpointError, match="sharded checkpoint"):
        load_checkpoint(path)
    plain = save_checkpoint(tmp_path / "plain", 1, dict(model.named_parameters()), optimizer.state_dict(),
                            scheduler.state_dict(), {})
    with pytest.raises(CheckpointError, match="not a sharded checkpoint"):
        load_sharded_checkpoint(plain, empty)

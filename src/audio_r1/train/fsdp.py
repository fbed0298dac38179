"""FSDP2 for the trainers: shard a model, step it, checkpoint it and gather it back, in one place.

On GPUs accelerate's FSDP2 plugin shards the model in `accelerator.prepare`. On CPU accelerate
silently runs DDP with full parameters instead, so there `torch.distributed.fsdp.fully_shard` is
called directly over a CPU device mesh (gloo). Either way the model ends up an FSDP2 module whose
parameters are DTensor shards, so the checkpoint, clipping and gathering helpers below serve both.

The FSDP units: every encoder block and every decoder layer (each is gathered just
before it runs and freed after); the root unit keeps the rest (embeddings, output head, final norm,
adaptor, encoder convolutions). Gradients are averaged over processes like DDP's, so a trainer's loss
scaling is the same with and without sharding.

Checkpoints of a sharded model go through `torch.distributed.checkpoint`: every process writes its
own shards of the trainable parameters and of the AdamW state (see `checkpointing.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from .checkpointing import (
    load_checkpoint,
    load_sharded_checkpoint,
    read_state,
    save_checkpoint,
    save_sharded_checkpoint,
)
from .options import effective_mixed_precision, trainable_state


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules that become FSDP units of their own (the root unit takes what is left)."""
    return [*model.encoder.blocks, *model.language_model.get_decoder().layers]


def on_accelerator() -> bool:
    """Whether this process trains on an accelerator (where accelerate's FSDP2 plugin is used)."""
    return torch.accelerator.is_available()


def make_accelerator(fsdp: bool, **kwargs: Any):
    """An `Accelerator` (with the FSDP2 plugin when `fsdp` and on an accelerator); `kwargs` go to it.

    Without an accelerator it is told `cpu=True`, which `accelerate launch --cpu` says through the
    environment: without it, processes started by `torchrun` would each train alone.
    """
    from accelerate import Accelerator, FullyShardedDataParallelPlugin  # slow to import: training only

    if not on_accelerator():
        kwargs["mixed_precision"] = effective_mixed_precision(kwargs.get("mixed_precision", "no"), "cpu")
        return Accelerator(cpu=True, **kwargs)
    plugin = None
    if fsdp:
        plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap", reshard_after_forward=True,
            state_dict_type="SHARDED_STATE_DICT", cpu_ram_efficient_loading=False)
    return Accelerator(fsdp_plugin=plugin, **kwargs)


def prepare(accelerator, model: nn.Module, build_optimizer: Callable[[nn.Module], torch.optim.Optimizer], *,
            fsdp: bool, mixed_precision: str = "no") -> tuple[nn.Module, torch.optim.Optimizer]:
    """(model, optimizer) ready to train: DDP (or one process) without `fsdp`, else FSDP2-sharded.

    The optimizer is built by `build_optimizer` on the parameters the model trains with (FSDP2
    replaces parameters by DTensor shards, so it must come after sharding).
    """
    if fsdp and not accelerator.is_fsdp2:
        _shard_on_cpu(model, mixed_precision)
        return model, build_optimizer(model)
    if fsdp:
        accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap = sorted(
            {type(unit).__name__ for unit in shard_units(model)})
    return accelerator.prepare(model, build_optimizer(model))


def _shard_on_cpu(model: nn.Module, mixed_precision: str) -> None:
    """`fully_shard` every unit, then the root, over a CPU device mesh of all processes (gloo)."""
    if not dist.is_initialized():  # one process: a group of one, so checkpoints have the same layout
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if mixed_precision == "bf16" else MixedPrecisionPolicy())
    for unit in shard_units(model):
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)


def is_sharded(model: nn.Module) -> bool:

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def no_sync(accelerator, model: nn.Module) -> Iterator[None]:
    """Accumulate gradients locally (no reduction across processes) inside the block."""
    if not is_sharded(model):
        with accelerator.no_sync(model):
            yield
        return
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def clip_gradients(accelerator, model: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm to `max_norm`; returns the norm before clipping."""
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)  # DTensor-aware with FSDP2
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


# ---------------------------------------------------------------------------------------- checkpoints


def save_training_state(accelerator, directory: Path, step: int, model: nn.Module, optimizer, scheduler,
                        state: dict[str, Any], keep: int) -> None:
    """Checkpoint the trainable tensors, optimizer and scheduler; every process calls it.

    A sharded model writes a sharded checkpoint (every process its shards); otherwise the main
    process writes the whole tensors.
    """
    if is_sharded(model):
        save_sharded_checkpoint(directory, step, _sharded_state(model, optimizer), scheduler.state_dict(), state,
                                main=accelerator.is_main_process, barrier=accelerator.wait_for_everyone, keep=keep)
        return
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(directory, step, trainable_state(accelerator.unwrap_model(model)), optimizer.state_dict(),
                        scheduler.state_dict(), state, keep=keep)
    accelerator.wait_for_everyone()


def load_training_state(accelerator, path: Path, model: nn.Module, optimizer, scheduler,
                        check: Callable[[dict[str, Any]], None] = lambda state: None) -> dict[str, Any]:
    """Restore what `save_training_state` wrote; `check` sees `state.json` first. Returns `state.json`."""
    check(read_state(path))
    if is_sharded(model):
        shards = _sharded_state(model, optimizer)
        scheduler_state, state = load_sharded_checkpoint(path, shards)
        set_state_dict(model, base_optimizer(optimizer), model_state_dict=shards["model"],
                       optim_state_dict=shards["optimizer"], options=_options(strict=False))
    else:
        tensors, optimizer_state, scheduler_state, state = load_checkpoint(path)
        unwrapped = accelerator.unwrap_model(model)
        missing = set(trainable_state(unwrapped)) - set(tensors)
        if missing:
            raise RuntimeError(f"checkpoint {path} lacks trainable tensors: {sorted(missing)[:5]}")
        unwrapped.load_state_dict(tensors, strict=False)
        optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    return state


def unsharded(accelerator, model: nn.Module, rebuild: Callable[[], nn.Module]) -> nn.Module | None:
    """The trained model whole, on the main process (None on the others); every process calls it.

    A sharded model's full state is gathered onto the main process and loaded into `rebuild()`,
    a fresh model of the same shape (e.g. one more `prepare_model(config)`).
    """
    if not is_sharded(model):
        return accelerator.unwrap_model(model) if accelerator.is_main_process else None
    full = get_model_state_dict(model, options=_options(full_state_dict=True, cpu_offload=True))
    if not accelerator.is_main_process:
        return None
    fresh = rebuild()
    fresh.load_state_dict(full)
    return fresh


def _sharded_state(model: nn.Module, optimizer) -> dict[str, Any]:
    """This process's shards of the trainable parameters and the optimizer state, by parameter name."""
    model_state, optimizer_state = get_state_dict(model, base_optimizer(optimizer), options=_options())
    return {"model": model_state, "optimizer": optimizer_state}


def _options(**kwargs: bool):
    """State-dict options: frozen parameters are left out unless the full state is asked for."""
    return StateDictOptions(ignore_frozen_params=not kwargs.get("full_state_dict", False), **kwargs)


def base_optimizer(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer under accelerate's wrapper (state-dict helpers need the real one)."""
    return getattr(optimizer, "optimizer", optimizer)

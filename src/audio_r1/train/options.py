"""What every training stage shares: settings groups, flags built from them, resume checks, model set-up.

A stage's config dataclass combines the groups it needs (as TRL's configs extend one base):

    @dataclass(kw_only=True)
    class SFTConfig(ModelOptions, OptimiserOptions, RunOptions):
        train: str
        ...

`add_config_flags` turns any such dataclass into command-line flags (one per field, `X | None`
and `list[str] | None` included), `config_from_flags` builds it back, `check_resume` refuses a
checkpoint made with settings that change the result, `prepare_model` loads a model and chooses
what trains, and `make_optimizer` / `make_scheduler` build what every stage steps with. Fields keep their names across stages, so a saved config reads the same way
everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..api import AudioR1
from ..errors import AudioR1Error, ConfigError
from ..pretrained import bundled_delta, trainable_from_delta

C = TypeVar("C")

# Fields that say how long or where a run goes, not what it computes: they may change on resume.
RUN_LENGTH_FIELDS = frozenset({"out", "steps", "save_every", "eval_every", "keep_checkpoints", "log_every",
                               "save_final", "samples_per_step", "device", "evaluate", "dev"})
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class ResumeMismatchError(AudioR1Error, ValueError):
    """A checkpoint was made with other settings; `changed` names them."""

    def __init__(self, changed: list[str]):
        self.changed = changed
        super().__init__(f"cannot resume: settings differ from the checkpoint's: {changed}")


# ------------------------------------------------------------------------------------------ groups


@dataclass(kw_only=True)
class ModelOptions:
    """Which model trains, and which of its parts (the audio encoder is always frozen)."""

    model: str = "smol"  # "smol", "tiny", a model directory or a smol delta file
    lora: bool = True  # LoRA adapters on the decoder instead of training it fully
    lora_rank: int = 16
    lora_alpha: int = 32
    train_decoder: bool = True  # without LoRA: whether the decoder's weights train
    train_adaptor: bool = True
    mixed_precision: str = "no"  # "no" or "bf16" (autocast)
    # a delta.safetensors (or "bundled": the shipped smol's) whose adaptor, LoRA factors and token rows
    # start training, to continue a delta on its own base ("smol-base") rather than stack a new LoRA
    init_delta: str | None = None


@dataclass(kw_only=True)
class OptimiserOptions:
    """AdamW with separate rates for the adaptor and the decoder, warmup, clipping."""

    lr: float = 1e-4
    adaptor_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0


@dataclass(kw_only=True)
class RunOptions:
    """Where a run writes and how often it checkpoints."""

    out: str = "runs/train"
    seed: int = 0
    save_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 1
    save_final: bool = True


def effective_mixed_precision(requested: str, device: torch.device | str) -> str:
    """`requested`, or "no" (with a warning) for bf16 on a CPU without native bf16 matrix products.

    Without AVX512-BF16 or AMX, PyTorch's CPU bf16 matmul falls back to a reference GEMM: one step of
    16 smol examples took 699 s under bf16 autocast on a 2-core AVX2 machine, against 45 s in fp32.
    """
    if requested != "bf16" or torch.device(device).type != "cpu":
        return requested
    native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    if native:
        return requested
    warnings.warn("bf16 autocast requested, but this CPU has no native bf16 matrix products (no AVX512-BF16 "
                  "or AMX): training in fp32, which is an order of magnitude faster here", stacklevel=2)
    return "no"


def check_options(config: Any) -> None:
    """The checks every group needs (called from each stage config's `__post_init__`)."""
    if isinstance(config, ModelOptions):
        if config.mixed_precision not in ("no", "bf16"):
            raise ConfigError(f"mixed_precision must be 'no' or 'bf16', got {config.mixed_precision!r}")
        if config.lora_rank < 1:
            raise ConfigError(f"lora_rank must be >= 1, got {config.lora_rank}")
        if config.init_delta is not None and not config.lora:
            raise ConfigError("init_delta continues a LoRA delta: it needs lora=True")
    if isinstance(config, OptimiserOptions):
        if config.lr <= 0 or config.adaptor_lr <= 0:
            raise ConfigError("learning rates must be > 0")
        if config.warmup_steps < 0 or config.max_grad_norm <= 0:
            raise ConfigError("warmup_steps must be >= 0 and max_grad_norm > 0")
    if isinstance(config, RunOptions) and (config.save_every < 1 or config.log_every < 1):
        raise ConfigError("save_every and log_every must be >= 1")


def require_positive(config: Any, names: Iterable[str]) -> None:
    """Raise `ValueError` naming the first of `names` that is below 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")


# ------------------------------------------------------------------------------------------ resume


def check_resume(saved: Mapping[str, Any], config: Any, also_ignore: Collection[str] = ()) -> None:
    """Refuse to resume from a checkpoint whose saved config differs in a field that changes the result.

    Fields the checkpoint does not know (added since) are accepted; `RUN_LENGTH_FIELDS` and
    `also_ignore` may differ.
    """
    current = dataclasses.asdict(config)
    ignore = RUN_LENGTH_FIELDS | set(also_ignore)
    changed = [k for k in current if k not in ignore and k in saved and saved[k] != current[k]]
    if changed:
        raise ResumeMismatchError(changed)


# ------------------------------------------------------------------------------------------ flags


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, *, helps: Mapping[str, str] | None = None,
                     aliases: Mapping[str, str] | None = None, optional: Collection[str] = ()) -> None:
    """One flag per field of `config_class`: `--lora-rank` for `lora_rank`, `--no-lora` for booleans.

    `X | None` fields take an X or stay None; `list[str] | None` fields take comma-separated values.
    Fields without a default are required flags, except `optional` ones, which may be left out (None)
    and are checked by the caller (e.g. SFT's `--train`, which `--preset` replaces).
    """
    helps = helps or {}
    aliases = aliases or {}
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        flags = ["--" + field.name.replace("_", "-")] + ([aliases[field.name]] if field.name in aliases else [])
        kind, nullable = _flag_type(hints[field.name], field.name)
        default = field.default if field.default is not dataclasses.MISSING else None
        options: dict[str, Any] = {"help": helps.get(field.name), "dest": field.name}
        if kind is bool:
            options |= {"action": argparse.BooleanOptionalAction, "default": default}
        else:
            options |= {"type": kind, "default": default}
            if nullable and options["help"] is None:
                options["help"] = "default: none"
        no_default = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if no_default and field.name not in optional:
            options["required"] = True
        parser.add_argument(*flags, **options)


def run_stage(module: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
              run: Callable[[argparse.Namespace], int], argv: Sequence[str] | None) -> int:
    """`python -m audio_r1.train.<stage>`: the stage's flags (as `audio-r1 train <stage>` has them), then run."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.strip().splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def config_from_flags(config_class: type[C], args: argparse.Namespace) -> C:
    """The config built from the parsed flags of `add_config_flags` (other flags are ignored)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in vars(args).items() if k in names})


def _flag_type(annotation: Any, name: str) -> tuple[Any, bool]:
    """(argparse type, whether None is allowed) of one field's annotation."""
    args = typing.get_args(annotation)
    nullable = type(None) in args and (typing.get_origin(annotation) in (typing.Union, types.UnionType))
    if nullable:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"field {name}: unsupported type {annotation!r}")
        annotation = rest[0]
    if typing.get_origin(annotation) is list and typing.get_args(annotation) == (str,):
        return _comma_list, nullable
    if annotation in (bool, int, float, str):
        return annotation, nullable
    raise TypeError(f"field {name}: no flag for type {annotation!r}")


def _comma_list(text: str) -> list[str]:
    return [piece.strip() for piece in text.split(",") if piece.strip()]


# ------------------------------------------------------------------------------------------ model


def prepare_model(options: ModelOptions):
    """Load the model, freeze the encoder, and choose what trains; returns (AudioR1 wrapper, model).

    The adaptor trains when `train_adaptor`; the decoder through LoRA adapters (with the new
    special tokens' embeddings trainable) when `lora`, else fully when `train_decoder`.
    """
    wrapper = AudioR1.from_pretrained(options.model, progress=False)
    model = wrapper.model
    model.train()
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
    for parameter in model.adapter.parameters():
        parameter.requires_grad_(options.train_adaptor)
    if options.lora:
        from peft import LoraConfig, get_peft_model  # peft: only LoRA runs need it

        special = wrapper.special
        new_tokens = [special.audio_start, special.audio_end, special.audio_patch, special.think_open,
                      special.think_close]
        lora = LoraConfig(r=options.lora_rank, lora_alpha=options.lora_alpha, lora_dropout=0.0,
                          target_modules=LORA_TARGETS, trainable_token_indices={"embed_tokens": sorted(set(new_tokens))})
        model.language_model = get_peft_model(model.language_model, lora)
        if options.init_delta is not None:
            _load_delta(model, options)
    else:
        for parameter in model.language_model.parameters():
            parameter.requires_grad_(options.train_decoder)
    return wrapper, model


def _load_delta(model, options: ModelOptions) -> None:
    """Set the trainable tensors of a fresh LoRA model from `options.init_delta`."""
    path = bundled_delta() if options.init_delta == "bundled" else Path(options.init_delta)
    if path is None or not path.exists():
        raise ConfigError(f"init_delta {options.init_delta!r}: no such delta file")
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    tensors = trainable_from_delta(path, names, scale=options.lora_alpha / options.lora_rank)
    current = dict(model.named_parameters())
    for name, tensor in tensors.items():
        if current[name].shape != tensor.shape:
            raise ConfigError(f"init_delta {path}: {name} has shape {tuple(tensor.shape)}, the model "
                              f"{tuple(current[name].shape)} (another lora_rank?)")
    model.load_state_dict(tensors, strict=False)


def trainable_state(model) -> dict:
    """The tensors that training changes, by name (what a checkpoint must hold)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def make_optimizer(model, options: OptimiserOptions, extra_groups: Iterable[dict] = ()):
    """AdamW with one group for the adaptor (`adaptor_lr`), one for the decoder (`lr`), plus `extra_groups`."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n.startswith("adapter.")], "lr": options.adaptor_lr},
              {"params": [p for n, p in named if not n.startswith("adapter.")], "lr": options.lr}, *extra_groups]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=options.weight_decay)


def make_scheduler(optimizer, warmup_steps: int, total_steps: int | None = None, min_lr_ratio: float = 1.0):
    """Linear warmup over `warmup_steps`; then constant, or (with `total_steps`) cosine decay to `min_lr_ratio`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if total_steps is None:
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

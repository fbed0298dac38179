"""The whole Step-Audio-R1 recipe as one resumable command, ending in a report card.

    audio-r1 recipe run --preset tiny            # CI-sized, a few minutes
    audio-r1 recipe run --preset smol            # the shipped smol model through every stage (2 cores: ~1 h)

Stages, in order (each writes into its own folder under ``--out`` and is skipped when its output exists,
so a killed run picks up where it stopped; ``--skip STAGE`` passes a stage's input straight through):

1. ``cold_start``: SFT on the suite's cold-start traces (smol: the shipped model is the cold start);
2. ``mgrd``: Modality-Grounded Reasoning Distillation, T rounds (`train/mgrd.py`);
3. ``select``: pass@k difficulty selection of the RL prompts (`train/select.py`);
4. ``rl``: PPO with the verified reward, and the same run without the format reward (the ablation);
5. ``dpo``: self-cognition correction (`train/dpo.py`);
6. ``eval``: every stage's model on the held-out split at several thinking budgets, plus its
   self-cognition error rate, then ``report.md`` with one table and two plots.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..api import AudioR1
from ..data.manifest import read_manifest
from ..data.suite import generate_suite
from ..data.traces import build_sft_examples
from ..errors import ConfigError
from ..files import write_text_atomic
from .dpo import DPOConfig, build_probes, run_self_cognition, self_cognition_rate
from .mgrd import MGRDConfig, evaluate_model, run_mgrd
from .options import run_stage
from .report import write_report
from .rl import RLConfig, train_rl
from .select import SelectConfig, run_select
from .sft import SFTConfig, train_sft

STAGES = ("cold_start", "mgrd", "select", "rl", "dpo", "eval")
REPORTED = ("cold_start", "mgrd", "rl", "dpo")  # the models the report compares


@dataclass
class RecipeConfig:
    """Sizes of every stage. `PRESETS` holds the tiny (CI) and smol (2 cores, ~1 h) settings."""

    preset: str = "tiny"
    out: str = "runs/recipe-tiny"
    suite: str | None = None  # an existing suite folder (train/dev/test manifests); None: generate one
    suite_sizes: dict[str, int] = field(default_factory=lambda: {"train": 28, "dev": 14, "test": 14})
    seed: int = 0
    # cold start (None: train it by SFT on the suite's traces; a name or directory: use that model)
    cold_start_model: str | None = None
    cold_start_steps: int = 30
    cold_start_lr: float = 3e-3
    # MGRD
    mgrd_rounds: int = 1
    mgrd_k: int = 2
    mgrd_questions: int = 14
    mgrd_max_new_tokens: int = 48
    # selection
    select_k: int = 4
    select_items: int = 8
    select_band: tuple[int, int] = (0, 4)
    # RL
    rl_steps: int = 2
    rl_prompts_per_step: int = 2
    rl_group_size: int = 4
    rl_max_new_tokens: int = 32
    rl_lr: float = 5e-5
    # DPO
    dpo_train_probes: int = 6
    dpo_heldout_probes: int = 4
    dpo_steps: int = 2
    # evaluation
    eval_items: int | None = None  # None: the whole test split
    think_budgets: tuple[int | None, ...] = (0, 16, None)  # 0: empty think block; None: unlimited
    eval_max_new_tokens: int = 32
    batch_size: int = 8
    mixed_precision: str = "no"
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.skip) - set(STAGES)
        if unknown:
            raise ConfigError(f"unknown stage(s) to skip: {sorted(unknown)}; stages are {', '.join(STAGES)}")


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "smol": dict(
        out="runs/recipe-smol", suite_sizes={"train": 2000, "dev": 200, "test": 400},
        cold_start_model="smol", mgrd_rounds=2, mgrd_k=4, mgrd_questions=28, mgrd_max_new_tokens=128,
        select_k=8, select_items=16, select_band=(3, 6),
        rl_steps=4, rl_prompts_per_step=2, rl_group_size=8, rl_max_new_tokens=128, rl_lr=2e-5,
        dpo_train_probes=12, dpo_heldout_probes=14, dpo_steps=6,
        eval_items=42, think_budgets=(0, 32, None), eval_max_new_tokens=128, batch_size=12,
        mixed_precision="bf16",
    ),
}


def preset_config(name: str, **overrides: Any) -> RecipeConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return RecipeConfig(preset=name, **{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})


# ---------------------------------------------------------------------------------------- stages


def run_recipe(config: RecipeConfig, progress: bool = True) -> Path:
    """Every stage in order; returns the report's path."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.json", json.dumps(asdict(config), indent=2, default=str) + "\n")
    suite = prepare_data(config, out)
    models: dict[str, str] = {}
    models["cold_start"] = cold_start(config, out, suite, progress)
    models["mgrd"] = mgrd_stage(config, out, suite, models["cold_start"], progress)
    selected = select_stage(config, out, suite, models["mgrd"], progress)
    models["rl"], models["rl_no_format"] = rl_stage(config, out, selected, models["mgrd"], progress)
    models["dpo"] = dpo_stage(config, out, suite, models["rl"], progress)
    write_text_atomic(out / "models.json", json.dumps(models, indent=2) + "\n")
    return eval_stage(config, out, suite, models, progress)


def _log(message: str) -> None:
    print(f"[recipe] {message}", flush=True)


def prepare_data(config: RecipeConfig, out: Path) -> Path:
    """The suite folder: the one given, or one generated (deterministically) under ``out/suite``."""
    if config.suite:
        suite = Path(config.suite)
        if not (suite / "train.jsonl").exists():
            raise FileNotFoundError(f"{suite} has no train.jsonl: give a folder made by `audio-r1 data suite`")
        return suite
    suite = out / "suite"
    if not (suite / "test.jsonl").exists():
        _log(f"generating the suite in {suite}")
        generate_suite(suite, seed=config.seed, sizes=config.suite_sizes, workers=1, progress=False)
    return suite


def cold_start(config: RecipeConfig, out: Path, suite: Path, progress: bool) -> str:
    """The cold-start model: the one named, or SFT of the preset on the suite's traces."""
    if config.cold_start_model is not None or "cold_start" in config.skip:
        return config.cold_start_model or config.preset
    folder = out / "cold_start"
    final = folder / "final"
    if (final / "config.json").exists():
        return str(final)

    records = build_sft_examples(read_manifest(suite / "train.jsonl"), surrogate_share=0.1, empty_think_share=0.1,
                                 seed=config.seed, audio_root=suite.resolve())
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    _log(f"cold start: SFT of {config.preset} on {len(records)} traces")
    sft = SFTConfig(train=str(folder / "records.jsonl"), out=str(folder), model=config.preset,
                    steps=config.cold_start_steps, batch_size=8, micro_batch_size=8, lr=config.cold_start_lr,
                    warmup_steps=5, save_every=max(1, config.cold_start_steps // 2),
                    eval_every=config.cold_start_steps, seed=config.seed, save_final=True,
                    mixed_precision=config.mixed_precision)
    train_sft(sft, resume=(folder / "checkpoints").exists(), progress=progress)
    return str(final)


def mgrd_stage(config: RecipeConfig, out: Path, suite: Path, model: str, progress: bool) -> str:
    if "mgrd" in config.skip:
        return model

    _log(f"MGRD: {config.mgrd_rounds} round(s), {config.mgrd_k} candidates per question")
    mgrd = MGRDConfig(data=str(suite / "train.jsonl"), out=str(out / "mgrd"), model=model,
                      rounds=config.mgrd_rounds, k=config.mgrd_k, max_new_tokens=config.mgrd_max_new_tokens,
                      batch_size=max(config.batch_size, config.mgrd_k), limit=config.mgrd_questions,
                      eval_data=str(suite / "dev.jsonl"), eval_limit=config.eval_items, seed=config.seed,
                      mixed_precision=config.mixed_precision)
    return run_mgrd(mgrd, progress=progress)[-1].model


def select_stage(config: RecipeConfig, out: Path, suite: Path, model: str, progress: bool) -> Path:
    """The RL prompt set: pass@k band selection; falls back to every scored prompt if the band is empty."""
    selected = out / "select" / "selected.jsonl"
    if "select" in config.skip:
        return suite / "train.jsonl"
    if selected.exists():
        return selected

    low, high = config.select_band
    _log(f"selection: pass@{config.select_k}, keep {low}..{high} correct")
    result = run_select(SelectConfig(data=str(suite / "train.jsonl"), out=str(out / "select"), model=model,
                                     k=config.select_k, low=low, high=high, batch_size=max(config.batch_size,
                                     config.select_k), max_new_tokens=config.rl_max_new_tokens, seed=config.seed,
                                     limit=config.select_items), progress=progress)
    print(result.histogram)
    if not result.kept:
        raise RuntimeError(f"selection kept no prompt in the band {low}..{high} of {config.select_k}; widen it")
    return result.manifest


def rl_stage(config: RecipeConfig, out: Path, data: Path, model: str, progress: bool) -> tuple[str, str]:
    """PPO with the format reward (the main line) and without it (the ablation), from the same start."""
    if "rl" in config.skip:
        return model, model

    finals = []
    for name, format_reward in (("rl", True), ("rl_no_format", False)):
        folder = out / name
        final = folder / "final"
        if not (final / "config.json").exists():
            _log(f"RL ({'with' if format_reward else 'without'} the format reward): {config.rl_steps} steps")
            rl = RLConfig(data=str(data), out=str(folder), model=model, steps=config.rl_steps,
                          prompts_per_step=config.rl_prompts_per_step, group_size=config.rl_group_size,
                          max_new_tokens=config.rl_max_new_tokens, lr=config.rl_lr, format_reward=format_reward,
                          rollout_batch_size=max(config.batch_size, config.rl_group_size),
                          save_every=max(1, config.rl_steps // 2), seed=config.seed,
                          mixed_precision=config.mixed_precision)
            train_rl(rl, resume=(folder / "checkpoints").exists(), progress=progress)
        finals.append(str(final))
    return finals[0], finals[1]


def dpo_stage(config: RecipeConfig, out: Path, suite: Path, model: str, progress: bool) -> str:
    if "dpo" in config.skip:
        return model

    folder = out / "dpo"
    if not (folder / "report.json").exists():
        _log("DPO: self-cognition correction")
        dpo = DPOConfig(data=str(suite / "dev.jsonl"), out=str(folder), model=model,
                        train_probes=config.dpo_train_probes, heldout_probes=config.dpo_heldout_probes,
                        steps=config.dpo_steps, max_new_tokens=config.eval_max_new_tokens, seed=config.seed,
                        evaluate=False)
        run_self_cognition(dpo, resume=(folder / "checkpoints").exists(), progress=progress)
    return str(folder / "final")


# ------------------------------------------------------------------------------------ evaluation


def eval_stage(config: RecipeConfig, out: Path, suite: Path, models: dict[str, str], progress: bool) -> Path:
    """Each reported model at each budget on the test split, its self-cognition rate, then the report."""
    folder = out / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    for stage in REPORTED:
        rows[stage] = {"model": models[stage], "budgets": {}}
        for budget in config.think_budgets:
            label = "none" if budget is None else str(budget)
            settings = dict(think=budget != 0, max_think_tokens=budget if budget else None,
                            max_new_tokens=config.eval_max_new_tokens, batch_size=config.batch_size)
            _log(f"eval {stage} at think budget {label}")
            rows[stage]["budgets"][label] = evaluate_model(models[stage], str(suite / "test.jsonl"),
                                                           folder / f"{stage}-budget-{label}.json",
                                                           config.eval_items, progress, **settings)
        rows[stage]["self_cognition"] = self_cognition(config, suite, models[stage], folder / f"{stage}-sc.json")
    write_text_atomic(folder / "results.json", json.dumps(rows, indent=2) + "\n")

    return write_report(config, out, rows)


def self_cognition(config: RecipeConfig, suite: Path, model: str, target: Path) -> float:
    """Self-denial rate on held-out probes (the DPO stage's held-out split of the dev items)."""
    if not target.exists():
        items = read_manifest(suite / "dev.jsonl")
        _, heldout = build_probes(items, config.dpo_train_probes, config.dpo_heldout_probes, root=suite, seed=0)
        rate, texts = self_cognition_rate(AudioR1.from_pretrained(model, progress=False), heldout,
                                          max_new_tokens=config.eval_max_new_tokens, batch_size=config.batch_size)
        write_text_atomic(target, json.dumps({"rate": rate, "n": len(texts), "replies": texts}, indent=1) + "\n")
    return json.loads(target.read_text())["rate"]


# ------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--out", default=None, help="run folder (default: runs/recipe-PRESET)")
    parser.add_argument("--suite", default=None, help="an existing suite folder instead of generating one")
    parser.add_argument("--skip", default="", help=f"comma-separated stages to pass through: {', '.join(STAGES)}")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """`audio-r1 recipe run`: every stage of the preset, then report.md."""
    skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
    config = preset_config(args.preset, out=args.out, suite=args.suite)
    config = replace(config, skip=skip)
    report = run_recipe(config, progress=not args.no_progress)
    print(f"report written to {report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("audio_r1.train.recipe", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())

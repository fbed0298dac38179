"""The plumbing every training stage shares: flags from config dataclasses, the resume check, `python -m`."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from audio_r1.errors import AudioR1Error
from audio_r1.train.dpo import DPOConfig
from audio_r1.train.mgrd import MGRDConfig
from audio_r1.train.options import (
    ModelOptions,
    OptimiserOptions,
    ResumeMismatchError,
    RunOptions,
    add_config_flags,
    check_resume,
    config_from_flags,
    effective_mixed_precision,
)
from audio_r1.train.rl import RLConfig
from audio_r1.train.select import SelectConfig
from audio_r1.train.sft import SFTConfig

STAGES = ["sft", "rl", "dpo", "mgrd", "select", "recipe"]


@dataclasses.dataclass(kw_only=True)
class Example(ModelOptions, RunOptions):
    data: str
    limit: int | None = None
    rate: float | None = 0.5
    families: list[str] | None = None


def parse(argv: list[str]) -> Example:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, Example)
    return config_from_flags(Example, parser.parse_args(argv))


def test_flags_come_from_the_fields_with_their_types() -> None:
    config = parse(["--data", "m.jsonl", "--limit", "5", "--families", "a, b", "--no-lora", "--lora-rank", "4"])
    assert (config.limit, config.rate, config.families, config.lora, config.lora_rank) == (5, 0.5, ["a", "b"], False, 4)
    assert parse(["--data", "m"]).limit is None and parse(["--data", "m"]).lora is True


def test_a_field_without_default_is_a_required_flag(capsys) -> None:
    with pytest.raises(SystemExit):
        parse(["--limit", "3"])
    assert "--data" in capsys.readouterr().err


@pytest.mark.parametrize("config_class", [SFTConfig, RLConfig, DPOConfig, MGRDConfig])
def test_every_trainer_shares_the_groups(config_class: type) -> None:
    assert issubclass(config_class, ModelOptions)
    names = {f.name for f in dataclasses.fields(config_class)}
    assert {"model", "lora", "lora_rank", "lora_alpha", "mixed_precision"} <= names
    if issubclass(config_class, OptimiserOptions):
        assert {"lr", "adaptor_lr", "weight_decay", "warmup_steps", "max_grad_norm", "out", "seed"} <= names


def test_resume_refuses_a_changed_setting_and_allows_run_length() -> None:
    saved = dataclasses.asdict(RLConfig(data="m", lr=1e-5))
    check_resume(saved, RLConfig(data="m", lr=1e-5, steps=500, out="elsewhere"))
    with pytest.raises(ResumeMismatchError) as caught:
        check_resume(saved, RLConfig(data="m", lr=2e-5))
    assert caught.value.changed == ["lr"] and isinstance(caught.value, AudioR1Error)
    check_resume({k: v for k, v in saved.items() if k != "train_adaptor"}, RLConfig(data="m", lr=1e-5))


def test_init_delta_needs_lora_and_an_existing_file() -> None:
    from audio_r1.errors import ConfigError
    from audio_r1.train.sft import SFTConfig

    with pytest.raises(ConfigError, match="needs lora"):
        SFTConfig(train="t.jsonl", lora=False, init_delta="bundled")
    from audio_r1.train.options import prepare_model

    with pytest.raises(ConfigError, match="no such delta"):
        prepare_model(SFTConfig(train="t.jsonl", model="tiny", lora=True, init_delta="/nowhere/delta.safetensors"))


def test_select_band_sets_both_bounds() -> None:
    from audio_r1.cli import build_parser

    args = build_parser().parse_args(["select", "--data", "m", "--band", "2", "5", "-k", "6"])
    from audio_r1.train.select import SelectConfig as Config

    if args.band is not None:
        args.low, args.high = args.band
    config = config_from_flags(Config, args)
    assert (config.low, config.high, config.k) == (2, 5, 6) and isinstance(config, SelectConfig)


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_runs_alone(stage: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"audio_r1.train.{stage}", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"audio_r1.train.{stage}" in done.stdout


def test_no_stage_imports_the_cli() -> None:
    code = ("import sys, audio_r1.train.sft, audio_r1.train.rl, audio_r1.train.dpo, audio_r1.train.mgrd, "
            "audio_r1.train.select, audio_r1.train.recipe; print('audio_r1.cli' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def test_bf16_falls_back_to_fp32_only_on_a_cpu_without_native_bf16(monkeypatch) -> None:
    import torch

    assert effective_mixed_precision("no", "cpu") == "no"
    assert effective_mixed_precision("bf16", "cuda") == "bf16"  # decided by the device, not checked here
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert effective_mixed_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16"):
        assert effective_mixed_precision("bf16", "cpu") == "no"

"""Cold-start SFT: label masking, overfitting, exact resume after SIGKILL, two processes on gloo (DDP, FSDP2)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from audio_r1.api import AudioR1
from audio_r1.train.checkpointing import read_sharded_tensors
from audio_r1.train.collate import IGNORE, RecordError, build_example, collate
from audio_r1.train.sft import SFTConfig, global_batch_indices, load_records, train_sft

SR = 16000


def write_records(directory: Path, n: int = 24, seed: int = 0) -> Path:
    """High/low tone questions with a one-line acoustic reasoning each."""
    rng = np.random.default_rng(seed)
    (directory / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        high = i % 2 == 0
        freq = float(rng.uniform(1200, 1600) if high else rng.uniform(150, 250))
        t = np.arange(int(rng.uniform(0.4, 0.8) * SR)) / SR
        sf.write(directory / "audio" / f"{i}.wav", 0.3 * np.sin(2 * np.pi * freq * t), SR)
        lines.append(json.dumps({
            "id": f"tone-{i}", "audio": f"audio/{i}.wav", "prompt": "Is the tone high or low?",
            "reasoning": f"The tone sits near {freq:.0f} Hz.", "answer_text": "high" if high else "low",
        }))
    path = directory / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


def test_labels_cover_only_the_assistant_turn(tmp_path: Path, tiny: AudioR1) -> None:
    records = load_records(write_records(tmp_path, n=2))
    example = build_example(records[0], tiny.tokenizer, tiny.template, tiny.config, base_dir=tmp_path)
    labelled = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    text = tiny.tokenizer.decode(labelled)
    assert text.startswith("<think>\nThe tone sits near") and text.endswith("</think>\nhigh<|EOT|>")
    assert tiny.special.audio_patch not in labelled
    assert example.input_ids.count(tiny.special.audio_patch) == tiny.config.num_audio_patches(example.audio[0].valid_frames)
    batch = collate([example, build_example(records[1], tiny.tokenizer, tiny.template, tiny.config,
                                            base_dir=tmp_path)], tiny.special.end_of_turn)
    assert batch.input_ids.shape[0] == 2 and batch.audio.chunks_per_prompt == [1, 1]


def test_truncation_never_cuts_the_prompt(tmp_path: Path, tiny: AudioR1) -> None:
    record = load_records(write_records(tmp_path, n=1))[0]
    with pytest.raises(RecordError, match="prompt alone"):
        build_example(record, tiny.tokenizer, tiny.template, tiny.config, base_dir=tmp_path, max_length=30)
    full = build_example(record, tiny.tokenizer, tiny.template, tiny.config, base_dir=tmp_path)
    first_label = next(i for i, x in enumerate(full.labels) if x != IGNORE)
    cut = build_example(record, tiny.tokenizer, tiny.template, tiny.config, base_dir=tmp_path,
                        max_length=first_label + 3)
    assert cut.input_ids == full.input_ids[: first_label + 3] and cut.label_tokens == 3


def test_bad_records_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "q", "answer_text": "a"}\n{"prompt": "q"}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:2: field 'answer_text'"):
        load_records(path)
    path.write_text('{"prompt": "q", "answer_text": "a"}\nnot json\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:2: invalid JSON"):
        load_records(path)


def test_batches_follow_a_fixed_order_and_cover_every_example() -> None:
    first_epoch = [i for step in range(3) for i in global_batch_indices(step, 8, 24, seed=1)]
    assert sorted(first_epoch) == list(range(24))
    assert global_batch_indices(5, 8, 24, seed=1) == global_batch_indices(5, 8, 24, seed=1)
    assert global_batch_indices(0, 8, 24, seed=1) != global_batch_indices(0, 8, 24, seed=2)


def test_short_sft_overfits_the_training_items(tmp_path: Path) -> None:
    train = write_records(tmp_path / "data", n=16)
    config = SFTConfig(train=str(train), dev=str(train), out=str(tmp_path / "run"), model="tiny", steps=200,
                       batch_size=8, micro_batch_size=8, lr=3e-3, adaptor_lr=3e-3, warmup_steps=5,
                       save_every=1000, eval_every=100)
    result = train_sft(config, progress=False)
    assert result.final_loss < 0.35, result
    model = AudioR1.from_pretrained(tmp_path / "run" / "final")
    records = load_records(train)
    correct = 0
    for record in records:
        reply = model.ask(tmp_path / "data" / record["audio"], record["prompt"], max_new_tokens=40)
        correct += reply.answer.strip() == record["answer_text"]
    assert correct >= 14, f"{correct}/16 training items answered correctly"
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train/loss"] < metrics[0]["train/loss"] and "dev/loss" in metrics[-1]
    assert list((tmp_path / "run").glob("**/events.out.tfevents*")), "TensorBoard log missing"


def _sft_command(train: Path, out: Path, steps: int, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "audio_r1.train.sft", "--model", "tiny", "--train", str(train), "--out", str(out),
            "--steps", str(steps), "--batch-size", "8", "--micro-batch-size", "2", "--lr", "1e-3",
            "--save-every", "2", "--eval-every", "100", "--no-save-final", "--no-progress", *extra]


def _final_tensors(out: Path, steps: int) -> dict[str, torch.Tensor]:
    """The trainable tensors of a run's checkpoint at `steps`, whole (also from a sharded checkpoint)."""
    path = out / "checkpoints" / f"step-{steps:08d}"
    if (path / "sharded").is_dir():
        return read_sharded_tensors(path)
    return load_file(str(path / "trainable.safetensors"))


def _losses(out: Path, key: str = "train/loss") -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [record[key] for record in records if key in record]


def _launch_two(command: list[str], launcher: list[str]) -> None:
    """Run an SFT command (from `_sft_command`) on two CPU processes started by `launcher`."""
    done = subprocess.run([*launcher, "-m", "audio_r1.train.sft", *command[3:]], capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]


ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines",
              "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
TWO_PROCESS_STEPS = 4
LAUNCH_TIMEOUT = 1800  # seconds a few steps of `tiny` may take: minutes when a niced run shares busy cores


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(records, run directory, dev flags) of a plain one-process run: what the two-process runs must equal.

    The dev set has an odd number of records, so two processes get unequal shares of it.
    """
    root = tmp_path_factory.mktemp("one-process")
    train = write_records(root / "data", n=16)
    dev = ["--dev", str(write_records(root / "dev", n=5, seed=1))]
    subprocess.run(_sft_command(train, root / "one", TWO_PROCESS_STEPS, dev), check=True, capture_output=True,
                   timeout=LAUNCH_TIMEOUT)
    return train, root / "one", dev


def test_resume_after_sigkill_ends_with_the_same_weights(tmp_path: Path) -> None:
    train = write_records(tmp_path / "data", n=16)
    steps = 10
    subprocess.run(_sft_command(train, tmp_path / "straight", steps), check=True, capture_output=True, timeout=600)

    victim = subprocess.Popen(_sft_command(train, tmp_path / "killed", steps), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "killed/checkpoints/step-00000004/state.json").exists():
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    survivors = sorted(p.name for p in (tmp_path / "killed/checkpoints").iterdir() if not p.name.startswith("."))
    assert f"step-{steps:08d}" not in survivors, "killed too late to test resuming"
    subprocess.run(_sft_command(train, tmp_path / "killed", steps, ["--resume"]), check=True, capture_output=True,
                   timeout=600)
    straight, resumed = _final_tensors(tmp_path / "straight", steps), _final_tensors(tmp_path / "killed", steps)
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)


def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path, one_process: tuple) -> None:
    train, one, _ = one_process
    _launch_two(_sft_command(train, tmp_path / "two", TWO_PROCESS_STEPS), ACCELERATE)
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(one), rtol=1e-4)
    expected, two = _final_tensors(one, TWO_PROCESS_STEPS), _final_tensors(tmp_path / "two", TWO_PROCESS_STEPS)
    for name in expected:
        torch.testing.assert_close(two[name], expected[name], rtol=1e-3, atol=1e-5, msg=name)


def test_fsdp_on_two_processes_matches_one_and_resumes_exactly(tmp_path: Path, one_process: tuple) -> None:
    """FSDP2 over two gloo processes (torchrun) trains like one process; a resumed run like an uninterrupted one.

    Tolerances: the two runs see the same global batches, but the sharded run sums each gradient from two
    partial sums (reduce-scatter) where one process sums in one go, so float32 rounding differs (measured:
    losses within 1e-7 relative, weights within 1e-6 after 4 AdamW steps of lr 1e-3; AdamW's division by
    sqrt(v) can magnify rounding in elements whose gradient is near zero, hence atol 1e-5, 1% of one step).
    The resumed run repeats the uninterrupted one's arithmetic exactly, so it is compared exactly.
    """
    train, one, dev = one_process
    steps, sharded = TWO_PROCESS_STEPS, tmp_path / "sharded"
    _launch_two(_sft_command(train, sharded, steps, ["--fsdp", *dev]), TORCHRUN)
    assert sorted(p.name for p in (sharded / "checkpoints" / f"step-{steps:08d}" / "sharded").glob("*.distcp")) == [
        "__0_0.distcp", "__1_0.distcp"], "each process writes its own shards"
    np.testing.assert_allclose(_losses(sharded), _losses(one), rtol=1e-6)
    np.testing.assert_allclose(_losses(sharded, "dev/loss"), _losses(one, "dev/loss"), rtol=1e-6)
    expected, got = _final_tensors(one, steps), _final_tensors(sharded, steps)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)

    # The run as it stood after its step-2 checkpoint, continued (and exported whole at the end).
    resumed = tmp_path / "resumed"
    shutil.copytree(sharded, resumed)
    shutil.rmtree(resumed / "checkpoints" / f"step-{steps:08d}")
    lines = (resumed / "metrics.jsonl").read_text().splitlines(keepends=True)
    (resumed / "metrics.jsonl").write_text("".join(lines[:2]))
    command = _sft_command(train, resumed, steps, ["--fsdp", "--resume", *dev])
    _launch_two([c for c in command if c != "--no-save-final"], TORCHRUN)
    assert _losses(resumed) == _losses(sharded) and _losses(resumed, "dev/loss") == _losses(sharded, "dev/loss")
    final = _final_tensors(resumed, steps)
    for name, tensor in _final_tensors(sharded, steps).items():
        torch.testing.assert_close(final[name], tensor, rtol=0, atol=0, msg=name)
    exported = dict(AudioR1.from_pretrained(resumed / "final").model.named_parameters())
    for name, tensor in final.items():
        torch.testing.assert_close(exported[name], tensor, rtol=0, atol=0, msg=name)

"""Cold-start SFT: label masking, overfitting, exact resume after SIGKILL, two processes on gloo."""

from __future__ import annotations

import json
import os
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
    return load_file(str(out / "checkpoints" / f"step-{steps:08d}" / "trainable.safetensors"))


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


def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    train = write_records(tmp_path / "data", n=16)
    steps = 4
    subprocess.run(_sft_command(train, tmp_path / "one", steps), check=True, capture_output=True, timeout=600)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "audio_r1.train.sft"]
    command = launch + _sft_command(train, tmp_path / "two", steps)[3:]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["train/loss"] for line in lines]

    np.testing.assert_allclose(losses("two"), losses("one"), rtol=1e-4)
    one, two = _final_tensors(tmp_path / "one", steps), _final_tensors(tmp_path / "two", steps)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-3, atol=1e-5, msg=name)

"""Benchmark: our log-mel (torch.stft) against transformers' WhisperFeatureExtractor on ten 30 s clips.

Both run in the same process on the same waveforms; the script checks they agree within 1e-3 and prints a
markdown table. ``--write`` puts the table in BENCHMARKS.md (see ``report.py``).

    .venv/bin/python bench/bench_logmel.py            # print only
    .venv/bin/python bench/bench_logmel.py --write    # also update BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402

from audio_r1.audio import SAMPLE_RATE, load_audio, log_mel_spectrogram  # noqa: E402

TOLERANCE = 1e-3
TEXTS = [
    "The quick brown fox jumps over the lazy dog while the radio plays an old song in the kitchen.",
    "Step Audio R one listens to speech, music and everyday sounds, and reasons before it answers.",
    "She sells sea shells by the sea shore; the shells she sells are surely sea shells, I am sure.",
    "Seven hundred and forty two people waited for the train, which arrived eleven minutes late.",
    "Please remind me to call the dentist tomorrow morning and to buy bread on the way home.",
]


def speech_clips(n_clips: int, seconds: float) -> list[np.ndarray] | None:
    """``n_clips`` espeak-ng speech clips, each exactly ``seconds`` long at 16 kHz; None without espeak-ng."""
    if shutil.which("espeak-ng") is None:
        return None
    n = int(seconds * SAMPLE_RATE)
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_clips):
            path = Path(tmp) / f"clip{i}.wav"
            text = " ".join(TEXTS[(i + k) % len(TEXTS)] for k in range(len(TEXTS)))
            voice = ["en", "en-us", "en-gb-x-rp", "de", "fr"][i % 5]
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(140 + 7 * i), "-w", str(path), text],
                           check=True, capture_output=True)
            speech = load_audio(path)
            clips.append(np.resize(speech, n).astype(np.float32))  # repeats the passage to fill the clip
    return clips


def synthetic_clips(n_clips: int, seconds: float) -> list[np.ndarray]:
    """Noise plus a few tones with a slow envelope, as a stand-in for speech."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clips = []
    for _ in range(n_clips):
        x = 0.02 * rng.standard_normal(len(t))
        for freq in rng.uniform(100, 4000, size=4):
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 3) * t)
            x += 0.1 * np.sin(2 * np.pi * freq * t) * envelope
        clips.append(x.astype(np.float32))
    return clips


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
          ) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls after one warm-up, and the last result."""
    result = fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def run(n_clips: int, seconds: float, n_mels: int, repeats: int, device: str) -> tuple[str, bool]:
    """Time all implementations; return (markdown report, whether every output agreed within tolerance)."""
    import transformers
    from transformers import WhisperFeatureExtractor

    clips = speech_clips(n_clips, seconds)
    source = "espeak-ng speech"
    if clips is None:
        clips, source = synthetic_clips(n_clips, seconds), "synthetic noise + tones (espeak-ng not installed)"
    batch = np.stack(clips)
    fe = WhisperFeatureExtractor(feature_size=n_mels)

    t_np, ref = timed(lambda: fe._np_extract_fbank_features(batch, "cpu"), max(1, repeats // 2))
    t_call, hf_call = timed(
        lambda: fe(clips, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"], repeats)
    ours_cpu = torch.from_numpy(batch)
    t_ours, ours = timed(lambda: log_mel_spectrogram(ours_cpu, n_mels), repeats)
    rows = [
        ("WhisperFeatureExtractor, numpy path (`_np_extract_fbank_features`)", t_np, 0.0),
        ("WhisperFeatureExtractor `__call__` (torch path: its default when torch is installed)", t_call,
         float(np.abs(hf_call - ref).max())),
        ("audio_r1 `log_mel_spectrogram` on the (clips, samples) batch, CPU", t_ours,
         float(np.abs(ours.numpy() - ref).max())),
    ]
    if device != "cpu":
        on_device = ours_cpu.to(device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        t_dev, out = timed(lambda: log_mel_spectrogram(on_device, n_mels), repeats, sync)
        rows.append((f"audio_r1 `log_mel_spectrogram` on the (clips, samples) batch, {device}", t_dev,
                     float(np.abs(out.cpu().numpy() - ref).max())))

    ok = all(diff < TOLERANCE for _, _, diff in rows)
    gpu = f", GPU: {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    lines = [
        f"`bench/bench_logmel.py`: {n_clips} clips x {seconds:g} s at 16 kHz ({source}), {n_mels} mel bins, "
        f"median of {repeats} runs (numpy path: {max(1, repeats // 2)}).",
        f"CPU: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"transformers {transformers.__version__}, "
        f"numpy {np.__version__}{gpu}.",
        "",
        "| implementation | seconds (all clips) | speed-up vs numpy path | max abs diff vs numpy path |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds_taken, diff in rows:
        lines.append(f"| {name} | {seconds_taken:.4f} | {t_np / seconds_taken:.1f}x | {diff:.2e} |")
    lines += ["", f"All outputs agree within {TOLERANCE:g}: {'yes' if ok else 'NO'}."]
    return "\n".join(lines) + "\n", ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--n-mels", type=int, default=128, choices=(80, 128))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="also time ours on this device (e.g. cuda)")
    parser.add_argument("--write", action="store_true", help="update the Log-mel section of BENCHMARKS.md")
    args = parser.parse_args(argv)

    report, ok = run(args.clips, args.seconds, args.n_mels, args.repeats, args.device)
    print(report)
    if args.write:
        write_section("bench_logmel", "Log-mel", report.rstrip("\n"), "python bench/bench_logmel.py --write")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

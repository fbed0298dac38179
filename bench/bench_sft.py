"""SFT throughput and peak memory: tiny and smol presets, one and two processes (accelerate, CPU).

Each configuration runs `audio-r1 train sft` for a few optimizer steps on records of the acoustic
suite and reports the median examples/s and tokens/s of the steps after the first (warm-up), and
the peak RSS of one training process. Run: python bench/bench_sft.py --write [--suite runs/suite-v1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402

LAUNCH_TWO = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "audio_r1.train.sft"]
LAUNCH_ONE = [sys.executable, "-m", "audio_r1.train.sft"]


def run(model: str, processes: int, records: Path, steps: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        command = (LAUNCH_TWO if processes == 2 else LAUNCH_ONE) + [
            "--model", model, "--train", str(records), "--out", out, "--steps", str(steps),
            "--batch-size", "16", "--micro-batch-size", "8", "--save-every", "1000", "--eval-every", "1000",
            "--no-save-final", "--no-progress", *extra,
        ]
        # A small wrapper process runs the training so that its RUSAGE_CHILDREN peak covers this run alone.
        wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        done = subprocess.run([sys.executable, "-c", wrapper, *command], check=True, capture_output=True, text=True)
        peak_kb = int(done.stdout.strip().splitlines()[-1])
        metrics = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()][1:]
    return {
        "examples_per_s": statistics.median(m["train/examples_per_s"] for m in metrics),
        "tokens_per_s": statistics.median(m["train/tokens_per_s"] for m in metrics),
        "peak_rss_gb": peak_kb / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="runs/suite-v1", help="a generated suite with train.sft.jsonl")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    suite = Path(args.suite)
    records = suite / "bench.sft.jsonl"
    lines = (suite / "train.sft.jsonl").read_text().splitlines()[: 16 * args.steps]
    records.write_text("\n".join(lines) + "\n")

    rows = []
    configs = [
        ("tiny", 1, []), ("tiny", 2, []),
        ("smol-base", 1, ["--lora"]), ("smol-base", 2, ["--lora"]),
        ("smol-base", 1, ["--lora", "--mixed-precision", "bf16"]),
    ]
    for model, processes, extra in configs:
        result = run(model, processes, records, args.steps, extra)
        label = f"{model} {'LoRA ' if '--lora' in extra else ''}{'bf16' if 'bf16' in extra else 'fp32'}"
        rows.append(f"| {label} | {processes} | {result['examples_per_s']:.2f} | {result['tokens_per_s']:.0f} "
                    f"| {result['peak_rss_gb']:.2f} |")
        print(rows[-1], flush=True)
    table = "\n".join([
        f"Global batch 16 (micro-batch 8 per process), {args.steps} steps on suite records, median of the steps "
        "after the first. Two processes split each global batch (gloo, same update as one process).",
        "",
        "| model | processes | examples/s | tokens/s | peak RSS per process (GB) |",
        "|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    if args.write:
        write_section("bench_sft", "SFT throughput", table, "python bench/bench_sft.py --write")


if __name__ == "__main__":
    main()

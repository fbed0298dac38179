"""Decoding speed of our engine against `transformers` `generate`, same weights, same prompt.

Measures, in one run on this machine:
- decode tokens/s at batch 1 and 8 for our engine and for `generate` (fp32), and for int8 weights;
- the memory-bandwidth bound: weight bytes read per decode step over the measured copy bandwidth;
- peak RSS of `audio-r1 ask` on the smol preset and its time to first token on a 10 s clip.

Decode rate = (N - 1) extra tokens / (time for N tokens - time for 1 token), each the median of
`--repeats` runs, so prefill is excluded the same way for both. Run: python bench/bench_decode.py --write
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402

from audio_r1.api import AudioR1  # noqa: E402
from audio_r1.engine import Engine, GenerationConfig  # noqa: E402
from audio_r1.quantization import quantize_int8, weight_bytes  # noqa: E402


def clip(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (t % 1 < 0.5)).astype(np.float32)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_rate(run_for, tokens: int, batch: int, repeats: int) -> float:
    """Tokens/s over the decode steps only (prefill cancels out)."""
    full = median_time(lambda: run_for(tokens), repeats)
    first = median_time(lambda: run_for(1), repeats)
    rate = batch * (tokens - 1) / (full - first)
    print(f"  batch {batch}: {tokens} tokens in {full:.2f} s, 1 token in {first:.2f} s -> {rate:.1f} tokens/s",
          file=sys.stderr)
    return rate


def ours(engine: Engine, prompts, new_tokens: int) -> None:
    config = GenerationConfig(max_new_tokens=new_tokens, ignore_eos=True)
    results = engine.generate(prompts, config)
    assert all(len(r.token_ids) == new_tokens for r in results)


def hf_generate(model: AudioR1, embeds: torch.Tensor, mask: torch.Tensor, new_tokens: int) -> None:
    with torch.inference_mode():
        out = model.model.language_model.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=model.special.end_of_turn,
        )
    assert out.shape[1] == new_tokens


def hf_inputs(model: AudioR1, prompts):
    ids, mask = model.engine._left_pad([p.input_ids for p in prompts], torch.device("cpu"))
    with torch.inference_mode():
        embeds = model.model.embed_inputs(ids, model.engine._audio_batch(prompts))
    return embeds, mask


def copy_bandwidth() -> float:
    """Bytes/s moved by a large tensor copy (read + write), the ceiling for weight streaming."""
    src = torch.empty(64 * 2**20, dtype=torch.float32).normal_()
    dst = torch.empty_like(src)
    seconds = median_time(lambda: dst.copy_(src), 9)
    return 2 * src.numel() * src.element_size() / seconds


def ask_rss_and_ttft(tmp: Path) -> tuple[float, float]:
    """Peak RSS (GB) of a whole `audio-r1 ask` process and its time to first token on 10 s audio."""
    import soundfile as sf

    path = tmp / "ten_seconds.wav"
    sf.write(path, clip(10.0), 16000)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from this (large) parent process.
    script = (
        "import sys; from audio_r1.cli import main; "
        f"main(['ask', '{path}', 'How many beeps?', '--max-new-tokens', '16', '--json']); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "print(hwm.split()[1], file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    reply = json.loads(done.stdout)
    rss_kb = int(done.stderr.strip().splitlines()[-1])
    return rss_kb / 1e6, reply["timings"]["time_to_first_token_s"]


def measure(model: AudioR1, prompts, tokens: int, repeats: int) -> dict[str, float]:
    """Decode tokens/s of transformers `generate` and of our engine (both decode paths), same batch."""
    embeds, mask = hf_inputs(model, prompts)
    batch = len(prompts)
    fast = Engine(model.model, model.tokenizer, model.special, fast=True)
    plain = Engine(model.model, model.tokenizer, model.special, fast=False)
    return {
        "hf": decode_rate(lambda n: hf_generate(model, embeds, mask, n), tokens, batch, repeats),
        "plain": decode_rate(lambda n: ours(plain, prompts, n), tokens, batch, repeats),
        "fast": decode_rate(lambda n: ours(fast, prompts, n), tokens, batch, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    torch.manual_seed(0)

    model = AudioR1.from_pretrained("smol", progress=False)
    prompt = model.build_prompt(clip(5.0), "How many beeps are there?")
    fp32_bytes = weight_bytes(model.model.language_model)
    int8 = AudioR1(quantize_int8(AudioR1.from_pretrained("smol", progress=False).model), model.tokenizer)
    int8_bytes = weight_bytes(int8.model.language_model)
    rates = {}
    for label, subject in (("fp32", model), ("int8", int8)):
        for batch in (1, 8):
            rates[label, batch] = measure(subject, [prompt] * batch, args.tokens, args.repeats)

    bandwidth = copy_bandwidth()
    bounds = {"fp32": bandwidth / fp32_bytes, "int8": bandwidth / int8_bytes}
    names = {"hf": "transformers generate", "plain": "audio-r1 engine, transformers forward",
             "fast": "audio-r1 engine, FastDecoder (default)"}
    rows = []
    for batch in (1, 8):
        base = rates["fp32", batch]["hf"]
        for label in ("fp32", "int8"):
            for path in ("hf", "plain", "fast"):
                rate = rates[label, batch][path]
                rows.append(f"| {batch} | {names[path]}, {label} | {rate:.1f} | {rate / base:.2f}x "
                            f"| {rate / batch / bounds[label]:.0%} |")
    with tempfile.TemporaryDirectory() as tmp:
        rss_gb, ttft = ask_rss_and_ttft(Path(tmp))

    table = "\n".join(
        [
            f"smol preset (SmolLM2-135M decoder), prompt of {len(prompt.input_ids)} tokens with 5 s of audio, "
            f"{args.tokens} new tokens, greedy, median of {args.repeats}; torch threads: {torch.get_num_threads()}.",
            "",
            "| batch | decoder | tokens/s | vs transformers fp32 | of bandwidth bound (per sequence) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Memory-bandwidth bound at batch 1: copy bandwidth {bandwidth / 1e9:.1f} GB/s; decoder weights "
            f"{fp32_bytes / 1e6:.0f} MB fp32 -> {bounds['fp32']:.0f} tokens/s, {int8_bytes / 1e6:.0f} MB int8 "
            f"-> {bounds['int8']:.0f} tokens/s. Int8 rows: dynamic int8 weights (quantization.py) on both sides.",
            "",
            f"`audio-r1 ask` on smol, 10 s clip: peak RSS {rss_gb:.2f} GB, time to first token {ttft:.2f} s.",
        ]
    )
    print(table)
    if args.write:
        write_section("bench_decode", "Decoding", table, "python bench/bench_decode.py --write")


if __name__ == "__main__":
    main()

"""Serving throughput and latency: batched `audio-r1 serve` against the same server one request at a time.

Starts `audio-r1 serve --model smol` twice on 127.0.0.1: one batching (`--max-batch 32`) and one
sequential (`--max-batch 1`, every request decoded alone, in arrival order). Each is sent the same
streamed requests (the bundled example clips and their questions, greedy, a thinking budget) by a
closed loop of 1, 8 and 32 concurrent clients, and we measure requests/s, generated tokens/s, p50/p95
latency and time to first token (first streamed reasoning or answer text), and the mean batch size
from the server's /health. The batching gain is requests/s batched over requests/s sequential at the
same concurrency. Both servers run in this process's machine, so the client shares its CPU.

Run: python bench/bench_serve.py --write      (about 4 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import psutil
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402
from server import start_server  # noqa: E402

from audio_r1.processing import item_question  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "src" / "audio_r1" / "assets" / "examples"
LEVELS = (1, 8, 32)


def requests_for(n: int, max_tokens: int, budget: int) -> list[dict]:
    """n chat requests cycling over the bundled clips, each with its clip as base64 wav."""
    entries = json.loads((EXAMPLES / "examples.json").read_text())
    bodies = []
    for i in range(n):
        entry = entries[i % len(entries)]
        data = base64.b64encode((EXAMPLES / entry["audio"]).read_bytes()).decode()
        content = [{"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
                   {"type": "text", "text": item_question(entry)}]
        bodies.append({"model": "smol", "messages": [{"role": "user", "content": content}], "stream": True,
                       "stream_options": {"include_usage": True}, "max_tokens": max_tokens, "temperature": 0,
                       "thinking_token_budget": budget})
    return bodies


async def one(client: httpx.AsyncClient, body: dict) -> dict:
    """Stream one request; latency, time to first text and generated tokens."""
    start = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {await response.aread()}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                delta = choice["delta"]
                if first is None and (delta.get("reasoning") or delta.get("reasoning_content") or delta.get("content")):
                    first = time.perf_counter() - start
    return {"latency": time.perf_counter() - start, "ttft": first or 0.0, "tokens": tokens}


async def closed_loop(url: str, bodies: list[dict], concurrency: int) -> tuple[list[dict], float]:
    """`concurrency` clients, each sending its next request as soon as the last one finished."""
    pending = list(bodies)
    results: list[dict] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while pending:
            results.append(await one(client, pending.pop(0)))

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        return results, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure(url: str, pid: int, bodies: list[dict], level: int) -> dict:
    """Send `bodies` with `level` clients in a closed loop; throughput, latencies, mean batch, server CPU."""
    before = httpx.get(url + "/health").json()["batching"]
    cpu = cpu_seconds(pid)
    results, seconds = asyncio.run(closed_loop(url, bodies, level))
    cpu = cpu_seconds(pid) - cpu
    after = httpx.get(url + "/health").json()["batching"]
    batches = after["batches"] - before["batches"]
    latencies = [r["latency"] for r in results]
    ttfts = [r["ttft"] for r in results]
    return {
        "requests": len(results), "seconds": seconds, "rps": len(results) / seconds,
        "tokens_per_s": sum(r["tokens"] for r in results) / seconds,
        "p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
        "ttft50": statistics.median(ttfts), "ttft95": percentile(ttfts, 0.95),
        "mean_batch": len(results) / batches if batches else 0.0,
        "cpu_per_request": cpu / len(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--thinking-budget", type=int, default=24)
    parser.add_argument("--requests", default="8,32,64", help="requests sent at concurrency 1, 8 and 32")
    parser.add_argument("--fp32", action="store_true", help="fp32 decoder weights instead of int8")
    parser.add_argument("--port", type=int, default=8431)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    counts = dict(zip(LEVELS, (int(n) for n in args.requests.split(",")), strict=True))
    bodies_for = {level: requests_for(counts[level], args.max_tokens, args.thinking_budget) for level in LEVELS}
    warmup = requests_for(2, args.max_tokens, args.thinking_budget)
    logs = Path(os.environ.get("TMPDIR", "/tmp"))

    # Both servers stay up (an idle one costs no CPU) and each concurrency level is measured on one right
    # after the other, so load from anything else on the machine affects the pair alike.
    modes = {"batched": 32, "sequential": 1}
    procs, urls = {}, {}
    rows: dict[str, dict[int, dict]] = {mode: {} for mode in modes}
    load = os.getloadavg()[0]
    try:
        for i, (mode, max_batch) in enumerate(modes.items()):
            procs[mode] = start_server(args.port + i, logs / f"bench_serve_{mode}.log", "--model", "smol",
                                       "--max-batch", str(max_batch), "--max-queue", "512", "--log-level", "warning",
                                       *([] if args.fp32 else ["--int8"]))
            urls[mode] = f"http://127.0.0.1:{args.port + i}"
            asyncio.run(closed_loop(urls[mode], warmup, 2))
        for level in LEVELS:
            for mode in modes:
                r = rows[mode][level] = measure(urls[mode], procs[mode].pid, bodies_for[level], level)
                print(f"  {mode}, concurrency {level}: {r['rps']:.2f} req/s, p50 {r['p50']:.2f} s, "
                      f"mean batch {r['mean_batch']:.1f}", file=sys.stderr)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(60)

    entries = json.loads((EXAMPLES / "examples.json").read_text())
    seconds = [sf.info(EXAMPLES / e["audio"]).duration for e in entries]
    lines = [
        f"smol preset, {'fp32' if args.fp32 else 'int8'} decoder weights; streamed requests over the {len(entries)} "
        f"bundled example clips ({min(seconds):.1f} to {max(seconds):.1f} s, base64 wav) with their "
        "multiple-choice questions; greedy, "
        f"max_tokens {args.max_tokens}, thinking budget {args.thinking_budget}. Closed loop: each client sends "
        "its next request when the last one ends; the client runs on the same cores as the server. "
        f"Load average when the run started: {load:.1f} (other work shared the machine).",
        "*sequential* is the same server with `--max-batch 1` (one request decoded at a time). *CPU/request* is "
        "the server process's user + system CPU seconds per request, which other load on the machine "
        "disturbs far less than wall-clock rates.",
        "",
        "| concurrency | serving | requests | req/s | tokens/s | p50 latency | p95 latency | p50 TTFT | p95 TTFT "
        "| mean batch | CPU/request |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in LEVELS:
        for mode in ("batched", "sequential"):
            r = rows[mode][level]
            lines.append(f"| {level} | {mode} | {r['requests']} | {r['rps']:.2f} | {r['tokens_per_s']:.0f} | "
                         f"{r['p50']:.2f} s | {r['p95']:.2f} s | {r['ttft50']:.2f} s | {r['ttft95']:.2f} s | "
                         f"{r['mean_batch']:.1f} | {r['cpu_per_request']:.2f} s |")
    gains = ", ".join(f"{level}: **{rows['batched'][level]['rps'] / rows['sequential'][level]['rps']:.2f}x**"
                      for level in LEVELS)
    cpu_gains = ", ".join(f"{level}: **{rows['sequential'][level]['cpu_per_request'] / rows['batched'][level]['cpu_per_request']:.2f}x**"
                          for level in LEVELS)
    sequential = [rows["sequential"][level]["rps"] for level in LEVELS]
    lines += ["", f"Batching gain in requests/s (batched / sequential) at concurrency {gains}.",
              f"Gain in server CPU per request (sequential / batched) at concurrency {cpu_gains}.",
              f"Noise gauge: sequential serving does the same work at every concurrency, yet its rate ranged "
              f"{min(sequential):.2f} to {max(sequential):.2f} req/s in this run."]
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("bench_serve", "Serving", table, "python bench/bench_serve.py --write")


if __name__ == "__main__":
    main()

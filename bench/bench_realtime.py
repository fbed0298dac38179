"""First-packet latency of `/v1/realtime` against the turn-based path, on the same server in one run.

Starts `audio-r1 serve --model smol --int8` on 127.0.0.1. For each bundled example clip (and its
question), one at a time:

- **realtime**: a new session (manual commits) gets the clip as PCM16 at 24 kHz, then the commit (the end
  of the user's turn: the clock starts when it is sent), the question as a text item and
  `response.create`; we time the first reasoning delta, the first transcript delta, the first
  `response.output_audio.delta` (the first packet) and `response.done`.
- **turn-based**: the same clip and question (the same two user turns) as one non-streamed
  `/v1/chat/completions` request (the clock starts when it is sent), then the whole answer synthesised by the same TTS engine (espeak-ng) and
  taken whole: its first audio byte exists only once both are done.

Both use greedy decoding, the same max_tokens and thinking budget. The realtime server listens while the user
speaks (pieces of the clip are prefilled as they are appended; here the clip is appended faster than real
time, see bench/bench_listen.py for the real-time comparison), but it emits no think segments between the
pieces yet, so the think block still sits between the end of the turn and the first answer clause.

Run: python bench/bench_realtime.py --write      (about 3 minutes on 2 cores)
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
import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402
from server import start_server  # noqa: E402

from audio_r1.processing import item_question  # noqa: E402
from audio_r1.realtime.tts import EspeakTTS  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "src" / "audio_r1" / "assets" / "examples"


def clips() -> list[tuple[np.ndarray, bytes, str]]:
    """(audio at 16 kHz, its wav bytes, question) per bundled example."""
    out = []
    for entry in json.loads((EXAMPLES / "examples.json").read_text()):
        path = EXAMPLES / entry["audio"]
        audio, rate = sf.read(path, dtype="float32")
        audio = soxr.resample(audio, rate, 16000) if rate != 16000 else audio
        out.append((audio.astype(np.float32), path.read_bytes(), item_question(entry)))
    return out


async def realtime_turn(url: str, model: str, audio16k: np.ndarray, question: str, max_tokens: int,
                        budget: int) -> dict:
    import openai  # the client is only needed here

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    pcm = (np.clip(soxr.resample(audio16k, 16000, 24000), -1, 1) * 32767).astype("<i2").tobytes()
    marks: dict[str, float] = {}
    async with client.realtime.connect(model=model) as conn:
        await conn.recv()
        await conn.session.update(session={"type": "realtime", "max_output_tokens": max_tokens,
                                           "audio_r1": {"thinking_token_budget": budget, "temperature": 0}})
        step = 24000 * 2 // 10
        for i in range(0, len(pcm), step):
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + step]).decode())
        while (await conn.recv()).type != "session.updated":
            pass
        start = time.perf_counter()
        await conn.input_audio_buffer.commit()
        await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": question}]})
        await conn.response.create()
        names = {"audio_r1.reasoning.delta": "reasoning", "response.output_audio_transcript.delta": "text",
                 "response.output_audio.delta": "audio"}
        async for event in conn:
            now = time.perf_counter() - start
            if event.type in names:
                marks.setdefault(names[event.type], now)
            elif event.type == "error":
                raise RuntimeError(str(event.error))
            elif event.type == "response.done":
                marks["done"] = now
                marks["tokens"] = event.response.usage.output_tokens
                break
    return marks


def turn_based(url: str, model: str, wav: bytes, question: str, max_tokens: int, budget: int,
               tts: EspeakTTS) -> dict:
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0, "thinking_token_budget": budget,
            # the realtime conversation's two user items: the committed audio, then the question
            "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}]},
                {"role": "user", "content": question}]}
    start = time.perf_counter()
    reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=300).json()
    answered = time.perf_counter() - start
    answer = reply["choices"][0]["message"]["content"] or ""
    speech = [c for c in tts.synthesize(answer)]  # the whole answer, taken whole
    first_audio = time.perf_counter() - start if speech else float("nan")
    return {"text": answered, "audio": first_audio, "tokens": reply["usage"]["completion_tokens"]}


def pct(values: list[float], q: float) -> float:
    values = sorted(v for v in values if v == v)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smol")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--thinking-budget", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the bundled clips")
    parser.add_argument("--port", type=int, default=8441)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()

    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    url = f"http://127.0.0.1:{args.port}"
    load = os.getloadavg()[0]
    flags = ["--model", args.model, "--log-level", "warning", "--realtime-turn-detection", "none"]
    proc = start_server(args.port, logs / "bench_realtime.log", *flags, *(["--int8"] if args.model == "smol" else []))
    tts = EspeakTTS()
    items = clips()
    rt: list[dict] = []
    tb: list[dict] = []
    try:
        asyncio.run(realtime_turn(url, args.model, *items[0][::2], args.max_tokens, args.thinking_budget))  # warm-up
        for _ in range(args.rounds):
            for audio, wav, question in items:
                rt.append(asyncio.run(realtime_turn(url, args.model, audio, question, args.max_tokens,
                                                    args.thinking_budget)))
                tb.append(turn_based(url, args.model, wav, question, args.max_tokens, args.thinking_budget, tts))
                print(f"  realtime first audio {rt[-1].get('audio', float('nan')):.2f} s, turn-based "
                      f"{tb[-1]['audio']:.2f} s", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(60)

    def row(name: str, runs: list[dict], key: str) -> str:
        values = [r.get(key, float("nan")) for r in runs]
        return f"| {name} | {pct(values, 0.5):.2f} s | {pct(values, 0.95):.2f} s |"

    p50_rt = pct([r.get("audio", float("nan")) for r in rt], 0.5)
    p50_tb = pct([r["audio"] for r in tb], 0.5)
    seconds = [len(a) / 16000 for a, _, _ in items]
    lines = [
        f"{args.model} preset{' (int8)' if args.model == 'smol' else ''}, the {len(items)} bundled example clips "
        f"({min(seconds):.1f} to {max(seconds):.1f} s) with their questions, {args.rounds} passes, one turn at a "
        f"time; greedy, max_tokens {args.max_tokens}, thinking budget {args.thinking_budget}; espeak-ng speech. "
        f"Mean completion tokens: realtime {statistics.mean(r['tokens'] for r in rt):.0f}, turn-based "
        f"{statistics.mean(r['tokens'] for r in tb):.0f}. Load average when the run started: {load:.1f}.",
        "The clock starts at the end of the user's turn (the commit; the request for the turn-based path). "
        f"Turns whose answer was empty have no speech and are left out of the audio rows: realtime "
        f"{sum('audio' not in r for r in rt)} of {len(rt)}, turn-based {sum(r['audio'] != r['audio'] for r in tb)} "
        f"of {len(tb)}.",
        "",
        "| measure | p50 | p95 |",
        "|---|---|---|",
        row("realtime: first reasoning delta", rt, "reasoning"),
        row("realtime: first answer text", rt, "text"),
        row("realtime: **first audio packet**", rt, "audio"),
        row("realtime: response done", rt, "done"),
        row("turn-based: answer complete", tb, "text"),
        row("turn-based: **first audio byte** (answer + whole-answer TTS)", tb, "audio"),
        "",
        f"First packet, p50: realtime **{p50_rt:.2f} s** vs turn-based {p50_tb:.2f} s "
        f"(**{p50_tb / p50_rt:.2f}x** sooner). The issue's goal is p50 < 0.3 s; without listen-while-thinking the "
        "think block still comes first.",
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("realtime", "Realtime first packet", body, "python bench/bench_realtime.py --write")


if __name__ == "__main__":
    main()

"""Listen while thinking: end of speech -> first answer token, prefilled as the audio arrives or at the end.

In one process, with one model (`AudioR1.from_pretrained("smol")`, float32 unless `--int8`), for spoken
questions of 5, 10, 20 and 30 s (espeak-ng: a spoken preamble, then the question, so the turn is speech
throughout), each delivered in real time as the realtime session cuts it (pieces of `--piece-seconds`, one
encoder chunk each):

- **listened**: a `PrefixCache` hears the turn as it arrives: each whole piece is encoded and prefilled the
  moment it is complete (`PrefixCache.listen`, as `realtime/listen.py` does); at the end of speech the
  turn's prompt decodes from the cache (`PrefixCache.events`), which prefills only what is left: the piece
  that completed at the end of speech (or the shorter rest) and the turn's closing tokens;
- **whole turn**: the same model and the same prompt (the same pieces) encoded and prefilled in one go at
  the end of speech (`Engine.events`), as the realtime path does without listening.

Both clocks start at the end of speech (the moment the last sample arrived; a listened prefill still running
then is part of the latency) and time the first streamed token of any kind (the think block's) and the first
answer token. Greedy, the same thinking budget, decoding stopped at the first answer token. The log-mel
features are computed as each piece arrives in both (`Processor.with_features`), so the difference is the
encoder and the prefill. The two run one after the other on each question, in one run.

Run: nice -n 15 python bench/bench_listen.py --write       (about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402

from audio_r1.api import AudioR1  # noqa: E402
from audio_r1.audio import SAMPLE_RATE  # noqa: E402
from audio_r1.data.synth import speak  # noqa: E402
from audio_r1.engine import GenerationConfig, Prompt, StreamDelta  # noqa: E402
from audio_r1.processing import AudioClip, Turn  # noqa: E402

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?",
             "Which is larger, the sun or the moon?"]
PREAMBLE = ("I have a question for you, and I would like you to think about it carefully before you answer. "
            "I was reading about this yesterday in a book about the world and its wonders, and I could not "
            "remember the answer, so my friend and I started arguing about it over dinner. She said one thing and "
            "I said another, and neither of us would give in. We looked at a few pages and found nothing useful. "
            "So now I am asking you, because you probably know more about it than both of us together. ")
VOICE = "en-us"


def spoken_question(question: str, seconds: float) -> np.ndarray:
    """`seconds` of speech at 16 kHz ending with `question`: the preamble (repeated as needed) before it."""
    asked = speak(question, VOICE)
    lead = speak(PREAMBLE, VOICE)
    need = int(seconds * SAMPLE_RATE) - len(asked)
    if need <= 0:
        return asked[-int(seconds * SAMPLE_RATE):]
    lead = np.tile(lead, need // len(lead) + 1)[-need:]  # cut the preamble at its start: the question stays whole
    return np.concatenate([lead, asked]).astype(np.float32)


def pieces_of(audio: np.ndarray, piece_s: float) -> list[np.ndarray]:
    step = round(piece_s * SAMPLE_RATE)
    return [audio[i:i + step] for i in range(0, len(audio), step)]


def prompt_of(model: AudioR1, clips: list[AudioClip]) -> Prompt:
    return model.processor.prompt([Turn("user", list(clips))])


def first_tokens(events, start: float) -> tuple[float, float, str]:
    """(seconds to the first delta, to the first answer delta, the text up to it) from `start`."""
    first = answer = float("nan")
    text = []
    try:
        for event in events:
            if not isinstance(event, StreamDelta):
                continue
            now = time.perf_counter() - start
            first = now if first != first else first
            text.append(event.text)
            if event.kind == "answer":
                answer = now
                break
    finally:
        events.close()
    return first, answer, "".join(text)


def listened(model: AudioR1, audio: np.ndarray, piece_s: float, config: GenerationConfig) -> dict:
    """The turn arrives in real time; whole pieces are prefilled as they complete."""
    processor = model.processor
    parts = pieces_of(audio, piece_s)
    cache = model.engine.prefix_cache()
    clips: list[AudioClip] = []
    began = time.perf_counter()
    lag = 0.0
    for k, part in enumerate(parts[:-1]):  # the last part completes at the end of speech
        arrives = began + (k + 1) * piece_s
        time.sleep(max(0.0, arrives - time.perf_counter()))
        clips.append(processor.with_features(AudioClip(part, f"piece {k}")))
        cache.listen(prompt_of(model, clips))
        lag = time.perf_counter() - arrives
    end_of_speech = began + len(audio) / SAMPLE_RATE
    time.sleep(max(0.0, end_of_speech - time.perf_counter()))
    start = end_of_speech
    clips.append(processor.with_features(AudioClip(parts[-1], "last piece")))
    before = cache.prefilled_tokens
    prompt = prompt_of(model, clips)
    events = cache.events(prompt, config)
    first, answer, text = first_tokens(events, start)
    out = {"first": first, "answer": answer, "text": text, "late_tokens": cache.prefilled_tokens - before,
           "tokens": len(prompt.input_ids), "lag": lag}
    cache.release()
    return out


def whole_turn(model: AudioR1, audio: np.ndarray, piece_s: float, config: GenerationConfig) -> dict:
    """The same prompt, encoded and prefilled in one go at the end of speech."""
    clips = [model.processor.with_features(AudioClip(part, f"piece {k}"))
             for k, part in enumerate(pieces_of(audio, piece_s))]
    start = time.perf_counter()  # the end of speech: nothing was done with the audio but its log-mel
    prompt = prompt_of(model, clips)
    first, answer, text = first_tokens(model.engine.events([prompt], config), start)
    return {"first": first, "answer": answer, "text": text, "late_tokens": len(prompt.input_ids),
            "tokens": len(prompt.input_ids)}


def p50(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if r[key] == r[key]]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smol")
    parser.add_argument("--int8", action="store_true", help="int8 decoder weights (as `serve --int8`)")
    parser.add_argument("--seconds", default="5,10,20,30", help="question lengths, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="questions per length (different texts)")
    parser.add_argument("--piece-seconds", type=float, default=2.0)
    parser.add_argument("--thinking-budget", type=int, default=16)
    parser.add_argument("--note", default="", help="appended to the load average in the report (what else ran)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()

    lengths = [float(s) for s in args.seconds.split(",")]
    load = os.getloadavg()[0]
    model = AudioR1.from_pretrained(args.model, quantize="int8" if args.int8 else None, progress=False)
    config = GenerationConfig(max_new_tokens=args.thinking_budget + 16, temperature=0.0,
                              max_think_tokens=args.thinking_budget)
    warm = spoken_question(QUESTIONS[0], 3.0)
    listened(model, warm, args.piece_seconds, config)
    whole_turn(model, warm, args.piece_seconds, config)
    results: dict[float, tuple[list[dict], list[dict]]] = {}
    for seconds in lengths:
        heard, whole = [], []
        for r in range(args.repeats):
            audio = spoken_question(QUESTIONS[r % len(QUESTIONS)], seconds)
            heard.append(listened(model, audio, args.piece_seconds, config))
            whole.append(whole_turn(model, audio, args.piece_seconds, config))
            print(f"  {seconds:g} s: listened {heard[-1]['answer']:.2f} s, whole turn {whole[-1]['answer']:.2f} s "
                  f"(listening lag {heard[-1]['lag']:.2f} s)", file=sys.stderr)
        results[seconds] = (heard, whole)

    rows = []
    for seconds, (heard, whole) in results.items():
        same = sum(h["text"] == w["text"] for h, w in zip(heard, whole, strict=True))
        rows.append(
            f"| {seconds:g} s | {statistics.mean(r['tokens'] for r in heard):.0f} | "
            f"{statistics.mean(r['late_tokens'] for r in heard):.0f} | {p50(heard, 'first'):.2f} s | "
            f"**{p50(heard, 'answer'):.2f} s** | {p50(whole, 'first'):.2f} s | **{p50(whole, 'answer'):.2f} s** | "
            f"**{p50(whole, 'answer') / p50(heard, 'answer'):.2f}x** | {max(r['lag'] for r in heard):.2f} s | "
            f"{same}/{len(heard)} |")
    all_heard = [r for h, _ in results.values() for r in h]
    all_whole = [r for _, w in results.values() for r in w]
    lines = [
        f"{args.model} preset{' (int8)' if args.int8 else ' (float32)'}, in one process; spoken questions "
        f"(espeak-ng {VOICE}: a spoken preamble, then the question) of {', '.join(f'{s:g}' for s in lengths)} s, "
        f"{args.repeats} per length, delivered in real time in {args.piece_seconds:g} s pieces (one encoder chunk "
        f"each). Greedy, thinking budget {args.thinking_budget}, decoding stopped at the first answer token. "
        f"Load average when the run started: {load:.1f}{args.note}.",
        "The clock starts at the end of speech. *Listened*: each whole piece was encoded and prefilled into a "
        "`PrefixCache` as it completed; what was left at the end of speech (the piece completing then, and the "
        "turn's closing tokens) is prefilled by `PrefixCache.events`. *Whole turn*: the same prompt encoded and "
        "prefilled at the end (`Engine.events`). *Lag*: how long after its arrival the last listened piece "
        "was prefilled (at most; a lag that stays under the piece length keeps up with real time). *Same*: the "
        "tokens up to the first answer token agree.",
        "",
        "| question | prompt tokens | listened: left to prefill at the end | listened: first token | "
        "listened: **first answer token** | whole turn: first token | whole turn: **first answer token** | "
        "ratio (answer) | lag | same |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"All lengths together, p50 end of speech -> first answer token: listened **{p50(all_heard, 'answer'):.2f} "
        f"s**, whole turn {p50(all_whole, 'answer'):.2f} s (**{p50(all_whole, 'answer') / p50(all_heard, 'answer'):.2f}x**"
        f"); -> first token: {p50(all_heard, 'first'):.2f} s vs {p50(all_whole, 'first'):.2f} s "
        f"({p50(all_whole, 'first') / p50(all_heard, 'first'):.2f}x). The think block's tokens are decoded after "
        "the end of speech in both (no think segments between pieces yet).",
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("listen", "Listen while thinking: end of speech to first answer token", body,
                      " ".join(["python bench/bench_listen.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()

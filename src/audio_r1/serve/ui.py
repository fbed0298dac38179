"""`audio-r1 ui`: a Gradio page to ask the model about a clip and watch it think.

    audio-r1 ui --model smol --port 7860

Upload or record audio, type a question, pick a thinking budget; the reasoning (in a collapsible
panel) and then the answer stream in. The bundled example clips are one click away. Visitors share
the server's batcher, so several people asking at once are decoded together. Gradio is imported only
here, when the page is built.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..api import AudioR1
from ..audio import AudioError, load_audio
from ..engine import GenerationConfig, SequenceDone, StreamDelta
from ..errors import AudioR1Error
from ..processing import item_question
from ..scoring.grounding import UserClip, judge_grounding
from .batcher import Batcher, QueueFullError

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
MAX_BUDGET = 1024


def examples(directory: Path = EXAMPLES_DIR) -> list[list[str]]:
    """[clip path, question with its choices] for every bundled example clip."""

    entries = json.loads((directory / "examples.json").read_text())
    return [[str(directory / e["audio"]), item_question(e)] for e in entries]


def answer_stream(model: AudioR1, batcher: Batcher, audio: str | None, question: str, budget: float,
                  max_new_tokens: int = 512) -> Iterator[tuple[str, str, str]]:
    """(reasoning so far, answer so far, status line) after each generated piece."""
    question = (question or "").strip()
    if not audio and not question:
        yield "", "", "Upload or record a clip, or type a question."
        return
    try:
        prompt = model.build_prompt(audio or None, question)
    except AudioR1Error as error:  # unreadable or too short audio, or a prompt that cannot be built
        yield "", "", f"Cannot use that audio: {error}"
        return
    events: queue.Queue = queue.Queue()
    config = GenerationConfig(max_new_tokens=max_new_tokens, max_think_tokens=int(budget), temperature=0.0)
    try:
        job = batcher.submit(prompt, config, events.put)
    except QueueFullError:
        yield "", "", "The model is busy; try again in a moment."
        return
    reasoning, answer = "", ""
    try:
        yield reasoning, answer, "Thinking…"
        while True:
            item = events.get()
            if isinstance(item, StreamDelta):
                if item.kind == "reasoning":
                    reasoning += item.text
                else:
                    answer += item.text
                yield reasoning, answer, "Thinking…" if not answer else "Answering…"
            elif isinstance(item, SequenceDone):
                usage = item.result.usage
                yield reasoning, answer, (f"Done: {usage.reasoning_tokens} thinking tokens, "
                                          f"{usage.completion_tokens} in all ({item.result.finish_reason}).")
                return
            else:
                yield reasoning, answer, f"Generation failed: {item}"
                return
    finally:
        job.cancel()


def claims_markdown(audio: str | None, question: str, reasoning: str) -> str:
    """The reply's acoustic claims beside measurements of the clip, as Markdown (what `ask --check-claims` prints)."""
    if not audio or not reasoning.strip():
        return ""
    try:
        judged = judge_grounding(reasoning, UserClip(question or ""), audio=load_audio(audio))
    except AudioError as error:
        return f"Claims not checked: {error}"
    lines = judged.claims.lines() if judged.claims is not None else []
    verdict = "grounded" if judged.grounded else f"not grounded ({', '.join(judged.reasons)})"
    body = "\n".join(f"- {line}" for line in lines) or "- no acoustic claim to check"
    return f"**Claims checked against measurements of the clip**: {verdict}\n\n{body}"


def build_ui(model: AudioR1, batcher: Batcher, *, max_new_tokens: int = 512, title: str = "audio-r1") -> Any:
    """The Gradio Blocks page over `model`; `batcher` must be started."""
    import gradio as gr  # gradio: slow to import, only the web page needs it

    def respond(audio, question, budget):
        reasoning = ""
        for reasoning, answer, status in answer_stream(model, batcher, audio, question, budget, max_new_tokens):
            yield reasoning, answer, status, ""
        if status.startswith("Done"):
            yield reasoning, answer, status, claims_markdown(audio, question, reasoning)

    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# {title}\nAsk about a sound. The model reasons about the audio inside a think block, "
                    "then answers.")
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio",
                                 elem_id="audio")
                question = gr.Textbox(label="Question", lines=2, elem_id="question",
                                      placeholder="e.g. How many beeps are there?")
                budget = gr.Slider(0, MAX_BUDGET, value=128, step=8, label="Thinking budget (tokens)",
                                   info="The think block is closed after this many tokens; 0 answers at once.",
                                   elem_id="budget")
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column():
                with gr.Accordion("Reasoning", open=True, elem_id="reasoning-panel"):
                    reasoning = gr.Textbox(label="Reasoning", lines=8, max_lines=20, elem_id="reasoning",
                                           interactive=False)
                answer = gr.Textbox(label="Answer", lines=3, elem_id="answer", interactive=False)
                status = gr.Markdown(elem_id="status")
                claims = gr.Markdown(elem_id="claims")
        gr.Examples(examples=examples(), inputs=[audio, question], label="Bundled example clips")
        outputs = [reasoning, answer, status, claims]
        ask.click(respond, [audio, question, budget], outputs, concurrency_limit=batcher.max_batch)
        question.submit(respond, [audio, question, budget], outputs, concurrency_limit=batcher.max_batch)
    return page


def main(args: argparse.Namespace) -> int:
    """Load the model, start a batcher and serve the page until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a closed network
    model = AudioR1.from_pretrained(args.model, quantize="int8" if args.int8 else None, progress=False)
    batcher = Batcher(model.engine, max_batch=args.max_batch, max_queue=64).start()
    page = build_ui(model, batcher, max_new_tokens=args.max_new_tokens, title=f"audio-r1 ({args.model})")
    try:
        page.queue().launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
                            show_error=True, footer_links=[])
    finally:
        batcher.stop(timeout=30)
    return 0

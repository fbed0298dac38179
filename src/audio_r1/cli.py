"""The `audio-r1` command line.

ask   a question about an audio file        info   parameters and memory of a preset or directory
demo  the bundled example clips             data   generate the acoustic suite
train sft, mgrd, rl, dpo (resumable)        eval   score a model on a benchmark
select pass@k difficulty selection          recipe run every training stage, write report.md
serve an OpenAI-compatible HTTP API          ui     a web page to ask about a clip
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

GENERATION_FLAGS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed",
                    "max_think_tokens", "min_think_tokens")


def _gen_kwargs(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in GENERATION_FLAGS}


def _check_audio_input(path: str | None) -> None:
    """Refuse an existing path that is not a regular file, as the server does.

    Opening a FIFO blocks until something writes to it, and a device may never end; an `AudioError`
    says so at once instead. A missing file is left to the audio loader and its usual message.
    """
    from .errors import AudioError  # lazy: a fast start

    if path is None:
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        raise AudioError(path, "not a regular file (FIFOs, devices and directories are refused); give an audio file")


def cmd_ask(args: argparse.Namespace) -> int:
    _check_audio_input(args.audio)  # before loading the model
    if args.check_claims and (args.audio is None or args.stream):
        from .errors import ConfigError  # lazy: a fast start

        raise ConfigError("--check-claims measures the clip after the whole reply: give an audio file, "
                          "and leave out --stream")
    from .api import AudioR1  # lazy: a fast start

    model = AudioR1.from_pretrained(args.model, quantize="int8" if args.int8 else None)
    gen = _gen_kwargs(args)
    if args.stream and not args.json:
        current = None
        for delta in model.stream(args.audio, args.question, system=args.system, think=not args.no_think, **gen):
            if delta.kind != current:
                header = "thinking:" if delta.kind == "reasoning" else "\nanswer:"
                print(header, flush=True)
                current = delta.kind
            print(delta.text, end="", flush=True)
        print()
        return 0
    reply = model.ask(args.audio, args.question, system=args.system, think=not args.no_think, **gen)
    judgement = _check_claims(args, reply.reasoning) if args.check_claims else None
    if args.json:
        out = reply.to_dict()
        if judgement is not None:
            out["claims"] = [{"text": c.claim.text.strip(), "kind": c.claim.kind, "verdict": c.verdict,
                              "measured": c.truth} for c in sorted(judgement.claims.checks,
                                                                   key=lambda c: c.claim.start)]
            out["grounded"], out["grounding_reasons"] = judgement.grounded, judgement.reasons
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    if reply.reasoning:
        print("thinking:\n" + reply.reasoning.strip() + "\n")
    print("answer:\n" + reply.answer.strip())
    if judgement is not None:
        print("\nclaims (checked against measurements of the clip):")
        for line in judgement.claims.lines() or ["(no acoustic claim to check)"]:
            print("  " + line)
        verdict = "yes" if judgement.grounded else f"no ({', '.join(judgement.reasons)})"
        print(f"grounded: {verdict}")
    t = reply.timings
    print(
        f"\n[{reply.usage.prompt_tokens} prompt + {reply.usage.completion_tokens} generated tokens "
        f"({reply.usage.reasoning_tokens} thinking); first token {t.time_to_first_token_s:.2f} s, "
        f"{t.decode_tokens_per_s:.1f} tokens/s, finish: {reply.finish_reason}]",
        file=sys.stderr,
    )
    return 0


def _check_claims(args: argparse.Namespace, reasoning: str):
    """`--check-claims`: the reply's claims held against measurements of the clip (librosa)."""
    from .audio import load_audio  # lazy: a fast start
    from .scoring.grounding import UserClip, judge_grounding  # lazy: a fast start

    return judge_grounding(reasoning, UserClip(args.question), audio=load_audio(args.audio))


def _human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".strip()


def cmd_info(args: argparse.Namespace) -> int:
    import torch  # lazy: a fast start

    from .config import get_preset  # lazy: a fast start
    from .modeling import (  # lazy: a fast start
        AudioR1ForCausalLM,
        count_parameters,
    )

    if args.model:
        from .checkpoints import read_config  # lazy: a fast start

        config = read_config(args.model)
        title = args.model
    else:
        config = get_preset(args.preset)
        title = f"preset {args.preset}"
    with torch.device("meta"):  # shapes only: no memory is allocated
        model = AudioR1ForCausalLM(config)
    parts = count_parameters(model)
    decoder_linear = sum(
        m.weight.numel() for m in model.language_model.modules() if isinstance(m, torch.nn.Linear)
    )
    if getattr(model.language_model.config, "tie_word_embeddings", False):
        decoder_linear -= model.language_model.get_output_embeddings().weight.numel()
    total = parts["total"]
    bf16 = total * 2
    int8 = decoder_linear * 1 + (total - decoder_linear) * 2
    if args.json:
        report = {"model": title, "parameters": parts, "bytes_bf16": bf16, "bytes_int8": int8}
        print(json.dumps(report, indent=2))
        return 0
    print(f"audio-r1 {__version__}: {title}")
    print(f"  encoder   : {config.encoder.n_layers} layers, width {config.encoder.d_model}, {config.encoder.n_mels} mels")
    print(f"  decoder   : {config.text_config['model_type']}, {config.text_config['num_hidden_layers']} layers, "
          f"hidden {config.hidden_size}, vocab {config.vocab_size}")
    print(f"  chat      : {config.chat_format}; audio chunks of at most {config.chunk_seconds:g} s")
    print("parameters:")
    for name, count in parts.items():
        print(f"  {name:<15}{count:>16,}  ({_human(count)})")
    print("weights in memory:")
    print(f"  bf16           {bf16 / 2**30:>10.2f} GiB")
    print(f"  int8           {int8 / 2**30:>10.2f} GiB  (decoder linear layers int8, the rest bf16)")
    print("  (KV cache and activations come on top and grow with context length and batch size)")
    return 0


def cmd_train_sft(args: argparse.Namespace) -> int:
    from .train.sft import run_from_args  # lazy: a fast start

    return run_from_args(args)


def cmd_train_rl(args: argparse.Namespace) -> int:
    from .train.rl import run_from_args  # lazy: a fast start

    return run_from_args(args)


def cmd_train_dpo(args: argparse.Namespace) -> int:
    from .train.dpo import run_from_args  # lazy: a fast start

    return run_from_args(args)


def cmd_train_mgrd(args: argparse.Namespace) -> int:
    from .train.mgrd import run_from_args  # lazy: a fast start

    return run_from_args(args)


def cmd_recipe_run(args: argparse.Namespace) -> int:
    from .train.recipe import run_from_args  # lazy: a fast start

    return run_from_args(args)


def cmd_select(args: argparse.Namespace) -> int:
    from .train.select import run_from_args  # lazy: a fast start

    return run_from_args(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """Ask the model about every bundled example clip and show its reasoning next to the truth."""
    from .api import AudioR1  # lazy: a fast start
    from .data.manifest import Item  # lazy: a fast start
    from .processing import item_question  # lazy: a fast start
    from .scoring.answers import is_correct  # lazy: a fast start
    from .scoring.faithfulness import judge_faithfulness  # lazy: a fast start
    from .scoring.grounding import judge_grounding  # lazy: a fast start

    examples_dir = Path(__file__).resolve().parent / "assets" / "examples"
    entries = json.loads((examples_dir / "examples.json").read_text())
    model = AudioR1.from_pretrained(args.model)
    questions = [(examples_dir / e["audio"], item_question(e)) for e in entries]
    replies = model.ask_batch(questions, max_new_tokens=args.max_new_tokens, max_think_tokens=args.max_think_tokens)
    right = grounded = faithful = judged = 0
    for entry, (path, prompt), reply in zip(entries, questions, replies, strict=True):
        item = Item.from_dict(entry)
        ok = is_correct(item, reply.answer)
        judgement = judge_grounding(reply.reasoning, item)
        follows = judge_faithfulness(reply.reasoning, reply.answer, item)
        right, grounded = right + ok, grounded + judgement.grounded
        judged, faithful = judged + (follows is not None), faithful + bool(follows)
        print(f"\n== {path.name}  ({entry['family']})")
        print(prompt)
        print(f"thinking: {reply.reasoning.strip() or '(empty)'}")
        for line in judgement.claims.lines() if judgement.claims else []:
            print(f"  {line}")
        verdict = "grounded" if judgement.grounded else f"not grounded ({', '.join(judgement.reasons)})"
        follows_text = {None: "its claims do not decide the answer", True: "faithful", False: "unfaithful"}[follows]
        print(f"answer:   {reply.answer.strip()}   [{'right' if ok else 'wrong'}; truth: {entry['answer']}; "
              f"{verdict}; {follows_text}]")
    print(f"\n{right}/{len(entries)} right on the bundled examples (held-out test items of the suite); "
          f"{grounded}/{len(entries)} chains grounded (strict: no claim contradicted); "
          f"{faithful}/{judged} judged chains faithful")
    return 0


def cmd_data_generalisation(args: argparse.Namespace) -> int:
    from .data.generalisation import run  # lazy: a fast start

    return run(args)


def cmd_data_hearing(args: argparse.Namespace) -> int:
    from .data.hearing import run  # lazy: a fast start

    return run(args)


def cmd_data_suite(args: argparse.Namespace) -> int:
    from .data.suite import run  # lazy: a fast start

    return run(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve.server import main as serve_main  # lazy: a fast start

    return serve_main(args)


def cmd_ui(args: argparse.Namespace) -> int:
    from .serve.ui import main as ui_main  # lazy: a fast start

    return ui_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audio-r1", description="Step-Audio-R1 in PyTorch: reason about sound.")
    parser.add_argument("--version", action="version", version=f"audio-r1 {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    ask = commands.add_parser("ask", help="ask a question about an audio file")
    ask.add_argument("audio", help="audio file (wav, flac, ogg, mp3, m4a), or '-' for no audio")
    ask.add_argument("question")
    ask.add_argument("--model", default="smol", help="'smol', 'tiny', a model directory or a smol delta file (default: smol)")
    ask.add_argument("--system", default=None, help="system prompt (default: the benchmark prompt)")
    ask.add_argument("--max-new-tokens", type=int, default=512)
    ask.add_argument("--max-think-tokens", type=int, default=None, help="close the think block after N tokens")
    ask.add_argument("--min-think-tokens", type=int, default=0, help="keep thinking ('Wait') until N tokens")
    ask.add_argument("--no-think", action="store_true", help="answer with an empty think block")
    ask.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    ask.add_argument("--top-p", type=float, default=1.0)
    ask.add_argument("--top-k", type=int, default=0)
    ask.add_argument("--repetition-penalty", type=float, default=1.0)
    ask.add_argument("--seed", type=int, default=None)
    ask.add_argument("--int8", action="store_true", help="int8 decoder weights (CPU)")
    ask.add_argument("--stream", action="store_true", help="print reasoning and answer as they are generated")
    ask.add_argument("--json", action="store_true", help="print the reply as JSON")
    ask.add_argument("--check-claims", action="store_true",
                     help="measure the clip and show each acoustic claim of the reasoning with ✓/✗ and the measured "
                          "value beside it")
    ask.set_defaults(func=cmd_ask)

    info = commands.add_parser("info", help="parameters and memory of a preset or model directory")
    source = info.add_mutually_exclusive_group()
    source.add_argument("--preset", default="smol", choices=["tiny", "smol", "step-audio-2-mini", "step-audio-r1"])
    source.add_argument("--model", default=None, help="a model directory (reads its config.json only)")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    train = commands.add_parser("train", help="training stages").add_subparsers(dest="stage", required=True)
    from .train.sft import add_arguments as add_sft_arguments  # lazy: a fast start

    sft = train.add_parser("sft", help="cold-start supervised fine-tuning (accelerate; resumable)")
    add_sft_arguments(sft)
    sft.set_defaults(func=cmd_train_sft)
    from .train.rl import add_arguments as add_rl_arguments  # lazy: a fast start

    rl = train.add_parser("rl", help="RL with verified rewards: PPO (value head) or GRPO; resumable")
    add_rl_arguments(rl)
    rl.set_defaults(func=cmd_train_rl)
    from .train.dpo import add_arguments as add_dpo_arguments  # lazy: a fast start

    dpo = train.add_parser("dpo", help="self-cognition correction: DPO away from 'I cannot hear audio' (resumable)")
    add_dpo_arguments(dpo)
    dpo.set_defaults(func=cmd_train_dpo)
    from .train.mgrd import add_arguments as add_mgrd_arguments  # lazy: a fast start

    mgrd = train.add_parser("mgrd", help="modality-grounded reasoning distillation: sample, filter, fine-tune (T rounds)")
    add_mgrd_arguments(mgrd)
    mgrd.set_defaults(func=cmd_train_mgrd)
    from .train.recipe import add_arguments as add_recipe_arguments  # lazy: a fast start

    recipe = commands.add_parser("recipe", help="the whole training recipe").add_subparsers(dest="action", required=True)
    recipe_run = recipe.add_parser("run", help="cold start -> MGRD -> select -> RL -> DPO -> eval, with report.md")
    add_recipe_arguments(recipe_run)
    recipe_run.set_defaults(func=cmd_recipe_run)
    from .train.select import add_arguments as add_select_arguments  # lazy: a fast start

    select = commands.add_parser("select", help="pass@k difficulty selection: keep prompts solved 3-6 times of 8")
    add_select_arguments(select)
    select.set_defaults(func=cmd_select)

    demo = commands.add_parser("demo", help="ask the model about the bundled example clips")
    demo.add_argument("--model", default="smol")
    demo.add_argument("--max-new-tokens", type=int, default=160)
    demo.add_argument("--max-think-tokens", type=int, default=128)
    demo.set_defaults(func=cmd_demo)

    data = commands.add_parser("data", help="datasets").add_subparsers(dest="dataset", required=True)
    from .data.suite import add_arguments as add_suite_arguments  # lazy: a fast start

    suite = data.add_parser("suite", help="generate the acoustic reasoning suite (deterministic in --seed)")
    add_suite_arguments(suite)
    suite.set_defaults(func=cmd_data_suite)
    from .data.generalisation import add_arguments as add_generalisation_arguments  # lazy: a fast start

    generalisation = data.add_parser("generalisation", help="sound made outside the training suite's generators "
                                                            "(other waveforms, layouts, phrasings, flite speech)")
    add_generalisation_arguments(generalisation)
    generalisation.set_defaults(func=cmd_data_generalisation)
    from .data.hearing import add_arguments as add_hearing_arguments  # lazy: a fast start

    hearing = data.add_parser("hearing", help="the hearing curriculum: randomised tones, beeps and digits "
                                              "with measurement and task questions (perception training)")
    add_hearing_arguments(hearing)
    hearing.set_defaults(func=cmd_data_hearing)

    evaluate = commands.add_parser("eval", help="evaluate a model on a benchmark (docs/eval.md)")
    from .eval.cli import add_eval_commands  # lazy: a fast start

    add_eval_commands(evaluate.add_subparsers(dest="bench", required=True))
    from .serve.options import (  # lazy: a fast start
        add_serve_arguments,
        add_ui_arguments,
    )

    serve = commands.add_parser("serve", help="OpenAI-compatible API: /v1/chat/completions with audio")
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    ui = commands.add_parser("ui", help="a Gradio page: upload or record a clip, watch the reasoning stream")
    add_ui_arguments(ui)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "audio", None) == "-":
        args.audio = None
    from .errors import AudioR1Error, SamplingError  # lazy: a fast start

    try:
        return args.func(args)
    except SamplingError as error:  # the model's output could not be sampled (NaN logits)
        print(f"audio-r1: error: generation failed: {error}", file=sys.stderr)
        return 1
    except AudioR1Error as error:  # anything audio-r1 refuses on purpose: a one-line message, no traceback
        print(f"audio-r1: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

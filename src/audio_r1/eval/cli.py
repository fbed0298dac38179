"""`audio-r1 eval BENCH --data PATH (--model NAME|PATH | --endpoint URL)`: the command-line side of the runner.

Benchmarks: mmau, mmsu, bigbench-audio, spoken-mqa, wildspeech, and suite (our acoustic suite; its
`--model` defaults to smol and it prints the family table as before). See docs/eval.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from .errors import EvalError

ENDPOINT_DEFAULT_TOKENS = 8192  # reasoning models think long: lmms-eval's 128 truncates them
LOCAL_DEFAULT_TOKENS = 512
SUITE_DEFAULT_TOKENS = 192
ENDPOINT_TEMPERATURE = 0.7  # what Step-Audio-R1 used; local runs default to greedy
ENV_ENDPOINT_KEY = "AUDIO_R1_ENDPOINT_API_KEY"

HELP = {
    "mmau": "MMAU test-mini (multiple choice; official string_match)",
    "mmsu": "MMSU (multiple choice; official letter rule)",
    "bigbench-audio": "Big Bench Audio (LLM judge, or offline rules)",
    "spoken-mqa": "Spoken-MQA (official number rule)",
    "wildspeech": "WildSpeech-Bench (LLM judge, 1-10)",
    "suite": "accuracy, chance and grounding rate per family on the acoustic suite",
    "generalisation": "the suite's family table on the generalisation set (sound made outside training)",
}
SUITE_LIKE = ("suite", "generalisation")  # benchmarks reported with the suite's family table


def add_eval_commands(subparsers) -> None:
    """One subcommand per benchmark under `audio-r1 eval`."""
    for name, text in HELP.items():
        parser = subparsers.add_parser(name, help=text)
        add_arguments(parser, suite=name in SUITE_LIKE)
        parser.set_defaults(func=cmd_eval, bench=name)


def add_arguments(parser: argparse.ArgumentParser, suite: bool = False) -> None:
    parser.add_argument("--data", required=True, help="the local copy of the benchmark (file or folder)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default="smol" if suite else None, help="'smol', 'tiny', a model directory or a smol delta file")
    source.add_argument("--endpoint", default=None, help="an OpenAI-compatible URL serving the model")
    parser.add_argument("--endpoint-model", default="Step-Audio-R1", help="model name sent to the endpoint")
    parser.add_argument("--api-key", default=None, help=f"endpoint key (default: ${ENV_ENDPOINT_KEY})")
    parser.add_argument("--run-dir", default=None, help="caches and results (default: runs/eval/<bench>-<model>)")
    parser.add_argument("--fresh", action="store_true", help="discard the run directory's caches first")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--score-text", choices=("answer", "raw"), default="answer",
                        help="what the scorers read: 'answer' (default) the answer after </think>; 'raw' the whole "
                             "reply, think block included, as the official scripts of mmau, mmsu and spoken-mqa "
                             "are handed it. Recorded in run.json: a run directory is never resumed in the other mode")
    parser.add_argument("--out", default=None, help="also write the results JSON here"
                        + (" (the suite report format)" if suite else ""))
    parser.add_argument("--max-new-tokens", type=int, default=SUITE_DEFAULT_TOKENS if suite else None,
                        help=f"default: {ENDPOINT_DEFAULT_TOKENS} for endpoints, {LOCAL_DEFAULT_TOKENS} local")
    parser.add_argument("--temperature", type=float, default=None,
                        help=f"default: {ENDPOINT_TEMPERATURE} for endpoints, 0 (greedy) local")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--system", default=None, help="system prompt ('' for none; default: the benchmark prompt)")
    think = parser.add_mutually_exclusive_group()
    think.add_argument("--no-think", action="store_true", help="answer with an empty think block (budget 0)")
    think.add_argument("--max-think-tokens", type=int, default=None, help="close the think block after N tokens")
    think.add_argument("--think-budgets", default=None, help="test-time scaling sweep, e.g. 0,64,256,1024,none")
    parser.add_argument("--batch-size", type=int, default=8, help="local model: items per batch")
    parser.add_argument("--workers", type=int, default=8, help="endpoint: requests in flight")
    parser.add_argument("--int8", action="store_true", help="local model: int8 decoder weights (CPU)")
    parser.add_argument("--judge-model", default=None, help="judge model (default: $AUDIO_R1_JUDGE_MODEL)")
    parser.add_argument("--judge-base-url", default=None, help="judge URL (default: $AUDIO_R1_JUDGE_BASE_URL)")
    parser.add_argument("--judge-api-key", default=None, help="judge key (default: $AUDIO_R1_JUDGE_API_KEY or "
                                                              "$OPENAI_API_KEY)")
    parser.add_argument("--judge-runs", type=int, default=None, help="judgements per answer, averaged")
    parser.add_argument("--judge-workers", type=int, default=8)
    parser.add_argument("--no-progress", action="store_true")


def _budgets(args: argparse.Namespace) -> list[int | None]:
    from .scaling import parse_budgets  # lazy: a fast start

    if args.think_budgets:
        return parse_budgets(args.think_budgets)
    if args.no_think:
        return [0]
    return [args.max_think_tokens]


def _tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.rstrip("/")).name or text).strip("-") or "model"


def cmd_eval(args: argparse.Namespace) -> int:
    """Run one benchmark and print its report; typed errors become one clear line and exit code 2."""
    try:
        return _run(args)
    except EvalError as error:
        print(f"audio-r1: error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .inference import EndpointBackend, GenSettings, LocalBackend  # lazy: a fast start
    from .judge import JudgeConfig  # lazy: a fast start
    from .runner import RunOptions, run_eval  # lazy: a fast start

    if not args.model and not args.endpoint:
        raise EvalError("give --model NAME|PATH or --endpoint URL")
    if args.endpoint:
        backend = EndpointBackend(args.endpoint, args.endpoint_model,
                                  api_key=args.api_key or os.environ.get(ENV_ENDPOINT_KEY), workers=args.workers)
        label = args.endpoint_model
    else:
        from ..api import AudioR1  # the model stack (torch) loads only for local runs

        model = AudioR1.from_pretrained(args.model, quantize="int8" if args.int8 else None,
                                        progress=not args.no_progress)
        backend = LocalBackend(model, str(args.model), batch_size=args.batch_size)
        label = str(args.model)
    endpoint = bool(args.endpoint)
    settings = GenSettings(
        max_new_tokens=args.max_new_tokens or (ENDPOINT_DEFAULT_TOKENS if endpoint else LOCAL_DEFAULT_TOKENS),
        temperature=args.temperature if args.temperature is not None else (ENDPOINT_TEMPERATURE if endpoint else 0.0),
        top_p=args.top_p, seed=args.seed, system=args.system)
    judge = JudgeConfig.from_env(model=args.judge_model, base_url=args.judge_base_url, api_key=args.judge_api_key,
                                 runs=args.judge_runs, workers=args.judge_workers)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs/eval") / f"{args.bench}-{_tag(label)}"
    options = RunOptions(bench=args.bench, data=Path(args.data), run_dir=run_dir, settings=settings,
                         budgets=_budgets(args), limit=args.limit, judge=judge, progress=not args.no_progress,
                         fresh=args.fresh, model_label=label, score_text=args.score_text)
    run = run_eval(backend, options)
    if args.bench in SUITE_LIKE:
        _print_suite(run, args, settings)
    else:
        print(run.markdown)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(run.results, indent=1, ensure_ascii=False) + "\n")
    print(f"[results in {run.run_dir}/results.md]", file=sys.stderr)
    return 0


def _print_suite(run, args: argparse.Namespace, settings) -> None:
    """The suite's family table (accuracy, chance, grounding) per budget, and its JSON report with --out."""
    from .inference import record_key  # lazy: a fast start
    from .suite import write_report  # lazy: a fast start
    from .suite_bench import suite_report  # lazy: a fast start

    for budget_result in run.results["budgets"]:
        budget = budget_result["budget"]
        replies = {item.id: run.inference[key] for item in run.items
                   if (key := record_key(item.id, budget)) in run.inference}
        report = suite_report(run.items, replies, {
            "manifest": str(args.data), "think": budget != 0, "max_think_tokens": budget or None,
            "max_new_tokens": settings.max_new_tokens, "n": len(replies)})
        if len(run.results["budgets"]) > 1:
            print(f"\n## thinking budget {budget_result['label']}\n")
        print(report.to_markdown())
        if args.out and budget_result is run.results["budgets"][0]:
            write_report(report, Path(args.out))
    if run.results.get("scaling"):
        markdown = run.markdown
        print("\n" + markdown[markdown.index("## Test-time scaling"):])

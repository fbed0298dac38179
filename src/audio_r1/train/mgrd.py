"""Modality-Grounded Reasoning Distillation (MGRD): keep only the model's own chains that rest on sound.

    audio-r1 train mgrd --data runs/suite/train.jsonl --model smol --out runs/mgrd --rounds 3 -k 8

Each round samples ``k`` reasoning chains per acoustic question from the current model, passes every
chain through the three filters of :func:`audio_r1.scoring.verifier.verify` (grounded in acoustic cues, coherent,
correct), fine-tunes the model on the accepted chains plus text reasoning items with the SFT trainer,
and evaluates the result. The next round samples from the fine-tuned model. A round's folder holds:

- ``samples.jsonl``: every candidate with its verdict, appended per batch (a killed run resumes);
- ``acceptance.json``: per family, how many candidates passed each filter and all three;
- ``records.jsonl``: the SFT records of the round (kept chains + text reasoning);
- ``sft/``: the SFT run (resumable), whose ``sft/final`` is the round's model;
- ``eval.json``: that model's suite report on ``--eval-data`` (when given).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..api import AudioR1
from ..chat import parse_reasoning
from ..data.manifest import Item, read_manifest
from ..data.traces import build_sft_examples
from ..errors import ConfigError
from ..eval.suite import evaluate_suite, write_report
from ..files import write_text_atomic
from ..processing import item_question
from ..scoring.verifier import verify
from .options import (
    ModelOptions,
    add_config_flags,
    check_options,
    config_from_flags,
    require_positive,
    run_stage,
)
from .select import append_jsonl, read_cache, sample_groups
from .sft import SFTConfig, train_sft

TEXT_FAMILIES = ("text_math",)


@dataclass(kw_only=True)
class MGRDConfig(ModelOptions):
    """One MGRD run: sampling, filtering and the per-round SFT settings."""

    data: str  # suite manifest: acoustic questions, plus text items for the text reasoning mix
    out: str = "runs/mgrd"
    rounds: int = 3
    k: int = 8
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 16  # sequences per generate call
    keep_per_question: int = 2  # distinct accepted chains kept per question
    text_share: float = 0.25  # text reasoning records, as a share of the kept audio chains
    limit: int | None = None  # only the first N acoustic questions
    eval_data: str | None = None
    eval_limit: int | None = None
    seed: int = 0
    # SFT of each round
    epochs: float = 1.0
    sft_batch_size: int = 16
    micro_batch_size: int = 8
    lr: float = 2e-4
    adaptor_lr: float = 5e-4
    families: list[str] | None = None

    def __post_init__(self) -> None:
        check_options(self)
        require_positive(self, ("rounds", "k", "keep_per_question", "batch_size", "sft_batch_size",
                                "micro_batch_size"))
        if self.temperature <= 0:
            raise ConfigError("MGRD samples candidates: temperature must be > 0")
        if self.text_share < 0 or self.epochs <= 0:
            raise ConfigError("text_share must be >= 0 and epochs > 0")

    def fingerprint(self, round_index: int, model: str) -> str:
        keys = ("data", "k", "temperature", "top_p", "max_new_tokens", "seed")
        return json.dumps({**{key: getattr(self, key) for key in keys}, "round": round_index, "model": model},
                          sort_keys=True)


@dataclass
class RoundResult:
    round: int
    model: str  # the round's fine-tuned model directory
    candidates: int
    accepted: int
    records: int
    acceptance: dict[str, dict[str, float]]
    eval: dict[str, Any] | None


# ------------------------------------------------------------------------------------- filtering


def acceptance_table(entries: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per family (and "all"): candidates and the share passing each filter and all three."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        for verdict in entry["verdicts"]:
            groups[entry["family"]].append(verdict)
            groups["all"].append(verdict)
    table = {}
    for family, verdicts in sorted(groups.items()):
        n = len(verdicts)
        table[family] = {"candidates": n, **{
            name: sum(bool(v[name]) for v in verdicts) / n for name in ("correct", "grounded", "coherent", "accepted")
        }}
    return table


def kept_chains(item: Item, texts: Sequence[str], verdicts: Sequence[dict[str, Any]], limit: int
                ) -> list[tuple[str, str]]:
    """Up to ``limit`` distinct accepted (reasoning, answer) pairs, in sampling order."""
    kept: list[tuple[str, str]] = []
    for text, verdict in zip(texts, verdicts, strict=True):
        if not verdict["accepted"]:
            continue
        reasoning, answer = parse_reasoning(text)
        pair = (reasoning.strip(), answer.strip())
        if pair[0] and pair not in kept:
            kept.append(pair)
        if len(kept) == limit:
            break
    return kept


def chain_record(item: Item, root: Path, reasoning: str, answer: str) -> dict[str, Any]:
    """An SFT record (the `train/sft.py` format) for one kept chain; audio paths made absolute."""
    audio = None if item.audio is None else str(item.audio_path(root).resolve())
    return {"id": item.id, "audio": audio, "question": item.question, "choices": item.choices,
            "answer_type": item.answer_type, "prompt": item_question(item), "reasoning": reasoning,
            "answer_text": answer, "surrogate": False, "correct": True}


def text_records(items: Sequence[Item], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` text-reasoning records (cold-start traces of text items), cycling if there are fewer items."""
    if n <= 0 or not items:
        return []
    records = build_sft_examples(items, surrogate_share=0.0, empty_think_share=0.0, seed=seed)
    return [records[i % len(records)] for i in range(n)]


# ------------------------------------------------------------------------------------------- run


def run_mgrd(config: MGRDConfig, *, progress: bool = True) -> list[RoundResult]:
    """All rounds; a finished stage of a round is read back from its files instead of being redone."""
    manifest = Path(config.data)
    items = read_manifest(manifest)
    if config.families:
        items = [i for i in items if i.family in config.families or i.family in TEXT_FAMILIES]
    questions = [i for i in items if i.family not in TEXT_FAMILIES][: config.limit]
    text_items = [i for i in items if i.family in TEXT_FAMILIES]
    if not questions:
        raise ConfigError(f"{manifest} holds no acoustic questions for MGRD")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.json", json.dumps(asdict(config), indent=2) + "\n")
    model_name, results = config.model, []
    for index in range(1, config.rounds + 1):
        result = run_round(config, index, model_name, questions, text_items, manifest.parent, progress)
        results.append(result)
        model_name = result.model
    write_text_atomic(out / "summary.json", json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return results


def run_round(config: MGRDConfig, index: int, model_name: str, questions: Sequence[Item],
              text_items: Sequence[Item], root: Path, progress: bool) -> RoundResult:
    """Sample → filter → fine-tune → evaluate, for one round."""
    folder = Path(config.out) / f"round-{index}"
    folder.mkdir(parents=True, exist_ok=True)
    entries = sample_and_verify(config, index, model_name, questions, root, folder / "samples.jsonl", progress)
    table = acceptance_table(entries)
    write_text_atomic(folder / "acceptance.json", json.dumps(table, indent=2) + "\n")
    by_id = {i.id: i for i in questions}
    records = [chain_record(by_id[e["id"]], root, r, a) for e in entries
               for r, a in kept_chains(by_id[e["id"]], e["texts"], e["verdicts"], config.keep_per_question)]
    accepted = len(records)
    if records:
        records += text_records(text_items, math.ceil(config.text_share * accepted), config.seed + index)
        write_text_atomic(folder / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        final = fine_tune(config, model_name, folder, len(records), progress)
    else:  # nothing passed the filters: the round changes nothing, and says so
        print(f"MGRD round {index}: no candidate passed all three filters ({table['all']}); model unchanged")
        final = Path(model_name) if Path(model_name).exists() else model_name
    report = None
    if config.eval_data:
        report = evaluate_model(final, config.eval_data, folder / "eval.json", config.eval_limit, progress)
    if progress:
        print(f"MGRD round {index}: {accepted} chains kept of {table['all']['candidates']} "
              f"(accepted {table['all']['accepted']:.1%}); model {final}")
    return RoundResult(index, str(final), table["all"]["candidates"], accepted, len(records), table, report)


def sample_and_verify(config: MGRDConfig, index: int, model_name: str, questions: Sequence[Item], root: Path,
                      cache: Path, progress: bool) -> list[dict[str, Any]]:
    """k candidates per question with their verdicts; cached per question so a killed run resumes."""

    fingerprint = config.fingerprint(index, model_name)
    done = read_cache(cache, fingerprint)
    todo = [q for q in questions if q.id not in done]
    model = None
    if todo:
        model = AudioR1.from_pretrained(model_name, progress=False)
    bar = tqdm(total=len(questions), initial=len(questions) - len(todo), desc=f"MGRD round {index}",
               disable=not progress)
    for chunk, groups in sample_groups(model, todo, root, config.k, config.seed + index, config.batch_size,
                                       max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                       top_p=config.top_p):
        entries = []
        for item, texts in zip(chunk, groups, strict=True):
            verdicts = []
            for text in texts:
                verdict = verify(item, text)
                verdicts.append({"correct": verdict.correct, "grounded": verdict.grounded,
                                 "coherent": verdict.coherent, "accepted": verdict.accepted,
                                 "reasons": verdict.reasons})
            entries.append({"id": item.id, "family": item.family, "fingerprint": fingerprint, "texts": texts,
                            "verdicts": verdicts})
        append_jsonl(cache, entries)
        done.update({e["id"]: e for e in entries})
        bar.update(len(chunk))
    bar.close()
    return [done[q.id] for q in questions]


def fine_tune(config: MGRDConfig, model_name: str, folder: Path, n_records: int, progress: bool) -> Path:
    """SFT on the round's records (resumable); returns the merged model directory."""
    final = folder / "sft" / "final"
    if (final / "config.json").exists():
        return final
    steps = max(1, math.ceil(config.epochs * n_records / config.sft_batch_size))
    sft = SFTConfig(train=str(folder / "records.jsonl"), out=str(folder / "sft"), model=model_name, steps=steps,
                    batch_size=config.sft_batch_size, micro_batch_size=config.micro_batch_size, lr=config.lr,
                    adaptor_lr=config.adaptor_lr, warmup_steps=max(1, steps // 10), lora=config.lora,
                    lora_rank=config.lora_rank, lora_alpha=config.lora_alpha, save_every=max(1, steps // 4),
                    eval_every=steps, seed=config.seed, mixed_precision=config.mixed_precision, save_final=True)
    has_checkpoint = (folder / "sft" / "checkpoints").exists()
    train_sft(sft, resume=has_checkpoint, progress=progress)
    return final


def evaluate_model(model_dir: str | Path, data: str, target: Path, limit: int | None, progress: bool,
                   **settings: Any) -> dict[str, Any]:
    """The suite report of a model (cached in ``target``) reduced to the recipe's headline numbers."""
    if not target.exists():
        model = AudioR1.from_pretrained(str(model_dir), progress=False)
        report = evaluate_suite(model, data, limit=limit, progress=progress, **settings)
        write_report(report, target)
    return headline(json.loads(target.read_text()))


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """Overall accuracy, trap accuracy, grounding rate and mean think length from a report's JSON."""
    families = {f["family"]: f for f in report["families"]}
    trap = families.get("surrogate_trap")
    overall = report["overall"]
    return {"accuracy": overall["accuracy"], "trap_accuracy": trap["accuracy"] if trap else None,
            "grounding_rate": overall["grounding_rate"], "mean_think_tokens": overall["mean_think_tokens"],
            "n": overall["n"], "families": {name: f["accuracy"] for name, f in families.items()}}


# ------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The MGRD flags, one per MGRDConfig field."""
    add_config_flags(parser, MGRDConfig, aliases={"k": "-k"}, helps={
        "data": "suite manifest (acoustic questions + text items)", "k": "candidates per question",
        "model": "cold-start model: a name or a directory", "eval_data": "suite manifest to evaluate each round on",
        "families": "comma-separated families to sample (default: all)"})
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """`audio-r1 train mgrd`: run every round, then print what each accepted and scored."""
    results = run_mgrd(config_from_flags(MGRDConfig, args), progress=not args.no_progress)
    print(json.dumps([{"round": r.round, "model": r.model, "accepted": r.accepted, "eval": r.eval}
                      for r in results], indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("audio_r1.train.mgrd", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())

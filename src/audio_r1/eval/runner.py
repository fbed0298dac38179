"""The evaluation runner: inference -> extraction -> judging -> aggregation, each stage cached.

    audio-r1 eval mmau --data ~/data/mmau --model smol
    audio-r1 eval mmsu --data ~/data/mmsu --endpoint http://localhost:9999/v1 --workers 16
    audio-r1 eval bigbench-audio --data ~/data/bba --model smol --think-budgets 0,64,256,1024,none

A run directory (default `runs/eval/<bench>-<model>`) holds `run.json` (what the run is: benchmark,
data hashes, model, settings), the stage caches `inference.jsonl`, `extraction.jsonl` and
`judgement.jsonl` (one line per item, appended as it completes), and the results `results.json`,
`results.md` and, for budget sweeps, `scaling.png`. A killed run resumes where it stopped; a run
directory of a different model, data or settings, or scored on other text (`score_text`), is refused
rather than mixed.

`score_text` picks what the scorers read: "answer" (default) the answer after `</think>`; "raw" the
whole reply as the model returned it, think block included, which is what the official scripts of
MMAU, MMSU and Spoken-MQA are handed. Extraction is recomputed on every run (it is cheap, and MMSU's
and Spoken-MQA's official loops depend on the replies before an item); a record is appended to
`extraction.jsonl` only when it changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import write_text_atomic
from . import bigbench_audio, wildspeech
from .aggregate import ItemScore, budget_summary, column_notes, scaling_summary, to_markdown
from .base import JUDGE_BINARY, JUDGE_SCORE, MATCH, BenchItem, Benchmark, Extraction, Loaded
from .bigbench_audio import BigBenchAudio
from .cache import StageCache
from .errors import EvalError, JudgeError, RunDirError
from .inference import GenSettings, budget_label, record_key
from .judge import Judge, JudgeConfig, prompt_sha256
from .mmau import MMAU
from .mmsu import MMSU
from .scaling import budget_order, plot_scaling
from .spoken_mqa import SpokenMQA
from .suite_bench import Generalisation, Suite
from .wildspeech import WildSpeech

BENCHMARKS: dict[str, type[Benchmark]] = {b.name: b for b in (MMAU, MMSU, BigBenchAudio, SpokenMQA, WildSpeech, Suite,
                                                                   Generalisation)}
ALIASES = {"big-bench-audio": "bigbench-audio", "bba": "bigbench-audio", "spokenmqa": "spoken-mqa",
           "wildspeech-bench": "wildspeech", "mmau-test-mini": "mmau"}
EXTRACT_VERSION = 2
SCORE_TEXTS = ("answer", "raw")
SCORE_TEXT_DEFAULT = "answer"  # what run.json files written before `score_text` existed were scored on
STAGE_FILES = ("inference.jsonl", "extraction.jsonl", "judgement.jsonl", "results.json", "results.md",
               "scaling.png", "run.json")


class ScoreTextMismatchError(RunDirError):
    """The run directory was scored on other text (`--score-text`) than this run asks for."""

    def __init__(self, run_dir: Path, previous: str, requested: str):
        self.run_dir, self.previous, self.requested = Path(run_dir), previous, requested
        super().__init__(f"{run_dir} was scored with --score-text {previous}, this run asks for --score-text "
                         f"{requested}; the two must not mix: pass --score-text {previous}, --fresh to discard "
                         "the run, or another --run-dir")

    def __reduce__(self):
        return (type(self), (self.run_dir, self.previous, self.requested))


def get_benchmark(name: str) -> Benchmark:
    """A benchmark by name (or alias)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BENCHMARKS:
        raise EvalError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]()


@dataclass
class RunOptions:
    """Everything that decides one evaluation run (the backend aside)."""

    bench: str
    data: Path
    run_dir: Path
    settings: GenSettings
    budgets: list[int | None] = field(default_factory=lambda: [None])
    limit: int | None = None
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    progress: bool = True
    fresh: bool = False
    model_label: str = ""
    score_text: str = SCORE_TEXT_DEFAULT  # "answer": after </think>; "raw": the whole reply (see module doc)


@dataclass
class EvalRun:
    """What a run produced: the results dict (as written to results.json), its markdown, the items."""

    results: dict[str, Any]
    markdown: str
    run_dir: Path
    items: list[BenchItem]
    inference: dict[str, dict[str, Any]]


def run_eval(backend, options: RunOptions) -> EvalRun:
    """Run every stage that is not cached yet and write the results."""
    bench = get_benchmark(options.bench)
    check_score_text(bench, options.score_text)
    loaded = bench.load(Path(options.data), options.limit)
    if not loaded.items:
        raise EvalError(f"{options.data}: no items to evaluate")
    run_dir = Path(options.run_dir)
    _claim_run_dir(run_dir, bench, loaded, backend, options)
    budgets = sorted(options.budgets, key=budget_order)
    inference = _inference_stage(bench, loaded.items, backend, options, budgets, run_dir)
    extraction = _extraction_stage(bench, loaded.items, budgets, inference, run_dir, options.score_text)
    judge_info, judgements = _judging_stage(bench, loaded.items, budgets, inference, extraction, options, run_dir)
    results = _aggregate(bench, loaded, backend, options, budgets, inference, extraction, judgements, judge_info,
                         run_dir)
    markdown = to_markdown(results)
    write_text_atomic(run_dir / "results.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    write_text_atomic(run_dir / "results.md", markdown)
    return EvalRun(results, markdown, run_dir, loaded.items, inference)


def check_score_text(bench: Benchmark, score_text: str) -> None:
    """`score_text` must be a known mode; "raw" only for benchmarks scored by an official script."""
    if score_text not in SCORE_TEXTS:
        raise EvalError(f"unknown score_text {score_text!r}; choose one of {', '.join(SCORE_TEXTS)}")
    if score_text == "raw" and not bench.official_script:
        scripted = ", ".join(name for name, b in BENCHMARKS.items() if b.official_script)
        raise EvalError(f"--score-text raw applies to benchmarks scored by an official script ({scripted}); "
                        f"{bench.name} is not")


# ---------------------------------------------------------------------------------------- run directory


def _claim_run_dir(run_dir: Path, bench: Benchmark, loaded: Loaded, backend, options: RunOptions) -> None:
    """Write run.json, or check it matches; `fresh` discards what a previous run left."""
    tables = sorted([Path(path).name, digest] for path, digest in loaded.files.tables.items())  # path-independent
    identity = {"benchmark": bench.name, "data_tables": tables, "backend": backend.fingerprint(),
                "settings": options.settings.describe(), "score_text": options.score_text}
    path = run_dir / "run.json"
    if options.fresh:
        for name in STAGE_FILES:
            (run_dir / name).unlink(missing_ok=True)
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            previous = None
        if isinstance(previous, dict):
            previous.setdefault("score_text", SCORE_TEXT_DEFAULT)  # written before the option existed
            if previous["score_text"] != options.score_text:
                raise ScoreTextMismatchError(run_dir, str(previous["score_text"]), options.score_text)
        if previous != identity:
            differing = sorted(k for k in identity if not previous or previous.get(k) != identity[k])
            raise RunDirError(f"{run_dir} holds a run with a different {', '.join(differing) or 'identity'}; "
                              "pass --fresh to discard it, or choose another --run-dir")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(identity, indent=1, ensure_ascii=False) + "\n")


def _bar(total: int, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm  # tqdm: only a progress bar needs it

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, unit="item")


# ------------------------------------------------------------------------------------------------ stages


def _inference_stage(bench: Benchmark, items: Sequence[BenchItem], backend, options: RunOptions,
                     budgets: Sequence[int | None], run_dir: Path) -> dict[str, dict[str, Any]]:
    cache = StageCache(run_dir / "inference.jsonl")
    records = cache.load()

    def emit(record: dict[str, Any]) -> None:
        cache.append(record)
        records[record["key"]] = record

    for budget in budgets:
        todo = [item for item in items if (r := records.get(record_key(item.id, budget))) is None or r.get("error")]
        bar = _bar(len(items), len(items) - len(todo), f"{bench.name} inference, budget {budget_label(budget)}",
                   options.progress)
        try:
            if todo:
                backend.run(todo, budget, options.settings, emit, bar.update)
        finally:
            bar.close()
    return records


def scored_text(reply: dict[str, Any], score_text: str) -> str | None:
    """The text a scorer reads from one inference record: None when inference failed; else the answer
    after `</think>` ("answer") or the whole reply as returned ("raw")."""
    if reply.get("error"):
        return None
    return (reply.get("text") if score_text == "raw" else reply.get("answer")) or ""


def _text_sha(text: str | None) -> str:
    return hashlib.sha256(("\0error" if text is None else text).encode("utf-8")).hexdigest()[:16]


def _extraction_record(key: str, text: str | None, extraction: Extraction, score_text: str) -> dict[str, Any]:
    return {"key": key, "version": EXTRACT_VERSION, "score_text": score_text, "answer_sha": _text_sha(text),
            "prediction": extraction.prediction, "parseable": extraction.parseable, "official": extraction.official,
            "strict": extraction.strict, "variants": extraction.variants, "note": extraction.note,
            "error": text is None}


def _extraction_stage(bench: Benchmark, items: Sequence[BenchItem], budgets: Sequence[int | None],
                      inference: dict[str, dict[str, Any]], run_dir: Path,
                      score_text: str = SCORE_TEXT_DEFAULT) -> dict[str, dict[str, Any]]:
    """Score every budget's replies in file order (`Benchmark.extract_run`); append changed records."""
    cache = StageCache(run_dir / "extraction.jsonl")
    records = cache.load()
    for budget in budgets:
        answered = [(item, reply) for item in items
                    if (reply := inference.get(record_key(item.id, budget))) is not None]
        texts = [scored_text(reply, score_text) for _, reply in answered]
        extractions = bench.extract_run([item for item, _ in answered], texts)
        for (item, _), text, extraction in zip(answered, texts, extractions, strict=True):
            record = _extraction_record(record_key(item.id, budget), text, extraction, score_text)
            if records.get(record["key"]) != record:
                cache.append(record)
                records[record["key"]] = record
    return records


def _judging_stage(bench: Benchmark, items: Sequence[BenchItem], budgets: Sequence[int | None],
                   inference: dict[str, dict[str, Any]], extraction: dict[str, dict[str, Any]],
                   options: RunOptions, run_dir: Path) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """Judge every answer `runs` times (or apply the offline rules); returns (judge info, records)."""
    if bench.scoring == MATCH:
        return None, {}
    pinned = bench.judge_settings()
    template = _judge_template(bench)
    if options.judge.configured:
        judge = Judge(options.judge)
        name = options.judge.model
        runs = options.judge.runs or pinned.get("runs", 1)
        sampling = {**pinned.get("sampling", {}), **options.judge.sampling}

        def ask(prompt: str) -> str:
            return judge.ask(prompt, **sampling)
    elif bench.offline_judgement(items[0], "") is not None:
        name, runs, sampling, ask = "rules (offline fallback)", 1, {}, None
    else:
        return {"name": None, "runs": 0, "prompt_sha256": prompt_sha256(template), "sampling": {},
                "note": "not judged: no judge configured (--judge-model / AUDIO_R1_JUDGE_MODEL)"}, {}
    info = {"name": name, "runs": runs, "prompt_sha256": prompt_sha256(template), "sampling": sampling}
    cache = StageCache(run_dir / "judgement.jsonl")
    records = cache.load()
    lowest = False if bench.scoring == JUDGE_BINARY else 1

    jobs = []
    for budget in budgets:
        for item in items:
            key = record_key(item.id, budget)
            extracted = extraction.get(key)
            if extracted is None or extracted["error"]:
                continue
            for run in range(runs):
                judge_key = f"{key}#{run}"
                cached = records.get(judge_key)
                if (cached and cached.get("judge") == name and cached.get("prompt_sha256") == info["prompt_sha256"]
                        and cached.get("answer_sha") == extracted["answer_sha"] and not cached.get("call_error")):
                    continue
                jobs.append((judge_key, item, extracted))

    def judge_one(judge_key: str, item: BenchItem, extracted: dict[str, Any]) -> dict[str, Any]:
        base = {"key": judge_key, "judge": name, "prompt_sha256": info["prompt_sha256"],
                "answer_sha": extracted["answer_sha"], "call_error": None}
        answer = extracted["prediction"] or ""
        if not answer.strip():
            return {**base, "reply": "(empty answer: not sent to the judge)", "value": lowest, "valid": True}
        if ask is None:
            return {**base, "reply": "(rules)", "value": bench.offline_judgement(item, answer), "valid": True}
        try:
            reply = ask(bench.judge_prompt(item, answer))
        except JudgeError as error:
            return {**base, "reply": None, "value": None, "valid": False, "call_error": str(error)}
        value = bench.parse_judgement(reply)
        return {**base, "reply": reply, "value": value, "valid": value is not None}

    bar = _bar(len(jobs), 0, f"{bench.name} judging ({name})", options.progress and bool(jobs))
    successes = failures = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.judge.workers)) as pool:
            futures = [pool.submit(judge_one, *job) for job in jobs]
            try:
                for future in as_completed(futures):
                    record = future.result()
                    cache.append(record)
                    records[record["key"]] = record
                    bar.update(1)
                    successes += record["call_error"] is None
                    failures += record["call_error"] is not None and not successes
                    if failures >= min(5, len(jobs)):
                        raise JudgeError(f"the judge failed {failures} calls in a row and answered none; last "
                                         f"error: {record['call_error']}")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()
    return info, records


def _judge_template(bench: Benchmark) -> str:
    return bigbench_audio.JUDGE_PROMPT if isinstance(bench, BigBenchAudio) else wildspeech.JUDGE_PROMPT


# ------------------------------------------------------------------------------------------- aggregation


def item_score(bench: Benchmark, item: BenchItem, reply: dict[str, Any] | None, extracted: dict[str, Any] | None,
               judgements: dict[str, dict[str, Any]], key: str, runs: int, judged: bool) -> ItemScore:
    """One item's official and strict value at one budget, from the cached stages."""
    score = ItemScore(item.id, item.groups, None, None)
    if reply is None or extracted is None:
        return score
    score.think_tokens = int(reply.get("think_tokens") or 0)
    score.completion_tokens = int(reply.get("completion_tokens") or 0)
    score.finish_reason = str(reply.get("finish_reason"))
    score.error = bool(extracted["error"])
    score.parseable = bool(extracted["parseable"])
    if bench.scoring == MATCH:
        score.official = None if extracted["official"] is None else float(extracted["official"])
        score.strict = float(bool(extracted["strict"]))
        score.variants = {name: float(bool(value)) for name, value in (extracted.get("variants") or {}).items()}
        return score
    if not judged:
        return score
    lowest = 0.0 if bench.scoring == JUDGE_BINARY else 1.0
    if score.error:
        score.strict = lowest
        return score
    values: list[float | None] = []
    for run in range(runs):
        record = judgements.get(f"{key}#{run}")
        if record is None or not record.get("valid"):
            score.judge_errors += bool(record and record.get("call_error"))
            score.judge_invalid += bool(record and not record.get("call_error"))
            values.append(None)
        else:
            values.append(float(record["value"]))
    valid = [v for v in values if v is not None]
    score.official = sum(valid) / len(valid) if valid else None
    score.strict = sum(lowest if v is None else v for v in values) / max(len(values), 1)
    score.run_values = values
    return score


def _aggregate(bench: Benchmark, loaded: Loaded, backend, options: RunOptions, budgets: Sequence[int | None],
               inference: dict[str, dict[str, Any]], extraction: dict[str, dict[str, Any]],
               judgements: dict[str, dict[str, Any]], judge_info: dict[str, Any] | None,
               run_dir: Path) -> dict[str, Any]:
    mean_score = bench.scoring == JUDGE_SCORE
    judged = bench.scoring == MATCH or bool(judge_info and judge_info.get("name"))
    runs = judge_info["runs"] if judge_info else 0
    per_budget, pooled = [], []
    for budget in budgets:
        scores = []
        for item in loaded.items:
            key = record_key(item.id, budget)
            scores.append(item_score(bench, item, inference.get(key), extraction.get(key), judgements, key, runs,
                                     judged))
        pooled += scores
        per_budget.append({"budget": budget, "label": budget_label(budget), **budget_summary(scores, mean_score)})
    result: dict[str, Any] = {
        "benchmark": bench.name,
        "title": bench.title,
        "model_label": options.model_label or backend.name,
        "backend": backend.fingerprint(),
        "data": {"path": str(options.data), **loaded.files.summary()},
        "settings": options.settings.describe(),
        "score_text": options.score_text,
        "metric": "mean score x10" if mean_score else "accuracy",
        "columns": column_notes(bench),
        "judge": judge_info,
        "budgets": per_budget,
    }
    if judge_info and judge_info.get("note"):
        result["note"] = judge_info["note"]
    if len(budgets) > 1:
        scaling = scaling_summary(per_budget, pooled, mean_score)
        if scaling["by_budget"]:
            metric = "mean score ×10" if mean_score else "strict accuracy (%)"
            plot_scaling(run_dir / "scaling.png", f"{bench.title}: {result['model_label']}", metric,
                         _plot_rows(scaling["by_budget"], mean_score), _plot_rows(scaling["by_think_length"],
                                                                                  mean_score))
            scaling["plot"] = "scaling.png"
        result["scaling"] = scaling
    return result


def _plot_rows(rows: Sequence[dict[str, Any]], mean_score: bool) -> list[dict[str, Any]]:
    scale = 1.0 if mean_score else 100.0
    return [{"label": r["label"], "value": scale * r["value"], "low": scale * r["low"], "high": scale * r["high"]}
            for r in rows if r["value"] is not None]

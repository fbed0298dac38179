"""The aggregation stage: item verdicts -> scores with 95% intervals, per category, per budget; markdown.

Accuracies (match and judged benchmarks) carry Wilson intervals; WildSpeech's mean score carries a
t interval and is reported x10, as published. Two columns everywhere: `official` (the official
scorer's denominator and quirks) and `strict` (every item counts; unparseable or missing = wrong).
A benchmark may add separately named columns that are not official (MMAU's `letter_aware`): they
appear under `variants` in results.json and as their own, named columns in the markdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .scaling import bucket_labels, bucket_of, inverted_pairs
from .stats import mean_interval, wilson


@dataclass
class ItemScore:
    """One item's outcome at one budget. `official` None: left out by the official scorer;
    `strict` None: not scored at all (a judged benchmark without a judge)."""

    id: str
    groups: dict[str, str]
    official: float | None
    strict: float | None
    think_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: bool = False
    parseable: bool = True
    judge_invalid: int = 0
    judge_errors: int = 0
    run_values: list[float | None] = field(default_factory=list)
    variants: dict[str, float] = field(default_factory=dict)  # name -> value of a non-official column


OFFICIAL_NOTE = "the official scorer: its rule, its denominator and its quirks"
STRICT_NOTE = "the official rule with every item counted: unparseable or missing answers are wrong"
SCORE_TEXT_NOTES = {"answer": "the answer after </think>",
                    "raw": "the whole reply, think block included, as the official scripts are handed it"}
_EMPTY = {"n": 0, "value": None, "low": None, "high": None}


def column_notes(bench: Any) -> dict[str, str]:
    """What each reported column is: official, strict, then the benchmark's own named variants."""
    return {"official": OFFICIAL_NOTE, "strict": STRICT_NOTE, **getattr(bench, "variant_notes", {})}


def summary(values: Sequence[float], mean_score: bool) -> dict[str, Any]:
    """n, value and 95% interval: Wilson for proportions, t (x10) for mean 1-10 scores."""
    n = len(values)
    if n == 0:
        return {"n": 0, "value": None, "low": None, "high": None}
    if mean_score:
        mean, low, high = mean_interval(list(values))
        return {"n": n, "value": 10 * mean, "low": 10 * low, "high": 10 * high}
    total = float(sum(values))
    low, high = wilson(total, n)
    return {"n": n, "value": total / n, "low": low, "high": high}


def _variant_names(scores: Sequence[ItemScore]) -> list[str]:
    return sorted({name for s in scores for name in s.variants})


def _pair(scores: Sequence[ItemScore], mean_score: bool) -> dict[str, Any]:
    """n, official and strict summaries, plus `variants` (each named column's summary) when there are any."""
    cell: dict[str, Any] = {"n": len(scores),
                            "official": summary([s.official for s in scores if s.official is not None], mean_score),
                            "strict": summary([s.strict for s in scores if s.strict is not None], mean_score)}
    names = _variant_names(scores)
    if names:
        cell["variants"] = {name: summary([s.variants[name] for s in scores if name in s.variants], mean_score)
                            for name in names}
    return cell


def budget_summary(scores: Sequence[ItemScore], mean_score: bool) -> dict[str, Any]:
    """Overall and per-group scores, counts, and scores by think-length bucket for one budget."""
    keys = list(scores[0].groups) if scores else []
    breakdowns = {}
    for key in keys:
        values = sorted({s.groups.get(key, "unknown") for s in scores})
        breakdowns[key] = [{"group": value, **_pair([s for s in scores if s.groups.get(key, "unknown") == value],
                                                    mean_score)} for value in values]
    buckets = []
    for label in bucket_labels():
        members = [s for s in scores if bucket_of(s.think_tokens) == label]
        if members:
            buckets.append({"label": label, **summary([s.strict for s in members if s.strict is not None],
                                                      mean_score)})
    n = max(len(scores), 1)
    runs = max((len(s.run_values) for s in scores), default=0)
    per_run = [summary([s.run_values[r] if s.run_values[r] is not None else 0.0 for s in scores
                        if len(s.run_values) > r], mean_score)["value"] for r in range(runs)]
    return {
        **_pair(scores, mean_score),
        "counts": {
            "inference_errors": sum(s.error for s in scores),
            "unparseable": sum(not s.parseable for s in scores),
            "left_out_by_official": sum(s.official is None for s in scores),
            "truncated": sum(s.finish_reason == "length" for s in scores),
            "judge_invalid_replies": sum(s.judge_invalid for s in scores),
            "judge_call_errors": sum(s.judge_errors for s in scores),
        },
        "mean_think_tokens": sum(s.think_tokens for s in scores) / n,
        "mean_completion_tokens": sum(s.completion_tokens for s in scores) / n,
        "per_run_strict": per_run,
        "breakdowns": breakdowns,
        "think_buckets": buckets,
    }


def scaling_summary(per_budget: Sequence[dict[str, Any]], pooled: Sequence[ItemScore],
                    mean_score: bool) -> dict[str, Any]:
    """Strict score per budget, per think-length bucket (pooled over budgets), and inverted pairs."""
    rows = [{"label": b["label"], **b["strict"], "mean_think_tokens": b["mean_think_tokens"]} for b in per_budget
            if b["strict"]["n"]]
    buckets = []
    for label in bucket_labels():
        members = [s.strict for s in pooled if bucket_of(s.think_tokens) == label and s.strict is not None]
        if members:
            buckets.append({"label": label, **summary(members, mean_score)})
    pairs = inverted_pairs(rows)
    return {"by_budget": rows, "by_think_length": buckets, "inverted": bool(pairs), "inverted_pairs": pairs}


# ---------------------------------------------------------------------------------------------- markdown


def _fmt(cell: dict[str, Any], mean_score: bool) -> tuple[str, str]:
    if cell["value"] is None:
        return "n/a", ""
    if mean_score:
        return f"{cell['value']:.1f}", f"{cell['low']:.1f}–{cell['high']:.1f}"
    return f"{100 * cell['value']:.1f}%", f"{100 * cell['low']:.1f}–{100 * cell['high']:.1f}%"


def to_markdown(result: dict[str, Any]) -> str:
    """A readable report of `results.json`."""
    mean_score = result["metric"] == "mean score x10"
    metric = "mean score ×10" if mean_score else "accuracy"
    data = result["data"]
    lines = [f"# {result['title']}: {result['model_label']}", ""]
    tables = ", ".join(f"`{path}` sha256 `{digest[:16]}…`" for path, digest in data["tables"].items())
    lines.append(f"- data: {tables}")
    if data.get("audio_files"):
        lines.append(f"- audio: {data['audio_files']} files, combined sha256 `{data['audio_sha256'][:16]}…`")
    settings = result["settings"]
    lines.append(f"- generation: max_new_tokens {settings['max_new_tokens']}, temperature {settings['temperature']}, "
                 f"top_p {settings['top_p']}, seed {settings['seed']}")
    if result.get("judge"):
        judge = result["judge"]
        if judge.get("name"):
            lines.append(f"- judge: {judge['name']}, {judge['runs']} run(s), prompt sha256 "
                         f"`{judge['prompt_sha256'][:16]}…`" + (f", settings {judge['sampling']}" if judge.get("sampling")
                                                                 else ""))
    if result.get("note"):
        lines.append(f"- note: {result['note']}")
    if result.get("score_text"):
        lines.append(f"- scored text: {SCORE_TEXT_NOTES.get(result['score_text'], result['score_text'])} "
                     f"(--score-text {result['score_text']})")
    notes = result.get("columns") or {"official": OFFICIAL_NOTE, "strict": STRICT_NOTE}
    lines.append(f"- metric: {metric}; " + "; ".join(f"{name} = {note}" for name, note in notes.items())
                 + "; 95% intervals " + ("(t)" if mean_score else "(Wilson)"))
    for budget in result["budgets"]:
        names = list(budget.get("variants", {}))
        lines += ["", f"## Thinking budget: {budget['label']}", "", _header("", names), _rule(names)]
        lines.append(_row("**overall**", budget, mean_score, names))
        counts = budget["counts"]
        lines += ["", ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items())
                  + f"; mean think tokens {budget['mean_think_tokens']:.0f}", ""]
        for key, groups in budget["breakdowns"].items():
            lines += [_header(key, names), _rule(names)]
            lines += [_row(g["group"], g, mean_score, names) for g in groups]
            lines.append("")
    scaling = result.get("scaling")
    if scaling:
        lines += ["## Test-time scaling (strict)", "", "| budget | n | strict | 95% CI | mean think tokens |",
                  "|---|---|---|---|---|"]
        for row in scaling["by_budget"]:
            value, interval = _fmt(row, mean_score)
            lines.append(f"| {row['label']} | {row['n']} | {value} | {interval} | {row['mean_think_tokens']:.0f} |")
        lines += ["", "| think tokens used (all budgets) | n | strict | 95% CI |", "|---|---|---|---|"]
        for row in scaling["by_think_length"]:
            value, interval = _fmt(row, mean_score)
            lines.append(f"| {row['label']} | {row['n']} | {value} | {interval} |")
        if scaling["inverted"]:
            pairs = "; ".join(f"{p['from']} → {p['to']}" for p in scaling["inverted_pairs"])
            lines += ["", f"**Inverted scaling**: the score falls beyond the 95% interval as the budget grows ({pairs})."]
        else:
            lines += ["", "No inverted scaling: no larger budget scores below a smaller one beyond the 95% interval."]
        if scaling.get("plot"):
            lines += ["", f"![test-time scaling]({scaling['plot']})"]
    return "\n".join(lines).rstrip() + "\n"


def _header(first: str, variants: Sequence[str]) -> str:
    """The table header: official and strict, then each named variant column (e.g. letter_aware)."""
    columns = ["official", "strict", *variants]
    return f"|{f' {first} ' if first else ' '}| n | " + " | ".join(f"{c} | 95% CI" for c in columns) + " |"


def _rule(variants: Sequence[str]) -> str:
    return "|---|---|" + "---|---|" * (2 + len(variants))


def _row(name: str, cell: dict[str, Any], mean_score: bool, variants: Sequence[str] = ()) -> str:
    cells = [cell["official"], cell["strict"], *(cell.get("variants", {}).get(v, _EMPTY) for v in variants)]
    values = " | ".join(" | ".join(_fmt(c, mean_score)) for c in cells)
    return f"| {name} | {cell['n']} | {values} |"

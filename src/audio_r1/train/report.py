"""The recipe's report card: one table of per-stage metrics, per-family accuracy, two plots, findings.

The findings are computed from the numbers, not written by hand: each says whether the paper's claim
came out on this run (MGRD grounding and traps, the format-reward ablation, test-time scaling, DPO).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import write_text_atomic

STAGE_NAMES = {"cold_start": "cold start (SFT)", "mgrd": "+ MGRD", "rl": "+ RL (PPO)", "dpo": "+ DPO"}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _main_budget(row: dict[str, Any]) -> dict[str, Any]:
    """The unlimited-budget evaluation (the last budget when none is unlimited)."""
    budgets = row["budgets"]
    return budgets.get("none") or budgets[list(budgets)[-1]]


def metrics_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| stage | accuracy | trap accuracy | grounding rate | mean think tokens | self-cognition errors |",
             "|---|---|---|---|---|---|"]
    for stage, row in rows.items():
        m = _main_budget(row)
        lines.append(f"| {STAGE_NAMES.get(stage, stage)} | {_pct(m['accuracy'])} (n={m['n']}) "
                     f"| {_pct(m['trap_accuracy'])} | {_pct(m['grounding_rate'])} "
                     f"| {m['mean_think_tokens']:.0f} | {_pct(row['self_cognition'])} |")
    return "\n".join(lines)


def family_table(rows: dict[str, dict[str, Any]]) -> str:
    stages = list(rows)
    families = sorted({f for row in rows.values() for f in _main_budget(row)["families"]})
    lines = ["| family | " + " | ".join(STAGE_NAMES.get(s, s) for s in stages) + " |",
             "|---|" + "---|" * len(stages)]
    for family in families:
        cells = [_pct(_main_budget(rows[s])["families"].get(family)) for s in stages]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_table(rows: dict[str, dict[str, Any]]) -> str:
    budgets = list(next(iter(rows.values()))["budgets"])
    lines = ["| stage | " + " | ".join(f"budget {b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for stage, row in rows.items():
        lines.append(f"| {STAGE_NAMES.get(stage, stage)} | "
                     + " | ".join(_pct(row["budgets"][b]["accuracy"]) for b in budgets) + " |")
    return "\n".join(lines)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def findings(rows: dict[str, dict[str, Any]], rl_runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each of the paper's claims, checked on this run's numbers."""
    notes = []
    cold, mgrd = _main_budget(rows["cold_start"]), _main_budget(rows["mgrd"])
    for key, name in (("grounding_rate", "grounding rate"), ("trap_accuracy", "trap accuracy")):
        before, after = cold[key], mgrd[key]
        if before is not None and after is not None:
            verdict = "raised" if after > before else "did not raise"
            notes.append(f"MGRD {verdict} the {name}: {_pct(before)} → {_pct(after)}.")
    with_format = [m["rl/think_tokens"] for m in rl_runs.get("rl", []) if "rl/think_tokens" in m]
    without = [m["rl/think_tokens"] for m in rl_runs.get("rl_no_format", []) if "rl/think_tokens" in m]
    if with_format and without:
        tail = max(1, len(with_format) // 3)
        a, b = sum(with_format[-tail:]) / tail, sum(without[-tail:]) / tail
        verdict = "shorter" if b < a else "not shorter"
        notes.append(f"RL without the format reward gave {verdict} reasoning: {b:.1f} vs {a:.1f} think tokens "
                     f"(mean of the last {tail} steps).")
    for stage, claim in (("dpo", "after the full recipe"), ("cold_start", "for the cold-start model")):
        accuracies = [b["accuracy"] for b in rows[stage]["budgets"].values()]
        rising = all(later >= earlier for earlier, later in zip(accuracies, accuracies[1:], strict=False))
        shape = "does not fall" if rising else "falls somewhere"
        notes.append(f"Accuracy against thinking budget {claim} {shape} as the budget grows: "
                     + " → ".join(_pct(a) for a in accuracies) + ".")
    rl, dpo = _main_budget(rows["rl"]), _main_budget(rows["dpo"])
    notes.append(f"DPO moved the self-cognition error rate {_pct(rows['rl']['self_cognition'])} → "
                 f"{_pct(rows['dpo']['self_cognition'])}, suite accuracy {_pct(rl['accuracy'])} → "
                 f"{_pct(dpo['accuracy'])} ({100 * (dpo['accuracy'] - rl['accuracy']):+.1f} points).")
    return notes


def plot_budgets(rows: dict[str, dict[str, Any]], target: Path) -> None:
    import matplotlib  # matplotlib: optional, only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: optional, only plots need it

    figure, axis = plt.subplots(figsize=(6, 4))
    for stage, row in rows.items():
        labels = list(row["budgets"])
        axis.plot(range(len(labels)), [100 * row["budgets"][b]["accuracy"] for b in labels], marker="o",
                  label=STAGE_NAMES.get(stage, stage))
        axis.set_xticks(range(len(labels)), ["no think" if b == "0" else b for b in labels])
    axis.set_xlabel("thinking budget (tokens)")
    axis.set_ylabel("accuracy on the held-out split (%)")
    axis.set_title("Accuracy against thinking budget")
    axis.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)


def plot_think_length(rl_runs: dict[str, list[dict[str, Any]]], target: Path) -> None:
    import matplotlib  # matplotlib: optional, only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib: optional, only plots need it

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, label in (("rl", "with format reward"), ("rl_no_format", "without format reward")):
        points = [(m["step"], m["rl/think_tokens"]) for m in rl_runs.get(name, []) if "rl/think_tokens" in m]
        if points:
            axis.plot(*zip(*points, strict=True), marker=".", label=label)
    axis.set_xlabel("RL step")
    axis.set_ylabel("mean think tokens per response")
    axis.set_title("Reasoning length during RL")
    axis.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)


def write_report(config: Any, out: Path, rows: dict[str, dict[str, Any]]) -> Path:
    """Write ``report.md`` and its two PNG plots into ``out``; returns the report's path."""
    rl_runs = {name: read_metrics(out / name / "metrics.jsonl") for name in ("rl", "rl_no_format")}
    plot_budgets(rows, out / "accuracy_vs_budget.png")
    plot_think_length(rl_runs, out / "rl_think_length.png")
    stages = json.loads((out / "models.json").read_text()) if (out / "models.json").exists() else {}
    text = "\n\n".join([
        f"# Recipe report: preset `{config.preset}`",
        f"Held-out split: `{Path(config.suite or out / 'suite') / 'test.jsonl'}`"
        + (f", first {config.eval_items} items" if config.eval_items else "")
        + ". Accuracy and grounding at an unlimited thinking budget; self-cognition errors are the share of "
          "held-out probe replies that deny hearing audio.",
        "## Per-stage metrics",
        metrics_table(rows),
        "## Accuracy per family",
        family_table(rows),
        "## Accuracy against thinking budget",
        budget_table(rows),
        "![accuracy against thinking budget](accuracy_vs_budget.png)",
        "![think length over RL steps](rl_think_length.png)",
        "## Findings (computed from the numbers above)",
        "\n".join(f"- {note}" for note in findings(rows, rl_runs)),
        "## Models",
        "\n".join(f"- {stage}: `{path}`" for stage, path in stages.items()),
    ]) + "\n"
    target = out / "report.md"
    write_text_atomic(target, text)
    return target

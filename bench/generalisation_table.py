"""Set `audio-r1 eval generalisation` results side by side: one accuracy column per run, and the strict
grounded and faithful rates of the first run.

    audio-r1 eval generalisation --data runs/gen8/generalisation.jsonl --model smol --out runs/evals/gen-shipped.json
    audio-r1 eval generalisation --data runs/gen8/generalisation.jsonl --model smol --no-think \\
        --out runs/evals/gen-shipped-nothink.json
    ... the same for the retrained delta ...
    python bench/generalisation_table.py "retrained, thinking=runs/evals/gen-new.json" \\
        "retrained, empty think=runs/evals/gen-new-nothink.json" "shipped, thinking=runs/evals/gen-shipped.json" \\
        "shipped, empty think=runs/evals/gen-shipped-nothink.json" [--write]

A family is *above chance* when its accuracy minus the half-width of its 95% interval exceeds chance;
the table marks it with ✓. Faithful is given over the judged chains (those whose stated values decide
the answer) and over the judged chains that are also grounded, with their numbers in brackets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402


def _interval(score: dict) -> float:
    p, n = score["accuracy"], max(score["n"], 1)
    return 1.96 * math.sqrt(max(p * (1 - p), 1e-9) / n)


def _rate(rate: float | None, n: int | None = None) -> str:
    if rate is None:
        return "n/a"
    return f"{rate:.1%}" + ("" if n is None else f" ({n})")


def table(runs: list[tuple[str, dict]]) -> str:
    """Markdown: family, n, chance, accuracy per run (± interval, ✓ above chance), first run's rates."""
    first = runs[0][1]
    by_run = [{f["family"]: f for f in report["families"]} | {"overall": report["overall"]} for _, report in runs]
    header = ["family", "n", "chance", *[label for label, _ in runs], "grounded", "faithful (judged)",
              "faithful, grounded (judged)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for score in [*first["families"], first["overall"]]:
        name = score["family"]
        cells = [f"**{name}**" if name == "overall" else name, str(score["n"]), f"{score['chance']:.1%}"]
        for scores in by_run:
            other = scores.get(name)
            if other is None:
                cells.append("n/a")
                continue
            half = _interval(other)
            mark = " ✓" if other["accuracy"] - half > other["chance"] else ""
            cells.append(f"{other['accuracy']:.1%} ± {half:.1%}{mark}")
        cells += [_rate(score["grounding_rate"]), _rate(score.get("faithful_rate"), score.get("faithful_n")),
                  _rate(score.get("faithful_grounded_rate"), score.get("faithful_grounded_n"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=RESULTS.json")
    parser.add_argument("--section", default="generalisation", help="BENCHMARKS.md section to write")
    parser.add_argument("--title", default="Generalisation set: sound made outside training")
    parser.add_argument("--about", default="", help="a paragraph printed above the table")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    runs = []
    for spec in args.runs:
        label, sep, path = spec.rpartition("=")
        if not sep or not label:
            parser.error(f"{spec!r}: expected LABEL=RESULTS.json")
        runs.append((label, json.loads(Path(path).read_text())))
    body = (args.about + "\n\n" if args.about else "") + table(runs)
    print(body)
    if args.write:
        command = "python bench/generalisation_table.py " + " ".join(f'"{spec}"' for spec in args.runs)
        write_section(args.section, args.title, body, command + " --write (after the eval runs in its docstring)")


if __name__ == "__main__":
    main()

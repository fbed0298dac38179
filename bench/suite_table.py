"""Combine `audio-r1 eval suite` results (thinking and forced empty think) into one table.

    audio-r1 eval suite --data runs/suite-v1/test.jsonl --model smol --out runs/eval-think.json
    audio-r1 eval suite --data runs/suite-v1/test.jsonl --model smol --no-think --out runs/eval-nothink.json
    python bench/suite_table.py runs/eval-think.json runs/eval-nothink.json --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402


def table(think: dict, no_think: dict) -> str:
    empty = {f["family"]: f for f in no_think["families"]} | {"overall": no_think["overall"]}
    lines = [
        "| family | n | chance | accuracy, thinking | accuracy, empty think | grounding rate | mean think tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for score in [*think["families"], think["overall"]]:
        name = score["family"]
        grounding = "n/a" if score["grounding_rate"] is None else f"{score['grounding_rate']:.1%}"
        bold = "**" if name in ("overall", "surrogate_trap") else ""
        lines.append(
            f"| {bold}{name}{bold} | {score['n']} | {score['chance']:.1%} | {score['accuracy']:.1%} "
            f"| {empty[name]['accuracy']:.1%} | {grounding} | {score['mean_think_tokens']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("think")
    parser.add_argument("no_think")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--measured-on", default=None, help="the machine the eval ran on, if not this one")
    args = parser.parse_args()
    body = table(json.loads(Path(args.think).read_text()), json.loads(Path(args.no_think).read_text()))
    body = (
        "Shipped `smol` model on the suite's held-out test split (400 items, seed 0; test voices never used "
        "in training), greedy, max 192 new tokens (both modes). Chance: 1 / options for multiple choice, 0 for open "
        "answers. Grounding rate: share of reasoning chains that are grounded by `scoring/grounding.py` "
        "(acoustic cues, no dominating surrogate marker, no claim contradicted by the item's true parameters, "
        "at least one verified), over the items with true acoustic parameters.\n\n" + body
    )
    print(body)
    if args.write:
        write_section("suite_smol", "Acoustic suite: shipped smol model", body,
                      "python bench/suite_table.py runs/eval-think.json runs/eval-nothink.json --write (after the two audio-r1 eval suite runs in its docstring)",
                      measured_on=args.measured_on)


if __name__ == "__main__":
    main()

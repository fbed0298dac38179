"""Combine `audio-r1 eval suite` results (thinking and forced empty think) into one table.

    audio-r1 eval suite --data runs/suite-v1/test.jsonl --model smol --out runs/eval-think.json
    audio-r1 eval suite --data runs/suite-v1/test.jsonl --model smol --no-think --out runs/eval-nothink.json
    python bench/suite_table.py runs/eval-think.json runs/eval-nothink.json --write

With `--rescore runs/suite-v1/test.jsonl` the stored replies are scored again with today's scorers
(`eval.suite.score_item`) before the table is made, so a change of the grounding or faithfulness
rules is measured on the same replies without running the model again.
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
        "| family | n | chance | accuracy, thinking | accuracy, empty think | grounding rate | faithful (judged) "
        "| mean think tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for score in [*think["families"], think["overall"]]:
        name = score["family"]
        grounding = "n/a" if score["grounding_rate"] is None else f"{score['grounding_rate']:.1%}"
        rate = score.get("faithful_rate")
        faithful = "n/a" if rate is None else f"{rate:.1%} ({score['faithful_n']})"
        bold = "**" if name in ("overall", "surrogate_trap") else ""
        lines.append(
            f"| {bold}{name}{bold} | {score['n']} | {score['chance']:.1%} | {score['accuracy']:.1%} "
            f"| {empty[name]['accuracy']:.1%} | {grounding} | {faithful} | {score['mean_think_tokens']:.0f} |"
        )
    return "\n".join(lines)


def rescore(report: dict, manifest: str) -> dict:
    """The report with every stored reply scored again by `eval.suite.score_item`."""
    from audio_r1.data.manifest import read_manifest
    from audio_r1.eval.suite import score_item, summarise

    items = {item.id: item for item in read_manifest(manifest)}
    results = [score_item(items[r["id"]], r["reasoning"], r["answer"], r["think_tokens"]) for r in report["items"]]
    return summarise(results, report.get("settings")).to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("think")
    parser.add_argument("no_think")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--rescore", default=None, metavar="MANIFEST",
                        help="score the stored replies again with today's scorers (the suite manifest they answer)")
    parser.add_argument("--measured-on", default=None, help="the machine the eval ran on, if not this one")
    args = parser.parse_args()
    think, no_think = json.loads(Path(args.think).read_text()), json.loads(Path(args.no_think).read_text())
    if args.rescore:
        think, no_think = rescore(think, args.rescore), rescore(no_think, args.rescore)
    body = table(think, no_think)
    body = (
        "Shipped `smol` model on the suite's held-out test split (400 items, seed 0; test voices never used "
        "in training), greedy, max 192 new tokens (both modes). Chance: 1 / options for multiple choice, 0 for open "
        "answers. Grounding rate: share of reasoning chains that are grounded by `scoring/grounding.py` "
        "(acoustic cues, no dominating surrogate marker, no claim contradicted by the item's true parameters, "
        "measurements bound to their segment and lists checked element by element, at least one verified), over "
        "the items with true acoustic parameters. Faithful: the share of chains whose answer follows from their "
        "own stated values (`scoring/faithfulness.py`), over the chains whose values decide it (their number in "
        "brackets).\n\n" + body
    )
    print(body)
    if args.write:
        write_section("suite_smol", "Acoustic suite: shipped smol model", body,
                      "python bench/suite_table.py runs/eval-think.json runs/eval-nothink.json --rescore runs/suite-v1/test.jsonl "
                      "--write (after the two audio-r1 eval suite runs in its docstring)",
                      measured_on=args.measured_on)


if __name__ == "__main__":
    main()

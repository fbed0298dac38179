"""Imports point one way: a layer uses only the layers below it, and function-level imports say why.

    errors → files, config → audio, tokenizer, chat → modeling → fast_decoder, quantization,
    checkpoints, convert → engine → processing → pretrained → api → scoring → data → eval → realtime → serve | train → cli

`serve` and `train` are peers and never import each other; `train` may use `eval` (the recipe scores
its stages with the evaluation harness). Imports under `if TYPE_CHECKING:` are annotations only and
do not count. An import inside a function is allowed for an optional or slow dependency, or to keep
a command's start fast, and carries a comment (on its line, or a comment line just above) saying so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "audio_r1"
LAYERS = [
    {"errors"},
    {"files", "config"},
    {"audio", "tokenizer", "chat"},
    {"modeling"},
    {"fast_decoder", "quantization", "checkpoints", "convert"},
    {"engine"},
    {"processing"},
    {"pretrained"},
    {"api"},
    {"scoring"},
    {"data"},
    {"eval"},
    {"realtime"},
    {"serve", "train"},
    {"cli", "__init__", "__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "assets" not in p.parts)


def unit_of(path: Path) -> str:
    """The top-level unit a file belongs to: `serve/server.py` -> "serve", `api.py` -> "api"."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def type_checking_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(n) for n in ast.walk(node))
    return inside


def imported_units(path: Path) -> list[tuple[int, str]]:
    """(line, unit) for every runtime import of another part of audio_r1 in `path`."""
    tree = ast.parse(path.read_text())
    skip = type_checking_nodes(tree)
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = package[:-1] if package[-1] != "__init__" else package[:-1]
    if path.name == "__init__.py":
        package = list(path.relative_to(PACKAGE.parent).parts[:-1])
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            if node.level == 0 and (not node.module or not node.module.startswith("audio_r1")):
                continue
            if len(target) == 1:  # `from . import x` or `from audio_r1 import x`
                names = [f"audio_r1.{a.name}" for a in node.names]
            else:
                names = [".".join(target)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("audio_r1.")]
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and parts[1] in RANK:
                found.append((node.lineno, parts[1]))
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    unit = unit_of(path)
    assert unit in RANK, f"{unit} has no layer: add it to LAYERS"
    wrong = [f"line {line}: {unit} imports {target}" for line, target in imported_units(path)
             if target != unit and RANK[target] >= RANK[unit]]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_function_level_imports_say_why(path: Path) -> None:
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    silent = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import | ast.ImportFrom):
                statement = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                if "#" not in statement and not lines[node.lineno - 2].strip().startswith("#"):
                    silent.append(f"line {node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, "function-level imports without a reason:\n" + "\n".join(sorted(set(silent)))


def test_the_layer_table_knows_every_unit() -> None:
    units = {unit_of(p) for p in modules()}
    assert units <= set(RANK), sorted(units - set(RANK))

"""Reading benchmark tables (JSON, JSONL, Parquet), resolving their audio fields, hashing their files.

Benchmarks are read from a local copy whose path the user gives; nothing is downloaded. Every data
file a score came from is pinned by its sha256 so a result names the exact release it was measured on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BenchmarkDataError

TABLE_SUFFIXES = (".json", ".jsonl", ".parquet")

# An audio reference: a file, encoded bytes, or a (samples, sample_rate) pair.
AudioRef = Path | bytes | tuple


@dataclass
class DataFiles:
    """The files one benchmark run read: tables and audio, with their sha256 digests."""

    tables: dict[str, str] = field(default_factory=dict)  # path -> sha256
    audio: dict[str, str] = field(default_factory=dict)  # path -> sha256 (files only, not embedded audio)

    def summary(self) -> dict[str, Any]:
        """What results record: each table's hash, and one digest over all audio files."""
        combined = hashlib.sha256()
        for name in sorted(self.audio):
            combined.update(f"{name}\0{self.audio[name]}\n".encode())
        return {
            "tables": dict(sorted(self.tables.items())),
            "audio_files": len(self.audio),
            "audio_sha256": combined.hexdigest() if self.audio else None,
        }


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a JSON list, a JSONL file or a Parquet file, as dicts (raises `BenchmarkDataError`)."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkDataError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise BenchmarkDataError(path, f"not valid JSON ({error.msg} at line {error.lineno})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise BenchmarkDataError(path, "expected a JSON list of items")
        for i, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise BenchmarkDataError(path, "expected a JSON object", row=i)
        return data
    if suffix == ".parquet":
        return _read_parquet(path)
    raise BenchmarkDataError(path, f"unsupported table format {suffix!r}; expected one of {', '.join(TABLE_SUFFIXES)}")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for i, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BenchmarkDataError(path, f"not valid JSON ({error.msg})", row=i) from None
            if not isinstance(row, dict):
                raise BenchmarkDataError(path, "expected a JSON object", row=i)
            rows.append(row)
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq  # pyarrow: only parquet tables need it
    except ImportError:
        raise BenchmarkDataError(path, "reading Parquet needs pyarrow (pip install pyarrow), or convert the "
                                       "table to JSONL") from None
    return pq.read_table(path).to_pylist()


def require(row: dict[str, Any], name: str, path: Path, index: int, kind: type | tuple = str) -> Any:
    """`row[name]`, checked to be present and of `kind`."""
    if name not in row or row[name] is None:
        raise BenchmarkDataError(path, "missing", row=index, field=name)
    value = row[name]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BenchmarkDataError(path, f"expected {names}, got {type(value).__name__}", row=index, field=name)
    return value


def claim_id(item_id: str, seen: set[str], path: Path, index: int) -> str:
    """`item_id`, recorded in `seen`; a second row with the same id is a data error (ids key the caches)."""
    if item_id in seen:
        raise BenchmarkDataError(path, f"duplicate id {item_id!r}", row=index, field="id")
    seen.add(item_id)
    return item_id


def nested_text(row: dict[str, Any], name: str, path: Path, index: int) -> str:
    """A text field that may be a plain string or a {"text": ...} object (Hugging Face style)."""
    value = require(row, name, path, index, (str, dict))
    if isinstance(value, dict):
        if not isinstance(value.get("text"), str):
            raise BenchmarkDataError(path, 'expected a string or an object with a "text" string', row=index, field=name)
        return value["text"]
    return value


def resolve_audio(value: Any, roots: Iterable[Path], files: DataFiles, path: Path, index: int, name: str) -> AudioRef:
    """An audio field as a file path (relative to one of `roots`), embedded bytes or a samples pair.

    Accepts a path string, or a Hugging Face audio object: {"bytes": ...}, {"path": ...} or
    {"array": [...], "sampling_rate": n}. A file must exist; its sha256 goes into `files.audio`.
    """
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("array") is not None and value.get("sampling_rate"):
            import numpy as np  # numpy: only decoded audio arrays need it

            return (np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"]))
        value = value.get("path")
    if not isinstance(value, str) or not value:
        raise BenchmarkDataError(path, "expected an audio file path or an audio object", row=index, field=name)
    candidates = [Path(value)] if Path(value).is_absolute() else [root / value for root in roots]
    for candidate in candidates:
        if candidate.is_file():
            key = str(candidate)
            if key not in files.audio:
                files.audio[key] = sha256_file(candidate)
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise BenchmarkDataError(path, f"audio file {value!r} not found (looked at {tried})", row=index, field=name)


def find_table(data: Path, names: Iterable[str]) -> Path:
    """`data` itself when it is a file, else the first of `names` inside the folder `data`."""
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise BenchmarkDataError(data, "no such file or folder")
    names = list(names)
    for name in names:
        if (data / name).is_file():
            return data / name
    raise BenchmarkDataError(data, f"no benchmark table found; expected one of {', '.join(names)}")

"""The item schema of the synthetic audio-question suite and its JSONL manifest files.

One manifest line is one :class:`Item`: a question about a 16 kHz mono wav (or a text-only question), its
answer, and the true acoustic parameters the audio was generated from. Reading validates every line and
reports the first problem as a :class:`ManifestError` naming the file, the line and the field; writing
validates the same way and replaces the file atomically, so a crash never leaves half a manifest.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from audio_r1.errors import AudioR1Error
from audio_r1.files import write_text_atomic
from audio_r1.scoring.answers import normalise_answer, normalise_number

SPLITS = ("train", "dev", "test")
ANSWER_TYPES = ("choice", "number", "text")


class ManifestError(AudioR1Error, ValueError):
    """A manifest line is invalid; ``line`` is 1-based and ``field`` is None for whole-line problems."""

    def __init__(self, path: str | os.PathLike, line: int, field: str | None, reason: str):
        self.path = os.fspath(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = f"{self.path}, line {line}" + (f", field {field!r}" if field else "")
        super().__init__(f"invalid manifest {where}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.line, self.field, self.reason))


class _FieldError(ValueError):
    """A problem with one field, before the file and line are known."""

    def __init__(self, field: str | None, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass
class Item:
    """One question of the suite.

    ``audio`` is a wav path relative to the manifest's folder (None for text-only items); ``choices`` is None
    for open answers; ``answer`` is the exact choice text, or the normalised open answer ("12", "apple");
    ``params`` holds the true parameters the audio was generated from; ``voice`` is the espeak-ng voice id of
    any speech; ``seed`` regenerates the item.
    """

    id: str
    family: str
    split: str
    audio: str | None
    question: str
    choices: list[str] | None
    answer: str
    answer_type: str
    params: dict[str, Any]
    transcript: str | None
    voice: str | None
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """The item as a JSON-ready dict, fields in schema order."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Item:
        """Build and validate an item from a decoded JSON object (raises ``_FieldError``)."""
        if not isinstance(data, dict):
            raise _FieldError(None, f"expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise _FieldError(unknown[0], f"unknown field (the schema has: {', '.join(names)})")
        for name in names:
            if name not in data:
                raise _FieldError(name, "missing field")
        item = cls(**data)
        item.validate()
        return item

    def validate(self) -> None:
        """Check types and consistency of the fields (raises ``_FieldError`` naming the first bad field)."""
        _expect_str(self, "id", "family", "question", "answer")
        _expect_str(self, "audio", "transcript", "voice", optional=True)
        if self.split not in SPLITS:
            raise _FieldError("split", f"must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.answer_type not in ANSWER_TYPES:
            raise _FieldError("answer_type", f"must be one of {', '.join(ANSWER_TYPES)}, got {self.answer_type!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise _FieldError("seed", f"must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.params, dict) or not all(isinstance(k, str) for k in self.params):
            raise _FieldError("params", "must be an object with string keys")
        try:
            json.dumps(self.params, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise _FieldError("params", f"is not plain JSON ({e})") from None
        if self.audio is not None:
            p = PurePosixPath(self.audio)
            if p.is_absolute() or ".." in p.parts or "\\" in self.audio:
                raise _FieldError("audio", f"must be a relative path inside the manifest's folder, got {self.audio!r}")
        self._validate_answer()

    def _validate_answer(self) -> None:
        """The answer must fit the answer type: among the choices, a canonical number, or normalised text."""
        if self.answer_type == "choice":
            if not isinstance(self.choices, list) or len(self.choices) < 2:
                raise _FieldError("choices", "a choice item needs a list of at least two options")
            if not all(isinstance(c, str) and c.strip() for c in self.choices):
                raise _FieldError("choices", "every option must be a non-empty string")
            if len({normalise_answer(c) for c in self.choices}) != len(self.choices):
                raise _FieldError("choices", "options must be distinct (after normalisation)")
            if self.answer not in self.choices:
                raise _FieldError("answer", f"{self.answer!r} is not among the choices {self.choices!r}")
            return
        if self.choices is not None:
            raise _FieldError("choices", f"must be null for answer_type {self.answer_type!r}")
        if self.answer_type == "number":
            try:
                value = float(self.answer)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or normalise_number(value) != self.answer:
                raise _FieldError("answer", f"a number answer must be canonical digits like '12' or '2.5', "
                                            f"got {self.answer!r}")
        elif normalise_answer(self.answer) != self.answer or not self.answer:
            raise _FieldError("answer", f"a text answer must be normalised "
                                        f"({normalise_answer(self.answer)!r}), got {self.answer!r}")

    def audio_path(self, root: str | os.PathLike) -> Path | None:
        """Absolute path of the item's wav given the manifest's folder ``root``."""
        return None if self.audio is None else Path(root) / self.audio


def _expect_str(item: Item, *names: str, optional: bool = False) -> None:
    """Each named field must be a non-empty string (or None when ``optional``)."""
    for name in names:
        value = getattr(item, name)
        if value is None and optional:
            continue
        if not isinstance(value, str) or not value.strip():
            kind = "a non-empty string or null" if optional else "a non-empty string"
            raise _FieldError(name, f"must be {kind}, got {value!r}")


def _check_unique_and_audio(item: Item, line: int, path: Path, seen: dict[str, int], check_audio: bool) -> None:
    """Duplicate ids and missing audio files, which need more than the item itself to detect."""
    if item.id in seen:
        raise ManifestError(path, line, "id", f"duplicate id {item.id!r} (first on line {seen[item.id]})")
    seen[item.id] = line
    if check_audio and item.audio is not None and not (path.parent / item.audio).is_file():
        raise ManifestError(path, line, "audio", f"audio file {item.audio!r} not found in {path.parent}")


def read_manifest(path: str | os.PathLike, *, check_audio: bool = True) -> list[Item]:
    """Read and validate a JSONL manifest; blank lines are skipped. Audio paths resolve against its folder."""
    path = Path(path)
    items: list[Item] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(path, line_no, None, f"not valid JSON ({e.msg} at column {e.colno})") from None
            try:
                item = Item.from_dict(data)
            except _FieldError as e:
                raise ManifestError(path, line_no, e.field, e.reason) from None
            except TypeError as e:  # e.g. a field of the wrong type that breaks a comparison
                raise ManifestError(path, line_no, None, str(e)) from None
            _check_unique_and_audio(item, line_no, path, seen, check_audio)
            items.append(item)
    return items


def write_manifest(path: str | os.PathLike, items: Iterable[Item], *, check_audio: bool = True) -> Path:
    """Validate ``items`` and write them as JSONL, atomically (temporary file + rename). Returns the path."""
    path = Path(path)
    lines: list[str] = []
    seen: dict[str, int] = {}
    for line_no, item in enumerate(items, start=1):
        try:
            item.validate()
        except _FieldError as e:
            raise ManifestError(path, line_no, e.field, e.reason) from None
        _check_unique_and_audio(item, line_no, path, seen, check_audio)
        lines.append(json.dumps(item.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
    return write_text_atomic(path, "".join(lines))

"""Typed errors of the evaluation harness, each saying where the problem is and what to do."""

from __future__ import annotations

import os

from ..errors import AudioR1Error


class EvalError(AudioR1Error):
    """Base class: anything the `audio-r1 eval` command reports as a clear one-line error."""


class BenchmarkDataError(EvalError, ValueError):
    """A benchmark file is missing or malformed: names the file, the row (1-based) and the field."""

    def __init__(self, path: str | os.PathLike, reason: str, *, row: int | None = None, field: str | None = None):
        self.path = os.fspath(path)
        self.row = row
        self.field = field
        self.reason = reason
        where = self.path + (f", row {row}" if row is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"invalid benchmark data {where}: {reason}")

    def __reduce__(self):
        return (_rebuild_data_error, (self.path, self.reason, self.row, self.field))


def _rebuild_data_error(path: str, reason: str, row: int | None, field: str | None) -> BenchmarkDataError:
    return BenchmarkDataError(path, reason, row=row, field=field)


class EndpointError(EvalError):
    """The model endpoint could not be reached or answered in an unexpected shape."""


class JudgeError(EvalError):
    """The judge is not configured or could not be reached."""


class RunDirError(EvalError):
    """A run directory holds the caches of a different run (other model, data or settings)."""

"""Helpers for the tests that need the pretrained source packages."""

from __future__ import annotations

import pytest


def source_or_skip(source):
    """The data file of an installed source package, or skip the test when it is not installed."""
    from audio_r1.convert.sources import CheckpointConversionError, source_file

    try:
        return source_file(source)
    except CheckpointConversionError as error:
        pytest.skip(str(error))

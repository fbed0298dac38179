"""audio-r1: an open PyTorch implementation of Step-Audio-R1, an audio LLM that reasons about sound."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AudioError", "AudioR1", "AudioR1Error", "GenerationConfig", "Reply", "__version__"]

if TYPE_CHECKING:
    from .api import AudioR1, Reply
    from .engine import GenerationConfig
    from .errors import AudioError, AudioR1Error

_LAZY = {"AudioR1": "api", "Reply": "api", "AudioError": "errors", "AudioR1Error": "errors", "GenerationConfig": "engine"}


def __getattr__(name: str) -> Any:
    """Import the heavy modules (torch, transformers) only when their names are used."""
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""audio-r1: an open PyTorch implementation of Step-Audio-R1, an audio LLM that reasons about sound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AudioR1", "AudioError", "GenerationConfig", "Reply", "__version__"]

if TYPE_CHECKING:
    from .api import AudioR1, Reply
    from .audio import AudioError
    from .engine import GenerationConfig

_LAZY = {"AudioR1": "api", "Reply": "api", "AudioError": "audio", "GenerationConfig": "engine"}


def __getattr__(name: str) -> Any:
    """Import the heavy modules (torch, transformers) only when their names are used."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Synthetic audio questions whose answers depend on measurable acoustic properties.

* :mod:`~audio_r1.data.manifest`: the :class:`Item` schema and JSONL manifests.
* :mod:`~audio_r1.data.suite`: the deterministic generator (``generate_suite``, CLI ``main``).
* :mod:`~audio_r1.data.traces`: cold-start reasoning traces and SFT records.

Names are imported lazily so that ``python -m audio_r1.data.suite`` does not import the module twice.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audio_r1.data.manifest import Item, ManifestError, read_manifest, write_manifest
    from audio_r1.data.suite import generate_suite
    from audio_r1.data.traces import build_sft_examples, make_trace

_LAZY = {
    "Item": "manifest", "ManifestError": "manifest", "read_manifest": "manifest", "write_manifest": "manifest",
    "generate_suite": "suite",
    "build_sft_examples": "traces", "make_trace": "traces",
}
__all__ = [
    "Item",
    "ManifestError",
    "build_sft_examples",
    "generate_suite",
    "make_trace",
    "read_manifest",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

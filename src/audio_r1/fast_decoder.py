"""A lean decode path for `transformers` Llama / Qwen2 causal LMs: a static KV cache, little framework overhead.

A decode step through the HF forward pays, besides the matmuls, for `DynamicCache` concatenating every
layer's keys and values, a 4D mask rebuilt each step, the attention-interface dispatch and rotary
`rotate_half` per layer. `FastDecoder` calls the same modules (so the same weights, float or `torch.ao`
dynamic int8 `Linear`; nothing is copied) with:

- one preallocated cache `(layers, 2, batch, kv_heads, capacity, head_dim)`, written in place;
- an additive key mask `(batch, capacity)` filled at prefill, so left padding stays masked and a decode
  step only takes a view of it (no mask at all when the batch has no padding);
- rotary cos/sin computed once per step for all layers, queries and keys rotated together;
- module references looked up once, and the final norm and LM head on the last position only.

Numerics follow the HF code op for op (RMSNorm in float32, the same RoPE arithmetic, the same SDPA call
and mask in each case), so on CPU the logits come out bitwise equal to the HF forward's, float or int8.
That matters for int8: dynamic activation quantisation turns any rounding difference into different
tokens a few steps later.

    decoder = FastDecoder(lm)                              # needs FastDecoder.supports(lm)
    decoder.start(batch_size, prompt_len + max_new_tokens)
    logits = decoder.prefill(embeds, attention_mask, position_ids)   # (B, vocab)
    logits = decoder.decode(next_ids, next_positions)                # (B, vocab), once per token

One sequence's cache can also grow piece by piece (`extend`, batch 1, no padding): each piece attends
to everything cached before it, so a prompt prefilled in pieces as it arrives (listen while thinking)
leaves the same keys and values as one prefill, up to float rounding. `truncate` rolls it back to a
shared prefix, and `reserve` grows the capacity, keeping what is cached.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import CacheCapacityError

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")
# RoPE variants whose inverse frequencies are fixed at init (no position-dependent update).
STATIC_ROPE_TYPES = ("default", "linear", "llama3")


# ------------------------------------------------------------------------------------------ support


def unsupported_reason(lm: nn.Module) -> str | None:
    """Why `FastDecoder` cannot run this LM, or None when it can."""
    config = getattr(lm, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"hidden_act {config.hidden_act!r} is not silu"
    if (getattr(config, "pretraining_tp", 1) or 1) != 1:
        return "pretraining_tp > 1 is not supported"
    rope_type = _rope_type(config)
    if rope_type not in STATIC_ROPE_TYPES:
        return f"rope type {rope_type!r} is not one of {STATIC_ROPE_TYPES}"
    layer_types = getattr(config, "layer_types", None) or []
    if getattr(config, "use_sliding_window", False) or any(t != "full_attention" for t in layer_types):
        return "sliding-window attention is not supported"
    return _structure_problem(lm)


def _rope_type(config) -> str:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return params.get("rope_type", params.get("type", "default"))


def _structure_problem(lm: nn.Module) -> str | None:
    """Check that the module tree has the Llama/Qwen2 layout this path walks."""
    base = getattr(lm, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if base is None or not all(hasattr(base, name) for name in needed) or not hasattr(lm, "lm_head"):
        return "unexpected module layout (model.embed_tokens/layers/norm/rotary_emb, lm_head)"
    if not hasattr(base.rotary_emb, "inv_freq") or not hasattr(base.rotary_emb, "attention_scaling"):
        return "rotary embedding without inv_freq / attention_scaling"
    for layer in base.layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if not all(hasattr(attn, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim")):
            return "attention without q/k/v/o projections"
        if not all(hasattr(mlp, name) for name in ("gate_proj", "up_proj", "down_proj")):
            return "MLP without gate/up/down projections"
        norms = (getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None))
        if not all(hasattr(norm, "variance_epsilon") and hasattr(norm, "weight") for norm in norms):
            return "layer norms are not RMSNorms"
    return None


# ------------------------------------------------------------------------------------------- pieces


class _Layer(NamedTuple):
    """Direct references to one decoder layer's modules (looked up once, not per step)."""

    input_norm: nn.Module
    q: nn.Module
    k: nn.Module
    v: nn.Module
    o: nn.Module
    post_norm: nn.Module
    gate: nn.Module
    up: nn.Module
    down: nn.Module


def _layer_refs(layer: nn.Module) -> _Layer:
    attn, mlp = layer.self_attn, layer.mlp
    return _Layer(
        layer.input_layernorm, attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj,
        layer.post_attention_layernorm, mlp.gate_proj, mlp.up_proj, mlp.down_proj,
    )


def _rms_norm(x: Tensor, norm: nn.Module) -> Tensor:
    """HF Llama/Qwen2 RMSNorm; `F.rms_norm` where it gives the same bits (float32 input and weight)."""
    if x.dtype == torch.float32 and norm.weight.dtype == torch.float32:
        return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


def _rotate(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """RoPE x*cos + rotate_half(x)*sin, using rotate_half(x)*sin == roll(x, D/2) * [-sin, sin] (exact)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed


# ------------------------------------------------------------------------------------------ decoder


class FastDecoder:
    """Prefill and one-token decode steps for an HF Llama/Qwen2 LM, sharing its modules and weights.

    Build it from the LM that will run (after any quantisation): it holds references to its modules.
    """

    def __init__(self, lm: nn.Module):
        reason = unsupported_reason(lm)
        if reason is not None:
            raise ValueError(f"FastDecoder cannot run this model: {reason}")
        config, base = lm.config, lm.model
        self.lm = lm
        self.embed = base.embed_tokens
        self.layers = [_layer_refs(layer) for layer in list(base.layers)[: config.num_hidden_layers]]
        self.norm = base.norm
        self.lm_head = lm.lm_head
        self.rotary = base.rotary_emb
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.groups = self.heads // self.kv_heads
        self.head_dim = base.layers[0].self_attn.head_dim
        self.scale = getattr(base.layers[0].self_attn, "scaling", self.head_dim**-0.5)
        self.dtype = self.embed.weight.dtype
        self.device = self.embed.weight.device
        self.length = 0  # tokens cached so far (prompt slots included)
        self._cache: Tensor | None = None
        self._bias: Tensor | None = None  # (B, capacity) additive key mask: 0 attend, -inf padding
        self._padded = False

    @staticmethod
    def supports(lm: nn.Module) -> bool:
        """True when `lm` is a Llama/Qwen2 causal LM this path reproduces exactly."""
        return unsupported_reason(lm) is None

    @property
    def capacity(self) -> int:
        return 0 if self._cache is None else self._cache.shape[4]

    @property
    def batch_size(self) -> int:
        return 0 if self._cache is None else self._cache.shape[2]

    # -------------------------------------------------------------------------------------- cache

    def start(self, batch_size: int, capacity: int) -> None:
        """Prepare an empty cache for `batch_size` sequences of at most `capacity` tokens each (prompt included)."""
        if batch_size < 1 or capacity < 1:
            raise ValueError("batch_size and capacity must be >= 1")
        shape = (len(self.layers), 2, batch_size, self.kv_heads, capacity, self.head_dim)
        if self._cache is None or tuple(self._cache.shape) != shape:
            self.release()  # drop the old buffer before taking the new one
            self._cache = torch.empty(shape, dtype=self.dtype, device=self.device)
            self._bias = torch.empty((batch_size, capacity), dtype=self.dtype, device=self.device)
        self._bias.zero_()
        self._padded = False
        self.length = 0

    def reserve(self, capacity: int) -> None:
        """Grow the cache to hold at least `capacity` tokens per sequence, keeping what is cached."""
        if self._cache is None:
            raise RuntimeError("call FastDecoder.start(batch_size, capacity) first")
        if capacity <= self.capacity:
            return
        old, old_bias = self._cache, self._bias
        shape = (*old.shape[:4], capacity, old.shape[5])
        self._cache = torch.empty(shape, dtype=self.dtype, device=self.device)
        self._cache[:, :, :, :, : self.length] = old[:, :, :, :, : self.length]
        self._bias = torch.zeros((old.shape[2], capacity), dtype=self.dtype, device=self.device)
        self._bias[:, : self.length] = old_bias[:, : self.length]

    def truncate(self, length: int) -> None:
        """Forget every cached token from position `length` on (a later call overwrites those slots)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate {self.length} cached tokens to {length}")
        self.length = length

    def release(self) -> None:
        """Free the cache memory (a later `start` allocates it again)."""
        self._cache, self._bias, self.length = None, None, 0

    def _claim(self, tokens: int, batch_size: int) -> int:
        """Reserve `tokens` cache slots for every sequence; returns the first one."""
        if self._cache is None:
            raise RuntimeError("call FastDecoder.start(batch_size, capacity) first")
        if batch_size != self.batch_size:
            raise ValueError(f"batch of {batch_size} but the cache was started for {self.batch_size}")
        if self.length + tokens > self.capacity:
            raise CacheCapacityError(
                f"KV cache capacity {self.capacity} exceeded: {self.length} tokens cached and {tokens} more "
                "given; call start() with capacity >= prompt length + max new tokens"
            )
        first = self.length
        self.length += tokens
        return first

    # ------------------------------------------------------------------------------------ forward

    @torch.inference_mode()
    def prefill(self, inputs_embeds: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """Run the left-padded prompt (B, L, H) with its (B, L) 0/1 mask; logits (B, vocab) of the last position."""
        batch, length, _ = inputs_embeds.shape
        if self.length != 0:
            raise RuntimeError("prefill must be the first call after start()")
        if attention_mask.shape != (batch, length) or position_ids.shape != (batch, length):
            raise ValueError("attention_mask and position_ids must be (batch, length) like inputs_embeds")
        self._claim(length, batch)
        keep = attention_mask.to(device=self.device, dtype=torch.bool)
        self._bias[:, :length].masked_fill_(~keep, float("-inf"))
        self._padded = not bool(keep.all())
        mask = self._prefill_mask(keep) if self._padded else None
        cos, sin = self._rope(position_ids.to(self.device))
        cos, sin = cos[:, :, None], sin[:, :, None]  # broadcast over heads of (B, L, heads, D)
        x = inputs_embeds.to(device=self.device, dtype=self.dtype).reshape(batch * length, -1).clone()
        for layer, kv in zip(self.layers, self._cache, strict=True):
            x += self._prefill_attention(layer, _rms_norm(x, layer.input_norm), cos, sin, mask, kv, batch)
            x += self._mlp(layer, x)
        return self._logits(x.view(batch, length, -1)[:, -1])

    @torch.inference_mode()
    def extend(self, inputs_embeds: Tensor, position_ids: Tensor) -> Tensor:
        """Prefill (1, L, H) more tokens of one unpadded sequence after those cached; logits (1, vocab) of the last.

        The new tokens attend causally to each other and to every cached token.
        """
        batch, length, _ = inputs_embeds.shape
        if batch != 1 or self.batch_size != 1:
            raise ValueError("extend runs one sequence: start(1, capacity) and give (1, L, H)")
        if self._padded:
            raise ValueError("extend needs an unpadded cache")
        if length < 1 or position_ids.shape != (1, length):
            raise ValueError("extend needs at least one token and (1, L) position_ids")
        first = self._claim(length, 1)
        keys = first + length
        mask = None
        if first:  # query i sees the cached keys and the new ones up to itself
            where = torch.arange(keys, device=self.device)
            mask = (where[None, :] <= first + torch.arange(length, device=self.device)[:, None])[None, None]
        cos, sin = self._rope(position_ids.to(self.device))
        cos, sin = cos[:, :, None], sin[:, :, None]
        x = inputs_embeds.to(device=self.device, dtype=self.dtype).reshape(length, -1).clone()
        dim = self.head_dim
        for layer, kv in zip(self.layers, self._cache, strict=True):
            h = _rms_norm(x, layer.input_norm)
            q = _rotate(layer.q(h).view(1, length, self.heads, dim), cos, sin).transpose(1, 2)
            k = _rotate(layer.k(h).view(1, length, self.kv_heads, dim), cos, sin).transpose(1, 2)
            kv[0, :, :, first:keys] = k
            kv[1, :, :, first:keys] = layer.v(h).view(1, length, self.kv_heads, dim).transpose(1, 2)
            all_k, all_v = kv[0, :, :, :keys], kv[1, :, :, :keys]
            if mask is None:  # nothing cached before: exactly `prefill`'s unpadded call
                out = F.scaled_dot_product_attention(q, all_k, all_v, is_causal=True, scale=self.scale,
                                                     enable_gqa=self.groups > 1)
            else:
                all_k = all_k.repeat_interleave(self.groups, dim=1)
                all_v = all_v.repeat_interleave(self.groups, dim=1)
                out = F.scaled_dot_product_attention(q, all_k, all_v, attn_mask=mask, scale=self.scale)
            x += layer.o(out.transpose(1, 2).reshape(length, self.heads * dim))
            x += self._mlp(layer, x)
        return self._logits(x[-1:])

    @torch.inference_mode()
    def decode(self, input_ids: Tensor, position_ids: Tensor) -> Tensor:
        """Feed one token per sequence (B, 1) at `position_ids` (B, 1); logits (B, vocab) for the next token."""
        batch = input_ids.shape[0]
        slot = self._claim(1, batch)
        keys = slot + 1
        mask = self._bias[:, None, None, :keys] if self._padded else None
        cos, sin = self._rope(position_ids.to(self.device).reshape(batch, 1))
        cos, sin = cos.view(batch, 1, 1, -1), sin.view(batch, 1, 1, -1)
        where = torch.tensor([slot], device=self.device)
        x = self.embed(input_ids.to(self.device).reshape(batch)).to(self.dtype)
        for layer, kv in zip(self.layers, self._cache.narrow(4, 0, keys).unbind(0), strict=True):
            x += self._decode_attention(layer, _rms_norm(x, layer.input_norm), cos, sin, mask, kv, where)
            x += self._mlp(layer, x)
        return self._logits(x)

    # ------------------------------------------------------------------------------------- pieces

    def _rope(self, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        """cos and signed sin (B, L, head_dim), computed as the LM's rotary module does."""
        inv_freq = self.rotary.inv_freq.to(device=self.device, dtype=torch.float32)
        freqs = position_ids[..., None].float() * inv_freq
        scale = self.rotary.attention_scaling
        cos = torch.cat((freqs, freqs), dim=-1).cos() * scale
        sin = freqs.sin() * scale
        return cos.to(self.dtype), torch.cat((-sin, sin), dim=-1).to(self.dtype)

    def _prefill_mask(self, keep: Tensor) -> Tensor:
        """(B, 1, L, L) bool, causal and not padding; padded query rows attend nowhere (zeros), as in HF."""
        length = keep.shape[1]
        causal = torch.ones((length, length), dtype=torch.bool, device=self.device).tril()
        return causal[None, None] & keep[:, None, None, :]

    def _prefill_attention(
        self, layer: _Layer, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, kv: Tensor, batch: int
    ) -> Tensor:
        """Self-attention over the prompt; its keys and values go to cache slots [0, L)."""
        length, dim = h.shape[0] // batch, self.head_dim
        q = _rotate(layer.q(h).view(batch, length, self.heads, dim), cos, sin).transpose(1, 2)
        k = _rotate(layer.k(h).view(batch, length, self.kv_heads, dim), cos, sin).transpose(1, 2)
        v = layer.v(h).view(batch, length, self.kv_heads, dim).transpose(1, 2)
        kv[0, :, :, :length] = k
        kv[1, :, :, :length] = v
        if mask is None:  # no padding: causal attention with GQA inside the kernel, as HF calls it
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=self.scale, enable_gqa=self.groups > 1
            )
        else:  # padding: HF repeats the key/value heads and passes the boolean mask
            k, v = k.repeat_interleave(self.groups, dim=1), v.repeat_interleave(self.groups, dim=1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return layer.o(out.transpose(1, 2).reshape(batch * length, self.heads * dim))

    def _decode_attention(
        self, layer: _Layer, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, kv: Tensor, where: Tensor
    ) -> Tensor:
        """One query per sequence; `kv` (2, B, kv_heads, keys, D) is this layer's cache up to the new slot."""
        batch, dim, groups = h.shape[0], self.head_dim, self.groups
        q = layer.q(h).view(batch, self.kv_heads, groups, dim)
        k = layer.k(h).view(batch, self.kv_heads, 1, dim)
        qk = _rotate(torch.cat((q, k), dim=2), cos, sin)  # (B, kv_heads, groups + 1, D)
        keys, values = kv.unbind(0)
        keys.index_copy_(2, where, qk[:, :, groups:])
        values.index_copy_(2, where, layer.v(h).view(batch, self.kv_heads, 1, dim))
        q = qk[:, :, :groups]
        if mask is None:  # no padding: the SDPA call HF makes (GQA inside the kernel), for the same bits
            q = q.reshape(batch, self.heads, 1, dim)
            out = F.scaled_dot_product_attention(q, keys, values, scale=self.scale, enable_gqa=groups > 1)
        else:  # padding: HF packs each group's query heads as rows over its key/value head
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale)
        return layer.o(out.reshape(batch, self.heads * dim))

    def _mlp(self, layer: _Layer, x: Tensor) -> Tensor:
        """SiLU-gated MLP on the post-attention-normed residual stream."""
        h = _rms_norm(x, layer.post_norm)
        gate = F.silu(layer.gate(h), inplace=True)
        return layer.down(gate.mul_(layer.up(h)))

    def _logits(self, last: Tensor) -> Tensor:
        """Final norm and LM head on the last position only: (B, H) -> (B, vocab)."""
        return self.lm_head(_rms_norm(last, self.norm))

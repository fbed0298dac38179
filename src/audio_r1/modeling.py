"""The audio-r1 model: audio encoder, adaptor and a `transformers` causal-LM decoder.

Parameter names follow the released Step-Audio checkpoints (`encoder.blocks.{i}.attn.query`,
`adapter.linear1`, …) so official weights load with a strict key check. The decoder's names
(`model.layers.{i}…`, `lm_head`) live under `language_model.` here and are mapped to the official
top-level names by `checkpoints.py`.

Data flow for one audio chunk of L samples (16 kHz):
    mel (n_mels, T) with T = (L + 479) // 160, valid frames V = ceil(L / 160)
    -> conv1, conv2 (stride 2): 50 Hz -> blocks (keys past the valid length masked)
    -> average pool (stride 2): 25 Hz -> after_norm
    -> adaptor conv (stride 2): 12.5 Hz -> linear1, ReLU, linear2 -> decoder width
    -> the first `num_audio_patches(V)` vectors replace the chunk's `<audio_patch>` embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AdaptorConfig, AudioEncoderConfig, AudioR1Config
from .errors import AudioPromptMismatchError

MASKED = -1e9  # additive attention bias for keys past a chunk's valid length


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """x: (B, T, d); bias: (B, 1, 1, T) additive mask or None -> (B, T, d)."""
        batch, length, width = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: self-attention then a GELU MLP, each with a residual."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.attn_ln = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.mlp_ln = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.attn_ln(x), bias)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """Whisper-shaped encoder with an average pool and a final LayerNorm (`after_norm`)."""

    def __init__(self, dims: AudioEncoderConfig):
        super().__init__()
        self.dims = dims
        self.conv1 = nn.Conv1d(dims.n_mels, dims.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.d_model, dims.d_model, kernel_size=3, stride=2, padding=1)
        self.positional_embedding = nn.Embedding(dims.n_ctx, dims.d_model)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(dims.d_model, dims.n_heads) for _ in range(dims.n_layers))
        self.avg_pooler = nn.AvgPool1d(dims.pool_stride, stride=dims.pool_stride)
        self.after_norm = nn.LayerNorm(dims.d_model)

    def forward(self, mel: Tensor, valid_frames: Tensor | None = None, pool: bool = True) -> Tensor:
        """mel: (B, n_mels, T); valid_frames: (B,) real frames per item -> (B, T // 4, d_model).

        Each chunk's mel holds its V valid frames and a 2-frame tail (the 479 zero samples), so
        its own length is V + 2 frames; a batch pads shorter chunks beyond that. Attention keys past
        the valid length are masked, and conv inputs and pooled outputs past a chunk's own length
        are zeroed, so a chunk encodes the same alone or in a padded batch.

        With `pool=False` the output is (B, ceil(T/2), d_model) normalised by `after_norm` and
        not pooled, which is what a plain Whisper encoder returns (used for parity checks).
        """
        own_frames = None
        if valid_frames is not None:
            own_frames = (valid_frames.to(mel.device) + 2).clamp(max=mel.shape[-1])
            own = _within(own_frames, mel.shape[-1])[:, None, :].to(mel.dtype)
            mel = mel * own
        x = F.gelu(self.conv1(mel))
        if own_frames is not None:
            x = x * own
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, T2, d)
        positions = x.shape[1]
        if positions > self.dims.n_ctx:
            raise ValueError(
                f"audio chunk too long for the encoder: {positions} positions > {self.dims.n_ctx} "
                f"(at most {self.dims.n_ctx * 2 / 100:.2f} s of audio per chunk)"
            )
        x = x + self.positional_embedding.weight[:positions].to(x.dtype)
        bias = None
        if valid_frames is not None:
            keep = _within(_halved(valid_frames.to(x.device)), positions)
            if not bool(keep.all()):
                bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device).masked_fill(~keep, MASKED)
                bias = bias[:, None, None, :]
        for block in self.blocks:
            x = block(x, bias)
        if not pool:
            return self.after_norm(x)
        x = self.after_norm(self.avg_pooler(x.transpose(1, 2)).transpose(1, 2))
        if own_frames is not None:
            own_pooled = _halved(own_frames) // self.dims.pool_stride
            x = x * _within(own_pooled, x.shape[1])[:, :, None].to(x.dtype)
        return x


def _halved(frames: Tensor) -> Tensor:
    """Output length of a (k3, s2, p1) convolution: ceil(frames / 2)."""
    return (frames - 1) // 2 + 1


def _within(lengths: Tensor, size: int) -> Tensor:
    """(B, size) bool mask, True at positions below each item's length."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class Adaptor(nn.Module):
    """Encoder frames (25 Hz) -> decoder embeddings (12.5 Hz): strided conv, then a ReLU MLP."""

    def __init__(self, dims: AdaptorConfig):
        super().__init__()
        self.conv = nn.Conv1d(
            dims.d_input, dims.d_input, dims.kernel_size, stride=dims.stride, padding=dims.kernel_size // 2
        )
        self.linear1 = nn.Linear(dims.d_input, dims.d_hidden)
        self.linear2 = nn.Linear(dims.d_hidden, dims.d_output)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, d_input) -> (B, ceil(T / stride), d_output)."""
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.linear2(F.relu(self.linear1(x)))


@dataclass
class AudioBatch:
    """Audio for a batch of prompts: every chunk of every prompt, in prompt order.

    mel: (C, n_mels, T_max) chunk features, zero-padded to the longest chunk.
    valid_frames: (C,) real mel frames per chunk.
    chunks_per_prompt: how many of the C chunks belong to each prompt, in order.
    """

    mel: Tensor
    valid_frames: Tensor
    chunks_per_prompt: list[int]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> AudioBatch:
        mel = self.mel.to(device=device, dtype=dtype) if dtype else self.mel.to(device)
        return AudioBatch(mel, self.valid_frames.to(device), list(self.chunks_per_prompt))


def build_decoder(text_config: dict) -> nn.Module:
    """Any `transformers` causal LM from its config dict (weights randomly initialised)."""
    from transformers import (  # transformers: slow to import, only this path needs it
        AutoConfig,
        AutoModelForCausalLM,
    )

    settings = dict(text_config)
    model_type = settings.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **settings)
    return AutoModelForCausalLM.from_config(hf_config)


class AudioR1ForCausalLM(nn.Module):
    """Encoder + adaptor + decoder. Adaptor outputs overwrite the `<audio_patch>` embeddings."""

    def __init__(self, config: AudioR1Config, audio_patch_id: int | None = None):
        super().__init__()
        self.config = config
        self.audio_patch_id = audio_patch_id
        self.encoder = AudioEncoder(config.encoder)
        self.adapter = Adaptor(config.adaptor)
        self.language_model = build_decoder(config.text_config)

    @property
    def device(self) -> torch.device:
        return self.adapter.linear2.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.adapter.linear2.weight.dtype

    def encode_audio(self, audio: AudioBatch) -> list[Tensor]:
        """Audio embeddings per chunk: a list of (N_i, hidden) with N_i = num_audio_patches(V_i)."""
        mel = audio.mel.to(device=self.device, dtype=self.encoder.conv1.weight.dtype)
        valid = audio.valid_frames.to(self.device)
        features = self.adapter(self.encoder(mel, valid))
        counts = [self.config.num_audio_patches(int(v)) for v in audio.valid_frames.tolist()]
        return [features[i, :n] for i, n in enumerate(counts)]

    def embed_inputs(self, input_ids: Tensor, audio: AudioBatch | None = None) -> Tensor:
        """Token embeddings (B, L, hidden) with the audio patch positions overwritten."""
        embeds = self.language_model.get_input_embeddings()(input_ids)
        if self.audio_patch_id is None:
            if audio is not None:
                raise ValueError("the model has no audio_patch_id; load it with a tokenizer to use audio")
            return embeds
        is_patch = input_ids == self.audio_patch_id
        patches_per_prompt = is_patch.sum(dim=1).tolist()
        if audio is None:
            if any(patches_per_prompt):
                raise AudioPromptMismatchError(
                    f"the prompt holds {sum(patches_per_prompt)} <audio_patch> tokens but no audio was given"
                )
            return embeds
        if len(audio.chunks_per_prompt) != input_ids.shape[0]:
            raise ValueError(
                f"audio is given for {len(audio.chunks_per_prompt)} prompts, the batch has {input_ids.shape[0]}"
            )
        chunk_embeds = self.encode_audio(audio)
        start = 0
        per_prompt = []
        for row, (n_chunks, n_patches) in enumerate(zip(audio.chunks_per_prompt, patches_per_prompt, strict=True)):
            mine = chunk_embeds[start : start + n_chunks]
            start += n_chunks
            produced = sum(e.shape[0] for e in mine)
            if produced != n_patches:
                raise AudioPromptMismatchError(
                    f"prompt {row}: {n_patches} <audio_patch> tokens but its {n_chunks} audio chunk(s) "
                    f"give {produced} patches ({[e.shape[0] for e in mine]} per chunk); build the prompt "
                    "with the counts from AudioR1Config.num_audio_patches"
                )
            per_prompt.extend(mine)
        if per_prompt:
            embeds = embeds.clone()
            embeds[is_patch] = torch.cat(per_prompt).to(embeds.dtype)
        return embeds

    def forward(
        self,
        input_ids: Tensor,
        audio: AudioBatch | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        logits_mask: Tensor | None = None,
        **decoder_kwargs,
    ):
        """Decoder output (logits, loss when `labels` is given) for prompts with audio spliced in.

        With `logits_mask` (B, L) bool, only the hidden states where it is True go through the output
        head and the (N, vocab) logits of those positions are returned: training needs logits at the
        label positions only, and the head over a large vocabulary is a big share of the cost.
        """
        embeds = self.embed_inputs(input_ids, audio)
        if logits_mask is not None:
            body = self.language_model.get_decoder()
            hidden = body(inputs_embeds=embeds, attention_mask=attention_mask, **decoder_kwargs).last_hidden_state
            return self.language_model.get_output_embeddings()(hidden[logits_mask])
        return self.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **decoder_kwargs
        )


def count_parameters(model: AudioR1ForCausalLM) -> dict[str, int]:
    """Parameters per part (shared embedding/head weights counted once)."""
    seen: set[int] = set()

    def count(module: nn.Module) -> int:
        total = 0
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total

    lm = model.language_model
    parts = {
        "encoder": count(model.encoder),
        "adaptor": count(model.adapter),
        "embeddings": count(lm.get_input_embeddings()),
    }
    parts["lm_head"] = count(lm.get_output_embeddings())
    parts["decoder layers"] = count(lm)  # what remains once embeddings and head are counted
    parts["total"] = sum(parts.values())
    return parts

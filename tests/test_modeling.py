"""AudioEncoder, Adaptor and the audio splice: official names, strides, masking, sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_r1.audio import encoder_input, pad_mels, prepare_audio, valid_frames
from audio_r1.config import get_preset
from audio_r1.modeling import AudioBatch, AudioPromptMismatchError, AudioR1ForCausalLM, count_parameters

SR = 16000


@pytest.fixture(scope="module")
def tiny_model() -> AudioR1ForCausalLM:
    torch.manual_seed(0)
    return AudioR1ForCausalLM(get_preset("tiny"), audio_patch_id=300).eval()


@pytest.mark.parametrize(("seconds", "patches"), [(3.0, 38), (11.0, 138), (25.0, 313), (29.98, 375)])
def test_patch_count_follows_the_released_rule(seconds: float, patches: int) -> None:
    config = get_preset("step-audio-r1")
    assert config.num_audio_patches(valid_frames(round(seconds * SR))) == patches


@pytest.mark.parametrize("num_samples", [1, 159, 160, 161, 4799, 48000, 123457, 400000])
def test_adaptor_yields_at_least_the_counted_patches(tiny_model: AudioR1ForCausalLM, num_samples: int) -> None:
    mel, valid = encoder_input(np.zeros(num_samples, dtype=np.float32), n_mels=80)
    rule = ((valid + 1) // 2 // 2 - 1) // 2 + 1
    assert tiny_model.config.num_audio_patches(valid) == rule
    with torch.no_grad():
        features = tiny_model.adapter(tiny_model.encoder(mel[None], torch.tensor([valid])))
    assert features.shape[1] >= rule


def test_a_chunk_encodes_the_same_alone_and_in_a_padded_batch(tiny_model: AudioR1ForCausalLM) -> None:
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (3 * SR + 17, SR // 2, 7 * SR + 160)]
    chunks = [prepare_audio(c, n_mels=80)[0] for c in clips]
    mel, valid = pad_mels(chunks)
    with torch.no_grad():
        together = tiny_model.encode_audio(AudioBatch(mel, valid, [3]))
        for i, chunk in enumerate(chunks):
            alone = tiny_model.encode_audio(AudioBatch(chunk.mel[None], torch.tensor([chunk.valid_frames]), [1]))[0]
            assert together[i].shape == alone.shape
            torch.testing.assert_close(together[i], alone, atol=1e-5, rtol=1e-4)


def test_frames_past_the_valid_length_are_masked_from_attention(tiny_model: AudioR1ForCausalLM) -> None:
    mel = torch.randn(1, 80, 400)
    valid = torch.tensor([200])
    changed = mel.clone()
    changed[..., 202:] = torch.randn(1, 80, 198)  # past the chunk's own V + 2 frames
    with torch.no_grad():
        a = tiny_model.encoder(mel, valid)
        b = tiny_model.encoder(changed, valid)
    own = (200 + 2 + 1) // 2 // 2
    torch.testing.assert_close(a[:, :own], b[:, :own])


def test_official_parameter_names() -> None:
    with torch.device("meta"):
        model = AudioR1ForCausalLM(get_preset("step-audio-r1"))
    names = set(model.state_dict())
    for name in [
        "encoder.conv1.weight", "encoder.conv2.bias", "encoder.positional_embedding.weight",
        "encoder.blocks.31.attn.query.weight", "encoder.blocks.31.attn.query.bias",
        "encoder.blocks.0.attn.key.weight", "encoder.blocks.0.attn.value.bias", "encoder.blocks.0.attn.out.weight",
        "encoder.blocks.0.attn_ln.weight", "encoder.blocks.0.mlp.0.weight", "encoder.blocks.0.mlp.2.bias",
        "encoder.blocks.0.mlp_ln.bias", "encoder.after_norm.weight", "adapter.conv.weight",
        "adapter.linear1.weight", "adapter.linear2.bias",
        "language_model.model.layers.63.self_attn.q_proj.weight", "language_model.lm_head.weight",
    ]:
        assert name in names, name
    assert "encoder.blocks.0.attn.key.bias" not in names
    assert model.encoder.positional_embedding.weight.shape == (1500, 1280)
    assert model.adapter.linear1.weight.shape == (2048, 1280)


def test_step_audio_r1_has_33_to_34_billion_parameters() -> None:
    with torch.device("meta"):
        model = AudioR1ForCausalLM(get_preset("step-audio-r1"))
    total = count_parameters(model)["total"]
    assert 33e9 <= total <= 34e9


def test_patch_embeddings_are_replaced_in_order(tiny_model: AudioR1ForCausalLM) -> None:
    clip = np.random.default_rng(1).normal(0, 0.1, SR).astype(np.float32)
    chunk = prepare_audio(clip, n_mels=80)[0]
    n = tiny_model.config.num_audio_patches(chunk.valid_frames)
    ids = torch.tensor([[5, 6] + [300] * n + [7]])
    batch = AudioBatch(chunk.mel[None], torch.tensor([chunk.valid_frames]), [1])
    with torch.no_grad():
        embeds = tiny_model.embed_inputs(ids, batch)
        audio = tiny_model.encode_audio(batch)[0]
        plain = tiny_model.language_model.get_input_embeddings()(ids)
    torch.testing.assert_close(embeds[0, 2 : 2 + n], audio)
    torch.testing.assert_close(embeds[0, :2], plain[0, :2])
    with pytest.raises(AudioPromptMismatchError, match=f"{n + 1} <audio_patch> tokens"):
        tiny_model.embed_inputs(torch.tensor([[300] * (n + 1)]), batch)
    with pytest.raises(AudioPromptMismatchError, match="no audio was given"):
        tiny_model.embed_inputs(ids, None)


def test_chunk_longer_than_the_encoder_window_is_refused(tiny_model: AudioR1ForCausalLM) -> None:
    with pytest.raises(ValueError, match="too long for the encoder"):
        tiny_model.encoder(torch.zeros(1, 80, 3002), torch.tensor([3000]))

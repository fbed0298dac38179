"""The shipped-delta format: exported from a peft LoRA checkpoint, merged back into a base model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from audio_r1.config import AdaptorConfig, AudioEncoderConfig, AudioR1Config
from audio_r1.errors import CheckpointError
from audio_r1.modeling import AudioR1ForCausalLM
from audio_r1.pretrained import apply_delta, bundled_delta, delta_from_trainable, trainable_from_delta

TEXT = {"model_type": "llama", "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "tie_word_embeddings": True,
        "max_position_embeddings": 512}
NEW_TOKENS = [295, 296, 297, 298, 299]


def small_model(seed: int) -> AudioR1ForCausalLM:
    torch.manual_seed(seed)
    config = AudioR1Config(encoder=AudioEncoderConfig(n_mels=80, d_model=32, n_heads=2, n_layers=1),
                           adaptor=AdaptorConfig(d_input=32, d_hidden=64, d_output=48), text_config=dict(TEXT),
                           chat_format="chatml")
    return AudioR1ForCausalLM(config, audio_patch_id=297).eval()


def test_delta_round_trip_equals_the_peft_merge(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    trained = small_model(0)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                      trainable_token_indices={"embed_tokens": NEW_TOKENS})
    trained.language_model = get_peft_model(trained.language_model, lora)
    trained.encoder.requires_grad_(False)  # as in SFT: the encoder never trains
    with torch.no_grad():  # pretend training moved every trainable tensor
        for name, parameter in trained.named_parameters():
            if parameter.requires_grad or name.startswith("adapter."):
                parameter.add_(0.05 * torch.randn_like(parameter))
    tensors = {n: p.detach().clone() for n, p in trained.named_parameters()
               if p.requires_grad or n.startswith("adapter.")}
    delta = delta_from_trainable(tensors, scale=8 / 4)
    assert any(k.startswith("lora.") for k in delta) and "embed_rows" in delta
    assert all(t.dtype == torch.float16 for t in delta.values())
    path = tmp_path / "delta.safetensors"
    save_file(delta, str(path))

    fresh = small_model(0)  # the same base weights, untouched
    apply_delta(fresh, path, NEW_TOKENS)
    trained.language_model = trained.language_model.merge_and_unload()
    ids = torch.tensor([[1, 5, 295, 299, 42, 7]])
    with torch.no_grad():
        expected = trained(ids).logits
        got = fresh(ids).logits
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=1e-2)  # fp16 storage of the delta


def test_shipped_delta_is_small_when_present() -> None:
    delta = bundled_delta()
    if delta is not None:
        assert delta.stat().st_size <= 25 * 1024**2


def test_a_delta_reloads_as_the_trainable_tensors_it_came_from(tmp_path: Path) -> None:
    """`trainable_from_delta` inverts the export, so a run can continue a delta (`init_delta`)."""
    from peft import LoraConfig, get_peft_model

    model = small_model(1)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                      trainable_token_indices={"embed_tokens": NEW_TOKENS})
    model.language_model = get_peft_model(model.language_model, lora)
    model.encoder.requires_grad_(False)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    tensors = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    path = tmp_path / "delta.safetensors"
    save_file(delta_from_trainable(tensors, scale=2.0), str(path))
    back = trainable_from_delta(path, list(tensors), scale=2.0)
    assert set(back) == set(tensors)
    for name, tensor in tensors.items():
        torch.testing.assert_close(back[name], tensor, atol=1e-3, rtol=1e-3)  # fp16 storage
    with pytest.raises(CheckpointError, match="no tensor"):
        trainable_from_delta(path, [*tensors, "language_model.base_model.model.x.k_proj.lora_A.default.weight"], 2.0)


def test_a_file_that_is_not_a_delta_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"adapter.conv.weight": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a smol delta"):
        apply_delta(small_model(0), path, NEW_TOKENS)

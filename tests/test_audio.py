"""Tests for audio_r1.audio: decoding, resampling, log-mel parity with Whisper, the Step-Audio length rule."""

from __future__ import annotations

import io
import math
import pickle
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_r1.audio import (
    HOP_LENGTH,
    MAX_CHUNK_SAMPLES,
    SAMPLE_RATE,
    TAIL_SAMPLES,
    AudioChunkFeatures,
    AudioError,
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


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------


def tone(freq: float, sr: int, seconds: float = 2.0, amp: float = 0.5) -> np.ndarray:
    """A float32 sine of ``freq`` Hz at ``sr``."""
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode_sf(audio: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    """Encode with libsndfile into bytes."""
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def encode_pyav(audio: np.ndarray, sr: int, container: str) -> bytes:
    """Encode mono float32 audio as AAC in ``container`` ('ipod' = .m4a, 'adts' = raw .aac) with PyAV."""
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format=container) as out:
            stream = out.add_stream("aac", rate=sr, layout="mono")
            frame = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
            frame.sample_rate = sr
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except Exception as e:  # no AAC encoder / muxer in this ffmpeg build
        pytest.skip(f"PyAV cannot encode AAC into {container!r} here ({e}); m4a/aac decoding left untested")
    return buf.getvalue()


def peak_hz(audio: np.ndarray, sr: int) -> float:
    """Frequency of the strongest FFT bin (Hann-windowed)."""
    spec = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spec) * sr / len(audio))


def rms_db(audio: np.ndarray, ref: float) -> float:
    """RMS level in dB relative to ``ref``."""
    return 20 * math.log10(max(float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))), 1e-30) / ref)


def wav_bytes(audio: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16") -> bytes:
    return encode_sf(audio, sr, "WAV", subtype)


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


@pytest.fixture(scope="module")
def encoded_files() -> dict[str, bytes]:
    """A short 440 Hz tone (with a little noise) encoded in each libsndfile format."""
    rng = np.random.default_rng(0)
    audio = tone(440, 22050, 0.5) + 0.01 * rng.standard_normal(11025).astype(np.float32)
    return {
        "wav": encode_sf(audio, 22050, "WAV", "PCM_16"),
        "flac": encode_sf(audio, 22050, "FLAC", "PCM_16"),
        "ogg": encode_sf(audio, 22050, "OGG", "VORBIS"),
        "mp3": encode_sf(audio, 22050, "MP3", "MPEG_LAYER_III"),
    }


# ------------------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------------------


SF_FORMATS = [
    ("wav", "WAV", "PCM_16", 0),
    ("wav-float", "WAV", "FLOAT", 0),
    ("wav-24", "WAV", "PCM_24", 0),
    ("flac", "FLAC", "PCM_16", 0),
    ("ogg", "OGG", "VORBIS", 0.05),
    ("mp3", "MP3", "MPEG_LAYER_III", 0.1),
]


@pytest.mark.parametrize("name,fmt,subtype,slack", SF_FORMATS, ids=[f[0] for f in SF_FORMATS])
def test_decode_soundfile_formats(tmp_path: Path, name: str, fmt: str, subtype: str, slack: float) -> None:
    sr = 44100
    data = encode_sf(tone(440, sr), sr, fmt, subtype)
    path = tmp_path / f"clip.{name}"
    path.write_bytes(data)
    for source in (path, str(path), data, bytearray(data)):
        audio = load_audio(source)
        assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.c_contiguous
        assert abs(len(audio) - 2 * SAMPLE_RATE) <= slack * SAMPLE_RATE + 1
        assert abs(peak_hz(audio, SAMPLE_RATE) - 440) < 2
        assert abs(rms_db(audio, 0.5 / math.sqrt(2))) < 0.5  # level kept: int PCM scaled to [-1, 1]


@pytest.mark.parametrize("container", ["ipod", "adts"])
def test_decode_aac(tmp_path: Path, container: str) -> None:
    sr = 44100
    data = encode_pyav(tone(440, sr), sr, container)
    if container == "ipod":
        assert data[4:8] == b"ftyp"
    path = tmp_path / "clip.m4a"
    path.write_bytes(data)
    for source in (path, data):
        audio = load_audio(source)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(len(audio) - 2 * SAMPLE_RATE) < 0.2 * SAMPLE_RATE  # AAC priming/padding frames
        assert abs(peak_hz(audio, SAMPLE_RATE) - 440) < 2


@pytest.mark.parametrize("real,named", [("mp3", "clip.wav"), ("flac", "clip.mp3"), ("wav", "clip.m4a"),
                                        ("ogg", "clip"), ("mp3", "clip.txt")])
def test_format_detected_from_content_not_extension(tmp_path: Path, encoded_files: dict[str, bytes],
                                                    real: str, named: str) -> None:
    path = tmp_path / named
    path.write_bytes(encoded_files[real])
    audio = load_audio(path)
    assert abs(len(audio) - SAMPLE_RATE // 2) < 0.1 * SAMPLE_RATE
    assert abs(peak_hz(audio, SAMPLE_RATE) - 440) < 4


def test_m4a_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "actually_m4a.wav"
    path.write_bytes(encode_pyav(tone(440, 16000), 16000, "ipod"))
    assert abs(peak_hz(load_audio(path), SAMPLE_RATE) - 440) < 2


def test_stereo_file_is_mean_of_channels() -> None:
    left, right = tone(440, SAMPLE_RATE, 1.0, 0.5), tone(1000, SAMPLE_RATE, 1.0, 0.25)
    data = encode_sf(np.stack([left, right], axis=1), SAMPLE_RATE, "WAV", "FLOAT")
    np.testing.assert_allclose(load_audio(data), (left + right) / 2, atol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# array input
# ------------------------------------------------------------------------------------------------------------


def test_array_mono_passthrough() -> None:
    x = tone(440, SAMPLE_RATE, 1.0)
    out = load_audio(x, source_sample_rate=SAMPLE_RATE)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(load_audio(x.astype(np.float64), source_sample_rate=16000.0), x)
    out = load_audio(x, source_sample_rate=np.int64(16000), sample_rate=np.int64(16000))
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("layout", ["frames_first", "channels_first"])
def test_array_stereo_layouts(layout: str) -> None:
    left, right = tone(440, SAMPLE_RATE, 1.0), tone(880, SAMPLE_RATE, 1.0, 0.1)
    x = np.stack([left, right], axis=1 if layout == "frames_first" else 0)
    np.testing.assert_allclose(load_audio(x, source_sample_rate=SAMPLE_RATE), (left + right) / 2, atol=1e-7)


def test_array_six_channels_channels_first() -> None:
    x = np.tile(tone(440, SAMPLE_RATE, 0.5), (6, 1))
    np.testing.assert_allclose(load_audio(x, source_sample_rate=SAMPLE_RATE), x[0], atol=1e-6)


def test_array_int_pcm_scaled() -> None:
    x = tone(440, SAMPLE_RATE, 1.0, 0.5)
    pcm16 = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm16, source_sample_rate=SAMPLE_RATE), x, atol=1e-4)
    stereo16 = np.stack([pcm16, pcm16], axis=1)
    np.testing.assert_allclose(load_audio(stereo16, source_sample_rate=SAMPLE_RATE), x, atol=1e-4)
    pcm32 = np.round(x.astype(np.float64) * 2**31).astype(np.int32)
    np.testing.assert_allclose(load_audio(pcm32, source_sample_rate=SAMPLE_RATE), x, atol=1e-6)
    u8 = np.round(x * 127 + 128).astype(np.uint8)
    np.testing.assert_allclose(load_audio(u8, source_sample_rate=SAMPLE_RATE), x, atol=1e-2)
    assert load_audio(np.array([-32768, 32767], np.int16), source_sample_rate=SAMPLE_RATE).max() <= 1.0


def test_tensor_input() -> None:
    x = tone(440, SAMPLE_RATE, 1.0)
    t = torch.from_numpy(np.stack([x, x]))
    np.testing.assert_allclose(load_audio(t, source_sample_rate=SAMPLE_RATE), x, atol=1e-7)
    out = load_audio(t[0].to(torch.bfloat16), source_sample_rate=SAMPLE_RATE)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x, atol=1e-2)
    if torch.cuda.is_available():
        np.testing.assert_allclose(load_audio(t.cuda(), source_sample_rate=SAMPLE_RATE), x, atol=1e-7)


# ------------------------------------------------------------------------------------------------------------
# resampling
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sr", [44100, 22050, 8000, 48000])
def test_resample_keeps_frequency(sr: int) -> None:
    x = tone(440, sr, 2.0)
    for out in (load_audio(x, source_sample_rate=sr), load_audio(wav_bytes(x, sr))):
        assert abs(len(out) - 2 * SAMPLE_RATE) <= 1
        assert abs(peak_hz(out, SAMPLE_RATE) - 440) < 1
        assert abs(rms_db(out[1000:-1000], 0.5 / math.sqrt(2))) < 0.1


def test_resample_anti_aliasing() -> None:
    sr = 44100
    # 7.9 kHz sits in the transition band just under the new 8 kHz Nyquist: strongly attenuated
    near = load_audio(tone(7900, sr, 2.0, 1.0), source_sample_rate=sr)
    assert rms_db(near[2000:-2000], 1 / math.sqrt(2)) < -40
    # 9 kHz would alias to 7 kHz with naive decimation; nothing of it may come through
    above = load_audio(tone(9000, sr, 2.0, 1.0), source_sample_rate=sr)
    assert rms_db(above[2000:-2000], 1 / math.sqrt(2)) < -100
    # a 3 kHz tone in the pass band is untouched
    passband = load_audio(tone(3000, sr, 2.0, 1.0), source_sample_rate=sr)
    assert abs(rms_db(passband[2000:-2000], 1 / math.sqrt(2))) < 0.05


def test_resample_to_other_rate() -> None:
    out = load_audio(tone(440, SAMPLE_RATE, 1.0), source_sample_rate=SAMPLE_RATE, sample_rate=24000)
    assert len(out) == 24000 and abs(peak_hz(out, 24000) - 440) < 1.5


# ------------------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------------------


def expect_error(source, reason_fragment: str, **kwargs) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_audio(source, **kwargs)
    err = info.value
    assert isinstance(err, ValueError)
    assert reason_fragment in err.reason and reason_fragment in str(err)
    assert str(err).startswith("cannot read audio from ")
    assert err.source in str(err)
    return err


def test_error_missing_file(tmp_path: Path) -> None:
    err = expect_error(tmp_path / "nope.wav", "not found")
    assert err.source == str(tmp_path / "nope.wav")
    assert str(err) == f"cannot read audio from {str(tmp_path / 'nope.wav')!r}: file not found"


def test_error_directory(tmp_path: Path) -> None:
    expect_error(tmp_path, "directory")


def test_error_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    expect_error(path, "empty")
    err = expect_error(b"", "0 bytes")
    assert err.source == "<bytes: 0>"


def test_error_truncated_wav(tmp_path: Path) -> None:
    data = wav_bytes(tone(440, SAMPLE_RATE, 1.0))
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])
    err = expect_error(path, "truncated")
    assert "cut.wav" in str(err)
    expect_error(data[:30], "truncated")  # cut inside the header


def test_error_truncated_flac(encoded_files: dict[str, bytes]) -> None:
    data = encoded_files["flac"]
    err = expect_error(data[: len(data) // 2], "truncated")
    assert err.source == f"<bytes: {len(data) // 2}>"


def test_error_corrupt_ogg(encoded_files: dict[str, bytes]) -> None:
    data = encoded_files["ogg"]
    expect_error(data[:200], "corrupt")


def test_error_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are not the samples you are looking for")
    expect_error(path, "unknown audio format")
    expect_error(b"\x00" * 1000, "unknown audio format")


def test_error_zero_samples() -> None:
    expect_error(wav_bytes(np.zeros(0, np.float32)), "zero samples")
    expect_error(np.zeros(0, np.float32), "zero samples", source_sample_rate=SAMPLE_RATE)
    expect_error(np.zeros((0, 2), np.float32), "zero samples", source_sample_rate=SAMPLE_RATE)


def test_error_non_finite() -> None:
    x = tone(440, SAMPLE_RATE, 0.5)
    x[100] = np.nan
    expect_error(wav_bytes(x, subtype="FLOAT"), "NaN")
    x[100] = np.inf
    expect_error(x, "infinite", source_sample_rate=SAMPLE_RATE)
    expect_error(torch.from_numpy(x), "NaN or infinite", source_sample_rate=SAMPLE_RATE)


def test_error_too_long() -> None:
    data = wav_bytes(tone(440, SAMPLE_RATE, 3.0))
    err = expect_error(data, "3.0 s", max_seconds=2.0)
    assert "max_seconds=2" in err.reason and "larger max_seconds" in err.reason
    expect_error(np.zeros(3 * 8000, np.float32), "over the max_seconds=2.5 cap", source_sample_rate=8000,
                 max_seconds=2.5)
    assert len(load_audio(data, max_seconds=3.0)) == 3 * SAMPLE_RATE  # exactly at the cap is fine
    assert len(load_audio(data, max_seconds=None)) == 3 * SAMPLE_RATE


def test_error_too_long_aac() -> None:
    data = encode_pyav(tone(440, SAMPLE_RATE, 3.0), SAMPLE_RATE, "ipod")
    expect_error(data, "over the max_seconds=1 cap", max_seconds=1.0)


def test_too_long_checked_from_header(tmp_path: Path) -> None:
    """A 10-hour WAV is refused from its header at once, without decoding (sparse file: no disk use)."""
    sr, n_bytes = 8000, 10 * 3600 * 8000 * 2
    header = (b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
              + b"data" + struct.pack("<I", n_bytes))
    path = tmp_path / "ten_hours.wav"
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n_bytes)
    start = time.perf_counter()
    err = expect_error(path, "36000.0 s long")
    assert time.perf_counter() - start < 2.0
    assert "max_seconds=600" in err.reason


@pytest.mark.parametrize("shape", [(2, 3, 100), (100, 9), (9, 100), ()])
def test_error_bad_shape(shape: tuple[int, ...]) -> None:
    expect_error(np.zeros(shape, np.float32), "expected shape", source_sample_rate=SAMPLE_RATE)


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, object, "U3"])
def test_error_bad_dtype(dtype) -> None:
    expect_error(np.zeros(100, dtype=dtype), "dtype", source_sample_rate=SAMPLE_RATE)


def test_error_missing_source_sample_rate() -> None:
    err = expect_error(np.zeros(100, np.float32), "source_sample_rate is required")
    assert err.source == "<array>"
    expect_error(torch.zeros(100), "source_sample_rate is required")
    expect_error(np.zeros(100, np.float32), "positive", source_sample_rate=0)
    expect_error(wav_bytes(tone(440, 8000, 0.1), 8000), "only to array input", source_sample_rate=8000)


def test_error_unsupported_source_type() -> None:
    expect_error([0.0, 0.1], "unsupported source type")


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(np.zeros(10, np.float32), source_sample_rate=16000, sample_rate=0)
    with pytest.raises(ValueError, match="max_seconds"):
        load_audio(np.zeros(10, np.float32), source_sample_rate=16000, max_seconds=0)


def test_audio_error_pickles() -> None:
    err = AudioError("x.wav", "file is truncated")
    assert str(err) == "cannot read audio from 'x.wav': file is truncated"
    again = pickle.loads(pickle.dumps(err))
    assert (again.source, again.reason, str(again)) == (err.source, err.reason, str(err))


# ------------------------------------------------------------------------------------------------------------
# fuzzing: only AudioError may escape
# ------------------------------------------------------------------------------------------------------------

MAGICS = [b"", b"RIFF\x24\x00\x00\x00WAVE", b"fLaC", b"OggS", b"ID3\x03\x00", b"\xff\xfb", b"\xff\xf1",
          b"\x00\x00\x00\x18ftypM4A ", b"\x1a\x45\xdf\xa3", b"FORM\x00\x00\x00\x20AIFF",
          b"RF64\xff\xff\xff\xffWAVE"]


def check_outcome(source: bytes) -> None:
    try:
        audio = load_audio(source)
    except AudioError:
        return
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size > 0 and np.isfinite(audio).all()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_only_audio_error_escapes(encoded_files: dict[str, bytes], data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["random", "magic", "prefix", "flip"]))
    if kind == "random":
        source = data.draw(st.binary(max_size=2048))
    elif kind == "magic":
        source = data.draw(st.sampled_from(MAGICS)) + data.draw(st.binary(max_size=2048))
    else:
        valid = encoded_files[data.draw(st.sampled_from(sorted(encoded_files)))]
        if kind == "prefix":
            source = valid[: data.draw(st.integers(0, len(valid)))]
        else:  # a few corrupted bytes inside a valid file
            buf = bytearray(valid)
            for _ in range(data.draw(st.integers(1, 8))):
                buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
            source = bytes(buf)
    check_outcome(source)


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

"""Tests for audio_r1.audio.decoding: formats, arrays, resampling, errors and the decoding caps."""

from __future__ import annotations

import io
import json
import math
import pickle
import resource
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_r1.audio import (
    DEFAULT_MAX_SECONDS,
    MAX_DECODED_SAMPLES,
    MAX_SOURCE_RATE,
    SAMPLE_RATE,
    AudioError,
    AudioTooLargeError,
    load_audio,
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
    err = expect_error(path, "36000.0 s long")  # the header's length: refused before decoding anything
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
# package surface
# ------------------------------------------------------------------------------------------------------------


def test_package_reexports_the_split_modules() -> None:
    import audio_r1.audio as audio
    from audio_r1 import errors
    from audio_r1.audio import decoding, features

    assert audio.load_audio is decoding.load_audio and audio.resample is decoding.resample
    assert audio.prepare_audio is features.prepare_audio and audio.pad_mels is features.pad_mels
    assert audio.AudioError is errors.AudioError and audio.AudioTooLargeError is errors.AudioTooLargeError
    assert decoding.SAMPLE_RATE == features.SAMPLE_RATE == SAMPLE_RATE
    assert all(hasattr(audio, name) for name in audio.__all__)


# ------------------------------------------------------------------------------------------------------------
# many channels: every format, 1..16 channels, in a child process (a segfault must fail the test, not pytest)
# ------------------------------------------------------------------------------------------------------------

CLIP_SECONDS = 0.1
MAX_TEST_CHANNELS = 16
LOSSLESS_16K = ("wav", "flac", "aiff", "mkv-pcm", "wav-s64")  # decoded output must equal the channel mean


class CannotEncode(Exception):
    """This ffmpeg / libsndfile build cannot write the combination; it is skipped, not tested."""


def channel_tones(channels: int, sr: int) -> np.ndarray:
    """(n, channels) float32: a different quiet sine in every channel, so a wrong interleave shows."""
    return np.stack([tone(200 + 150 * c, sr, CLIP_SECONDS, 0.1) for c in range(channels)], axis=1)


def encode_sf_channels(channels: int, fmt: str, subtype: str) -> bytes:
    try:
        return encode_sf(channel_tones(channels, SAMPLE_RATE), SAMPLE_RATE, fmt, subtype)
    except Exception as e:  # libsndfile refuses e.g. 9+ channel FLAC or 3+ channel MP3
        raise CannotEncode(str(e)) from None


def encode_av_channels(channels: int, container: str, codec: str, sr: int = SAMPLE_RATE) -> bytes:
    """Encode with PyAV from packed float frames (never the planar frames the bug is about)."""
    import av  # only the child process encodes with PyAV

    x = channel_tones(channels, sr)
    layouts = [name for name in (f"{channels}c", f"{channels} channels") if _parses(av, name)]
    errors = []
    for layout in layouts:
        buf = io.BytesIO()
        options = {"mapping_family": "255"} if codec == "libopus" and channels > 8 else {}
        try:
            with av.open(buf, "w", format=container) as out:
                stream = out.add_stream(codec, rate=sr, layout=layout, options=options)
                frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout=layout)
                frame.sample_rate = sr
                for packet in [*stream.encode(frame), *stream.encode(None)]:
                    out.mux(packet)
            return buf.getvalue()
        except Exception as e:  # no such encoder, or it takes no such layout
            errors.append(str(e))
    raise CannotEncode("; ".join(errors))


def _parses(av, layout: str) -> bool:
    try:
        av.AudioLayout(layout)
    except Exception:
        return False
    return True


MULTICHANNEL_MAKERS = {
    "wav": lambda ch: encode_sf_channels(ch, "WAV", "PCM_16"),
    "flac": lambda ch: encode_sf_channels(ch, "FLAC", "PCM_16"),
    "aiff": lambda ch: encode_sf_channels(ch, "AIFF", "PCM_16"),
    "ogg-vorbis": lambda ch: encode_sf_channels(ch, "OGG", "VORBIS"),
    "ogg-opus": lambda ch: encode_sf_channels(ch, "OGG", "OPUS"),
    "mp3": lambda ch: encode_sf_channels(ch, "MP3", "MPEG_LAYER_III"),
    "m4a": lambda ch: encode_av_channels(ch, "ipod", "aac"),
    "aac-adts": lambda ch: encode_av_channels(ch, "adts", "aac"),
    "webm-opus": lambda ch: encode_av_channels(ch, "webm", "libopus", 48000),
    "ogg-opus-av": lambda ch: encode_av_channels(ch, "ogg", "libopus", 48000),
    "mkv-pcm": lambda ch: encode_av_channels(ch, "matroska", "pcm_s16le"),
    "wav-s64": lambda ch: encode_av_channels(ch, "wav", "pcm_s64le"),  # libsndfile refuses: PyAV fallback
}


def multichannel_child() -> None:
    """Child process: make and decode every (format, channels) combination, one JSON line each."""
    for name, make in MULTICHANNEL_MAKERS.items():
        for channels in range(1, MAX_TEST_CHANNELS + 1):
            row = {"format": name, "channels": channels}
            try:
                data = make(channels)
            except CannotEncode:
                print(json.dumps({**row, "made": False}), flush=True)
                continue
            print(json.dumps({**row, "made": True, "decoding": True}), flush=True)  # the culprit if we die
            try:
                audio = load_audio(data)
            except AudioError as e:
                print(json.dumps({**row, "made": True, "error": e.reason}), flush=True)
                continue
            expected = channel_tones(channels, SAMPLE_RATE).mean(axis=1)
            n = min(len(audio), len(expected))
            err = float(np.abs(audio[:n] - expected[:n]).max())
            print(json.dumps({**row, "made": True, "samples": len(audio), "max_err": err,
                              "finite": bool(np.isfinite(audio).all())}), flush=True)


def test_many_channels_decode_in_every_format() -> None:
    """1..16 channels in every format (PyAV used to segfault on planar frames of 8+ channels)."""
    child = subprocess.run([sys.executable, __file__, "multichannel"], capture_output=True, text=True,
                           timeout=300)
    rows = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    last = rows[-1] if rows else None
    assert child.returncode == 0, f"decoder died (exit {child.returncode}) at {last}: {child.stderr[-2000:]}"
    results = [r for r in rows if r["made"] and "decoding" not in r]
    failed = [r for r in results if "samples" not in r]
    assert not failed, f"valid multi-channel files refused: {failed}"
    for r in results:
        assert r["finite"] and CLIP_SECONDS * SAMPLE_RATE * 0.9 <= r["samples"] <= 4000, r
        if r["format"] in LOSSLESS_16K:
            assert r["max_err"] < 1e-3, r  # the mean of the channels, in order: interleave read right
    made = {(r["format"], r["channels"]) for r in results}
    assert {("wav", 16), ("flac", 8)} <= made
    pyav_kinds = ("m4a", "aac-adts", "webm-opus", "mkv-pcm", "wav-s64")
    pyav_many = {(f, c) for f, c in made if f in pyav_kinds and c >= 8}
    if not pyav_many:
        pytest.skip("this PyAV build can encode no 8+ channel file that ffmpeg decodes")


# ------------------------------------------------------------------------------------------------------------
# decoded-size cap (max_samples) and source rate limit
# ------------------------------------------------------------------------------------------------------------


def silent_flac(channels: int, sr: int, seconds: int) -> bytes:
    """Long 16-bit silence as FLAC, written a second at a time (it compresses to almost nothing)."""
    buf = io.BytesIO()
    block = np.zeros((sr, channels), np.int16)
    with sf.SoundFile(buf, "w", sr, channels, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds):
            f.write(block)
    return buf.getvalue()


def without_flac_length(data: bytes) -> bytes:
    """The same FLAC with STREAMINFO's total-samples field 0 ("unknown", as streaming encoders write)."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # first metadata block is STREAMINFO
    buf = bytearray(data)
    buf[21] &= 0xF0  # the 36-bit count: low nibble of byte 21, bytes 22..25
    buf[22:26] = b"\0\0\0\0"
    return bytes(buf)


def streamed_webm(channels: int, seconds: float) -> bytes:
    """Opus in WebM written to a sink that cannot seek, like a browser's MediaRecorder: no duration in it."""
    av = pytest.importorskip("av")

    class Sink:
        def __init__(self) -> None:
            self.buf = io.BytesIO()

        def write(self, data: bytes) -> int:
            return self.buf.write(data)

    sink, sr, layout = Sink(), 48000, f"{channels}c"
    try:
        with av.open(sink, "w", format="webm") as out:
            stream = out.add_stream("libopus", rate=sr, layout=layout)
            pcm = np.zeros((1, int(sr * seconds) * channels), np.float32)
            frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout=layout)
            frame.sample_rate = sr
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
    except Exception as e:  # no libopus / webm muxer in this build
        pytest.skip(f"PyAV cannot write streamed webm/opus here ({e})")
    return sink.buf.getvalue()


def peak_rss_child(path: str) -> None:
    """Child process: decode one file and report the error and how much the peak RSS grew meanwhile."""
    data = Path(path).read_bytes()
    load_audio(wav_bytes(tone(440, SAMPLE_RATE, 0.1)))  # lazy imports and buffers before the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row: dict = {}
    try:
        row["samples"] = len(load_audio(data))
    except AudioError as e:
        row.update(error=type(e).__name__, at_least=getattr(e, "at_least", None), reason=e.reason)
    row["growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB on Linux
    print(json.dumps(row), flush=True)


def decode_in_child(tmp_path: Path, data: bytes) -> dict:
    path = tmp_path / "clip.bin"
    path.write_bytes(data)
    child = subprocess.run([sys.executable, __file__, "peak-rss", str(path)], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.splitlines()[-1])


def test_long_many_channel_flac_refused_from_header(tmp_path: Path) -> None:
    """60 s of 8-channel 192 kHz silence is ~100 KB of FLAC but 92 M samples: refused before decoding."""
    data = silent_flac(8, 192000, 60)
    assert len(data) < 1_000_000
    with pytest.raises(AudioTooLargeError) as info:
        load_audio(data)
    err = info.value
    assert isinstance(err, AudioError) and isinstance(err, ValueError)
    assert (err.samples, err.limit, err.at_least) == (60 * 192000 * 8, MAX_DECODED_SAMPLES, False)
    row = decode_in_child(tmp_path, data)
    assert row["error"] == "AudioTooLargeError" and row["at_least"] is False
    assert row["growth_mb"] < 300  # decoding it all took 1.9 GB before the cap


def test_flac_without_length_is_stopped_while_decoding(tmp_path: Path) -> None:
    """No length in the header: decoding stops once the running count passes the cap, memory stays small."""
    data = without_flac_length(silent_flac(8, 192000, 60))
    row = decode_in_child(tmp_path, data)
    assert row["error"] == "AudioTooLargeError" and row["at_least"] is True, row
    assert row["growth_mb"] < 300


def test_streamed_webm_is_stopped_while_decoding() -> None:
    """The PyAV path: a WebM without a duration is stopped frame by frame once past max_samples."""
    data = streamed_webm(2, 3.0)
    with pytest.raises(AudioTooLargeError) as info:
        load_audio(data, max_samples=48000 * 2)  # one second of the three
    assert info.value.at_least and info.value.limit == 96000
    assert abs(len(load_audio(data, max_samples=None)) - 3 * SAMPLE_RATE) < 0.1 * SAMPLE_RATE


def test_max_samples_counts_all_channels() -> None:
    stereo = encode_sf(np.zeros((2 * SAMPLE_RATE, 2), np.float32), SAMPLE_RATE, "WAV", "PCM_16")
    assert len(load_audio(stereo, max_samples=4 * SAMPLE_RATE)) == 2 * SAMPLE_RATE  # exactly at the cap
    with pytest.raises(AudioTooLargeError) as info:
        load_audio(stereo, max_samples=4 * SAMPLE_RATE - 1)
    assert (info.value.samples, info.value.at_least) == (4 * SAMPLE_RATE, False)
    assert "64,000" in str(info.value)
    assert len(load_audio(stereo, max_samples=None)) == 2 * SAMPLE_RATE
    aac = encode_pyav(tone(440, SAMPLE_RATE, 2.0), SAMPLE_RATE, "ipod")  # the PyAV header check
    with pytest.raises(AudioTooLargeError):
        load_audio(aac, max_samples=SAMPLE_RATE)
    # arrays are decoded already: the cap is for what a file expands to
    x = np.zeros((SAMPLE_RATE, 2), np.float32)
    assert len(load_audio(x, source_sample_rate=SAMPLE_RATE, max_samples=10)) == SAMPLE_RATE


def test_default_cap_keeps_ordinary_audio() -> None:
    assert MAX_DECODED_SAMPLES >= DEFAULT_MAX_SECONDS * 48000 * 2  # 10 min of 48 kHz stereo fits
    assert MAX_DECODED_SAMPLES < 295 * 192000 * 8  # the 127 KB FLAC of the issue does not


def test_bad_max_samples_are_value_errors() -> None:
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="max_samples"):
            load_audio(wav_bytes(tone(440, SAMPLE_RATE, 0.1)), max_samples=bad)


def test_source_rate_limit() -> None:
    assert MAX_SOURCE_RATE == 384000
    x = tone(1000, MAX_SOURCE_RATE, 0.05)
    assert abs(len(load_audio(wav_bytes(x, MAX_SOURCE_RATE))) - 0.05 * SAMPLE_RATE) <= 1  # still accepted
    err = expect_error(wav_bytes(x, 400000), "above the 384,000 Hz")
    assert "400000 Hz" in err.reason


if __name__ == "__main__":  # the child processes of the tests above
    if sys.argv[1] == "multichannel":
        multichannel_child()
    elif sys.argv[1] == "peak-rss":
        peak_rss_child(sys.argv[2])

"""Audio front end: decoding, resampling, Whisper-style log-mel and the Step-Audio chunk rule.

Everything the audio encoder sees goes through here:

* ``load_audio`` turns a file, raw bytes or an array into mono float32 at 16 kHz (format detected from the
  content, not the file name; every failure is an :class:`AudioError`).
* ``log_mel_spectrogram`` is the Whisper log-mel (matches ``transformers``' ``WhisperFeatureExtractor``).
* ``prepare_audio`` / ``encoder_input`` / ``pad_mels`` apply the released Step-Audio length rule: each
  chunk of L samples gets 479 zero samples appended, giving T = (L + 479) // 160 mel frames of which
  V = T - 2 = ceil(L / 160) are valid. Clips are never padded to 30 s.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import IO

import av
import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

# hard-coded audio hyperparameters (Whisper)
SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_FREQS = N_FFT // 2 + 1  # 201 one-sided STFT bins
MEL_FMAX = 8000.0

# Step-Audio encoder input rule
TAIL_SAMPLES = 479  # zeros appended to every chunk before the log-mel (released model code)
MAX_ENCODER_FRAMES = 3000  # 1500 encoder positions after the stride-2 conv
MAX_CHUNK_SAMPLES = (MAX_ENCODER_FRAMES + 1) * HOP_LENGTH - 1 - TAIL_SAMPLES  # 479680 -> T = 3000
MAX_CHUNK_SECONDS = MAX_CHUNK_SAMPLES / SAMPLE_RATE  # 29.98
DEFAULT_CHUNK_SECONDS = 25.0

# decoding
DEFAULT_MAX_SECONDS = 600.0
MAX_ARRAY_CHANNELS = 8
RESAMPLE_QUALITY = "HQ"  # soxr: 20-bit, steep anti-aliasing low-pass; plenty for float32 features
_SNIFF_BYTES = 64
_UNKNOWN_FRAMES = 2**62  # libsndfile reports absurd counts when the length is unknown
_WAV_PLACEHOLDER_SIZES = (0, 0x7FFFFFFF, 0xFFFFFFFF)  # written by streaming encoders
_SOUNDFILE_KINDS = ("wav", "flac", "ogg", "mp3", "aiff")

# log-mel on CPU: batches are processed in groups of about this many samples (two 30 s clips)
_CPU_GROUP_SAMPLES = 1_000_000


class AudioError(ValueError):
    """Audio could not be turned into a waveform; ``source`` says which input and ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        shown = source if source.startswith("<") and source.endswith(">") else repr(source)
        super().__init__(f"cannot read audio from {shown}: {reason}")

    def __reduce__(self):
        return (type(self), (self.source, self.reason))


# ------------------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------------------


def load_audio(
    source: str | os.PathLike | bytes | bytearray | np.ndarray | torch.Tensor,
    *,
    sample_rate: int = SAMPLE_RATE,
    source_sample_rate: float | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> np.ndarray:
    """Decode ``source`` into a mono float32 waveform of shape (n_samples,) at ``sample_rate``.

    ``source`` is a path, the bytes of an encoded file (wav, flac, ogg, mp3, m4a/aac; the format is detected
    from the content, so an MP3 named ``.wav`` still decodes), or an array / tensor of samples shaped (n,),
    (n, channels) or (channels, n) with at most 8 channels (the short axis is taken as channels); arrays need
    ``source_sample_rate``. Integer PCM is scaled to [-1, 1], channels are averaged, and the result is
    resampled with soxr. Audio longer than ``max_seconds`` (None: no cap) is refused, from the header when
    the format has one, before decoding it. Every decoding failure raises :class:`AudioError`.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds!r}")
    desc = _describe(source)

    if isinstance(source, np.ndarray | torch.Tensor):
        if source_sample_rate is None:
            raise AudioError(desc, "source_sample_rate is required for array input (the rate of its samples)")
        if (isinstance(source_sample_rate, bool) or not isinstance(source_sample_rate, numbers.Real)
                or not math.isfinite(source_sample_rate) or source_sample_rate <= 0):
            raise AudioError(
                desc, f"source_sample_rate must be a positive number, got {source_sample_rate!r}")
        audio, rate = _array_to_mono(source, desc), float(source_sample_rate)
        _check_duration(desc, len(audio), rate, max_seconds)
    elif isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
        if source_sample_rate is not None:
            raise AudioError(desc, "source_sample_rate applies only to array input; "
                                   "files carry their own rate")
        audio, rate = _decode(source, desc, max_seconds)
    else:
        raise AudioError(desc, f"unsupported source type {type(source).__name__}")

    if audio.size == 0:
        raise AudioError(desc, "decoded zero samples")
    if not np.isfinite(audio).all():
        raise AudioError(desc, "audio contains NaN or infinite samples")
    try:
        audio = resample(audio, rate, int(sample_rate))
    except Exception as e:  # soxr refusing an absurd rate from a damaged header
        reason = f"cannot resample from {rate:g} Hz to {sample_rate} Hz ({_clean(e)})"
        raise AudioError(desc, reason) from None
    if audio.size == 0:
        raise AudioError(desc, f"too short to resample to {sample_rate} Hz (zero samples left)")
    return audio


def resample(audio: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """Resample a mono float32 waveform (n,) with soxr's anti-aliasing resampler; no-op when rates match."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if source_rate == target_rate:
        return audio
    return np.ascontiguousarray(soxr.resample(audio, source_rate, target_rate, quality=RESAMPLE_QUALITY),
                                dtype=np.float32)


def _describe(source: object) -> str:
    """Short human-readable name of a source for error messages."""
    if isinstance(source, str | os.PathLike):
        return os.fsdecode(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<bytes: {memoryview(source).nbytes}>"
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, torch.Tensor):
        return "<tensor>"
    return f"<{type(source).__name__}>"


def _too_long(desc: str, seconds: float, max_seconds: float, at_least: bool = False) -> AudioError:
    """The error for audio over the duration cap, saying how to raise it."""
    length = f"longer than {seconds:.1f} s" if at_least else f"{seconds:.1f} s long"
    return AudioError(desc, f"audio is {length}, over the max_seconds={max_seconds:g} cap; "
                            "pass a larger max_seconds (or max_seconds=None) to load_audio to accept it")


def _check_duration(desc: str, n_samples: int, rate: float, max_seconds: float | None) -> None:
    """Raise if ``n_samples`` at ``rate`` is over the cap."""
    if max_seconds is not None and n_samples > _cap_frames(rate, max_seconds):
        raise _too_long(desc, n_samples / rate, max_seconds)


def _cap_frames(rate: float, max_seconds: float) -> int:
    """Largest sample count allowed at ``rate`` (a hair of slack for rounding in headers)."""
    return math.floor(max_seconds * rate + 1e-6)


def _array_to_mono(source: np.ndarray | torch.Tensor, desc: str) -> np.ndarray:
    """Array of samples (n,), (n, ch) or (ch, n) -> mono float32 (n,) in [-1, 1] for integer PCM."""
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu()
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()  # bfloat16 / float16 have no (or a lossy) numpy twin
        try:
            x = t.numpy()
        except (TypeError, RuntimeError) as e:
            raise AudioError(desc, f"unsupported tensor dtype {t.dtype}") from e
    else:
        x = np.asarray(source)

    kind, bits = x.dtype.kind, x.dtype.itemsize * 8
    if kind == "f":
        x = x.astype(np.float32, copy=False)
    elif kind == "i":
        x = x.astype(np.float32) * np.float32(2.0 ** -(bits - 1))
    elif kind == "u":
        x = (x.astype(np.float32) - np.float32(2.0 ** (bits - 1))) * np.float32(2.0 ** -(bits - 1))
    else:
        raise AudioError(desc, f"unsupported sample dtype {x.dtype} (expected float or integer PCM)")

    if x.ndim in (1, 2) and x.size == 0:
        raise AudioError(desc, f"zero samples (array of shape {tuple(x.shape)})")
    if x.ndim == 1:
        return x
    if x.ndim == 2 and min(x.shape) <= MAX_ARRAY_CHANNELS:
        channel_axis = 1 if x.shape[1] <= x.shape[0] else 0
        return x.mean(axis=channel_axis, dtype=np.float32)
    raise AudioError(desc, f"expected shape (n,), (n, channels) or (channels, n) with at most "
                           f"{MAX_ARRAY_CHANNELS} channels, got {tuple(x.shape)}")


@contextmanager
def _open_source(source: str | os.PathLike | bytes | bytearray | memoryview, desc: str
                 ) -> Iterator[tuple[IO[bytes], int]]:
    """Yield a seekable binary stream over the source and its size in bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        yield io.BytesIO(data), len(data)
        return
    path = os.fspath(source)
    try:
        fh = open(path, "rb")  # closed by the with-block below
    except FileNotFoundError:
        raise AudioError(desc, "file not found") from None
    except IsADirectoryError:
        raise AudioError(desc, "is a directory, not an audio file") from None
    except OSError as e:
        raise AudioError(desc, f"cannot open file ({e.strerror or e})") from None
    with fh:
        try:
            size = os.fstat(fh.fileno()).st_size
        except OSError as e:
            raise AudioError(desc, f"cannot stat file ({e.strerror or e})") from None
        yield fh, size


def _sniff(head: bytes) -> str | None:
    """Container/codec from the first bytes of a file: wav, flac, ogg, mp3, aiff, aac, mp4, webm or None."""
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG frame sync; layer bits 00 mean an ADTS (AAC) header instead of an MP3 frame
        return "aac" if head[1] & 0x06 == 0 else "mp3"
    return None


def _decode(source: str | os.PathLike | bytes | bytearray | memoryview, desc: str,
            max_seconds: float | None) -> tuple[np.ndarray, float]:
    """Decode an encoded source into (mono float32 (n,), its sample rate)."""
    with _open_source(source, desc) as (fh, size):
        if size == 0:
            raise AudioError(desc, "file is empty (0 bytes)" if isinstance(source, str | os.PathLike)
                             else "no data (0 bytes)")
        try:
            head = fh.read(_SNIFF_BYTES)
            fh.seek(0)
        except OSError as e:
            raise AudioError(desc, f"cannot read file ({e.strerror or e})") from None
        kind = _sniff(head)
        if kind is None:
            raise AudioError(desc, f"unknown audio format (first bytes {head[:8].hex(' ')}); "
                                   "expected wav, flac, ogg, mp3 or m4a")
        if kind == "wav":
            _check_wav_complete(fh, size, desc)
        try:
            if kind not in _SOUNDFILE_KINDS:
                return _decode_pyav(fh, desc, kind, max_seconds)
            try:
                return _decode_soundfile(fh, desc, kind, max_seconds)
            except _DecodeFailed as e:
                sf_reason = str(e)
            # libsndfile could not open it (e.g. an unusual codec inside Ogg/WAV, an odd MP3): let ffmpeg try
            try:
                return _decode_pyav(fh, desc, kind, max_seconds)
            except _DecodeFailed as e:
                raise _DecodeFailed(f"libsndfile: {sf_reason}; ffmpeg: {e}") from None
        except _DecodeFailed as e:
            reason = f"file is truncated or corrupt ({kind} data that cannot be decoded: {e})"
            raise AudioError(desc, reason) from None


class _DecodeFailed(Exception):
    """A decoder rejected the data; the message is the decoder's reason (another decoder may still try)."""


def _check_wav_complete(fh: IO[bytes], size: int, desc: str) -> None:
    """Raise if a RIFF/WAVE file's data chunk promises more bytes than the file holds.

    libsndfile silently shortens such files; a cut-off upload should be reported instead. Streaming
    placeholder sizes (0, 0x7FFFFFFF, 0xFFFFFFFF) and RF64 files are accepted as they are.
    """
    try:
        fh.seek(0)
        riff = fh.read(12)
        if riff[:4] != b"RIFF":
            return
        pos = 12
        for _ in range(4096):  # bounded: a corrupt file cannot loop us forever
            fh.seek(pos)
            header = fh.read(8)
            if len(header) < 8:
                raise AudioError(desc, "file is truncated (WAV header ends before the data chunk)")
            chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                available = size - (pos + 8)
                if chunk_size not in _WAV_PLACEHOLDER_SIZES and chunk_size > available:
                    raise AudioError(desc, f"file is truncated (header promises {chunk_size} bytes of audio, "
                                           f"only {max(available, 0)} present)")
                return
            pos += 8 + chunk_size + (chunk_size & 1)
    except OSError as e:
        raise AudioError(desc, f"cannot read file ({e.strerror or e})") from None
    finally:
        fh.seek(0)


def _decode_soundfile(fh: IO[bytes], desc: str, kind: str, max_seconds: float | None
                      ) -> tuple[np.ndarray, float]:
    """Decode with libsndfile (wav/flac/ogg/mp3/aiff); the cap is checked from the header before reading."""
    fh.seek(0)
    try:
        f = sf.SoundFile(fh)
    except Exception as e:  # LibsndfileError, RuntimeError, TypeError from odd headers, ...
        raise _DecodeFailed(_clean(e)) from None
    with f:
        rate, declared = f.samplerate, f.frames
        if rate <= 0 or f.channels <= 0:
            raise AudioError(desc, f"corrupt {kind} header (rate {rate}, {f.channels} channels)")
        limit = -1
        if max_seconds is not None:
            cap = _cap_frames(rate, max_seconds)
            if cap < declared < _UNKNOWN_FRAMES:
                raise _too_long(desc, declared / rate, max_seconds)
            limit = cap + 1  # read one past the cap to notice an understated header
        try:
            data = f.read(frames=limit, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioError(desc, f"file is truncated or corrupt ({_clean(e)})") from None
    if max_seconds is not None and len(data) > _cap_frames(rate, max_seconds):
        raise _too_long(desc, max_seconds, max_seconds, at_least=True)
    if kind == "flac" and 0 < declared < _UNKNOWN_FRAMES and len(data) < declared:
        raise AudioError(desc, f"file is truncated (header promises {declared} samples, decoded {len(data)})")
    return data.mean(axis=1, dtype=np.float32), float(rate)


def _decode_pyav(fh: IO[bytes], desc: str, kind: str, max_seconds: float | None) -> tuple[np.ndarray, float]:
    """Decode the first audio stream with ffmpeg (PyAV): m4a/aac/webm, and libsndfile's fallback."""
    fh.seek(0)
    try:
        container = av.open(fh, mode="r", metadata_errors="ignore")
    except Exception as e:
        raise _DecodeFailed(_clean(e)) from None
    try:
        with container:
            streams = container.streams.audio
            if not streams:
                raise AudioError(desc, "no audio stream found")
            stream = streams[0]
            if max_seconds is not None:
                seconds = _pyav_duration(container, stream)
                if seconds is not None and seconds > max_seconds + 1e-3:
                    raise _too_long(desc, seconds, max_seconds)
            planes, n, rate = _pyav_read(container, stream, desc, max_seconds)
    except AudioError:
        raise
    except Exception as e:  # av.FFmpegError and anything odd from a damaged stream
        raise _DecodeFailed(_clean(e)) from None
    if n == 0:
        raise AudioError(desc, "decoded zero samples")
    data = np.concatenate(planes, axis=1)  # (channels, n)
    return data.mean(axis=0, dtype=np.float32), float(rate)


def _pyav_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream
                   ) -> float | None:
    """Duration in seconds from the container/stream header, or None when it does not say."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _pyav_read(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, desc: str,
               max_seconds: float | None) -> tuple[list[np.ndarray], int, int]:
    """Decode all frames as planar float32; returns ([(channels, k)], total samples, sample rate)."""
    resampler = av.AudioResampler(format="fltp")  # sample format only: keeps layout and rate, scales ints
    planes: list[np.ndarray] = []
    n, rate, cap = 0, 0, None

    def take(frames: list[av.AudioFrame]) -> None:
        nonlocal n
        for frame in frames:
            arr = frame.to_ndarray()
            planes.append(arr)
            n += arr.shape[1]

    for frame in container.decode(stream):
        if rate == 0:
            rate = frame.sample_rate
            if max_seconds is not None:
                cap = _cap_frames(rate, max_seconds)
        take(resampler.resample(frame))
        if cap is not None and n > cap:
            raise _too_long(desc, max_seconds, max_seconds, at_least=True)
    if rate:
        take(resampler.resample(None))
    if cap is not None and n > cap:
        raise _too_long(desc, max_seconds, max_seconds, at_least=True)
    if n and len({p.shape[0] for p in planes}) != 1:
        raise AudioError(desc, "channel count changes inside the stream")
    return planes, n, rate


def _clean(e: BaseException) -> str:
    """One-line description of a decoder exception, without stream reprs and errno noise."""
    if isinstance(e, av.FFmpegError) and e.strerror:
        text = str(e.strerror)
    else:
        text = str(e)
        text = re.sub(r"^Error opening <[^>]*>: ", "", text)
        text = re.sub(r"^Error : ", "", text)
    text = " ".join(text.split()).rstrip(".") or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ------------------------------------------------------------------------------------------------------------
# log-mel
# ------------------------------------------------------------------------------------------------------------


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mel = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mel[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    freq = 200.0 * mel / 3.0
    log_region = mel >= 15.0
    freq[log_region] = 1000.0 * np.exp((mel[log_region] - 15.0) * (np.log(6.4) / 27.0))
    return freq


@cache
def mel_filters(n_mels: int) -> torch.Tensor:
    """Slaney-scale, slaney-normalised mel filter bank of shape (n_mels, 201), float32 on CPU.

    Same as librosa's ``filters.mel(sr=16000, n_fft=400, n_mels=n_mels)`` and ``transformers``'
    ``mel_filter_bank(..., norm="slaney", mel_scale="slaney")`` that Whisper uses. Cached: do not modify.
    """
    if isinstance(n_mels, bool) or not isinstance(n_mels, int) or n_mels <= 0:
        raise ValueError(f"n_mels must be a positive int, got {n_mels!r}")
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, N_FREQS)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([MEL_FMAX]))[0],
                                   n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # slaney: constant energy per band
    return torch.from_numpy(weights.astype(np.float32))


@lru_cache(maxsize=8)
def _hann_window(device: torch.device) -> torch.Tensor:
    """Periodic Hann window of N_FFT samples on ``device`` (cached)."""
    return torch.hann_window(N_FFT, device=device)


@lru_cache(maxsize=32)
def _mel_filters_on(n_mels: int, device: torch.device) -> torch.Tensor:
    """:func:`mel_filters` moved to ``device`` (cached)."""
    return mel_filters(n_mels).to(device)


def log_mel_spectrogram(audio: np.ndarray | torch.Tensor, n_mels: int = 128, *, padding: int = 0
                        ) -> torch.Tensor:
    """Whisper log-mel of 16 kHz float audio: (n,) -> (n_mels, n_frames); (B, n) -> (B, n_mels, n_frames).

    Hann-400 / hop-160 ``torch.stft`` with centred reflect padding, last frame dropped
    (n_frames = (n + padding) // 160), power spectrum, mel, log10 floored at 1e-10, dynamic range limited to
    8 (per item) below the maximum, scaled by (x + 4) / 4. ``padding`` zeros are appended first (Step-Audio
    uses 479). Runs on the input tensor's device; numpy input runs on CPU.
    """
    if isinstance(audio, np.ndarray):
        if audio.dtype.kind != "f":
            raise ValueError(f"audio must be a float waveform in [-1, 1], got dtype {audio.dtype}")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
    x = torch.as_tensor(audio)
    if not x.is_floating_point():
        raise ValueError(f"audio must be a float waveform in [-1, 1], got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must be (n_samples,) or (batch, n_samples), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    x = x.to(torch.float32)
    if padding:
        x = F.pad(x, (0, padding))
    if x.shape[-1] == 0:
        raise ValueError("audio has no samples")
    filters = _mel_filters_on(n_mels, x.device)
    if x.ndim == 2 and x.device.type == "cpu":
        # a few items at a time keep the STFT buffers in cache: 2-3x faster on CPU than one big batched STFT,
        # with few enough parallel regions that oversubscribed CPUs do not suffer much more than the batch
        group = max(1, _CPU_GROUP_SAMPLES // x.shape[1])
        mel = torch.empty(x.shape[0], n_mels, x.shape[1] // HOP_LENGTH, dtype=torch.float32)
        for start in range(0, x.shape[0], group):
            _mel_power(x[start:start + group], filters, out=mel[start:start + group])
    else:
        mel = _mel_power(x, filters)
    log_spec = mel.clamp_(min=1e-10).log10_()
    if log_spec.shape[-1] == 0:  # fewer than HOP_LENGTH samples: no frames survive dropping the last one
        return log_spec
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return log_spec.add_(4.0).div_(4.0)


def _mel_power(x: torch.Tensor, filters: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Mel power spectrogram (..., n) -> (..., n_mels, n // 160); last STFT frame dropped (Whisper)."""
    window = _hann_window(x.device)
    if x.shape[-1] > N_FFT // 2:
        stft = torch.stft(x, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect",
                          return_complex=True)
    else:  # too short for torch's reflect pad: numpy's reflect repeats the mirror as needed
        pad = [(0, 0)] * (x.ndim - 1) + [(N_FFT // 2, N_FFT // 2)]
        padded = torch.from_numpy(np.pad(x.cpu().numpy(), pad, mode="reflect")).to(x.device)
        stft = torch.stft(padded, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    stft = stft[..., :-1]
    power = stft.real.square() + stft.imag.square()  # |X|^2; cheaper than abs() ** 2
    return torch.matmul(filters, power, out=out)


# ------------------------------------------------------------------------------------------------------------
# Step-Audio encoder input
# ------------------------------------------------------------------------------------------------------------


@dataclass
class AudioChunkFeatures:
    """Encoder input of one chunk: mel (n_mels, T), T = (L + 479) // 160, of which ``valid_frames`` count."""

    mel: torch.Tensor
    valid_frames: int
    num_samples: int


def valid_frames(num_samples: int) -> int:
    """Valid mel frames of a chunk of ``num_samples`` at 16 kHz: ceil(L / 160) (= T - 2 with the 479 tail)."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return -(-num_samples // HOP_LENGTH)


def encoder_input(audio_chunk: np.ndarray | torch.Tensor, n_mels: int) -> tuple[torch.Tensor, int]:
    """Step-Audio encoder input of a 16 kHz chunk of L samples: (mel (n_mels, (L+479) // 160), ceil(L/160)).

    Appends the 479 zero samples of the released model code before the log-mel; at most 29.98 s
    (479680 samples, 3000 frames) fits the encoder.
    """
    length = int(audio_chunk.shape[0]) if audio_chunk.ndim == 1 else -1
    if length < 0:
        raise ValueError(f"audio_chunk must be 1-D, got shape {tuple(audio_chunk.shape)}")
    if length == 0:
        raise ValueError("audio_chunk has no samples")
    if length > MAX_CHUNK_SAMPLES:
        raise ValueError(f"audio_chunk has {length} samples ({length / SAMPLE_RATE:.2f} s); the encoder "
                         f"takes at most {MAX_CHUNK_SAMPLES} ({MAX_CHUNK_SECONDS:.2f} s): "
                         "split it with split_audio")
    mel = log_mel_spectrogram(audio_chunk, n_mels, padding=TAIL_SAMPLES)
    return mel, valid_frames(length)


def split_audio(audio: np.ndarray, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Cut a waveform (n,) into consecutive chunks (views) of at most ``chunk_seconds``; they concatenate back
    to ``audio`` exactly. The last chunk holds the remainder; empty input gives []."""
    if not 0 < chunk_seconds <= MAX_CHUNK_SECONDS + 1e-9:
        raise ValueError(f"chunk_seconds must be in (0, {MAX_CHUNK_SECONDS:.2f}] (the encoder holds at most "
                         f"{MAX_ENCODER_FRAMES} frames), got {chunk_seconds!r}")
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D, got shape {tuple(audio.shape)}")
    step = min(round(chunk_seconds * sample_rate), math.floor(MAX_CHUNK_SECONDS * sample_rate + 1e-6))
    if step < 1:
        raise ValueError(f"chunk_seconds={chunk_seconds!r} is less than one sample at {sample_rate} Hz")
    return [audio[i:i + step] for i in range(0, audio.shape[0], step)]


def prepare_audio(audio: np.ndarray | torch.Tensor, n_mels: int,
                  chunk_seconds: float = DEFAULT_CHUNK_SECONDS) -> list[AudioChunkFeatures]:
    """Split a 16 kHz mono waveform (n,) into chunks and compute each chunk's encoder input."""
    if audio.ndim != 1 or audio.shape[0] == 0:
        raise AudioError("<array>", f"expected a non-empty 1-D waveform, got shape {tuple(audio.shape)}")
    features = []
    for chunk in split_audio(audio, chunk_seconds):
        mel, valid = encoder_input(chunk, n_mels)
        features.append(AudioChunkFeatures(mel=mel, valid_frames=valid, num_samples=int(chunk.shape[0])))
    return features


def pad_mels(features: list[AudioChunkFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch chunk features: (mel (B, n_mels, T_max), valid frame counts (B,) int64).

    Shorter items are right-padded with 0.0, as the released Step-Audio ``padding_mels`` does; the encoder
    masks frames past each item's valid count, so the pad value never reaches the model.
    """
    if not features:
        raise ValueError("pad_mels needs at least one chunk")
    n_mels = features[0].mel.shape[0]
    if any(f.mel.ndim != 2 or f.mel.shape[0] != n_mels for f in features):
        raise ValueError("all mels must be 2-D (n_mels, T) with the same n_mels")
    t_max = max(f.mel.shape[1] for f in features)
    first = features[0].mel
    batch = torch.zeros(len(features), n_mels, t_max, dtype=first.dtype, device=first.device)
    for i, f in enumerate(features):
        batch[i, :, : f.mel.shape[1]] = f.mel
    lengths = torch.tensor([f.valid_frames for f in features], dtype=torch.long)
    return batch, lengths

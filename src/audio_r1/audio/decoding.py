"""Audio decoding: files, bytes and arrays to a mono float32 waveform at 16 kHz.

``load_audio`` is the one entry point: the format is detected from the content, not the file name;
libsndfile decodes wav/flac/ogg/mp3/aiff and ffmpeg (PyAV) m4a/aac/webm and whatever libsndfile refuses;
channels are averaged and soxr resamples. Every failure is an :class:`AudioError`. Decoding is bounded
before and while it runs: by duration (``max_seconds``), by the number of decoded samples over all
channels at the source rate (``max_samples``), and by the source rate (``MAX_SOURCE_RATE``), so a small
file cannot expand into gigabytes.
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
from typing import IO

import av
import numpy as np
import soundfile as sf
import soxr
import torch

from ..errors import AudioError, AudioTooLargeError, AudioTooLongError
from .features import SAMPLE_RATE

DEFAULT_MAX_SECONDS = 600.0
# Decoded samples (all channels, at the source rate) one file may expand to: the duration cap at 48 kHz
# stereo, 57.6 M samples (230 MB as float32). Ordinary audio under the duration cap fits; a small file
# of long, many-channel, high-rate silence does not.
MAX_DECODED_SAMPLES = int(DEFAULT_MAX_SECONDS) * 48_000 * 2
MAX_SOURCE_RATE = 384_000  # highest rate a file may declare (the top studio rate); more is refused
MAX_ARRAY_CHANNELS = 8
RESAMPLE_QUALITY = "HQ"  # soxr: 20-bit, steep anti-aliasing low-pass; plenty for float32 features
_SNIFF_BYTES = 64
_BLOCK_FRAMES = 1 << 16  # libsndfile reads this many frames at a time, each downmixed before the next
_UNKNOWN_FRAMES = 2**62  # libsndfile reports absurd counts when the length is unknown
_WAV_PLACEHOLDER_SIZES = (0, 0x7FFFFFFF, 0xFFFFFFFF)  # written by streaming encoders
_SOUNDFILE_KINDS = ("wav", "flac", "ogg", "mp3", "aiff")


# ------------------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------------------


def load_clip(source: str | os.PathLike | bytes | np.ndarray | torch.Tensor | tuple) -> np.ndarray:
    """`load_audio` for the sources users pass: a path or encoded bytes, a 16 kHz array or tensor, or an
    (array, sample_rate) pair."""
    if isinstance(source, tuple):
        samples, rate = source
        return load_audio(samples, source_sample_rate=rate)
    if isinstance(source, np.ndarray | torch.Tensor):
        return load_audio(source, source_sample_rate=SAMPLE_RATE)
    return load_audio(source)


def load_audio(
    source: str | os.PathLike | bytes | bytearray | np.ndarray | torch.Tensor,
    *,
    sample_rate: int = SAMPLE_RATE,
    source_sample_rate: float | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    max_samples: int | None = MAX_DECODED_SAMPLES,
) -> np.ndarray:
    """Decode ``source`` into a mono float32 waveform of shape (n_samples,) at ``sample_rate``.

    ``source`` is a path, the bytes of an encoded file (wav, flac, ogg, mp3, m4a/aac; the format is detected
    from the content, so an MP3 named ``.wav`` still decodes), or an array / tensor of samples shaped (n,),
    (n, channels) or (channels, n) with at most 8 channels (the short axis is taken as channels); arrays need
    ``source_sample_rate``. Integer PCM is scaled to [-1, 1], channels are averaged, and the result is
    resampled with soxr. Every decoding failure raises :class:`AudioError`.

    Caps (each from the header before decoding when the format declares a length, else as soon as the
    decoded count passes it): audio longer than ``max_seconds`` raises :class:`AudioTooLongError`; an
    encoded source that would decode to more than ``max_samples`` samples, counted over all channels at
    its own rate, raises :class:`AudioTooLargeError` (default ``MAX_DECODED_SAMPLES``, 10 minutes of
    48 kHz stereo; it bounds memory and CPU, and does not apply to arrays, which are decoded already).
    None lifts either cap. Files declaring a rate above ``MAX_SOURCE_RATE`` (384 kHz) are refused.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds!r}")
    if max_samples is not None and (isinstance(max_samples, bool)
                                    or not isinstance(max_samples, numbers.Integral) or max_samples <= 0):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
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
        audio, rate = _decode(source, _Caps(desc, max_seconds, max_samples))
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


def _too_long(desc: str, seconds: float, max_seconds: float, at_least: bool = False) -> AudioTooLongError:
    """The error for audio over the duration cap, saying how to raise it."""
    return AudioTooLongError(desc, seconds, max_seconds, at_least)


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


@dataclass(frozen=True)
class _Caps:
    """The limits one ``load_audio`` call decodes under, and the source they are reported against."""

    desc: str
    max_seconds: float | None
    max_samples: int | None

    def check_rate(self, rate: float, kind: str) -> None:
        """Refuse a rate above MAX_SOURCE_RATE: no real recording needs it, and it multiplies memory."""
        if rate > MAX_SOURCE_RATE:
            raise AudioError(self.desc, f"sample rate {rate:g} Hz in the {kind} data is above the "
                                        f"{MAX_SOURCE_RATE:,} Hz this loader accepts")

    def check_declared_samples(self, frames: float, channels: int) -> None:
        """Refuse, before decoding, a header whose length times channels is over ``max_samples``."""
        if self.max_samples is not None and frames * channels > self.max_samples:
            raise AudioTooLargeError(self.desc, math.ceil(frames * channels), self.max_samples)

    def frame_limit(self, rate: float, channels: int) -> int | None:
        """Most frames (samples per channel) both caps allow at ``rate``; None when neither caps."""
        limits = []
        if self.max_seconds is not None:
            limits.append(_cap_frames(rate, self.max_seconds))
        if self.max_samples is not None:
            limits.append(self.max_samples // channels)
        return min(limits) if limits else None

    def check_decoded(self, frames: int, rate: float, channels: int) -> None:
        """Stop decoding as soon as the frames decoded so far pass a cap (the rest is never decoded)."""
        if self.max_seconds is not None and frames > _cap_frames(rate, self.max_seconds):
            raise _too_long(self.desc, self.max_seconds, self.max_seconds, at_least=True)
        if self.max_samples is not None and frames * channels > self.max_samples:
            raise AudioTooLargeError(self.desc, frames * channels, self.max_samples, at_least=True)


def _decode(source: str | os.PathLike | bytes | bytearray | memoryview, caps: _Caps
            ) -> tuple[np.ndarray, float]:
    """Decode an encoded source into (mono float32 (n,), its sample rate)."""
    desc = caps.desc
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
                return _decode_pyav(fh, caps, kind)
            try:
                return _decode_soundfile(fh, caps, kind)
            except _DecodeFailed as e:
                sf_reason = str(e)
            # libsndfile could not open it (e.g. an unusual codec inside Ogg/WAV, an odd MP3): let ffmpeg try
            try:
                return _decode_pyav(fh, caps, kind)
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


def _decode_soundfile(fh: IO[bytes], caps: _Caps, kind: str) -> tuple[np.ndarray, float]:
    """Decode with libsndfile (wav/flac/ogg/mp3/aiff); the caps are checked from the header before reading."""
    desc = caps.desc
    fh.seek(0)
    try:
        f = sf.SoundFile(fh)
    except Exception as e:  # LibsndfileError, RuntimeError, TypeError from odd headers, ...
        raise _DecodeFailed(_clean(e)) from None
    with f:
        rate, channels, declared = f.samplerate, f.channels, f.frames
        if rate <= 0 or channels <= 0:
            raise AudioError(desc, f"corrupt {kind} header (rate {rate}, {channels} channels)")
        caps.check_rate(rate, kind)
        if declared < _UNKNOWN_FRAMES:
            if caps.max_seconds is not None and declared > _cap_frames(rate, caps.max_seconds):
                raise _too_long(desc, declared / rate, caps.max_seconds)
            caps.check_declared_samples(declared, channels)
        mono = _read_soundfile(f, caps, rate, channels)
    if kind == "flac" and 0 < declared < _UNKNOWN_FRAMES and len(mono) < declared:
        raise AudioError(desc, f"file is truncated (header promises {declared} samples, decoded {len(mono)})")
    return mono, float(rate)


def _read_soundfile(f: sf.SoundFile, caps: _Caps, rate: int, channels: int) -> np.ndarray:
    """Read in blocks, each averaged to mono at once: memory is one block plus the mono result, and
    reading stops one frame past a cap (headers may understate, or not state, the length)."""
    limit = caps.frame_limit(rate, channels)
    step = None if _is_mpeg(f) else _BLOCK_FRAMES
    blocks: list[np.ndarray] = []
    n = 0
    while True:
        bounds = [b for b in (step, None if limit is None else limit + 1 - n) if b is not None]
        want = min(bounds) if bounds else -1  # -1: everything that is left
        try:
            data = f.read(frames=want, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioError(caps.desc, f"file is truncated or corrupt ({_clean(e)})") from None
        if len(data) == 0:
            break
        n += len(data)
        caps.check_decoded(n, rate, channels)
        blocks.append(data.mean(axis=1, dtype=np.float32))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _is_mpeg(f: sf.SoundFile) -> bool:
    """Whether libsndfile decodes MPEG audio here, which it must read in one call, up to the cap.

    libsndfile 1.2's MPEG decoder returns wrong samples for about a frame after every read that ends
    inside the stream, so MP3 cannot be read in blocks. The header length is checked first and MPEG
    audio has at most 2 channels at 48 kHz, so one read stays within the caps.
    """
    return f.subtype.startswith("MPEG_LAYER")


def _decode_pyav(fh: IO[bytes], caps: _Caps, kind: str) -> tuple[np.ndarray, float]:
    """Decode the first audio stream with ffmpeg (PyAV): m4a/aac/webm, and libsndfile's fallback."""
    desc = caps.desc
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
            _check_pyav_header(container, stream, caps, kind)
            mono, rate = _pyav_read(container, stream, caps, kind)
    except AudioError:
        raise
    except Exception as e:  # av.FFmpegError and anything odd from a damaged stream
        raise _DecodeFailed(_clean(e)) from None
    if mono.size == 0:
        raise AudioError(desc, "decoded zero samples")
    return mono, float(rate)


def _check_pyav_header(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
                       caps: _Caps, kind: str) -> None:
    """Refuse from the stream header, before decoding: a rate over the limit, or a length over a cap."""
    rate, channels = stream.rate or 0, stream.channels or 0
    caps.check_rate(rate, kind)
    seconds = _pyav_duration(container, stream)
    if seconds is None:
        return
    if caps.max_seconds is not None and seconds > caps.max_seconds + 1e-3:
        raise _too_long(caps.desc, seconds, caps.max_seconds)
    if rate > 0 and channels > 0:  # the same 1 ms of slack: container durations are rounded
        caps.check_declared_samples(max(seconds - 1e-3, 0.0) * rate, channels)


def _pyav_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream
                   ) -> float | None:
    """Duration in seconds from the container/stream header, or None when it does not say."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _pyav_read(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, caps: _Caps,
               kind: str) -> tuple[np.ndarray, int]:
    """Decode all frames to mono float32, frame by frame; returns (mono (n,), sample rate).

    Frames are converted to packed ``flt`` (one interleaved plane) before numpy sees them: PyAV's
    ``AudioFrame.planes`` walks the plane pointers until a NULL and runs off the end for planar frames of
    8 or more channels (a segfault in ``to_ndarray``); a packed frame always has exactly one plane.
    """
    resampler = av.AudioResampler(format="flt")  # sample format only: keeps layout and rate, scales ints
    blocks: list[np.ndarray] = []
    n, rate, channels = 0, 0, 0

    def take(frames: list[av.AudioFrame]) -> None:
        nonlocal n
        for frame in frames:
            if frame.layout.nb_channels != channels:
                raise AudioError(caps.desc, "channel count changes inside the stream")
            pcm = frame.to_ndarray().reshape(-1, channels)  # (1, k * channels) interleaved -> (k, channels)
            n += len(pcm)
            caps.check_decoded(n, rate, channels)
            blocks.append(pcm.mean(axis=1, dtype=np.float32))

    for frame in container.decode(stream):
        if rate == 0:
            rate, channels = frame.sample_rate, frame.layout.nb_channels
            if rate <= 0 or channels <= 0:
                raise AudioError(caps.desc, f"corrupt {kind} stream (rate {rate}, {channels} channels)")
            caps.check_rate(rate, kind)
        take(resampler.resample(frame))
    if rate:
        take(resampler.resample(None))
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), rate


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

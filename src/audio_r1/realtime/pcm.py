"""PCM16 on the wire: base64 decoding, streaming resampling, and the input buffer of a session.

The wire carries mono 16-bit little-endian PCM at 24 kHz both ways; the model listens at 16 kHz.
Resampling is streamed (soxr keeps its filter state between chunks), so audio is converted as it
arrives and a turn never has to be resampled again at the end.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import soxr

from ..audio import SAMPLE_RATE
from .config import WIRE_RATE
from .protocol import ProtocolError


def decode_audio(data: str, param: str = "audio", event_id: str | None = None) -> bytes:
    """The bytes of a base64 audio field (`ProtocolError` for bad base64)."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{param} is not valid base64", code="invalid_base64", param=param,
                            event_id=event_id) from None


def encode_audio(samples: np.ndarray) -> str:
    """Base64 PCM16 of float samples in [-1, 1]."""
    return base64.b64encode(to_pcm16(samples)).decode()


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class StreamResampler:
    """Feed chunks at `source` Hz, get float32 chunks at `target` Hz; `flush` releases the filter's tail."""

    def __init__(self, source: int, target: int):
        self.source = source
        self.target = target
        self._stream = soxr.ResampleStream(source, target, 1, dtype="float32", quality="HQ") if source != target else None

    def feed(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=False)

    def flush(self) -> np.ndarray:
        if self._stream is None:
            return np.zeros(0, np.float32)
        return self._stream.resample_chunk(np.zeros(0, np.float32), last=True)


class InputBuffer:
    """A session's uncommitted audio: PCM16 at 24 kHz in, float32 at 16 kHz kept.

    An odd trailing byte is held until the next append (a client may split frames anywhere).
    `received_ms` counts all audio ever appended in the session (the clock of VAD events).
    """

    def __init__(self) -> None:
        self._resampler = StreamResampler(WIRE_RATE, SAMPLE_RATE)
        self._chunks: list[np.ndarray] = []
        self._odd = b""
        self.samples = 0  # 16 kHz samples held
        self.received_samples = 0  # 24 kHz samples appended since the session began

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def received_ms(self) -> int:
        return int(self.received_samples * 1000 / WIRE_RATE)

    def append(self, data: bytes) -> np.ndarray:
        """Add PCM16 bytes; returns the new 16 kHz samples (for voice-activity detection)."""
        data = self._odd + data
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        pcm = from_pcm16(data[:cut])
        self.received_samples += len(pcm)
        out = self._resampler.feed(pcm)
        if len(out):
            self._chunks.append(out)
            self.samples += len(out)
        return out

    def drop_before(self, keep_last: int) -> None:
        """Forget all but the last `keep_last` samples (silence before speech, past the prefix padding)."""
        if self.samples <= keep_last:
            return
        whole = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        kept = whole[len(whole) - keep_last:] if keep_last else whole[:0]
        self._chunks = [kept] if len(kept) else []
        self.samples = len(kept)

    def samples_between(self, start: int, stop: int) -> np.ndarray:
        """A copy of the 16 kHz samples [start, stop) held so far (the resampler's tail not included)."""
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        held = self._chunks[0] if self._chunks else np.zeros(0, np.float32)
        return held[start:stop].astype(np.float32)

    def take(self) -> np.ndarray:
        """The whole buffer at 16 kHz (the resampler's tail included); the buffer is empty afterwards."""
        tail = self._resampler.flush()
        whole = np.concatenate([*self._chunks, tail]) if self._chunks or len(tail) else np.zeros(0, np.float32)
        self.clear()
        return whole.astype(np.float32)

    def clear(self) -> None:
        self._resampler = StreamResampler(WIRE_RATE, SAMPLE_RATE)
        self._chunks = []
        self._odd = b""
        self.samples = 0

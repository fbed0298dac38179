"""Model input features: the Whisper log-mel and the Step-Audio chunk rule.

* ``log_mel_spectrogram`` is the Whisper log-mel (matches ``transformers``' ``WhisperFeatureExtractor``).
* ``prepare_audio`` / ``encoder_input`` / ``pad_mels`` apply the released Step-Audio length rule: each
  chunk of L samples gets 479 zero samples appended, giving T = (L + 479) // 160 mel frames of which
  V = T - 2 = ceil(L / 160) are valid. Clips are never padded to 30 s.

Everything here takes a mono float waveform at ``SAMPLE_RATE`` (what ``decoding.load_audio`` returns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AudioError

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

# log-mel on CPU: batches are processed in groups of about this many samples (two 30 s clips)
_CPU_GROUP_SAMPLES = 1_000_000


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

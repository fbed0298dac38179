"""Audio front end: decoding (``decoding``) and model input features (``features``).

Everything the audio encoder sees goes through here: ``load_audio`` turns a file, raw bytes or an
array into mono float32 at 16 kHz, and ``prepare_audio`` / ``pad_mels`` turn that into the Step-Audio
encoder's log-mel chunks. The names below are the package's public surface; import them from here.
"""

from ..errors import AudioError, AudioTooLargeError, AudioTooLongError
from .decoding import (
    DEFAULT_MAX_SECONDS,
    MAX_ARRAY_CHANNELS,
    MAX_DECODED_SAMPLES,
    MAX_SOURCE_RATE,
    RESAMPLE_QUALITY,
    load_audio,
    load_clip,
    resample,
)
from .features import (
    DEFAULT_CHUNK_SECONDS,
    HOP_LENGTH,
    MAX_CHUNK_SAMPLES,
    MAX_CHUNK_SECONDS,
    MAX_ENCODER_FRAMES,
    MEL_FMAX,
    N_FFT,
    N_FREQS,
    SAMPLE_RATE,
    TAIL_SAMPLES,
    AudioChunkFeatures,
    encoder_input,
    log_mel_spectrogram,
    mel_filters,
    pad_mels,
    prepare_audio,
    split_audio,
    valid_frames,
)

__all__ = [
    "DEFAULT_CHUNK_SECONDS",
    "DEFAULT_MAX_SECONDS",
    "HOP_LENGTH",
    "MAX_ARRAY_CHANNELS",
    "MAX_CHUNK_SAMPLES",
    "MAX_CHUNK_SECONDS",
    "MAX_DECODED_SAMPLES",
    "MAX_ENCODER_FRAMES",
    "MAX_SOURCE_RATE",
    "MEL_FMAX",
    "N_FFT",
    "N_FREQS",
    "RESAMPLE_QUALITY",
    "SAMPLE_RATE",
    "TAIL_SAMPLES",
    "AudioChunkFeatures",
    "AudioError",
    "AudioTooLargeError",
    "AudioTooLongError",
    "encoder_input",
    "load_audio",
    "load_clip",
    "log_mel_spectrogram",
    "mel_filters",
    "pad_mels",
    "prepare_audio",
    "resample",
    "split_audio",
    "valid_frames",
]

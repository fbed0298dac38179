"""The errors audio-r1 raises on purpose, in one place, so a caller can catch them.

Every public error derives from `AudioR1Error`; catch it to handle anything this package refuses
without also swallowing programming errors. Each one also derives from the builtin a caller would
have caught before (`ValueError` for bad input, `RuntimeError` for state that went wrong), and each
carries its facts as attributes, so no code ever needs to parse another's message text.

Errors of the higher layers (`data.manifest.ManifestError`, `train.collate.RecordError`,
`eval.errors.EvalError` ...) live beside their code and derive from `AudioR1Error` too.
"""

from __future__ import annotations


class AudioR1Error(Exception):
    """Base of every error audio-r1 raises deliberately."""


# ------------------------------------------------------------------------------------------- audio


class AudioError(AudioR1Error, ValueError):
    """Audio could not be turned into a waveform; `source` says which input and `reason` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        shown = source if source.startswith("<") and source.endswith(">") else repr(source)
        super().__init__(f"cannot read audio from {shown}: {reason}")

    def __reduce__(self):  # picklable across worker processes with its fields
        return (type(self), (self.source, self.reason))


class AudioTooLongError(AudioError):
    """Audio is longer than the cap: `seconds` long (at least, when `at_least`), over `limit` seconds."""

    def __init__(self, source: str, seconds: float, limit: float, at_least: bool = False):
        self.seconds = seconds
        self.limit = limit
        self.at_least = at_least
        super().__init__(source, f"audio is {self.length}, over the max_seconds={limit:g} cap; "
                                 "pass a larger max_seconds (or max_seconds=None) to load_audio to accept it")

    @property
    def length(self) -> str:
        """The length in words: '12.3 s long' or 'longer than 12.3 s'."""
        return f"longer than {self.seconds:.1f} s" if self.at_least else f"{self.seconds:.1f} s long"

    def __reduce__(self):
        return (type(self), (self.source, self.seconds, self.limit, self.at_least))


class AudioTooLargeError(AudioError):
    """Decoding would hold more than `limit` samples (all channels, at the source rate)."""

    def __init__(self, source: str, samples: int, limit: int, at_least: bool = False):
        self.samples = samples
        self.limit = limit
        self.at_least = at_least
        more = "at least " if at_least else ""
        super().__init__(source, f"decoding needs {more}{samples:,} samples (all channels at the source "
                                 f"rate), over the cap of {limit:,}; pass a larger max_samples (or "
                                 "max_samples=None) to load_audio to accept it")

    def __reduce__(self):
        return (type(self), (self.source, self.samples, self.limit, self.at_least))


class AudioTooShortError(AudioError):
    """Audio is `ms` milliseconds long, shorter than the `min_ms` the encoder needs."""

    def __init__(self, source: str, ms: float, min_ms: float):
        self.ms = ms
        self.min_ms = min_ms
        super().__init__(source, f"too short ({ms:.1f} ms): the encoder needs at least {min_ms:g} ms")

    def __reduce__(self):
        return (type(self), (self.source, self.ms, self.min_ms))


# ---------------------------------------------------------------------------------- settings


class ConfigError(AudioR1Error, ValueError):
    """A setting (a config field or a flag) is out of range, or settings and inputs cannot work together."""


# ---------------------------------------------------------------------------------- prompt, model


class PromptError(AudioR1Error, ValueError):
    """Messages cannot be turned into a prompt; `where` names the message or part ("messages[1].content[0]")."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (str(self), self.where))


class AudioPayloadError(PromptError):
    """Inline audio (base64 or a `data:` URL) is unusable; `problem` is "invalid_base64", "empty" or "malformed"."""

    def __init__(self, message: str, where: str | None = None, problem: str = "malformed"):
        self.problem = problem
        super().__init__(message, where)

    def __reduce__(self):
        return (type(self), (str(self), self.where, self.problem))


class AudioPromptMismatchError(AudioR1Error, ValueError):
    """The number of `<audio_patch>` tokens in a prompt differs from what the audio produces."""


class TokenizerError(AudioR1Error, ValueError):
    """A tokenizer lacks a token the chat format needs."""


class CheckpointError(AudioR1Error, RuntimeError):
    """A model directory is missing, malformed, or does not match the model it should fill."""


class CheckpointConversionError(AudioR1Error, ValueError):
    """An installed package's weights could not be read or mapped onto our modules."""


class CacheCapacityError(AudioR1Error, RuntimeError):
    """More tokens were fed than the capacity given to `FastDecoder.start`."""


class SamplingError(AudioR1Error, RuntimeError):
    """One sequence's next-token distribution could not be sampled (its logits were not usable)."""


class PrefixCacheError(AudioR1Error, ValueError):
    """A `PrefixCache` cannot run this model (its decoder is not one `FastDecoder` supports)."""

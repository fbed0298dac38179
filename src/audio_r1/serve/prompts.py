"""From an OpenAI chat request to an engine `Prompt`: audio sources, decoding, limits, the template.

Audio arrives as `input_audio` (base64 of an encoded file) or `audio_url`. A `data:` URL (any case)
is always accepted; a local path (or `file://` URL) only under `--allowed-local-dir`; `http(s)://`
only with `--allow-remote-audio`. Every audio problem is a 400 that names the content part it came
from. Remote fetches (`remote.fetch`) are not a way into the server's network: public addresses only
unless `--allow-private-remote-audio`, no redirect to another scheme, one deadline per fetch. No
error message echoes fetched (or local file) bytes or status codes, or tells an open port from a
closed one.

Text far beyond the model's context is refused before it is tokenised.

The conversation becomes a prompt through `processing` (`openai_turns`, then `Processor.prompt`),
exactly as `AudioR1.chat` builds it: parts keep their order, `developer` is a system turn, the
benchmark system prompt is the default, and a last assistant turn (the official server accepts one
pre-filled with ``<think>\\n``) is continued.
"""

from __future__ import annotations

import urllib.parse
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..api import AudioR1
from ..audio import SAMPLE_RATE, load_audio
from ..engine import Prompt
from ..errors import (
    AudioError,
    AudioPayloadError,
    AudioTooLargeError,
    AudioTooLongError,
    AudioTooShortError,
    PromptError,
)
from ..processing import AudioClip, data_url_bytes, decode_base64, openai_turns
from . import remote
from .options import AudioPolicy
from .protocol import ApiError, ChatCompletionRequest, ChatMessage, TextContent

Origin = Literal["inline", "local", "remote"]  # where audio bytes came from (decides what errors may say)


@dataclass
class BuiltPrompt:
    prompt: Prompt
    audio_seconds: float


def build_prompt(model: AudioR1, request: ChatCompletionRequest, policy: AudioPolicy) -> BuiltPrompt:
    """Check the request's text, read its audio under `policy` and build the prompt (runs off the event loop).

    The conversation becomes a prompt through `processing`, as everywhere else: this module only adds
    the server's limits and its audio sources, and turns every refusal into a 400 naming its field.
    """
    budget = _AudioBudget(policy.max_audio_seconds)
    text_budget = _TextBudget(model)
    for i, message in enumerate(request.messages):
        _check_message_text(message, f"messages[{i}]", text_budget)

    def read_audio(part: dict, where: str) -> AudioClip:
        source, origin = _audio_bytes(part, where, policy)
        waveform = _decode(source, where, budget, origin)
        budget.take(len(waveform) / SAMPLE_RATE, where)
        return AudioClip(waveform, where)

    messages = [m.model_dump(include={"role", "content"}) for m in request.messages]
    try:
        prompt = model.processor.prompt(openai_turns(messages, read_audio), think=request.think)
    except AudioTooShortError as error:
        raise ApiError(400, f"{error.source}: the audio is too short ({error.ms:.1f} ms); the encoder needs at least "
                       f"{error.min_ms:g} ms", param=error.source, code="invalid_audio") from None
    except AudioPayloadError as error:
        raise ApiError(400, str(error), param=error.where, code=_PAYLOAD_CODES[error.problem]) from None
    except PromptError as error:  # e.g. audio in a system turn, or audio placeholder tokens typed into text
        raise ApiError(400, str(error), param=error.where or "messages", code="invalid_value") from None
    return BuiltPrompt(prompt, budget.used)


_PAYLOAD_CODES = {"invalid_base64": "invalid_base64", "empty": "invalid_audio", "malformed": "invalid_value"}


def _check_message_text(message: ChatMessage, where: str, text_budget: _TextBudget) -> None:
    """Refuse text that is not valid Unicode, or more than any context could hold, before tokenising."""
    content = message.content
    if isinstance(content, str):
        _checked_text(content, f"{where}.content", text_budget)
    elif content is not None:
        for j, part in enumerate(content):
            if isinstance(part, TextContent):
                _checked_text(part.text, f"{where}.content[{j}].text", text_budget)


def _checked_text(text: str, param: str, text_budget: _TextBudget) -> str:
    text_budget.take(text, param)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{param}: text is not valid Unicode (lone surrogate)", param=param,
                       code="invalid_value") from None
    return text


# ------------------------------------------------------------------------------------------------ text limit

# A normaliser (e.g. NFC) may merge a few characters into one before tokenising; 4 covers the worst
# compositions (Hangul jamo, stacked combining marks), so the bound below stays sound with one.
_NORMALISER_MARGIN = 4
_MAX_CHARS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def max_text_chars(model: AudioR1) -> int | None:
    """Characters of message text beyond which the prompt cannot fit the context (None: no known context).

    One token stands for at most as many characters as its longest vocabulary entry has (byte-level
    entries spell one byte per character, and a character is at least one byte), so text of more than
    ``context * longest entry`` characters has more tokens than the context holds, whatever it says.
    """
    text_config = model.config.text_config
    context = int(text_config.get("max_position_embeddings", 0) or 0) if isinstance(text_config, dict) else 0
    if context <= 0:
        return None
    tokenizer = model.tokenizer
    try:
        longest = _MAX_CHARS.get(tokenizer)
    except TypeError:  # not weak-referenceable: computed each time
        longest = None
    if longest is None:
        longest = max((len(token) for token in tokenizer.get_vocab()), default=1)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(backend, "normalizer", None) is not None:
            longest *= _NORMALISER_MARGIN
        try:
            _MAX_CHARS[tokenizer] = longest
        except TypeError:
            pass
    return context * max(1, longest)


class _TextBudget:
    """Characters of text seen so far in one request, refused once no context could hold them."""

    def __init__(self, model: AudioR1):
        self.limit = max_text_chars(model)
        self.used = 0

    def take(self, text: str, param: str) -> None:
        self.used += len(text)
        if self.limit is not None and self.used > self.limit:
            raise ApiError(400, f"{param}: the messages carry over {self.limit} characters of text, more than the "
                           "model's context can hold as tokens", param=param, code="context_length_exceeded")


class _AudioBudget:
    """Seconds of audio left for this request."""

    def __init__(self, limit: float):
        self.limit = limit
        self.used = 0.0

    def take(self, seconds: float, param: str) -> None:
        self.used += seconds
        if self.used > self.limit + 1e-6:
            raise ApiError(400, f"{param}: the request carries {self.used:.1f} s of audio; this server takes at "
                           f"most {self.limit:g} s per request (--max-audio-seconds)", param=param,
                           code="audio_too_long")

    @property
    def left(self) -> float:
        return max(self.limit - self.used, 1e-3)


def _decode(source: bytes | Path, param: str, budget: _AudioBudget, origin: Origin = "inline") -> np.ndarray:
    """Decode one clip into a 400 that names `param` on failure.

    The loader's own reason is shown only for audio the client sent inline; for a local file or a
    fetched body it could quote the file's bytes, so those get a message built from the error's type
    and fields alone (the length of too-long audio, nothing else).
    """
    try:
        return load_audio(source, max_seconds=budget.left)
    except AudioTooLongError as error:
        length = "the remote audio is too long" if origin == "remote" else f"the audio is {error.length}"
        raise ApiError(400, f"{param}: {length}; this server takes at most {budget.limit:g} s of audio per "
                       "request (--max-audio-seconds)", param=param, code="audio_too_long") from None
    except AudioError as error:
        raise ApiError(400, f"{param}: {_decode_failure(error, origin)}", param=param,
                       code="invalid_audio") from None
    except Exception as error:  # a decoder failure on hostile input is still the input's fault
        raise ApiError(400, f"{param}: cannot read the audio: {type(error).__name__}", param=param,
                       code="invalid_audio") from None


def _decode_failure(error: AudioError, origin: Origin) -> str:
    """What a client is told about audio that did not decode (see `_decode` for what may be echoed)."""
    where = {"inline": "", "remote": "remote ", "local": "local "}[origin]
    if isinstance(error, AudioTooLargeError):  # its reason suggests a load_audio argument a client cannot pass
        return f"the {where}audio would decode to more samples than this server accepts"
    if origin == "inline":
        return f"cannot read the audio: {error.reason}"
    where = where.strip()
    if isinstance(error, AudioTooShortError):
        return f"the {where} audio is too short ({error.ms:.1f} ms); the encoder needs at least {error.min_ms:g} ms"
    return f"could not decode the {where} audio (not a supported audio file, or damaged)"


def _audio_bytes(part: dict, where: str, policy: AudioPolicy) -> tuple[bytes | Path, Origin]:
    """The encoded bytes (or the local path) of one audio part, and where they came from."""
    if part["type"] == "input_audio":
        return decode_base64(part["input_audio"]["data"], f"{where}.input_audio.data"), "inline"
    url = part["audio_url"]["url"]
    param = f"{where}.audio_url.url"
    is_data = url[:5].lower() == "data:"
    scheme = urllib.parse.urlsplit(url).scheme.lower() if "://" in url or is_data else ""
    if scheme == "data":
        return data_url_bytes(url, param), "inline"
    if scheme in ("http", "https"):
        if not policy.allow_remote:
            raise ApiError(400, f"{param}: {scheme} audio URLs are disabled on this server (start it with "
                           "--allow-remote-audio); send the audio inline as input_audio or a data: URL",
                           param=param, code="audio_url_not_allowed")
        return _fetch(url, param, policy), "remote"
    if scheme in ("", "file"):
        return _local(url, param, policy), "local"
    raise ApiError(400, f"{param}: unsupported URL scheme {scheme!r}; use a data: URL", param=param,
                   code="audio_url_not_allowed")


def _local(url: str, param: str, policy: AudioPolicy) -> Path:
    refused = ApiError(400, f"{param}: local audio paths are only read under --allowed-local-dir",
                       param=param, code="audio_url_not_allowed")
    if policy.allowed_local_dir is None:
        raise refused
    raw = urllib.parse.unquote(urllib.parse.urlsplit(url).path) if url.lower().startswith("file:") else url
    try:
        root = policy.allowed_local_dir.resolve()
        path = (root / raw).resolve()  # an absolute `raw` replaces root; symlinks are followed
        inside = path.is_relative_to(root)
        exists = inside and path.is_file()  # checked only inside, so nothing is learnt about the outside
    except (OSError, ValueError, RuntimeError):
        inside = exists = False
    if not inside:
        raise refused
    if not exists:
        raise ApiError(400, f"{param}: no such file under the allowed directory", param=param,
                       code="invalid_audio")
    return path


# ------------------------------------------------------------------------------------------- remote audio


def _fetch(url: str, param: str, policy: AudioPolicy) -> bytes:
    """GET an http(s) URL (only with --allow-remote-audio) through `remote.fetch`.

    Every failure but a refused destination or an oversized body reads the same, so the messages tell
    a client nothing about the hosts and ports behind the server: no status code, no socket error, no
    fetched byte.
    """
    try:
        return remote.fetch(url, policy.remote_timeout_s, policy.max_remote_bytes, policy.allow_private_remote)
    except remote.RemoteRefused:
        raise ApiError(400, f"{param}: this server fetches audio only over http(s) from public addresses, and "
                       "follows no redirect to another scheme", param=param, code="audio_url_not_allowed") from None
    except remote.RemoteTooLarge:
        raise ApiError(400, f"{param}: the remote audio is over {policy.max_remote_bytes} bytes", param=param,
                       code="audio_too_long") from None
    except remote.RemoteAudioError:
        raise ApiError(400, f"{param}: could not fetch the remote audio (no 200 response with a body within "
                       f"{policy.remote_timeout_s:g} s)", param=param, code="invalid_audio") from None

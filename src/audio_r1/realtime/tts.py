"""Streaming text to speech: text goes in clause by clause, PCM chunks come out while it is spoken.

    engine = make_tts("espeak")
    splitter = ClauseSplitter()
    for piece in answer_pieces:                  # as the model generates them
        for clause in splitter.feed(piece):
            for chunk in engine.synthesize(clause):  # float32 mono at engine.sample_rate
                play(chunk)
    for clause in splitter.flush(): ...

`TTSEngine` is the interface (a sample rate, a voice, `synthesize(clause)` yielding chunks); the
engines are `EspeakTTS` (Debian's espeak-ng, a subprocess per clause whose WAV output is read as it
is written) and `PiperTTS` (the `piper-tts` package and an `.onnx` voice, in process). `make_tts`
picks one by name, so the server's engine is an option. `stream_speech` ties the pieces together
for callers that are not asynchronous.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..errors import AudioR1Error, ConfigError
from .pcm import StreamResampler, from_pcm16

# OpenAI's voice names: accepted everywhere, spoken with the engine's default voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")


class TTSError(AudioR1Error, RuntimeError):
    """A speech engine is missing or failed; `engine` names it."""

    def __init__(self, engine: str, message: str):
        self.engine = engine
        super().__init__(f"{engine}: {message}")


class TTSEngine(ABC):
    """A text-to-speech engine that speaks one clause at a time, streaming its audio."""

    name: str
    sample_rate: int
    voice: str

    @abstractmethod
    def synthesize(self, clause: str, *, voice: str | None = None, speed: float = 1.0,
                   stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        """Float32 mono chunks at `sample_rate` for `clause`, as they are produced; ends early once `stop` is set."""

    @abstractmethod
    def check_voice(self, voice: str) -> str:
        """The engine's own voice for `voice` (an OpenAI name maps to the default); `ConfigError` if unknown."""


def speakable(text: str) -> str:
    """`text` without control and unassigned characters (they reach no engine), whitespace squeezed."""
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" and ch != "\ufffd" else " " for ch in text)
    return re.sub(r"\s+", " ", kept).strip()


class ClauseSplitter:
    """Cuts a growing text into clauses to speak: at sentence or clause punctuation, at a line break,
    or at a word boundary once a clause grows past `max_chars` (hard cut at `2 * max_chars` with no
    space). The first clause may be as short as `first_min_chars` and is cut at a word boundary past
    `first_max_chars`, so speech starts early. Clauses come out `speakable`; one without a letter or
    digit is dropped."""

    _BOUNDARY = re.compile(r"[.!?;:,\u3002\uff01\uff1f\uff0c](?=\s)|\n")

    def __init__(self, max_chars: int = 80, min_chars: int = 12, first_min_chars: int = 4, first_max_chars: int = 32):
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.first_min_chars = first_min_chars
        self.first_max_chars = first_max_chars
        self._text = ""
        self._first = True

    def feed(self, piece: str) -> list[str]:
        """Add generated text; return the clauses now complete (speakable, in order)."""
        self._text += piece
        out: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return out
            clause, self._text = self._text[:cut], self._text[cut:]
            clause = speakable(clause)
            if any(ch.isalnum() for ch in clause):  # punctuation alone is not worth a synthesis
                out.append(clause)
                self._first = False

    def flush(self) -> list[str]:
        """The rest of the text once generation has ended."""
        clause, self._text = speakable(self._text), ""
        return [clause] if any(ch.isalnum() for ch in clause) else []

    def _next_cut(self) -> int | None:
        floor = self.first_min_chars if self._first else self.min_chars
        ceiling = min(self.first_max_chars, self.max_chars) if self._first else self.max_chars
        for match in self._BOUNDARY.finditer(self._text):
            if match.end() >= floor:
                return match.end()
        if len(self._text) > ceiling:
            space = self._text.rfind(" ", floor, ceiling + 1)
            if space > 0:
                return space + 1
            if len(self._text) > 2 * ceiling:
                return ceiling
        return None


def stream_speech(engine: TTSEngine, pieces: Iterable[str], rate: int, *, voice: str | None = None,
                  splitter: ClauseSplitter | None = None) -> Iterator[np.ndarray]:
    """Float32 chunks at `rate` for text arriving in `pieces`, each clause spoken as soon as it is complete."""
    splitter = splitter or ClauseSplitter()
    resampler = StreamResampler(engine.sample_rate, rate)
    for piece in pieces:
        for clause in splitter.feed(piece):
            for chunk in engine.synthesize(clause, voice=voice):
                out = resampler.feed(chunk)
                if len(out):
                    yield out
    for clause in splitter.flush():
        for chunk in engine.synthesize(clause, voice=voice):
            out = resampler.feed(chunk)
            if len(out):
                yield out
    tail = resampler.flush()
    if len(tail):
        yield tail


# --------------------------------------------------------------------------------------- espeak-ng


class EspeakTTS(TTSEngine):
    """espeak-ng (Debian `espeak-ng`): a subprocess per clause, its WAV read from stdout as it is written."""

    name = "espeak"
    READ_BYTES = 4410  # 100 ms at 22,050 Hz

    def __init__(self, voice: str | None = None, words_per_minute: int = 175):
        path = shutil.which("espeak-ng")
        if path is None:
            raise TTSError("espeak", "espeak-ng is not installed or not on PATH (Debian: apt-get install espeak-ng)")
        self.path = path
        self.words_per_minute = words_per_minute
        self._voices = self._list_voices()
        self.voice = self.check_voice(voice) if voice else "en-us"
        self.sample_rate = self._probe_rate()

    def _list_voices(self) -> set[str]:
        proc = subprocess.run([self.path, "--voices"], capture_output=True, text=True, check=False)
        names: set[str] = set()
        for line in proc.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 5:
                names.update({fields[1], fields[3], fields[4].rsplit("/", 1)[-1]})
        return names

    def check_voice(self, voice: str) -> str:
        if voice in OPENAI_VOICES:
            return getattr(self, "voice", "en-us")
        base, _, variant = voice.partition("+")
        if base not in self._voices or (variant and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", variant)):
            raise ConfigError(f"espeak-ng has no voice {voice!r}; use an OpenAI voice name or one of "
                              "`espeak-ng --voices` (a '+variant' such as 'en-us+f3' may follow)")
        return voice

    def _probe_rate(self) -> int:
        """The rate espeak-ng writes (22,050 Hz for its own voices), read from a WAV header."""
        proc = subprocess.run([self.path, "-v", self.voice, "--stdout", "--stdin"], input=b"a",
                              capture_output=True, check=False)
        header = proc.stdout[:44]
        if proc.returncode != 0 or len(header) < 44 or header[:4] != b"RIFF":
            raise TTSError("espeak", f"espeak-ng produced no audio for voice {self.voice!r}")
        return int.from_bytes(header[24:28], "little")

    def _run(self, text: str, voice: str, speed: float) -> subprocess.Popen:
        wpm = max(80, min(450, int(self.words_per_minute * speed)))
        proc = subprocess.Popen([self.path, "-v", voice, "-s", str(wpm), "--stdout", "--stdin"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(text.encode())
        proc.stdin.close()
        return proc

    def synthesize(self, clause: str, *, voice: str | None = None, speed: float = 1.0,
                   stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        text = speakable(clause)
        if not text:
            return
        proc = self._run(text, voice or self.voice, speed)
        assert proc.stdout is not None
        try:
            header = proc.stdout.read(44)
            if len(header) < 44:
                return
            odd = b""
            while stop is None or not stop.is_set():
                data = proc.stdout.read1(self.READ_BYTES) if hasattr(proc.stdout, "read1") else proc.stdout.read(
                    self.READ_BYTES)
                if not data:
                    break
                data = odd + data
                cut = len(data) - len(data) % 2
                odd = data[cut:]
                if cut:
                    yield from_pcm16(data[:cut])
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------- Piper


class PiperTTS(TTSEngine):
    """Piper (PyPI `piper-tts`) with an `.onnx` voice and its `.onnx.json` beside it, run in process."""

    name = "piper"

    def __init__(self, voice: str | None = None):
        try:
            from piper import PiperVoice  # optional dependency: only this engine needs it
        except ImportError:
            raise TTSError("piper", "the piper-tts package is not installed (pip install piper-tts)") from None
        path = Path(voice) if voice else find_piper_voice()
        if path is None or not path.is_file():
            raise TTSError("piper", f"no Piper voice found (looked for {voice or 'an installed voice package'}); "
                                    "pass --realtime-voice PATH.onnx")
        self._voice = PiperVoice.load(str(path))
        self.voice = str(path)
        self.sample_rate = int(self._voice.config.sample_rate)
        self._lock = threading.Lock()  # one synthesis at a time per loaded voice

    def check_voice(self, voice: str) -> str:
        if voice in OPENAI_VOICES or voice == self.voice:
            return self.voice
        raise ConfigError(f"this server's Piper engine speaks only {self.voice!r} (or an OpenAI voice name)")

    def synthesize(self, clause: str, *, voice: str | None = None, speed: float = 1.0,
                   stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        from piper import SynthesisConfig  # optional dependency, loaded in __init__ already

        text = speakable(clause)
        if not text:
            return
        config = SynthesisConfig(length_scale=1.0 / max(speed, 0.25))
        with self._lock:
            for chunk in self._voice.synthesize(text, syn_config=config):
                if stop is not None and stop.is_set():
                    return
                yield from_pcm16(chunk.audio_int16_bytes)


def find_piper_voice() -> Path | None:
    """An `.onnx` Piper voice shipped in an installed Python package (e.g. a `*-piper-voice` wheel)."""
    import importlib.metadata as metadata  # only when looking for a voice

    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if "piper" not in name or "voice" not in name:
            continue
        for file in dist.files or ():
            if str(file).endswith(".onnx"):
                path = Path(str(dist.locate_file(file)))
                if path.is_file() and Path(str(path) + ".json").is_file():
                    return path
    return None


def make_tts(name: str, voice: str | None = None) -> TTSEngine:
    """The engine called `name` ("espeak" or "piper") with its default `voice`."""
    if name == "espeak":
        return EspeakTTS(voice)
    if name == "piper":
        return PiperTTS(voice)
    raise ConfigError(f"unknown TTS engine {name!r}; use 'espeak' or 'piper'")

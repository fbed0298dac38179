"""Settings of the realtime endpoint: the server's bounds and a session's turn detection.

Kept free of heavy imports: `serve/options.py` builds these from command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

WIRE_RATE = 24000  # PCM16 mono in and out, as the OpenAI Realtime API fixes it (`audio/pcm`, rate 24000)
TTS_ENGINES = ("espeak", "piper")
# listen-while-thinking pieces: 2 s is one encoder chunk of a microphone's worth of speech, short enough that
# the end of a turn leaves little to prefill and long enough that a piece's encoder window holds a few words
DEFAULT_PIECE_S = 2.0
MIN_PIECE_S, MAX_PIECE_S = 0.5, 25.0  # 25 s: the models' chunk_seconds (one piece must stay one chunk)


@dataclass
class TurnDetection:
    """Server voice-activity detection (`server_vad`); a session with none commits by hand.

    `threshold` is the speech probability (0-1) above which a 32 ms window counts as speech;
    speech stops after `silence_duration_ms` below it; `prefix_padding_ms` of audio before the
    detected start is kept in the committed turn.
    """

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"turn_detection.threshold must be in (0, 1), got {self.threshold}")
        if not 0 <= self.prefix_padding_ms <= 5000:
            raise ConfigError(f"turn_detection.prefix_padding_ms must be in [0, 5000], got {self.prefix_padding_ms}")
        if not 50 <= self.silence_duration_ms <= 10000:
            raise ConfigError(
                f"turn_detection.silence_duration_ms must be in [50, 10000], got {self.silence_duration_ms}")

    def to_wire(self) -> dict:
        """The `turn_detection` object of a GA session."""
        return {"type": "server_vad", "threshold": self.threshold, "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms, "create_response": self.create_response,
                "interrupt_response": self.interrupt_response, "idle_timeout_ms": None}


@dataclass
class RealtimeOptions:
    """What `audio-r1 serve` allows on `/v1/realtime`; defaults suit one CPU box.

    `max_sessions` WebSockets at once (one more is told `session_limit_reached` and closed);
    `max_buffer_s` seconds of uncommitted input audio per session (an append past it is refused);
    `idle_timeout_s` without a client event while no response runs closes the session.
    `tts` names the speech engine ("espeak" or "piper"), `voice` its default voice (None: the
    engine's own), `tts_workers` the threads that synthesise for all sessions.
    `server_vad` is whether new sessions start with server VAD (as OpenAI's do) or commit by hand.
    `listen` is listen-while-thinking for new sessions: the turn is cut into pieces of `listen_piece_s`
    seconds as it arrives (each one encoder chunk), each piece encoded and prefilled into the session's
    own KV cache at once, so that at the end of the turn only its last piece is left (see
    `realtime/listen.py`).
    """

    max_sessions: int = 16
    max_buffer_s: float = 60.0
    idle_timeout_s: float = 300.0
    tts: str = "espeak"
    voice: str | None = None
    tts_workers: int = 2
    server_vad: bool = True
    listen: bool = True
    listen_piece_s: float = DEFAULT_PIECE_S
    turn_detection: TurnDetection = field(default_factory=TurnDetection)

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ConfigError(f"--realtime-max-sessions must be >= 1, got {self.max_sessions}")
        if not 0 < self.max_buffer_s < float("inf"):
            raise ConfigError(f"--realtime-max-buffer-seconds must be positive, got {self.max_buffer_s}")
        if not 0 < self.idle_timeout_s < float("inf"):
            raise ConfigError(f"--realtime-idle-timeout must be positive, got {self.idle_timeout_s}")
        if self.tts not in TTS_ENGINES:
            raise ConfigError(f"--realtime-tts must be one of {', '.join(TTS_ENGINES)}, got {self.tts!r}")
        if not MIN_PIECE_S <= self.listen_piece_s <= MAX_PIECE_S:
            raise ConfigError(f"--realtime-listen-piece-seconds must be in [{MIN_PIECE_S:g}, {MAX_PIECE_S:g}], "
                              f"got {self.listen_piece_s}")
        if self.tts_workers < 1:
            raise ConfigError(f"--realtime-tts-workers must be >= 1, got {self.tts_workers}")

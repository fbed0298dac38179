"""Settings of `audio-r1 serve` and `audio-r1 ui`, and their command-line flags.

Kept free of heavy imports so that building the CLI parser stays quick.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..realtime.config import DEFAULT_PIECE_S, TTS_ENGINES, RealtimeOptions


@dataclass
class AudioPolicy:
    """Where audio may come from and how much of it one request may carry."""

    max_audio_seconds: float = 300.0
    allowed_local_dir: Path | None = None
    allow_remote: bool = False
    # remote audio from loopback, private, link-local or reserved addresses too (off: those are refused
    # after resolution, so --allow-remote-audio cannot reach the server's own network)
    allow_private_remote: bool = False
    remote_timeout_s: float = 10.0
    max_remote_bytes: int = 32 * 2**20


@dataclass
class ServeConfig:
    """Everything `audio-r1 serve` can be told; defaults suit one CPU box."""

    model: str = "smol"
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None
    int8: bool = False
    api_key: str | None = None
    max_body_bytes: int = 32 * 2**20
    max_tokens_limit: int = 4096
    default_max_tokens: int = 1024
    temperature: float = 0.7  # the official serving default
    max_batch: int = 32
    max_queue: int = 256
    batch_wait_ms: float = 10.0
    prepare_workers: int = 2
    shutdown_timeout_s: float = 120.0
    log_level: str = "info"
    audio: AudioPolicy = field(default_factory=AudioPolicy)
    realtime: RealtimeOptions = field(default_factory=RealtimeOptions)

    @property
    def name(self) -> str:
        """The model id clients send and `/v1/models` lists."""
        return self.served_model_name or Path(self.model).name


def _add_model_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--model", default="smol", help="'smol', 'tiny', a model directory or a smol delta file (default: smol)")
    parser.add_argument("--int8", action="store_true", help="int8 decoder weights (CPU)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The `audio-r1 serve` flags."""
    _add_model_arguments(parser, 8000)
    parser.add_argument("--served-model-name", default=None, help="the model id clients send (default: --model)")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (413 above)")
    parser.add_argument("--max-audio-seconds", type=float, default=300.0, help="audio per request (400 above)")
    parser.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens a request may ask")
    parser.add_argument("--default-max-tokens", type=int, default=1024, help="max_tokens when a request sets none")
    parser.add_argument("--temperature", type=float, default=0.7, help="when a request sets none")
    parser.add_argument("--max-batch", type=int, default=32, help="requests decoded together")
    parser.add_argument("--max-queue", type=int, default=256,
                        help="requests taken but not yet decoding: being read, prepared or queued (429 when full)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0,
                        help="after a request reaches an idle server, wait this long for others to batch with")
    parser.add_argument("--prepare-workers", type=int, default=2,
                        help="threads decoding audio and building prompts (besides the engine's one)")
    parser.add_argument("--allowed-local-dir", default=None, help="audio_url may name files under this folder")
    parser.add_argument("--allow-remote-audio", action="store_true",
                        help="audio_url may be http(s):// on a public address")
    parser.add_argument("--allow-private-remote-audio", action="store_true",
                        help="with --allow-remote-audio, also fetch from loopback, private and link-local addresses")
    parser.add_argument("--shutdown-timeout", type=float, default=120.0,
                        help="seconds to finish requests in flight on SIGTERM; then streams get an error "
                             "event and waiting requests a 503")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    realtime = parser.add_argument_group("realtime (WebSocket /v1/realtime)")
    realtime.add_argument("--realtime-max-sessions", type=int, default=16,
                          help="realtime sessions open at once; one more is refused with an error event")
    realtime.add_argument("--realtime-max-buffer-seconds", type=float, default=60.0,
                          help="uncommitted input audio a session may hold")
    realtime.add_argument("--realtime-idle-timeout", type=float, default=300.0,
                          help="seconds without a client event (and no response running) before a session closes")
    realtime.add_argument("--realtime-tts", default="espeak", choices=list(TTS_ENGINES),
                          help="the speech engine of realtime answers")
    realtime.add_argument("--realtime-voice", default=None,
                          help="its default voice: an espeak-ng voice (en-us, en-us+f3 ...) or a Piper .onnx file")
    realtime.add_argument("--realtime-tts-workers", type=int, default=2, help="threads synthesising speech")
    realtime.add_argument("--realtime-turn-detection", default="server_vad", choices=["server_vad", "none"],
                          help="a new session's turn detection (a client can change it with session.update)")
    realtime.add_argument("--realtime-listen-while-thinking", action=argparse.BooleanOptionalAction, default=True,
                          help="prefill a user turn piece by piece as it arrives (a session can turn it off with "
                               "session.update audio_r1.listen_while_thinking)")
    realtime.add_argument("--realtime-listen-piece-seconds", type=float, default=DEFAULT_PIECE_S,
                          help="the length of a listened piece (one encoder chunk each)")


def serve_config_from_args(args: argparse.Namespace) -> ServeConfig:
    """A checked `ServeConfig` from parsed `serve` flags (`ConfigError` names the bad flag)."""
    for flag, value in (("--max-body-mb", args.max_body_mb), ("--max-audio-seconds", args.max_audio_seconds),
                        ("--max-tokens-limit", args.max_tokens_limit), ("--default-max-tokens", args.default_max_tokens),
                        ("--max-batch", args.max_batch), ("--max-queue", args.max_queue),
                        ("--prepare-workers", args.prepare_workers)):
        if not value > 0:
            raise ConfigError(f"{flag} must be positive, got {value}")
    for flag, value in (("--batch-wait-ms", args.batch_wait_ms), ("--temperature", args.temperature),
                        ("--shutdown-timeout", args.shutdown_timeout)):
        if not 0 <= value < float("inf"):
            raise ConfigError(f"{flag} must be a finite number >= 0, got {value}")
    if args.allow_private_remote_audio and not args.allow_remote_audio:
        raise ConfigError("--allow-private-remote-audio needs --allow-remote-audio")
    local = Path(args.allowed_local_dir) if args.allowed_local_dir else None
    if local is not None and not local.is_dir():
        raise ConfigError(f"--allowed-local-dir {local} is not a directory")
    return ServeConfig(
        model=args.model, host=args.host, port=args.port, served_model_name=args.served_model_name,
        int8=args.int8, api_key=args.api_key, max_body_bytes=int(args.max_body_mb * 2**20),
        max_tokens_limit=args.max_tokens_limit,
        default_max_tokens=min(args.default_max_tokens, args.max_tokens_limit), temperature=args.temperature,
        max_batch=args.max_batch, max_queue=args.max_queue, batch_wait_ms=args.batch_wait_ms,
        prepare_workers=args.prepare_workers, shutdown_timeout_s=args.shutdown_timeout, log_level=args.log_level,
        audio=AudioPolicy(max_audio_seconds=args.max_audio_seconds, allowed_local_dir=local,
                          allow_remote=args.allow_remote_audio,
                          allow_private_remote=args.allow_private_remote_audio),
        realtime=RealtimeOptions(max_sessions=args.realtime_max_sessions,
                                 max_buffer_s=args.realtime_max_buffer_seconds,
                                 idle_timeout_s=args.realtime_idle_timeout, tts=args.realtime_tts,
                                 voice=args.realtime_voice, tts_workers=args.realtime_tts_workers,
                                 server_vad=args.realtime_turn_detection == "server_vad",
                                 listen=args.realtime_listen_while_thinking,
                                 listen_piece_s=args.realtime_listen_piece_seconds),
    )


def add_ui_arguments(parser: argparse.ArgumentParser) -> None:
    """The `audio-r1 ui` flags."""
    _add_model_arguments(parser, 7860)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--max-batch", type=int, default=8, help="visitors decoded together")
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link (needs internet)")

"""Realtime speech in, speech out: the OpenAI Realtime protocol (GA events) over a WebSocket.

`protocol.py` parses client events and builds server events, `session.py` holds one session's
state and turn logic, `vad.py` is server voice-activity detection (Silero VAD via onnxruntime),
`tts.py` streaming text to speech (espeak-ng or Piper), `pcm.py` the wire's PCM16 and resampling,
and `config.py` the bounds. `serve/realtime.py` mounts it on `audio-r1 serve` at `/v1/realtime`;
see docs/realtime.md. Nothing is imported here, so `config` stays quick to load for the CLI.
"""

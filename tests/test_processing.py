"""One way from messages and audio to a prompt or a training example, whoever asks.

The tail-chunk rule (a clip a few milliseconds past a chunk boundary leaves a tail that maps to no
adaptor output, and is dropped) once failed through evaluation and SFT while `AudioR1.ask` worked;
here the boundary lengths go through every caller.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_r1.api import AudioR1
from audio_r1.audio import SAMPLE_RATE, prepare_audio
from audio_r1.errors import AudioR1Error, AudioTooShortError, PromptError
from audio_r1.eval.inference import build_local_prompt
from audio_r1.processing import AudioClip, Turn, item_question, openai_turns, question_text
from audio_r1.serve.options import AudioPolicy
from audio_r1.serve.prompts import build_prompt as serve_prompt
from audio_r1.serve.protocol import ApiError, parse_request
from audio_r1.train.collate import build_example

# 25.006 s leaves a 96-sample tail after the 25 s chunk: no adaptor output. 25.04 s leaves a real one.
BOUNDARY_SECONDS = (25.0, 25.006, 25.04, 3.0)


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


def clip(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def expected_patches(tiny: AudioR1, audio: np.ndarray) -> list[int]:
    counts = [tiny.config.num_audio_patches(c.valid_frames)
              for c in prepare_audio(audio, tiny.config.encoder.n_mels, tiny.config.chunk_seconds)]
    return [n for n in counts if n > 0]


def test_the_tail_chunk_premise(tiny: AudioR1) -> None:
    """25.006 s really does leave a chunk with no adaptor output (the case the rule exists for)."""
    chunks = prepare_audio(clip(25.006), tiny.config.encoder.n_mels, tiny.config.chunk_seconds)
    assert len(chunks) == 2 and tiny.config.num_audio_patches(chunks[1].valid_frames) == 0


@pytest.mark.parametrize("seconds", BOUNDARY_SECONDS)
def test_boundary_lengths_give_one_prompt_through_every_caller(tiny: AudioR1, tmp_path: Path, seconds: float) -> None:
    audio = clip(seconds)
    patches = expected_patches(tiny, audio)
    question = "How many tones?"
    asked = tiny.build_prompt(audio, question)
    messages = [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes(audio)).decode()}},
        {"type": "text", "text": question}]}]
    chatted = tiny.chat_prompt(messages)
    served = serve_prompt(tiny, parse_request(json.dumps({"model": "tiny", "messages": messages}).encode()),
                          AudioPolicy()).prompt
    evaluated = build_local_prompt(tiny, [("audio", (audio, SAMPLE_RATE)), ("text", question)], None, True)
    for prompt in (asked, chatted, served, evaluated):
        assert prompt.input_ids.count(tiny.special.audio_patch) == sum(patches)
        assert len(prompt.audio) == len(patches)
    assert asked.input_ids == evaluated.input_ids
    assert chatted.input_ids == served.input_ids  # the server builds what `AudioR1.chat` builds
    sf.write(tmp_path / "a.wav", audio, SAMPLE_RATE, subtype="FLOAT")
    example = build_example({"id": "r", "audio": "a.wav", "prompt": question, "reasoning": "one tone",
                             "answer_text": "1"}, tiny.tokenizer, tiny.template, tiny.config, base_dir=tmp_path,
                            max_length=4096)
    assert example.input_ids.count(tiny.special.audio_patch) == sum(patches)
    assert example.input_ids[:len(asked.input_ids)] == asked.input_ids  # SFT sees the prompt the model is asked


def test_a_clip_too_short_for_the_encoder_is_a_typed_error(tiny: AudioR1) -> None:
    with pytest.raises(AudioTooShortError) as caught:
        tiny.build_prompt(clip(20 / SAMPLE_RATE), "?")
    assert caught.value.min_ms == 30 and caught.value.ms == pytest.approx(1.25)
    with pytest.raises(AudioTooShortError):
        build_local_prompt(tiny, [("audio", (clip(0.001), SAMPLE_RATE))], None, True)
    assert isinstance(caught.value, AudioR1Error) and isinstance(caught.value, ValueError)
    body = {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(wav_bytes(clip(0.001))).decode()}}]}]}
    with pytest.raises(ApiError) as refused:
        serve_prompt(tiny, parse_request(json.dumps(body).encode()), AudioPolicy())
    assert refused.value.status == 400 and refused.value.param == "messages[0].content[0]"
    assert "too short" in refused.value.message


def test_parts_keep_their_order(tiny: AudioR1) -> None:
    audio = clip(1.0)
    audio_first = tiny.processor.prompt([Turn("user", [AudioClip(audio), "Which?"])])
    text_first = tiny.processor.prompt([Turn("user", ["Which?", AudioClip(audio)])])
    assert sorted(audio_first.input_ids) == sorted(text_first.input_ids) and audio_first.input_ids != text_first.input_ids
    text = tiny.tokenizer.decode(text_first.input_ids)
    assert text.index("Which?") < text.index("<audio_patch>")


def test_chat_takes_openai_messages(tiny: AudioR1) -> None:
    audio = wav_bytes(clip(1.0))
    url = "DATA:audio/wav;base64," + base64.b64encode(audio).decode()  # the scheme in any case (RFC 2397)
    messages = [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": url}},
                                             {"type": "text", "text": "Pitch?"}]},
                {"role": "assistant", "content": "<think>\nIt is"}]
    prompt = tiny.chat_prompt(messages)
    text = tiny.tokenizer.decode(prompt.input_ids)
    assert "Be brief." in text and text.endswith("<think>\nIt is") and prompt.thinking
    reply = tiny.chat(messages[:2], max_new_tokens=3)
    assert reply.usage.completion_tokens == 3


@pytest.mark.parametrize(("messages", "message"), [
    ([], "non-empty list"),
    ([{"role": "robot", "content": "hi"}], "messages\\[0\\]: needs a 'role'"),
    ([{"role": "user", "content": [{"type": "image_url"}]}], "messages\\[0\\].content\\[0\\]"),
    ([{"role": "system", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]}], "text only"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "!!"}}]}], "not valid base64"),
    ([{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "http://example.com/a.wav"}}]}],
     "not fetched"),
])
def test_bad_messages_are_prompt_errors(tiny: AudioR1, messages: list, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        tiny.chat_prompt(messages)


def test_openai_turns_maps_roles_and_keeps_text() -> None:
    turns = openai_turns([{"role": "developer", "content": "x"}, {"role": "user", "content": None}],
                         lambda part, where: AudioClip(np.zeros(1600, np.float32), where))
    assert [(t.role, t.content) for t in turns] == [("system", "x"), ("user", "")]


def test_one_question_writer() -> None:
    record = {"question": " Which is higher? ", "choices": ["The first", "The second"], "answer_type": "choice"}
    assert item_question(record) == "Which is higher?\nA. The first\nB. The second\nAnswer with the option text."
    assert question_text("2 + 3?", None, "number") == "2 + 3?\nAnswer with a number."

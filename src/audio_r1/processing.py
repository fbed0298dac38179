"""From messages and audio to a prompt or a training example: the one place a conversation becomes tokens.

    processor = Processor(config, tokenizer)
    prompt = processor.prompt([Turn("user", [AudioClip(waveform), "How many beeps?"])])
    example = processor.training_example([Turn("user", [...]), Turn("assistant", reply)], max_length=512)

Every caller goes through here: `AudioR1.ask` / `chat`, the server, evaluation, SFT, MGRD, RL and DPO.
So the rules live once:

* content parts keep the order they are given in (text before audio where the caller says so);
* a clip is cut into chunks of at most `config.chunk_seconds`, and a tail chunk that maps to no
  adaptor output (a clip a few milliseconds past a chunk boundary) is dropped, as it carries nothing;
* without a system turn the benchmark system prompt is used;
* a last assistant turn is *continued* (the official server accepts an assistant message pre-filled
  with ``<think>\\n`` or more), and earlier assistant turns without a think block get an empty one;
* questions with options are written by `question_text`, so training and evaluation ask alike;
* OpenAI-style messages (`openai_turns`) map `developer` to `system`, take audio only in user turns
  and ignore an earlier assistant turn's `reasoning` / `reasoning_content`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, AudioChunkFeatures, prepare_audio
from .chat import (
    CHATML_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    STEP_TEMPLATE,
    AudioPart,
    ChatTemplate,
    Message,
    TextPart,
    format_assistant,
    render,
    render_training_example,
)
from .config import LETTERS, AudioR1Config
from .engine import Prompt
from .errors import AudioPayloadError, AudioTooShortError, PromptError

IGNORE = -100  # the label of a token that takes no loss
INSTRUCTIONS = {
    "choice": "Answer with the option text.",
    "number": "Answer with a number.",
    "text": "Answer with a single word.",
}
MIN_AUDIO_MS = 30  # the shortest clip that yields one adaptor output


def question_text(question: str, choices: Sequence[str] | None = None, answer_type: str | None = None) -> str:
    """The user prompt for one question: the question, lettered options (if any) and how to answer."""
    lines = [question.strip()]
    if choices:
        lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    lines.append(INSTRUCTIONS[answer_type or ("choice" if choices else "text")])
    return "\n".join(lines)


def item_question(item: Any) -> str:
    """`question_text` of a suite item or an SFT record (anything with question, choices, answer_type)."""
    get = item.get if isinstance(item, Mapping) else lambda key: getattr(item, key, None)
    return question_text(get("question"), get("choices"), get("answer_type"))


@dataclass(frozen=True)
class AudioClip:
    """A decoded clip inside a message: 16 kHz mono float32 samples, and where it came from (for errors)."""

    waveform: np.ndarray
    source: str = "audio"
    # the clip's encoder inputs and placeholder part, when computed already (`Processor.with_features`)
    features: tuple[list[AudioChunkFeatures], AudioPart] | None = field(default=None, compare=False, repr=False)

    @property
    def seconds(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


Content = str | Sequence[str | AudioClip]


@dataclass
class Turn:
    """One chat turn before tokenisation: a role and its text and audio, in order."""

    role: str
    content: Content = ""


@dataclass
class TrainingExample:
    """One tokenised conversation: ids, labels (`IGNORE` where no loss), and its audio chunks."""

    id: str
    input_ids: list[int]
    labels: list[int]
    audio: list[AudioChunkFeatures] = field(default_factory=list)

    @property
    def label_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


class Processor:
    """Turns `Turn`s into engine prompts and training examples for one model (its config and tokenizer)."""

    def __init__(self, config: AudioR1Config, tokenizer: Any, template: ChatTemplate | None = None):
        self.config = config
        self.tokenizer = tokenizer
        self.template = template or (STEP_TEMPLATE if config.chat_format == "step" else CHATML_TEMPLATE)

    # ------------------------------------------------------------------------------------------ audio

    def audio(self, clip: AudioClip) -> tuple[list[AudioChunkFeatures], AudioPart]:
        """A clip's encoder inputs, one per chunk, and the placeholder part that stands for them."""
        if clip.features is not None:
            return clip.features
        chunks = prepare_audio(clip.waveform, self.config.encoder.n_mels, self.config.chunk_seconds)
        counts = [self.config.num_audio_patches(c.valid_frames) for c in chunks]
        kept = [(c, n) for c, n in zip(chunks, counts, strict=True) if n > 0]
        if not kept:
            raise AudioTooShortError(clip.source, clip.seconds * 1000, MIN_AUDIO_MS)
        return [c for c, _ in kept], AudioPart([n for _, n in kept])

    def with_features(self, clip: AudioClip) -> AudioClip:
        """The clip carrying its encoder inputs, so that prompts built from it again skip the log-mel."""
        return clip if clip.features is not None else dataclasses.replace(clip, features=self.audio(clip))

    def _message(self, turn: Turn, chunks: list[AudioChunkFeatures]) -> Message:
        if turn.role == "assistant":
            text = _text_only(turn)
            if not text.lstrip().startswith(self.template.think_open):
                text = format_assistant("", text, template=self.template)
            return Message("assistant", text)
        if turn.role != "user" or isinstance(turn.content, str):
            return Message(turn.role, _text_only(turn))
        parts: list[TextPart | AudioPart] = []
        for piece in turn.content:
            if isinstance(piece, AudioClip):
                clip_chunks, part = self.audio(piece)
                chunks.extend(clip_chunks)
                parts.append(part)
            else:
                parts.append(TextPart(piece))
        return Message(turn.role, parts)

    def _messages(self, turns: Sequence[Turn]) -> tuple[list[Message], list[AudioChunkFeatures]]:
        chunks: list[AudioChunkFeatures] = []
        messages = [self._message(turn, chunks) for turn in turns]
        if not messages or messages[0].role != "system":
            messages.insert(0, Message("system", DEFAULT_SYSTEM_PROMPT))
        return messages, chunks

    # ----------------------------------------------------------------------------------------- prompts

    def prompt(self, turns: Sequence[Turn], *, think: bool = True) -> Prompt:
        """The engine prompt for a conversation; a last assistant turn is continued, not closed."""
        continuation = None
        if turns and turns[-1].role == "assistant":
            continuation = _text_only(turns[-1])
            turns = turns[:-1]
        messages, chunks = self._messages(turns)
        try:
            if continuation is None:
                text = render(messages, self.template, add_generation_prompt=True, think=think)
                thinking = think
            else:
                text = render(messages, self.template, add_generation_prompt=False)
                text += self.template.header("assistant") + continuation
                thinking = continuation.rfind(self.template.think_open) > continuation.rfind(self.template.think_close)
        except ValueError as error:  # e.g. audio placeholder tokens typed into text
            raise PromptError(str(error)) from None
        return Prompt(self.tokenizer.encode(text, add_special_tokens=False), chunks, thinking=thinking)

    def ask_prompt(self, clip: AudioClip | None, question: str, *, system: str | None = None,
                   think: bool = True) -> Prompt:
        """The prompt of one question about one clip (audio first, then the question)."""
        content: list[str | AudioClip] = [clip] if clip is not None else []
        if question:
            content.append(question)
        turns = [Turn("user", content)] if system is None else [Turn("system", system), Turn("user", content)]
        return self.prompt(turns, think=think)

    # ------------------------------------------------------------------------------------ training data

    def training_example(self, turns: Sequence[Turn], *, max_length: int = 1024, example_id: str = "?"
                         ) -> TrainingExample:
        """Tokenise a conversation ending in the assistant's reply; loss labels only on assistant turns.

        Truncation keeps the prompt whole (it never cuts through an audio span) and shortens the
        reply; a prompt that alone reaches `max_length` is refused with `PromptError`.
        """
        if not turns or turns[-1].role != "assistant":
            raise PromptError(f"example {example_id}: a training conversation ends with the assistant's reply")
        messages, chunks = self._messages(turns)
        input_ids: list[int] = []
        labels: list[int] = []
        for text, trained in render_training_example(messages, self.template):
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            input_ids.extend(ids)
            labels.extend(ids if trained else [IGNORE] * len(ids))
        first_label = next((i for i, label in enumerate(labels) if label != IGNORE), len(labels))
        if first_label >= max_length:
            raise PromptError(f"example {example_id}: the prompt alone is {first_label} tokens, over max_length "
                              f"{max_length}; shorten the audio or raise max_length")
        return TrainingExample(example_id, input_ids[:max_length], labels[:max_length], chunks)


def _text_only(turn: Turn) -> str:
    if isinstance(turn.content, str):
        return turn.content
    if any(isinstance(piece, AudioClip) for piece in turn.content):
        raise PromptError(f"{turn.role} turns take text only; put audio in a user turn")
    return "".join(turn.content)


# ------------------------------------------------------------------------------------ OpenAI messages

# Reads one audio content part (`{"type": "input_audio", ...}` or `{"type": "audio_url", ...}`);
# the second argument names the part for error messages ("messages[1].content[0]").
AudioReader = Callable[[Mapping[str, Any], str], AudioClip]
ROLES = ("system", "developer", "user", "assistant")
AUDIO_PART_TYPES = ("input_audio", "audio_url", "audio")


def openai_turns(messages: Sequence[Mapping[str, Any]], read_audio: AudioReader) -> list[Turn]:
    """Turns from OpenAI chat messages (`content` a string or a list of typed parts), parts in order.

    Raises `PromptError` naming the message or part at fault.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence) or not messages:
        raise PromptError("messages must be a non-empty list of {'role', 'content'} objects")
    turns = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            raise PromptError(f"{where}: needs a 'role' of {', '.join(ROLES)}", where)
        role = "system" if message["role"] == "developer" else message["role"]
        turns.append(Turn(role, _openai_content(message.get("content"), role, where, read_audio)))
    return turns


def _openai_content(content: Any, role: str, where: str, read_audio: AudioReader) -> Content:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence):
        raise PromptError(f"{where}.content: must be a string or a list of content parts", f"{where}.content")
    pieces: list[str | AudioClip] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif kind in AUDIO_PART_TYPES:
            if role != "user":
                raise PromptError(f"{at}: {role} messages take text only; put audio in a user message", at)
            pieces.append(read_audio(part, at))
        else:
            raise PromptError(f"{at}: expected a part of type 'text' (with a 'text' string), "
                              f"'input_audio' or 'audio_url', got {kind!r}", at)
    return pieces


def decode_base64(data: str, where: str) -> bytes:
    """The bytes of a base64 payload (whitespace allowed), or `AudioPayloadError` naming where it came from."""
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise AudioPayloadError(f"{where}: not valid base64", where, "invalid_base64") from None
    if not raw:
        raise AudioPayloadError(f"{where}: the audio is empty", where, "empty")
    return raw


def data_url_bytes(url: str, where: str) -> bytes:
    """The payload of a `data:` URL (the scheme in any case, as RFC 2397 allows; base64 or percent-encoded)."""
    if url[:5].lower() != "data:":
        raise AudioPayloadError(f"{where}: not a data: URL", where)
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise AudioPayloadError(f"{where}: a data: URL needs a comma before its payload", where)
    if header.lower().endswith(";base64"):
        return decode_base64(urllib.parse.unquote(payload), where)
    raw = urllib.parse.unquote_to_bytes(payload)
    if not raw:
        raise AudioPayloadError(f"{where}: the audio is empty", where, "empty")
    return raw

"""Chat messages, prompt templates and the `<think>` reasoning parser.

Step-Audio-R1 answers in the shape ``<think>\\n{reasoning}\\n</think>\\n{answer}``. Prompts pre-fill the
opening ``<think>\\n`` so generation starts inside the reasoning block. Audio enters a prompt as one span
per chunk (``<audio_start>`` + N x ``<audio_patch>`` + ``<audio_end>``); the model later swaps the patch
embeddings for audio features, so the patch counts in the text must match the features exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .config import AUDIO_END, AUDIO_PATCH, AUDIO_START, THINK_CLOSE, THINK_OPEN

ROLES: tuple[str, ...] = ("system", "user", "assistant")


DEFAULT_SYSTEM_PROMPT = "You are an expert in audio analysis, please analyze the audio content and answer the questions accurately."


# --------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class TextPart:
    """A run of plain text inside a message."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"TextPart.text must be a str, got {type(self.text).__name__}")


@dataclass(frozen=True)
class AudioPart:
    """One audio clip, already split into chunks; ``num_patches[i]`` is the patch count of chunk ``i``."""

    num_patches: list[int]

    def __post_init__(self) -> None:
        if len(self.num_patches) == 0:
            raise ValueError("AudioPart.num_patches must list at least one chunk")
        for i, n in enumerate(self.num_patches):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"AudioPart.num_patches[{i}] must be a positive int, got {n!r}")


Part = TextPart | AudioPart


@dataclass
class Message:
    """One chat turn: a role and either a plain string or a list of text/audio parts."""

    role: str
    content: list[Part] | str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown message role {self.role!r}; expected one of {', '.join(ROLES)}")
        if isinstance(self.content, str):
            return
        if not isinstance(self.content, list):
            raise TypeError(
                f"Message.content must be a str or a list of parts, got {type(self.content).__name__}"
            )
        for i, part in enumerate(self.content):
            if not isinstance(part, TextPart | AudioPart):
                raise TypeError(
                    f"Message.content[{i}] must be a TextPart or AudioPart, got {type(part).__name__}"
                )


# --------------------------------------------------------------------------------------------- templates


def _check_think_tags(think_open: str, think_close: str) -> None:
    """The parser's newline/whitespace rules assume tags that are non-empty and start with a non-space."""
    for tag in (think_open, think_close):
        if not tag or tag[0].isspace():
            raise ValueError(f"think tags must be non-empty and not start with whitespace, got {tag!r}")


def _identity_roles() -> dict[str, str]:
    return {role: role for role in ROLES}


@dataclass(frozen=True)
class ChatTemplate:
    """A turn-based prompt format: ``{bos}{role_name}\\n{content}{eot}{separator}`` per turn."""

    name: str
    bos: str
    eot: str
    separator: str = ""
    role_names: Mapping[str, str] = field(default_factory=_identity_roles)
    audio_start: str = AUDIO_START
    audio_patch: str = AUDIO_PATCH
    audio_end: str = AUDIO_END
    think_open: str = THINK_OPEN
    think_close: str = THINK_CLOSE

    def __post_init__(self) -> None:
        for attr in ("bos", "eot", "audio_start", "audio_patch", "audio_end"):
            if not getattr(self, attr):
                raise ValueError(f"ChatTemplate.{attr} must be non-empty")
        _check_think_tags(self.think_open, self.think_close)
        missing = [role for role in ROLES if role not in self.role_names]
        if missing:
            raise ValueError(f"ChatTemplate.role_names lacks roles: {', '.join(missing)}")

    @property
    def stop(self) -> str:
        """The string that ends a generated turn."""
        return self.eot

    def header(self, role: str) -> str:
        """The text that opens a turn of ``role``."""
        return f"{self.bos}{self.role_names[role]}\n"

    def audio_span(self, num_patches: int) -> str:
        """The placeholder span for one audio chunk of ``num_patches`` patches."""
        return self.audio_start + self.audio_patch * num_patches + self.audio_end


STEP_TEMPLATE = ChatTemplate(
    name="step",
    bos="<|BOT|>",
    eot="<|EOT|>",
    role_names={"system": "system", "user": "human", "assistant": "assistant"},
)

CHATML_TEMPLATE = ChatTemplate(name="chatml", bos="<|im_start|>", eot="<|im_end|>", separator="\n")


def format_assistant(reasoning: str, answer: str, *, template: ChatTemplate | None = None) -> str:
    """Assistant training content: ``<think>\\n{reasoning}\\n</think>\\n{answer}``."""
    think_open, think_close = _tags(template)
    return f"{think_open}\n{reasoning}\n{think_close}\n{answer}"


def generation_prefix(template: ChatTemplate, *, think: bool = True) -> str:
    """What ends a prompt: the assistant header plus an open (or, with ``think=False``, empty) think block."""
    if think:
        return f"{template.header('assistant')}{template.think_open}\n"
    return template.header("assistant") + format_assistant("", "", template=template)


def render(
    messages: Sequence[Message],
    template: ChatTemplate,
    add_generation_prompt: bool = True,
    think: bool = True,
) -> str:
    """Render ``messages`` as one prompt string, optionally followed by the generation prefix."""
    text = "".join(segment for segment, _ in _turn_segments(messages, template))
    if add_generation_prompt:
        text += generation_prefix(template, think=think)
    return text


def render_training_example(messages: Sequence[Message], template: ChatTemplate) -> list[tuple[str, bool]]:
    """Render ``messages`` as segments flagged True where they are assistant output (loss is taken there).

    Adjacent segments with the same flag are merged; the segments concatenate to
    ``render(messages, template, add_generation_prompt=False)``.
    """
    merged: list[tuple[str, bool]] = []
    for segment, trained in _turn_segments(messages, template):
        if not segment:
            continue
        if merged and merged[-1][1] == trained:
            merged[-1] = (merged[-1][0] + segment, trained)
        else:
            merged.append((segment, trained))
    return merged


def _turn_segments(messages: Sequence[Message], template: ChatTemplate) -> list[tuple[str, bool]]:
    """Header, body+eot and separator of every turn, each flagged whether it is assistant output."""
    segments: list[tuple[str, bool]] = []
    for message in messages:
        if not isinstance(message, Message):
            raise TypeError(f"expected a Message, got {type(message).__name__}")
        trained = message.role == "assistant"
        segments.append((template.header(message.role), False))
        segments.append((_render_content(message.content, template) + template.eot, trained))
        segments.append((template.separator, False))
    return segments


def _render_content(content: list[Part] | str, template: ChatTemplate) -> str:
    """Text parts verbatim, audio parts as back-to-back chunk spans."""
    if isinstance(content, str):
        _check_no_audio_tokens(content, template)
        return content
    pieces: list[str] = []
    for part in content:
        if isinstance(part, TextPart):
            _check_no_audio_tokens(part.text, template)
            pieces.append(part.text)
        else:
            pieces.extend(template.audio_span(n) for n in part.num_patches)
    return "".join(pieces)


def _check_no_audio_tokens(text: str, template: ChatTemplate) -> None:
    """Audio placeholders in text would desynchronise the prompt from the audio features."""
    for token in (template.audio_start, template.audio_patch, template.audio_end):
        if token in text:
            raise ValueError(f"text content contains the audio token {token!r}; pass audio as an AudioPart")


def count_audio_patches(text: str, template: ChatTemplate) -> list[int]:
    """Patch count of every audio span in a rendered prompt, in order.

    Raises ValueError for a malformed span: a patch or end outside a span, a start inside a span, other
    text inside a span, or a start without an end.
    """
    tokens = sorted({template.audio_start, template.audio_patch, template.audio_end}, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(token) for token in tokens))
    counts: list[int] = []
    open_at: int | None = None  # offset of the current span's start token
    expected_at = 0  # inside a span, where the next token must begin
    patches = 0
    for match in pattern.finditer(text):
        token, at = match.group(), match.start()
        if open_at is None:
            if token == template.audio_start:
                open_at, patches = at, 0
            else:
                raise ValueError(f"{token!r} at offset {at} is outside an audio span")
        elif at != expected_at:
            raise ValueError(f"audio span opened at offset {open_at} has other text at offset {expected_at}")
        elif token == template.audio_patch:
            patches += 1
        elif token == template.audio_end:
            counts.append(patches)
            open_at = None
        else:
            raise ValueError(f"audio span opened at offset {open_at} is opened again at offset {at}")
        expected_at = match.end()
    if open_at is not None:
        raise ValueError(f"audio span opened at offset {open_at} has no {template.audio_end!r}")
    return counts


# --------------------------------------------------------------------------------------------- parsing


def _tags(template: ChatTemplate | None) -> tuple[str, str]:
    if template is None:
        return THINK_OPEN, THINK_CLOSE
    return template.think_open, template.think_close


def _strip_one_newline(text: str) -> str:
    """Drop at most one leading and one trailing newline."""
    if text.startswith("\n"):
        text = text[1:]
    if text.endswith("\n"):
        text = text[:-1]
    return text


def parse_reasoning(
    text: str,
    *,
    prefilled_open: bool = True,
    think_open: str = THINK_OPEN,
    think_close: str = THINK_CLOSE,
) -> tuple[str, str]:
    """Split generated text into ``(reasoning, answer)``.

    The reasoning block starts at the beginning of ``text`` when the prompt pre-filled the open tag, or
    where ``text`` itself opens with ``<think>`` (leading whitespace allowed). It ends at the first
    ``</think>``; without one everything is reasoning. One newline is stripped at each end of the
    reasoning, and leading newlines of the answer. Text with no block at all is returned as the answer,
    unchanged.
    """
    _check_think_tags(think_open, think_close)
    stripped = text.lstrip()
    if stripped.startswith(think_open):
        body = stripped[len(think_open) :]
    elif prefilled_open:
        body = text
    else:
        return "", text
    head, found, tail = body.partition(think_close)
    return _strip_one_newline(head), tail.lstrip("\n") if found else ""


def _held_suffix(text: str, tag: str) -> int:
    """How many trailing chars of ``text`` to hold: a possible ``tag`` prefix plus one newline before it."""
    held = 0
    for k in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:k]):
            held = k
            break
    if len(text) > held and text[-held - 1] == "\n":
        held += 1
    return held


class StreamingReasoningParser:
    """Incremental `parse_reasoning`: feed generated deltas, get ``("reasoning" | "answer", text)`` deltas.

    Streamed reasoning and answer deltas concatenate to exactly what `parse_reasoning` returns for the
    whole text, however it was split. Only text that may still turn out to be part of a tag is held
    back: before the block is known, leading whitespace plus a partial ``<think>``; inside it, a partial
    ``</think>`` and the one newline before it (stripped if the tag follows).
    """

    _START, _REASONING, _ANSWER, _PLAIN = "start", "reasoning", "answer", "plain"

    def __init__(
        self,
        prefilled_open: bool = True,
        *,
        think_open: str = THINK_OPEN,
        think_close: str = THINK_CLOSE,
    ) -> None:
        _check_think_tags(think_open, think_close)
        self._prefilled_open = prefilled_open
        self._open = think_open
        self._close = think_close
        self._state = self._START
        self._buffer = ""
        self._strip_leading = True  # reasoning: one "\n" pending removal; answer: leading "\n"s
        self._finished = False

    def feed(self, delta: str) -> list[tuple[str, str]]:
        """Consume one delta of generated text and return what can be emitted now."""
        if self._finished:
            raise RuntimeError("feed() called after finish()")
        self._buffer += delta
        return self._drain(final=False)

    def finish(self) -> list[tuple[str, str]]:
        """Flush everything held back; the text is complete."""
        if self._finished:
            return []
        self._finished = True
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while True:
            if self._state == self._START:
                if not self._resolve_start(final):
                    break
            elif self._state == self._REASONING:
                if not self._drain_reasoning(final, out):
                    break
            else:
                if self._state == self._ANSWER and self._strip_leading:
                    self._buffer = self._buffer.lstrip("\n")
                    self._strip_leading = not self._buffer
                _emit(out, "answer", self._buffer)
                self._buffer = ""
                break
        return out

    def _resolve_start(self, final: bool) -> bool:
        """Decide whether the text opens a think block; False while it is still undecidable."""
        rest = self._buffer.lstrip()
        if rest.startswith(self._open):
            self._buffer = rest[len(self._open) :]
            self._state = self._REASONING
        elif not final and self._open.startswith(rest):
            return False
        else:
            self._state = self._REASONING if self._prefilled_open else self._PLAIN
        return True

    def _drain_reasoning(self, final: bool, out: list[tuple[str, str]]) -> bool:
        """Emit reasoning up to the close tag or the held suffix; True when the block closed."""
        if self._strip_leading and self._buffer:
            if self._buffer[0] == "\n":
                self._buffer = self._buffer[1:]
            self._strip_leading = False
        head, found, tail = self._buffer.partition(self._close)
        if found or final:
            _emit(out, "reasoning", head[:-1] if head.endswith("\n") else head)
            self._buffer = tail
            if found:
                self._state, self._strip_leading = self._ANSWER, True
            return bool(found)
        held = _held_suffix(self._buffer, self._close)
        _emit(out, "reasoning", self._buffer[: len(self._buffer) - held])
        self._buffer = self._buffer[len(self._buffer) - held :]
        return False


def _emit(out: list[tuple[str, str]], kind: str, text: str) -> None:
    """Append a non-empty delta, merging with the previous one of the same kind."""
    if not text:
        return
    if out and out[-1][0] == kind:
        out[-1] = (kind, out[-1][1] + text)
    else:
        out.append((kind, text))

"""Tests for chat templates, audio span counting and the think parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_r1.chat import (
    CHATML_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    STEP_TEMPLATE,
    AudioPart,
    ChatTemplate,
    Message,
    StreamingReasoningParser,
    TextPart,
    count_audio_patches,
    format_assistant,
    parse_reasoning,
    render,
    render_training_example,
)

SPAN_2 = "<audio_start>" + "<audio_patch>" * 2 + "<audio_end>"
SPAN_3 = "<audio_start>" + "<audio_patch>" * 3 + "<audio_end>"


def _conversation() -> list[Message]:
    return [
        Message("system", DEFAULT_SYSTEM_PROMPT),
        Message("user", [TextPart("What is this?"), AudioPart([2, 3]), TextPart(" Be brief.")]),
    ]


def _training_conversation() -> list[Message]:
    return [
        Message("user", [AudioPart([1]), TextPart("Q")]),
        Message("assistant", format_assistant("hmm", "A")),
    ]


# --------------------------------------------------------------------------------------------- messages


def test_message_rejects_unknown_role() -> None:
    with pytest.raises(ValueError, match="unknown message role 'human'"):
        Message("human", "hi")


def test_message_rejects_bad_parts() -> None:
    with pytest.raises(TypeError, match="content\\[0\\]"):
        Message("user", ["raw string"])  # type: ignore[list-item]


@pytest.mark.parametrize("counts", [[], [0], [2, -1], [True], [1.5]])
def test_audio_part_rejects_bad_counts(counts: list) -> None:
    with pytest.raises(ValueError, match="AudioPart.num_patches"):
        AudioPart(counts)


# --------------------------------------------------------------------------------------------- rendering


def test_render_step() -> None:
    expected = (
        f"<|BOT|>system\n{DEFAULT_SYSTEM_PROMPT}<|EOT|>"
        f"<|BOT|>human\nWhat is this?{SPAN_2}{SPAN_3} Be brief.<|EOT|>"
        "<|BOT|>assistant\n<think>\n"
    )
    assert render(_conversation(), STEP_TEMPLATE) == expected
    assert STEP_TEMPLATE.stop == "<|EOT|>"


def test_render_chatml() -> None:
    expected = (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\nWhat is this?{SPAN_2}{SPAN_3} Be brief.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n"
    )
    assert render(_conversation(), CHATML_TEMPLATE) == expected
    assert CHATML_TEMPLATE.stop == "<|im_end|>"


def test_render_without_thinking_prefills_empty_block() -> None:
    messages = [Message("user", "Q")]
    assert render(messages, STEP_TEMPLATE, think=False) == (
        "<|BOT|>human\nQ<|EOT|><|BOT|>assistant\n<think>\n\n</think>\n"
    )
    assert render(messages, CHATML_TEMPLATE, think=False) == (
        "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n"
    )


def test_render_without_generation_prompt() -> None:
    assert (
        render([Message("user", "Q")], STEP_TEMPLATE, add_generation_prompt=False) == "<|BOT|>human\nQ<|EOT|>"
    )


def test_render_rejects_audio_tokens_in_text() -> None:
    with pytest.raises(ValueError, match="AudioPart"):
        render([Message("user", [TextPart("x<audio_patch>")])], STEP_TEMPLATE)
    with pytest.raises(ValueError, match="AudioPart"):
        render([Message("user", "<audio_start>")], CHATML_TEMPLATE)


def test_custom_token_names() -> None:
    template = ChatTemplate(
        name="custom",
        bos="[B]",
        eot="[E]",
        audio_start="[as]",
        audio_patch="[p]",
        audio_end="[ae]",
        think_open="<reason>",
        think_close="</reason>",
    )
    messages = [Message("user", [AudioPart([2])])]
    assert render(messages, template) == "[B]user\n[as][p][p][ae][E][B]assistant\n<reason>\n"
    assert render(messages, template, think=False).endswith("<reason>\n\n</reason>\n")
    assert count_audio_patches(render(messages, template), template) == [2]


def test_format_assistant() -> None:
    assert format_assistant("because", "yes") == "<think>\nbecause\n</think>\nyes"
    assert format_assistant("", "yes") == "<think>\n\n</think>\nyes"


def test_training_segments_step() -> None:
    segments = render_training_example(_training_conversation(), STEP_TEMPLATE)
    assert segments == [
        ("<|BOT|>human\n<audio_start><audio_patch><audio_end>Q<|EOT|><|BOT|>assistant\n", False),
        ("<think>\nhmm\n</think>\nA<|EOT|>", True),
    ]
    joined = "".join(text for text, _ in segments)
    assert joined == render(_training_conversation(), STEP_TEMPLATE, add_generation_prompt=False)


def test_training_segments_chatml_multi_turn() -> None:
    messages = [
        Message("system", "S"),
        *_training_conversation(),
        Message("user", "Q2"),
        Message("assistant", "A2"),
    ]
    segments = render_training_example(messages, CHATML_TEMPLATE)
    assert segments == [
        (
            "<|im_start|>system\nS<|im_end|>\n"
            "<|im_start|>user\n<audio_start><audio_patch><audio_end>Q<|im_end|>\n"
            "<|im_start|>assistant\n",
            False,
        ),
        ("<think>\nhmm\n</think>\nA<|im_end|>", True),
        ("\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", False),
        ("A2<|im_end|>", True),
        ("\n", False),
    ]
    joined = "".join(text for text, _ in segments)
    assert joined == render(messages, CHATML_TEMPLATE, add_generation_prompt=False)


# --------------------------------------------------------------------------------------------- audio spans


@pytest.mark.parametrize("template", [STEP_TEMPLATE, CHATML_TEMPLATE])
def test_count_audio_patches_round_trip(template: ChatTemplate) -> None:
    messages = [
        Message("user", [AudioPart([2, 3]), TextPart("and"), AudioPart([1])]),
        Message("assistant", "ok"),
        Message("user", [AudioPart([7])]),
    ]
    assert count_audio_patches(render(messages, template), template) == [2, 3, 1, 7]
    assert count_audio_patches("no audio here", template) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<audio_start><audio_patch>", "has no '<audio_end>'"),
        ("<audio_patch><audio_end>", "outside an audio span"),
        ("x<audio_end>", "outside an audio span"),
        ("<audio_start><audio_start><audio_end>", "opened again"),
        ("<audio_start><audio_patch> <audio_patch><audio_end>", "other text"),
        ("<audio_start><audio_patch>x<audio_end>", "other text"),
    ],
)
def test_count_audio_patches_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        count_audio_patches(text, STEP_TEMPLATE)


def test_count_audio_patches_empty_span() -> None:
    assert count_audio_patches("<audio_start><audio_end>", STEP_TEMPLATE) == [0]


# --------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "prefilled", "expected"),
    [
        ("I hear a dog.\n</think>\nA dog.", True, ("I hear a dog.", "A dog.")),
        ("<think>\nI hear a dog.\n</think>\n\nA dog.", False, ("I hear a dog.", "A dog.")),
        ("  \n<think>\nr\n</think>\na", True, ("r", "a")),
        ("\n<think>r</think>a", False, ("r", "a")),
        ("still thinking\n", True, ("still thinking", "")),
        ("<think>\nstill thinking", False, ("still thinking", "")),
        ("\n</think>\nanswer", True, ("", "answer")),
        ("<think>\n\n</think>\nanswer", False, ("", "answer")),
        ("</think>answer", True, ("", "answer")),
        ("just an answer\n", False, ("", "just an answer\n")),
        ("  just an answer", False, ("", "  just an answer")),
        ("\n\nr\n\n</think>\n\n a\n", True, ("\nr\n", " a\n")),
        ("r</think>a</think>b", True, ("r", "a</think>b")),
        ("a <think> b</think>c", True, ("a <think> b", "c")),
        ("", True, ("", "")),
        ("", False, ("", "")),
    ],
)
def test_parse_reasoning(text: str, prefilled: bool, expected: tuple[str, str]) -> None:
    assert parse_reasoning(text, prefilled_open=prefilled) == expected


def test_parse_inverts_format_assistant() -> None:
    text = format_assistant("line 1\nline 2", "the answer")
    assert parse_reasoning(text, prefilled_open=False) == ("line 1\nline 2", "the answer")


def _stream(chunks: list[str], prefilled: bool) -> tuple[str, str, list[tuple[str, str]]]:
    parser = StreamingReasoningParser(prefilled_open=prefilled)
    deltas = [d for chunk in chunks for d in parser.feed(chunk)] + parser.finish()
    reasoning = "".join(text for kind, text in deltas if kind == "reasoning")
    answer = "".join(text for kind, text in deltas if kind == "answer")
    return reasoning, answer, deltas


def test_streaming_split_close_tag() -> None:
    parser = StreamingReasoningParser()
    assert parser.feed("dog barking\n</th") == [("reasoning", "dog barking")]
    assert parser.feed("ink>\nA dog") == [("answer", "A dog")]
    assert parser.finish() == []


def test_streaming_holds_back_only_tag_prefix() -> None:
    parser = StreamingReasoningParser()
    assert parser.feed("abc") == [("reasoning", "abc")]
    assert parser.feed("<") == []
    assert parser.feed("b") == [("reasoning", "<b")]
    assert parser.feed("\n") == []
    assert parser.feed("x") == [("reasoning", "\nx")]
    assert parser.feed("\n\n") == [("reasoning", "\n")]
    assert parser.finish() == []


def test_streaming_answer_passes_stray_close_tags() -> None:
    parser = StreamingReasoningParser()
    assert parser.feed("r</think>") == [("reasoning", "r")]
    assert parser.feed("\n\n") == []
    assert parser.feed("a</th") == [("answer", "a</th")]
    assert parser.feed("ink>") == [("answer", "ink>")]


def test_streaming_without_block_emits_answer_immediately() -> None:
    parser = StreamingReasoningParser(prefilled_open=False)
    assert parser.feed("<th") == []
    assert parser.feed("e cat") == [("answer", "<the cat")]
    assert parser.finish() == []


def test_streaming_rejects_feed_after_finish() -> None:
    parser = StreamingReasoningParser()
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("x")


_PIECES = st.one_of(
    st.sampled_from(list("<>/thinkab \n")),
    st.sampled_from(["<think>", "</think>", "\n\n", "</th", "<thi", " \n<think>\n"]),
)


@st.composite
def _split_text(draw: st.DrawFn) -> list[str]:
    text = "".join(draw(st.lists(_PIECES, max_size=30)))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=400, deadline=None)
@given(chunks=_split_text(), prefilled=st.booleans())
def test_streaming_matches_whole_parse(chunks: list[str], prefilled: bool) -> None:
    reasoning, answer, deltas = _stream(chunks, prefilled)
    assert (reasoning, answer) == parse_reasoning("".join(chunks), prefilled_open=prefilled)
    assert all(text for _, text in deltas)


@settings(max_examples=200, deadline=None)
@given(text=_split_text(), prefilled=st.booleans())
def test_streaming_char_by_char(text: list[str], prefilled: bool) -> None:
    whole = "".join(text)
    reasoning, answer, _ = _stream(list(whole), prefilled)
    assert (reasoning, answer) == parse_reasoning(whole, prefilled_open=prefilled)


@settings(max_examples=200, deadline=None)
@given(
    reasoning=st.text(alphabet="<>/thinkab \n", max_size=20),
    answer=st.text(alphabet="<>/thinkab \n", max_size=20),
)
def test_format_then_parse_round_trip(reasoning: str, answer: str) -> None:
    parsed = parse_reasoning(format_assistant(reasoning, answer), prefilled_open=False)
    if "</think>" not in reasoning:
        assert parsed == (reasoning, answer.lstrip("\n"))

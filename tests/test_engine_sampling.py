"""Sampling that never fails a batch: extreme settings, validation, and a row whose logits are NaN.

On the random `tiny` preset, in process. A NaN row is made with a forward hook on the output
layer (as a numerical fault of the model would make it), never by replacing our own code.
"""

from __future__ import annotations

import pytest

from audio_r1 import cli
from audio_r1.api import AudioR1
from audio_r1.engine import GenerationConfig, SamplingError, SequenceDone, SequenceFailed, StreamDelta


@pytest.fixture(scope="module")
def tiny(one_thread) -> AudioR1:
    return AudioR1.from_pretrained("tiny")


def tokens(model: AudioR1, configs, questions=("hi", "another question")) -> list[list[int]]:
    prompts = [model.build_prompt(None, q) for q in questions]
    return [r.token_ids for r in model.engine.generate(prompts, configs)]


EXTREME = {
    "temperature=1e-45": dict(temperature=1e-45),
    "temperature=1e-30": dict(temperature=1e-30),
    "top_p=1e-300": dict(temperature=1.0, top_p=1e-300, seed=1),
    "repetition_penalty=1e-300": dict(temperature=1.0, repetition_penalty=1e-300, seed=1),
    "repetition_penalty=1e300": dict(temperature=1.0, repetition_penalty=1e300, seed=1),
    "greedy repetition_penalty=1e-300": dict(repetition_penalty=1e-300),
}


@pytest.mark.parametrize("name", list(EXTREME))
def test_extreme_settings_sample_and_never_fail_the_batch(tiny, name) -> None:
    extreme = GenerationConfig(max_new_tokens=10, ignore_eos=True, **EXTREME[name])
    normal = GenerationConfig(max_new_tokens=10)
    assert all(len(t) == 10 for t in tokens(tiny, extreme))  # one config for the whole batch
    mixed = tokens(tiny, [extreme, normal])  # one per request, as the server batches them
    assert mixed[1] == tokens(tiny, [normal], questions=("another question",))[0]
    assert len(mixed[0]) == 10


def test_tiny_temperature_is_greedy_and_tiny_top_p_keeps_the_top_token(tiny) -> None:
    greedy = tokens(tiny, GenerationConfig(max_new_tokens=12))
    assert GenerationConfig(temperature=1e-45).greedy and not GenerationConfig(temperature=1e-4).greedy
    assert tokens(tiny, GenerationConfig(max_new_tokens=12, temperature=1e-45)) == greedy
    assert tokens(tiny, GenerationConfig(max_new_tokens=12, temperature=1.0, top_p=1e-300, seed=3)) == greedy


@pytest.mark.parametrize("bad", [dict(temperature=float("nan")), dict(temperature=float("inf")),
                                 dict(temperature="0.5"), dict(top_p=float("nan")), dict(top_p=1.5),
                                 dict(repetition_penalty=float("inf")), dict(repetition_penalty=0.0),
                                 dict(top_k=1.5), dict(max_new_tokens=True), dict(temperature=True)])
def test_bad_settings_are_a_value_error_in_the_python_api(tiny, bad) -> None:
    with pytest.raises(ValueError):
        GenerationConfig(**bad)
    with pytest.raises(ValueError):
        tiny.ask(None, "hi", **{"max_new_tokens": 2, **bad})


def nan_row(row: int):
    """A forward hook on the output layer that makes `row`'s logits NaN whenever the batch has it."""
    def hook(module, args, logits):
        if logits.shape[0] > row:
            logits = logits.clone()
            logits[row] = float("nan")
        return logits
    return hook


@pytest.mark.parametrize("greedy", [True, False])
def test_a_row_that_cannot_be_sampled_fails_alone(tiny, greedy) -> None:
    settings = dict(max_new_tokens=8) if greedy else dict(max_new_tokens=8, temperature=0.9, seed=4)
    good, bad = (tiny.build_prompt(None, q) for q in ("a good one", "a broken one"))
    alone = tiny.engine.generate([good], [GenerationConfig(**settings)])[0]
    handle = tiny.model.language_model.get_output_embeddings().register_forward_hook(nan_row(1))
    try:
        events = list(tiny.engine.events([good, bad], [GenerationConfig(**settings)] * 2))
        shared = list(tiny.engine.events([good, bad], GenerationConfig(**settings)))
        with pytest.raises(SamplingError, match="prompt 1"):
            tiny.engine.generate([good, bad], GenerationConfig(**settings))
    finally:
        handle.remove()
    for stream in (events, shared):
        (failed,) = [e for e in stream if isinstance(e, SequenceFailed)]
        assert failed.index == 1 and isinstance(failed.error, SamplingError)
        assert not any(isinstance(e, StreamDelta | SequenceDone) and e.index == 1 for e in stream)
        (done,) = [e for e in stream if isinstance(e, SequenceDone)]
        assert done.index == 0 and len(done.result.token_ids) == 8
    (done,) = [e for e in events if isinstance(e, SequenceDone)]
    assert done.result.token_ids == alone.token_ids  # its own generator: untouched by the broken row


def test_should_stop_ends_decoding_without_results(tiny) -> None:
    prompt = tiny.build_prompt(None, "go")
    steps = []

    def stop() -> bool:
        steps.append(1)
        return len(steps) >= 3

    events = list(tiny.engine.events([prompt], GenerationConfig(max_new_tokens=200), should_stop=stop))
    assert len(steps) == 3
    assert not any(isinstance(e, SequenceDone) for e in events)


def test_cli_ask_with_a_tiny_temperature_answers(capsys) -> None:
    assert cli.main(["ask", "-", "hi", "--model", "tiny", "--max-new-tokens", "4", "--temperature", "1e-45"]) == 0
    assert "answer:" in capsys.readouterr().out
    assert cli.main(["ask", "-", "hi", "--model", "tiny", "--max-new-tokens", "4", "--top-p", "nan"]) == 2
    assert "top_p must be a finite number" in capsys.readouterr().err

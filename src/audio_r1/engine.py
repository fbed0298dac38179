"""Generation: audio-aware prefill, a KV cache, sampling, stop rules and a thinking budget.

The engine takes prompts already rendered to token ids (see `chat.py`) plus each prompt's audio
chunks (see `audio.py`), runs them as one left-padded batch, and returns text with the reasoning
and the answer split apart. The thinking budget works on tokens:

- `max_think_tokens`: once a sequence has thought that long, the engine writes `</think>` for it
  (`\\n</think>\\n`) and lets the answer follow;
- `min_think_tokens`: until a sequence has thought that long, a `</think>` (or end of turn) it
  samples is replaced by "Wait" and it keeps thinking (budget forcing).

A batch takes one `GenerationConfig` for all its prompts or one per prompt, so a server can decode
requests with different sampling settings, seeds, lengths and budgets together. With one config per
prompt every sequence samples from its own generator, so a seeded request gives the same tokens
whatever it is batched with.

Sampling never fails a batch for one row's sake. A temperature below `SAMPLING_EPS` is greedy, top-p
always keeps the most likely token, and logits are made finite before the softmax (NaN never wins,
+inf becomes the largest float), so any setting `GenerationConfig` accepts gives a valid
distribution. A row whose logits are still unusable (a model that produced NaN everywhere) ends on
its own with a `SequenceFailed` event while the rest of the batch goes on; `generate` and `stream`
raise `SamplingError` for it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .audio import AudioChunkFeatures, pad_mels
from .chat import StreamingReasoningParser, parse_reasoning
from .errors import ConfigError, PrefixCacheError, SamplingError
from .fast_decoder import FastDecoder
from .modeling import AudioBatch, AudioR1ForCausalLM
from .tokenizer import SpecialTokenIds

SAMPLING_EPS = 1e-5  # a temperature below this is greedy decoding (vLLM's threshold)


@dataclass
class GenerationConfig:
    """How to sample. A `temperature` of 0 (or below `SAMPLING_EPS`) is greedy decoding.

    Invalid settings raise `ConfigError` (a `ValueError`) here, so the Python API, the CLI and the
    server refuse them the same way: numbers must be finite, `temperature >= 0`, `0 < top_p <= 1`, `top_k >= 0`,
    `repetition_penalty > 0`.
    """

    max_new_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    max_think_tokens: int | None = None
    min_think_tokens: int = 0
    continue_thinking_text: str = "\nWait"
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False  # generate exactly max_new_tokens (benchmarks)

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        for name in ("max_new_tokens", "top_k", "min_think_tokens", "max_think_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (self.temperature >= 0, "temperature must be >= 0"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.top_k >= 0, "top_k must be >= 0"),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0"),
            (self.max_think_tokens is None or self.max_think_tokens >= 0, "max_think_tokens must be >= 0"),
            (self.min_think_tokens >= 0, "min_think_tokens must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.max_think_tokens is not None and self.min_think_tokens > self.max_think_tokens:
            raise ConfigError("min_think_tokens must not exceed max_think_tokens")

    @property
    def greedy(self) -> bool:
        """Whether this config decodes greedily (temperature below `SAMPLING_EPS`)."""
        return self.temperature < SAMPLING_EPS


@dataclass
class Prompt:
    """One request: prompt token ids and the audio chunks whose patches it holds, in order.

    `thinking` says whether the prompt ends inside an open think block (the usual `<think>\\n`
    generation prefix) so the budget applies from the first generated token.
    """

    input_ids: list[int]
    audio: list[AudioChunkFeatures] = field(default_factory=list)
    thinking: bool = True


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    audio_seconds: float = 0.0


@dataclass
class Timings:
    """Seconds for one generate call (shared by the batch); tokens/s over the decode steps."""

    audio_encode_s: float = 0.0
    prefill_s: float = 0.0
    time_to_first_token_s: float = 0.0
    decode_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    total_s: float = 0.0


@dataclass
class GenerationResult:
    text: str
    reasoning: str
    answer: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end of turn / stop token) or "length"
    usage: Usage
    timings: Timings


@dataclass
class StreamDelta:
    """A piece of streamed output for prompt `index`: kind is "reasoning" or "answer"."""

    index: int
    kind: str
    text: str


@dataclass
class SequenceDone:
    """Prompt `index` has finished (its last delta came before this); the batch may go on."""

    index: int
    result: GenerationResult


@dataclass
class SequenceFailed:
    """Prompt `index` could not go on (`error` says why) and gets no result; the batch goes on."""

    index: int
    error: SamplingError


Configs = GenerationConfig | Sequence[GenerationConfig]
# (prompts, max_new_tokens, timings) -> (prompt ids (B, L), a stepper sent next ids, first logits (B, vocab))
_Prefill = Callable[[Sequence[Prompt], int, "Timings"], tuple[Tensor, Iterator[Tensor], Tensor]]


class _Sequence:
    """Per-sequence decoding state: tokens, think budget bookkeeping, forced tokens to emit."""

    def __init__(self, thinking: bool):
        self.tokens: list[int] = []
        self.thinking = thinking
        self.think_tokens = 0
        self.forced: list[int] = []
        self.closing = False  # the forced `</think>` is being written: not counted as thinking
        self.finished = False
        self.finish_reason = "length"
        self.error: str | None = None  # set when sampling failed for this sequence


class Engine:
    """Batched generation over an `AudioR1ForCausalLM` with a KV cache."""

    def __init__(self, model: AudioR1ForCausalLM, tokenizer, special: SpecialTokenIds, fast: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.special = special
        self.fast = fast  # use FastDecoder (static KV cache) when the decoder is Llama/Qwen2-shaped
        self._fast_decoder = None  # built on first use; rebuilt if the decoder object changes (int8)
        self._close_think = self._encode("\n</think>\n")
        self._pad_id = special.end_of_turn

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    # ------------------------------------------------------------------------------- public calls

    def generate(self, prompts: Sequence[Prompt], config: Configs | None = None) -> list[GenerationResult]:
        """Generate for a batch of prompts and return one result each.

        `config` is one `GenerationConfig` for the whole batch or a sequence of one per prompt.
        Raises `SamplingError` if a prompt's sampling failed (see `events` to keep the others).
        """
        *_, (states, timings) = self._decode(prompts, config)  # run to the end; keep the final state
        failed = [i for i, state in enumerate(states) if state.error is not None]
        if failed:
            raise SamplingError(f"prompt {failed[0]}: {states[failed[0]].error}")
        return [self._result(prompt, state, timings) for prompt, state in zip(prompts, states, strict=True)]

    def stream(self, prompts: Sequence[Prompt], config: Configs | None = None) -> Iterator[StreamDelta]:
        """Yield reasoning and answer deltas as tokens arrive (prompts in one batch).

        Raises `SamplingError` when a prompt's sampling fails.
        """
        for event in self.events(prompts, config):
            if isinstance(event, SequenceFailed):
                raise event.error
            if isinstance(event, StreamDelta):
                yield event

    def events(
        self, prompts: Sequence[Prompt], config: Configs | None = None, *, should_stop: Callable[[], bool] | None = None
    ) -> Iterator[StreamDelta | SequenceDone | SequenceFailed]:
        """Like `stream`, plus a `SequenceDone` with the full result as soon as each prompt finishes.

        A server uses it to close a request's response while the rest of its batch goes on. The
        result's timings are those of the batch so far (`total_s` up to that sequence's end). A
        prompt whose sampling fails gets a `SequenceFailed` instead. `should_stop` is asked after
        every decoding step; once it answers True decoding ends, and the prompts not finished by
        then get no final event.
        """
        return self._events(prompts, config, should_stop)

    def _events(self, prompts: Sequence[Prompt], config: Configs | None,
                should_stop: Callable[[], bool] | None = None, prefill: _Prefill | None = None
                ) -> Iterator[StreamDelta | SequenceDone | SequenceFailed]:
        parsers = [StreamingReasoningParser(prefilled_open=p.thinking) for p in prompts]
        decoders = [_IncrementalDecoder(self.tokenizer) for _ in prompts]
        done = [False] * len(prompts)
        start = time.perf_counter()

        def finish(index: int, state: _Sequence, timings: Timings) -> Iterator[StreamDelta | SequenceDone]:
            done[index] = True
            tail = decoders[index].update(self._visible(state.tokens), final=True)
            for kind, text in [*(parsers[index].feed(tail) if tail else []), *parsers[index].finish()]:
                yield StreamDelta(index, kind, text)
            if not timings.total_s:
                timings = dataclasses.replace(timings, total_s=time.perf_counter() - start)
            yield SequenceDone(index, self._result(prompts[index], state, timings))

        states: list[_Sequence] = []
        for states, timings in self._decode(prompts, config, should_stop, prefill):
            for index, state in enumerate(states):
                if done[index]:
                    continue
                if state.error is not None:
                    done[index] = True
                    yield SequenceFailed(index, SamplingError(state.error))
                    continue
                piece = decoders[index].update(self._visible(state.tokens))
                for kind, text in parsers[index].feed(piece) if piece else []:
                    yield StreamDelta(index, kind, text)
                if state.finished:
                    yield from finish(index, state, timings)
        for index, state in enumerate(states):  # finished on the last step (stopped early: unfinished ones stay so)
            if not done[index] and state.finished:
                yield from finish(index, state, timings)

    # ------------------------------------------------------------------------------------ decoding

    @torch.inference_mode()
    def _decode(self, prompts: Sequence[Prompt], config: Configs | None,
                should_stop: Callable[[], bool] | None = None, prefill: _Prefill | None = None):
        """Run the batch; after every step yield (states, timings) so callers can stream.

        Ends early (without the final timings) once `should_stop()` is True after a step. `prefill`
        replaces the batch prefill (a `PrefixCache` continues its own cache).
        """
        if not prompts:
            raise ValueError("no prompts to generate from")
        start = time.perf_counter()
        timings = Timings()
        device = self.model.device
        configs = _per_sequence(config, len(prompts))
        shared = configs[0] if config is None or isinstance(config, GenerationConfig) else None
        sampler = _Sampler(shared, configs, device)
        rules = [_StopRules(c, self.special.end_of_turn, self._encode(c.continue_thinking_text), device)
                 for c in configs]
        max_new_tokens = max(c.max_new_tokens for c in configs)

        input_ids, step_logits, logits = (prefill or self._prefill)(prompts, max_new_tokens, timings)
        timings.prefill_s = time.perf_counter() - start
        history = input_ids.clone() if any(c.repetition_penalty != 1.0 for c in configs) else None
        states = [_Sequence(p.thinking) for p in prompts]
        decode_start = None
        for step in range(max_new_tokens):
            sampled, failed = sampler.sample(logits.float(), history)
            for row in failed:
                if not states[row].finished:
                    states[row].finished, states[row].finish_reason = True, "error"
                    states[row].error = ("its next-token distribution was not finite (the model produced "
                                         "NaN or infinite logits for every token)")
            chosen = [self._apply_budget(state, int(token), cfg, rule.stop_ids, rule.continue_ids)
                      for state, token, cfg, rule in zip(states, sampled.tolist(), configs, rules, strict=True)]
            if step == 0:
                timings.time_to_first_token_s = time.perf_counter() - start
                decode_start = time.perf_counter()
            yield states, timings
            if should_stop is not None and should_stop():
                return
            if all(state.finished for state in states) or step == max_new_tokens - 1:
                break
            next_ids = torch.tensor(chosen, device=device)[:, None]
            if history is not None:
                history = torch.cat([history, next_ids], dim=1)
            logits = step_logits.send(next_ids)
        end = time.perf_counter()
        decode_steps = max(max(len(s.tokens) for s in states) - 1, 0)
        timings.decode_s = end - decode_start if decode_start is not None else 0.0
        timings.decode_tokens_per_s = decode_steps * len(states) / timings.decode_s if timings.decode_s > 0 else 0.0
        timings.total_s = end - start
        yield states, timings

    def _prefill(self, prompts: Sequence[Prompt], max_new_tokens: int, timings: Timings
                 ) -> tuple[Tensor, Iterator[Tensor], Tensor]:
        """Prefill the left-padded batch: (its ids, the stepper, the first logits (B, vocab))."""
        input_ids, attention_mask = self._left_pad([p.input_ids for p in prompts], self.model.device)
        audio = self._audio_batch(prompts)
        t0 = time.perf_counter()
        embeds = self.model.embed_inputs(input_ids, audio)
        timings.audio_encode_s = time.perf_counter() - t0 if audio is not None else 0.0
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        step_logits = self._stepper(embeds, attention_mask, positions, max_new_tokens)
        return input_ids, step_logits, next(step_logits)

    def _apply_budget(
        self, state: _Sequence, token: int, config: GenerationConfig, stop_ids: Tensor, continue_ids: list[int]
    ) -> int:
        """Record the next token of one sequence, applying forced tokens and the thinking budget."""
        if state.finished:
            return self._pad_id
        if state.forced:
            token = state.forced.pop(0)
        elif state.thinking:
            ends_thinking = token == self.special.think_close or bool((stop_ids == token).any())
            if ends_thinking and state.think_tokens < config.min_think_tokens:
                state.forced = list(continue_ids)
                token = state.forced.pop(0)
            elif config.max_think_tokens is not None and state.think_tokens >= config.max_think_tokens:
                state.forced = list(self._close_think)
                state.closing = True
                token = state.forced.pop(0)
        if state.thinking:
            if token == self.special.think_close:
                state.thinking = False
            elif not state.closing:
                state.think_tokens += 1
        state.tokens.append(token)
        if not state.forced and bool((stop_ids == token).any()):
            state.finished = True
            state.finish_reason = "stop"
        elif len(state.tokens) >= config.max_new_tokens:
            state.finished = True  # finish_reason stays "length"
        return token

    def _stepper(self, embeds: Tensor, attention_mask: Tensor, positions: Tensor, max_new_tokens: int):
        """A generator: yields next-token logits (B, vocab) for the prompt, then for each id sent in.

        Runs `FastDecoder` (static cache) when it supports the decoder, else the decoder's own forward
        with a `DynamicCache`.
        """
        lm = self.model.language_model
        next_position = positions[:, -1:] + 1
        if self.fast and FastDecoder.supports(lm):
            if self._fast_decoder is None or self._fast_decoder.lm is not lm:
                self._fast_decoder = FastDecoder(lm)
            decoder = self._fast_decoder
            decoder.start(embeds.shape[0], embeds.shape[1] + max_new_tokens)
            next_ids = yield decoder.prefill(embeds, attention_mask, positions)
            while True:
                next_ids = yield decoder.decode(next_ids, next_position)
                next_position = next_position + 1
        output = lm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions,
                    past_key_values=_new_cache(self.model), use_cache=True, logits_to_keep=1)
        next_ids = yield output.logits[:, -1, :]
        while True:
            attention_mask = torch.cat([attention_mask, torch.ones_like(next_ids)], dim=1)
            output = lm(input_ids=next_ids, attention_mask=attention_mask, position_ids=next_position,
                        past_key_values=output.past_key_values, use_cache=True)
            next_position = next_position + 1
            next_ids = yield output.logits[:, -1, :]

    # ------------------------------------------------------------------------------------- helpers

    def _left_pad(self, sequences: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
        if any(len(s) == 0 for s in sequences):
            raise ValueError("every prompt needs at least one token")
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        return ids.to(device), mask.to(device)

    def _audio_batch(self, prompts: Sequence[Prompt]) -> AudioBatch | None:
        chunks = [chunk for p in prompts for chunk in p.audio]
        if not chunks:
            return None
        mel, valid = pad_mels(chunks)
        return AudioBatch(mel, valid, [len(p.audio) for p in prompts])

    def prefix_cache(self, capacity: int = 512) -> PrefixCache:
        """A KV cache for one sequence that grows as its prompt arrives (see `PrefixCache`)."""
        return PrefixCache(self, capacity)

    def _visible(self, tokens: list[int]) -> list[int]:
        """Tokens that belong to the text (the final end-of-turn token is dropped)."""
        if tokens and tokens[-1] == self.special.end_of_turn:
            return tokens[:-1]
        return tokens

    def _result(self, prompt: Prompt, state: _Sequence, timings: Timings) -> GenerationResult:
        text = self.tokenizer.decode(self._visible(state.tokens), skip_special_tokens=False)
        reasoning, answer = parse_reasoning(text, prefilled_open=prompt.thinking)
        usage = Usage(
            prompt_tokens=len(prompt.input_ids),
            completion_tokens=len(state.tokens),
            reasoning_tokens=state.think_tokens,
            audio_seconds=sum(c.num_samples for c in prompt.audio) / 16000,
        )
        return GenerationResult(text, reasoning, answer, list(state.tokens), state.finish_reason, usage, timings)


class PrefixCache:
    """One sequence's KV cache, kept between calls: a prompt that starts like the cached tokens prefills
    only the rest, and earlier audio is never encoded again.

    `extend(prompt, upto)` prefills `prompt.input_ids[:upto]` past the longest prefix it shares with the
    cache (tokens equal, and the audio chunks of that prefix equal), encoding only the audio chunks
    that are new. Listening to a turn as it arrives is a series of `extend` calls on ever longer prompts
    (each ending after its last audio span); `events(prompt, config)` then prefills the end of the turn
    and decodes from the cache, as `Engine.events` would for `[prompt]`. After decoding, the cache holds
    the prompt again (the answer's tokens are dropped), so the next turn reuses it as far as it matches.

    Needs a decoder `FastDecoder` supports (else `PrefixCacheError`). Not thread-safe: one caller at a time.
    The pieces attend to the cache exactly as one prefill would, but the matrix products run on other
    shapes, so the logits agree up to float rounding (with int8 weights the dynamic activation scales
    are per piece, so expect small differences there).
    """

    def __init__(self, engine: Engine, capacity: int = 512):
        lm = engine.model.language_model
        if not FastDecoder.supports(lm):
            raise PrefixCacheError("a prefix cache needs a Llama/Qwen2-shaped decoder (FastDecoder); this one is not")
        self.engine = engine
        self.decoder = FastDecoder(lm)
        self.decoder.start(1, capacity)
        self.tokens: list[int] = []
        self.chunks: list[AudioChunkFeatures] = []
        self._logits: Tensor | None = None  # after the last cached token
        self.encoded_chunks = 0  # audio chunks ever encoded (each once)
        self.prefilled_tokens = 0  # tokens ever prefilled
        self.encode_s = 0.0
        self.prefill_s = 0.0

    def release(self) -> None:
        """Free the cache memory."""
        self.decoder.release()
        self.tokens, self.chunks, self._logits = [], [], None

    def extend(self, prompt: Prompt, upto: int | None = None) -> int:
        """Prefill `prompt.input_ids[:upto]` beyond the shared prefix; returns how many tokens were prefilled."""
        ids = list(prompt.input_ids[:upto] if upto is not None else prompt.input_ids)
        if not ids:
            raise ValueError("a prompt needs at least one token")
        if self._in_span(ids, len(ids)):
            raise ValueError("extend must not stop inside an audio span")
        keep = self._shared(ids, prompt.audio)
        if keep == len(ids) and keep == len(self.tokens) and self._logits is not None:
            return 0
        if keep == len(ids):  # the prompt is a prefix of the cache: prefill its last token again for its logits
            keep = self._span_start(ids, keep - 1)
        spans = self._spans(ids[:keep])
        self.decoder.truncate(keep)
        self.tokens, self.chunks, self._logits = ids[:keep], self.chunks[:spans], None
        new_ids = ids[keep:]
        new_spans = self._spans(new_ids)
        new_chunks = list(prompt.audio[spans:spans + new_spans])
        if len(new_chunks) != new_spans:
            raise ValueError(f"the prompt has more audio spans than its {len(prompt.audio)} audio chunks")
        self._prefill(new_ids, new_chunks)
        self.tokens += new_ids
        self.chunks += new_chunks
        return len(new_ids)

    def listen(self, prompt: Prompt) -> int:
        """Prefill an open turn's prompt up to the end of its last audio span (the audio heard so far).

        Returns how many tokens were prefilled (0 when the prompt holds no audio past the cache).
        """
        ids = prompt.input_ids
        end = self.engine.special.audio_end
        if end not in ids:
            return 0
        return self.extend(prompt, upto=len(ids) - ids[::-1].index(end))

    def events(self, prompt: Prompt, config: GenerationConfig | None = None, *,
               should_stop: Callable[[], bool] | None = None) -> Iterator[StreamDelta | SequenceDone | SequenceFailed]:
        """Prefill what `prompt` has beyond the cache, then decode from it (`Engine.events` for one prompt)."""
        config = config or GenerationConfig()
        first: list[Tensor] = []  # the prompt's logits, kept for a later call with the same prompt

        def prefill(prompts: Sequence[Prompt], max_new_tokens: int, timings: Timings):
            encode_s = self.encode_s
            self.extend(prompt)
            first.append(self._logits)
            timings.audio_encode_s = self.encode_s - encode_s
            self.decoder.reserve(len(self.tokens) + max_new_tokens)
            ids = torch.tensor([self.tokens], device=self.engine.model.device)
            steps = self._steps(len(self.tokens))
            return ids, steps, next(steps)

        try:
            yield from self.engine._events([prompt], config, should_stop, prefill)
        finally:  # drop the answer's tokens: the cache holds the prompt again
            if self.decoder.length > len(self.tokens):
                self.decoder.truncate(len(self.tokens))
            self._logits = first[0] if first else None

    # ------------------------------------------------------------------------------------- pieces

    def _steps(self, position: int) -> Iterator[Tensor]:
        """A stepper for `Engine._decode`: the cached logits, then one decode step per id sent in."""
        next_ids = yield self._logits
        while True:
            where = torch.tensor([[position]], device=self.engine.model.device)
            next_ids = yield self.decoder.decode(next_ids, where)
            position += 1

    @torch.inference_mode()
    def _prefill(self, ids: list[int], chunks: list[AudioChunkFeatures]) -> None:
        model = self.engine.model
        t0 = time.perf_counter()
        audio = None
        if chunks:
            mel, valid = pad_mels(chunks)
            audio = AudioBatch(mel, valid, [len(chunks)])
        input_ids = torch.tensor([ids], device=model.device)
        embeds = model.embed_inputs(input_ids, audio)
        t1 = time.perf_counter()
        start = len(self.tokens)
        if start + len(ids) > self.decoder.capacity:
            self.decoder.reserve(max(start + len(ids), 2 * self.decoder.capacity))
        positions = torch.arange(start, start + len(ids), device=model.device)[None]
        self._logits = self.decoder.extend(embeds, positions)
        self.encode_s += t1 - t0 if chunks else 0.0
        self.prefill_s += time.perf_counter() - t0
        self.encoded_chunks += len(chunks)
        self.prefilled_tokens += len(ids)

    def _spans(self, ids: list[int]) -> int:
        return ids.count(self.engine.special.audio_start)

    def _in_span(self, ids: list[int], n: int) -> bool:
        """Whether cutting `ids` before position `n` would split an audio span."""
        special = self.engine.special
        for token in reversed(ids[:n]):
            if token == special.audio_end:
                return False
            if token == special.audio_start:
                return True
        return False

    def _span_start(self, ids: list[int], n: int) -> int:
        """`n`, or the start of the audio span that position `n` would cut."""
        while n > 0 and self._in_span(ids, n):
            n -= 1
        return n

    def _shared(self, ids: list[int], audio: Sequence[AudioChunkFeatures]) -> int:
        """How many leading tokens of `ids` (with `audio`) the cache holds already."""
        n = 0
        for cached, token in zip(self.tokens, ids):  # noqa: B905 - the shorter one bounds the prefix
            if cached != token:
                break
            n += 1
        n = self._span_start(ids, n)
        for i in range(self._spans(ids[:n])):
            if i >= len(audio) or not _same_chunk(self.chunks[i], audio[i]):
                n = _nth(ids, self.engine.special.audio_start, i)
                break
        return n


def _same_chunk(a: AudioChunkFeatures, b: AudioChunkFeatures) -> bool:
    return a is b or (a.num_samples == b.num_samples and a.valid_frames == b.valid_frames
                      and a.mel.shape == b.mel.shape and bool(torch.equal(a.mel, b.mel)))


def _nth(ids: list[int], token: int, n: int) -> int:
    """The position of the `n`-th (from 0) `token` in `ids`."""
    seen = -1
    for position, value in enumerate(ids):
        if value == token:
            seen += 1
            if seen == n:
                return position
    raise ValueError(f"fewer than {n + 1} of token {token}")


def _new_cache(model: AudioR1ForCausalLM):
    from transformers import DynamicCache  # transformers: slow to import, only this fallback needs it

    return DynamicCache(config=model.language_model.config)


def _per_sequence(config: Configs | None, n: int) -> list[GenerationConfig]:
    """One config per prompt from a single config (or None: the defaults) or a sequence of them."""
    if config is None or isinstance(config, GenerationConfig):
        return [config or GenerationConfig()] * n
    configs = list(config)
    if len(configs) != n:
        raise ConfigError(f"got {len(configs)} generation configs for {n} prompts; give one, or one per prompt")
    for i, c in enumerate(configs):
        if not isinstance(c, GenerationConfig):
            raise TypeError(f"config[{i}] must be a GenerationConfig, got {type(c).__name__}")
    return configs


class _StopRules:
    """Per-sequence token ids that end a turn, and the ids that replace an early `</think>`."""

    def __init__(self, config: GenerationConfig, end_of_turn: int, continue_ids: list[int], device: torch.device):
        stops = [] if config.ignore_eos else [end_of_turn, *config.stop_token_ids]
        self.stop_ids = torch.tensor(stops, dtype=torch.long, device=device)
        self.continue_ids = continue_ids


def _new_generator(seed: int | None, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
    return generator


class _Sampler:
    """Samples the next token of every row.

    With one shared config (`shared`) the batch samples as a whole from one generator, as it always
    has. With one config per prompt, rows with equal sampling settings are transformed together and
    each row draws from its own generator, seeded by its own config. `sample` also returns the rows
    whose distribution was unusable; they get a placeholder token and must be ended by the caller.
    """

    def __init__(self, shared: GenerationConfig | None, configs: list[GenerationConfig], device: torch.device):
        self.shared = shared
        self.configs = configs
        if shared is not None:
            self.generators = [_new_generator(shared.seed, device)]
            return
        self.generators = [_new_generator(c.seed, device) for c in configs]
        groups: dict[tuple, list[int]] = {}
        for row, c in enumerate(configs):
            key = (True, c.repetition_penalty) if c.greedy else (False, c.temperature, c.top_p, c.top_k,
                                                                 c.repetition_penalty)
            groups.setdefault(key, []).append(row)
        self.groups = list(groups.values())

    def sample(self, logits: Tensor, history: Tensor | None) -> tuple[Tensor, list[int]]:
        """(next token per row, rows that could not be sampled)."""
        if self.shared is not None:
            tokens, bad = _sample(logits, self.shared, self.generators[0], history)
            return tokens, bad.nonzero().flatten().tolist()
        out = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
        failed: list[int] = []
        for rows in self.groups:
            config = self.configs[rows[0]]
            index = torch.tensor(rows, device=logits.device)
            group_history = history.index_select(0, index) if history is not None else None
            group_logits = logits.index_select(0, index)
            probs = _probs(group_logits, config, group_history)
            if probs is None:  # greedy
                tokens, bad = _greedy(group_logits, config, group_history)
                out[index] = tokens
                failed += [row for row, b in zip(rows, bad.tolist(), strict=True) if b]
                continue
            bad = _unusable(probs).tolist()
            for j, row in enumerate(rows):
                if bad[j]:
                    out[row] = 0
                    failed.append(row)
                else:
                    out[row] = torch.multinomial(probs[j : j + 1], 1, generator=self.generators[row])[0, 0]
        return out, sorted(failed)


def _penalise(logits: Tensor, config: GenerationConfig, history: Tensor | None) -> Tensor:
    """Repetition penalty (CTRL): shrink the logits of tokens already in the sequence."""
    if history is None or config.repetition_penalty == 1.0:
        return logits
    seen = torch.gather(logits, 1, history)
    penalised = torch.where(seen > 0, seen / config.repetition_penalty, seen * config.repetition_penalty)
    return logits.scatter(1, history, penalised)


def _finite(logits: Tensor) -> Tensor:
    """NaN becomes -inf (never chosen) and +inf the largest float, so a softmax stays defined.

    Extreme settings (a repetition penalty of 1e-300, a tiny temperature) overflow to +inf, and two
    +inf in a row would make the softmax NaN; as the largest float they tie instead.
    """
    return torch.nan_to_num(logits, nan=float("-inf"), posinf=torch.finfo(logits.dtype).max, neginf=float("-inf"))


def _unusable(probs: Tensor) -> Tensor:
    """(B,) bool: rows that are no probability distribution (NaN, inf or all zero)."""
    return ~torch.isfinite(probs).all(dim=-1) | ~(probs.sum(dim=-1) > 0)


def _greedy(logits: Tensor, config: GenerationConfig, history: Tensor | None) -> tuple[Tensor, Tensor]:
    """(argmax token per row, rows without a single finite logit)."""
    scores = _finite(_penalise(logits, config, history))
    return scores.argmax(dim=-1), ~(scores > float("-inf")).any(dim=-1)


def _sample(logits: Tensor, config: GenerationConfig, generator: torch.Generator,
            history: Tensor | None) -> tuple[Tensor, Tensor]:
    """(next token per row, unusable rows) from (B, V) logits: penalty, temperature, top-k, top-p."""
    probs = _probs(logits, config, history)
    if probs is None:
        return _greedy(logits, config, history)
    bad = _unusable(probs)
    if bad.any():  # a placeholder distribution, so the other rows still sample (the caller ends these)
        probs = probs.clone()
        probs[bad] = 0.0
        probs[bad, 0] = 1.0
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1), bad


def _probs(logits: Tensor, config: GenerationConfig, history: Tensor | None) -> Tensor | None:
    """Sampling distribution per row after penalty, temperature, top-k and top-p; None when greedy."""
    if config.greedy:
        return None
    logits = _penalise(logits, config, history)
    logits = _finite(logits / config.temperature)
    if config.top_k and config.top_k < logits.shape[-1]:
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= config.top_p  # keep the token crossing top_p
        drop[:, 0] = False  # and always the most likely one (a top_p that rounds to 0 in float32 kept none)
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    return logits.softmax(dim=-1)


class _IncrementalDecoder:
    """Turns a growing token list into new text, holding back incomplete UTF-8 characters."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.emitted = ""

    def update(self, tokens: list[int], final: bool = False) -> str:
        """New text since the last call; `final=True` also releases a trailing partial character."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=False)
        if not final and (text.endswith("\ufffd") or not text.startswith(self.emitted)):
            return ""
        if not text.startswith(self.emitted):  # a held-back character resolved differently
            return ""
        new, self.emitted = text[len(self.emitted):], text
        return new

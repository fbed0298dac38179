"""`AudioR1`: the one-object Python API. Load a model, ask it about a sound, read its reasoning.

    from audio_r1 import AudioR1
    model = AudioR1.from_pretrained("smol")
    reply = model.ask("clip.wav", "Is the second tone higher than the first?", max_think_tokens=256)
    print(reply.reasoning, reply.answer, reply.timings)

    reply = model.chat([{"role": "user", "content": [
        {"type": "text", "text": "Listen, then answer: how many beeps?"},
        {"type": "audio_url", "audio_url": {"url": "clip.wav"}},
    ]}])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import load_audio, load_clip
from .chat import CHATML_TEMPLATE, STEP_TEMPLATE
from .checkpoints import load_pretrained, save_pretrained
from .engine import Engine, GenerationConfig, Prompt, StreamDelta, Timings, Usage
from .errors import CheckpointError, ConfigError, PromptError
from .modeling import AudioR1ForCausalLM
from .pretrained import BUILT_IN, build_model, build_smol
from .processing import AudioClip, Processor, data_url_bytes, decode_base64, openai_turns
from .quantization import quantize_int8
from .tokenizer import SpecialTokenIds

# A file path, encoded bytes, a 16 kHz array, or an (array, sample_rate) pair.
AudioSource = str | Path | bytes | np.ndarray | torch.Tensor | tuple
OFFICIAL = ("step-audio-r1", "step-audio-2-mini")


@dataclass
class Reply:
    """What the model said: its reasoning (the think block), its answer, and what it cost."""

    reasoning: str
    answer: str
    text: str
    finish_reason: str
    usage: Usage
    timings: Timings

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AudioR1:
    """A model with its tokenizer and engine: `ask` questions about audio."""

    def __init__(self, model: AudioR1ForCausalLM, tokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        self.special = SpecialTokenIds.from_tokenizer(tokenizer, self.config.chat_format)
        self.template = STEP_TEMPLATE if self.config.chat_format == "step" else CHATML_TEMPLATE
        self.engine = Engine(model, tokenizer, self.special)
        self.processor = Processor(self.config, tokenizer, self.template)

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "smol",
        *,
        dtype: torch.dtype | None = None,
        quantize: str | None = None,
        progress: bool = True,
    ) -> AudioR1:
        """A built-in model by name ("smol", "tiny"), a model directory (ours or official), or a smol
        delta file (`….safetensors`, as `train sft` exports it) merged into smol-base.

        `quantize="int8"` stores the decoder's linear layers as int8 (CPU, dynamic activations).
        """
        name = str(name_or_path)
        if name in BUILT_IN:
            model, tokenizer = build_model(name, progress=progress)
        elif name in OFFICIAL and not Path(name).exists():
            raise CheckpointError(
                f"{name!r} weights are not bundled and nothing is downloaded at run time: download the "
                "official checkpoint directory yourself and pass its path"
            )
        elif name.endswith(".safetensors") and Path(name).is_file():
            model, tokenizer = build_smol(progress=progress, delta=Path(name))
        else:
            model, tokenizer = load_pretrained(name, dtype=dtype)
        if dtype is not None:
            model = model.to(dtype)
        if quantize is not None:
            if quantize != "int8":
                raise ConfigError(f"unknown quantize {quantize!r}; only 'int8' is supported")
            quantize_int8(model)
        return cls(model, tokenizer)

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_pretrained(self.model, self.tokenizer, directory)

    # ------------------------------------------------------------------------------------ prompts

    def build_prompt(
        self, audio: AudioSource | None, question: str, *, system: str | None = None, think: bool = True
    ) -> Prompt:
        """Tokenised prompt + audio features for one question (audio first, then the question)."""
        clip = AudioClip(load_clip(audio), "audio") if audio is not None else None
        return self.processor.ask_prompt(clip, question, system=system, think=think)

    def chat_prompt(self, messages: Sequence[dict[str, Any]], *, think: bool = True) -> Prompt:
        """The prompt of an OpenAI-style conversation (see `chat`)."""
        return self.processor.prompt(openai_turns(messages, _read_audio_part), think=think)

    # --------------------------------------------------------------------------------------- asks

    def ask(
        self, audio: AudioSource | None, question: str, *, system: str | None = None, think: bool = True, **gen: Any
    ) -> Reply:
        """Answer one question about one clip. `gen` takes `GenerationConfig` fields."""
        return self.ask_batch([(audio, question)], system=system, think=think, **gen)[0]

    def ask_batch(
        self,
        items: Sequence[tuple[AudioSource | None, str]],
        *,
        system: str | None = None,
        think: bool = True,
        **gen: Any,
    ) -> list[Reply]:
        """Answer several (audio, question) pairs in one batch."""
        prompts = [self.build_prompt(a, q, system=system, think=think) for a, q in items]
        results = self.engine.generate(prompts, GenerationConfig(**gen))
        return [Reply(r.reasoning, r.answer, r.text, r.finish_reason, r.usage, r.timings) for r in results]

    def chat(self, messages: Sequence[dict[str, Any]], *, think: bool = True, **gen: Any) -> Reply:
        """Answer an OpenAI-style conversation; content parts keep the order they are given in.

        A message's `content` is a string or a list of parts: `{"type": "text", "text": ...}`,
        `{"type": "input_audio", "input_audio": {"data": <base64 of a file>}}`, `{"type": "audio_url",
        "audio_url": {"url": <path, file:// or base64 data: URL>}}`, or (Python only) `{"type": "audio",
        "audio": <anything `ask` takes>}`. Remote URLs are not fetched here. A last assistant message
        is continued, as the server does. `gen` takes `GenerationConfig` fields.
        """
        result = self.engine.generate([self.chat_prompt(messages, think=think)], GenerationConfig(**gen))[0]
        return Reply(result.reasoning, result.answer, result.text, result.finish_reason, result.usage, result.timings)

    def stream(
        self, audio: AudioSource | None, question: str, *, system: str | None = None, think: bool = True, **gen: Any
    ) -> Iterator[StreamDelta]:
        """Yield reasoning and answer deltas for one question as they are generated."""
        prompt = self.build_prompt(audio, question, system=system, think=think)
        yield from self.engine.stream([prompt], GenerationConfig(**gen))


# ------------------------------------------------------------------------------------ audio inputs


def _read_audio_part(part: dict[str, Any], where: str) -> AudioClip:
    """One audio content part of `AudioR1.chat` as a clip (files and inline data only)."""
    kind = part["type"]
    if kind == "audio":
        return AudioClip(load_clip(part.get("audio")), where)
    body = part.get(kind)
    if kind == "input_audio" and isinstance(body, dict) and isinstance(body.get("data"), str):
        return AudioClip(load_audio(decode_base64(body["data"], f"{where}.input_audio.data")), where)
    if kind == "audio_url" and isinstance(body, dict) and isinstance(body.get("url"), str):
        url = body["url"]
        if url[:5].lower() == "data:":
            return AudioClip(load_audio(data_url_bytes(url, f"{where}.audio_url.url")), where)
        if url.lower().startswith(("http://", "https://")):
            raise PromptError(f"{where}: remote audio is not fetched by the Python API; download it, "
                              "or serve the model with --allow-remote-audio")
        path = url[len("file://"):] if url.lower().startswith("file://") else url
        return AudioClip(load_audio(path), path)
    raise PromptError(f"{where}: expected {{'{kind}': {{'data' or 'url': ...}}}}")

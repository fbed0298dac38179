"""Turn SFT records into token ids, loss labels and audio features, and batch them.

A record is one training conversation as the data suite writes it (`data/traces.py`):
`{"id", "audio" (path or null), "prompt" (user text), "reasoning", "answer_text"}`. The record
becomes turns and `processing.Processor.training_example` tokenises them (only the assistant's
tokens carry labels; truncation keeps the prompt whole), so SFT sees prompts exactly as the model
is asked at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..audio import load_audio, pad_mels
from ..chat import DEFAULT_SYSTEM_PROMPT, ChatTemplate, format_assistant
from ..config import AudioR1Config
from ..errors import AudioR1Error, PromptError
from ..modeling import AudioBatch
from ..processing import IGNORE, AudioClip, Processor, TrainingExample, Turn

__all__ = ["IGNORE", "Batch", "RecordError", "TrainingExample", "build_example", "collate"]


class RecordError(AudioR1Error, ValueError):
    """An SFT record cannot be turned into a training example."""


@dataclass
class Batch:
    """Right-padded tensors for a forward pass with labels."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    audio: AudioBatch | None

    @property
    def label_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on `device` (the model's: accelerate does not move our dataclass)."""
        audio = self.audio.to(device) if self.audio is not None else None
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device), audio)


def build_example(
    record: dict[str, Any],
    tokenizer,
    template: ChatTemplate,
    config: AudioR1Config,
    *,
    base_dir: Path | None = None,
    max_length: int = 1024,
    system: str = DEFAULT_SYSTEM_PROMPT,
) -> TrainingExample:
    """Tokenise one record with `processing.Processor`; loss labels only on the assistant turn."""
    record_id = str(record.get("id", "?"))
    prompt = record.get("prompt") or record.get("question")
    if not isinstance(prompt, str) or not prompt:
        raise RecordError(f"record {record_id}: needs a non-empty 'prompt'")
    answer = record.get("answer_text")
    if not isinstance(answer, str):
        raise RecordError(f"record {record_id}: needs an 'answer_text' string")
    content: list[str | AudioClip] = []
    if record.get("audio"):
        path = Path(record["audio"])
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        content.append(AudioClip(load_audio(path), str(path)))
    content.append(prompt)
    turns = [Turn("system", system), Turn("user", content),
             Turn("assistant", format_assistant(record.get("reasoning") or "", answer, template=template))]
    try:
        return Processor(config, tokenizer, template).training_example(turns, max_length=max_length,
                                                                      example_id=record_id)
    except PromptError as error:
        raise RecordError(f"record {record_id}: {error}") from None


def collate(examples: Sequence[TrainingExample], pad_id: int) -> Batch:
    """Right-pad a list of examples into one batch (padding positions get no loss)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(example.labels)
    chunks = [c for e in examples for c in e.audio]
    audio = None
    if chunks:
        mel, valid = pad_mels(chunks)
        audio = AudioBatch(mel, valid, [len(e.audio) for e in examples])
    return Batch(ids, mask, labels, audio)

"""Tokenizers and the ids of the special tokens the model relies on.

Ids are always looked up in the tokenizer that ships with a checkpoint, never hard-coded: the
Step-Audio release does not document the ids of `<think>` or `<|BOT|>`, and our own presets add
the audio tokens to decoders that never had them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import AUDIO_END, AUDIO_PATCH, AUDIO_START, THINK_CLOSE, THINK_OPEN
from .errors import TokenizerError

STEP_BOT = "<|BOT|>"
STEP_EOT = "<|EOT|>"
CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"

AUDIO_AND_THINK_TOKENS = [AUDIO_START, AUDIO_END, AUDIO_PATCH, THINK_OPEN, THINK_CLOSE]
STEP_SPECIAL_TOKENS = [STEP_EOT, STEP_BOT, *AUDIO_AND_THINK_TOKENS]
CHATML_SPECIAL_TOKENS = [CHATML_START, CHATML_END, *AUDIO_AND_THINK_TOKENS]


@dataclass(frozen=True)
class SpecialTokenIds:
    """Ids of the tokens the model and engine need, read from a tokenizer."""

    audio_start: int
    audio_patch: int
    audio_end: int
    think_open: int
    think_close: int
    end_of_turn: int  # stops generation: <|EOT|> (Step) or <|im_end|> (ChatML)

    @classmethod
    def from_tokenizer(cls, tokenizer, chat_format: str) -> SpecialTokenIds:
        end_token = STEP_EOT if chat_format == "step" else CHATML_END
        names = {
            "audio_start": AUDIO_START,
            "audio_patch": AUDIO_PATCH,
            "audio_end": AUDIO_END,
            "think_open": THINK_OPEN,
            "think_close": THINK_CLOSE,
            "end_of_turn": end_token,
        }
        vocab = tokenizer.get_vocab()
        missing = [token for token in names.values() if token not in vocab]
        if missing:
            raise TokenizerError(
                f"the tokenizer has no {missing}; the {chat_format!r} chat format needs them as single tokens"
            )
        return cls(**{field: vocab[token] for field, token in names.items()})


def build_byte_tokenizer(chat_format: str = "step"):
    """A byte-level tokenizer (256 byte tokens + the format's special tokens), built in memory.

    Used by the `tiny` preset and by tests: no files, no downloads, every string encodable.
    """
    from tokenizers import (  # tokenizers/transformers: slow to import, only this path needs it
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
    )
    from transformers import PreTrainedTokenizerFast  # transformers: slow to import, only this path needs it

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    specials = STEP_SPECIAL_TOKENS if chat_format == "step" else CHATML_SPECIAL_TOKENS
    end_token = STEP_EOT if chat_format == "step" else CHATML_END
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=end_token, pad_token=end_token)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in specials if t != end_token]})
    return tokenizer


def add_audio_tokens(tokenizer, chat_format: str) -> int:
    """Add the audio and think tokens a decoder lacks; returns how many were added."""
    specials = STEP_SPECIAL_TOKENS if chat_format == "step" else CHATML_SPECIAL_TOKENS
    missing = [token for token in specials if token not in tokenizer.get_vocab()]
    if not missing:
        return 0
    return tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)

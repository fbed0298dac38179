"""The OpenAI chat-completions wire format: request models, response builders and the error shape.

Requests are validated strictly (a string is not a number, a number is not a bool) so malformed input
is refused with a 4xx and an OpenAI-shaped error, ``{"error": {"message", "type", "param", "code"}}``,
instead of being half-understood. Fields the OpenAI client sends that change nothing here (``user``,
``n=1``, ``logprobs=false`` ...) are accepted; ones that would change the output but are not
supported (``n>1``, ``tools``, ``stop`` strings ...) are refused with a message that says so.

The think block is returned under both of vLLM's names: ``reasoning`` (what vLLM returns now, and
what current clients read) and ``reasoning_content`` (the older name, which vLLM has since removed),
in ``choices[0].message`` and in every streamed ``delta`` that carries reasoning. An earlier assistant
turn of a request may carry its reasoning under either name; it is accepted and not shown to the model.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "m4a")  # a hint only: the decoder detects the format


class ApiError(Exception):
    """An error the client caused (or, for 5xx, the server): becomes an OpenAI-shaped JSON response."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers  # extra response headers (Retry-After, WWW-Authenticate)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# ------------------------------------------------------------------------------------------ request


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class TextContent(_Strict):
    type: Literal["text"]
    text: str


class InputAudio(_Strict):
    data: str = Field(description="base64 of an encoded audio file")
    format: Literal[AUDIO_FORMATS] | None = None  # type: ignore[valid-type]


class InputAudioContent(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class AudioUrl(_Strict):
    url: str


class AudioUrlContent(_Strict):
    type: Literal["audio_url"]
    audio_url: AudioUrl


ContentPart = Annotated[TextContent | InputAudioContent | AudioUrlContent, Field(discriminator="type")]


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    # an earlier turn's reasoning, under vLLM's new or old name: accepted, not shown to the model
    reasoning: str | None = None
    reasoning_content: str | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatTemplateKwargs(_Strict):
    enable_thinking: bool = True


MAX_SEED = 2**63 - 1


class ChatCompletionRequest(_Strict):
    """`POST /v1/chat/completions`. The thinking budget is `thinking_token_budget` (vLLM's name)."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=512)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=2**31)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=2**31)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1, le=2**31)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    seed: int | None = Field(default=None, ge=-MAX_SEED - 1, le=MAX_SEED)
    n: int = Field(default=1, ge=1, le=1)
    thinking_token_budget: int | None = Field(default=None, ge=0, le=2**31)
    max_think_tokens: int | None = Field(default=None, ge=0, le=2**31)  # alias of thinking_token_budget
    min_think_tokens: int | None = Field(default=None, ge=0, le=2**31)
    chat_template_kwargs: ChatTemplateKwargs | None = None
    # accepted so that standard clients work; anything that would change the output is refused below
    stop: str | list[str] | None = None
    tools: list[Any] | None = None
    logprobs: bool | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = None

    def unsupported(self) -> tuple[str, str] | None:
        """(param, message) for a field set to something this server cannot honour, else None."""
        if self.stop:
            return "stop", "stop strings are not supported; generation stops at the end of the turn"
        if self.tools:
            return "tools", "tools are not supported by this model"
        if self.logprobs:
            return "logprobs", "logprobs are not supported"
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                return name, f"{name} is not supported; use repetition_penalty"
        return None

    @property
    def think(self) -> bool:
        return self.chat_template_kwargs is None or self.chat_template_kwargs.enable_thinking

    @property
    def thinking_budget(self) -> int | None:
        if self.thinking_token_budget is not None:
            return self.thinking_token_budget
        return self.max_think_tokens


def parse_request(body: bytes) -> ChatCompletionRequest:
    """Validate a JSON body; any problem becomes a 400 naming the offending field."""
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except ValidationError as error:
        raise validation_error(error) from None


def validation_error(error: ValidationError) -> ApiError:
    """The first problem of a pydantic error, as a 400 with `param` in OpenAI's dotted/indexed form."""
    errors = error.errors(include_url=False, include_input=False)
    first = max(errors, key=lambda e: len(e["loc"]))  # the most specific branch of a union
    if first["type"] == "json_invalid":
        return ApiError(400, f"the body is not valid JSON: {first['msg']}", code="invalid_json")
    param = _param(first["loc"])
    where = f"{param}: " if param else ""
    return ApiError(400, f"{where}{first['msg']}", param=param or None, code="invalid_value")


def _param(loc: tuple) -> str:
    out = ""
    after_index = False
    for part in loc:
        if isinstance(part, str) and (part == "str" or "[" in part):
            continue  # the name of a union branch (`str`, `list[...]`), not a field
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (after_index and part in ("text", "input_audio", "audio_url")):
            out += ("." if out else "") + str(part)
        # else: the discriminator's tag right after an index; `content[1].text` reads better without it
        after_index = isinstance(part, int)
    return out


# ----------------------------------------------------------------------------------------- response


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_dict(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def completion(id: str, model: str, reasoning: str, answer: str, finish_reason: str,
               usage: dict[str, Any]) -> dict[str, Any]:
    """A whole `chat.completion`; the think block is `message.reasoning` and `message.reasoning_content`."""
    message = {"role": "assistant", "content": answer, **reasoning_fields(reasoning)}
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage,
    }


def reasoning_fields(text: str) -> dict[str, str]:
    """The think block under vLLM's current name (`reasoning`) and its former one (`reasoning_content`)."""
    return {"reasoning": text, "reasoning_content": text}


def chunk(id: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
          usage: dict[str, Any] | None = None, include_choice: bool = True) -> dict[str, Any]:
    """One `chat.completion.chunk`: `delta` holds `role`, `content` or `reasoning_fields(...)`."""
    out: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    out["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}] \
        if include_choice else []
    if usage is not None:
        out["usage"] = usage
    return out


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "audio-r1"}

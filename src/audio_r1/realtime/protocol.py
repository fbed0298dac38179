"""The OpenAI Realtime wire format (GA event names): client events parsed strictly, server events built.

Client events are JSON text frames with a `type`. Each supported type has a model here; a frame that is
not JSON, not an object, of an unknown type or with a bad field becomes a `ProtocolError`, which the
session answers with an `error` event (the session lives on). Server events are plain dicts built by
the functions below, so the session never spells an event by hand.

The one extension event, `audio_r1.reasoning.delta`, carries the think block as it is generated
(OpenAI's protocol has no reasoning event; the `audio_r1.` prefix cannot clash with one it adds).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AudioR1Error

REASONING_DELTA = "audio_r1.reasoning.delta"

# OpenAI client events this server knows but does not implement: refused by name, not as unknown.
UNSUPPORTED = ("conversation.item.truncate", "conversation.item.delete", "conversation.item.retrieve",
               "output_audio_buffer.clear", "transcription_session.update")


class ProtocolError(AudioR1Error, ValueError):
    """A client event the server cannot act on; becomes an `error` event (`code`, `param`, `event_id`)."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None,
                 event_id: str | None = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.event_id = event_id
        self.type = type


# ------------------------------------------------------------------------------------ client events


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class AudioFormat(_Strict):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class TurnDetectionPatch(_Strict):
    type: Literal["server_vad"] = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class AudioInputPatch(_Strict):
    format: AudioFormat | None = None
    turn_detection: TurnDetectionPatch | None = None  # null switches to manual commits (see model_fields_set)


class AudioOutputPatch(_Strict):
    format: AudioFormat | None = None
    voice: str | None = None
    speed: float | None = Field(default=None, gt=0.25, le=4.0)


class AudioPatch(_Strict):
    input: AudioInputPatch | None = None
    output: AudioOutputPatch | None = None


class Extensions(_Strict):
    """`session.audio_r1`: settings of this server that OpenAI's session has no field for."""

    thinking_token_budget: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    seed: int | None = None
    listen_while_thinking: bool | None = None


class SessionPatch(_Strict):
    type: Literal["realtime"] | None = None
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[Literal["audio", "text"]] | None = Field(default=None, min_length=1, max_length=1)
    max_output_tokens: int | Literal["inf"] | None = None
    audio: AudioPatch | None = None
    audio_r1: Extensions | None = None


class ContentPart(_Strict):
    type: Literal["input_text", "text", "output_text", "input_audio", "output_audio"]
    text: str | None = None
    audio: str | None = None  # base64 PCM16 at 24 kHz (input_audio)
    transcript: str | None = None


class MessageItem(_Strict):
    type: Literal["message"] = "message"
    id: str | None = Field(default=None, max_length=64)
    role: Literal["user", "system", "assistant"]
    content: list[ContentPart] = Field(min_length=1)


class ResponseParams(_Strict):
    instructions: str | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    output_modalities: list[Literal["audio", "text"]] | None = Field(default=None, min_length=1, max_length=1)
    conversation: Literal["auto", "none"] | None = None


class ClientEvent(_Strict):
    type: str
    event_id: str | None = None


class SessionUpdate(ClientEvent):
    session: SessionPatch


class InputAudioBufferAppend(ClientEvent):
    audio: str


class InputAudioBufferCommit(ClientEvent):
    pass


class InputAudioBufferClear(ClientEvent):
    pass


class ConversationItemCreate(ClientEvent):
    item: MessageItem
    previous_item_id: str | None = None


class ResponseCreate(ClientEvent):
    response: ResponseParams | None = None


class ResponseCancel(ClientEvent):
    response_id: str | None = None


CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    "session.update": SessionUpdate,
    "input_audio_buffer.append": InputAudioBufferAppend,
    "input_audio_buffer.commit": InputAudioBufferCommit,
    "input_audio_buffer.clear": InputAudioBufferClear,
    "conversation.item.create": ConversationItemCreate,
    "response.create": ResponseCreate,
    "response.cancel": ResponseCancel,
}


def parse_client_event(frame: str) -> ClientEvent:
    """One client event from a text frame, or a `ProtocolError` saying what is wrong with it."""
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError("the event is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ProtocolError("an event must be a JSON object", code="invalid_json")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("the event has no string 'type'", code="missing_required_parameter", param="type",
                            event_id=event_id)
    if kind in UNSUPPORTED:
        raise ProtocolError(f"{kind!r} is not supported by this server", code="unsupported_event", param="type",
                            event_id=event_id)
    model = CLIENT_EVENTS.get(kind)
    if model is None:
        raise ProtocolError(f"unknown event type {kind!r}", code="unknown_event_type", param="type",
                            event_id=event_id)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ProtocolError(f"{param}: {first.get('msg')}", code="invalid_value", param=param,
                            event_id=event_id) from None
    except RecursionError:
        raise ProtocolError("the event is nested too deeply", code="invalid_json", event_id=event_id) from None


# ------------------------------------------------------------------------------------ server events


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:22]}"


def event(type: str, **fields: Any) -> dict[str, Any]:
    """A server event: its type, a fresh `event_id`, and its fields."""
    return {"type": type, "event_id": new_id("event"), **fields}


def error_event(message: str, *, type: str = "invalid_request_error", code: str | None = None,
                param: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    return event("error", error={"type": type, "code": code, "message": message, "param": param,
                                 "event_id": event_id})


def protocol_error_event(error: ProtocolError) -> dict[str, Any]:
    return error_event(error.message, type=error.type, code=error.code, param=error.param, event_id=error.event_id)


def user_item(item_id: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
            "content": content}


def message_item(item_id: str, role: str, content: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "message", "status": status, "role": role,
            "content": content}


def response_object(response_id: str, status: str, *, output: list[dict[str, Any]] | None = None,
                    modalities: list[str], max_output_tokens: int | str, voice: str,
                    status_details: dict[str, Any] | None = None, usage: dict[str, Any] | None = None,
                    ) -> dict[str, Any]:
    """A GA `realtime.response`."""
    return {
        "id": response_id, "object": "realtime.response", "status": status, "status_details": status_details,
        "output": output or [], "conversation_id": None, "output_modalities": modalities,
        "max_output_tokens": max_output_tokens, "metadata": None, "usage": usage,
        "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": voice}},
    }


def usage_object(input_tokens: int, output_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    return {"total_tokens": input_tokens + output_tokens, "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": output_tokens, "audio_tokens": 0,
                                     "reasoning_tokens": reasoning_tokens}}


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)

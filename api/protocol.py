"""The OpenAI shapes: what a Chat Completions request may say, and what is answered. No ORM, no I/O."""

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

# Roles whose text is instructions: the models here take none of their own (o1 has no system
# message), so they are put before the user message that follows, where the UI shows them too.
INSTRUCTIONS = ("system", "developer")
FINISH_REASONS = ("stop", "length", "content_filter")


class ApiError(Exception):
    """An OpenAI-shaped error: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def as_json(self) -> dict:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    history: list[tuple[str, str]]  # earlier turns, (role, text), oldest first
    text: str  # the user's last message
    stream: bool
    include_usage: bool


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def _content(content: object, param: str) -> str:
    """Text, or a list of text parts; images, audio and files are refused."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad("Only text content is supported.", param)
            texts.append(part["text"])
        return "\n".join(texts)
    raise _bad("`content` is text or a list of text parts.", param)


def completion_request(raw: bytes) -> CompletionRequest:
    """Parse a Chat Completions body. Sampling options (temperature, max_tokens…) are the catalog's to set, and ignored."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _bad("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _bad("The body is a JSON object.")
    model, messages, stream = body.get("model"), body.get("messages"), body.get("stream") or False
    if not isinstance(model, str) or not model:
        raise _bad("`model` is required.", "model")
    if not isinstance(messages, list) or not messages:
        raise _bad("`messages` is a non-empty list.", "messages")
    if not isinstance(stream, bool):
        raise _bad("`stream` is true or false.", "stream")
    if body.get("n") not in (None, 1):
        raise _bad("Only n=1 is supported.", "n")
    if body.get("tools") or body.get("functions"):
        raise _bad("Tools and functions are not supported.", "tools")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("`stream_options` is an object.", "stream_options")
    turns: list[tuple[str, str]] = []
    instructions: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad("Each message is an object with `role` and `content`.", f"messages[{i}]")
        role, text = message.get("role"), _content(message.get("content"), f"messages[{i}].content")
        if role in INSTRUCTIONS:
            instructions.append(text)
        elif role == "user":
            turns.append((role, "\n\n".join([*instructions, text])))
            instructions = []
        elif role == "assistant":
            turns.append((role, text))
        else:
            raise _bad(f"Messages with the role {str(role)[:30]!r} are not supported.", f"messages[{i}].role")
    if not turns or turns[-1][0] != "user" or instructions:
        raise _bad("The last message must be the user's.", "messages")
    return CompletionRequest(model, turns[:-1], turns[-1][1], stream, options.get("include_usage") is True)


def retry_after(resets_at: dt.datetime, now: dt.datetime) -> str:
    return str(max(1, math.ceil((resets_at - now).total_seconds())))


def usage_json(prompt: int | None, completion: int | None, reasoning: int | None) -> dict:
    prompt, completion = prompt or 0, completion or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning or 0},
    }


def finish_reason(stored: str) -> str:
    # A reply stopped by its owner, or cut short, ends as the text it has.
    return stored if stored in FINISH_REASONS else "stop"


def completion_json(*, id: str, created: int, model: str, text: str, finish: str, usage: dict) -> dict:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None}, "finish_reason": finish, "logprobs": None}
        ],
        "usage": usage,
    }


def chunk_json(*, id: str, created: int, model: str, delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    """One `chat.completion.chunk`; the usage chunk (include_usage) has no choices."""
    choices = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    chunk: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def sse(data: dict | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def model_json(slug: str) -> dict:
    return {"id": slug, "object": "model", "created": 0, "owned_by": "organization"}

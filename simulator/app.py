"""A small OpenAI-compatible simulator (Chat Completions and Responses) as a raw ASGI app.

No framework and no Django: one coroutine per request, paced with
``asyncio.sleep``, so a single event loop holds hundreds of slow streams.

Behaviour is driven by ``[sim:name=value]`` tags in the LAST user message,
so tests and demos can steer it through the real product (tags are stripped
from the echoed answer; an unknown tag name is a 400):

  think=SECONDS  rate=TOKENS_PER_SEC (0 = no pacing)  tokens=N
  reply=TEXT (no "]")  reply_b64=BASE64_OF_UTF8  reasoning (stream reasoning_content)
  fault=429|quota|500|<any 4xx/5xx>|stall|drop|cut  retry_after=N (429)
  (cut: the stream ends cleanly with no finish_reason and no [DONE])
  after=N (tokens sent before stall/drop/cut; defaults 0/5/5)  fault_times=N (fault only
  the first N requests with identical messages, then succeed)
  finish=length|content_filter (the finish_reason sent after the answer; tokens=0 for none)

POST /v1/responses streams the Responses API's events in the real order and honours
the same tags: reasoning sends reasoning summaries when the request asks for them
(reasoning.summary), finish=length ends with response.incomplete (reason
max_output_tokens), finish=content_filter likewise, cut ends with neither
response.completed nor response.incomplete, and fault=failed sends response.failed.

Control API: GET /_sim/health, GET /_sim/requests (bodies + "_sim" metadata),
DELETE /_sim/requests (also resets fault_times counters).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Config:
    think: float = 1.0  # default seconds of "thinking" before the first visible token
    rate: float = 50.0  # default visible tokens per second


CONFIG = Config()
MODELS = ("o1-preview", "o1-mini", "gpt-4o")
REASONING_PREFIXES = ("o1", "o3", "o4")
MAX_BODY = 64 * 1024 * 1024  # images come as base64 data URLs
MAX_TOKENS = 100_000

# Digits are allowed in names so that ``reply_b64`` matches.
DIRECTIVE_RE = re.compile(r"\[sim:([a-z0-9_]+)(?:=([^\]]*))?\]")
DIRECTIVES = {
    "finish",
    "think",
    "rate",
    "tokens",
    "reply",
    "reply_b64",
    "reasoning",
    "fault",
    "retry_after",
    "after",
    "fault_times",
}
# A "token" is a word plus trailing whitespace, or a punctuation run plus
# trailing whitespace; the pieces always concatenate back to the exact text.
TOKEN_RE = re.compile(r"\w+\s*|[^\w\s]+\s*|\s+")

FILLER = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
    "Sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. "
    "Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris. "
)
MARKDOWN = '\n\n## Example\n\n- first item\n- second item\n\n```python\ndef greet(name: str) -> str:\n    return f"Hello, {name}!"\n```\n'
REASONING = (
    "Considering the question… Breaking it into smaller steps… Checking the details against what I know… Drafting a concise answer… "
)


@dataclass
class State:
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    fault_hits: dict[str, int] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


STATE = State()


class SimulatedDrop(Exception):
    """Raised after part of a body was sent: uvicorn then closes the socket mid-response."""


def _hide_expected_errors(record: logging.LogRecord) -> bool:
    # uvicorn logs every app exception with a traceback; drops are deliberate and
    # cancellations only happen when shutdown gives up on stalled streams.
    return not (record.exc_info and isinstance(record.exc_info[1], (SimulatedDrop, asyncio.CancelledError)))


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers
        self.body = {"error": {"message": message, "type": type_, "code": code, "param": param}}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()  # compact, like the real API


def tokenize(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def _text(content: Any) -> str:
    """Message content may be a string, a list of typed parts, or null."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def parse_directives(text: str) -> dict[str, str]:
    found = {name: value or "" for name, value in DIRECTIVE_RE.findall(text)}
    unknown = set(found) - DIRECTIVES
    if unknown:
        raise ApiError(400, f"Unknown simulator directive(s): {sorted(unknown)}", code="sim_bad_directive")
    return found


def _number(d: dict[str, str], name: str, default: float) -> float:
    if name not in d:
        return default
    try:
        value = float(d[name])
    except ValueError:
        raise ApiError(400, f"[sim:{name}] needs a number, got {d[name]!r}", code="sim_bad_directive") from None
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"[sim:{name}] must be a finite number >= 0", code="sim_bad_directive")
    return value


def build_answer(last_user: str, d: dict[str, str]) -> list[str]:
    if "reply_b64" in d:
        try:
            return tokenize(base64.b64decode(d["reply_b64"], validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(400, "[sim:reply_b64] is not base64 of UTF-8", code="sim_bad_directive") from None
    if "reply" in d:
        return tokenize(d["reply"])
    echo = " ".join(DIRECTIVE_RE.sub(" ", last_user).split())[:200].rstrip(".")
    text = f"You said: {echo}. {FILLER}"
    if re.search(r"\bmarkdown\b", last_user, re.IGNORECASE):
        text = text.rstrip() + MARKDOWN
    tokens = tokenize(text)
    if "tokens" in d:
        want = min(int(_number(d, "tokens", 0)), MAX_TOKENS)
        filler = tokenize(FILLER)
        while len(tokens) < want:
            tokens += filler
        tokens = tokens[:want]
    return tokens


def validate(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """Cheap checks that mirror the real API's 400s; returns (model, messages)."""
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        )
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter", param="model")
    if messages is None:
        raise ApiError(400, "Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "Invalid 'messages': expected a non-empty array of message objects.", code="invalid_value", param="messages")
    if model.startswith(REASONING_PREFIXES):
        if body.get("temperature") not in (None, 1, 1.0):
            raise ApiError(
                400,
                f"Unsupported value: 'temperature' does not support {body['temperature']} with "
                "this model. Only the default (1) value is supported.",
                code="unsupported_parameter",
                param="temperature",
            )
        if "max_tokens" in body:
            raise ApiError(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                code="unsupported_parameter",
                param="max_tokens",
            )
    if model.startswith(("o1-preview", "o1-mini")):
        for i, m in enumerate(messages):
            parts = m.get("content") if isinstance(m.get("content"), list) else []
            if any(isinstance(p, dict) and p.get("type") == "image_url" for p in parts):
                raise ApiError(
                    400,
                    "Invalid content type. image_url is only supported by certain models.",
                    code="invalid_value",
                    param=f"messages[{i}].content",
                )
            if m.get("role") == "system":
                raise ApiError(
                    400,
                    f"Unsupported value: 'messages[{i}].role' does not support 'system' with this model.",
                    code="unsupported_value",
                    param=f"messages[{i}].role",
                )
    return model, messages


async def send_json(send: Send, status: int, obj: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = dumps(obj)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


def fault_response(fault: str, d: dict[str, str]) -> ApiError | None:
    if fault == "429":
        retry = str(int(_number(d, "retry_after", 1))).encode()
        return ApiError(
            429,
            "Rate limit reached for requests (simulated). Please try again later.",
            type_="requests",
            code="rate_limit_exceeded",
            headers=((b"retry-after", retry),),
        )
    if fault == "quota":
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type_="insufficient_quota",
            code="insufficient_quota",
        )
    if fault == "401":  # as OpenAI words it: the key fragment must never reach a user
        return ApiError(
            401,
            "Incorrect API key provided: sk-simul*********************1234. You can find your API key "
            "at https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    if fault == "404":
        return ApiError(404, "The model `o1-simulated` does not exist or you do not have access to it.", code="model_not_found")
    if fault.isdigit() and 400 <= int(fault) <= 599:
        return ApiError(
            int(fault),
            "The server had an error while processing your request. Sorry about that!"
            if int(fault) >= 500
            else f"Simulated HTTP {fault} error.",
            type_="server_error" if int(fault) >= 500 else "invalid_request_error",
        )
    if fault in ("stall", "drop", "cut", "failed"):
        return None
    raise ApiError(400, f"Unknown [sim:fault={fault}]", code="sim_bad_directive")


def should_fault(messages: list[dict[str, Any]], d: dict[str, str]) -> bool:
    """``fault_times=N`` faults only the first N requests with the same messages."""
    if "fault" not in d:
        return False
    if "fault_times" not in d:
        return True
    key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    if len(STATE.fault_hits) > 10_000:  # bound memory on long runs
        STATE.fault_hits.clear()
    hits = STATE.fault_hits.get(key, 0)
    if hits >= int(_number(d, "fault_times", 0)):
        return False
    STATE.fault_hits[key] = hits + 1
    return True


async def pause(seconds: float, gone: asyncio.Future[Any]) -> bool:
    """Sleep, returning False if the client disconnected (uvicorn's send() is silent then)."""
    if seconds >= 0.2:  # long waits wake on disconnect; short ones just poll the flag
        await asyncio.wait({gone}, timeout=seconds)
    else:
        await asyncio.sleep(max(seconds, 0))  # sleep(0) also yields during bursts at rate=0
    return not gone.done()


async def chat_completions(body: dict[str, Any], send: Send, gone: asyncio.Future[Any]) -> None:
    model, messages = validate(body)
    last_user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    d = parse_directives(last_user)
    think, rate = _number(d, "think", CONFIG.think), _number(d, "rate", CONFIG.rate)
    tokens = build_answer(last_user, d)
    fault = d.get("fault", "") if should_fault(messages, d) else ""
    if fault and (error := fault_response(fault, d)):
        raise error

    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = d.get("finish") or "stop"
    if finish not in ("stop", "length", "content_filter"):
        raise ApiError(400, f"Unknown [sim:finish={finish}]", code="sim_bad_directive")
    if isinstance(limit, int) and 0 < limit < len(tokens):
        tokens, finish = tokens[:limit], "length"
    reasoning_tokens = 64 * max(1, round(think * 10)) if model.startswith(REASONING_PREFIXES) else 0
    prompt_tokens = sum(math.ceil(len(_text(m.get("content")).encode()) / 4) + 4 for m in messages)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(tokens) + reasoning_tokens,
        "total_tokens": prompt_tokens + len(tokens) + reasoning_tokens,
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    n = next(STATE.ids)
    base = {"id": f"chatcmpl-sim-{n}", "created": int(time.time()), "model": model, "system_fingerprint": "fp_sim"}
    headers = [(b"x-request-id", f"req_sim_{n}".encode())]
    after = int(_number(d, "after", 0 if fault == "stall" else 5))
    reasoning = tokenize(REASONING) if "reasoning" in d else []

    if body.get("stream") is not True:
        if not await pause(think + (len(tokens) / rate if rate else 0), gone):
            return
        message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens), "refusal": None}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        data = dumps(
            {
                **base,
                "object": "chat.completion",
                "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
            }
        )
        if fault == "stall":
            await gone
            return
        if fault == "drop":
            await send({"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True})
            raise SimulatedDrop
        await send({"type": "http.response.body", "body": data})
        return

    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    extra = {"usage": None} if include_usage else {}  # OpenAI sends usage: null on every chunk then

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        obj = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra,
        }
        return b"data: " + dumps(obj) + b"\n\n"

    # Content chunks are the hot path: splice the JSON-encoded token into a prebuilt template.
    head, tail = chunk({"content": "\x00"}).split(b'"\\u0000"')

    async def emit(data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"), *headers],
        }
    )
    await emit(chunk({"role": "assistant", "content": "", "refusal": None}))
    if reasoning:  # spread the reasoning deltas over the thinking delay
        for piece in reasoning:
            if not await pause(think / len(reasoning), gone):
                return
            await emit(chunk({"reasoning_content": piece}))
    elif not await pause(think, gone):
        return

    next_at = asyncio.get_running_loop().time()
    for i, token in enumerate(tokens):
        if fault and i >= after:
            break
        next_at += 1 / rate if rate else 0
        if not await pause(next_at - asyncio.get_running_loop().time(), gone):
            return
        await emit(head + dumps(token) + tail)
    if fault == "stall":
        await gone  # silent until the client gives up
        return
    if fault == "drop":
        raise SimulatedDrop
    if fault == "cut":
        await send({"type": "http.response.body", "body": b""})  # a clean end, but no finish_reason, no [DONE]
        return
    await emit(chunk({}, finish))
    if include_usage:
        await emit(b"data: " + dumps({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}) + b"\n\n")
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


SUMMARIES = (
    "**Breaking the question down**\n\nConsidering what is asked and splitting it into smaller steps.",
    "**Checking the details**\n\nComparing each step against what I know before drafting a concise answer.",
)


def validate_responses(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """Cheap checks that mirror the Responses API's 400s; returns (model, input as messages)."""
    if not isinstance(body, dict):
        raise ApiError(400, "We could not parse the JSON body of your request.")
    model, given = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "you must provide a model parameter", param="model")
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    if not isinstance(given, list) or not given or not all(isinstance(m, dict) for m in given):
        raise ApiError(400, "Invalid 'input': expected a string or a non-empty array of input items.", code="invalid_value", param="input")
    for name in ("messages", "max_tokens", "max_completion_tokens", "reasoning_effort", "stream_options"):
        if name in body:
            raise ApiError(400, f"Unsupported parameter: '{name}'.", code="unsupported_parameter", param=name)
    if body.get("reasoning") and not model.startswith(REASONING_PREFIXES):
        raise ApiError(400, "Unsupported parameter: 'reasoning' is not supported with this model.", param="reasoning")
    return model, given


async def responses(body: dict[str, Any], send: Send, gone: asyncio.Future[Any]) -> None:
    model, items = validate_responses(body)
    last_user = next((_text(m.get("content")) for m in reversed(items) if m.get("role") == "user"), "")
    d = parse_directives(last_user)
    think, rate = _number(d, "think", CONFIG.think), _number(d, "rate", CONFIG.rate)
    tokens = build_answer(last_user, d)
    fault = d.get("fault", "") if should_fault(items, d) else ""
    if fault and (error := fault_response(fault, d)):
        raise error
    if body.get("stream") is not True:
        raise ApiError(400, "The simulator's /v1/responses only streams (stream: true).", code="sim_unsupported")

    finish = d.get("finish") or "stop"
    if finish not in ("stop", "length", "content_filter"):
        raise ApiError(400, f"Unknown [sim:finish={finish}]", code="sim_bad_directive")
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and 0 < limit < len(tokens):
        tokens, finish = tokens[:limit], "length"
    reasoning_tokens = 64 * max(1, round(think * 10)) if model.startswith(REASONING_PREFIXES) else 0
    input_tokens = sum(math.ceil(len(_text(m.get("content")).encode()) / 4) + 4 for m in items)
    asked = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    summaries = [tokenize(part) for part in SUMMARIES] if "reasoning" in d and asked.get("summary") else []

    n = next(STATE.ids)
    seq = itertools.count()
    response: dict[str, Any] = {
        "id": f"resp_sim{n}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "model": model,
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "max_output_tokens": limit,
        "reasoning": {"effort": asked.get("effort"), "summary": asked.get("summary")},
        "store": body.get("store", True),
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
    }

    async def emit(kind: str, **fields: Any) -> None:
        event = {"type": kind, "sequence_number": next(seq), **fields}
        await send({"type": "http.response.body", "body": f"event: {kind}\ndata: ".encode() + dumps(event) + b"\n\n", "more_body": True})

    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"x-request-id", f"req_sim_{n}".encode())],
        }
    )
    await emit("response.created", response=response)
    await emit("response.in_progress", response=response)

    if model.startswith(REASONING_PREFIXES):
        reasoning_item: dict[str, Any] = {"id": f"rs_sim{n}", "type": "reasoning", "summary": []}
        await emit("response.output_item.added", output_index=0, item=reasoning_item)
        pieces = sum(len(part) for part in summaries)
        for index, part in enumerate(summaries):  # spread the summaries over the thinking delay
            where = {"item_id": reasoning_item["id"], "output_index": 0, "summary_index": index}
            await emit("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
            for piece in part:
                if not await pause(think / pieces, gone):
                    return
                await emit("response.reasoning_summary_text.delta", **where, delta=piece)
            text = "".join(part)
            await emit("response.reasoning_summary_text.done", **where, text=text)
            await emit("response.reasoning_summary_part.done", **where, part={"type": "summary_text", "text": text})
            reasoning_item["summary"].append({"type": "summary_text", "text": text})
        if not summaries and not await pause(think, gone):
            return
        await emit("response.output_item.done", output_index=0, item=reasoning_item)
        response["output"].append(reasoning_item)
    elif not await pause(think, gone):
        return

    if tokens:
        index = len(response["output"])
        message: dict[str, Any] = {"id": f"msg_sim{n}", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        where = {"item_id": message["id"], "output_index": index, "content_index": 0}
        await emit("response.output_item.added", output_index=index, item=message)
        await emit("response.content_part.added", **where, part={"type": "output_text", "text": "", "annotations": []})
        next_at = asyncio.get_running_loop().time()
        for i, token in enumerate(tokens):
            if fault and i >= int(_number(d, "after", 0 if fault == "stall" else 5)):
                break
            next_at += 1 / rate if rate else 0
            if not await pause(next_at - asyncio.get_running_loop().time(), gone):
                return
            await emit("response.output_text.delta", **where, delta=token, logprobs=[])
    if fault == "stall":
        await gone  # silent until the client gives up
        return
    if fault == "drop":
        raise SimulatedDrop
    if fault == "cut":
        await send({"type": "http.response.body", "body": b""})  # a clean end, but neither completed nor incomplete
        return
    if fault == "failed":
        response.update(status="failed", error={"code": "server_error", "message": "The model failed to generate a response (simulated)."})
        await emit("response.failed", response=response)
        await send({"type": "http.response.body", "body": b""})
        return
    if tokens:
        text = "".join(tokens)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        await emit("response.output_text.done", **where, text=text, logprobs=[])
        await emit("response.content_part.done", **where, part=part)
        message.update(status="completed" if finish == "stop" else "incomplete", content=[part])
        await emit("response.output_item.done", output_index=index, item=message)
        response["output"].append(message)
    response["usage"] = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": len(tokens) + reasoning_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + len(tokens) + reasoning_tokens,
    }
    if finish == "stop":
        response["status"] = "completed"
        await emit("response.completed", response=response)
    else:
        reason = "max_output_tokens" if finish == "length" else "content_filter"
        response.update(status="incomplete", incomplete_details={"reason": reason})
        await emit("response.incomplete", response=response)
    await send({"type": "http.response.body", "body": b""})


ENDPOINTS = {"/v1/chat/completions": chat_completions, "/v1/responses": responses}


async def read_body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY:
            raise ApiError(413, "Request body too large.")
        if not message.get("more_body"):
            return b"".join(chunks)


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Installed here because uvicorn configures logging after importing the app.
            logging.getLogger("uvicorn.error").addFilter(_hide_expected_errors)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"].rstrip("/")
    try:
        if path == "/_sim/health":
            return await send_json(send, 200, {"ok": True})
        if path == "/_sim/requests" and method == "GET":
            return await send_json(send, 200, list(STATE.requests))
        if path == "/_sim/requests" and method == "DELETE":
            STATE.requests.clear()
            STATE.fault_hits.clear()
            return await send_json(send, 200, {"ok": True})
        if path == "/v1/models" and method == "GET":
            return await send_json(
                send,
                200,
                {"object": "list", "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "simulator"} for m in MODELS]},
            )
        handler = ENDPOINTS.get(path)
        if handler is None:
            raise ApiError(404, f"Invalid URL ({method} {scope['path']})")
        if method != "POST":
            raise ApiError(405, f"Method {method} not allowed on {path}")
        raw = await read_body(receive)
        if raw is None:
            return
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        record: dict[str, Any] = {}
        if isinstance(body, dict):
            has_auth = any(k == b"authorization" for k, _ in scope["headers"])
            record = {"authorization": has_auth, "received_at": time.time(), "closed_by_client_at": None}
            STATE.requests.append({**body, "_sim": record})
        # Once the body is read, the next receive() only resolves on client disconnect.
        gone = asyncio.ensure_future(receive())
        # The client closed the connection before the answer was complete (a Stop, a timeout).
        gone.add_done_callback(lambda f: f.cancelled() or record.get("completed") or record.update(closed_by_client_at=time.time()))

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                record["completed"] = True
            await send(message)

        try:
            await handler(body, tracked, gone)
        finally:
            gone.cancel()
    except ApiError as e:
        await send_json(send, e.status, e.body, e.headers)

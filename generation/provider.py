"""The openai SDK behind one small interface. No ORM in here."""

import asyncio
import atexit
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx2
import openai
from django.conf import settings

from live.loop import run_soon


class ProviderError(Exception):
    """A failed model call. `str()` is for the user; `detail` (the provider's own words) is for the log.

    `permanent` errors are not worth retrying; `configuration` ones (a refused key,
    an unknown model, no credit) are the operator's to fix, so staff are alerted.
    """

    def __init__(
        self, message: str, *, permanent: bool, kind: str, retry_after: float | None = None, detail: str = "", configuration: bool = False
    ):
        super().__init__(message)
        self.permanent = permanent
        self.kind = kind
        self.retry_after = retry_after
        self.detail = detail or message
        self.configuration = configuration


@dataclass(frozen=True)
class ModelSpec:
    provider_model: str
    max_output_tokens: int
    api: str = "chat_completions"  # or "responses" (catalog.models.AIModel.API)
    supports_streaming: bool = True
    uses_max_completion_tokens: bool = True
    reasoning_effort: str = ""
    reasoning_summaries: bool = False  # Responses only
    store: bool = False  # Responses only: whether the provider keeps the response


@dataclass
class Chunk:
    """One piece of a streamed answer: visible text, reasoning, the final usage, or how it finished."""

    text: str = ""
    reasoning: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str = ""


_client: openai.AsyncOpenAI | None = None


def client() -> openai.AsyncOpenAI:
    """One client per process, used only on its live loop (live/loop.py): it pools HTTP connections."""
    global _client
    if _client is None:
        timeout = httpx2.Timeout(settings.OPENAI_READ_TIMEOUT, connect=settings.OPENAI_CONNECT_TIMEOUT)
        _client = openai.AsyncOpenAI(
            api_key=settings.OPENAI_API_KEY or "simulator",
            base_url=settings.OPENAI_BASE_URL or None,
            # Retries are ours (generation/reply.py), so the user can be told why we wait.
            max_retries=0,
            timeout=timeout,
            # The SDK's aiohttp transport parses HTTP in C: 21 µs of CPU per streamed chunk against 51 µs through
            # httpx2's default (h11, pure Python), our SSE split and JSON included (docs/benchmarks.md).
            http_client=openai.DefaultAioHttpClient(
                limits=httpx2.Limits(max_connections=2000, max_keepalive_connections=200), timeout=timeout
            ),
        )
    return _client


def client_reset() -> None:
    """Close the client (on the live loop: aiohttp logs a session dropped open); the next call makes a new one."""
    global _client
    closing, _client = _client, None
    if closing is not None:
        try:
            run_soon(closing.close()).result(timeout=2)
        except Exception:
            pass


atexit.register(client_reset)


def _chat_message(turn: dict) -> dict:
    """A turn as a Chat Completions message: with images, its content is a list of parts."""
    if not turn.get("image_urls"):
        return {"role": turn["role"], "content": turn["content"]}
    text = [{"type": "text", "text": turn["content"]}] if turn["content"] else []
    return {"role": turn["role"], "content": [*text, *({"type": "image_url", "image_url": {"url": url}} for url in turn["image_urls"])]}


def _responses_item(turn: dict) -> dict:
    """A turn as a Responses input item: with images, `input_text` and `input_image` parts."""
    if not turn.get("image_urls"):
        return {"role": turn["role"], "content": turn["content"]}
    text = [{"type": "input_text", "text": turn["content"]}] if turn["content"] else []
    return {"role": turn["role"], "content": [*text, *({"type": "input_image", "image_url": url} for url in turn["image_urls"])]}


def request_params(spec: ModelSpec, turns: list[dict]) -> dict:
    """A Chat Completions request. `turns` are {"role", "content", "image_urls"?} (catalog/context.py)."""
    params: dict = {"model": spec.provider_model, "messages": [_chat_message(turn) for turn in turns]}
    key = "max_completion_tokens" if spec.uses_max_completion_tokens else "max_tokens"
    params[key] = spec.max_output_tokens
    if spec.reasoning_effort:
        params["reasoning_effort"] = spec.reasoning_effort
    if spec.supports_streaming:
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
    return params


def _usage(usage: dict) -> dict[str, int]:
    details = usage.get("completion_tokens_details") or {}
    return {
        "prompt_tokens": usage.get("prompt_tokens") or 0,
        "completion_tokens": usage.get("completion_tokens") or 0,
        "reasoning_tokens": details.get("reasoning_tokens") or 0,
        "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
    }


def _reasoning_of(delta: dict) -> str:
    # Providers that expose reasoning send it as an extra field; we show it, never re-send it.
    return delta.get("reasoning_content") or delta.get("reasoning") or ""


DRAIN_SECONDS = 1.0
DONE: dict = {}  # what _sse_data yields for `[DONE]`, the stream's last event


async def _sse_data(raw: AsyncIterator[bytes]) -> AsyncIterator[dict]:
    """The JSON payload of each server-sent event; `DONE` for `[DONE]`, then nothing more.

    Read from the response's bytes, split by hand: the SDK's line iterator
    decodes and splits through layers of async generators per read, which cost
    more than the JSON (docs/benchmarks.md, "Why the code is as it is").
    """
    pending, final = b"", False
    pieces = aiter(raw)
    while not final:
        piece = await anext(pieces, None)
        final = piece is None
        pending += piece or b""
        if b"\n\n" not in pending and b"\r" not in pending:
            continue
        blocks, pending = _complete_blocks(pending, final=final)
        for block in blocks:
            data = [line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")]
            if not data:
                continue
            payload = b"\n".join(data)
            if payload == b"[DONE]":
                yield DONE
                await _drain(pieces)
                return
            yield _event(payload)


async def _drain(pieces: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` (the end of the chunked body), so that the connection goes back to the
    pool: a response closed unread closes its connection, and the next reply would pay a new TCP and TLS
    handshake before its request. A server that keeps the stream open gets DRAIN_SECONDS."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in pieces:
                pass
    except TimeoutError:
        pass


def _complete_blocks(pending: bytes, *, final: bool) -> tuple[list[bytes], bytes]:
    """The complete events in `pending`, and what is left of it."""
    if b"\r" in pending:  # the SSE spec allows CRLF and CR line endings too; a CR at the end may be half a CRLF
        held = b"\r" if pending.endswith(b"\r") and not final else b""
        pending = pending[: len(pending) - len(held)].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
    *blocks, rest = pending.split(b"\n\n")
    return blocks, rest


def _event(payload: bytes) -> dict:
    try:
        event = json.loads(payload)
    except ValueError:
        raise ProviderError("The model provider sent a malformed answer.", permanent=False, kind="server") from None
    if isinstance(event, dict) and event.get("error"):
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise ProviderError(
            "The model provider had an error while answering.",
            permanent=False,
            kind="server",
            detail=f"error event in the stream: {message or error}"[:1000],
        )
    return event


def _code(exc: openai.APIStatusError) -> str:
    body: dict = exc.body if isinstance(exc.body, dict) else {}
    nested = body.get("error")
    error: dict = nested if isinstance(nested, dict) else body
    return str(error.get("code") or error.get("type") or "")


def _translate(exc: Exception) -> ProviderError:
    """What the user is told, in a short honest sentence; the provider's own words go to the log only."""
    detail = f"{type(exc).__name__}: {exc}"[:1000]
    if isinstance(exc, openai.RateLimitError):
        if _code(exc) == "insufficient_quota":
            return ProviderError(
                "The service is out of credit with the model provider. An administrator has been told.",
                permanent=True,
                kind="insufficient_quota",
                detail=detail,
                configuration=True,
            )
        retry_after = exc.response.headers.get("retry-after")
        try:
            seconds = float(retry_after) if retry_after else None
        except ValueError:
            seconds = None
        return ProviderError("The model provider is busy.", permanent=False, kind="rate_limit", retry_after=seconds, detail=detail)
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        return ProviderError("The model took too long to answer.", permanent=False, kind="timeout", detail=detail)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("The connection to the model provider was lost.", permanent=False, kind="connection", detail=detail)
    if isinstance(exc, openai.InternalServerError):
        return ProviderError("The model provider had an internal error.", permanent=False, kind="server", detail=detail)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return ProviderError(
            "The service's API key was refused by the model provider; an administrator has been told.",
            permanent=True,
            kind="auth",
            detail=detail,
            configuration=True,
        )
    if isinstance(exc, openai.NotFoundError) or (isinstance(exc, openai.APIStatusError) and _code(exc) == "model_not_found"):
        return ProviderError(
            "This model is not available from the provider; an administrator has been told.",
            permanent=True,
            kind="model_not_found",
            detail=detail,
            configuration=True,
        )
    if isinstance(exc, openai.APIStatusError):
        return ProviderError("The model provider refused this request.", permanent=True, kind="refused", detail=detail)
    if isinstance(exc, (openai.APIError, httpx2.HTTPError)):
        return ProviderError("The connection to the model provider was lost.", permanent=False, kind="connection", detail=detail)
    raise exc


async def stream_chat(spec: ModelSpec, messages: list[dict]) -> AsyncIterator[Chunk]:
    """Yield the answer as it arrives, the last chunk carrying its finish_reason; raise ProviderError on any failure.

    A stream that ends with neither a finish_reason nor `[DONE]` was cut short:
    that is an error ("cut"), retried like a dropped connection.

    The SDK sends the request and turns error statuses into exceptions; the
    stream's events are read as plain JSON, which costs about a tenth of the
    CPU of the SDK's typed chunk objects (docs/benchmarks.md, "Why the code
    is as it is"), and that is most of a worker's work per token.
    """
    try:
        completions = client().chat.completions
        if not spec.supports_streaming:
            message = (await completions.create(**request_params(spec, messages))).to_dict()
            choice = message["choices"][0]
            answer = choice.get("message") or {}
            yield Chunk(text=answer.get("content") or "", reasoning=_reasoning_of(answer))
            yield Chunk(usage=_usage(message.get("usage") or {}), finish_reason=choice.get("finish_reason") or "stop")
            return
        finish, usage = "", {}
        async with completions.with_streaming_response.create(**request_params(spec, messages)) as response:
            async for event in _sse_data(response.http_response.aiter_bytes()):
                if event is DONE:  # the last event: the loop goes on only to read the body to its end
                    finish = finish or "stop"
                    continue
                if event.get("usage"):
                    usage = _usage(event["usage"])
                if not event.get("choices"):
                    continue
                choice = event["choices"][0]
                finish = choice.get("finish_reason") or finish
                delta = choice.get("delta") or {}
                text, reasoning = delta.get("content") or "", _reasoning_of(delta)
                if text or reasoning:
                    yield Chunk(text=text, reasoning=reasoning)
        if not finish:
            raise ProviderError(
                "The connection to the model provider was lost.",
                permanent=False,
                kind="cut",
                detail="the stream ended without a finish_reason or [DONE]",
            )
        yield Chunk(usage=usage, finish_reason=finish)
    except ProviderError:
        raise
    except Exception as exc:  # translated or re-raised by _translate
        raise _translate(exc) from exc


def responses_params(spec: ModelSpec, turns: list[dict]) -> dict:
    """A Responses API request: the turns as plain role/content items, never an earlier reasoning item.

    A system turn (the custom instructions) becomes `instructions`.

    `store` is off unless the model says otherwise, and nothing asks for
    `reasoning.encrypted_content`: no reasoning can come back into a later request.
    """
    params: dict = {
        "model": spec.provider_model,
        "input": [_responses_item(turn) for turn in turns if turn["role"] != "system"],
        "max_output_tokens": spec.max_output_tokens,
        "store": spec.store,
        "stream": True,
    }
    # Custom instructions (catalog.context.instructions_place) are the Responses API's `instructions`.
    instructions = "\n\n".join(turn["content"] for turn in turns if turn["role"] == "system")
    if instructions:
        params["instructions"] = instructions
    reasoning = {"summary": "auto"} if spec.reasoning_summaries else {}
    if spec.reasoning_effort:
        reasoning["effort"] = spec.reasoning_effort
    if reasoning:
        params["reasoning"] = reasoning
    return params


def _responses_usage(usage: dict) -> dict[str, int]:
    details = usage.get("output_tokens_details") or {}
    return {
        "prompt_tokens": usage.get("input_tokens") or 0,
        "completion_tokens": usage.get("output_tokens") or 0,
        "reasoning_tokens": details.get("reasoning_tokens") or 0,
        "cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0,
    }


# How an incomplete response ended, in Chat Completions' words, so both APIs end the same ways.
INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _responses_failure(event: dict) -> ProviderError:
    error = (event.get("response") or {}).get("error") or event
    detail = f"{event.get('type')}: {error.get('code') or ''} {error.get('message') or ''}".strip()
    return ProviderError("The model provider had an error while answering.", permanent=False, kind="server", detail=detail[:1000])


async def stream_responses(spec: ModelSpec, turns: list[dict]) -> AsyncIterator[Chunk]:
    """The Responses API, yielding the same Chunks as stream_chat and ending the same ways.

    Visible text comes from `response.output_text.delta`, reasoning summaries from
    `response.reasoning_summary_text.delta`; `response.completed` is "stop",
    `response.incomplete` is "length" or "content_filter"; `response.failed` and
    `error` events, and a stream that ends with neither, are ProviderErrors.
    Events are read as plain JSON, as in stream_chat, for the same reason.
    """
    try:
        finish, usage = "", {}
        async with client().responses.with_streaming_response.create(**responses_params(spec, turns)) as response:
            async for event in _sse_data(response.http_response.aiter_bytes()):
                kind = event.get("type")
                if kind == "response.output_text.delta":
                    yield Chunk(text=event.get("delta") or "")
                elif kind == "response.reasoning_summary_text.delta":
                    yield Chunk(reasoning=event.get("delta") or "")
                elif kind == "response.reasoning_summary_part.added" and event.get("summary_index"):
                    yield Chunk(reasoning="\n\n")  # summary parts are paragraphs
                elif kind in ("response.completed", "response.incomplete"):
                    body = event.get("response") or {}
                    usage = _responses_usage(body.get("usage") or {})
                    reason = (body.get("incomplete_details") or {}).get("reason") or ""
                    finish = "stop" if kind == "response.completed" else INCOMPLETE.get(reason, reason or "length")
                    break
                elif kind in ("response.failed", "error"):
                    raise _responses_failure(event)
        if not finish:
            raise ProviderError(
                "The connection to the model provider was lost.",
                permanent=False,
                kind="cut",
                detail="the stream ended without response.completed or response.incomplete",
            )
        yield Chunk(usage=usage, finish_reason=finish)
    except ProviderError:
        raise
    except Exception as exc:  # translated or re-raised by _translate
        raise _translate(exc) from exc


def stream(spec: ModelSpec, turns: list[dict]) -> AsyncIterator[Chunk]:
    """The answer through the API the model is called with."""
    return stream_responses(spec, turns) if spec.api == "responses" else stream_chat(spec, turns)

"""The openai SDK behind one small interface. No ORM in here."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx2
import openai
from django.conf import settings


class ProviderError(Exception):
    """A failed model call. `permanent` errors are not worth retrying."""

    def __init__(self, message: str, *, permanent: bool, kind: str, retry_after: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True)
class ModelSpec:
    provider_model: str
    max_output_tokens: int
    supports_streaming: bool = True
    supports_system_message: bool = False
    uses_max_completion_tokens: bool = True
    supports_temperature: bool = False
    reasoning_effort: str = ""


@dataclass
class Chunk:
    """One piece of a streamed answer: visible text, reasoning, or the final usage."""

    text: str = ""
    reasoning: str = ""
    usage: dict[str, int] = field(default_factory=dict)


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
            http_client=httpx2.AsyncClient(limits=httpx2.Limits(max_connections=2000, max_keepalive_connections=200), timeout=timeout),
        )
    return _client


def request_params(spec: ModelSpec, messages: list[dict[str, str]]) -> dict:
    params: dict = {"model": spec.provider_model, "messages": messages}
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
    }


def _reasoning_of(delta: dict) -> str:
    # Providers that expose reasoning send it as an extra field; we show it, never re-send it.
    return delta.get("reasoning_content") or delta.get("reasoning") or ""


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[dict]:
    """The JSON payload of each server-sent event, until `[DONE]`."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif not line and data:
            payload = "\n".join(data)
            data = []
            if payload == "[DONE]":
                return
            try:
                event = json.loads(payload)
            except ValueError:
                raise ProviderError("The model provider sent a malformed answer.", permanent=False, kind="server") from None
            if isinstance(event, dict) and event.get("error"):
                error = event["error"]
                message = error.get("message") if isinstance(error, dict) else None
                raise ProviderError(f"The model provider reported an error: {message or 'unknown'}"[:400], permanent=False, kind="server")
            yield event


def _translate(exc: Exception) -> ProviderError:
    if isinstance(exc, openai.RateLimitError):
        body = exc.body if isinstance(exc.body, dict) else {}
        code = body.get("code") or body.get("type") or (body.get("error") or {}).get("code")
        if code == "insufficient_quota":
            return ProviderError(
                "The service is out of credit with the model provider. An administrator has been told.",
                permanent=True,
                kind="insufficient_quota",
            )
        retry_after = exc.response.headers.get("retry-after")
        try:
            seconds = float(retry_after) if retry_after else None
        except ValueError:
            seconds = None
        return ProviderError("The model provider is busy.", permanent=False, kind="rate_limit", retry_after=seconds)
    if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
        return ProviderError("The model took too long to answer.", permanent=False, kind="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("The connection to the model provider was lost.", permanent=False, kind="connection")
    if isinstance(exc, openai.InternalServerError):
        return ProviderError("The model provider had an internal error.", permanent=False, kind="server")
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(f"The model provider refused the request: {exc.message}"[:400], permanent=True, kind="refused")
    if isinstance(exc, (openai.APIError, httpx2.HTTPError)):
        return ProviderError("The connection to the model provider was lost.", permanent=False, kind="connection")
    raise exc


async def stream_chat(spec: ModelSpec, messages: list[dict[str, str]]) -> AsyncIterator[Chunk]:
    """Yield the answer as it arrives; raise ProviderError on any failure.

    The SDK sends the request and turns error statuses into exceptions; the
    stream's events are read as plain JSON, which costs about a tenth of the
    CPU of the SDK's typed chunk objects (docs/benchmarks.md, "Why the code
    is as it is"), and that is most of a worker's work per token.
    """
    try:
        completions = client().chat.completions
        if not spec.supports_streaming:
            message = (await completions.create(**request_params(spec, messages))).to_dict()
            choice = message["choices"][0]["message"]
            yield Chunk(text=choice.get("content") or "", reasoning=_reasoning_of(choice))
            if message.get("usage"):
                yield Chunk(usage=_usage(message["usage"]))
            return
        async with completions.with_streaming_response.create(**request_params(spec, messages)) as response:
            async for event in _sse_data(response.iter_lines()):
                if event.get("usage"):
                    yield Chunk(usage=_usage(event["usage"]))
                if not event.get("choices"):
                    continue
                delta = event["choices"][0].get("delta") or {}
                text, reasoning = delta.get("content") or "", _reasoning_of(delta)
                if text or reasoning:
                    yield Chunk(text=text, reasoning=reasoning)
    except ProviderError:
        raise
    except Exception as exc:  # translated or re-raised by _translate
        raise _translate(exc) from exc

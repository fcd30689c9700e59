"""GET /v1/models and POST /v1/chat/completions, under the chat page's rules (docs/api.md).

Thin: a request is authenticated by its key, parsed, and sent through
chat.actions.message_send exactly as the chat page sends (catalog, quota and
ledger, the cap on live replies, the context rules), in a new conversation its
owner sees in the sidebar. The worker writes the reply like any other; this
waits for it, or streams it, from the conversation's live events, reading the
database whenever they are late (they are best effort).
"""

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator

from django.utils import timezone

from chat import actions
from chat.consumers import database_sync_to_async
from chat.models import Message
from live.listen import Subscription
from live.publish import buffer_read
from quotas.selectors import api_access_allowed, quota_status

from .protocol import ApiError, chunk_json, completion_json, completion_request, finish_reason, model_json, retry_after, sse, usage_json
from .server import Request, Response
from .services import api_key_user

log = logging.getLogger(__name__)
# Without a live event for this long, the reply is read from the database.
POLL_SECONDS = 1.0
# A stream with nothing to say (the model thinks) sends a comment this often, so that proxies keep it open.
KEEPALIVE_SECONDS = 15.0

# How each refusal of chat.actions reads to an OpenAI client: status, error type, code.
REFUSALS = {
    "invalid": (400, "invalid_request_error", "invalid_value"),
    "empty": (400, "invalid_request_error", "invalid_value"),
    "too_long": (400, "invalid_request_error", "context_length_exceeded"),
    "unknown_model": (404, "invalid_request_error", "model_not_found"),
    "busy": (429, "rate_limit_error", "too_many_live_replies"),
    "signed_out": (401, "invalid_request_error", "invalid_api_key"),
}


def _key_user(authorization: str):
    scheme, _, token = authorization.partition(" ")
    user = api_key_user(token=token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise ApiError(401, "Incorrect or revoked API key. Make one on your API keys page.", code="invalid_api_key")
    if not api_access_allowed(user):
        raise ApiError(
            403,
            "Your plan does not include API access. Ask staff to turn it on.",
            type="permission_error",
            code="api_access_off",
        )
    return user


async def _user(request: Request):
    return await database_sync_to_async(_key_user)(request.headers.get("authorization", ""))


def _models_available(user) -> list[str]:
    # Fail closed, as the picker: a model with no rule in the user's plan is not offered.
    return [status.model.slug for status in quota_status(user=user) if not status.disabled]


async def models_list(request: Request, response: Response) -> None:
    user = await _user(request)
    slugs = await database_sync_to_async(_models_available)(user)
    await response.json(200, {"object": "list", "data": [model_json(slug) for slug in slugs]})


def _refusal(exc: actions.ActionRefused) -> ApiError:
    if exc.code == "quota_exhausted":
        resets_at = exc.extra.get("resets_at")
        if resets_at is None:  # not on the user's plan, or disabled for it: not a model they have
            return ApiError(404, str(exc), code="model_not_found", param="model")
        error = ApiError(
            429,
            str(exc),
            type="rate_limit_error",
            code="quota_exhausted",
            # The SDK would retry a 429 at once; nothing changes before the reset.
            headers={"retry-after": retry_after(dt.datetime.fromisoformat(resets_at), timezone.now()), "x-should-retry": "false"},
        )
        return error
    status, kind, code = REFUSALS.get(exc.code, (400, "invalid_request_error", exc.code))
    return ApiError(status, str(exc), type=kind, code=code, param="model" if status == 404 else None)


def _reply_get(reply_id: int) -> Message:
    return Message.objects.select_related("model").get(id=reply_id)


async def _text_so_far(reply: Message) -> str:
    buffered = await buffer_read(reply.id)
    # The resume buffer is ahead of the last checkpoint unless Redis lost it.
    return buffered[0] if buffered and len(buffered[0]) >= len(reply.text) else reply.text


async def _follow(reply: Message) -> AsyncIterator[str | Message]:
    """The reply's new visible text as it comes ("" when a poll found nothing new), then the stored reply once it ended."""
    sent = 0
    async with Subscription(reply.conversation_id) as frames:
        stored: Message | None = await database_sync_to_async(_reply_get)(reply.id)
        while True:
            if stored is not None:
                # Read after subscribing: a delta sent meanwhile arrives twice at worst, and offsets drop the copy.
                text = stored.text if not stored.is_live else await _text_so_far(stored)
                if len(text) > sent:
                    yield text[sent:]
                    sent = len(text)
                if not stored.is_live:
                    yield stored
                    return
                stored = None
            frame = await frames.next(POLL_SECONDS)
            if frame is None:
                yield ""
                stored = await database_sync_to_async(_reply_get)(reply.id)
            elif frame["type"] == "delta":
                if frame["message_id"] != reply.id:
                    continue
                offset, text = frame["offset"], frame["text"]
                if offset > sent:  # a delta was lost: catch up from the resume buffer
                    stored = await database_sync_to_async(_reply_get)(reply.id)
                elif len(text) > sent - offset:
                    yield text[sent - offset :]
                    sent = offset + len(text)
            elif frame["type"] == "done" and frame["message"]["id"] == reply.id:
                stored = await database_sync_to_async(_reply_get)(reply.id)


def _failure(reply: Message) -> ApiError:
    # No visible text: the quota was refunded (docs/protocol.md, "How an answer ends").
    # Retrying is the client's choice: the SDK would do it unasked.
    return ApiError(
        502, reply.error or "The model wrote no answer.", type="server_error", code="reply_failed", headers={"x-should-retry": "false"}
    )


def _usage(reply: Message) -> dict:
    return usage_json(reply.prompt_tokens, reply.completion_tokens, reply.reasoning_tokens)


async def chat_completions(request: Request, response: Response) -> None:
    user = await _user(request)
    body = completion_request(request.body)
    try:
        _, reply = await database_sync_to_async(actions.message_send)(
            user=user, conversation_id=None, model_slug=body.model, text=body.text, history=body.history
        )
    except actions.ActionRefused as exc:
        raise _refusal(exc) from None
    ids = {"id": f"chatcmpl-{reply.id}", "created": int(reply.created_at.timestamp()), "model": reply.model.slug}
    headers = {"x-conversation-id": str(reply.conversation_id)}
    try:
        if body.stream:
            await _stream(reply, response, ids, headers, include_usage=body.include_usage)
            return
        async for piece in _follow(reply):
            if isinstance(piece, Message):
                if not piece.text:
                    raise _failure(piece)
                answer = completion_json(**ids, text=piece.text, finish=finish_reason(piece.finish_reason), usage=_usage(piece))
                await response.json(200, answer, headers)
    except asyncio.CancelledError:
        # The client went away: stop the answer as the Stop button would (it counts if text came).
        try:
            await database_sync_to_async(actions.reply_stop)(user=user, message_id=reply.id)
        except Exception:
            log.warning("could not stop an abandoned API reply", exc_info=True, extra={"reply_id": reply.id})
        raise


async def _stream(reply: Message, response: Response, ids: dict, headers: dict[str, str], *, include_usage: bool) -> None:
    await response.stream_start(headers)
    await response.write(sse(chunk_json(**ids, delta={"role": "assistant", "content": ""})))
    quiet_since = time.monotonic()
    async for piece in _follow(reply):
        if isinstance(piece, Message):
            if not piece.text:
                raise _failure(piece)
            await response.write(sse(chunk_json(**ids, delta={}, finish=finish_reason(piece.finish_reason))))
            if include_usage:
                await response.write(sse(chunk_json(**ids, delta={}, usage=_usage(piece))))
        elif piece:
            await response.write(sse(chunk_json(**ids, delta={"content": piece})))
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            await response.write(b": keep-alive\n\n")
            quiet_since = time.monotonic()
    await response.write(sse("[DONE]"))
    await response.end()

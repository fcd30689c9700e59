"""Live traffic to browsers: the channel layer plus a short-lived resume buffer in Redis.

Workers are threads; channels-redis keeps its connections per event loop, so
every send from a worker goes through one long-lived loop in a daemon thread
instead of a fresh loop (and fresh connections) per call.

The resume buffer holds each live reply's text as streamed so far (APPENDed
with each delta). A tab that (re)subscribes reads it after joining the group,
so it misses nothing and, since each delta carries its offset, shows nothing
twice. Postgres holds the checkpointed text when Redis has lost it.
"""

import asyncio
import logging
import threading
from collections.abc import Coroutine

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)
BUFFER_TTL = 3600
SEND_TIMEOUT = 3.0

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_redis: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def _buffer_keys(message_id: int) -> tuple[str, str]:
    # The channel layer's prefix keeps several installations (or test runs) on one Redis apart.
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return f"{prefix}:reply:{message_id}:text", f"{prefix}:reply:{message_id}:reasoning"


def redis_client() -> aioredis.Redis:
    """A client for the running loop (redis.asyncio connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _redis:
        _redis[loop] = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _redis[loop]


def _run(coro: Coroutine) -> None:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="fanout", daemon=True).start()
    try:
        asyncio.run_coroutine_threadsafe(coro, _loop).result(SEND_TIMEOUT)
    except Exception as exc:
        # Live updates are best effort: the text is safe in Postgres and a
        # client that sees a gap resyncs from there.
        log.warning("live update not sent: %r", exc)


async def _send_delta(group: str, message_id: int, text: str, reasoning: str, event: dict) -> None:
    text_key, reasoning_key = _buffer_keys(message_id)
    async with redis_client().pipeline(transaction=False) as pipe:
        if text:
            pipe.append(text_key, text.encode()).expire(text_key, BUFFER_TTL)
        if reasoning:
            pipe.append(reasoning_key, reasoning.encode()).expire(reasoning_key, BUFFER_TTL)
        await pipe.execute()
    await get_channel_layer().group_send(group, event)


def send_delta(*, conversation_id: int, message_id: int, offset: int, text: str, reasoning_offset: int, reasoning: str) -> None:
    """Offsets count code points already sent before this delta."""
    event = {
        "type": "chat.delta",
        "message_id": message_id,
        "offset": offset,
        "text": text,
        "reasoning_offset": reasoning_offset,
        "reasoning": reasoning,
    }
    _run(_send_delta(conversation_group(conversation_id), message_id, text, reasoning, event))


def send_event(group: str, event: dict) -> None:
    _run(get_channel_layer().group_send(group, event))


def buffer_clear(message_id: int) -> None:
    async def clear() -> None:
        await redis_client().delete(*_buffer_keys(message_id))

    _run(clear())


async def buffer_read(message_id: int) -> tuple[str, str] | None:
    """The streamed text and reasoning so far, or None when Redis does not have it."""
    try:
        text, reasoning = await redis_client().mget(*_buffer_keys(message_id))
    except Exception as exc:
        log.warning("resume buffer unreadable: %r", exc)
        return None
    if text is None and reasoning is None:
        return None
    return (text or b"").decode(), (reasoning or b"").decode()

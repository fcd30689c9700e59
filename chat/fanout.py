"""Live traffic to browsers: Redis pub/sub through the channel layer, plus a
short-lived resume buffer in Redis; and the process's live loop it runs on.

Callers never wait. Whatever a process sends (from request threads, generating
threads or the event loop) goes into one queue in order; a daemon thread with
its own event loop sends each batch in ONE Redis pipeline: the resume-buffer
APPENDs and the PUBLISHes of every reply streaming in this process at once.
Under a backlog, consecutive deltas of one reply are merged into one, so a
slow moment produces fewer, larger frames instead of a growing queue.

The resume buffer holds each live reply's text as streamed so far. A tab that
(re)subscribes reads it after joining the group, so it misses nothing and,
since each delta carries its offset, shows nothing twice. Postgres holds the
checkpointed text when Redis has lost it.
"""

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Coroutine

import redis.asyncio as aioredis
import uvloop
from channels.layers import get_channel_layer
from django.conf import settings

log = logging.getLogger(__name__)
BUFFER_TTL = 3600
MAX_BATCH = 2000
# Beyond this (Redis unreachable for a while) new live updates are dropped;
# the text is safe in Postgres and clients resync from there.
MAX_QUEUED = 100_000

_queue: deque = deque()
_loop: asyncio.AbstractEventLoop | None = None
_wake: asyncio.Event | None = None
_start_lock = threading.Lock()
_redis: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def _prefix() -> str:
    # The channel layer's prefix keeps several installations (or test runs) on one Redis apart.
    return settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]


def _buffer_keys(message_id: int) -> tuple[str, str]:
    return f"{_prefix()}:reply:{message_id}:text", f"{_prefix()}:reply:{message_id}:reasoning"


def _group_channel(group: str) -> str:
    # What channels_redis.pubsub publishes a group's messages on (one shard: REDIS_URL).
    return f"{_prefix()}__group__{group}"


def redis_client() -> aioredis.Redis:
    """A client for the running loop (redis.asyncio connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _redis:
        _redis[loop] = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return _redis[loop]


def _live_loop() -> asyncio.AbstractEventLoop:
    if _loop is None:
        with _start_lock:
            if _loop is None:
                ready = threading.Event()
                threading.Thread(target=_serve, args=(ready,), name="fanout", daemon=True).start()
                ready.wait()
    return _loop


def run_soon(coro: Coroutine) -> concurrent.futures.Future:
    """Run `coro` on this process's live loop, beside the sending; a worker streams its replies there."""
    return asyncio.run_coroutine_threadsafe(coro, _live_loop())


def _submit(item: tuple) -> None:
    _live_loop()
    if len(_queue) >= MAX_QUEUED and item[0] == "delta":
        log.warning("live updates backlog full; dropping a delta (clients will resync)")
        return
    _queue.append(item)
    _loop.call_soon_threadsafe(_wake.set)


def _serve(ready: threading.Event) -> None:
    global _loop, _wake
    # uvloop: reading hundreds of provider streams costs an epoll re-registration per
    # chunk in asyncio's pure-Python transports (a quarter of this loop's time, measured).
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    _wake = asyncio.Event()
    _loop = loop
    ready.set()
    loop.run_until_complete(_send_forever())


async def _send_forever() -> None:
    while True:
        await _wake.wait()
        _wake.clear()
        while _queue:
            batch = [_queue.popleft() for _ in range(min(len(_queue), MAX_BATCH))]
            try:
                await _send_batch(batch)
            except Exception as exc:
                # Live updates are best effort: the text is safe in Postgres and a
                # client that sees a gap resyncs from there.
                log.warning("%d live updates not sent: %r", len(batch), exc)


def _merged(batch: list[tuple]) -> list[tuple]:
    """The batch with consecutive deltas of one reply joined, when nothing else went to its group between."""
    out: list[tuple] = []
    open_delta: dict[int, int] = {}  # reply id -> index in `out` of its last delta
    for item in batch:
        kind, group, event = item
        if kind == "delta":
            at = open_delta.get(event["message_id"])
            if at is not None:
                first = out[at][2]
                out[at] = (kind, group, {**first, "text": first["text"] + event["text"],
                                         "reasoning": first["reasoning"] + event["reasoning"]})
                continue
            open_delta[event["message_id"]] = len(out)
        elif group is not None:
            open_delta = {m: i for m, i in open_delta.items() if out[i][1] != group}
        out.append(item)
    return out


async def _send_batch(batch: list[tuple]) -> None:
    layer = get_channel_layer()
    synced = [event for kind, _, event in batch if kind == "synced"]
    try:
        async with redis_client().pipeline(transaction=False) as pipe:
            for kind, group, event in _merged(batch):
                if kind == "clear":
                    pipe.delete(*_buffer_keys(event))
                elif kind != "synced":
                    _queue_publish(pipe, layer, kind, group, event)
            await pipe.execute()
    finally:
        for waiter in synced:
            waiter.set()


def _queue_publish(pipe, layer, kind: str, group: str, event: dict) -> None:
    if kind == "delta":
        text_key, reasoning_key = _buffer_keys(event["message_id"])
        if event["text"]:
            pipe.append(text_key, event["text"].encode()).expire(text_key, BUFFER_TTL)
        if event["reasoning"]:
            pipe.append(reasoning_key, event["reasoning"].encode()).expire(reasoning_key, BUFFER_TTL)
    pipe.publish(_group_channel(group), layer.serialize(event))


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
    _submit(("delta", conversation_group(conversation_id), event))


def send_event(group: str, event: dict) -> None:
    _submit(("event", group, event))


def buffer_clear(message_id: int) -> None:
    _submit(("clear", None, message_id))


def flush(timeout: float = 3.0) -> bool:
    """Wait until everything queued before this call has been handed to Redis."""
    if _loop is None:
        return True
    done = threading.Event()
    _submit(("synced", None, done))
    return done.wait(timeout)


atexit.register(flush)


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

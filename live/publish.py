"""Publishing live events through Redis pub/sub, plus a short-lived resume buffer in Redis.

Two audiences:
- every tab showing a conversation: `frame_send(conversation_id, frame)`. The
  frame is the browser's own (docs/protocol.md), encoded to JSON once, here, and
  PUBLISHed to the conversation's Redis channel; each web process's hub
  (live/hub.py) writes that text to its sockets as it is. Deltas go this way.
- every tab of a user: `event_send(user_group(id), event)`, through the channel
  layer, whose events name a consumer handler (`chat.quota`, `session.ended`, …).

Callers never wait. Whatever a process publishes (from request threads,
generating threads or the live loop) goes into one queue in order; the
process's live loop (live/loop.py) sends each batch in ONE Redis pipeline: the
resume-buffer APPENDs and the PUBLISHes of every reply streaming in this
process at once. Under a backlog, consecutive deltas of one reply are merged
into one, so a slow moment produces fewer, larger frames instead of a growing
queue.

The resume buffer holds each live reply's text as streamed so far. A tab that
(re)subscribes reads it after joining the group, so it misses nothing and,
since each delta carries its offset, shows nothing twice. Postgres holds the
checkpointed text when Redis has lost it.
"""

import asyncio
import atexit
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings

from .loop import live_loop
from .wire import Pipeline, command

log = logging.getLogger(__name__)
BUFFER_TTL = b"3600"  # seconds
MAX_BATCH = 2000
# Beyond this (Redis unreachable for a while) new deltas are dropped;
# the text is safe in Postgres and clients resync from there.
MAX_QUEUED = 100_000


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


@dataclass(frozen=True, slots=True)
class Delta:
    """New text and reasoning of a live reply; offsets count code points sent before it."""

    conversation_id: int
    message_id: int
    offset: int
    text: str
    reasoning_offset: int
    reasoning: str

    def frame(self) -> str:
        """The browser's `delta` frame, encoded here once: every socket on the conversation sends this text as it is."""
        return _encode(
            {
                "type": "delta",
                "message_id": self.message_id,
                "offset": self.offset,
                "text": self.text,
                "reasoning_offset": self.reasoning_offset,
                "reasoning": self.reasoning,
            }
        )


@dataclass(frozen=True, slots=True)
class Frame:
    """Any other frame for every tab on a conversation, already encoded."""

    conversation_id: int
    text: str


@dataclass(frozen=True, slots=True)
class Event:
    """A channel-layer event, to one group of the user's tabs."""

    group: str
    event: dict


@dataclass(frozen=True, slots=True)
class BufferClear:
    """The reply ended: its resume buffer is no longer needed."""

    message_id: int


@dataclass(frozen=True, slots=True)
class Synced:
    """A marker: `done` is set once everything queued before it was handed to Redis."""

    done: threading.Event


Item = Delta | Frame | Event | BufferClear | Synced

_queue: deque[Item] = deque()
_wake: asyncio.Event | None = None
_start_lock = threading.Lock()
_loop_thread: int | None = None
_publisher: Pipeline | None = None
_redis: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}


def _prefix() -> str:
    # The channel layer's prefix keeps several installations (or test runs) on one Redis apart.
    layers: dict[str, Any] = settings.CHANNEL_LAYERS
    return layers["default"]["CONFIG"]["prefix"]


def _encode(frame: dict) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def conversation_channel(conversation_id: int) -> str:
    """The Redis pub/sub channel of a conversation's frames (the prefix keeps installations apart)."""
    return f"{_prefix()}:conversation:{conversation_id}"


def _buffer_keys(message_id: int) -> tuple[bytes, bytes]:
    return f"{_prefix()}:reply:{message_id}:text".encode(), f"{_prefix()}:reply:{message_id}:reasoning".encode()


def group_channel(group: str) -> str:
    """The Redis pub/sub channel the installed channel layer delivers a user `group` on.

    Asked of the layer itself (on the running loop), not rebuilt here; a test
    publishes through it to a consumer that joined with `group_add`, so a
    change in channels_redis fails that test rather than silently dropping events.
    """
    return get_channel_layer()._get_layer()._get_group_channel_name(group)


def redis_client() -> aioredis.Redis:
    """A client for the running loop (redis.asyncio connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _redis:
        _redis[loop] = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return _redis[loop]


def _sender() -> asyncio.Event:
    """The sender's wake-up event; the sender starts on the live loop at the first publish."""
    global _wake
    if _wake is None:
        with _start_lock:
            if _wake is None:
                loop, wake = live_loop(), asyncio.Event()
                # Scheduled, not awaited: the first publish may come from the live loop itself.
                loop.call_soon_threadsafe(lambda: loop.create_task(_send_forever(wake)))
                _wake = wake
    return _wake


def _submit(item: Item) -> None:
    wake = _sender()
    if len(_queue) >= MAX_QUEUED and isinstance(item, Delta):
        log.warning("live updates backlog full; dropping a delta (clients will resync)")
        return
    _queue.append(item)
    if wake.is_set():
        return  # the sender has yet to run, and will take this too
    loop = live_loop()
    if threading.get_ident() == _loop_thread:
        wake.set()  # a generating reply on the live loop itself: no wake-up through the loop's self-pipe
    else:
        loop.call_soon_threadsafe(wake.set)


async def _send_forever(wake: asyncio.Event) -> None:
    global _loop_thread
    _loop_thread = threading.get_ident()
    while True:
        await wake.wait()
        wake.clear()
        while _queue:
            batch = [_queue.popleft() for _ in range(min(len(_queue), MAX_BATCH))]
            try:
                await _send_batch(batch)
            except Exception as exc:
                # Live updates are best effort: the text is safe in Postgres and a
                # client that sees a gap resyncs from there.
                log.warning("%d live updates not sent: %r", len(batch), exc)


def merged(batch: list[Item]) -> list[Item]:
    """The batch with consecutive deltas of one reply joined, when nothing else went to its group between."""
    out: list[Item] = []
    open_delta: dict[int, int] = {}  # reply id -> index in `out` of its last delta
    for item in batch:
        if isinstance(item, Delta):
            at = open_delta.get(item.message_id)
            if at is not None:
                first = out[at]
                assert isinstance(first, Delta)
                out[at] = replace(first, text=first.text + item.text, reasoning=first.reasoning + item.reasoning)
                continue
            open_delta[item.message_id] = len(out)
        elif isinstance(item, Frame):
            open_delta = {m: i for m, i in open_delta.items() if getattr(out[i], "conversation_id", None) != item.conversation_id}
        out.append(item)
    return out


async def _send_batch(batch: list[Item]) -> None:
    """The batch in one write to Redis (live/wire.py): per reply, its resume buffer appended and its frame published."""
    layer = get_channel_layer()
    commands: list[bytes] = []
    try:
        for item in merged(batch):
            if isinstance(item, BufferClear):
                commands.append(command(b"DEL", *_buffer_keys(item.message_id)))
            elif isinstance(item, Delta):
                text_key, reasoning_key = _buffer_keys(item.message_id)
                for key, value in ((text_key, item.text), (reasoning_key, item.reasoning)):
                    if value:
                        commands.append(command(b"APPEND", key, value.encode()))
                        commands.append(command(b"EXPIRE", key, BUFFER_TTL))
                commands.append(command(b"PUBLISH", conversation_channel(item.conversation_id).encode(), item.frame().encode()))
            elif isinstance(item, Frame):
                commands.append(command(b"PUBLISH", conversation_channel(item.conversation_id).encode(), item.text.encode()))
            elif isinstance(item, Event):
                commands.append(command(b"PUBLISH", group_channel(item.group).encode(), layer.serialize(item.event)))
        if commands:
            await (await _pipeline()).execute(b"".join(commands), len(commands))
    finally:
        for item in batch:
            if isinstance(item, Synced):
                item.done.set()


async def _pipeline() -> Pipeline:
    """The live loop's connection for publishing, opened again after Redis was lost."""
    global _publisher
    if _publisher is None or not _publisher.usable:
        _publisher = await Pipeline.open()
    return _publisher


def delta_send(delta: Delta) -> None:
    _submit(delta)


def frame_send(conversation_id: int, frame: dict) -> None:
    """`frame` (the browser's, docs/protocol.md) to every tab on the conversation."""
    _submit(Frame(conversation_id, _encode(frame)))


def event_send(group: str, event: dict) -> None:
    _submit(Event(group, event))


def buffer_clear(message_id: int) -> None:
    _submit(BufferClear(message_id))


def flush(timeout: float = 3.0) -> bool:
    """Wait until everything queued before this call has been handed to Redis."""
    if _wake is None:
        return True
    done = threading.Event()
    _submit(Synced(done))
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
    return _text(text), _text(reasoning)


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""

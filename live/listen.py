"""Listening to one conversation's frames from ordinary async code (the API's views), as a socket would.

A WebSocket consumer is handed its frames by the hub (live/hub.py); code that waits
procedurally (an HTTP request waiting on a reply) subscribes here instead. Live frames
are best effort: `next` returns None when nothing came within the timeout, or when
Redis came back after losing frames, and the caller asks the database then, so a
lost frame, or Redis down, delays and never hangs.
"""

import asyncio
import json
import logging
from types import TracebackType

from .hub import hub

log = logging.getLogger(__name__)


class Subscription:
    """`async with Subscription(conversation_id) as frames: frame = await frames.next(1.0)`."""

    def __init__(self, conversation_id: int):
        self.conversation_id = conversation_id
        self.frames: asyncio.Queue[dict | None] = asyncio.Queue()
        self.live = False

    async def __aenter__(self) -> "Subscription":
        try:
            await hub().join(self.conversation_id, self)
            self.live = True
        except Exception as exc:
            log.warning("live updates unavailable; polling the database instead: %r", exc)
        return self

    def push(self, text: str) -> None:
        self.frames.put_nowait(json.loads(text))

    def reconnected(self) -> None:
        self.frames.put_nowait(None)

    async def next(self, timeout: float) -> dict | None:
        """The next frame (the browser's, docs/protocol.md), or None after `timeout` seconds without one."""
        if not self.live:
            await asyncio.sleep(timeout)
            return None
        try:
            return await asyncio.wait_for(self.frames.get(), timeout)
        except TimeoutError:
            return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.live:
            hub().leave(self.conversation_id, self)

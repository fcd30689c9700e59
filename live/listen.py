"""Listening to one group's live events from ordinary async code (the API's views), as a consumer would.

A WebSocket consumer is handed its events by Channels; code that waits procedurally
(an HTTP request waiting on a reply) subscribes here instead. Live events are best
effort: `next` returns None when nothing came within the timeout, and the caller
asks the database then, so a lost event, or Redis down, delays and never hangs.
"""

import asyncio
import logging
from types import TracebackType

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


class Subscription:
    """`async with Subscription(group) as events: event = await events.next(1.0)`."""

    def __init__(self, group: str):
        self.group = group
        self.layer = None
        self.channel = ""
        self._receiving: asyncio.Future | None = None

    async def __aenter__(self) -> "Subscription":
        try:
            layer = get_channel_layer()
            self.channel = await layer.new_channel()
            await layer.group_add(self.group, self.channel)
            self.layer = layer
        except Exception as exc:
            log.warning("live events unavailable; polling the database instead: %r", exc)
        return self

    async def next(self, timeout: float) -> dict | None:
        """The next event, or None after `timeout` seconds without one."""
        if self.layer is None:
            await asyncio.sleep(timeout)
            return None
        # One receive stays pending across calls: the pub/sub layer unsubscribes a channel
        # whose receive is cancelled, so a timeout must not cancel it (asyncio.wait does not).
        if self._receiving is None:
            self._receiving = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self._receiving}, timeout=timeout)
        if not done:
            return None
        receiving, self._receiving = self._receiving, None
        try:
            return receiving.result()
        except Exception as exc:
            log.warning("live events lost; polling the database instead: %r", exc)
            self.layer = None
            return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._receiving is not None:
            self._receiving.cancel()  # also unsubscribes the channel
        if self.layer is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                pass  # Redis is down: its subscriptions are gone with it

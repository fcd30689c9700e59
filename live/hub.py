"""Conversation frames from Redis straight to the sockets of this process.

Whatever a conversation's tabs are told (deltas, `done`, statuses, new messages)
is encoded once, as the browser's frame, by whoever publishes it, and PUBLISHed
to the conversation's own Redis channel (live/publish.py). Each web process
holds one subscriber connection per event loop, here: a socket showing a
conversation joins its channel, and every frame on it is handed to the socket
as the text it is. No channel-layer envelope, no decoding, no dispatch through
a consumer's inbox: reading Redis is one callback per socket read, parsed by
hiredis, however many frames it carries.

The subscriber is a plain asyncio protocol. Redis may go away: every listener is
then told (`reconnected`, once the hub is back) so that it can fetch what it
missed, and joins fail until Redis answers again, which the caller reports.
"""

import asyncio
import logging
from typing import Protocol

import hiredis

from . import wire
from .publish import conversation_channel

log = logging.getLogger(__name__)
CONFIRM_SECONDS = 5.0
RECONNECT_SECONDS = 1.0


class Listener(Protocol):
    def push(self, text: str) -> None:
        """A frame of the conversation; must not block."""

    def reconnected(self) -> None:
        """Redis was lost and is back: frames published meanwhile never came."""


class _Subscriber(wire.Connection):
    """One subscriber connection: SUBSCRIBE/UNSUBSCRIBE out, pushed messages in."""

    def __init__(self, hub: "Hub"):
        super().__init__()
        self.hub = hub
        self.authenticating = 0

    def received(self, reply: object) -> None:
        if isinstance(reply, hiredis.ReplyError):
            log.warning("live updates: Redis refused the subscriber: %s", reply)
            assert self.transport is not None
            self.transport.close()
        elif self.authenticating:  # +OK to AUTH
            self.authenticating -= 1
        elif isinstance(reply, list):
            kind, channel = reply[0], reply[1]
            if kind == b"message":
                self.hub.deliver(channel, reply[2])
            elif kind == b"subscribe":
                self.hub.confirmed(channel)

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.lost(self)


class Hub:
    """The conversations this process's sockets show, and one Redis subscription for all of them."""

    def __init__(self) -> None:
        self.listeners: dict[bytes, set[Listener]] = {}
        self.confirmations: dict[bytes, asyncio.Future] = {}
        self.subscriber: _Subscriber | None = None
        self.connecting: asyncio.Task | None = None

    async def join(self, conversation_id: int, listener: Listener) -> None:
        """Hand `listener` the conversation's frames. Returns once Redis has confirmed the subscription,
        so that whatever is published from then on reaches it; raises when Redis cannot be reached."""
        channel = conversation_channel(conversation_id).encode()
        self.listeners.setdefault(channel, set()).add(listener)
        try:
            subscriber = await self._subscriber()
            confirmation = self.confirmations.get(channel)
            if confirmation is None:
                confirmation = self.confirmations[channel] = asyncio.get_running_loop().create_future()
                subscriber.send(b"SUBSCRIBE", channel)
            await asyncio.wait_for(asyncio.shield(confirmation), CONFIRM_SECONDS)
        except BaseException:
            self.leave(conversation_id, listener)
            raise

    def leave(self, conversation_id: int, listener: Listener) -> None:
        channel = conversation_channel(conversation_id).encode()
        listeners = self.listeners.get(channel)
        if listeners is None:
            return
        listeners.discard(listener)
        if listeners:
            return
        del self.listeners[channel]
        confirmation = self.confirmations.pop(channel, None)
        if confirmation is not None and not confirmation.done():
            confirmation.cancel()
        if self.subscriber is not None and self.subscriber.transport is not None:
            self.subscriber.send(b"UNSUBSCRIBE", channel)

    # --- from the subscriber connection ---

    def deliver(self, channel: bytes, data: bytes) -> None:
        listeners = self.listeners.get(channel)
        if listeners:
            text = data.decode()
            for listener in tuple(listeners):
                try:
                    listener.push(text)
                except Exception:  # one listener's bug must not close the connection every socket shares
                    log.exception("live updates: a listener failed")

    def confirmed(self, channel: bytes) -> None:
        confirmation = self.confirmations.get(channel)
        if confirmation is not None and not confirmation.done():
            confirmation.set_result(None)

    def lost(self, subscriber: _Subscriber) -> None:
        if subscriber is not self.subscriber:
            return
        self.subscriber = None
        for confirmation in self.confirmations.values():
            if not confirmation.done():
                confirmation.set_exception(ConnectionError("Redis closed the live updates connection"))
        self.confirmations.clear()
        if self.listeners:
            log.warning("live updates: lost Redis; reconnecting")
            asyncio.get_running_loop().create_task(self._resubscribe())

    # --- the connection ---

    async def _subscriber(self) -> _Subscriber:
        if self.subscriber is not None:
            return self.subscriber
        if self.connecting is None:
            self.connecting = asyncio.get_running_loop().create_task(self._connect())
        try:
            return await asyncio.shield(self.connecting)
        finally:
            if self.connecting is not None and self.connecting.done():
                self.connecting = None

    async def _connect(self) -> _Subscriber:
        subscriber = _Subscriber(self)
        await wire.connect(subscriber)
        for greeting in wire.greeting(select=False):
            subscriber.authenticating += 1
            assert subscriber.transport is not None
            subscriber.transport.write(greeting)
        self.subscriber = subscriber
        return subscriber

    async def _resubscribe(self) -> None:
        """Back after losing Redis: subscribe again to every channel with a listener, then tell them."""
        while self.listeners and self.subscriber is None:
            await asyncio.sleep(RECONNECT_SECONDS)
            try:
                subscriber = await self._subscriber()
            except (OSError, TimeoutError) as exc:
                log.warning("live updates: Redis still unreachable: %r", exc)
                continue
            for channel in self.listeners:
                if channel not in self.confirmations:  # else a join since the loss has subscribed it
                    self.confirmations[channel] = asyncio.get_running_loop().create_future()
                    subscriber.send(b"SUBSCRIBE", channel)
            log.warning("live updates: Redis is back")
            for listeners in list(self.listeners.values()):
                for listener in tuple(listeners):
                    listener.reconnected()


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """This event loop's hub (a connection belongs to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]

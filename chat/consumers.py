"""The browser's one WebSocket. Thin: parse a frame, call a service, report.

The protocol is in docs/protocol.md.
"""

import asyncio
import functools
import json
import logging
import re
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.http import Http404

from live.hub import hub
from live.publish import buffer_read, user_group
from quotas.selectors import quota_json

from . import actions, selectors
from .models import Message
from .serializers import conversation_json, message_json

# A frame may carry a message of MAX_MESSAGE_CHARS written as \uXXXX escapes (6 characters each),
# plus this much JSON around it; the message itself is measured after decoding (chat/actions.py).
MAX_FRAME_CHARS_OVERHEAD = 4096
CLIENT_ID = re.compile(r'"client_id"\s*:\s*"((?:[^"\\]|\\.){0,200})"')
# Channels' default runs every ORM call of the process in ONE thread; sends from
# many sockets would queue behind each other. A pool, sized to the DB pool, does not.
_db_threads = ThreadPoolExecutor(max_workers=settings.WEB_DB_THREADS, thread_name_prefix="db")


def database_sync_to_async(func):
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=_db_threads)


log = logging.getLogger(__name__)
FLOOD_BURST = 30
FLOOD_PER_SECOND = 10.0
# Frames of the conversation waiting for a socket that does not read them (a stalled or hostile client).
# Past this the socket is closed; the page reconnects and resumes from a snapshot.
OUTBOX_MAX = 5000
BEHIND = 4008


UNAVAILABLE = "Live updates are unavailable right now: answers still complete, and a reload shows them."
QUEUED_LATER = "Your message was kept; it will be answered as soon as the service recovers (within a few minutes)."
SIGNED_OUT = 4401


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One browser tab. Its user's events come through the channel layer; the frames of the conversation
    it shows come from the process's hub (live/hub.py), which calls `push`, and are written in order
    by `_write_forever`, so that a socket that stops reading holds up only itself."""

    closed = False
    conversation_id: int | None = None
    handling = 0
    writer: asyncio.Task | None = None

    async def __call__(self, scope, receive, send) -> None:
        """As Channels' own, except that with Redis down the socket still opens, without live updates
        (Channels subscribes the socket's channel before `connect`, and fails the handshake with a 500)."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        try:
            self.channel_name = await self.channel_layer.new_channel()
        except Exception:
            log.warning("channel layer unavailable; this socket has no live updates", exc_info=True)
            self.channel_layer = None
        self.base_send = send
        sources = [receive]
        if self.channel_layer is not None:
            sources.append(functools.partial(self.channel_layer.receive, self.channel_name))
        try:
            await await_many_dispatch(sources, self.dispatch)
        except StopConsumer:
            pass

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=SIGNED_OUT)
            return
        self.outbox: deque[str] = deque()
        self.wake = asyncio.Event()
        self.tokens = float(FLOOD_BURST)
        self.tokens_at = time.monotonic()
        self.told_unavailable = False
        await self.accept()
        self.writer = asyncio.get_running_loop().create_task(self._write_forever())
        await self._join(user_group(self.user.id))

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if self.writer is not None:
            self.writer.cancel()
        if self.conversation_id:
            hub().leave(self.conversation_id, self)
        if getattr(self, "user", None) is None or not self.user.is_authenticated or self.channel_layer is None:
            return
        try:
            await self.channel_layer.group_discard(user_group(self.user.id), self.channel_name)
        except Exception:  # Redis is down: its subscriptions are gone with it
            pass

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closed = True
        await super().close(code=code, reason=reason)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        # Frames queued behind a close (a flood, a sign-out) are dropped: the ASGI server refuses them.
        if not self.closed:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def _join(self, group: str) -> None:
        """Subscribe to a group; with Redis down the socket stays up without live updates, and says so."""
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except Exception:
            await self._unavailable()

    async def _unavailable(self) -> None:
        if not self.told_unavailable:
            self.told_unavailable = True
            await self.error("unavailable", UNAVAILABLE)

    # --- frames of the conversation, from the hub ---

    def push(self, text: str) -> None:
        if len(self.outbox) >= OUTBOX_MAX:
            if not self.closed:
                log.warning("a socket fell %d frames behind; closing it", OUTBOX_MAX)
                self.closed = True
                asyncio.get_running_loop().create_task(self.base_send({"type": "websocket.close", "code": BEHIND}))
            return
        self.outbox.append(text)
        self.wake.set()

    def reconnected(self) -> None:
        """Frames published while Redis was away never came: send the conversation afresh."""
        if self.conversation_id and not self.closed:
            asyncio.get_running_loop().create_task(self._handle(self.do_subscribe, {"conversation_id": self.conversation_id}))

    async def _write_forever(self) -> None:
        send = self.scope.get("server_send", self.base_send)  # config/asgi.py: past the session middleware
        while True:
            await self.wake.wait()
            self.wake.clear()
            # While a browser frame is being handled its answers go first, as they would one event at a time.
            while self.outbox and not self.handling and not self.closed:
                try:
                    await send({"type": "websocket.send", "text": self.outbox.popleft()})
                except Exception:  # the client went away; the server tells the consumer so
                    return

    async def dispatch(self, message: dict) -> None:
        # Channels' own dispatch first closes stale database connections, in the
        # process's ONE sync thread, before every event: a thread hop per delta per
        # socket. This consumer reaches the database only through
        # database_sync_to_async, which closes them in the thread that uses them.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    def _flooding(self) -> bool:
        now = time.monotonic()
        self.tokens = min(FLOOD_BURST, self.tokens + (now - self.tokens_at) * FLOOD_PER_SECOND)
        self.tokens_at = now
        self.tokens -= 1
        return self.tokens < 0

    async def error(self, code: str, message: str, **extra) -> None:
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

    @staticmethod
    def _client_id(text_data: str) -> str | None:
        """The client_id of a frame too large or malformed to decode, so that its error still answers it."""
        found = CLIENT_ID.search(text_data[:100_000])
        if found is None:
            return None
        try:
            return json.loads(f'"{found.group(1)}"')
        except ValueError:
            return None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed:
            return
        if self._flooding():
            await self.error("flood", "Too many messages at once; reconnecting.")
            await self.close(code=4429)
            return
        if text_data is None:
            await self.error("invalid", "Binary frames are not accepted.")
            return
        if len(text_data) > settings.MAX_MESSAGE_CHARS * 6 + MAX_FRAME_CHARS_OVERHEAD:
            await self.error("too_long", "That frame is too large.", client_id=self._client_id(text_data))
            return
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to be anything we sent
            await self.error("invalid", "That frame is not JSON we understand.", client_id=self._client_id(text_data))
            return
        if not isinstance(frame, dict):
            await self.error("invalid", "A frame is a JSON object.")
            return
        kind = frame.get("type")
        handler = getattr(self, f"do_{kind}", None) if isinstance(kind, str) else None
        if handler is None:
            await self.error(
                "invalid", "Unknown frame type.", request=kind if isinstance(kind, str) else None, client_id=frame.get("client_id")
            )
            return
        await self._handle(handler, frame)

    async def _handle(self, handler, frame: dict) -> None:
        self.handling += 1
        try:
            await handler(frame)
        except actions.ActionRefused as exc:
            await self.send_json({**exc.as_json(), "request": frame.get("type"), "client_id": frame.get("client_id")})
            if exc.code == "signed_out":
                await self.close(code=SIGNED_OUT)
        except Http404 as exc:
            await self.error("not_found", str(exc) or "Not found.", request=frame.get("type"), client_id=frame.get("client_id"))
        finally:
            self.handling -= 1
            if self.outbox:
                self.wake.set()

    # --- frames from the browser ---

    async def do_ping(self, frame: dict) -> None:
        await self.send_json({"type": "pong"})

    async def do_subscribe(self, frame: dict) -> None:
        snapshot = await database_sync_to_async(self._conversation_snapshot)(frame.get("conversation_id"))
        await self._follow(snapshot["conversation"]["id"])
        # Read live text only after joining the group: a delta sent meanwhile
        # arrives twice at worst, and the offsets drop the copy.
        for message in snapshot["messages"]:
            if message["status"] in ("pending", "streaming"):
                await self._fill_from_buffer(message)
        await self.send_json({"type": "snapshot", **snapshot})

    async def do_resync(self, frame: dict) -> None:
        message = await database_sync_to_async(self._message_snapshot)(frame.get("message_id"))
        if message["status"] in ("pending", "streaming"):
            await self._fill_from_buffer(message)
        await self.send_json({"type": "message", "message": message})

    async def do_send(self, frame: dict) -> None:
        conversation_id = frame.get("conversation_id")
        subscribed = self._subscribed_to(conversation_id)
        user_message, reply = await database_sync_to_async(actions.message_send)(
            user=self.user,
            conversation_id=conversation_id,
            model_slug=frame.get("model"),
            text=frame.get("text"),
            attachment_ids=frame.get("attachments"),
            effort=frame.get("effort"),
            parent_id=frame.get("parent_id"),
        )
        await self._follow(reply.conversation_id)
        await self._sent(frame, user_message, reply, subscribed=subscribed)

    async def do_regenerate(self, frame: dict) -> None:
        reply = await database_sync_to_async(actions.reply_regenerate)(
            user=self.user, message_id=frame.get("message_id"), model_slug=frame.get("model"), effort=frame.get("effort")
        )
        await self._sent(frame, None, reply, subscribed=self._subscribed_to(reply.conversation_id))

    async def do_edit(self, frame: dict) -> None:
        user_message, reply = await database_sync_to_async(actions.message_edit)(
            user=self.user,
            message_id=frame.get("message_id"),
            text=frame.get("text"),
            model_slug=frame.get("model"),
            effort=frame.get("effort"),
        )
        await self._sent(frame, user_message, reply, subscribed=self._subscribed_to(reply.conversation_id))

    async def do_continue(self, frame: dict) -> None:
        reply = await database_sync_to_async(actions.reply_continue)(user=self.user, message_id=frame.get("message_id"))
        await self._sent(frame, None, reply, subscribed=self._subscribed_to(reply.conversation_id))

    async def do_switch(self, frame: dict) -> None:
        conversation = await database_sync_to_async(actions.branch_switch)(user=self.user, message_id=frame.get("message_id"))
        await self.do_subscribe({"conversation_id": conversation.id})

    async def do_stop(self, frame: dict) -> None:
        await database_sync_to_async(actions.reply_stop)(user=self.user, message_id=frame.get("message_id"))

    async def do_pick(self, frame: dict) -> None:
        await database_sync_to_async(actions.model_pick)(user=self.user, model_slug=frame.get("model"))

    async def do_quota(self, frame: dict) -> None:
        await self.chat_quota({})

    # --- helpers ---

    def _conversation_snapshot(self, conversation_id: object) -> dict:
        conversation = selectors.conversation_get_for_user(user=self.user, conversation_id=conversation_id)
        messages = selectors.conversation_messages(conversation=conversation)
        return {
            "conversation": conversation_json(conversation),
            "messages": [message_json(m) for m in messages],
        }

    def _message_snapshot(self, message_id: object) -> dict:
        return message_json(selectors.message_get_for_user(user=self.user, message_id=message_id))

    def _subscribed_to(self, conversation_id: object) -> bool:
        """This socket already gets the conversation's frames (asked before a send, which may open another
        conversation), so it cannot miss the reply's `done`: no need to read the reply back."""
        return self.conversation_id is not None and conversation_id == self.conversation_id and not self.told_unavailable

    async def _catch_up(self, reply_id: int) -> None:
        """A reply can start, and even end, before this socket joined its conversation's channel (the task
        was enqueued at commit): what was published meanwhile went to no one. Read it back now that the
        socket is subscribed: its `done` if it ended, else the text streamed so far, as `resync` answers
        it, after which deltas carry on by offset. A frame sent meanwhile may arrive twice; offsets drop it."""
        message = await database_sync_to_async(self._message_snapshot)(reply_id)
        if message["status"] not in ("pending", "streaming"):
            await self.send_json({"type": "done", "message": message})
            return
        await self._fill_from_buffer(message)
        if message["text"] or message["reasoning"]:
            await self.send_json({"type": "message", "message": message})

    async def _fill_from_buffer(self, message: dict) -> None:
        buffered = await buffer_read(message["id"])
        # The buffer is ahead of the last checkpoint unless Redis lost it.
        if buffered and len(buffered[0]) >= len(message["text"]):
            message["text"], message["reasoning"] = buffered

    async def _follow(self, conversation_id: int) -> None:
        if conversation_id == self.conversation_id:
            return
        if self.conversation_id:
            hub().leave(self.conversation_id, self)
        self.conversation_id = conversation_id
        try:
            await hub().join(conversation_id, self)
        except Exception:
            await self._unavailable()

    async def _sent(self, frame: dict, user_message: Message | None, reply: Message, *, subscribed: bool) -> None:
        """`sent`; then, unless the socket got the conversation's frames before the reply existed, what it missed."""
        await self.send_json(
            {
                "type": "sent",
                "client_id": frame.get("client_id"),
                "conversation": conversation_json(reply.conversation),
                "user_message": message_json(user_message) if user_message else None,
                "reply": message_json(reply),
            }
        )
        if getattr(reply, "queued", True) is False:
            await self.error("unavailable", QUEUED_LATER, request=frame.get("type"), client_id=frame.get("client_id"))
        if not subscribed:
            await self._catch_up(reply.id)

    # --- the user's events, from the channel layer ---

    async def chat_conversation(self, event: dict) -> None:
        await self.send_json({**event, "type": "conversation"})

    async def chat_quota(self, event: dict) -> None:
        # Pushed after a send with the numbers computed once; asked for by the picker without them.
        models = event["models"] if "models" in event else await database_sync_to_async(quota_json)(self.user)
        await self.send_json({"type": "quota", "models": models, "partial": event.get("partial", False)})

    async def session_ended(self, event: dict) -> None:
        """One session signed out, or (session_key None) the user was deactivated or changed password."""
        session = self.scope.get("session")
        if event.get("session_key") is None or (session is not None and session.session_key == event["session_key"]):
            await self.close(code=SIGNED_OUT)

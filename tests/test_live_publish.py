"""Live publishing: a backlog is sent as fewer, larger deltas that the browser assembles the same
way, and what we publish reaches a consumer that joined the group through the channel layer."""

import asyncio
import json

from channels.layers import get_channel_layer

from live import publish
from live.loop import run_soon
from live.publish import Delta, Event, merged


def delta(message_id: int, offset: int, text: str, conversation_id: int = 1) -> Delta:
    return Delta(conversation_id=conversation_id, message_id=message_id, offset=offset, text=text, reasoning_offset=0, reasoning="")


def test_consecutive_deltas_of_a_reply_are_joined_at_the_first_offset():
    batch = [delta(7, 0, "Hel"), delta(8, 0, "Other", 2), delta(7, 3, "lo"), delta(7, 5, "!")]
    assert [(d.message_id, d.offset, d.text) for d in merged(batch)] == [(7, 0, "Hello!"), (8, 0, "Other")]


def test_a_delta_after_another_event_of_its_conversation_is_not_moved_before_it():
    waiting = Event("conversation-1", {"type": "chat.status", "message_id": 7, "status": "waiting"})
    out = merged([delta(7, 0, "a"), waiting, delta(7, 1, "b")])
    assert [getattr(item, "text", None) for item in out] == ["a", None, "b"]


def test_an_event_to_another_group_does_not_stop_the_joining():
    other = Event("conversation-2", {"type": "chat.status", "message_id": 9, "status": "waiting"})
    out = merged([delta(7, 0, "a"), other, delta(7, 1, "b")])
    assert [getattr(item, "text", None) for item in out] == ["ab", None]


def test_what_we_publish_reaches_a_channel_that_joined_the_group_through_the_installed_channel_layer(settings):
    """Fails if channels_redis changes how it names a group's pub/sub channel."""
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "test-contract"
    group = publish.conversation_group(424242)

    async def listen() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        publish.event_send(group, {"type": "chat.status", "message_id": 1, "status": "waiting", "detail": ""})
        publish.delta_send(delta(1, 0, "hi", 424242))
        first = await asyncio.wait_for(layer.receive(channel), 10)
        second = await asyncio.wait_for(layer.receive(channel), 10)
        await layer.group_discard(group, channel)
        return {"first": first, "second": second}

    received = run_soon(listen()).result(20)
    assert received["first"]["type"] == "chat.status"
    assert received["second"]["type"] == "chat.delta"
    assert json.loads(received["second"]["frame"]) == {
        "type": "delta",
        "message_id": 1,
        "offset": 0,
        "text": "hi",
        "reasoning_offset": 0,
        "reasoning": "",
    }

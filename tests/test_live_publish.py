"""Live publishing: a backlog is sent as fewer, larger deltas that the browser assembles the same
way; a conversation's frames reach the sockets that joined it through the hub, as published, in
order; a user's events reach a consumer that joined the user's group through the channel layer."""

import asyncio
import json

from channels.layers import get_channel_layer

from live import publish
from live.loop import run_soon
from live.publish import Delta, Frame, merged
from tests.helpers import ConversationListener, wait_until


def delta(message_id: int, offset: int, text: str, conversation_id: int = 1) -> Delta:
    return Delta(conversation_id=conversation_id, message_id=message_id, offset=offset, text=text, reasoning_offset=0, reasoning="")


def test_consecutive_deltas_of_a_reply_are_joined_at_the_first_offset():
    batch = [delta(7, 0, "Hel"), delta(8, 0, "Other", 2), delta(7, 3, "lo"), delta(7, 5, "!")]
    assert [(d.message_id, d.offset, d.text) for d in merged(batch)] == [(7, 0, "Hello!"), (8, 0, "Other")]


def test_a_delta_after_another_frame_of_its_conversation_is_not_moved_before_it():
    waiting = Frame(1, '{"type":"status","message_id":7,"status":"waiting"}')
    out = merged([delta(7, 0, "a"), waiting, delta(7, 1, "b")])
    assert [getattr(item, "text", None) for item in out] == ["a", waiting.text, "b"]


def test_a_frame_to_another_conversation_does_not_stop_the_joining():
    other = Frame(2, '{"type":"status","message_id":9,"status":"waiting"}')
    out = merged([delta(7, 0, "a"), other, delta(7, 1, "b")])
    assert [getattr(item, "text", None) for item in out] == ["ab", other.text]


def test_a_conversations_frames_reach_every_listener_that_joined_it_in_the_order_published():
    first, second, elsewhere = ConversationListener(424242), ConversationListener(424242), ConversationListener(424243)
    publish.frame_send(424242, {"type": "status", "message_id": 1, "status": "waiting", "detail": ""})
    for offset, word in [(0, "Hello"), (5, " there"), (11, "!")]:
        publish.delta_send(delta(1, offset, word, 424242))
    publish.frame_send(424242, {"type": "done", "message": {"id": 1}})
    for listener in (first, second):
        frames = listener.frames()
        kinds = [f["type"] for f in frames]
        assert kinds[0] == "status" and kinds[-1] == "done" and set(kinds[1:-1]) == {"delta"}  # deltas queued together may be joined
        assert "".join(f["text"] for f in frames[1:-1]) == "Hello there!"
    assert elsewhere.frames() == []


def test_a_listener_that_left_gets_nothing_more():
    from live.hub import hub

    listener = ConversationListener(424244)
    publish.frame_send(424244, {"type": "status", "message_id": 1, "status": "waiting", "detail": ""})
    assert [f["type"] for f in listener.frames()] == ["status"]

    async def leave() -> None:
        hub().leave(424244, listener)

    asyncio.run_coroutine_threadsafe(leave(), listener.loop).result(5)
    stayed = ConversationListener(424244)
    publish.frame_send(424244, {"type": "status", "message_id": 1, "status": "thinking", "detail": ""})
    assert [f["status"] for f in stayed.frames()] == ["thinking"]
    assert [f["status"] for f in listener.received] == ["waiting"]


def test_what_we_publish_to_a_user_reaches_a_channel_that_joined_the_group_through_the_installed_channel_layer(settings):
    """Fails if channels_redis changes how it names a group's pub/sub channel."""
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "test-contract"
    group = publish.user_group(424242)

    async def listen() -> dict:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        publish.event_send(group, {"type": "chat.quota", "models": [], "partial": True})
        received = await asyncio.wait_for(layer.receive(channel), 10)
        await layer.group_discard(group, channel)
        return received

    assert run_soon(listen()).result(20) == {"type": "chat.quota", "models": [], "partial": True}


def test_a_delta_frame_is_the_browsers_json():
    assert json.loads(delta(1, 5, "hi").frame()) == {
        "type": "delta",
        "message_id": 1,
        "offset": 5,
        "text": "hi",
        "reasoning_offset": 0,
        "reasoning": "",
    }


def test_the_resume_buffer_is_kept_in_the_database_that_redis_url_names(settings, monkeypatch):
    """The publisher speaks Redis itself (live/wire.py): it must SELECT the URL's database, where readers look."""
    settings.REDIS_URL = settings.REDIS_URL.rsplit("/", 1)[0] + "/7"
    monkeypatch.setattr(publish, "_publisher", None)  # connections for this URL, not the session's
    monkeypatch.setattr(publish, "_redis", {})
    publish.delta_send(delta(424250, 0, "kept", 424250))
    assert publish.flush()
    assert run_soon(publish.buffer_read(424250)).result(5) == ("kept", "")
    publish.buffer_clear(424250)
    assert publish.flush()
    assert run_soon(publish.buffer_read(424250)).result(5) is None


def test_text_waiting_for_the_next_tick_goes_out_at_the_tick_though_no_chunk_follows():
    """A model that pauses mid-answer: the words before the pause are not held until it resumes."""
    from types import SimpleNamespace

    from generation.provider import Chunk
    from generation.reply import ReplyStream

    listener = ConversationListener(424260)
    stream = ReplyStream(SimpleNamespace(id=424260, conversation_id=424260))  # type: ignore[arg-type]

    async def two_chunks_then_a_pause() -> None:
        stream.add(Chunk(text="Hello"))  # the first words: at once
        stream.add(Chunk(text=" world"))  # held for the process's next tick

    run_soon(two_chunks_then_a_pause()).result(5)
    wait_until(lambda: len(listener.received) == 2, timeout=5, what="the held words")
    assert [(f["offset"], f["text"]) for f in listener.received] == [(0, "Hello"), (5, " world")]


def test_words_many_replies_hold_leave_together_at_the_tick_in_one_write(monkeypatch):
    """Twenty replies whose first words came at different moments each hold more: it all goes out at
    the same tick, in one write to Redis, and every listener gets its own reply's words in order."""
    from types import SimpleNamespace

    from generation.provider import Chunk
    from generation.reply import ReplyStream

    writes: list[int] = []
    send_batch = publish._send_batch

    async def counted(batch):
        writes.append(sum(isinstance(item, Delta) for item in batch))
        await send_batch(batch)

    monkeypatch.setattr(publish, "_send_batch", counted)
    ids = range(424300, 424320)
    listeners = {i: ConversationListener(i) for i in ids}
    streams = [ReplyStream(SimpleNamespace(id=i, conversation_id=i)) for i in ids]  # type: ignore[arg-type]

    async def first_words() -> None:
        for stream in streams:
            stream.add(Chunk(text="Hello"))  # at once, each
            await asyncio.sleep(0.002)  # replies start apart, as they do

    run_soon(first_words()).result(5)
    wait_until(lambda: all(len(listener.received) == 1 for listener in listeners.values()), timeout=5, what="the first words")
    writes.clear()

    async def more_words() -> None:
        for stream in streams:
            stream.add(Chunk(text=" there"))
            stream.add(Chunk(text=" world"))

    run_soon(more_words()).result(5)
    wait_until(lambda: all(len(listener.received) == 2 for listener in listeners.values()), timeout=5, what="the held words")
    assert writes == [20]
    for i, listener in listeners.items():
        assert [(f["message_id"], f["offset"], f["text"]) for f in listener.received] == [(i, 0, "Hello"), (i, 5, " there world")]


def test_the_first_words_of_the_reasoning_and_of_the_answer_go_out_at_once_the_rest_waits_for_a_tick(monkeypatch):
    from types import SimpleNamespace

    from generation import reply
    from generation.provider import Chunk
    from generation.reply import ReplyStream

    held: list[ReplyStream] = []
    monkeypatch.setattr(reply.ticks, "wait", held.append)  # no tick comes: what waits for one stays held
    listener = ConversationListener(424330)
    stream = ReplyStream(SimpleNamespace(id=424330, conversation_id=424330))  # type: ignore[arg-type]

    async def add(*chunks: Chunk) -> None:
        for chunk in chunks:
            stream.add(chunk)

    run_soon(add(Chunk(reasoning="Let me"))).result(5)  # the reply's first words: at once
    wait_until(lambda: len(listener.received) == 1, timeout=5, what="the reasoning's first words")
    # Held, then the answer's first words go at once with what was held, then held again.
    run_soon(add(Chunk(reasoning=" think"), Chunk(text="Hello"), Chunk(text=" world"))).result(5)
    wait_until(lambda: len(listener.received) == 2, timeout=5, what="the answer's first words")
    assert [(f["reasoning"], f["text"]) for f in listener.received] == [("Let me", ""), (" think", "Hello")]
    assert held == [stream] and stream.pending_text == " world"

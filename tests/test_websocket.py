"""The WebSocket: who may connect, what bad frames get, and a real streamed answer."""

import json

import pytest
from asgiref.sync import async_to_sync
from websockets.sync.client import connect

from chat.models import Message
from tests.helpers import handshake, receive_until_done, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_anonymous_visitor_cannot_connect(catalog):
    connected, _ = async_to_sync(handshake)(None)
    assert not connected


def test_a_foreign_origin_is_rejected_even_with_a_session(catalog, make_user):
    connected, _ = async_to_sync(handshake)(session_cookie(make_user()), origin="https://evil.example")
    assert not connected


def test_a_logged_in_user_from_our_origin_connects(catalog, make_user):
    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        connected, communicator = await handshake(cookie)
        await communicator.send_json_to({"type": "ping"})
        reply = await communicator.receive_json_from()
        await communicator.disconnect()
        return connected, reply

    assert run() == (True, {"type": "pong"})


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\x00\x01binary", "invalid"),
        ("{not json", "invalid"),
        ("[1, 2]", "invalid"),
        ('{"type": "explode"}', "invalid"),
        ('{"type": "send", "conversation_id": null, "model": "o1-mini", "text": "   "}', "empty"),
        ('{"type": "send", "conversation_id": null, "model": "nope", "text": "hi"}', "unknown_model"),
        ('{"type": "subscribe", "conversation_id": "DROP TABLE"}', "not_found"),
        ('{"type": "stop", "message_id": 99999999}', "not_found"),
        ('{"type": "send", "conversation_id": null, "model": "o1-mini\\u0000", "text": "hi"}', "unknown_model"),
        ("[" * 100_000, "invalid"),
    ],
)
def test_bad_frames_get_a_clear_error_and_change_nothing(catalog, make_user, frame, code):
    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        if isinstance(frame, bytes):
            await communicator.send_to(bytes_data=frame)
        else:
            await communicator.send_to(text_data=frame)
        answer = await communicator.receive_json_from()
        await communicator.disconnect()
        return answer

    answer = run()
    assert answer["type"] == "error"
    assert answer["code"] == code
    assert answer["message"]
    assert not Message.objects.exists()


def test_another_users_conversation_cannot_be_followed(catalog, make_user):
    from chat import actions

    _, reply = actions.message_send(user=make_user(), conversation_id=None, model_slug="o1-mini", text="secret plans")

    frames = [
        {"type": "subscribe", "conversation_id": reply.conversation_id},
        {"type": "resync", "message_id": reply.id},
        {"type": "stop", "message_id": reply.id},
        {"type": "regenerate", "message_id": reply.id},
        {"type": "edit", "message_id": reply.id - 1, "text": "hijacked"},
        {"type": "continue", "message_id": reply.id},
        {"type": "switch", "message_id": reply.id - 1},
        {"type": "send", "conversation_id": reply.conversation_id, "model": "o1-mini", "text": "me too"},
    ]

    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        answers = []
        for frame in frames:
            await communicator.send_json_to(frame)
            answers.append(await communicator.receive_json_from())
        await communicator.disconnect()
        return answers

    for answer in run():
        assert answer["code"] == "not_found"
        assert "secret" not in json.dumps(answer)
    stored = Message.objects.filter(conversation_id=reply.conversation_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[0].text == "secret plans"
    untouched = Message.objects.get(id=reply.id)
    assert untouched.status != "stopped" and untouched.conversation.current_leaf_id == reply.id


def test_a_flood_of_frames_closes_the_socket(catalog, make_user):
    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        for _ in range(40):
            await communicator.send_json_to({"type": "ping"})
        frames = []
        while True:
            output = await communicator.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                return frames, output["code"]
            frames.append(json.loads(output["text"]))

    frames, code = run()
    assert code == 4429
    assert frames[-1]["code"] == "flood"


def test_an_answer_streams_end_to_end_through_web_worker_and_simulator(live_url, make_user):
    user = make_user()
    ws_url = live_url.replace("http", "ws") + "/ws/chat/"
    with connect(ws_url, additional_headers={"Cookie": session_cookie(user), "Origin": live_url}) as ws:
        ws.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation_id": None,
                    "model": "o1-mini",
                    "text": "Stream please [sim:think=0.2] [sim:tokens=60]",
                    "client_id": "c1",
                }
            )
        )
        sent = json.loads(ws.recv(timeout=10))
        assert sent["type"] == "sent" and sent["client_id"] == "c1"
        reply_id = sent["reply"]["id"]
        streamed, frames = receive_until_done(ws, reply_id)

    deltas = [f for f in frames if f["type"] == "delta"]
    assert len(deltas) > 3, "the answer arrived in pieces, as it was written"
    stored = Message.objects.get(id=reply_id)
    assert stored.status == Message.Status.DONE
    assert streamed == stored.text
    assert stored.text.startswith("You said: Stream please")
    assert stored.reasoning_tokens > 0


def test_every_error_answers_the_frame_it_refuses_by_its_client_id(catalog, make_user):
    frames = [
        '{"type": "send", "conversation_id": null, "model": "nope", "text": "hi", "client_id": "c1"}',
        '{"type": "explode", "client_id": "c2"}',
        '{"client_id": "c3", "type": "send", ',
        '{"type": "send", "client_id": "c4", "text": "' + "x" * 700_000 + '"}',
    ]

    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        answers = []
        for frame in frames:
            await communicator.send_to(text_data=frame)
            answers.append(await communicator.receive_json_from())
        await communicator.disconnect()
        return answers

    answers = run()
    assert [a["client_id"] for a in answers] == ["c1", "c2", "c3", "c4"]
    assert [a["code"] for a in answers] == ["unknown_model", "invalid", "invalid", "too_long"]


@pytest.mark.usefixtures("private_queue")
def test_a_long_chinese_message_sent_with_escapes_is_measured_decoded_and_accepted(catalog, make_user):
    text = "漢" * 40_000  # 40,000 characters: under MAX_MESSAGE_CHARS, 240,000 once escaped as \\uXXXX
    frame = json.dumps({"type": "send", "conversation_id": None, "model": "o1-mini", "text": text, "client_id": "c1"})
    assert len(frame) > 200_000

    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        await communicator.send_to(text_data=frame)
        answer = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return answer

    answer = run()
    assert (answer["type"], answer["client_id"]) == ("sent", "c1")
    assert Message.objects.get(id=answer["user_message"]["id"]).text == text


def test_a_reply_that_ends_before_the_socket_follows_its_chat_still_reports_done(simulator, catalog, make_user, monkeypatch):
    """The task is enqueued at commit, before the socket joins the conversation's group: a reply that
    fails at once (here: generated right at commit) sent its `done` to no one."""
    from chat import actions
    from generation import reply as generation

    monkeypatch.setattr(actions, "_enqueue", lambda reply: generation.reply_generate(message_id=reply.id))

    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        await communicator.send_json_to(
            {"type": "send", "conversation_id": None, "model": "o1-mini", "text": "x [sim:fault=400]", "client_id": "c1"}
        )
        frames = []
        while not frames or frames[-1]["type"] != "done":
            frames.append(await communicator.receive_json_from(timeout=10))
        await communicator.disconnect()
        return frames

    frames = run()
    kinds = [f["type"] for f in frames]
    assert kinds.index("sent") < kinds.index("done")
    assert frames[-1]["message"]["status"] == "failed"


def test_a_socket_that_stops_reading_is_closed_once_its_frames_pile_up_and_holds_up_no_other():
    """The hub hands every socket its frames without waiting for any; one that never reads is bounded."""
    import asyncio
    from collections import deque

    from chat.consumers import BEHIND, OUTBOX_MAX, ChatConsumer

    sent: list[dict] = []

    async def pile_up() -> None:
        stalled, reading = ChatConsumer(), ChatConsumer()
        for consumer in (stalled, reading):
            consumer.outbox, consumer.wake, consumer.scope = deque(), asyncio.Event(), {}

        async def never_returns(message: dict) -> None:
            if message["type"] == "websocket.close":
                sent.append(message)
                return
            await asyncio.Event().wait()  # a client whose TCP window stays shut

        async def reads(message: dict) -> None:
            sent.append(message)

        stalled.base_send, reading.base_send = never_returns, reads
        writers = [asyncio.create_task(c._write_forever()) for c in (stalled, reading)]
        for i in range(OUTBOX_MAX + 10):
            stalled.push(f'{{"n":{i}}}')
            reading.push(f'{{"n":{i}}}')
            await asyncio.sleep(0)  # the writers run, as they would between reads of Redis
        for writer in writers:
            writer.cancel()
        assert stalled.closed and len(stalled.outbox) <= OUTBOX_MAX

    asyncio.run(pile_up())
    closes = [m for m in sent if m["type"] == "websocket.close"]
    assert closes == [{"type": "websocket.close", "code": BEHIND}]
    assert sum(1 for m in sent if m["type"] == "websocket.send") == OUTBOX_MAX + 10, "the reading socket got every frame"

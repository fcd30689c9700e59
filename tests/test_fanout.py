"""A backlog of live updates is sent as fewer, larger deltas that the browser assembles the same way."""

from chat.fanout import _merged


def delta(message_id: int, offset: int, text: str, group: str = "conversation-1") -> tuple:
    event = {"type": "chat.delta", "message_id": message_id, "offset": offset, "text": text,
             "reasoning_offset": 0, "reasoning": ""}
    return ("delta", group, event)


def test_consecutive_deltas_of_a_reply_are_joined_at_the_first_offset():
    batch = [delta(7, 0, "Hel"), delta(8, 0, "Other", "conversation-2"), delta(7, 3, "lo"), delta(7, 5, "!")]
    merged = _merged(batch)
    assert [(e["message_id"], e["offset"], e["text"]) for _, _, e in merged] == [(7, 0, "Hello!"), (8, 0, "Other")]


def test_a_delta_after_another_event_of_its_conversation_is_not_moved_before_it():
    done = ("event", "conversation-1", {"type": "chat.status", "message_id": 7, "status": "waiting"})
    merged = _merged([delta(7, 0, "a"), done, delta(7, 1, "b")])
    assert [(kind, e.get("text")) for kind, _, e in merged] == [("delta", "a"), ("event", None), ("delta", "b")]

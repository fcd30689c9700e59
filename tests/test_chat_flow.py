"""Sending a message and generating the reply, through the simulator over real HTTP."""

import pytest

from catalog.context import context_trim, turn_tokens
from chat import actions
from chat.models import Conversation, Message
from generation import reply as generation
from quotas.models import LedgerEntry
from tests.helpers import quota_state

# Replies are generated in this process, and their checkpoints are written from another thread, which
# must see the rows: each test commits for real, and what it enqueues no worker takes.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_queue")]


def send(user, text: str, model: str = "o1-mini", conversation_id: int | None = None) -> Message:
    _, reply = actions.message_send(user=user, conversation_id=conversation_id, model_slug=model, text=text)
    return reply


def answer(reply: Message) -> Message:
    generation.reply_generate(message_id=reply.id)
    reply.refresh_from_db()
    return reply


def test_a_reply_is_streamed_and_stored_with_usage(simulator, catalog, make_user):
    user = make_user()
    reply = answer(send(user, "Hello there [sim:think=0]"))

    assert reply.status == Message.Status.DONE
    assert reply.text.startswith("You said: Hello there")
    assert reply.prompt_tokens > 0
    assert reply.reasoning_tokens > 0
    assert reply.completion_tokens > reply.reasoning_tokens
    assert quota_state(reply) == "settled"
    settle = LedgerEntry.objects.get(reply_id=reply.id, kind="settle")
    assert settle.reasoning_tokens == reply.reasoning_tokens


def test_the_context_holds_only_user_text_and_visible_answers(simulator, catalog, make_user):
    user = make_user()
    first = answer(send(user, "First question [sim:think=0] [sim:reasoning]"))
    assert first.reasoning, "the simulator sent reasoning_content, which we keep for display"
    second = answer(send(user, "Second question [sim:think=0] [sim:reasoning]", conversation_id=first.conversation_id))
    answer(send(user, "Third question [sim:think=0]", conversation_id=first.conversation_id))

    last_request = simulator.requests()[-1]
    sent = [(m["role"], m["content"]) for m in last_request["messages"]]
    assert sent == [
        ("user", "First question [sim:think=0] [sim:reasoning]"),
        ("assistant", first.text),
        ("user", "Second question [sim:think=0] [sim:reasoning]"),
        ("assistant", second.text),
        ("user", "Third question [sim:think=0]"),
    ]
    assert all(set(m) == {"role", "content"} for m in last_request["messages"])
    assert first.reasoning not in str(last_request)
    assert "max_completion_tokens" in last_request and "max_tokens" not in last_request
    assert last_request["stream_options"] == {"include_usage": True}


def test_trimming_keeps_prompt_and_output_reserve_within_the_window():
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 300} for i in range(21)]
    window, reserve = 5_000, 2_000

    kept = context_trim(turns, context_window=window, max_output_tokens=reserve)

    assert kept[-1] is turns[-1]
    assert kept[0]["role"] == "user"
    assert len(kept) < len(turns)
    assert sum(turn_tokens(t["content"]) for t in kept) + reserve <= window
    # Nothing newer than the oldest kept turn was dropped.
    assert kept == turns[len(turns) - len(kept) :]


def test_old_turns_are_trimmed_from_what_the_model_receives(simulator, catalog, make_user):
    model = catalog["o1-mini"]
    model.context_window, model.max_output_tokens = 1_200, 600
    model.save()
    user = make_user()
    reply = answer(send(user, "A " * 400 + "[sim:think=0] [sim:tokens=5]"))
    for n in range(3):
        reply = answer(send(user, f"Turn {n} " + "B " * 300 + "[sim:think=0] [sim:tokens=5]", conversation_id=reply.conversation_id))

    body = simulator.requests()[-1]
    assert body["messages"][-1]["content"].startswith("Turn 2")
    assert not any(m["content"].startswith("A A") for m in body["messages"])
    assert sum(turn_tokens(m["content"], "o200k_base") for m in body["messages"]) + 600 <= 1_200


def test_a_message_too_big_for_the_window_is_refused_and_nothing_is_stored(simulator, catalog, make_user):
    user = make_user()
    with pytest.raises(actions.ActionRefused) as refused:
        # Under the size cap, over the window: 99,000 different CJK characters, each a token or more.
        send(user, "".join(chr(0x4E00 + i * 7919 % 20_000) for i in range(99_000)), model="o1-preview")

    assert refused.value.code == "too_long"
    assert "context window" in str(refused.value)
    assert not Conversation.objects.filter(user=user).exists()
    assert not Message.objects.exists()
    assert not LedgerEntry.objects.filter(user=user).exists()
    assert simulator.requests() == []


def test_a_redelivered_task_does_not_call_the_model_twice(simulator, catalog, make_user):
    reply = send(make_user(), "Once only [sim:think=0]")
    generation.reply_generate(message_id=reply.id)
    generation.reply_generate(message_id=reply.id)

    assert len(simulator.requests()) == 1
    assert LedgerEntry.objects.filter(reply_id=reply.id).count() == 2  # one reserve, one settle


def test_a_provider_error_ends_in_failed_with_a_readable_error_and_a_refund(simulator, catalog, make_user):
    reply = answer(send(make_user(), "Break [sim:fault=500] [sim:think=0]"))

    assert reply.status == Message.Status.FAILED
    assert reply.error == "The model provider had an internal error."
    assert reply.text == ""
    assert quota_state(reply) == "refunded"
    assert len(simulator.requests()) == generation.MAX_ATTEMPTS


@pytest.mark.parametrize(
    "text, code", [("", "empty"), ("   \n\t", "empty"), ("a\x00b", "invalid"), ("\ud800", "invalid"), (None, "invalid")]
)
def test_bad_messages_are_refused_with_nothing_stored(catalog, make_user, text, code):
    user = make_user()
    with pytest.raises(actions.ActionRefused) as refused:
        send(user, text)
    assert refused.value.code == code
    assert not Message.objects.exists()


def test_an_unknown_model_is_refused(catalog, make_user):
    with pytest.raises(actions.ActionRefused) as refused:
        send(make_user(), "hi", model="gpt-9")
    assert refused.value.code == "unknown_model"
    assert not Message.objects.exists()


def test_another_users_conversation_cannot_be_written_to(catalog, make_user):
    owner, intruder = make_user(), make_user()
    reply = send(owner, "mine")
    from django.http import Http404

    with pytest.raises(Http404):
        send(intruder, "let me in", conversation_id=reply.conversation_id)
    assert Message.objects.filter(conversation_id=reply.conversation_id).count() == 2


def test_a_message_is_stored_exactly_as_typed(catalog, make_user):
    """The send writes its rows as JSON: quotes, backslashes, tags, accents and emoji come back unchanged."""
    text = 'Il a dit « \\n » et "\\u0041" <b>x</b> 🙂 𝔘 — tab\there\r\nend'
    user = make_user()
    user_message, reply = actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text=text)
    stored = Message.objects.get(id=user_message.id)
    assert stored.text == text and stored.conversation.title == actions.title_from(text)
    assert stored.created_at == user_message.created_at and Message.objects.get(id=reply.id).parent_id == stored.id


def test_the_title_comes_from_the_first_message_without_a_model_call(simulator, catalog, make_user):
    reply = send(make_user(), "How do I   sort a list of dicts by a key in Python without copying it?")
    assert reply.conversation.title == "How do I sort a list of dicts by a key in Python without…"
    assert simulator.requests() == []


def test_a_message_over_the_size_limit_is_refused(catalog, make_user, settings):
    settings.MAX_MESSAGE_CHARS = 1_000
    with pytest.raises(actions.ActionRefused) as refused:
        send(make_user(), "x" * 1_001)
    assert refused.value.code == "too_long"
    assert "1,001 characters; the limit is 1,000" in str(refused.value)
    assert not Message.objects.exists()


def test_a_disabled_model_is_refused(catalog, make_user):
    catalog["o1-preview"].enabled = False
    catalog["o1-preview"].save()
    with pytest.raises(actions.ActionRefused) as refused:
        send(make_user(), "hi", model="o1-preview")
    assert refused.value.code == "unknown_model"
    assert not Message.objects.exists()

"""The number of queries per message is pinned, so a regression shows up here."""

import pytest

from accounts.models import Profile
from chat import actions
from chat.models import Message
from generation import reply as generation

pytestmark = pytest.mark.django_db


def test_sending_a_message_takes_a_fixed_number_of_queries(catalog, make_user, django_assert_num_queries):
    user = make_user()
    actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="warm up")
    # Two statements: the user's lock (with the model, remembered, the instructions, ids for the messages and
    # the chat or the chat named, the rules and the budget), then one that stores the chat, the messages and the reservation
    # (with the live replies counted). Here in a test's transaction, a savepoint and its release around them.
    with django_assert_num_queries(2 + 2):  # a new chat
        actions.message_send(user=user, conversation_id=None, model_slug="o1-preview", text="hello")
    conversation = Message.objects.filter(conversation__user=user).last().conversation
    with django_assert_num_queries(2 + 2):  # an existing conversation: locked and read with the user
        actions.message_send(user=user, conversation_id=conversation.id, model_slug="o1-preview", text="again")
    conversation.refresh_from_db()
    assert conversation.messages.count() == 4 and conversation.current_leaf.text == "" and conversation.current_leaf.parent.text == "again"


def test_finishing_a_reply_takes_a_fixed_number_of_queries(simulator, catalog, make_user, django_assert_num_queries):
    _, reply = actions.message_send(user=make_user(), conversation_id=None, model_slug="o1-mini", text="hi [sim:think=0]")
    reply = Message.objects.select_related("model", "conversation").get(id=reply.id)
    Message.objects.filter(id=reply.id).update(status=Message.Status.STREAMING)
    stream = generation.ReplyStream(reply, text=["An answer."])
    with django_assert_num_queries(5):  # the reply, the reservation settled with its price, its cost with the ledger; the savepoint (two)
        generation.reply_finish(reply=reply, stream=stream)
    assert Message.objects.get(id=reply.id).status == "done"


@pytest.mark.django_db(transaction=True)
def test_generating_a_reply_takes_a_fixed_number_of_queries(simulator, catalog, make_user, private_queue, django_assert_num_queries):
    _, reply = actions.message_send(user=make_user(), conversation_id=None, model_slug="o1-mini", text="hi [sim:think=0]")
    # Before the provider is asked, two: the claim (with the reply, its model, its chat, the instructions) and
    # the branch. After: the finish above in its transaction (BEGIN and COMMIT are counted here).
    with django_assert_num_queries(2 + 5):
        generation.reply_generate(message_id=reply.id)
    assert Message.objects.get(id=reply.id).status == "done"


def test_the_claim_reads_the_reply_its_model_and_chat_as_the_orm_does(catalog, make_user):
    user = make_user()
    Profile.objects.filter(user=user).update(instructions="Be brief.")
    _, reply = actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="hi")

    claimed, instructions = generation._claim(reply.id)

    stored = Message.objects.select_related("model", "conversation").get(id=reply.id)
    for got, want in [(claimed, stored), (claimed.model, stored.model), (claimed.conversation, stored.conversation)]:
        fields = type(want)._meta.concrete_fields
        assert [getattr(got, f.attname) for f in fields] == [getattr(want, f.attname) for f in fields]
    assert (claimed.status, instructions) == ("streaming", "Be brief.")
    assert generation._claim(reply.id) is None, "claimed once"

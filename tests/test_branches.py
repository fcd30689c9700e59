"""Branches and versions, and Continue: what the model receives (read from the simulator's
request bodies, over real HTTP), what is shown, and what counts."""

import pytest
from asgiref.sync import async_to_sync
from django.http import Http404

from chat import actions, selectors
from chat.models import Conversation, Message
from chat.selectors import CONTINUE_PROMPT
from quotas.models import LedgerEntry
from quotas.selectors import quota_status
from tests.helpers import ConversationListener, generate, handshake, quota_state, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_queue")]

FAST = "[sim:think=0] [sim:tokens=6]"


def ask(user, text: str, conversation_id: int | None = None) -> Message:
    _, reply = actions.message_send(user=user, conversation_id=conversation_id, model_slug="o1-mini", text=f"{text} {FAST}")
    return generate(reply)


def sent_turns(simulator) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in simulator.requests()[-1]["messages"]]


def on_screen(conversation_id: int) -> list[str]:
    conversation = Conversation.objects.get(id=conversation_id)
    return [m.text for m in selectors.conversation_messages(conversation=conversation)]


def used(user) -> int:
    return {s.model.slug: s for s in quota_status(user=user)}["o1-mini"].used


def three_turns(user) -> list[Message]:
    """Q1 A1 Q2 A2 Q3 A3, answered; returns the answers."""
    first = ask(user, "Q1")
    second = ask(user, "Q2", first.conversation_id)
    return [first, second, ask(user, "Q3", first.conversation_id)]


def test_editing_an_earlier_question_sends_the_model_only_the_new_branch(simulator, catalog, make_user):
    user = make_user()
    a1, a2, a3 = three_turns(user)
    q2 = a2.parent

    edited, reply = actions.message_edit(user=user, message_id=q2.id, text=f"Q2 again {FAST}")
    reply = generate(reply)

    assert sent_turns(simulator) == [("user", f"Q1 {FAST}"), ("assistant", a1.text), ("user", f"Q2 again {FAST}")]
    assert edited.parent_id == a1.id and edited.versions == [q2.id, edited.id]
    assert on_screen(a1.conversation_id) == [f"Q1 {FAST}", a1.text, f"Q2 again {FAST}", reply.text]

    # The next question follows the branch on screen; the old Q2, A2, Q3, A3 never reach the model.
    after = ask(user, "Q4", a1.conversation_id)
    assert sent_turns(simulator) == [
        ("user", f"Q1 {FAST}"),
        ("assistant", a1.text),
        ("user", f"Q2 again {FAST}"),
        ("assistant", reply.text),
        ("user", f"Q4 {FAST}"),
    ]
    assert after.parent.parent_id == reply.id
    # Nothing was deleted.
    assert Message.objects.filter(id__in=[q2.id, a2.id, a3.id, a3.parent_id]).count() == 4


def test_switching_back_shows_and_sends_the_old_branch_with_its_whole_continuation(simulator, catalog, make_user):
    user = make_user()
    a1, a2, a3 = three_turns(user)
    q2 = a2.parent
    generate(actions.message_edit(user=user, message_id=q2.id, text=f"Q2 again {FAST}")[1])

    actions.branch_switch(user=user, message_id=q2.id)

    assert on_screen(a1.conversation_id) == [f"Q1 {FAST}", a1.text, f"Q2 {FAST}", a2.text, f"Q3 {FAST}", a3.text]
    ask(user, "Q5", a1.conversation_id)
    assert sent_turns(simulator) == [
        ("user", f"Q1 {FAST}"),
        ("assistant", a1.text),
        ("user", f"Q2 {FAST}"),
        ("assistant", a2.text),
        ("user", f"Q3 {FAST}"),
        ("assistant", a3.text),
        ("user", f"Q5 {FAST}"),
    ]


def test_regenerate_keeps_the_earlier_answer_as_a_version(simulator, catalog, make_user):
    user = make_user()
    a1, a2, _ = three_turns(user)
    q2 = a2.parent

    again = generate(actions.reply_regenerate(user=user, message_id=a2.id))

    assert sent_turns(simulator) == [("user", f"Q1 {FAST}"), ("assistant", a1.text), ("user", f"Q2 {FAST}")]
    shown = selectors.conversation_messages(conversation=Conversation.objects.get(id=a1.conversation_id))
    assert [m.id for m in shown] == [a1.parent_id, a1.id, q2.id, again.id]
    assert shown[-1].versions == [a2.id, again.id]
    assert shown[0].versions == [a1.parent_id]

    actions.branch_switch(user=user, message_id=a2.id)
    assert on_screen(a1.conversation_id)[-3:] == [a2.text, f"Q3 {FAST}", Message.objects.get(parent__parent=a2).text]


def test_every_generation_counts_and_each_is_settled_exactly_once(simulator, catalog, make_user):
    user = make_user()
    first = ask(user, "Q1 [sim:finish=length]")
    edited = generate(actions.message_edit(user=user, message_id=first.parent_id, text=f"Q1 edited {FAST}")[1])
    again = generate(actions.reply_regenerate(user=user, message_id=edited.id))
    actions.branch_switch(user=user, message_id=first.id)
    continued = generate(actions.reply_continue(user=user, message_id=first.id))

    assert used(user) == 4
    replies = [first, edited, again, continued]
    assert [quota_state(r) for r in replies] == ["settled"] * 4
    for reply in replies:
        assert sorted(LedgerEntry.objects.filter(reply_id=reply.id).values_list("kind", flat=True)) == ["reserve", "settle"]


def test_continue_gives_the_model_the_partial_answer_and_asks_it_to_go_on(simulator, catalog, make_user):
    user = make_user()
    cut = ask(user, "Tell me a story [sim:finish=length]")
    assert cut.incomplete and cut.finish_reason == "length"

    continued = generate(actions.reply_continue(user=user, message_id=cut.id))

    assert sent_turns(simulator) == [
        ("user", f"Tell me a story [sim:finish=length] {FAST}"),
        ("assistant", cut.text),
        ("user", CONTINUE_PROMPT),
    ]
    assert continued.parent_id == cut.id and continued.status == "done" and continued.text
    assert on_screen(cut.conversation_id) == [f"Tell me a story [sim:finish=length] {FAST}", cut.text, continued.text]

    # Later questions see the answer and its continuation as one turn.
    ask(user, "Thanks", cut.conversation_id)
    assert sent_turns(simulator)[1:] == [("assistant", cut.text + continued.text), ("user", f"Thanks {FAST}")]


def test_a_stopped_answer_can_be_continued(simulator, catalog, make_user):
    user = make_user()
    answer = ask(user, "Go")
    Message.objects.filter(id=answer.id).update(status="stopped")

    continued = generate(actions.reply_continue(user=user, message_id=answer.id))

    assert continued.status == "done"
    assert sent_turns(simulator)[-2:] == [("assistant", answer.text), ("user", CONTINUE_PROMPT)]


def test_continue_is_refused_for_a_finished_answer_and_changes_nothing(simulator, catalog, make_user):
    user = make_user()
    answer = ask(user, "Done already")
    before = Message.objects.count()

    with pytest.raises(actions.ActionRefused) as refused:
        actions.reply_continue(user=user, message_id=answer.id)

    assert refused.value.code == "invalid"
    assert Message.objects.count() == before and used(user) == 1


def test_a_continued_answer_cannot_be_continued_again_from_the_middle(simulator, catalog, make_user):
    user = make_user()
    cut = ask(user, "Long [sim:finish=length]")
    generate(actions.reply_continue(user=user, message_id=cut.id))

    with pytest.raises(actions.ActionRefused) as refused:
        actions.reply_continue(user=user, message_id=cut.id)
    assert refused.value.code == "invalid"


def test_branches_cannot_change_while_an_answer_is_being_written(simulator, catalog, make_user):
    user = make_user()
    a1 = ask(user, "Q1")
    _, live = actions.message_send(user=user, conversation_id=a1.conversation_id, model_slug="o1-mini", text="Q2")

    for attempt in (
        lambda: actions.branch_switch(user=user, message_id=a1.id),
        lambda: actions.message_edit(user=user, message_id=a1.parent_id, text="Q1 again"),
        lambda: actions.reply_regenerate(user=user, message_id=a1.id),
    ):
        with pytest.raises(actions.ActionRefused) as refused:
            attempt()
        assert refused.value.code == "busy"
    assert Conversation.objects.get(id=a1.conversation_id).current_leaf_id == live.id


def test_another_users_messages_cannot_be_switched_or_continued(simulator, catalog, make_user):
    owner, intruder = make_user(), make_user()
    cut = ask(owner, "Mine [sim:finish=length]")

    for attempt in (actions.branch_switch, actions.reply_continue):
        with pytest.raises(Http404):
            attempt(user=intruder, message_id=cut.id)
    assert Message.objects.filter(conversation_id=cut.conversation_id).count() == 2


def test_a_switch_tells_every_tab_on_the_conversation(simulator, catalog, make_user):
    user = make_user()
    a1 = ask(user, "Q1")
    generate(actions.reply_regenerate(user=user, message_id=a1.id))
    listener = ConversationListener(a1.conversation_id)

    actions.branch_switch(user=user, message_id=a1.id)

    assert {"type": "branch", "conversation_id": a1.conversation_id, "leaf_id": a1.id} in listener.frames()


def test_over_the_socket_a_switch_answers_with_the_branch_and_continue_with_the_new_reply(simulator, catalog, make_user):
    user = make_user()
    cut = ask(user, "Q1 [sim:finish=length]")
    again = generate(actions.reply_regenerate(user=user, message_id=cut.id))
    cookie = session_cookie(user)  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        _, ws = await handshake(cookie)
        await ws.send_json_to({"type": "switch", "message_id": cut.id})
        snapshot = await ws.receive_json_from(timeout=10)
        await ws.send_json_to({"type": "continue", "message_id": cut.id, "client_id": "c1"})
        sent = await ws.receive_json_from(timeout=10)
        await ws.disconnect()
        return snapshot, sent

    snapshot, sent = run()

    assert snapshot["type"] == "snapshot"
    assert [(m["id"], m["versions"]) for m in snapshot["messages"]] == [(cut.parent_id, [cut.parent_id]), (cut.id, [cut.id, again.id])]
    assert sent["type"] == "sent" and sent["client_id"] == "c1"
    assert sent["reply"]["parent_id"] == cut.id and sent["reply"]["status"] == "pending"
    assert used(user) == 3


def test_a_question_follows_the_branch_its_tab_shows_even_after_a_switch_elsewhere(simulator, catalog, make_user):
    user = make_user()
    first = ask(user, "Q1")
    generate(actions.reply_regenerate(user=user, message_id=first.id))  # another tab made this version current

    _, reply = actions.message_send(
        user=user, conversation_id=first.conversation_id, model_slug="o1-mini", text=f"Q2 {FAST}", parent_id=first.id
    )
    generate(reply)

    assert sent_turns(simulator) == [("user", f"Q1 {FAST}"), ("assistant", first.text), ("user", f"Q2 {FAST}")]
    assert on_screen(first.conversation_id)[1] == first.text


def test_a_question_cannot_follow_a_message_of_another_chat_or_user(simulator, catalog, make_user):
    user, other = make_user(), make_user()
    mine, elsewhere, theirs = ask(user, "Q1"), ask(user, "Elsewhere"), ask(other, "Theirs")
    before = Message.objects.count()

    with pytest.raises(actions.ActionRefused) as refused:
        actions.message_send(user=user, conversation_id=mine.conversation_id, model_slug="o1-mini", text="Q2", parent_id=elsewhere.id)
    assert refused.value.code == "invalid"
    with pytest.raises(Http404):
        actions.message_send(user=user, conversation_id=mine.conversation_id, model_slug="o1-mini", text="Q2", parent_id=theirs.id)
    assert Message.objects.count() == before and used(user) == 2

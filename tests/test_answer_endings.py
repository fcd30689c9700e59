"""Every way an answer ends: the state the user sees, the note, and what is charged.

Replies are generated in this process against the simulator over real HTTP; a
generation runs in a thread so that the test can press Stop (or delete the chat)
while it runs, as a user would from another tab.
"""

import base64
import logging
import socket
import threading

import pytest
from django.core.management import call_command
from django.test import Client

from catalog import tokens
from chat import actions
from chat.models import Conversation, Message
from chat.serializers import message_json
from generation import alerts
from generation import reply as generation
from quotas.models import LedgerEntry, QuotaCounter, QuotaOverride
from quotas.selectors import quota_check
from quotas.services import quota_refund, quota_reset
from tests.helpers import ConversationListener, Generating, generate, quota_state, requested, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_queue")]


@pytest.fixture(autouse=True)
def quick_retries(settings):
    settings.PROVIDER_RETRY_BASE_SECONDS = 0.05


@pytest.fixture(autouse=True)
def no_alert_left_behind():
    yield
    alerts.provider_alert_clear()


def send(user, text: str, model: str = "o1-mini") -> Message:
    return actions.message_send(user=user, conversation_id=None, model_slug=model, text=text)[1]


# --- Stop, in every state -------------------------------------------------------------


def test_stop_while_the_model_thinks_ends_it_closes_the_request_and_refunds(simulator, catalog, make_user):
    user = make_user()
    running = Generating(send(user, "Long think [sim:think=120]"))
    requested(simulator)

    actions.reply_stop(user=user, message_id=running.reply.id)
    reply = running.ended()

    assert reply.status == "stopped" and reply.text == ""
    assert quota_state(reply) == "refunded"
    [request] = simulator.requests()
    assert request["_sim"]["closed_by_client_at"], "the provider saw the connection close"


def test_stop_during_a_retry_back_off_makes_no_further_request(simulator, catalog, make_user, settings):
    settings.PROVIDER_RETRY_BASE_SECONDS = 60
    user = make_user()
    running = Generating(send(user, "Busy [sim:fault=500]"))
    requested(simulator)
    wait_until(lambda: Message.objects.get(id=running.reply.id).status == "streaming", what="the claim")

    actions.reply_stop(user=user, message_id=running.reply.id)
    reply = running.ended()

    assert reply.status == "stopped" and quota_state(reply) == "refunded"
    assert len(simulator.requests()) == 1


def test_stop_during_a_stall_closes_the_request_and_refunds(simulator, catalog, make_user):
    user = make_user()
    running = Generating(send(user, "Stall [sim:fault=stall] [sim:think=0]"))
    requested(simulator)

    actions.reply_stop(user=user, message_id=running.reply.id)
    reply = running.ended()

    assert reply.status == "stopped" and quota_state(reply) == "refunded"
    assert simulator.requests()[0]["_sim"]["closed_by_client_at"]
    assert len(simulator.requests()) == 1


def test_stop_while_only_reasoning_streamed_is_refunded(simulator, catalog, make_user):
    user = make_user()
    running = Generating(send(user, "Think aloud [sim:reasoning] [sim:think=40]"))
    wait_until(lambda: Message.objects.get(id=running.reply.id).reasoning, timeout=30, what="reasoning checkpointed")

    actions.reply_stop(user=user, message_id=running.reply.id)
    reply = running.ended()

    assert reply.status == "stopped" and reply.reasoning and reply.text == ""
    assert quota_state(reply) == "refunded", "reasoning alone is not answer output"


def test_stop_after_visible_text_keeps_it_and_counts(simulator, catalog, make_user):
    user = make_user()
    running = Generating(send(user, "Write a lot [sim:think=0] [sim:rate=20] [sim:tokens=2000]"))
    wait_until(lambda: Message.objects.get(id=running.reply.id).text, what="text checkpointed")

    actions.reply_stop(user=user, message_id=running.reply.id)
    reply = running.ended()

    assert reply.status == "stopped" and reply.text.startswith("You said: Write a lot")
    assert quota_state(reply) == "settled"
    assert simulator.requests()[0]["_sim"]["closed_by_client_at"]


# --- How a stream ends -------------------------------------------------------------------


def test_a_stream_cut_without_finish_or_done_and_no_text_is_retried(simulator, catalog, make_user):
    reply = generate(send(make_user(), "Cut [sim:fault=cut] [sim:after=0] [sim:fault_times=1] [sim:think=0]"))

    assert reply.status == "done" and reply.text.startswith("You said: Cut")
    assert len(simulator.requests()) == 2
    assert quota_state(reply) == "settled"


def test_a_stream_cut_after_visible_text_is_kept_incomplete_not_complete(simulator, catalog, make_user):
    reply = generate(send(make_user(), "Cut [sim:fault=cut] [sim:after=5] [sim:think=0]"))

    assert reply.status == "failed" and reply.incomplete and reply.text.startswith("You said")
    assert quota_state(reply) == "settled"
    assert len(simulator.requests()) == 1, "partial output is never generated twice"


def test_reasoning_then_a_dropped_connection_is_retried_and_refunded_when_it_keeps_failing(simulator, catalog, make_user):
    reply = generate(send(make_user(), "Drop [sim:reasoning] [sim:fault=drop] [sim:after=0] [sim:think=0.2]"))

    assert reply.status == "failed" and reply.text == "" and not reply.incomplete
    assert quota_state(reply) == "refunded", "reasoning alone is not answer output"
    assert len(simulator.requests()) == generation.MAX_ATTEMPTS


def test_the_output_limit_with_visible_text_is_done_and_marked_cut_off(simulator, catalog, make_user):
    reply = generate(send(make_user(), "Long [sim:finish=length] [sim:think=0]"))

    assert (reply.status, reply.incomplete, reply.finish_reason) == ("done", True, "length")
    assert reply.text and quota_state(reply) == "settled"


def test_the_output_limit_spent_thinking_fails_with_a_note_and_refunds(simulator, catalog, make_user):
    reply = generate(send(make_user(), "Hard [sim:finish=length] [sim:tokens=0] [sim:reasoning] [sim:think=0.2]"))

    assert reply.status == "failed" and reply.text == ""
    assert "spent its whole output budget thinking" in reply.error
    assert quota_state(reply) == "refunded"


@pytest.mark.parametrize("tokens, status, charged", [("5", "done", "settled"), ("0", "failed", "refunded")])
def test_the_content_filter_gets_its_own_note(simulator, catalog, make_user, tokens, status, charged):
    reply = generate(send(make_user(), f"Filtered [sim:finish=content_filter] [sim:tokens={tokens}] [sim:think=0]"))

    assert (reply.status, reply.finish_reason, quota_state(reply)) == (status, "content_filter", charged)
    assert reply.incomplete or "content filter" in reply.error


@pytest.mark.parametrize(
    "prompt",
    [
        "Fine [sim:think=0] [sim:reasoning]",
        "Long [sim:finish=length] [sim:think=0]",
        "Hard [sim:finish=length] [sim:tokens=0] [sim:reasoning] [sim:think=0]",
        "Cut [sim:fault=cut] [sim:after=5] [sim:think=0]",
    ],
)
def test_every_tab_is_told_the_reply_exactly_as_stored(simulator, catalog, make_user, prompt):
    reply = send(make_user(), prompt)
    listener = ConversationListener(reply.conversation_id)

    generate(reply)

    [done] = [frame for frame in listener.frames() if frame["type"] == "done"]
    assert done["message"] == message_json(Message.objects.select_related("model").get(id=reply.id))


def test_a_stopped_reply_is_shown_as_stored(simulator, catalog, make_user):
    user = make_user()
    running = Generating(send(user, "Write a lot [sim:think=0] [sim:rate=20] [sim:tokens=2000]"))
    listener = ConversationListener(running.reply.conversation_id)
    wait_until(lambda: Message.objects.get(id=running.reply.id).text, what="text checkpointed")

    actions.reply_stop(user=user, message_id=running.reply.id)
    reply = running.ended()

    done = [frame["message"] for frame in listener.frames() if frame["type"] == "done"]
    assert reply.status == "stopped" and done == [message_json(reply)]


def test_an_unexpected_error_fails_the_reply_at_once_with_a_readable_message(simulator, catalog, make_user, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(generation, "context_trim", broken)
    with caplog.at_level(logging.ERROR):
        reply = generate(send(make_user(), "Anything"))

    assert reply.status == "failed" and reply.error == generation.UNEXPECTED
    assert quota_state(reply) == "refunded"
    logged = [r for r in caplog.records if r.exc_info and getattr(r, "reply_id", None) == reply.id]
    assert logged and "a bug" in str(logged[0].exc_info[1])


# --- What users and operators are told ----------------------------------------------------


def test_a_refused_api_key_is_not_shown_to_the_user_but_logged_and_alerted(simulator, catalog, make_user, caplog):
    with caplog.at_level(logging.ERROR):
        reply = generate(send(make_user(), "Key [sim:fault=401]"))

    assert reply.status == "failed" and quota_state(reply) == "refunded"
    assert reply.error == "The service's API key was refused by the model provider; an administrator has been told."
    assert "sk-" not in reply.error
    [line] = [r for r in caplog.records if r.getMessage().startswith("reply failed")]
    assert line.reply_id == reply.id and "kind=auth" in line.getMessage() and "Incorrect API key" in line.getMessage()
    assert "API key" in alerts.provider_alert()


def test_an_unknown_model_at_the_provider_alerts_staff(simulator, catalog, make_user):
    reply = generate(send(make_user(), "Model [sim:fault=404]"))

    assert reply.error == "This model is not available from the provider; an administrator has been told."
    assert "model_not_found" in alerts.provider_alert()


def test_repeated_failures_alert_staff(simulator, catalog, make_user):
    user = make_user()
    for _ in range(generation.REPEATED_FAILURES):
        generate(send(user, "Bad [sim:fault=400]"))
    assert "failing repeatedly" in alerts.provider_alert()


# --- Quota and ledger invariants -------------------------------------------------------------


def test_deleting_a_conversation_while_its_reply_thinks_stops_it_and_refunds(simulator, catalog, make_user):
    user = make_user()
    running = Generating(send(user, "Think [sim:think=120]"))
    requested(simulator)

    actions.conversation_delete(user=user, conversation_id=running.reply.conversation_id)

    assert running.ended() is None
    assert quota_state(running.reply) == "refunded"
    assert sorted(LedgerEntry.objects.filter(reply_id=running.reply.id).values_list("kind", flat=True)) == ["refund", "reserve"]
    assert simulator.requests()[0]["_sim"]["closed_by_client_at"]
    assert quota_check() == []


def test_deleting_a_conversation_while_its_reply_writes_settles_it(simulator, catalog, make_user):
    user = make_user()
    running = Generating(send(user, "Write [sim:think=0] [sim:rate=20] [sim:tokens=2000]"))
    wait_until(lambda: Message.objects.get(id=running.reply.id).text, what="text checkpointed")

    actions.conversation_delete(user=user, conversation_id=running.reply.conversation_id)

    assert running.ended() is None
    assert quota_state(running.reply) == "settled"
    assert quota_check() == []


def test_a_reservation_orphaned_by_a_deleted_chat_is_refunded_by_the_reaper(catalog, make_user):
    import datetime as dt

    from django.utils import timezone

    user = make_user()
    reply = send(user, "Never answered")
    Message.objects.filter(id=reply.id).update(status="streaming")  # a worker claimed it, then died
    Conversation.objects.filter(id=reply.conversation_id).delete()  # what a delete leaves behind

    generation.reply_reap(now=timezone.now() + dt.timedelta(minutes=10))

    assert quota_state(reply) == "refunded"
    assert quota_check() == []


def test_a_refund_after_an_admin_reset_never_lowers_the_new_window(catalog, make_user):
    user, mini = make_user(), catalog["o1-mini"]
    QuotaOverride.objects.create(user=user, model=mini, messages=1, window_kind="calendar", window_unit="day")
    quota_reset(user=user, model=mini)
    a = send(user, "A")
    quota_reset(user=user, model=mini)
    send(user, "B")

    assert quota_refund(reply_id=a.id, reason="provider failed")

    assert QuotaCounter.objects.get(user=user, model=mini).used == 1
    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "C")
    assert refused.value.code == "quota_exhausted"
    assert quota_check() == []


@pytest.mark.parametrize("action", ["regenerate", "edit"])
def test_a_disabled_model_is_refused_for_regenerate_and_edit_too(catalog, make_user, action):
    user = make_user()
    reply = send(user, "Hello")
    Message.objects.filter(id=reply.id).update(status="done", text="Hi")
    catalog["o1-mini"].enabled = False
    catalog["o1-mini"].save()
    asked = Message.objects.get(conversation_id=reply.conversation_id, role="user")

    with pytest.raises(actions.ActionRefused) as refused:
        if action == "regenerate":
            actions.reply_regenerate(user=user, message_id=reply.id)
        else:
            actions.message_edit(user=user, message_id=asked.id, text="Again")
    assert refused.value.code == "unknown_model"
    assert Message.objects.filter(conversation_id=reply.conversation_id).count() == 2


def test_quota_check_passes_after_the_faults_and_names_a_broken_counter(simulator, catalog, make_user):
    user = make_user()
    generate(send(user, "ok [sim:think=0]"))
    generate(send(user, "bad [sim:fault=400]"))
    generate(send(user, "cut [sim:fault=drop] [sim:after=3] [sim:think=0]"))
    call_command("quota", "check")  # raises CommandError on any problem

    QuotaCounter.objects.filter(user=user).update(used=7)
    problems = quota_check()
    assert len(problems) == 1 and "the counter says 7 used, its window holds 2" in problems[0]


# --- Token counts ------------------------------------------------------------------------------


def test_the_real_tokenizer_counts_and_needs_no_network(monkeypatch):
    def no_network(self, address):
        if address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"tried to reach {address}")
        return real_connect(self, address)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(tokens, "_loaded", None)  # built afresh, under the guard

    assert tokens.count("hello world", "o200k_base") == 2
    assert tokens.count("Hello, world!", "o200k_base") == 4
    # High-entropy text costs far more than the old bytes/3 estimate said.
    paste = base64.b64encode(bytes(range(256)) * 40).decode()
    assert tokens.count(paste, "o200k_base") > len(paste.encode()) / 3 * 1.5
    # The estimate for unknown tokenizers never undercounts what o200k_base counts.
    for text in (paste, "漢字かな交じり文" * 500, "🙂🚀" * 1000, "deadbeef" * 1000):
        assert tokens.estimate(text) >= tokens.count(text, "o200k_base")


def test_threads_counting_at_once_after_a_start_share_one_table(monkeypatch):
    monkeypatch.setattr(tokens, "_loaded", None)
    together, built = threading.Barrier(6), []

    def first_count() -> None:
        together.wait(timeout=30)
        built.append(tokens._o200k_base())

    threads = [threading.Thread(target=first_count) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 6 and len({id(table) for table in built}) == 1  # one build, not six (a second of CPU each)


def test_pasted_base64_and_cjk_keep_prompt_and_reserve_within_the_window(simulator, catalog, make_user):
    model = catalog["o1-mini"]
    user = make_user()
    paste = base64.b64encode(b"".join(i.to_bytes(4, "little") for i in range(11_700))).decode()[:62_000]
    conversation_id = None
    for text in (paste, "漢字" * 15_000, paste):
        reply = (
            generate(send(user, text + " [sim:think=0] [sim:tokens=3]"))
            if conversation_id is None
            else generate(
                actions.message_send(
                    user=user, conversation_id=conversation_id, model_slug="o1-mini", text=text + " [sim:think=0] [sim:tokens=3]"
                )[1]
            )
        )
        conversation_id = reply.conversation_id
        assert reply.status == "done"

    for body in simulator.requests():
        prompt = sum(tokens.count(m["content"], "o200k_base") + 4 for m in body["messages"]) + 3
        assert prompt + model.max_output_tokens <= model.context_window


# --- Bad input -------------------------------------------------------------------------------------


def test_a_nul_in_the_search_is_a_400_and_not_a_500(catalog, make_user):
    client = Client()
    client.force_login(make_user())
    response = client.get("/api/conversations/?q=a%00b")
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_a_nul_in_the_model_is_refused_and_nothing_stored(catalog, make_user):
    user = make_user()
    with pytest.raises(actions.ActionRefused) as refused:
        actions.message_send(user=user, conversation_id=None, model_slug="o1-mini\x00", text="hi")
    assert refused.value.code == "unknown_model"
    assert not Conversation.objects.filter(user=user).exists()

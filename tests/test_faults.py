"""Provider and process faults end in a clear state, with no text or quota lost."""

import datetime as dt
import logging
import os
import signal
import time

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from chat import actions
from chat.models import Message
from generation import alerts
from generation import reply as generation
from generation.limiter import capacity_acquire
from quotas.models import LedgerEntry
from tests.helpers import ConversationListener, quota_state, start_worker, stop, subprocess_env, wait_until

# Replies are generated in this process, and their checkpoints are written from another thread, which
# must see the rows: each test commits for real, and what it enqueues no worker takes.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_queue")]


@pytest.fixture(autouse=True)
def quick_retries(settings):
    settings.PROVIDER_RETRY_BASE_SECONDS = 0.05


def send(user, text: str, model: str = "o1-mini") -> Message:
    return actions.message_send(user=user, conversation_id=None, model_slug=model, text=text)[1]


def generate(reply: Message) -> Message:
    generation.reply_generate(message_id=reply.id)
    reply.refresh_from_db()
    return reply


def test_a_rate_limit_waits_for_retry_after_and_tells_the_user_it_waits(simulator, catalog, make_user):
    user = make_user()
    reply = send(user, "busy [sim:fault=429] [sim:retry_after=1] [sim:fault_times=1] [sim:think=0]")
    listener = ConversationListener(reply.conversation_id)
    started = time.monotonic()

    reply = generate(reply)

    assert time.monotonic() - started >= 1.0
    assert reply.status == "done" and reply.text.startswith("You said: busy")
    assert len(simulator.requests()) == 2
    statuses = [e for e in listener.frames() if e["type"] == "status"]
    assert statuses[0]["detail"] == "Waiting for capacity…"


@pytest.fixture
def no_alert_left_behind():
    yield
    alerts.provider_alert_clear()


def test_out_of_credit_is_not_retried_refunds_and_tells_staff(simulator, catalog, make_user, caplog, no_alert_left_behind):
    with caplog.at_level(logging.ERROR):
        reply = generate(send(make_user(), "x [sim:fault=quota]"))

    assert len(simulator.requests()) == 1
    assert reply.status == "failed" and quota_state(reply) == "refunded"
    assert "out of credit" in reply.error
    assert any("insufficient_quota" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert "out of credit" in alerts.provider_alert()
    staff = make_user(is_staff=True)
    staff.is_superuser = True
    staff.save()
    admin = Client()
    admin.force_login(staff)
    assert b"out of credit (insufficient_quota)" in admin.get("/admin/").content


def test_server_errors_are_retried_with_backoff_then_succeed(simulator, catalog, make_user):
    reply = generate(send(make_user(), "flaky [sim:fault=500] [sim:fault_times=2] [sim:think=0]"))
    assert reply.status == "done"
    assert len(simulator.requests()) == 3


def test_a_stall_before_any_output_is_retried_until_the_deadline_then_fails_and_refunds(simulator, catalog, make_user, settings):
    settings.OPENAI_FIRST_OUTPUT_TIMEOUT = 0.5
    settings.REPLY_DEADLINE_SECONDS = 2.0
    reply = generate(send(make_user(), "x [sim:fault=stall] [sim:think=0]"))

    assert reply.status == "failed" and quota_state(reply) == "refunded"
    assert reply.error == "The model took too long to answer."
    assert len(simulator.requests()) >= 2, "a stall with no output yet is retried"
    assert all(r["_sim"]["closed_by_client_at"] for r in simulator.requests()), "each stalled request was closed"


def test_a_stall_after_some_output_keeps_it_marked_incomplete(simulator, catalog, make_user, settings):
    settings.OPENAI_CHUNK_GAP_TIMEOUT = 0.5
    reply = generate(send(make_user(), "x [sim:fault=stall] [sim:after=6] [sim:think=0]"))

    assert reply.status == "failed" and reply.incomplete
    assert reply.text.startswith("You said: x")
    assert quota_state(reply) == "settled"
    assert len(simulator.requests()) == 1, "partial output is never generated twice"


def test_a_dropped_connection_keeps_the_partial_text_marked_incomplete(simulator, catalog, make_user):
    reply = generate(send(make_user(), "x [sim:fault=drop] [sim:after=5] [sim:think=0]"))

    assert reply.status == "failed" and reply.incomplete
    assert reply.text and reply.error == "The connection to the model provider was lost."
    assert quota_state(reply) == "settled"


def test_the_org_wide_limiter_counts_requests_and_tokens_per_minute(catalog):
    slug = f"limiter-{time.time_ns()}"
    with time_machine.travel(dt.datetime(2026, 7, 1, 12, 0, 10, tzinfo=dt.UTC), tick=False):
        assert capacity_acquire(model_slug=slug, rpm=2, tpm=None, tokens=10) == 0
        assert capacity_acquire(model_slug=slug, rpm=2, tpm=None, tokens=10) == 0
        assert capacity_acquire(model_slug=slug, rpm=2, tpm=None, tokens=10) == pytest.approx(50)
    with time_machine.travel(dt.datetime(2026, 7, 1, 12, 1, 0, tzinfo=dt.UTC), tick=False):
        assert capacity_acquire(model_slug=slug, rpm=2, tpm=1000, tokens=600) == 0
        assert capacity_acquire(model_slug=slug, rpm=2, tpm=1000, tokens=600) > 0


def test_a_reply_over_the_org_limit_waits_for_capacity_instead_of_failing(simulator, catalog, make_user, settings):
    settings.PROVIDER_LIMIT_WINDOW_SECONDS = 3  # a "minute" of 3 s
    model = catalog["o1-mini"]
    model.rpm_limit = 1
    model.save()
    user = make_user()
    wait_until(lambda: 3 - time.time() % 3 > 1.5, timeout=5)  # not at the edge of a window
    capacity_acquire(model_slug=model.slug, rpm=1, tpm=None, tokens=1)  # someone else took this window's request
    reply = send(user, "patience [sim:think=0]")
    listener = ConversationListener(reply.conversation_id)

    reply = generate(reply)

    assert reply.status == "done"
    assert [e["detail"] for e in listener.frames() if e["type"] == "status"] == ["Waiting for capacity…"]


def test_a_user_may_not_have_more_than_three_answers_in_flight(catalog, make_user):
    user = make_user()
    for _ in range(3):
        send(user, "one more")
    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "too many")
    assert refused.value.code == "busy"
    assert Message.objects.filter(conversation__user=user).count() == 6


def test_a_killed_worker_leaves_its_reply_incomplete_refunded_or_kept_and_never_rewritten(
    simulator_server, catalog, make_user, isolated_queue, private_queue
):
    user = make_user()
    env = subprocess_env(simulator_server, isolated_queue)
    worker = start_worker({**env, "STREAM_CHECKPOINT_SECONDS": "0.2"}, private_queue, concurrency=4, start_new_session=True)
    try:
        writing = send(user, "long one [sim:think=0] [sim:rate=20] [sim:tokens=400]")
        thinking = send(user, "slow thinker [sim:think=60]")
        wait_until(lambda: len(Message.objects.get(id=writing.id).text) > 40, timeout=20, what="partial text")
        wait_until(lambda: Message.objects.get(id=thinking.id).status == "streaming", timeout=20)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        stop(worker)

    checkpointed = Message.objects.get(id=writing.id).text
    # The lease runs out at most LEASE after the last renewal; the reaper then ends the replies.
    assert generation.reply_reap() == 0, "a lease still running is left alone"
    assert generation.reply_reap(now=timezone.now() + generation.LEASE) == 2

    writing.refresh_from_db()
    thinking.refresh_from_db()
    assert (writing.status, writing.incomplete, writing.text, quota_state(writing)) == ("failed", True, checkpointed, "settled")
    assert (thinking.status, thinking.incomplete, quota_state(thinking)) == ("failed", False, "refunded")
    assert "stopped unexpectedly" in thinking.error
    generation.reply_generate(message_id=writing.id)  # a redelivery after the restart
    assert Message.objects.get(id=writing.id).text == checkpointed
    assert LedgerEntry.objects.filter(reply_id=thinking.id, kind="refund").count() == 1


def test_sends_racing_the_deletion_of_their_chat_are_answered_or_not_found_and_nothing_is_left(catalog, make_user, settings):
    """Before, a send that read the chat just before another tab deleted it failed on a server error
    ("update_fields did not affect any rows"). The send locks the chat with the user, the delete waits
    for that lock: a send either lands before the delete (which then refunds its reply) or finds no chat."""
    import threading

    from django.db import connections
    from django.http import Http404

    from quotas.models import QuotaCounter

    settings.MAX_LIVE_REPLIES = 100
    user = make_user()
    conversation_id = send(user, "hello").conversation_id
    outcomes: list[str] = []
    gate = threading.Barrier(4)

    def sender() -> None:
        gate.wait()
        for _ in range(3):
            try:
                actions.message_send(user=user, conversation_id=conversation_id, model_slug="o1-mini", text="again")
                outcomes.append("sent")
            except Http404:
                outcomes.append("not_found")
            except Exception as exc:  # noqa: BLE001 - the outcome under test
                outcomes.append(repr(exc))
        connections.close_all()

    def deleter() -> None:
        gate.wait()
        actions.conversation_delete(user=user, conversation_id=conversation_id)
        connections.close_all()

    threads = [threading.Thread(target=sender) for _ in range(3)] + [threading.Thread(target=deleter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert set(outcomes) <= {"sent", "not_found"} and "not_found" in outcomes
    assert not Message.objects.filter(conversation_id=conversation_id).exists()
    # Every reply sent was refunded with its chat (none had started).
    assert QuotaCounter.objects.get(user=user, model=catalog["o1-mini"]).used == 0

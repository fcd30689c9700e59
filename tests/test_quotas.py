"""Quota windows at their edges, precedence, refunds, and races across processes."""

import datetime as dt
import os
import threading
from collections import Counter

import pytest
import time_machine
from django.db import connections
from django.db.models import Sum

from chat import actions
from chat.models import Conversation, Message
from generation import reply as generation
from quotas import selectors, services
from quotas.models import LedgerEntry, Plan, PlanLimit, QuotaCounter, QuotaOverride, Reservation
from quotas.selectors import quota_json
from tests import helpers
from tests.helpers import quota_state

UTC = dt.UTC
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_live_reply_cap")]


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def send(user, model: str = "o1-preview") -> Message:
    return helpers.send(user, model)


def refused(user, model: str = "o1-preview") -> actions.ActionRefused:
    return helpers.refused(user, model)


def override(user, catalog, model: str, **fields) -> QuotaOverride:
    return QuotaOverride.objects.create(user=user, model=catalog[model], **fields)


def test_anchored_week_refuses_the_51st_message_until_midnight_utc_seven_days_after_the_first(catalog, make_user):
    user = make_user()
    with time_machine.travel(at(2026, 9, 12, 10, 0), tick=False):
        send(user)
    with time_machine.travel(at(2026, 9, 15, 18, 30), tick=False):
        for _ in range(49):
            send(user)
        refusal = refused(user)
    assert refusal.extra["resets_at"] == "2026-09-19T00:00:00+00:00"
    assert "o1-preview limit reached — resets Sat 19 Sep, 00:00." in str(refusal)
    with time_machine.travel(at(2026, 9, 18, 23, 59, 59), tick=False):
        refused(user)
    with time_machine.travel(at(2026, 9, 19, 0, 0), tick=False):
        send(user)
        [status] = [s for s in selectors.quota_status(user=user) if s.model.slug == "o1-preview"]
    assert (status.used, status.left) == (1, 49)
    assert status.resets_at == at(2026, 9, 26, 0, 0)


def test_the_refusal_offers_a_model_with_quota_left(catalog, make_user):
    user = make_user()
    override(user, catalog, "o1-preview", messages=1, window_kind="anchored", window_length=7, window_unit="day")
    send(user)
    refusal = refused(user)
    assert refusal.extra["switch_to"] == "o1-mini"
    assert str(refusal).endswith("Switch to o1-mini (50 left)?")


def test_sub_day_anchored_windows_close_exactly_n_hours_after_opening(catalog, make_user):
    user = make_user()
    override(user, catalog, "o1-mini", messages=1, window_kind="anchored", window_length=5, window_unit="hour")
    with time_machine.travel(at(2026, 3, 1, 21, 17), tick=False):
        send(user, "o1-mini")
        assert refused(user, "o1-mini").extra["resets_at"] == "2026-03-02T02:17:00+00:00"
    with time_machine.travel(at(2026, 3, 2, 2, 17), tick=False):
        send(user, "o1-mini")


def test_calendar_week_in_berlin_resets_at_local_monday_midnight_across_the_dst_change(catalog, make_user):
    plan = Plan.objects.create(name="Berlin", calendar_time_zone="Europe/Berlin")
    PlanLimit.objects.create(plan=plan, model=catalog["o1-preview"], messages=2, window_kind="calendar", window_unit="week")
    user = make_user()
    services.plan_set(user=user, plan=plan)
    # Clocks go forward on Sunday 29 March 2026; the week began on Monday 23 March at 00:00 CET.
    with time_machine.travel(at(2026, 3, 22, 23, 0), tick=False):
        send(user)
        send(user)
        refusal = refused(user)
    assert refusal.extra["resets_at"] == "2026-03-30T00:00:00+02:00"  # Monday 00:00 CEST = 29 Mar 22:00 UTC
    with time_machine.travel(at(2026, 3, 29, 21, 59, 59), tick=False):
        refused(user)
    with time_machine.travel(at(2026, 3, 29, 22, 0), tick=False):
        send(user)
        send(user)
        refused(user)


def test_rolling_window_frees_one_slot_as_each_message_ages_out(catalog, make_user):
    user = make_user()
    override(user, catalog, "gpt-4o", messages=2, window_kind="rolling", window_length=3, window_unit="hour")
    with time_machine.travel(at(2026, 5, 4, 10, 0), tick=False):
        send(user, "gpt-4o")
    with time_machine.travel(at(2026, 5, 4, 11, 0), tick=False):
        send(user, "gpt-4o")
    with time_machine.travel(at(2026, 5, 4, 12, 0), tick=False):
        assert refused(user, "gpt-4o").extra["resets_at"] == "2026-05-04T13:00:00+00:00"
    with time_machine.travel(at(2026, 5, 4, 13, 0, 1), tick=False):
        send(user, "gpt-4o")
        assert refused(user, "gpt-4o").extra["resets_at"] == "2026-05-04T14:00:00+00:00"
    with time_machine.travel(at(2026, 5, 4, 14, 0, 1), tick=False):
        send(user, "gpt-4o")


@pytest.mark.parametrize(
    ("model", "counted_in_window"),
    [("o1-preview", True), ("gpt-4o", False), ("unlimited", False)],  # anchored, rolling, explicitly unlimited
)
def test_a_reservation_marks_the_reply_and_ledgers_it_once(catalog, make_user, model, counted_in_window):
    user = make_user()
    if model == "unlimited":
        model = "o1-mini"
        plan = Plan.objects.create(name="No limits")
        PlanLimit.objects.create(plan=plan, model=catalog["o1-mini"], unlimited=True)
        services.plan_set(user=user, plan=plan)
    with time_machine.travel(at(2026, 7, 1, 12, 0), tick=False):
        reply = send(user, model)
    reservation = Reservation.objects.get(reply_id=reply.id)
    assert (reservation.state, reservation.window_start) == ("reserved", at(2026, 7, 1, 12, 0) if counted_in_window else None)
    [entry] = LedgerEntry.objects.filter(reply_id=reply.id)
    assert (entry.kind, entry.delta, entry.user, entry.model) == ("reserve", 1, user, catalog[model])
    assert entry.created_at == at(2026, 7, 1, 12, 0)


def test_a_limit_lowered_below_what_was_used_refuses_until_the_window_closes(catalog, make_user):
    user = make_user()
    with time_machine.travel(at(2026, 8, 3, 9, 0), tick=False):
        for _ in range(3):
            send(user, "o1-mini")
        override(user, catalog, "o1-mini", messages=2, window_kind="anchored", window_length=1, window_unit="day")
        assert refused(user, "o1-mini").extra["resets_at"] == "2026-08-04T00:00:00+00:00"
    with time_machine.travel(at(2026, 8, 4, 0, 0), tick=False):
        send(user, "o1-mini")
    assert QuotaCounter.objects.get(user=user, model=catalog["o1-mini"]).used == 1


def test_a_calendar_window_counts_on_from_a_window_of_another_kind_that_started_the_same_moment(catalog, make_user):
    user = make_user()
    with time_machine.travel(at(2026, 8, 3, 0, 0), tick=False):  # a Monday, 00:00 UTC
        send(user, "o1-mini")  # anchored: opens at 00:00, the day's calendar window start
        override(user, catalog, "o1-mini", messages=2, window_kind="calendar", window_length=1, window_unit="week")
        send(user, "o1-mini")
        refusal = refused(user, "o1-mini")
    assert refusal.extra["resets_at"] == "2026-08-10T00:00:00+00:00"  # the week's end, not the day's
    assert QuotaCounter.objects.get(user=user, model=catalog["o1-mini"]).window_end == at(2026, 8, 10, 0, 0)


def test_an_override_beats_the_plan(catalog, make_user):
    user, neighbour = make_user(), make_user()
    override(user, catalog, "o1-mini", messages=1, window_kind="anchored", window_length=1, window_unit="day")
    send(user, "o1-mini")
    refused(user, "o1-mini")
    send(neighbour, "o1-mini")
    send(neighbour, "o1-mini")


def test_a_grant_adds_messages_until_it_expires(catalog, make_user):
    user = make_user()
    override(user, catalog, "o1-mini", messages=1, window_kind="anchored", window_length=7, window_unit="day")
    with time_machine.travel(at(2026, 6, 1, 9, 0), tick=False):
        send(user, "o1-mini")
        refused(user, "o1-mini")
        services.quota_grant(user=user, model=catalog["o1-mini"], messages=2, expires_at=at(2026, 6, 3, 0, 0))
        send(user, "o1-mini")
        send(user, "o1-mini")
        refused(user, "o1-mini")
    with time_machine.travel(at(2026, 6, 9, 9, 0), tick=False):  # a new window, the grant expired
        send(user, "o1-mini")
        refused(user, "o1-mini")


def test_a_send_announces_the_numbers_the_picker_would_read(catalog, make_user):
    """The reservation's own statement gives the picker's numbers for the model: no reading them back."""
    plan = Plan.objects.create(name="Efforts", calendar_time_zone="Europe/Berlin", reasoning_efforts="low,high")
    PlanLimit.objects.create(plan=plan, model=catalog["o1-preview"], messages=5, window_kind="calendar", window_unit="week")
    PlanLimit.objects.create(plan=plan, model=catalog["o1-mini"], messages=5, window_kind="anchored", window_length=1, window_unit="day")
    PlanLimit.objects.create(plan=plan, model=catalog["gpt-4o"], unlimited=True)
    user = make_user()
    services.plan_set(user=user, plan=plan)
    with time_machine.travel(at(2026, 6, 1, 9, 0), tick=False):
        services.quota_grant(user=user, model=catalog["o1-mini"], messages=2, expires_at=at(2026, 6, 3, 0, 0))
        for model in ("o1-preview", "o1-mini", "o1-mini", "gpt-4o"):
            reply = send(user, model)
            assert reply.counted is not None
            assert reply.counted.as_json(user) == quota_json(user, catalog[model])
        assert quota_json(user, catalog["o1-mini"])[0]["left"] == 5


def test_a_disabled_or_unlisted_model_is_refused_and_unlimited_is_explicit(catalog, make_user):
    plan = Plan.objects.create(name="Narrow")
    PlanLimit.objects.create(plan=plan, model=catalog["o1-preview"], disabled=True)
    PlanLimit.objects.create(plan=plan, model=catalog["o1-mini"], unlimited=True)
    user = make_user()
    services.plan_set(user=user, plan=plan)

    for slug in ("o1-preview", "gpt-4o"):  # disabled; no rule at all (fail closed)
        with pytest.raises(actions.ActionRefused) as exc:
            send(user, slug)
        assert "is not available on your plan." in str(exc.value)
    for _ in range(60):
        send(user, "o1-mini")  # explicitly unlimited
    statuses = {s.model.slug: s for s in selectors.quota_status(user=user)}
    assert statuses["o1-preview"].disabled and statuses["o1-preview"].exhausted
    assert statuses["gpt-4o"].disabled and statuses["gpt-4o"].describe == "not on your plan"
    assert statuses["o1-mini"].limit is None and not statuses["o1-mini"].exhausted


def test_new_users_get_the_default_plan(catalog, make_user):
    assert selectors.user_plan(make_user()) == Plan.objects.get(is_default=True)


def test_a_refused_send_stores_nothing(catalog, make_user):
    user = make_user()
    override(user, catalog, "o1-mini", messages=0, window_kind="anchored", window_length=1, window_unit="day")
    refused(user, "o1-mini")
    assert not Message.objects.filter(conversation__user=user).exists()
    assert not LedgerEntry.objects.filter(user=user).exists()


def test_the_picker_status_shows_left_and_reset_in_the_users_time_zone(catalog, make_user):
    user = make_user(time_zone="Europe/London")
    with time_machine.travel(at(2026, 11, 12, 10, 0), tick=False):
        for _ in range(13):
            send(user)
        data = {m["model"]: m for m in quota_json(user)}
    assert data["o1-preview"]["left"] == 37
    assert data["o1-preview"]["resets_label"] == "Thu 19 Nov, 00:00"
    assert data["o1-preview"]["few_left"] is False
    assert data["o1-mini"]["left"] == 50 and data["o1-mini"]["resets_at"] is None


def ledger_total(user, model) -> int:
    entries = LedgerEntry.objects.filter(user=user, model=model, kind__in=["reserve", "refund", "reset"])
    return entries.aggregate(total=Sum("delta"))["total"] or 0


@pytest.mark.django_db(transaction=True)  # generated here; checkpoints come from another thread
@pytest.mark.usefixtures("private_queue")
def test_a_provider_failure_refunds_and_a_redelivered_task_changes_nothing(simulator, catalog, make_user, settings):
    settings.PROVIDER_RETRY_BASE_SECONDS = 0.01
    user = make_user()
    good = actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="fine [sim:think=0]")[1]
    bad = actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="x [sim:fault=quota]")[1]
    for _ in range(2):  # the second run is a redelivery
        generation.reply_generate(message_id=good.id)
        generation.reply_generate(message_id=bad.id)

    good.refresh_from_db()
    bad.refresh_from_db()
    assert (quota_state(good), quota_state(bad)) == ("settled", "refunded")
    assert bad.error == "The service is out of credit with the model provider. An administrator has been told."
    assert LedgerEntry.objects.filter(reply_id=bad.id, kind="refund").count() == 1
    assert LedgerEntry.objects.filter(reply_id=good.id, kind="settle").count() == 1
    counter = QuotaCounter.objects.get(user=user, model=catalog["o1-mini"])
    assert counter.used == 1 == ledger_total(user, catalog["o1-mini"])


@pytest.mark.django_db(transaction=True)
def test_one_hundred_refund_attempts_refund_once(catalog, make_user):
    user = make_user()
    reply = send(user, "o1-mini")
    gate = threading.Barrier(100)
    results = []

    def attempt():
        gate.wait()
        try:
            results.append(services.quota_refund(reply_id=reply.id, reason="race"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert results.count(True) == 1
    assert LedgerEntry.objects.filter(reply_id=reply.id, kind="refund").count() == 1
    assert QuotaCounter.objects.get(user=user, model=catalog["o1-mini"]).used == 0


@pytest.mark.django_db(transaction=True)
def test_one_hundred_sends_from_four_processes_for_the_last_slot_admit_exactly_one(catalog, make_user, private_queue):
    import multiprocessing

    from tests.helpers import database_url
    from tests.racers import race

    # RACE_ROUNDS=20 for the acceptance run; the suite runs fewer to stay quick.
    processes, per_process, rounds = 4, 25, int(os.environ.get("RACE_ROUNDS", "5"))
    ctx = multiprocessing.get_context("spawn")
    tasks, results, start = ctx.Queue(), ctx.Queue(), ctx.Barrier(processes)
    # 4 processes × 12 connections: the 100 sends still race (each waits on the counter's row lock),
    # within the 100 connections PostgreSQL allows everything on this machine, the live stack included.
    env = {
        "DATABASE_URL": database_url(),
        "DB_POOL_MAX": "12",
        "DB_POOL_TIMEOUT": "120",  # a thread may wait its turn for a connection while the row lock serialises
        "MAX_LIVE_REPLIES": "1000",
        "CELERY_QUEUE": private_queue,  # no worker generates them during or after the test
    }
    racers = [ctx.Process(target=race, args=(env, tasks, results, start)) for _ in range(processes)]
    for p in racers:
        p.start()
    try:
        for round_ in range(rounds):
            # Every other round races for the first slot, before the user has a counter row at all.
            sent = 0 if round_ % 2 else 2
            user = make_user()
            override(user, catalog, "o1-preview", messages=sent + 1, window_kind="anchored", window_length=7, window_unit="day")
            for _ in range(sent):
                send(user)
            for _ in range(processes):
                tasks.put((user.id, "o1-preview", per_process, None))
            outcomes = [o for _ in range(processes) for o in results.get(timeout=60)]

            assert len(outcomes) == 100
            assert outcomes.count("admitted") == 1
            assert set(outcomes) == {"admitted", "quota_exhausted"}
            assert QuotaCounter.objects.get(user=user, model=catalog["o1-preview"]).used == sent + 1
            assert Message.objects.filter(conversation__user=user, role="assistant").count() == sent + 1
    finally:
        for _ in racers:
            tasks.put(None)
        for p in racers:
            p.join(30)


@pytest.mark.django_db(transaction=True)
def test_sends_racing_into_one_chat_from_two_processes_make_one_branch(catalog, make_user, private_queue):
    """Each send waits for the one before (the user's lock) and follows its reply: the chat read under the
    lock is the one the other send left, so no two messages answer the same one."""
    import multiprocessing

    from tests.helpers import database_url
    from tests.racers import race

    processes, per_process = 2, 8
    ctx = multiprocessing.get_context("spawn")
    tasks, results, start = ctx.Queue(), ctx.Queue(), ctx.Barrier(processes)
    env = {"DATABASE_URL": database_url(), "DB_POOL_MAX": "8", "MAX_LIVE_REPLIES": "1000", "CELERY_QUEUE": private_queue}
    racers = [ctx.Process(target=race, args=(env, tasks, results, start)) for _ in range(processes)]
    for p in racers:
        p.start()
    try:
        user = make_user()
        first = send(user)  # the reply
        for _ in range(processes):
            tasks.put((user.id, "o1-mini", per_process, first.conversation_id))
        outcomes = [o for _ in range(processes) for o in results.get(timeout=120)]
    finally:
        for _ in racers:
            tasks.put(None)
        for p in racers:
            p.join(30)

    assert outcomes == ["admitted"] * (processes * per_process)
    messages = list(Message.objects.filter(conversation_id=first.conversation_id).order_by("id"))
    assert len(messages) == 2 + 2 * processes * per_process
    children = Counter(m.parent_id for m in messages)
    assert children[None] == 1 and max(children.values()) == 1  # one root, and every message followed once
    conversation = Conversation.objects.get(id=first.conversation_id)
    assert conversation.current_leaf_id == messages[-1].id

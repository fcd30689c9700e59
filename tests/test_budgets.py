"""Cost and budgets: what answers cost, token and money budgets beside message limits, and staff notices."""

import datetime as dt
import http.server
import json
import os
import threading
from decimal import Decimal

import pytest
import time_machine
from django.core import mail

from catalog.models import ModelPrice
from chat import actions
from chat.models import Message
from generation import reply as generation
from quotas import selectors, services
from quotas.models import BudgetCounter, BudgetOverride, LedgerEntry, Notice, Plan, PlanBudget, Reservation
from tests import helpers
from tests.helpers import quota_state

UTC = dt.UTC
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_live_reply_cap")]


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def budget_for(user, *, amount: str, kind: str = "dollars", **window) -> BudgetOverride:
    window = window or {"window_kind": "calendar", "window_length": 1, "window_unit": "month"}
    return BudgetOverride.objects.create(user=user, kind=kind, amount=Decimal(amount), **window)


def held(reply) -> Reservation:
    return Reservation.objects.get(reply_id=reply.id)


def refused(user, model: str = "o1-mini") -> actions.ActionRefused:
    with pytest.raises(actions.ActionRefused) as exc:
        helpers.send(user, model)
    assert exc.value.code == "quota_exhausted"
    return exc.value


def picker(user, model: str) -> dict:
    return next(q for q in selectors.quota_json(user) if q["model"] == model)


def test_an_answer_costs_its_tokens_at_the_price_in_force_when_it_was_sent(catalog, make_user):
    user = make_user()
    with time_machine.travel(at(2026, 3, 1, 12), tick=False):
        reply = helpers.send(user, "o1-preview")
    # A price cut from the next day on does not change what an answer sent before it costs.
    ModelPrice.objects.create(
        model=catalog["o1-preview"],
        effective_from=at(2026, 3, 2),
        input_per_million=Decimal("1"),
        cached_input_per_million=Decimal("0.5"),
        output_per_million=Decimal("2"),
    )
    usage = {"prompt_tokens": 1_000, "cached_tokens": 400, "completion_tokens": 3_000, "reasoning_tokens": 2_500}
    with time_machine.travel(at(2026, 3, 3), tick=False):
        assert services.quota_settle(reply_id=reply.id, usage=usage)

    settle = LedgerEntry.objects.get(reply_id=reply.id, kind="settle")
    # $15 per 1M uncached input, $7.50 cached, $60 output (reasoning is output): micro-dollars per token.
    assert settle.cost_micros == 600 * 15 + 400 * 7.5 + 3_000 * 60 == 192_000
    assert (settle.reasoning_tokens, settle.cached_tokens) == (2_500, 400)


@pytest.mark.django_db(transaction=True)  # generated here; checkpoints come from another thread
@pytest.mark.usefixtures("private_queue")
def test_an_answer_from_the_simulator_settles_its_cost_and_gives_the_rest_of_the_hold_back(simulator, catalog, make_user):
    user = make_user()
    budget_for(user, amount="20")
    _, reply = actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="hello [sim:think=0]")
    worst = held(reply).micros
    assert worst > 65_536 * 12  # the whole output reserve at $12 per 1M, and the prompt
    assert BudgetCounter.objects.get(user=user).micros == worst

    generation.reply_generate(message_id=reply.id)

    reply.refresh_from_db()
    settle = LedgerEntry.objects.get(reply_id=reply.id, kind="settle")
    assert settle.cost_micros == reply.prompt_tokens * 3 + reply.completion_tokens * 12 > 0
    assert BudgetCounter.objects.get(user=user).micros == settle.cost_micros == held(reply).micros
    left = (Decimal(20_000_000 - settle.cost_micros) / 1_000_000).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    assert picker(user, "o1-mini")["budget"]["label"] == f"${left} of $20.00 left this month"
    assert selectors.quota_check() == []


def test_a_money_budget_refuses_a_send_whose_worst_case_does_not_fit_and_says_what_is_left(catalog, make_user):
    user = make_user()
    budget_for(user, amount="1.00")  # o1-mini holds about $0.79 a message (65,536 output tokens at $12 per 1M)
    with time_machine.travel(at(2026, 9, 12, 10), tick=False):
        first = helpers.send(user, "o1-mini")
        refusal = refused(user, "o1-mini")
    assert str(refusal).startswith("Budget reached: o1-mini needs up to $0.79 for a message and $0.21 of $1.00 left this month")
    assert "resets Thu 1 Oct, 00:00" in str(refusal)
    assert refusal.extra["resets_at"] == "2026-10-01T00:00:00+00:00"
    assert Message.objects.filter(conversation__user=user).count() == 2  # the refused send stored nothing

    # The answer was short: settling gives the rest back, and there is room again.
    services.quota_settle(reply_id=first.id, usage={"prompt_tokens": 30, "completion_tokens": 2_000})
    assert BudgetCounter.objects.get(user=user).micros == 30 * 3 + 2_000 * 12
    with time_machine.travel(at(2026, 9, 12, 11), tick=False):
        helpers.send(user, "o1-mini")
    assert selectors.quota_check() == []


def test_a_refund_gives_the_whole_hold_back_once(catalog, make_user):
    user = make_user()
    budget_for(user, amount="100000", kind="tokens", window_kind="anchored", window_length=1, window_unit="day")
    reply = helpers.send(user, "o1-mini", text="one two three")
    assert 65_536 < held(reply).tokens < 65_600  # the prompt's tokens and the output reserve
    assert picker(user, "o1-mini")["budget"]["blocked"] is True  # another whole output reserve does not fit

    assert services.quota_refund(reply_id=reply.id, reason="provider down")
    assert not services.quota_refund(reply_id=reply.id, reason="again")
    assert not services.quota_settle(reply_id=reply.id, usage={"prompt_tokens": 10, "completion_tokens": 10})

    assert BudgetCounter.objects.get(user=user).tokens == 0
    assert (quota_state(reply), held(reply).tokens) == ("refunded", 0)
    assert picker(user, "o1-mini")["budget"]["label"] == "100,000 of 100,000 tokens left per 1 day"
    assert selectors.quota_check() == []


def test_a_rolling_token_budget_frees_as_answers_age_out(catalog, make_user):
    user = make_user()
    budget_for(user, amount="100000", kind="tokens", window_kind="rolling", window_length=3, window_unit="hour")
    with time_machine.travel(at(2026, 9, 12, 10), tick=False):
        reply = helpers.send(user, "o1-mini")
        services.quota_settle(reply_id=reply.id, usage={"prompt_tokens": 20, "completion_tokens": 60_000})
    with time_machine.travel(at(2026, 9, 12, 12, 59), tick=False):
        refusal = refused(user, "o1-mini")
        assert refusal.extra["resets_at"] == "2026-09-12T13:00:00+00:00"
    with time_machine.travel(at(2026, 9, 12, 13, 0, 1), tick=False):
        helpers.send(user, "o1-mini")


def test_the_plans_budget_applies_and_an_override_replaces_or_lifts_it(catalog, make_user):
    user = make_user()
    PlanBudget.objects.create(plan=Plan.objects.get(is_default=True), kind="dollars", amount=Decimal("0.50"))
    refused(user, "o1-mini")
    assert picker(user, "o1-mini")["exhausted"] is True
    assert picker(user, "gpt-4o")["exhausted"] is False  # 16,384 output tokens at $10 per 1M fit in $0.50

    override = budget_for(user, amount="5")
    helpers.send(user, "o1-mini")
    override.unlimited = True
    override.save()
    assert picker(user, "o1-mini")["budget"] is None


def test_a_model_without_a_price_is_refused_on_a_money_budget_but_not_on_a_token_budget(catalog, make_user):
    user = make_user()
    ModelPrice.objects.filter(model=catalog["o1-mini"]).delete()
    override = budget_for(user, amount="20")
    refusal = refused(user, "o1-mini")
    assert str(refusal).startswith("o1-mini has no price yet, so it cannot be used on a money budget.")
    override.kind, override.amount = "tokens", Decimal("1000000")
    override.save()
    reply = helpers.send(user, "o1-mini")
    services.quota_settle(reply_id=reply.id, usage={"prompt_tokens": 10, "completion_tokens": 10})
    assert LedgerEntry.objects.get(reply_id=reply.id, kind="settle").note == "no price for this model: cost unknown"


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook(settings):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    Hook.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.QUOTA_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield Hook.received
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=True)  # notices are delivered after commit
def test_staff_are_told_once_per_window_when_a_user_reaches_a_limit(catalog, make_user, webhook, settings):
    settings.QUOTA_ALERT_EMAILS = ["ops@example.com"]
    user = make_user("carol")
    budget_for(user, amount="1.00")
    with time_machine.travel(at(2026, 9, 12, 10), tick=False):
        helpers.send(user, "o1-mini")
        for _ in range(3):
            refused(user, "o1-mini")
    assert [m.subject for m in mail.outbox] == ["carol reached a limit"]
    assert mail.outbox[0].to == ["ops@example.com"]
    assert "Budget reached: o1-mini needs up to $0.79" in mail.outbox[0].body
    assert [hook["subject"] for hook in webhook] == ["carol reached a limit"]

    with time_machine.travel(at(2026, 10, 1, 0, 0, 1), tick=False):  # the next month's window
        helpers.send(user, "o1-mini")  # the September hold does not count in October
        refused(user, "o1-mini")
    assert len(mail.outbox) == 2 == Notice.objects.count()


@pytest.mark.django_db(transaction=True)
def test_staff_are_told_once_a_month_when_the_organisations_spend_passes_the_threshold(catalog, make_user, webhook, settings):
    settings.SPEND_ALERT_DOLLARS = 1.0
    make_user("ops", is_staff=True, email="ops@example.com")
    user = make_user()
    usage = {"prompt_tokens": 1_000, "completion_tokens": 10_000}  # $0.61 on o1-preview
    with time_machine.travel(at(2026, 9, 12, 10), tick=False):
        for _ in range(3):
            services.quota_settle(reply_id=helpers.send(user, "o1-preview").id, usage=usage)
    assert [m.subject for m in mail.outbox] == ["Spend passed $1.00 this month"]
    assert mail.outbox[0].to == ["ops@example.com"]
    assert "$1.23 since 01 Sep 2026" in webhook[0]["body"]


@pytest.mark.django_db(transaction=True)
def test_one_hundred_sends_from_four_processes_for_the_last_cent_admit_exactly_one(catalog, make_user, private_queue):
    import multiprocessing

    from tests.helpers import database_url
    from tests.racers import race

    processes, per_process, rounds = 4, 25, int(os.environ.get("RACE_ROUNDS", "4"))
    ctx = multiprocessing.get_context("spawn")
    tasks, results, start = ctx.Queue(), ctx.Queue(), ctx.Barrier(processes)
    env = {
        "DATABASE_URL": database_url(),
        "DB_POOL_MAX": "12",
        "DB_POOL_TIMEOUT": "120",
        "MAX_LIVE_REPLIES": "1000",
        # The test's own queue, which no worker takes (like this process's sends, no_live_reply_cap):
        # a settle would give back the unused part of a hold mid-race.
        "CELERY_QUEUE": private_queue,
    }
    racers = [ctx.Process(target=race, args=(env, tasks, results, start)) for _ in range(processes)]
    for p in racers:
        p.start()
    try:
        # What one racing send holds: the prompt "race" and o1-preview's whole output reserve.
        probe = make_user()
        budget_for(probe, amount="1000")
        worst = held(helpers.send(probe, "o1-preview", text="race")).micros
        for round_ in range(rounds):
            sent = 0 if round_ % 2 else 2  # every other round, the user already holds two answers
            user = make_user()
            cents = -(-(sent + 1) * worst // 10_000)  # just enough for one more, to the cent
            budget_for(user, amount=str(Decimal(cents) / 100))
            for _ in range(sent):
                helpers.send(user, "o1-preview", text="race")
            for _ in range(processes):
                tasks.put((user.id, "o1-preview", per_process, None))
            outcomes = [o for _ in range(processes) for o in results.get(timeout=60)]

            assert len(outcomes) == 100
            assert outcomes.count("admitted") == 1
            assert set(outcomes) == {"admitted", "quota_exhausted"}
            assert BudgetCounter.objects.get(user=user).micros == (sent + 1) * worst <= cents * 10_000
            assert Message.objects.filter(conversation__user=user, role="assistant").count() == sent + 1
        assert selectors.quota_check() == []
    finally:
        for _ in racers:
            tasks.put(None)
        for p in racers:
            p.join(30)


@pytest.mark.django_db(transaction=True)
def test_a_worker_settles_an_answer_while_the_same_user_is_sending(catalog, make_user):
    """A send holds the user's row from its start; a settle must not queue behind it while holding the
    budget counter the send will need next (that was a deadlock under load)."""
    from django.db import connections, transaction

    user = make_user()
    budget_for(user, amount="100")
    earlier = helpers.send(user, "o1-mini", text="earlier")
    sending, settled, in_time = threading.Event(), threading.Event(), []

    def a_send_in_progress() -> None:
        try:
            with transaction.atomic():
                actions._lock_user(user)
                sending.set()
                in_time.append(settled.wait(timeout=60))  # the settle finishes while this send holds the user
        finally:
            connections.close_all()

    sender = threading.Thread(target=a_send_in_progress)
    sender.start()
    assert sending.wait(timeout=60)
    try:
        assert services.quota_settle(reply_id=earlier.id, usage={"prompt_tokens": 10, "completion_tokens": 20})
        settled.set()
    finally:
        sender.join()
    assert in_time == [True] and quota_state(earlier) == "settled"


def test_a_send_holds_room_for_the_custom_instructions_it_will_be_sent_with(catalog, make_user):
    from accounts.models import Profile

    plain, instructed = make_user(), make_user()
    for user in (plain, instructed):
        budget_for(user, amount="1000000", kind="tokens")
    Profile.objects.filter(user=instructed).update(instructions="Answer in French, with sources. " * 40)
    without = held(helpers.send(plain, "o1-mini", text="same question")).tokens
    with_them = held(helpers.send(instructed, "o1-mini", text="same question")).tokens
    assert with_them - without > 200  # the worker sends them, so the worst case counts them

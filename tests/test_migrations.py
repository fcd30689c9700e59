"""A database made by the previous layout (everything in the chat app) migrates to the
new rooms with its data: plans, limits, overrides, counters, the ledger, and each reply's quota."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from quotas.models import LedgerEntry, Reservation, UserPlan
from quotas.selectors import quota_status, user_plan

BEFORE = [("chat", "0003_provider_limits"), ("accounts", "0001_initial"), ("quotas", None), ("catalog", None)]
UTC = dt.UTC


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_previous_layout_migrates_with_its_quota_data():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    old = executor.loader.project_state([node for node in BEFORE if node[1]]).apps

    # What the previous main stored, through its own models.
    User = old.get_model("auth", "User")
    user = User.objects.create(username="alice", password="x")
    mini, _ = old.get_model("chat", "AIModel").objects.get_or_create(
        slug="o1-mini", defaults={"name": "o1-mini", "provider_model": "o1-mini", "context_window": 128_000, "max_output_tokens": 65_536}
    )
    team = old.get_model("chat", "Plan").objects.create(name="Team")
    old.get_model("chat", "PlanLimit").objects.create(
        plan=team, model=mini, messages=2, window_kind="anchored", window_length=1, window_unit="day"
    )
    old.get_model("accounts", "Profile").objects.create(user=user, plan=team, time_zone="Europe/Paris")
    opened = dt.datetime.now(UTC).replace(microsecond=0)
    old.get_model("chat", "QuotaCounter").objects.create(
        user=user, model=mini, window_start=opened, window_end=opened + dt.timedelta(days=1), used=1
    )
    conversation = old.get_model("chat", "Conversation").objects.create(user=user, model=mini, title="t")
    Message = old.get_model("chat", "Message")
    settled = Message.objects.create(
        conversation=conversation, role="assistant", model=mini, text="a", quota="settled", quota_window_start=opened
    )
    refunded = Message.objects.create(conversation=conversation, role="assistant", model=mini, quota="refunded", quota_window_start=opened)
    Ledger = old.get_model("chat", "LedgerEntry")
    for reply, kinds in ((settled, ["reserve", "settle"]), (refunded, ["reserve", "refund"])):
        for kind in kinds:
            Ledger.objects.create(user=user, model=mini, kind=kind, message=reply, delta={"reserve": 1, "refund": -1}.get(kind, 0))

    executor = MigrationExecutor(connection)
    executor.migrate(latest)

    assert {(r.reply_id, r.state, r.window_start) for r in Reservation.objects.all()} == {
        (settled.id, "settled", opened),
        (refunded.id, "refunded", opened),
    }
    assert UserPlan.objects.get(user_id=user.id).plan.name == "Team"
    assert sorted(LedgerEntry.objects.values_list("reply_id", "kind")) == sorted(
        [(settled.id, "reserve"), (settled.id, "settle"), (refunded.id, "reserve"), (refunded.id, "refund")]
    )

    # And the quota works on it: the plan's limit of 2 with 1 used leaves one.
    from django.contrib.auth import get_user_model

    alice = get_user_model().objects.get(id=user.id)
    assert user_plan(alice).name == "Team"
    status = {s.model.slug: s for s in quota_status(user=alice)}["o1-mini"]
    assert (status.used, status.left) == (1, 1)

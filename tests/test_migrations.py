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


@pytest.mark.django_db(transaction=True)
def test_replaced_messages_of_the_previous_layout_become_versions_on_other_branches():
    before = [("chat", "0008_conversation_pin_archive_and_share_links")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    user = old.get_model("auth", "User").objects.create(username="bob", password="x")
    from catalog.models import AIModel  # the catalog's tables are as they are now; only chat went back

    defaults = {"name": "o1-mini", "context_window": 128_000, "max_output_tokens": 65_536}
    mini = AIModel.objects.get_or_create(slug="o1-mini", defaults=defaults)[0].id
    conversation = old.get_model("chat", "Conversation").objects.create(user=user, model_id=mini, title="t")
    Message = old.get_model("chat", "Message")

    def add(role: str, text: str, replaced: bool = False) -> int:
        return Message.objects.create(conversation=conversation, role=role, model_id=mini, text=text, replaced=replaced).id

    # Q1 A1, then A1 regenerated as A1b; Q2 A2, then Q2 edited to Q2b with its answer A2b.
    q1, a1, a1b = add("user", "Q1"), add("assistant", "A1", True), add("assistant", "A1b")
    q2, a2 = add("user", "Q2", True), add("assistant", "A2", True)
    q2b, a2b = add("user", "Q2b"), add("assistant", "A2b")

    executor = MigrationExecutor(connection)
    executor.migrate(latest)

    from chat.models import Conversation
    from chat.models import Message as Now
    from chat.selectors import conversation_messages

    parents = dict(Now.objects.filter(conversation_id=conversation.id).values_list("id", "parent_id"))
    assert parents == {q1: None, a1: q1, a1b: q1, q2: a1b, a2: q2, q2b: a1b, a2b: q2b}
    shown = conversation_messages(conversation=Conversation.objects.get(id=conversation.id))
    assert [(m.text, m.versions) for m in shown] == [("Q1", [q1]), ("A1b", [a1, a1b]), ("Q2b", [q2, q2b]), ("A2b", [a2b])]

"""The staff usage dashboard, its CSV, and `manage.py quota`, against what was really sent."""

import csv
import datetime as dt
import io
import json
import re

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client

from chat.models import Message
from quotas.models import LedgerEntry, Plan, PlanLimit, QuotaGrant, QuotaOverride
from quotas.selectors import quota_status, user_plan
from quotas.services import quota_grant, quota_override_record, quota_refund, quota_settle
from tests.helpers import send

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_live_reply_cap")]
UTC = dt.UTC
MONDAY = dt.datetime(2024, 9, 9, 10, 0, tzinfo=UTC)
WEDNESDAY = dt.datetime(2024, 9, 11, 15, 0, tzinfo=UTC)
NOW = dt.datetime(2024, 9, 11, 18, 0, tzinfo=UTC)


def answered(user, model: str, prompt: int, completion: int, reasoning: int) -> Message:
    reply = send(user, model)
    assert quota_settle(reply_id=reply.id, usage={"prompt_tokens": prompt, "completion_tokens": completion, "reasoning_tokens": reasoning})
    return reply


@pytest.fixture
def history(catalog, make_user) -> dict:
    """alice and bob over three days; one refund, one stopped-but-counted, one still in flight."""
    alice, bob = make_user("alice"), make_user("bob")
    with time_machine.travel(MONDAY):
        answered(alice, "o1-mini", 100, 50, 30)
        answered(alice, "o1-preview", 1000, 800, 600)
        failed = send(bob, "o1-preview")
        assert quota_refund(reply_id=failed.id, reason="provider error")
    with time_machine.travel(WEDNESDAY):
        answered(alice, "o1-mini", 200, 70, 40)
        answered(bob, "o1-mini", 10, 5, 0)
        answered(bob, "o1-mini", 20, 6, 1)
        send(bob, "gpt-4o")  # reserved, not yet answered: counts
    return {"alice": alice, "bob": bob}


def dashboard(client: Client, **params):
    with time_machine.travel(NOW):
        return client.get("/usage/", params)


def csv_rows(client: Client, **params) -> list[dict]:
    with time_machine.travel(NOW):
        response = client.get("/usage.csv", params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_dashboard_counts_messages_per_model_per_day(history, staff_client):
    response = dashboard(staff_client)
    assert response.status_code == 200
    data = response.context["data"]

    assert len(data["days"]) == 30 and data["days"][-1] == "2024-09-11" and data["days"][-3] == "2024-09-09"
    assert data["messages"]["o1-mini"][-3:] == [1, 0, 3]
    assert data["messages"]["o1-preview"][-3:] == [1, 0, 0]  # bob's failed reply was refunded
    assert data["messages"]["gpt-4o"][-3:] == [0, 0, 1]
    assert sum(sum(counts) for counts in data["messages"].values()) == 6


def test_the_dashboard_sums_tokens_per_model_from_settled_replies(history, staff_client):
    data = dashboard(staff_client).context["data"]
    tokens = {t["model"]: t for t in data["tokens"]}

    assert (tokens["o1-mini"]["prompt_tokens"], tokens["o1-mini"]["completion_tokens"], tokens["o1-mini"]["reasoning_tokens"]) == (
        330,
        131,
        71,
    )
    assert (tokens["o1-preview"]["prompt_tokens"], tokens["o1-preview"]["reasoning_tokens"]) == (1000, 600)
    assert tokens["gpt-4o"]["completion_tokens"] == 0
    assert dashboard(staff_client).context["totals"]["messages"] == 6


def test_the_dashboard_ranks_users_and_lists_those_at_their_limit(history, catalog, staff_client):
    alice, bob = history["alice"], history["bob"]
    for user, model, messages in [(alice, "o1-preview", 1), (bob, "o1-mini", 2)]:
        override = QuotaOverride.objects.create(user=user, model=catalog[model], messages=messages, window_length=7)
        quota_override_record(override=override)
    # bob used his 2 o1-mini messages, but a grant gives him a third.
    quota_grant(user=bob, model=catalog["o1-mini"], messages=1, expires_at=NOW + dt.timedelta(days=1))

    response = dashboard(staff_client)
    assert [(u["user__username"], u["messages"]) for u in response.context["top_users"]] == [("alice", 3), ("bob", 3)]
    assert response.context["data"]["top_users"] == [{"username": "alice", "messages": 3}, {"username": "bob", "messages": 3}]
    at_limit = response.context["at_limit"]
    assert [(r["username"], r["model"], r["used"], r["limit"]) for r in at_limit] == [("alice", "o1-preview", 1, 1)]
    assert at_limit[0]["resets_label"] == "Mon 16 Sep, 00:00 UTC"
    assert response.context["checked_users"] == 2  # both reached their override; only alice has no grant


def test_the_dashboard_does_not_query_per_active_user(catalog, make_user, staff_client, django_assert_max_num_queries):
    for n in range(25):
        answered(make_user(f"user{n}"), "o1-mini", 10, 10, 5)
    with django_assert_max_num_queries(30):
        response = staff_client.get("/usage/")
    assert response.context["totals"]["messages"] == 25


def test_the_page_hands_its_data_to_a_static_script_and_has_no_inline_code(history, staff_client):
    response = dashboard(staff_client)
    html = response.content.decode()

    payload = re.search(r'<script id="usage-data" type="application/json">(.*?)</script>', html, re.S)
    assert json.loads(payload.group(1)) == json.loads(json.dumps(response.context["data"]))
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert all("src=" in s or 'type="application/json"' in s for s in scripts), scripts
    assert "style=" not in html and "<style" not in html
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "/static/vendor/chart.umd.min.js" in html and "/static/js/usage.js" in html
    # Each chart has its numbers in a table too.
    assert html.count("<canvas") == 4 and html.count("<table>") >= 4


def test_the_csv_has_a_row_per_day_user_and_model(history, staff_client):
    rows = csv_rows(staff_client)
    table = {
        (r["day"], r["username"], r["model"]): (
            int(r["messages"]),
            int(r["prompt_tokens"]),
            int(r["completion_tokens"]),
            int(r["reasoning_tokens"]),
        )
        for r in rows
    }
    assert table == {
        ("2024-09-09", "alice", "o1-mini"): (1, 100, 50, 30),
        ("2024-09-09", "alice", "o1-preview"): (1, 1000, 800, 600),
        ("2024-09-09", "bob", "o1-preview"): (0, 0, 0, 0),
        ("2024-09-11", "alice", "o1-mini"): (1, 200, 70, 40),
        ("2024-09-11", "bob", "o1-mini"): (2, 30, 11, 1),
        ("2024-09-11", "bob", "gpt-4o"): (1, 0, 0, 0),
    }
    assert list(rows[0]) == ["day", "username", "model", "messages", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cost_usd"]
    # The CSV and the ledger agree on the totals.
    assert sum(int(r["messages"]) for r in rows) == sum(
        LedgerEntry.objects.filter(kind__in=["reserve", "refund"]).values_list("delta", flat=True)
    )


def test_the_dashboard_and_the_csv_show_spend_per_model_user_and_day_with_a_month_end_projection(catalog, make_user, staff_client):
    alice, bob = make_user("alice"), make_user("bob")
    with time_machine.travel(dt.datetime(2026, 9, 1, 9, tzinfo=UTC)):
        answered(alice, "o1-preview", 1_000, 10_000, 8_000)  # $0.015 + $0.60 (reasoning billed as output)
    with time_machine.travel(dt.datetime(2026, 9, 2, 9, tzinfo=UTC)):
        answered(bob, "o1-mini", 1_000, 10_000, 0)  # $0.003 + $0.12
    now = dt.datetime(2026, 9, 4, 0, tzinfo=UTC)  # a tenth of September gone
    with time_machine.travel(now):
        response = staff_client.get("/usage/")
        rows = list(csv.DictReader(io.StringIO(staff_client.get("/usage.csv").content.decode())))

    context = response.context
    assert context["data"]["spend"]["o1-preview"][-4:] == [0.61, 0, 0, 0]
    assert context["data"]["spend"]["o1-mini"][-3:] == [0.12, 0, 0]
    assert {t["model"]: str(t["cost"]) for t in context["tokens"] if t["cost"]} == {"o1-preview": "0.615", "o1-mini": "0.123"}
    assert [(u["user__username"], str(u["cost"])) for u in context["spenders"]] == [("alice", "0.615"), ("bob", "0.123")]
    assert str(context["totals"]["cost"]) == "0.738"
    assert (str(context["month"]["spent"]), str(context["month"]["projected"])) == ("0.738", "7.38")
    html = response.content.decode()
    assert "$0.74" in html and "at this pace $7.38 by month end" in html
    assert {(r["day"], r["username"], r["cost_usd"]) for r in rows} == {
        ("2026-09-01", "alice", "0.615000"),
        ("2026-09-02", "bob", "0.123000"),
    }


def test_days_narrows_the_period(history, staff_client):
    assert {r["day"] for r in csv_rows(staff_client, days="1")} == {"2024-09-11"}
    assert len(dashboard(staff_client, days="3").context["data"]["days"]) == 3
    assert dashboard(staff_client, days="366").status_code == 200


@pytest.mark.parametrize("days", ["0", "367", "-1", "abc", "1.5", " 3", "１"])
def test_bad_days_are_a_400(catalog, staff_client, days):
    with time_machine.travel(NOW):
        for url in ("/usage/", "/usage.csv"):
            response = staff_client.get(url, {"days": days})
            assert response.status_code == 400, (url, days)
            assert b"days must be a whole number from 1 to 366" in response.content


def test_a_csv_cell_cannot_become_a_spreadsheet_formula(catalog, make_user, staff_client):
    answered(make_user("=cmd"), "o1-mini", 1, 1, 0)
    rows = csv.DictReader(io.StringIO(staff_client.get("/usage.csv").content.decode()))
    assert [r["username"] for r in rows] == ["'=cmd"]


def test_the_admin_home_links_to_the_dashboard_and_back(catalog, staff_client):
    assert b'href="/usage/"' in staff_client.get("/admin/").content
    assert b'href="/admin/"' in staff_client.get("/usage/").content


# --- manage.py quota ---------------------------------------------------------------


def quota(*args: str) -> str:
    out = io.StringIO()
    call_command("quota", *args, stdout=out)
    return out.getvalue()


def test_show_lists_used_limit_left_and_reset_per_model(catalog, make_user):
    alice = make_user("alice")
    with time_machine.travel(MONDAY):
        send(alice, "o1-preview")
        out = quota("show", "alice")
    assert "alice · plan Default (default) · time zone UTC" in out
    line = next(line for line in out.splitlines() if line.startswith("o1-preview"))
    assert line.split()[:4] == ["o1-preview", "1", "50", "49"]
    assert "Mon 16 Sep, 00:00" in line


def test_grant_adds_messages_until_a_date_and_is_ledgered_without_actor(catalog, make_user):
    alice = make_user("alice")
    with time_machine.travel(MONDAY, tick=False):
        out = quota("grant", "alice", "o1-mini", "5", "--days", "3")
        quota("grant", "alice", "o1-preview", "2", "--until", "2024-10-01")
        limits = {s.model.slug: s.limit for s in quota_status(user=alice)}

    assert "Granted alice +5 o1-mini messages until Thu 12 Sep, 10:00 UTC." in out
    assert (limits["o1-mini"], limits["o1-preview"]) == (55, 52)
    grants = {g.model.slug: g for g in QuotaGrant.objects.filter(user=alice)}
    assert grants["o1-mini"].expires_at == MONDAY + dt.timedelta(days=3)
    assert grants["o1-preview"].expires_at == dt.datetime(2024, 10, 1, tzinfo=UTC)
    entries = LedgerEntry.objects.filter(user=alice, kind="grant")
    assert [e.actor for e in entries] == [None, None]
    assert all(e.note.endswith("via manage.py quota") for e in entries)


def test_reset_opens_a_fresh_window(catalog, make_user):
    alice = make_user("alice")
    send(alice, "o1-mini")
    send(alice, "o1-mini")
    out = quota("reset", "alice", "o1-mini")

    assert "Reset alice's o1-mini window." in out
    assert {s.model.slug: s.used for s in quota_status(user=alice)}["o1-mini"] == 0
    entry = LedgerEntry.objects.get(user=alice, kind="reset")
    assert (entry.actor, entry.delta, entry.note) == (None, -2, "via manage.py quota")


def test_set_plan_moves_the_user_and_is_ledgered(catalog, make_user):
    alice = make_user("alice")
    tight = Plan.objects.create(name="Tight")
    PlanLimit.objects.create(plan=tight, model=catalog["o1-mini"], messages=3)

    out = quota("set-plan", "alice", "tight")

    assert "alice is now on the Tight plan." in out
    alice.profile.refresh_from_db()
    assert user_plan(alice) == tight
    assert LedgerEntry.objects.get(user=alice, kind="plan").note.startswith("plan set to Tight")


@pytest.mark.parametrize(
    "args, error",
    [
        (["show", "nobody"], "There is no user called 'nobody'."),
        (["grant", "alice", "gpt-9", "5"], "There is no model 'gpt-9'. Models: "),
        (["grant", "alice", "o1-mini", "0"], "messages must be from 1 to 100,000, not 0."),
        (["grant", "alice", "o1-mini", "-3"], "messages must be from 1 to 100,000, not -3."),
        (["grant", "alice", "o1-mini", "lots"], "messages must be a whole number from 1 to 100,000, not 'lots'."),
        (["grant", "alice", "o1-mini", "100001"], "messages must be from 1 to 100,000"),
        (["grant", "alice", "o1-mini", "5", "--days", "0"], "--days must be from 1 to 3,660, not 0."),
        (["grant", "alice", "o1-mini", "5", "--days", "week"], "--days must be a whole number"),
        (["grant", "alice", "o1-mini", "5", "--until", "2020-01-01"], "is not in the future"),
        (["grant", "alice", "o1-mini", "5", "--until", "soon"], "--until must be a date like 2025-01-31"),
        (["grant", "alice", "o1-mini", "5", "--days", "2", "--until", "2099-01-01"], "not allowed with argument"),
        (["reset", "alice", "gpt-9"], "There is no model 'gpt-9'."),
        (["set-plan", "alice", "Platinum"], "There is no plan called 'Platinum'. Plans: Default."),
        (["explode", "alice"], "invalid choice: 'explode'"),
    ],
)
def test_bad_input_is_a_command_error_and_changes_nothing(catalog, make_user, args, error):
    make_user("alice")
    with pytest.raises(CommandError) as exc:
        quota(*args)
    assert error in str(exc.value)
    assert not QuotaGrant.objects.exists()
    assert not LedgerEntry.objects.exists()

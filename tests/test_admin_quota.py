"""What an admin does to someone's quota in the Django admin, and who may not."""

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.forms import modelform_factory
from django.test import Client
from django.utils import timezone

from quotas.models import LedgerEntry, Plan, PlanLimit, QuotaGrant, QuotaOverride, UserPlan
from quotas.selectors import quota_status, user_plan
from tests.helpers import refused, send

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_live_reply_cap")]


def override_form(user, model, **fields) -> dict:
    return {
        "user": user.id,
        "model": model.id,
        "messages": 1,
        "window_kind": "anchored",
        "window_length": 1,
        "window_unit": "day",
        **fields,
    }


def in_days(days: int) -> str:
    return (timezone.now() + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def action(client: Client, name: str, users: list, **fields):
    data = {"action": name, "_selected_action": [u.id for u in users], "apply": "1", **fields}
    return client.post("/admin/auth/user/", data)


def test_an_override_grant_and_reset_each_take_effect_on_the_next_send_and_are_ledgered(catalog, make_user, staff_client, staff_user):
    user, mini = make_user("alice"), catalog["o1-mini"]

    response = staff_client.post("/admin/quotas/quotaoverride/add/", override_form(user, mini, messages=1))
    assert response.status_code == 302
    send(user)
    refused(user)

    response = action(staff_client, "quota_grant_action", [user], model=mini.id, messages=1, expires_at=in_days(3), note="exam week")
    assert response.status_code == 302
    send(user)
    refused(user)

    response = action(staff_client, "quota_reset_action", [user], model=mini.id)
    assert response.status_code == 302
    send(user)
    send(user)  # a fresh window: the override's 1 plus the grant's 1
    refused(user)

    entries = {e.kind: e for e in LedgerEntry.objects.filter(user=user).exclude(kind="reserve")}
    assert set(entries) == {"override", "grant", "reset"}
    assert all(e.actor == staff_user for e in entries.values())
    assert entries["override"].note == "override set to 1 / 1 day anchored"
    assert entries["grant"].note.startswith("+1 until ") and entries["grant"].note.endswith("exam week")
    assert entries["reset"].delta == -2
    grant = QuotaGrant.objects.get(user=user)
    assert (grant.messages, grant.created_by) == (1, staff_user)


def test_the_action_first_asks_for_the_model_on_an_intermediate_page(catalog, make_user, staff_client):
    user = make_user("alice")
    response = staff_client.post("/admin/auth/user/", {"action": "quota_reset_action", "_selected_action": [user.id]})
    assert response.status_code == 200
    assert b"Reset quota window" in response.content
    assert b'name="model"' in response.content
    assert not LedgerEntry.objects.filter(kind="reset").exists()


def test_the_user_page_shows_the_quota_and_resets_and_grants_for_that_user(catalog, make_user, staff_client, staff_user):
    user, mini = make_user("alice"), catalog["o1-mini"]
    send(user)

    page = staff_client.get(f"/admin/auth/user/{user.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Quota now" in html and "o1-mini" in html and " UTC" in html
    assert f"/admin/auth/user/{user.id}/quota/grant/" in html

    response = staff_client.post(
        f"/admin/auth/user/{user.id}/quota/grant/", {"apply": "1", "model": mini.id, "messages": 5, "expires_at": in_days(1)}
    )
    assert response.status_code == 302 and response.url == f"/admin/auth/user/{user.id}/change/"
    response = staff_client.post(f"/admin/auth/user/{user.id}/quota/reset/", {"apply": "1", "model": mini.id})
    assert response.status_code == 302

    status = {s.model.slug: s for s in quota_status(user=user)}["o1-mini"]
    assert (status.used, status.limit) == (0, 55)
    assert LedgerEntry.objects.filter(user=user, kind__in=["grant", "reset"], actor=staff_user).count() == 2


def test_changing_the_plan_in_the_plan_inline_is_ledgered_and_applies(catalog, make_user, staff_client, staff_user):
    user = make_user("alice")
    team = Plan.objects.create(name="Tight")
    PlanLimit.objects.create(plan=team, model=catalog["o1-mini"], messages=1)
    profile = user.profile
    data = {
        "username": "alice",
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "date_joined_0": "2024-09-01",
        "date_joined_1": "10:00:00",
        "last_login_0": "",
        "last_login_1": "",
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "1",
        "profile-MIN_NUM_FORMS": "0",
        "profile-MAX_NUM_FORMS": "1",
        "profile-0-id": profile.id,
        "profile-0-user": user.id,
        "profile-0-time_zone": "Europe/Paris",
        "quota_plan-TOTAL_FORMS": "1",
        "quota_plan-INITIAL_FORMS": "0",
        "quota_plan-MIN_NUM_FORMS": "0",
        "quota_plan-MAX_NUM_FORMS": "1",
        "quota_plan-0-user": user.id,
        "quota_plan-0-plan": team.id,
        "_save": "Save",
    }
    response = staff_client.post(f"/admin/auth/user/{user.id}/change/", data)
    assert response.status_code == 302, response.context and response.context["errors"]

    profile.refresh_from_db()
    assert (user_plan(user), profile.time_zone) == (team, "Europe/Paris")
    entry = LedgerEntry.objects.get(user=user, kind="plan")
    assert (entry.actor, entry.note) == (staff_user, "plan set to Tight")
    user.refresh_from_db()
    send(user)
    refused(user)

    # Saving again without touching the plan records nothing new.
    data["profile-0-time_zone"] = "UTC"
    data.update({"quota_plan-INITIAL_FORMS": "1", "quota_plan-0-id": UserPlan.objects.get(user=user).id})
    assert staff_client.post(f"/admin/auth/user/{user.id}/change/", data).status_code == 302
    assert LedgerEntry.objects.filter(user=user, kind="plan").count() == 1


def test_removing_an_override_is_ledgered_and_the_plan_limit_applies_again(catalog, make_user, staff_client, staff_user):
    user, mini = make_user("alice"), catalog["o1-mini"]
    staff_client.post("/admin/quotas/quotaoverride/add/", override_form(user, mini, disabled="on"))
    refused(user)
    override = QuotaOverride.objects.get(user=user)

    response = staff_client.post(f"/admin/quotas/quotaoverride/{override.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    send(user)
    notes = list(LedgerEntry.objects.filter(user=user, kind="override", actor=staff_user).values_list("note", flat=True))
    assert notes == ["override removed", "override set to disabled"]


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"messages": -1}, "Ensure this value is greater than or equal to 0."),
        ({"messages": 2_000_000}, "Messages must be between 0 and 1,000,000"),
        ({"window_length": 0}, "The window length must be between 1 and 366."),
        ({"window_length": 400}, "The window length must be between 1 and 366."),
        ({"window_kind": "calendar", "window_length": 7}, "A calendar window is one day, one week or one month"),
        ({"window_unit": "month"}, "Months have no fixed length"),
    ],
)
def test_an_absurd_override_is_refused_with_a_form_error_and_nothing_changes(catalog, make_user, staff_client, fields, error):
    user = make_user("alice")
    response = staff_client.post("/admin/quotas/quotaoverride/add/", override_form(user, catalog["o1-mini"], **fields))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not QuotaOverride.objects.exists()
    assert not LedgerEntry.objects.filter(kind="override").exists()


def test_an_absurd_plan_limit_is_refused_in_the_plan_inline(catalog, staff_client):
    plan = Plan.objects.get(name="Default")
    limits = list(plan.limits.order_by("id"))
    data = {
        "name": plan.name,
        "description": plan.description,
        "is_default": "on",
        "calendar_time_zone": "UTC",
        "limits-TOTAL_FORMS": len(limits),
        "limits-INITIAL_FORMS": len(limits),
        "limits-MIN_NUM_FORMS": 0,
        "limits-MAX_NUM_FORMS": 1000,
    }
    for i, limit in enumerate(limits):
        data.update(
            {
                f"limits-{i}-id": limit.id,
                f"limits-{i}-plan": plan.id,
                f"limits-{i}-model": limit.model_id,
                f"limits-{i}-messages": -5 if i == 0 else limit.messages,
                f"limits-{i}-window_kind": limit.window_kind,
                f"limits-{i}-window_length": limit.window_length,
                f"limits-{i}-window_unit": limit.window_unit,
            }
        )
    response = staff_client.post(f"/admin/quotas/plan/{plan.id}/change/", data)
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0." in response.content.decode()
    assert limits[0].messages == PlanLimit.objects.get(id=limits[0].id).messages


def test_making_another_plan_the_default_moves_the_default_to_it(catalog, staff_client):
    response = staff_client.post(
        "/admin/quotas/plan/add/",
        {
            "name": "Another",
            "is_default": "on",
            "calendar_time_zone": "UTC",
            "limits-TOTAL_FORMS": 0,
            "limits-INITIAL_FORMS": 0,
            "limits-MIN_NUM_FORMS": 0,
            "limits-MAX_NUM_FORMS": 1000,
            "budget-TOTAL_FORMS": 0,  # the plan's optional budget
            "budget-INITIAL_FORMS": 0,
            "budget-MIN_NUM_FORMS": 0,
            "budget-MAX_NUM_FORMS": 1,
        },
    )
    assert response.status_code == 302
    assert list(Plan.objects.filter(is_default=True).values_list("name", flat=True)) == ["Another"]


def test_the_database_constraints_surface_as_form_errors_even_without_our_checks(catalog, make_user):
    # The backstop: a plain ModelForm runs the CheckConstraints in full_clean (Django ≥ 4.1).
    form_class = modelform_factory(
        QuotaOverride, fields=["user", "model", "messages", "window_kind", "window_length", "window_unit", "disabled"]
    )
    form = form_class(override_form(make_user(), catalog["o1-mini"], window_kind="calendar", window_length=7))
    assert not form.is_valid()
    assert "override_calendar_shape" in str(form.errors)


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"messages": 0}, "Ensure this value is greater than or equal to 1."),
        ({"messages": -5}, "Ensure this value is greater than or equal to 1."),
        ({"messages": 100_001}, "Ensure this value is less than or equal to 100000."),
        ({"messages": 5, "expires_at": "2020-01-01T00:00"}, "The expiry must be in the future."),
    ],
)
def test_an_absurd_grant_is_refused_with_a_form_error_and_nothing_changes(catalog, make_user, staff_client, fields, error):
    user, mini = make_user("alice"), catalog["o1-mini"]
    data = {"model": mini.id, "expires_at": in_days(1), **fields}

    by_action = action(staff_client, "quota_grant_action", [user], **data)
    by_admin = staff_client.post("/admin/quotas/quotagrant/add/", {"user": user.id, **data})

    for response in (by_action, by_admin):
        assert response.status_code == 200
        assert error in response.content.decode()
    assert not QuotaGrant.objects.exists()
    assert not LedgerEntry.objects.filter(kind="grant").exists()


def test_a_grant_made_in_the_grant_admin_is_ledgered_and_then_read_only(catalog, make_user, staff_client, staff_user):
    user, mini = make_user("alice"), catalog["o1-mini"]
    response = staff_client.post(
        "/admin/quotas/quotagrant/add/", {"user": user.id, "model": mini.id, "messages": 7, "expires_at": in_days(2)}
    )
    assert response.status_code == 302
    grant = QuotaGrant.objects.get()
    assert (grant.messages, grant.created_by) == (7, staff_user)
    assert LedgerEntry.objects.get(kind="grant").actor == staff_user

    page = staff_client.get(f"/admin/quotas/quotagrant/{grant.id}/change/")
    assert page.status_code == 200 and b'name="messages"' not in page.content
    changed = staff_client.post(
        f"/admin/quotas/quotagrant/{grant.id}/change/", {"user": user.id, "model": mini.id, "messages": 70000, "expires_at": in_days(2)}
    )
    assert changed.status_code == 403
    grant.refresh_from_db()
    assert grant.messages == 7

    assert staff_client.post(f"/admin/quotas/quotagrant/{grant.id}/delete/", {"post": "yes"}).status_code == 302
    assert not QuotaGrant.objects.exists()
    revoked = LedgerEntry.objects.filter(kind="grant").first()
    assert revoked.note.startswith(f"revoked grant #{grant.id}: +7") and revoked.actor == staff_user


def test_the_ledger_admin_is_read_only_and_filterable(catalog, make_user, staff_client):
    user = make_user("alice")
    send(user)
    entry = LedgerEntry.objects.get(user=user)

    assert staff_client.get("/admin/quotas/ledgerentry/add/").status_code == 403
    view = staff_client.get(f"/admin/quotas/ledgerentry/{entry.id}/change/")
    assert view.status_code == 200 and b'name="_save"' not in view.content
    assert staff_client.post(f"/admin/quotas/ledgerentry/{entry.id}/change/", {"kind": "refund"}).status_code == 403
    assert staff_client.post(f"/admin/quotas/ledgerentry/{entry.id}/delete/", {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.filter(id=entry.id, kind="reserve").exists()

    listing = staff_client.get("/admin/quotas/ledgerentry/", {"q": "alice", "kind": "reserve", "created_at__year": entry.created_at.year})
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [entry]
    assert b"delete_selected" not in listing.content
    assert staff_client.get("/admin/quotas/ledgerentry/", {"q": "nobody"}).context["cl"].result_list.count() == 0


def test_a_normal_user_gets_no_admin_and_no_usage(catalog, make_user):
    client = Client()
    client.force_login(make_user("alice"))
    for url in ("/admin/", "/admin/quotas/ledgerentry/", "/usage/", "/usage.csv"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith("/admin/login/"), url
    action = client.post(f"/admin/auth/user/{1}/quota/reset/", {"apply": "1"})
    assert action.status_code == 302 and action.url.startswith("/admin/login/")


def test_staff_without_ledger_permission_cannot_see_usage(catalog, make_user):
    client = Client()
    client.force_login(make_user("helper", is_staff=True))
    assert client.get("/usage/").status_code == 403
    assert client.get("/usage.csv").status_code == 403


def test_a_user_with_quota_history_cannot_be_deleted_from_the_admin_only_deactivated(catalog, make_user, staff_client):
    # The ledger is append-only, and deleting a user would cascade to their entries.
    user = make_user("alice")
    send(user)
    page = staff_client.get(f"/admin/auth/user/{user.id}/delete/")
    assert "permission to delete the following types of objects" in page.content.decode()
    assert "ledger entry" in page.content.decode()
    staff_client.post(f"/admin/auth/user/{user.id}/delete/", {"post": "yes"})
    assert LedgerEntry.objects.filter(user=user).exists()


def test_editing_an_override_is_ledgered_and_keeps_its_user_and_model(catalog, make_user, staff_client, staff_user):
    user, mini = make_user("alice"), catalog["o1-mini"]
    staff_client.post("/admin/quotas/quotaoverride/add/", override_form(user, mini, messages=1))
    override = QuotaOverride.objects.get()
    other = make_user("mallory")

    response = staff_client.post(
        f"/admin/quotas/quotaoverride/{override.id}/change/", override_form(other, catalog["o1-preview"], messages=3)
    )
    assert response.status_code == 302
    override.refresh_from_db()
    assert (override.user, override.model, override.messages) == (user, mini, 3)
    notes = list(LedgerEntry.objects.filter(user=user, kind="override").values_list("note", flat=True))
    assert notes == ["override set to 3 / 1 day anchored", "override set to 1 / 1 day anchored"]
    for _ in range(3):
        send(user)
    refused(user)


def test_adding_a_user_in_the_admin_gives_them_a_profile_on_the_default_plan(catalog, staff_client):
    response = staff_client.post(
        "/admin/auth/user/add/",
        {
            "username": "newbie",
            "usable_password": "true",
            "password1": "a-long-pass-123",
            "password2": "a-long-pass-123",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(username="newbie")
    assert not UserPlan.objects.filter(user=user).exists()  # follows the default plan
    assert {s.model.slug: s.limit for s in quota_status(user=user)}["o1-mini"] == 50


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["reset", "grant", "plan"])
def test_a_staff_change_updates_the_users_open_tabs_at_once(catalog, make_user, staff_client, change):
    from asgiref.sync import async_to_sync

    from tests.helpers import handshake, session_cookie

    user = make_user("alice")
    mini = catalog["o1-mini"]
    send(user)
    tight = Plan.objects.create(name="Tight")
    PlanLimit.objects.create(plan=tight, model=mini, messages=3)

    @async_to_sync
    async def run():
        from channels.db import database_sync_to_async

        _, communicator = await handshake(session_cookie(user))

        def apply():
            if change == "reset":
                return staff_client.post(f"/admin/auth/user/{user.id}/quota/reset/", {"apply": "1", "model": mini.id})
            if change == "grant":
                return staff_client.post(
                    f"/admin/auth/user/{user.id}/quota/grant/",
                    {"apply": "1", "model": mini.id, "messages": 7, "expires_at": in_days(3)},
                )
            from quotas.services import plan_set

            return plan_set(user=user, plan=tight)

        await database_sync_to_async(apply)()
        frame = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return frame

    frame = run()
    assert (frame["type"], frame["partial"]) == ("quota", False)
    numbers = {m["model"]: m for m in frame["models"]}["o1-mini"]
    assert (numbers["used"], numbers["limit"]) == {"reset": (0, 50), "grant": (1, 57), "plan": (1, 3)}[change]


def test_admin_pages_have_the_sites_favicon(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg"' in page


def test_a_budget_override_saved_in_the_admin_is_ledgered_and_applies_at_once(catalog, make_user, staff_client):
    from quotas.selectors import quota_json

    user = make_user()
    response = staff_client.post(
        "/admin/quotas/budgetoverride/add/",
        {"user": user.id, "kind": "dollars", "amount": "20", "window_kind": "calendar", "window_length": 1, "window_unit": "month"},
    )
    assert response.status_code == 302
    entry = LedgerEntry.objects.get(user=user, kind="budget")
    assert (entry.actor.username, entry.note) == ("boss", "budget override set to $20.00 / 1 month calendar")
    assert quota_json(user)[0]["budget"]["label"] == "$20.00 of $20.00 left this month"
    page = staff_client.get(f"/admin/auth/user/{user.id}/change/").content.decode()
    assert "Budget: $20.00 of $20.00 left this month, resets" in page

    refused = staff_client.post(
        "/admin/quotas/budgetoverride/add/",
        {"user": make_user().id, "kind": "dollars", "amount": "5", "window_kind": "calendar", "window_length": 2, "window_unit": "day"},
    )
    assert refused.status_code == 200 and "budgetoverride_calendar_shape" in refused.content.decode()

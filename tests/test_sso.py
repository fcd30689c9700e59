"""Single sign-on without the browser: the account a provider's identity signs in as, its groups,
the plan that groups give, the log-in page as configured, and the settings that refuse a half
configuration. The whole sign-in against a real provider is in test_browser_sso.py."""

import subprocess
import sys
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import SuspiciousOperation
from django.core.management import call_command
from django.test import Client

from accounts.services import sso_user_login
from accounts.sso import SSOBackend
from quotas.models import Plan, PlanBudget, UserPlan
from quotas.selectors import api_access_allowed, budget_get, plan_choice, quota_status
from tests.helpers import PASSWORD, ROOT, free_port

pytestmark = pytest.mark.django_db

ISSUER = "https://idp.example.org/realms/staff"


def plan(name: str, *, groups: list[str], priority: int, messages: int, model) -> Plan:
    team = Plan.objects.create(name=name, priority=priority)
    team.groups.set([Group.objects.get_or_create(name=group)[0] for group in groups])
    team.limits.create(model=model, messages=messages, window_kind="anchored", window_length=1, window_unit="day")
    return team


def o1_mini_limit(user, catalog) -> int | None:
    [status] = quota_status(user=user, model=catalog["o1-mini"])
    return None if status.disabled else status.limit


# --- The account and its groups ------------------------------------------------------------


def test_the_first_login_creates_the_account_and_later_logins_find_it_and_follow_the_groups(settings):
    settings.OIDC_GROUPS_CLAIM = "groups"
    claims = {"sub": "abc-123", "preferred_username": "ada", "email": "ada@example.org", "groups": ["engineering", "research"]}
    ada = sso_user_login(issuer=ISSUER, subject="abc-123", claims=claims)
    assert (ada.username, ada.email, ada.has_usable_password(), ada.profile.time_zone) == ("ada", "ada@example.org", False, "UTC")
    assert sorted(ada.groups.values_list("name", flat=True)) == ["engineering", "research"]

    again = sso_user_login(issuer=ISSUER, subject="abc-123", claims={**claims, "groups": ["research", "ops"]})
    assert again == ada and User.objects.count() == 1
    assert sorted(ada.groups.values_list("name", flat=True)) == ["ops", "research"]


def test_an_sso_login_never_takes_over_a_local_account_with_the_same_name_or_email(make_user):
    local = make_user("ada", email="ada@example.org")
    newcomer = sso_user_login(issuer=ISSUER, subject="other", claims={"preferred_username": "ada", "email": "ada@example.org"})
    assert newcomer != local and newcomer.username == "ada-2"
    assert local.check_password(PASSWORD)


def test_a_groups_claim_that_is_not_a_list_of_names_leaves_the_user_in_no_group(settings):
    settings.OIDC_GROUPS_CLAIM = "groups"
    user = sso_user_login(issuer=ISSUER, subject="s1", claims={"preferred_username": "bo", "groups": ["engineering"]})
    sso_user_login(issuer=ISSUER, subject="s1", claims={"preferred_username": "bo", "groups": {"engineering": True}})
    assert list(user.groups.all()) == []
    sso_user_login(issuer=ISSUER, subject="s1", claims={"preferred_username": "bo", "groups": "engineering"})
    assert list(user.groups.values_list("name", flat=True)) == ["engineering"]


def test_with_no_groups_claim_configured_staff_set_groups_are_kept(settings):
    settings.OIDC_GROUPS_CLAIM = ""
    user = sso_user_login(issuer=ISSUER, subject="s2", claims={"preferred_username": "cy"})
    user.groups.add(Group.objects.create(name="pilots"))
    sso_user_login(issuer=ISSUER, subject="s2", claims={"preferred_username": "cy", "groups": ["other"]})
    assert list(user.groups.values_list("name", flat=True)) == ["pilots"]


def test_deactivating_an_sso_user_ends_their_open_session(settings):
    settings.OIDC_OP_JWKS_ENDPOINT = "https://idp.example.org/jwks"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "accounts.sso.SSOBackend"]
    user = sso_user_login(issuer=ISSUER, subject="s3", claims={"preferred_username": "dee"})
    client = Client()
    client.force_login(user, backend="accounts.sso.SSOBackend")
    assert client.get("/quota/").status_code == 200
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert client.get("/quota/").status_code == 302


@pytest.mark.parametrize(
    "payload",
    [
        {"iss": ISSUER, "sub": "x", "aud": "another-client"},
        {"iss": "https://evil.example.org", "sub": "x", "aud": "chat"},
        {"iss": ISSUER, "aud": ["chat"]},
    ],
    ids=["for another client", "from another issuer", "without a subject"],
)
def test_an_id_token_not_meant_for_us_signs_nobody_in(settings, payload):
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_ISSUER = "chat", ISSUER
    settings.OIDC_OP_JWKS_ENDPOINT = "https://idp.example.org/jwks"
    with pytest.raises(SuspiciousOperation):
        SSOBackend().get_or_create_user("access", "id-token", payload)
    assert not User.objects.exists()


def test_when_the_provider_is_down_the_person_is_back_on_the_login_page_with_a_reason(settings, caplog):
    dead = f"http://127.0.0.1:{free_port()}"
    settings.SSO_ENABLED, settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = True, "chat", "secret"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT, settings.OIDC_OP_TOKEN_ENDPOINT = f"{dead}/authorize", f"{dead}/token"
    settings.OIDC_OP_USER_ENDPOINT, settings.OIDC_OP_JWKS_ENDPOINT = f"{dead}/userinfo", f"{dead}/jwks"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "accounts.sso.SSOBackend"]
    client = Client()
    to_provider = client.get("/accounts/sso/start/")
    assert to_provider.status_code == 302 and to_provider["Location"].startswith(f"{dead}/authorize?")
    state = parse_qs(urlsplit(to_provider["Location"]).query)["state"][0]
    page = client.get(f"/accounts/sso/callback/?code=some-code&state={state}", follow=True)
    assert page.redirect_chain[-1][0] == "/accounts/login/"
    assert "Single sign-on did not complete" in page.content.decode()
    assert not page.context["user"].is_authenticated and not User.objects.exists()
    assert "failed talking to the provider" in caplog.text


# --- Plans by group --------------------------------------------------------------------------


def test_a_group_plan_applies_to_the_groups_members(make_user, catalog):
    plan("Team", groups=["engineering"], priority=1, messages=42, model=catalog["o1-mini"])
    member, other = make_user(), make_user()
    member.groups.add(Group.objects.get(name="engineering"))
    assert o1_mini_limit(member, catalog) == 42
    assert plan_choice(member).source == "group" and plan_choice(member).group == "engineering"
    assert plan_choice(other).source == "default" and o1_mini_limit(other, catalog) != 42


def test_of_several_group_plans_the_highest_priority_applies_even_if_less_generous(make_user, catalog):
    plan("Team", groups=["engineering"], priority=1, messages=42, model=catalog["o1-mini"])
    plan("Interns", groups=["interns"], priority=5, messages=3, model=catalog["o1-mini"])
    user = make_user()
    user.groups.set([Group.objects.get(name="engineering"), Group.objects.get(name="interns")])
    assert o1_mini_limit(user, catalog) == 3
    assert (plan_choice(user).plan.name, plan_choice(user).group) == ("Interns", "interns")


def test_a_group_plan_brings_its_budget_and_its_api_access(make_user, catalog):
    team = plan("Team", groups=["engineering"], priority=1, messages=42, model=catalog["o1-mini"])
    Plan.objects.filter(pk=team.pk).update(api_access=True)
    PlanBudget.objects.create(plan=team, kind="tokens", amount=5000, window_kind="calendar", window_length=1, window_unit="month")
    member, other = make_user(), make_user()
    member.groups.add(Group.objects.get(name="engineering"))
    assert budget_get(member).amount == 5000 and budget_get(other) is None
    assert api_access_allowed(member) and not api_access_allowed(other)


def test_a_plan_assigned_to_the_user_wins_over_their_groups_plans(make_user, catalog):
    plan("Team", groups=["engineering"], priority=100, messages=42, model=catalog["o1-mini"])
    personal = plan("Personal", groups=[], priority=0, messages=9, model=catalog["o1-mini"])
    user = make_user()
    user.groups.add(Group.objects.get(name="engineering"))
    UserPlan.objects.create(user=user, plan=personal)
    assert o1_mini_limit(user, catalog) == 9 and plan_choice(user).source == "user"


def test_with_no_plan_for_the_user_their_groups_or_by_default_every_model_is_refused(make_user, catalog):
    user = make_user()
    user.groups.add(Group.objects.create(name="unmapped"))
    Plan.objects.filter(is_default=True).update(is_default=False)
    assert plan_choice(user).plan is None
    assert all(status.disabled for status in quota_status(user=user))


def test_the_quota_page_says_which_plan_applies_and_why(make_user, catalog):
    plan("Team", groups=["engineering"], priority=1, messages=42, model=catalog["o1-mini"])
    user = make_user()
    user.groups.add(Group.objects.get(name="engineering"))
    client = Client()
    client.force_login(user)
    page = client.get("/quota/").content.decode()
    assert "<h2>Team</h2>" in page and "You are in the group “engineering”" in page and "42 of 42" in page
    assert Client().get("/quota/").status_code == 302


def test_the_quota_command_says_when_the_plan_comes_from_a_group(make_user, catalog):
    plan("Team", groups=["engineering"], priority=1, messages=42, model=catalog["o1-mini"])
    user = make_user("eve")
    user.groups.add(Group.objects.get(name="engineering"))
    out = StringIO()
    call_command("quota", "show", "eve", stdout=out)
    assert "eve · plan Team (group engineering) · time zone UTC" in out.getvalue()


def test_staff_map_groups_to_plans_in_the_plan_admin(staff_client, catalog):
    engineering = Group.objects.create(name="engineering")
    form = {
        "name": "Team",
        "description": "",
        "calendar_time_zone": "UTC",
        "groups": [engineering.pk],
        "priority": "3",
        "reasoning_efforts": "low,medium,high",
        "limits-TOTAL_FORMS": "0",
        "limits-INITIAL_FORMS": "0",
        "budget-TOTAL_FORMS": "0",
        "budget-INITIAL_FORMS": "0",
    }
    response = staff_client.post("/admin/quotas/plan/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    team = Plan.objects.get(name="Team")
    assert (list(team.groups.all()), team.priority) == ([engineering], 3)


# --- The log-in page as configured -----------------------------------------------------------


def test_the_login_page_offers_single_sign_on_only_when_it_is_configured(db, settings):
    assert "single sign-on" not in Client().get("/accounts/login/").content.decode()
    assert Client().get("/accounts/sso/start/").status_code == 404
    settings.SSO_ENABLED, settings.SSO_BUTTON_LABEL = True, "Sign in with Okta"
    page = Client().get("/accounts/login/?next=/quota/").content.decode()
    assert 'href="/accounts/sso/start/?next=/quota/">Sign in with Okta</a>' in page
    assert 'name="password"' in page


def test_with_local_login_off_the_page_offers_only_sso_and_passwords_are_refused(make_user, settings):
    make_user("ada")
    settings.SSO_ENABLED, settings.LOCAL_LOGIN, settings.SSO_BUTTON_LABEL = True, False, "Sign in with Okta"
    client = Client()
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Okta" in page and 'name="password"' not in page and "Sign up" not in page
    response = client.post("/accounts/login/", {"username": "ada", "password": PASSWORD}, follow=True)
    assert "come from single sign-on" in response.content.decode()
    assert not response.context["user"].is_authenticated
    assert client.get("/accounts/signup/").status_code == 403
    assert client.get("/admin/login/?next=/admin/").url == "/accounts/login/?next=/admin/"


def test_staff_reach_the_admin_through_single_sign_on_when_local_login_is_off(staff_user, settings):
    settings.SSO_ENABLED, settings.LOCAL_LOGIN = True, False
    client = Client()
    assert client.get("/admin/", follow=True).redirect_chain[-1][0] == "/accounts/login/?next=/admin/"
    client.force_login(staff_user)
    assert client.get("/admin/").status_code == 200


def settings_error(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )
    assert result.returncode != 0
    return result.stderr


def test_a_half_configured_sso_or_no_way_to_log_in_stops_start_up_with_the_missing_names():
    assert "needs OIDC_RP_CLIENT_SECRET, OIDC_OP_AUTHORIZATION_ENDPOINT" in settings_error({"OIDC_RP_CLIENT_ID": "chat"})
    assert "LOCAL_LOGIN=false needs single sign-on" in settings_error({"LOCAL_LOGIN": "false"})

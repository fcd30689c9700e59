"""Single sign-on end to end, in Debian's Chromium: a real OpenID Connect provider
(django-oauth-toolkit, tests/oidc_provider/) on its own port and its own PostgreSQL
database, our web server configured for it by environment, and a person signing in."""

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from io import StringIO

import psycopg
import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from playwright.sync_api import Page, expect

from tests.helpers import PASSWORD, ROOT, database_url, free_port, http_ok, start_web, stop, subprocess_env, wait_until

CLIENT_ID = "chat-test-client"
CLIENT_SECRET = "chat-test-secret-0123456789"
BUTTON = "Sign in with Example SSO"


def idp_database_url() -> tuple[str, str]:
    """The provider's own database, beside the test database; and the URL of the server's maintenance database."""
    url = database_url()
    name = connection.settings_dict["NAME"] + "_idp"
    return url.rsplit("/", 1)[0] + "/" + name, url.rsplit("/", 1)[0] + "/postgres"


def start_identity_provider(port: int, redirect_uri: str, logged_out_uri: str) -> subprocess.Popen:
    url, maintenance = idp_database_url()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {
        "IDP_DATABASE_URL": url,
        "IDP_CLIENT": json.dumps(
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uri": redirect_uri,
                "post_logout_redirect_uri": logged_out_uri,
            }
        ),
        "IDP_USERS": json.dumps(
            [{"username": "ada", "password": PASSWORD, "email": "ada@example.org", "groups": ["engineering", "research"]}]
        ),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.Popen([sys.executable, "-m", "tests.oidc_provider", str(port)], cwd=ROOT, env=env)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/o/.well-known/openid-configuration"), timeout=60, what="the identity provider")
    return proc


def drop_idp_database() -> None:
    url, maintenance = idp_database_url()
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture
def sso_stack(transactional_db, catalog, simulator_server, isolated_queue) -> Iterator[tuple[str, str]]:
    """Our web server with single sign-on through the provider; yields both base URLs."""
    idp_port = free_port()
    idp = f"http://127.0.0.1:{idp_port}"
    env = subprocess_env(
        simulator_server,
        isolated_queue,
        OIDC_RP_CLIENT_ID=CLIENT_ID,
        OIDC_RP_CLIENT_SECRET=CLIENT_SECRET,
        OIDC_OP_AUTHORIZATION_ENDPOINT=f"{idp}/o/authorize/",
        OIDC_OP_TOKEN_ENDPOINT=f"{idp}/o/token/",
        OIDC_OP_USER_ENDPOINT=f"{idp}/o/userinfo/",
        OIDC_OP_JWKS_ENDPOINT=f"{idp}/o/.well-known/jwks.json",
        OIDC_OP_LOGOUT_ENDPOINT=f"{idp}/o/logout/",
        OIDC_ISSUER=f"{idp}/o",
        OIDC_RP_SCOPES="openid email profile groups",
        SSO_BUTTON_LABEL=BUTTON,
    )
    web, url = start_web(env)
    provider = start_identity_provider(idp_port, f"{url}/accounts/sso/callback/", f"{url}/accounts/login/")
    yield url, idp
    stop(web)
    stop(provider)
    drop_idp_database()


def test_the_provider_settings_can_be_read_from_its_discovery_document(sso_stack):
    _, idp = sso_stack
    out = StringIO()
    call_command("sso_endpoints", f"{idp}/o", stdout=out)
    lines = out.getvalue().splitlines()
    assert f"OIDC_ISSUER={idp}/o" in lines
    assert f"OIDC_OP_TOKEN_ENDPOINT={idp}/o/token/" in lines
    assert f"OIDC_OP_JWKS_ENDPOINT={idp}/o/.well-known/jwks.json" in lines
    assert f"OIDC_OP_LOGOUT_ENDPOINT={idp}/o/logout/" in lines
    with pytest.raises(CommandError, match=f"Could not read {idp}/.well-known/openid-configuration"):
        call_command("sso_endpoints", idp)


def plan_for_group(name: str, group: str, priority: int, messages: int, catalog) -> None:
    Plan = apps.get_model("quotas", "Plan")
    plan = Plan.objects.create(name=name, priority=priority)
    plan.groups.add(Group.objects.get_or_create(name=group)[0])
    plan.limits.create(model=catalog["o1-mini"], messages=messages, window_kind="anchored", window_length=1, window_unit="day")


def signed_in_at_provider(idp: str, page: Page) -> str:
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies(idp))
    request = urllib.request.Request(f"{idp}/whoami/", headers={"Cookie": cookies})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def test_a_person_signs_in_through_the_provider_gets_their_groups_plan_and_signs_out(sso_stack, browser_page, catalog):
    url, idp = sso_stack
    plan_for_group("Team", "engineering", 1, 42, catalog)
    plan_for_group("Lab", "research", 5, 7, catalog)
    page = browser_page

    page.goto(f"{url}/accounts/login/")
    page.get_by_role("link", name=BUTTON).click()
    expect(page.get_by_role("heading", name="Example identity provider")).to_be_visible()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()

    # The first login made the account, linked to the provider's subject, with the provider's groups.
    User = apps.get_model("auth", "User")
    ada = User.objects.get(username="ada")
    assert (ada.email, ada.has_usable_password()) == ("ada@example.org", False)
    assert ada.sso_identity.issuer == f"{idp}/o"
    assert sorted(ada.groups.values_list("name", flat=True)) == ["engineering", "research"]

    # Of the two group plans, the higher priority one applies, and the page says so.
    page.goto(f"{url}/quota/")
    plan = page.get_by_role("region", name="Your plan")
    expect(plan.get_by_role("heading", name="Lab")).to_be_visible()
    expect(plan).to_contain_text("You are in the group “research”")
    expect(page.get_by_role("row", name="o1-mini")).to_contain_text("7 of 7")

    # Signing out ends our session and, through RP-initiated logout, the provider's.
    assert signed_in_at_provider(idp, page) == "ada"
    page.goto(f"{url}/")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    wait_until(lambda: signed_in_at_provider(idp, page) == "nobody", what="the provider's session to end")
    page.goto(f"{url}/quota/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    # Signing in again finds the same account, not a second one.
    page.get_by_role("link", name=BUTTON).click()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your plan and limits")).to_be_visible()
    assert User.objects.filter(email="ada@example.org").count() == 1

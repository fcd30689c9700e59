"""Accounts as a person meets them: the sign-up policy and invites, password change and
reset by email, the demo accounts, and the settings operators give in the environment."""

import datetime as dt
import os
import re
import subprocess
import sys
import threading

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Invite, SignupPolicy
from tests.helpers import PASSWORD, ROOT

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-pass-456"


def signup_form(username: str = "newbie", **fields) -> dict:
    return {"username": username, "email": "", "password1": PASSWORD, "password2": PASSWORD, "time_zone": "UTC", **fields}


def set_policy(staff_client: Client, mode: str) -> None:
    """As staff would: Admin → Accounts → Sign-up policy."""
    page = staff_client.get("/admin/accounts/signuppolicy/", follow=True)
    assert page.status_code == 200
    response = staff_client.post(page.redirect_chain[-1][0], {"mode": mode})
    assert response.status_code == 302, response.content


def invite_link(staff_client: Client, note: str = "for newbie", expires_at: dt.datetime | None = None) -> str:
    """As staff would: Admin → Accounts → Invites → Add; the link is on the page after saving."""
    expires_at = expires_at or timezone.now() + dt.timedelta(days=7)
    response = staff_client.post(
        "/admin/accounts/invite/add/",
        {"note": note, "expires_at_0": expires_at.strftime("%Y-%m-%d"), "expires_at_1": expires_at.strftime("%H:%M:%S")},
    )
    assert response.status_code == 200, response.content
    link = re.search(r'value="(http://testserver/accounts/signup/\?invite=[^"]+)"', response.content.decode())
    assert link, response.content.decode()
    return link.group(1).replace("http://testserver", "")


# --- The sign-up policy ---------------------------------------------------------------


def test_without_a_staff_choice_the_policy_comes_from_the_environment(settings):
    settings.SIGNUP_POLICY = "closed"
    assert b"Sign-up is closed" in Client().get(reverse("accounts-signup")).content
    settings.SIGNUP_POLICY = "open"
    assert b"Create your account" in Client().get(reverse("accounts-signup")).content


def test_an_open_policy_lets_anyone_sign_up_and_the_login_page_offers_it(staff_client, settings):
    settings.SIGNUP_POLICY = "closed"
    set_policy(staff_client, "open")
    client = Client()
    assert b"Sign up" in client.get(reverse("accounts-login")).content
    response = client.post(reverse("accounts-signup"), signup_form())
    assert response.status_code == 302 and response["Location"] == reverse("chat-home")
    assert User.objects.filter(username="newbie").exists()


def test_a_closed_policy_says_so_and_refuses_a_post_creating_nothing(staff_client):
    set_policy(staff_client, "closed")
    client = Client()
    page = client.get(reverse("accounts-signup"))
    assert page.status_code == 403
    assert b"Sign-up is closed on this server" in page.content and b"password1" not in page.content
    assert b"No account?" not in client.get(reverse("accounts-login")).content

    response = client.post(reverse("accounts-signup"), signup_form())
    assert response.status_code == 403
    assert b"Sign-up is closed" in response.content
    assert not User.objects.filter(username="newbie").exists()


def test_staff_change_the_policy_at_run_time_and_deleting_it_returns_to_the_environment(staff_client, settings):
    settings.SIGNUP_POLICY = "open"
    set_policy(staff_client, "closed")
    assert Client().get(reverse("accounts-signup")).status_code == 403
    set_policy(staff_client, "open")
    assert Client().get(reverse("accounts-signup")).status_code == 200
    assert SignupPolicy.objects.count() == 1

    set_policy(staff_client, "invite")
    response = staff_client.post(f"/admin/accounts/signuppolicy/{SignupPolicy.SINGLE_ID}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Client().get(reverse("accounts-signup")).status_code == 200


def test_only_staff_change_the_policy(make_user):
    client = Client()
    client.force_login(make_user())
    response = client.post("/admin/accounts/signuppolicy/add/", {"mode": "open"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not SignupPolicy.objects.exists()


# --- Invites ----------------------------------------------------------------------------


def test_an_invite_link_creates_one_account_and_staff_see_who_used_it(staff_client, staff_user):
    set_policy(staff_client, "invite")
    link = invite_link(staff_client, note="for Nina")

    client = Client()
    page = client.get(link)
    assert page.status_code == 200 and b"You were invited" in page.content
    response = client.post(link, signup_form("newbie"))
    assert response.status_code == 302
    newbie = User.objects.get(username="newbie")

    listing = staff_client.get("/admin/accounts/invite/?status=used").content.decode()
    assert "Invite for Nina" in listing
    assert '<td class="field-status">used</td>' in listing and '<td class="field-used_by nowrap">newbie</td>' in listing
    assert "Invite for Nina" not in staff_client.get("/admin/accounts/invite/?status=unused").content.decode()
    invite = Invite.objects.get()
    assert (invite.used_by, invite.created_by) == (newbie, staff_user)

    # The same link again, for someone else.
    again = Client().post(link, signup_form("second"))
    assert again.status_code == 403
    assert b"already been used" in again.content
    assert not User.objects.filter(username="second").exists()


def test_without_an_invite_or_with_a_wrong_one_sign_up_is_refused_with_a_reason(staff_client):
    set_policy(staff_client, "invite")
    link = invite_link(staff_client)

    no_invite = Client().post(reverse("accounts-signup"), signup_form("a"))
    assert no_invite.status_code == 403 and b"by invitation only" in no_invite.content

    tampered = link[:-1] + ("B" if link.endswith("A") else "A")
    wrong = Client().post(tampered, signup_form("b"))
    assert wrong.status_code == 403 and b"This invite link is not valid" in wrong.content

    assert Client().get(f"{reverse('accounts-signup')}?invite=").status_code == 403
    assert not User.objects.filter(username__in=["a", "b"]).exists()
    assert Client().get(link).status_code == 200, "the real link still works"


def test_an_expired_invite_is_refused_and_says_when_it_expired(staff_client):
    set_policy(staff_client, "invite")
    link = invite_link(staff_client, expires_at=dt.datetime(2031, 3, 4, 9, 30, tzinfo=dt.UTC))
    with time_machine.travel(dt.datetime(2031, 3, 4, 9, 31, tzinfo=dt.UTC), tick=False):
        response = Client().post(link, signup_form())
    assert response.status_code == 403
    assert b"This invite link expired on Tue 4 Mar 2031 09:30 UTC" in response.content
    assert not User.objects.filter(username="newbie").exists()


def test_invite_tokens_are_long_random_and_not_stored(staff_client):
    links = [invite_link(staff_client, note=f"n{i}") for i in range(3)]
    tokens = [link.split("invite=")[1] for link in links]
    assert len(set(tokens)) == 3 and all(len(t) >= 40 for t in tokens)
    stored = list(Invite.objects.values_list("token_hash", flat=True))
    assert not any(token in value for token in tokens for value in stored)


def test_a_used_invite_cannot_be_deleted_but_an_unused_one_can_be_revoked(staff_client):
    set_policy(staff_client, "invite")
    used, unused = invite_link(staff_client, note="used"), invite_link(staff_client, note="unused")
    assert Client().post(used, signup_form()).status_code == 302
    used_invite, unused_invite = Invite.objects.get(note="used"), Invite.objects.get(note="unused")

    assert staff_client.post(f"/admin/accounts/invite/{used_invite.id}/delete/", {"post": "yes"}).status_code == 403
    assert staff_client.post(f"/admin/accounts/invite/{unused_invite.id}/delete/", {"post": "yes"}).status_code == 302
    assert Client().post(unused, signup_form("other")).status_code == 403
    assert list(Invite.objects.values_list("note", flat=True)) == ["used"]


@pytest.mark.django_db(transaction=True)
def test_two_sign_ups_racing_on_one_invite_create_exactly_one_account(staff_user):
    from accounts.models import Invite
    from accounts.services import SignupRefused, invite_issue, user_signup

    SignupPolicy(mode="invite").save()
    token = invite_issue(invite=Invite(expires_at=timezone.now() + dt.timedelta(days=1)), created_by=staff_user)
    barrier, outcomes = threading.Barrier(8), []

    def racer(n: int) -> None:
        barrier.wait()
        try:
            user_signup(username=f"racer{n}", password=PASSWORD, time_zone="UTC", invite_token=token)
            outcomes.append("created")
        except SignupRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] + ["refused"] * 7
    assert User.objects.filter(username__startswith="racer").count() == 1


# --- Passwords ------------------------------------------------------------------------------


def log_in(username: str, password: str) -> Client:
    client = Client()
    client.post(reverse("accounts-login"), {"username": username, "password": password})
    return client


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_profile_links_to_a_password_change_that_takes_effect(make_user):
    make_user("alice")
    client = log_in("alice", PASSWORD)
    profile = client.get(reverse("accounts-profile")).content.decode()
    assert reverse("accounts-password-change") in profile

    form = client.get(reverse("accounts-password-change"))
    assert b'class="card"' in form.content, "styled like the other account pages"
    wrong = client.post(
        reverse("accounts-password-change"), {"old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert wrong.status_code == 200 and b"old password was entered incorrectly" in wrong.content

    response = client.post(
        reverse("accounts-password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )
    assert b"Password changed" in response.content
    assert logged_in(client), "changing one's password keeps this session"
    assert logged_in(log_in("alice", NEW_PASSWORD)) and not logged_in(log_in("alice", PASSWORD))


def test_password_reset_by_email_end_to_end(make_user):
    make_user("alice", email="alice@example.com")
    client = Client()
    login_page = client.get(reverse("accounts-login")).content.decode()
    assert reverse("accounts-password-reset") in login_page

    response = client.post(reverse("accounts-password-reset"), {"email": "alice@example.com"}, follow=True)
    assert b"Check your email" in response.content
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["alice@example.com"] and "Reset your password" in email.subject and '"alice"' in email.body
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", email.body).group(1)

    form = client.get(link, follow=True)
    assert b"Choose a new password" in form.content
    done = client.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True)
    assert b"Your password is set" in done.content

    assert logged_in(log_in("alice", NEW_PASSWORD)) and not logged_in(log_in("alice", PASSWORD))
    used_again = Client().get(link, follow=True)
    assert b"This link no longer works" in used_again.content


def test_a_reset_for_an_unknown_address_says_the_same_and_sends_nothing(make_user):
    make_user("alice", email="alice@example.com")
    response = Client().post(reverse("accounts-password-reset"), {"email": "mallory@example.com"}, follow=True)
    assert b"Check your email" in response.content
    assert mail.outbox == []


def test_the_email_for_resets_is_given_at_sign_up_or_on_the_profile(settings, make_user):
    settings.SIGNUP_POLICY = "open"
    Client().post(reverse("accounts-signup"), signup_form("newbie", email="newbie@example.com"))
    assert User.objects.get(username="newbie").email == "newbie@example.com"

    make_user("alice")
    client = log_in("alice", PASSWORD)
    client.post(reverse("accounts-profile"), {"time_zone": "Europe/Paris", "email": "alice@example.com"})
    alice = User.objects.get(username="alice")
    assert (alice.email, alice.profile.time_zone) == ("alice@example.com", "Europe/Paris")


# --- Demo accounts --------------------------------------------------------------------------


def test_seed_demo_creates_labelled_demo_accounts_in_demo_mode(settings, capsys):
    settings.DEMO_MODE = True
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "Demo accounts" in out and "demo user  login: demo / " in out and "demo staff login: admin / " in out
    assert User.objects.get(username="admin").is_superuser


def test_seed_demo_refuses_outside_demo_mode_and_creates_nobody(settings):
    settings.DEMO_MODE = False
    with pytest.raises(CommandError, match=r"runs only in demo mode .* createsuperuser"):
        call_command("seed_demo")
    assert not User.objects.filter(username__in=["demo", "admin"]).exists()


def test_demo_mode_is_debug_with_the_simulator_only():
    assert settings_value("s.DEMO_MODE", {}) == "True"
    assert settings_value("s.DEMO_MODE", {"DEBUG": "on"}) == "True"
    assert settings_value("s.DEMO_MODE", {"DEBUG": "FALSE"}) == "False"
    assert settings_value("s.DEMO_MODE", {"OPENAI_API_KEY": "sk-x"}) == "False"


# --- Settings from the environment -----------------------------------------------------------


def clean_env() -> dict[str, str]:
    names = ("DEBUG", "OPENAI_API_KEY", "SIGNUP_POLICY", "EMAIL_", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")
    return {k: v for k, v in os.environ.items() if not k.startswith(names)}


def settings_value(expression: str, env: dict[str, str]) -> str:
    """`expression` evaluated on config.settings (as `s`) in a fresh process with `env`."""
    production = {"SECRET_KEY": "production-secret-key-0123456789-abcdefghij-klmnop"}
    result = subprocess.run(
        [sys.executable, "-c", f"import config.settings as s; print({expression})"],
        cwd=ROOT,
        env={**clean_env(), **production, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_sign_up_defaults_to_invite_only_in_production_and_open_in_demo_mode():
    assert settings_value("s.SIGNUP_POLICY", {"DEBUG": "false"}) == "invite"
    assert settings_value("s.SIGNUP_POLICY", {"DEBUG": "true", "OPENAI_API_KEY": "sk-x"}) == "invite"
    assert settings_value("s.SIGNUP_POLICY", {"DEBUG": "true"}) == "open"
    assert settings_value("s.SIGNUP_POLICY", {"DEBUG": "false", "SIGNUP_POLICY": "closed"}) == "closed"


def test_a_wrong_signup_policy_stops_start_up_with_its_name():
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=ROOT,
        env={**clean_env(), "SIGNUP_POLICY": "public"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "SIGNUP_POLICY must be open, invite or closed" in result.stderr


def test_email_goes_to_the_console_unless_an_smtp_host_is_set():
    assert settings_value("s.EMAIL_BACKEND", {}) == "django.core.mail.backends.console.EmailBackend"
    smtp = {"EMAIL_HOST": "smtp.example.com", "EMAIL_PORT": "2525", "EMAIL_HOST_USER": "chat", "DEFAULT_FROM_EMAIL": "chat@example.com"}
    assert settings_value("s.EMAIL_BACKEND", smtp) == "django.core.mail.backends.smtp.EmailBackend"
    assert settings_value("(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL)", smtp) == (
        "('smtp.example.com', 2525, 'chat', True, 'chat@example.com')"
    )


def test_reset_emails_are_limited_per_mailbox_and_per_address(settings, make_user):
    settings.PASSWORD_RESETS_PER_MAILBOX, settings.PASSWORD_RESETS_PER_ADDRESS = 2, 4
    make_user("bob", email="bob@example.com")
    url = reverse("accounts-password-reset")
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(3):  # the third looks the same to the asker, but bob's inbox gets two
        assert b"Check your email" in client.post(url, {"email": "Bob@example.com"}, follow=True).content
    assert [m.to for m in mail.outbox] == [["bob@example.com"]] * 2

    assert client.post(url, {"email": "carol@example.com"}).status_code == 302  # the address's fourth
    paused = client.post(url, {"email": "bob@example.com"})
    assert paused.status_code == 429 and b"Too many reset requests" in paused.content
    assert Client(REMOTE_ADDR="203.0.113.8").post(url, {"email": "carol@example.com"}).status_code == 302
    assert len(mail.outbox) == 2

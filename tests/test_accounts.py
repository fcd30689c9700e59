"""Accounts as a person meets them: password change and reset by email, and the
settings operators give in the environment."""

import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse

from tests.helpers import PASSWORD, ROOT

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-pass-456"


def signup_form(username: str = "newbie", **fields) -> dict:
    return {"username": username, "email": "", "password1": PASSWORD, "password2": PASSWORD, "time_zone": "UTC", **fields}


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


def test_the_email_for_resets_is_given_at_sign_up_or_on_the_profile(make_user):
    Client().post(reverse("accounts-signup"), signup_form("newbie", email="newbie@example.com"))
    assert User.objects.get(username="newbie").email == "newbie@example.com"

    make_user("alice")
    client = log_in("alice", PASSWORD)
    client.post(reverse("accounts-profile"), {"time_zone": "Europe/Paris", "email": "alice@example.com"})
    alice = User.objects.get(username="alice")
    assert (alice.email, alice.profile.time_zone) == ("alice@example.com", "Europe/Paris")


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


def test_email_goes_to_the_console_unless_an_smtp_host_is_set():
    assert settings_value("s.EMAIL_BACKEND", {}) == "django.core.mail.backends.console.EmailBackend"
    smtp = {"EMAIL_HOST": "smtp.example.com", "EMAIL_PORT": "2525", "EMAIL_HOST_USER": "chat", "DEFAULT_FROM_EMAIL": "chat@example.com"}
    assert settings_value("s.EMAIL_BACKEND", smtp) == "django.core.mail.backends.smtp.EmailBackend"
    assert settings_value("(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL)", smtp) == (
        "('smtp.example.com', 2525, 'chat', True, 'chat@example.com')"
    )

"""Nobody reads or changes what is not theirs; the deployment settings are safe."""

import os
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chat import actions
from chat.models import Message
from tests.helpers import ROOT, handshake, session_cookie

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim_and_intruder(catalog, make_user):
    victim, intruder = make_user(), make_user()
    _, reply = actions.message_send(user=victim, conversation_id=None, model_slug="o1-mini", text="the secret recipe")
    client = Client()
    client.force_login(intruder)
    return reply.conversation, client


def test_every_conversation_route_refuses_another_users_ids(victim_and_intruder):
    conversation, intruder = victim_and_intruder
    routes = [
        ("get", reverse("chat-conversation", args=[conversation.id]), {}),
        ("post", reverse("chat-rename", args=[conversation.id]), {"title": "mine now"}),
        ("post", reverse("chat-delete", args=[conversation.id]), {}),
    ]
    for method, url, data in routes:
        response = getattr(intruder, method)(url, data)
        assert response.status_code in (403, 404), url
        assert b"secret recipe" not in response.content
    conversation.refresh_from_db()
    assert conversation.title == "the secret recipe"
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_search_and_lists_show_only_ones_own_conversations(victim_and_intruder):
    _, intruder = victim_and_intruder
    assert intruder.get(reverse("chat-search"), {"q": "secret"}).json() == {"conversations": []}
    assert b"secret recipe" not in intruder.get(reverse("chat-home")).content


def test_pages_need_a_login(catalog):
    client = Client()
    for name in ("chat-home", "chat-search", "chat-quota"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_forms_need_a_csrf_token(victim_and_intruder):
    conversation, _ = victim_and_intruder
    client = Client(enforce_csrf_checks=True)
    client.force_login(conversation.user)
    response = client.post(reverse("chat-rename", args=[conversation.id]), {"title": "x"})
    assert response.status_code == 403
    assert client.post(reverse("accounts-signup"), {"username": "a"}).status_code == 403


def test_login_is_throttled_after_repeated_failures(catalog, make_user):
    user = make_user()
    client = Client()
    for _ in range(5):
        client.post(reverse("accounts-login"), {"username": user.username, "password": "wrong"})
    response = client.post(reverse("accounts-login"), {"username": user.username, "password": "a-long-pass-123"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_weak_passwords_are_refused_at_sign_up(catalog):
    response = Client().post(
        reverse("accounts-signup"),
        {"username": "newbie", "password1": "12345678", "password2": "12345678", "time_zone": "UTC"},
    )
    assert response.status_code == 200
    assert b"too common" in response.content or b"entirely numeric" in response.content
    assert not User.objects.filter(username="newbie").exists()


def test_pages_carry_a_strict_content_security_policy_and_no_provider_secrets(catalog, make_user, settings):
    settings.OPENAI_API_KEY = "sk-test-should-never-leak"
    settings.OPENAI_BASE_URL = "https://provider.internal.example/v1"
    client = Client()
    client.force_login(make_user())
    response = client.get(reverse("chat-home"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert b"<script>" not in response.content, "no inline script"
    assert b"sk-test" not in response.content and b"provider.internal" not in response.content


def test_deploy_check_is_clean_with_production_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DEBUG="false", SECRET_KEY="production-secret-key-0123456789-abcdefghij-klmnop", ALLOWED_HOSTS="chat.example.com")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_logging_out_elsewhere_closes_the_sessions_socket(catalog, make_user):
    user = make_user()
    cookie = session_cookie(user)

    @async_to_sync
    async def run():
        connected, communicator = await handshake(cookie)
        assert connected
        from channels.db import database_sync_to_async

        @database_sync_to_async
        def log_out_in_another_tab():
            client = Client()
            name, value = cookie.split("=", 1)
            client.cookies[name] = value
            client.post(reverse("accounts-logout"))

        await log_out_in_another_tab()
        return await communicator.receive_output(timeout=5)

    closed = run()
    assert closed == {"type": "websocket.close", "code": 4401}

"""Login throttling as an attacker and a locked-out person meet it: a limit per username and
one per address, addresses taken from the connection (forwarded headers only from trusted
proxies), and a styled lockout page that says how long to wait."""

import datetime as dt
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse

from config import commands
from tests.helpers import PASSWORD, ROOT, free_port, http_ok, stop, subprocess_env, wait_until

pytestmark = pytest.mark.django_db

LOGIN = reverse("accounts-login")
T0 = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)


def log_in(username: str, password: str = "wrong-password", address: str = "10.0.0.1", **headers: str):
    return Client().post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address, **headers)


def locked(response) -> bool:
    return response.status_code == 429 and b"Too many failed log-ins" in response.content


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == reverse("chat-home")


def test_one_username_attacked_from_many_addresses_is_locked_for_everyone(make_user):
    make_user("alice")
    make_user("bob")
    responses = [log_in("alice", address=f"198.51.100.{n}") for n in range(5)]
    assert [r.status_code for r in responses[:4]] == [200] * 4
    assert locked(responses[4])

    assert locked(log_in("alice", PASSWORD, address="192.0.2.50")), "even the right password, from a fresh address"
    assert logged_in(log_in("bob", PASSWORD, address="198.51.100.1")), "the attacker's addresses are not locked for others"


def test_password_spraying_from_one_address_is_locked_after_twenty_usernames(make_user, settings):
    make_user("alice")
    responses = [log_in(f"guess-{n}", address="203.0.113.9") for n in range(settings.LOGIN_FAILURES_PER_ADDRESS)]
    assert all(r.status_code == 200 for r in responses[:-1])
    assert locked(responses[-1])

    assert locked(log_in("alice", PASSWORD, address="203.0.113.9"))
    assert logged_in(log_in("alice", PASSWORD, address="203.0.113.10")), "other addresses are not affected"


def test_rotating_x_forwarded_for_does_not_escape_the_address_limit(make_user, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = 6
    make_user("alice")
    for n in range(settings.LOGIN_FAILURES_PER_ADDRESS):
        log_in(f"guess-{n}", address="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.9.{n}.1", HTTP_X_REAL_IP=f"10.8.{n}.1")
    assert locked(log_in("alice", PASSWORD, address="203.0.113.9", HTTP_X_FORWARDED_FOR="10.7.7.7"))


def test_a_few_typos_before_a_good_login_are_forgiven_but_not_the_addresses_other_failures(make_user, settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = 12
    make_user("alice")
    make_user("mallory")
    for _ in range(4):
        log_in("alice")
    assert logged_in(log_in("alice", PASSWORD))
    assert [log_in("alice").status_code for _ in range(4)] == [200] * 4, "alice's earlier typos were forgiven"

    # A sprayer cannot wipe its address's count by logging in to an account of its own:
    # with alice's last 4 failures, this address is one short of its limit.
    for n in range(settings.LOGIN_FAILURES_PER_ADDRESS - 1 - 4):
        log_in(f"guess-{n}")
    assert logged_in(log_in("mallory", PASSWORD))
    assert locked(log_in("guess-last"))


def test_the_lockout_page_says_how_long_to_wait_and_the_lock_lifts_then(make_user):
    make_user("alice")
    with time_machine.travel(T0, tick=False):
        for n in range(5):
            response = log_in("alice", address=f"198.51.100.{n}")
    assert locked(response)
    assert b"Try again in <strong>15 minutes</strong>, at 12:15 UTC" in response.content
    assert response["Retry-After"] == "900"

    with time_machine.travel(T0 + dt.timedelta(minutes=10, seconds=30), tick=False):
        response = log_in("alice", PASSWORD, address="192.0.2.50")
    assert locked(response)
    assert b"Try again in <strong>5 minutes</strong>, at 12:15 UTC" in response.content

    with time_machine.travel(T0 + dt.timedelta(minutes=15, seconds=1), tick=False):
        assert logged_in(log_in("alice", PASSWORD, address="192.0.2.50"))


def test_the_lockout_page_is_styled_and_offers_a_password_reset(make_user):
    make_user("alice")
    for _ in range(5):
        response = log_in("alice")
    page = response.content.decode()
    assert 'class="page-form"' in page and 'class="card"' in page and "css/app" in page
    assert reverse("accounts-password-reset") in page


def test_a_password_reset_by_email_lifts_the_lock_on_that_username(make_user):
    make_user("alice", email="alice@example.com")
    for _ in range(5):
        log_in("alice")
    assert locked(log_in("alice", PASSWORD))

    client = Client()
    client.post(reverse("accounts-password-reset"), {"email": "alice@example.com"})
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    client.post(form.redirect_chain[-1][0], {"new_password1": "a-brand-new-pass-456", "new_password2": "a-brand-new-pass-456"})

    assert logged_in(log_in("alice", "a-brand-new-pass-456"))


# --- Through the real web server -------------------------------------------------------------


def test_the_web_server_trusts_forwarded_headers_only_from_configured_proxies(monkeypatch):
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    default = commands.web("127.0.0.1", 8000)
    assert "--no-proxy-headers" in default and "--forwarded-allow-ips" not in default

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.5, 10.1.0.0/16")
    trusted = commands.web("127.0.0.1", 8000)
    assert trusted[trusted.index("--forwarded-allow-ips") + 1] == "10.0.0.5, 10.1.0.0/16" and "--proxy-headers" in trusted

    with pytest.raises(ValueError, match="WEB_SERVER=uvicorn"):
        commands.web("127.0.0.1", 8000, "daphne")


@contextmanager
def web_server(simulator_server, queue: str, *, forwarded_allow_ips: str) -> Iterator[httpx.Client]:
    """uvicorn as bin/run starts it, with a limit of 3 failures per address; an HTTP client holding a CSRF cookie."""
    env = subprocess_env(simulator_server, queue, LOGIN_FAILURES_PER_ADDRESS="3")
    port = free_port()
    command = commands.web("127.0.0.1", port, forwarded_allow_ips=forwarded_allow_ips) + ["--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}{LOGIN}"), timeout=30, what="the web server")
        with httpx.Client(base_url=url, timeout=10) as http:
            http.get(LOGIN)
            yield http
    finally:
        stop(proc)


def post_login(http: httpx.Client, username: str, password: str, forwarded_for: str) -> int:
    data = {"username": username, "password": password, "csrfmiddlewaretoken": http.cookies["csrftoken"]}
    return http.post(LOGIN, data=data, headers={"X-Forwarded-For": forwarded_for}).status_code


def test_through_uvicorn_a_client_rotating_x_forwarded_for_stays_locked(transactional_db, make_user, simulator_server, isolated_queue):
    make_user("alice")
    with web_server(simulator_server, isolated_queue, forwarded_allow_ips="") as http:
        statuses = [post_login(http, f"guess-{n}", "wrong", forwarded_for=f"10.9.{n}.1") for n in range(3)]
        assert statuses == [200, 200, 429]
        assert post_login(http, "alice", PASSWORD, forwarded_for="10.7.7.7") == 429


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(transactional_db, make_user, simulator_server, isolated_queue):
    make_user("alice")
    with web_server(simulator_server, isolated_queue, forwarded_allow_ips="127.0.0.1") as http:
        assert [post_login(http, f"guess-{n}", "wrong", forwarded_for="203.0.113.7") for n in range(3)] == [200, 200, 429]
        # The proxy appends the real client; what the client wrote before it is not believed.
        assert post_login(http, "alice", PASSWORD, forwarded_for="203.0.113.8, 203.0.113.7") == 429
        assert post_login(http, "alice", PASSWORD, forwarded_for="203.0.113.8") == 302


# --- In the browser ---------------------------------------------------------------------------


def test_the_lockout_page_in_chromium_is_styled_and_says_how_long_to_wait(live_url, browser_page, make_user, tmp_path: Path):
    make_user("alice")
    page = browser_page
    page.goto(f"{live_url}{LOGIN}")
    for attempt in range(5):
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", f"wrong-{attempt}")
        with page.expect_navigation() as navigation:
            page.click("button[type=submit]")
    assert navigation.value.status == 429
    assert page.locator("h1").inner_text() == "Too many failed log-ins"
    assert "Try again in 15 minutes" in page.locator("main").inner_text()
    card = page.locator("main.card")
    assert card.evaluate("el => getComputedStyle(el).borderRadius") != "0px", "the site's stylesheet applies"
    assert card.bounding_box()["width"] < 600, "a centred card, not unstyled text across the page"
    page.screenshot(path=str(tmp_path / "lockout.png"))

"""Fixtures: real PostgreSQL and Redis, the simulator over real HTTP, a real
Celery worker and ASGI server as subprocesses on the test database, and
Debian's Chromium through Playwright."""

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from generation import provider
from tests.helpers import Simulator, start_simulator, start_web, start_worker, stop, subprocess_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Playwright's sync API runs an event loop in the test thread; our ORM calls there are still sync.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[Simulator]:
    simulator = start_simulator("--think", "0.3", "--rate", "200")
    yield simulator
    stop(simulator.proc)


@pytest.fixture(scope="session", autouse=True)
def close_pools_before_teardown(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Connections left in pools and worker threads would keep the test database from being dropped."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    connection.close_pool()


@pytest.fixture(scope="session", autouse=True)
def isolated_queue() -> str:
    """Our own Celery queue and channel-layer prefix, so a development server or
    another test run on this machine never takes our tasks or sees our events."""
    from config.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = settings.CHANNEL_PREFIX = queue
    return queue


@pytest.fixture
def private_queue(isolated_queue) -> Iterator[str]:
    """A Celery queue of this test's own, so the session's live-stack worker never takes what
    the test enqueues: tests that generate replies in this process leave it unread, others
    start a worker of their own on it."""
    from config.celery import app
    from config.redis import redis_client

    queue = f"{isolated_queue}-private"
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = isolated_queue
    redis_client().delete(queue)


@pytest.fixture
def simulator(simulator_server: Simulator, settings) -> Iterator[Simulator]:
    """The model provider for code in this process is the simulator."""
    settings.OPENAI_BASE_URL = f"{simulator_server.url}/v1"
    settings.OPENAI_READ_TIMEOUT = 5.0
    provider.client_reset()
    simulator_server.clear()
    yield simulator_server
    provider.client_reset()


@pytest.fixture
def catalog(db) -> dict:
    """The seeded models and default plan (a transactional test's flush removes them)."""
    from catalog.models import AIModel
    from quotas.defaults import defaults_seed

    defaults_seed()
    return {m.slug: m for m in AIModel.objects.all()}


@pytest.fixture
def no_live_reply_cap(settings, private_queue) -> None:
    """For tests of counting: nothing answers their replies (their own queue: the session's worker
    would still be generating them while the test's tables are emptied, and deadlock the flush),
    and the cap on replies in flight is tested elsewhere."""
    settings.MAX_LIVE_REPLIES = 1_000


@pytest.fixture
def staff_user(make_user):
    staff = make_user("boss", is_staff=True)
    staff.is_superuser = True
    staff.save()
    return staff


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def make_user(db) -> Callable:
    from accounts.services import user_create

    def make(username: str | None = None, **kwargs):
        return user_create(username=username or f"user-{uuid.uuid4().hex[:8]}", password="a-long-pass-123", **kwargs)

    return make


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker, simulator_server, isolated_queue) -> Iterator[str]:
    """A real ASGI server and Celery worker on the test database; yields the base URL."""
    env = subprocess_env(simulator_server, isolated_queue)
    worker = start_worker(env, isolated_queue)
    web, url = start_web(env)
    yield url
    stop(web)
    stop(worker)


@pytest.fixture
def live_url(live_stack: str, transactional_db, catalog, settings) -> str:
    return live_stack


# Module scope: Playwright's sync API keeps an event loop running in the main
# thread, which async_to_sync in later (non-browser) modules cannot share.
@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make test` installs it with apt"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that drives Chromium is marked `browser`: `pytest -m "not browser"` is the fast subset."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)

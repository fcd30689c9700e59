"""Fixtures: real PostgreSQL and Redis, the simulator over real HTTP, a real
Celery worker and ASGI server as subprocesses on the test database, and
Debian's Chromium through Playwright."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection

from chat import providers
from chat.catalog import catalog_seed
from config import commands

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# Playwright's sync API runs an event loop in the test thread; our ORM calls there are still sync.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def wait_until(condition: Callable[[], object], *, timeout: float = 10.0, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return response.status == 200


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class Simulator:
    def __init__(self, url: str):
        self.url = url

    def requests(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/_sim/requests", timeout=5) as response:
            return json.load(response)

    def clear(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/_sim/requests", method="DELETE"), timeout=5)


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[Simulator]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chat.simulator", "--port", str(port), "--think", "0.3", "--rate", "200"], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _http_ok(f"{url}/_sim/health"), timeout=20, what="the simulator")
    yield Simulator(url)
    _stop(proc)


@pytest.fixture(scope="session", autouse=True)
def close_pools_before_teardown(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Connections left in pools and worker threads would keep the test database from being dropped."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
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
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = queue
    return queue


@pytest.fixture
def private_queue(isolated_queue) -> Iterator[str]:
    """A Celery queue of this test's own, so the session's live-stack worker never takes what
    the test enqueues: tests that generate replies in this process leave it unread, others
    start a worker of their own on it."""
    from chat.limiter import redis_sync
    from config.celery import app

    queue = f"{isolated_queue}-private"
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = isolated_queue
    redis_sync().delete(queue)


@pytest.fixture
def simulator(simulator_server: Simulator, settings) -> Iterator[Simulator]:
    """The model provider for code in this process is the simulator."""
    settings.OPENAI_BASE_URL = f"{simulator_server.url}/v1"
    settings.OPENAI_READ_TIMEOUT = 5.0
    providers._client = None
    simulator_server.clear()
    yield simulator_server
    providers._client = None


@pytest.fixture
def catalog(db) -> dict:
    """The seeded models and default plan (a transactional test's flush removes them)."""
    catalog_seed(apps.get_model("chat", "AIModel"), apps.get_model("chat", "Plan"), apps.get_model("chat", "PlanLimit"))
    AIModel = apps.get_model("chat", "AIModel")
    return {m.slug: m for m in AIModel.objects.all()}


@pytest.fixture
def make_user(db) -> Callable:
    from accounts.services import user_create

    def make(username: str | None = None, **kwargs):
        return user_create(username=username or f"user-{uuid.uuid4().hex[:8]}", password="a-long-pass-123", **kwargs)

    return make


def database_url() -> str:
    """The test database, for subprocesses."""
    db = connection.settings_dict
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or 5432
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def _subprocess_env(simulator: Simulator, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "OPENAI_BASE_URL": f"{simulator.url}/v1",
        "OPENAI_READ_TIMEOUT": "5",
        "CELERY_QUEUE": queue,
        "CHANNEL_PREFIX": queue,
        "DB_APPLICATION_NAME": "chat-live-stack",
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
    }


def start_web(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A uvicorn server; returns it and its base URL once it answers."""
    port = free_port()
    web = subprocess.Popen(
        commands.web("127.0.0.1", port) + ["--log-level", "warning"], cwd=ROOT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _http_ok(f"{url}/accounts/login/"), timeout=30, what="the web server")
    return web, url


def start_worker(env: dict[str, str], queue: str, concurrency: int = 20, **popen) -> subprocess.Popen:
    return subprocess.Popen(commands.worker(concurrency, queue=queue), cwd=ROOT, env=env, **popen)


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker, simulator_server, isolated_queue) -> Iterator[str]:
    """A real ASGI server and Celery worker on the test database; yields the base URL."""
    env = _subprocess_env(simulator_server, isolated_queue)
    worker = start_worker(env, isolated_queue)
    web, url = start_web(env)
    yield url
    _stop(web)
    _stop(worker)


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

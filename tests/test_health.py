"""GET /healthz: what a load balancer or a monitor sees when each part is up or down."""

import json
import signal
import subprocess
import urllib.error
import urllib.request

import pytest
from django.test import Client

from config import commands
from config.health import HEARTBEAT_TTL_SECONDS
from tests.helpers import ROOT, free_port, start_worker, stop, subprocess_env, wait_until

pytestmark = pytest.mark.django_db


def health(client: Client | None = None) -> tuple[int, dict]:
    response = (client or Client()).get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


def failing(body: dict) -> dict[str, str]:
    return {name: check["error"] for name, check in body["checks"].items() if not check["ok"]}


@pytest.fixture
def queue(private_queue: str, settings) -> str:
    """A queue of this test's own: only the workers the test starts consume it."""
    settings.CELERY_TASK_DEFAULT_QUEUE = private_queue
    return private_queue


def test_it_answers_200_with_every_check_when_a_worker_runs(queue, simulator_server):
    worker = start_worker(subprocess_env(simulator_server, queue), queue, concurrency=2)
    try:
        status, body = wait_until(lambda: (result := health())[0] == 200 and result, timeout=60, what="a healthy answer")
    finally:
        stop(worker)
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "broker", "workers"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["workers"]["alive"] == 1
    assert body["checks"]["broker"]["queued"] == 0


def test_it_answers_503_when_no_worker_reports(queue):
    status, body = health()
    assert status == 503
    assert body["status"] == "failing"
    assert failing(body) == {"workers": f"no worker has reported in the last {HEARTBEAT_TTL_SECONDS:g} s"}


def test_a_worker_that_stops_cleanly_is_gone_at_once(queue, simulator_server):
    worker = start_worker(subprocess_env(simulator_server, queue), queue, concurrency=2)
    try:
        wait_until(lambda: health()[0] == 200, timeout=60, what="the worker's heartbeat")
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        # No waiting for the beat to go stale: the worker said goodbye.
        assert health()[0] == 503
    finally:
        stop(worker)


def test_a_killed_worker_drops_out_when_its_heartbeat_goes_stale(queue, simulator_server):
    worker = start_worker(subprocess_env(simulator_server, queue), queue, concurrency=2)
    try:
        wait_until(lambda: health()[0] == 200, timeout=60, what="the worker's heartbeat")
        worker.kill()
        worker.wait(10)
        status, body = wait_until(
            lambda: (result := health())[0] == 503 and result, timeout=HEARTBEAT_TTL_SECONDS + 15, what="the stale heartbeat"
        )
    finally:
        stop(worker)
    assert list(failing(body)) == ["workers"]


def test_an_unreachable_broker_fails_without_showing_its_address_or_password(queue, settings):
    settings.CELERY_BROKER_URL = f"redis://:broker-secret@127.0.0.1:{free_port()}/0"
    status, body = health()
    assert status == 503
    assert failing(body)["broker"] == "ConnectionError"
    text = json.dumps(body)
    assert "broker-secret" not in text and "127.0.0.1" not in text


def test_it_needs_no_login_and_is_not_redirected_to_https(queue, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/accounts/login/").status_code == 301
    assert health()[0] == 503  # answered over plain HTTP, with the check results


@pytest.mark.django_db(transaction=True)
def test_a_web_process_without_its_database_says_so(simulator_server, isolated_queue):
    """A web process that cannot reach PostgreSQL still answers /healthz, promptly, naming the database."""
    env = subprocess_env(
        simulator_server, isolated_queue, DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/chat", DB_POOL_TIMEOUT="1"
    )
    port = free_port()
    web = subprocess.Popen(commands.web("127.0.0.1", port) + ["--log-level", "warning"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)

    def get() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    try:
        status, body = wait_until(get, timeout=30, what="the web server")
    finally:
        stop(web)
    assert status == 503
    assert "database" in failing(body)
    assert body["checks"]["redis"]["ok"]

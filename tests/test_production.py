"""Production mode, started the way operators start it: the release step, then two web processes
and a worker from the Procfile and the systemd units, on one PostgreSQL and Redis, DEBUG off."""

import http.cookiejar
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from websockets.sync.client import connect

from chat.models import Message
from tests.helpers import PASSWORD, ROOT, database_url, free_port, http_ok, receive_until_done, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

UNITS = ROOT / "deploy" / "systemd"
UNIT_PYTHON = "/srv/chat/.venv/bin/python"
LOG_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+"


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))


def unit_command(unit: str, instance: str = "") -> list[str]:
    """The unit's ExecStart as argv, for this checkout: the venv's python, %i filled in."""
    (line,) = [line for line in (UNITS / unit).read_text().splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", instance))
    assert argv[0] == UNIT_PYTHON
    return [sys.executable, *argv[1:]]


class Process:
    def __init__(self, name: str, command: list[str] | str, env: dict[str, str], folder: Path):
        self.log = folder / f"{name}.log"
        with self.log.open("w") as out:
            # Its own session: the shell of a Procfile line and what it runs stop together.
            self.proc = subprocess.Popen(
                command, shell=isinstance(command, str), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def production_env(tmp_path: Path, simulator_server, isolated_queue: str) -> dict[str, str]:
    queue = f"{isolated_queue}-prod"
    env = {
        **os.environ,
        # A Procfile says `python`: the one of the environment it runs in.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        # Plain HTTP on loopback; behind the TLS proxy these stay on.
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": queue,
        "CHANNEL_PREFIX": queue,
        "OPENAI_API_KEY": "sk-production-test",
        "OPENAI_BASE_URL": f"{simulator_server.url}/v1",
        "OPENAI_READ_TIMEOUT": "5",
        "WORKER_CONCURRENCY": "8",
        "LOG_LEVEL": "INFO",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture
def stack(production_env: dict[str, str], tmp_path: Path, catalog) -> Iterator[tuple[str, str, Process]]:
    """Web 1 from the Procfile, web 2 and the worker from the systemd units; yields both URLs and the worker."""
    release = subprocess.run(unit_command("chat-release.service"), cwd=ROOT, env=production_env, capture_output=True, text=True)
    assert release.returncode == 0, release.stderr
    ports = free_port(), free_port()
    processes = [
        Process("web1", procfile()["web"], {**production_env, "PORT": str(ports[0])}, tmp_path),
        Process("web2", unit_command("chat-web@.service", str(ports[1])), production_env, tmp_path),
        Process("worker", unit_command("chat-worker@.service", "1"), production_env, tmp_path),
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url in urls:
            wait_until(lambda url=url: http_ok(f"{url}/accounts/login/"), timeout=60, what=f"the web process at {url}")
        yield urls[0], urls[1], processes[2]
    finally:
        for process in processes:
            process.stop()


def log_in(url: str, username: str) -> tuple[urllib.request.OpenerDirector, str]:
    """Log in through the login form, as a browser does; returns the opener and the session cookie."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = browser.open(f"{url}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}).encode()
    browser.open(urllib.request.Request(f"{url}/accounts/login/", data=data), timeout=10)
    session = {cookie.name: cookie.value for cookie in jar}.get(settings.SESSION_COOKIE_NAME)
    assert session, "not logged in"
    return browser, f"{settings.SESSION_COOKIE_NAME}={session}"


def tab(url: str, cookie: str):
    return connect(url.replace("http", "ws") + "/ws/chat/", additional_headers={"Cookie": cookie, "Origin": url})


def sent(ws, text: str, conversation_id: int | None = None) -> dict:
    ws.send(json.dumps({"type": "send", "conversation_id": conversation_id, "model": "o1-mini", "text": text}))
    while True:
        frame = json.loads(ws.recv(timeout=20))
        assert frame["type"] != "error", frame
        if frame["type"] == "sent":
            return frame


def test_two_web_processes_and_a_worker_serve_one_user_in_production_mode(stack, make_user):
    web1, web2, worker = stack
    user = make_user()
    browser, cookie = log_in(web1, user.username)

    # The page's script is served, under its hashed name, by either web process.
    page = browser.open(f"{web1}/", timeout=10).read().decode()
    script = re.search(r'src="(/static/js/chat/main\.[0-9a-f]{12}\.js)"', page)
    assert script, "the chat page does not load the hashed main.js"
    with urllib.request.urlopen(f"{web2}{script.group(1)}", timeout=10) as response:
        assert response.status == 200
        assert "javascript" in response.headers["Content-Type"]
        assert b"import" in response.read()

    # One tab on each web process; the second follows the conversation the first started.
    with tab(web1, cookie) as first, tab(web2, cookie) as second:
        started = sent(first, "hello [sim:think=0]")
        receive_until_done(first, started["reply"]["id"])
        conversation_id = started["conversation"]["id"]
        second.send(json.dumps({"type": "subscribe", "conversation_id": conversation_id}))
        wait_until(lambda: json.loads(second.recv(timeout=10))["type"] == "snapshot", timeout=20, what="the snapshot")

        # One provider error first, retried: the worker logs it with the reply's id.
        again = "and again [sim:think=0] [sim:tokens=40] [sim:fault=500] [sim:fault_times=1]"
        reply_id = sent(first, again, conversation_id)["reply"]["id"]
        text_in_first, _ = receive_until_done(first, reply_id)
        text_in_second, frames = receive_until_done(second, reply_id)

    stored = Message.objects.get(id=reply_id)
    assert stored.status == "done"
    assert text_in_first == text_in_second == stored.text != ""
    assert any(frame["type"] == "delta" for frame in frames), "the second tab got the answer only at the end"

    # The worker's lines: time, level, logger, reply id.
    log_line = re.compile(rf"^{LOG_LINE} reply={reply_id} ", re.MULTILINE)
    wait_until(lambda: log_line.search(worker.log.read_text()), timeout=10, what=f"a log line about reply {reply_id}")

    # Health, from the second web process: everything up, one worker.
    with urllib.request.urlopen(f"{web2}/healthz", timeout=10) as response:
        health = json.load(response)
    assert health["status"] == "ok" and health["checks"]["workers"]["alive"] == 1

    # Production creates no demo users.
    assert not get_user_model().objects.filter(username__in=["demo", "admin"]).exists()


def test_every_deploy_file_runs_the_same_commands():
    """The Procfile, the systemd units and compose all run `python -m config.commands <process>`."""
    expected = ["python", "-m", "config.commands"]
    assert {name: shlex.split(line)[:4] for name, line in procfile().items()} == {
        name: [*expected, name] for name in ("web", "worker", "beat")
    }
    units = {"web": "chat-web@.service", "worker": "chat-worker@.service", "beat": "chat-beat.service", "release": "chat-release.service"}
    for process, unit in units.items():
        assert unit_command(unit, "1")[1:4] == [*expected[1:], process], unit
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    for process in ("web", "worker", "beat"):
        assert compose[process]["command"] == [*expected, process]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "config.commands", "web"]' in dockerfile


def test_a_web_process_has_the_worker_s_task_module_before_its_first_send():
    """The first send after a deploy enqueues through generation.tasks; imported then, it and the SDK under it
    held the GIL for seconds and every socket of the process stalled. The web application loads it at start."""
    code = "import sys, config.asgi; print('generation.tasks' in sys.modules, 'openai' in sys.modules)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["True", "True"]

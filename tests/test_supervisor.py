"""bin/run (what `make run` starts): a crashed child is restarted while the others keep serving."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from websockets.sync.client import connect

from tests.helpers import ROOT, database_url, free_port, http_ok, receive_until_done, session_cookie, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class Supervisor:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> dict[str, psutil.Process]:
        """bin/run's children by role: "web", "beat", "simulator", "worker 1", "worker 2"."""
        found = {}
        for child in psutil.Process(self.proc.pid).children():
            try:
                command = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                continue
            if "uvicorn" in command:
                found["web"] = child
            elif "simulator" in command:
                found["simulator"] = child
            elif " beat " in command:
                found["beat"] = child
            elif " worker " in command:
                number = command.split(" -n w", 1)[1].split("@", 1)[0]
                found[f"worker {number}"] = child
        return found


@pytest.fixture
def supervisor(tmp_path: Path, isolated_queue: str) -> Iterator[Supervisor]:
    queue = f"{isolated_queue}-run"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "PORT": str(port),
        "SIMULATOR_PORT": str(free_port()),
        "WORKER_PROCESSES": "2",
        "WORKER_CONCURRENCY": "4",
        "CELERY_QUEUE": queue,
        "CHANNEL_PREFIX": queue,
        "DATA_DIR": str(tmp_path),
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):  # bin/run's own simulator answers
        env.pop(name, None)
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "bin/run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    running = Supervisor(proc, url, log)
    try:
        wait_until(lambda: http_ok(f"{url}/accounts/login/"), timeout=120, what="bin/run's web server")
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def answer(url: str, user, text: str) -> str:
    """Send a message as the page does and return the streamed answer."""
    with connect(url.replace("http", "ws") + "/ws/chat/", additional_headers={"Cookie": session_cookie(user), "Origin": url}) as ws:
        ws.send(json.dumps({"type": "send", "conversation_id": None, "model": "o1-mini", "text": text}))
        while True:
            frame = json.loads(ws.recv(timeout=20))
            assert frame["type"] != "error", frame
            if frame["type"] == "sent":
                return receive_until_done(ws, frame["reply"]["id"])[0]


def test_a_killed_worker_is_restarted_while_the_others_keep_serving(supervisor, catalog, make_user):
    before = wait_until(lambda: len(supervisor.children()) == 5 and supervisor.children(), timeout=30, what="all five children")
    killed = before["worker 2"]
    killed.send_signal(signal.SIGKILL)

    # The web server answers and nobody else was stopped or restarted.
    assert http_ok(f"{supervisor.url}/accounts/login/")
    wait_until(lambda: "worker 2 was killed by SIGKILL; restarting it in 1s" in supervisor.output(), what="the restart notice")
    replacement = wait_until(
        lambda: (child := supervisor.children().get("worker 2")) and child.pid != killed.pid and child,
        timeout=30,
        what="a new worker 2",
    )
    after = supervisor.children()
    for name in ("web", "worker 1", "beat", "simulator"):
        assert after[name].pid == before[name].pid, f"{name} was restarted"
    assert supervisor.proc.poll() is None

    # Users are answered as before.
    assert answer(supervisor.url, make_user(), "still there? [sim:think=0]").startswith("You said: still there?")

    # A worker that keeps crashing waits longer each time.
    replacement.send_signal(signal.SIGKILL)
    wait_until(lambda: "worker 2 was killed by SIGKILL; restarting it in 2s" in supervisor.output(), what="a longer back-off")
    wait_until(
        lambda: (child := supervisor.children().get("worker 2")) and child.pid != replacement.pid,
        timeout=30,
        what="a third worker 2",
    )


def test_sigterm_stops_every_child(supervisor):
    children = wait_until(lambda: len(supervisor.children()) == 5 and supervisor.children(), timeout=30, what="all five children")
    descendants = psutil.Process(supervisor.proc.pid).children(recursive=True)
    assert {p.pid for p in children.values()} <= {p.pid for p in descendants}

    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(30) == 0

    def all_gone() -> bool:
        return not [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    wait_until(all_gone, timeout=10, what="every child of bin/run to exit")
    assert "SIGTERM: stopping" in supervisor.output()

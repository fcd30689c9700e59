"""Helpers shared by the tests, the screenshots and the benchmarks: starting the
product's processes, waiting on conditions, sending through the real actions,
and talking to the WebSocket and the browser as a user would."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from config import commands
from live import publish

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-pass-123"


# --- Waiting and processes ---------------------------------------------------------


def wait_until(condition: Callable[[], object], *, timeout: float = 10.0, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; on timeout fail, chained to the last error it raised."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
            last_error = None
        except Exception as exc:
            result, last_error = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last_error
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return response.status == 200


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class Simulator:
    def __init__(self, url: str, proc: subprocess.Popen | None = None):
        self.url = url
        self.proc = proc

    def requests(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/_sim/requests", timeout=5) as response:
            return json.load(response)

    def clear(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/_sim/requests", method="DELETE"), timeout=5)


def start_simulator(*args: str) -> Simulator:
    """The model simulator on a free port, once it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--port", str(port), *args], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/_sim/health"), timeout=20, what="the simulator")
    return Simulator(url, proc)


def database_url() -> str:
    """This process's database (the test database in tests), for subprocesses."""
    db = connection.settings_dict
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or 5432
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def subprocess_env(simulator: Simulator, queue: str, **extra: str) -> dict[str, str]:
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
        **extra,
    }


def start_web(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A uvicorn server; returns it and its base URL once it answers."""
    port = free_port()
    web = subprocess.Popen(commands.web("127.0.0.1", port) + ["--log-level", "warning"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/accounts/login/"), timeout=30, what="the web server")
    return web, url


def start_worker(env: dict[str, str], queue: str, concurrency: int = 20, **popen) -> subprocess.Popen:
    return subprocess.Popen(commands.worker(concurrency, queue=queue), cwd=ROOT, env=env, **popen)


# --- Through the real actions --------------------------------------------------------


def send(user, model: str = "o1-mini", text: str = "hello", conversation_id: int | None = None):
    """The reply of a message sent as the user would (quota reserved, nothing generated yet)."""
    from chat.actions import message_send

    return message_send(user=user, conversation_id=conversation_id, model_slug=model, text=text)[1]


def refused(user, model: str = "o1-mini"):
    """The refusal of a send that the quota must refuse."""
    from chat.actions import ActionRefused

    with pytest.raises(ActionRefused) as exc:
        send(user, model)
    assert exc.value.code == "quota_exhausted"
    return exc.value


def quota_state(reply) -> str:
    """reserved, settled or refunded; "none" when the reply was never counted."""
    from quotas.models import Reservation

    return Reservation.objects.filter(reply_id=reply.id).values_list("state", flat=True).first() or "none"


# --- Live events ---------------------------------------------------------------------


class ConversationListener:
    """Receives the frames every tab showing a conversation gets, through the hub as a socket does.

    The hub belongs to one event loop, so the listener's runs in a thread of its own
    for as long as the test lasts.
    """

    def __init__(self, conversation_id: int):
        from live.hub import hub

        self.conversation_id = conversation_id
        self.received: list[dict] = []
        self.marker_seen = threading.Event()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def join() -> None:
            await hub().join(conversation_id, self)

        asyncio.run_coroutine_threadsafe(join(), self.loop).result(timeout=5)

    def push(self, text: str) -> None:
        frame = json.loads(text)
        if frame["type"] == "test.marker":
            self.marker_seen.set()
        else:
            self.received.append(frame)

    def reconnected(self) -> None:
        pass

    def frames(self) -> list[dict]:
        """Everything sent to the conversation so far: a marker published after it comes last."""
        publish.frame_send(self.conversation_id, {"type": "test.marker"})
        assert self.marker_seen.wait(5)
        return list(self.received)


# --- Generating in this process ---------------------------------------------------


def generate(reply):
    """Generate the reply in this process, as a worker would, and return it as stored."""
    from generation import reply as generation

    generation.reply_generate(message_id=reply.id)
    reply.refresh_from_db()
    return reply


class Generating:
    """A generation in a thread, as a worker runs it, so that the test can act while it runs."""

    def __init__(self, reply):
        self.reply = reply
        self.thread = threading.Thread(target=self._run, args=(reply.id,))
        self.thread.start()

    @staticmethod
    def _run(reply_id: int) -> None:
        from django.db import connections

        from generation import reply as generation

        try:
            generation.reply_generate(message_id=reply_id)
        finally:
            connections.close_all()  # a thread's connection goes back to the pool only when closed

    def ended(self):
        """The stored reply once the worker is done with it (None while it runs)."""
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the generation did not end"
        from chat.models import Message

        return Message.objects.filter(id=self.reply.id).first()


def requested(simulator, n: int = 1) -> list[dict]:
    return wait_until(lambda: len(simulator.requests()) >= n and simulator.requests(), timeout=15, what=f"{n} request(s)")


# --- The WebSocket, as a browser speaks it ------------------------------------------


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def headers(cookie: str | None, origin: str | None = "http://localhost") -> list[tuple[bytes, bytes]]:
    result = [(b"host", b"localhost")]
    if origin:
        result.append((b"origin", origin.encode()))
    if cookie:
        result.append((b"cookie", cookie.encode()))
    return result


async def handshake(cookie: str | None, origin: str | None = "http://localhost"):
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers(cookie, origin))
    connected, _ = await communicator.connect()
    return connected, communicator


def receive_until_done(ws, reply_id: int) -> tuple[str, list[dict]]:
    """Assemble the answer from deltas by offset, as the browser does."""
    text, frames = "", []
    while True:
        frame = json.loads(ws.recv(timeout=20))
        frames.append(frame)
        if frame["type"] == "delta" and frame["message_id"] == reply_id:
            assert frame["offset"] <= len(text), "a gap in the stream"
            text += frame["text"][len(text) - frame["offset"] :]
        if frame["type"] == "done" and frame["message"]["id"] == reply_id:
            return text, frames


# --- The browser ------------------------------------------------------------------------


def log_in(page, live_url: str, username: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()


def type_and_send(page, text: str) -> None:
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")


def last_answer(page):
    return page.locator("article.msg-assistant").last

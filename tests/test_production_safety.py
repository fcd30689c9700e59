"""What a team needs before Monday: installations kept apart, quotas that fail closed, history
staff cannot rewrite, sockets that end with the account, and the Origin checked to the port."""

import json
import urllib.request

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import connection
from websockets.sync.client import connect

from chat import actions
from chat.models import Conversation, Message
from quotas.models import Plan, PlanLimit, QuotaOverride
from tests.helpers import handshake, quota_state, session_cookie, start_web, stop, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


# --- Two installations on one Redis ----------------------------------------------------------------


def test_two_installations_on_one_redis_do_not_see_each_others_live_events(simulator_server, isolated_queue, catalog, make_user, settings):
    """Same Redis server, different database numbers, no CHANNEL_PREFIX set: pub/sub ignores the
    database number, so only the derived prefix keeps the installations apart."""
    stacks = []
    for db_number in (0, 5):
        env = subprocess_env(simulator_server, isolated_queue, REDIS_URL=f"{settings.REDIS_URL.rsplit('/', 1)[0]}/{db_number}")
        del env["CHANNEL_PREFIX"]
        env["CELERY_QUEUE"] = f"{isolated_queue}-unread"  # no worker: nothing generates past this test
        stacks.append(start_web(env))
    try:
        (_, url_a), (_, url_b) = stacks
        user = make_user()  # one database here, so one user and session work on both
        headers = {"Cookie": session_cookie(user)}
        with (
            connect(url_a.replace("http", "ws") + "/ws/chat/", additional_headers={**headers, "Origin": url_a}) as a,
            connect(url_b.replace("http", "ws") + "/ws/chat/", additional_headers={**headers, "Origin": url_b}) as b,
        ):
            a.send(json.dumps({"type": "send", "conversation_id": None, "model": "o1-mini", "text": "mine", "client_id": "c1"}))
            seen_a = []
            while "conversation" not in seen_a or "quota" not in seen_a:
                seen_a.append(json.loads(a.recv(timeout=10))["type"])
            conversation_id = Conversation.objects.get(user=user).id
            b.send(json.dumps({"type": "subscribe", "conversation_id": conversation_id}))  # B shows the same chat
            assert json.loads(b.recv(timeout=10))["type"] == "snapshot"
            a.send(json.dumps({"type": "send", "conversation_id": conversation_id, "model": "o1-mini", "text": "again", "client_id": "c2"}))
            seen_a = []
            while "messages" not in seen_a:  # the chat's own frame, to every tab showing it on A
                seen_a.append(json.loads(a.recv(timeout=10))["type"])
            for _ in range(2):  # two round trips on B after A got its events: anything crossing has arrived
                b.send(json.dumps({"type": "ping"}))
            seen_b = [json.loads(b.recv(timeout=10))["type"] for _ in range(2)]
        assert seen_b == ["pong", "pong"], "installation B saw A's events"
    finally:
        for web, _ in stacks:
            stop(web)


# --- Quotas fail closed ---------------------------------------------------------------------------


def test_the_default_plan_cannot_be_deleted(catalog, staff_client):
    default = Plan.objects.get(is_default=True)

    response = staff_client.post(f"/admin/quotas/plan/{default.id}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert Plan.objects.filter(id=default.id, is_default=True).exists()
    changelist = staff_client.post("/admin/quotas/plan/", {"action": "delete_selected", "_selected_action": [default.id], "post": "yes"})
    assert changelist.status_code in (200, 302, 403)
    assert Plan.objects.filter(id=default.id).exists()


def test_the_default_plan_is_never_left_without_one(catalog, staff_client):
    default = Plan.objects.get(is_default=True)
    data = {
        "name": default.name,
        "description": "",
        "calendar_time_zone": "UTC",
        "limits-TOTAL_FORMS": "0",
        "limits-INITIAL_FORMS": "0",
        "limits-MIN_NUM_FORMS": "0",
        "limits-MAX_NUM_FORMS": "1000",
        "budget-TOTAL_FORMS": "0",
        "budget-INITIAL_FORMS": "0",
        "budget-MIN_NUM_FORMS": "0",
        "budget-MAX_NUM_FORMS": "1",
    }
    response = staff_client.post(f"/admin/quotas/plan/{default.id}/change/", data)  # "default" unticked
    assert response.status_code == 200 and "make another plan the default" in response.content.decode()

    team = Plan.objects.create(name="Team")
    data.update(name="Team", is_default="on")
    assert staff_client.post(f"/admin/quotas/plan/{team.id}/change/", data).status_code == 302
    assert list(Plan.objects.filter(is_default=True).values_list("name", flat=True)) == ["Team"]


def test_a_model_with_no_rule_for_the_user_is_refused_not_unlimited(catalog, make_user):
    user = make_user()
    PlanLimit.objects.filter(model=catalog["o1-preview"]).delete()

    with pytest.raises(actions.ActionRefused) as refused:
        actions.message_send(user=user, conversation_id=None, model_slug="o1-preview", text="hi")

    assert refused.value.code == "quota_exhausted"
    assert "not available on your plan" in str(refused.value)
    assert not Conversation.objects.filter(user=user).exists()


def test_unlimited_is_only_an_explicit_choice(catalog, make_user, staff_client, no_live_reply_cap):
    user = make_user()
    blank = {
        "user": user.id,
        "model": catalog["o1-mini"].id,
        "messages": "",
        "window_kind": "anchored",
        "window_length": 1,
        "window_unit": "day",
    }
    response = staff_client.post("/admin/quotas/quotaoverride/add/", blank)
    assert response.status_code == 200 and "a blank number is not unlimited" in response.content.decode()
    assert not QuotaOverride.objects.exists()

    assert staff_client.post("/admin/quotas/quotaoverride/add/", {**blank, "unlimited": "on"}).status_code == 302
    for _ in range(60):  # past the plan's 50 a day
        actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="hi")


# --- History staff cannot rewrite ---------------------------------------------------------------------


def test_staff_cannot_change_an_answer_and_a_delete_refunds_through_the_service(catalog, make_user, staff_client, monkeypatch):
    monkeypatch.setattr(actions, "_enqueue", lambda reply: None)  # nothing generates the reply: it stays pending
    user = make_user()
    _, reply = actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="hello")

    page = staff_client.get(f"/admin/chat/message/{reply.id}/change/")
    assert page.status_code == 200 and b'name="text"' not in page.content  # shown, not editable
    forged = staff_client.post(f"/admin/chat/message/{reply.id}/change/", {"text": "forged", "status": "done"})
    assert forged.status_code == 403
    assert Message.objects.get(id=reply.id).text == ""

    response = staff_client.post(
        "/admin/chat/conversation/",
        {"action": "delete_through_the_service", "_selected_action": [reply.conversation_id]},
    )
    assert response.status_code == 302
    assert not Conversation.objects.filter(id=reply.conversation_id).exists()
    assert quota_state(reply) == "refunded"


# --- Sockets end with the account ---------------------------------------------------------------------


@pytest.mark.parametrize("change", ["deactivate", "password"])
def test_a_deactivated_user_or_a_changed_password_ends_open_sockets_and_their_sends(catalog, make_user, change):
    user = make_user()
    cookie = session_cookie(user)

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        await communicator.send_json_to({"type": "ping"})
        assert (await communicator.receive_json_from())["type"] == "pong"
        await _change(user, change)
        closed = await communicator.receive_output(timeout=10)
        await communicator.send_json_to({"type": "send", "conversation_id": None, "model": "o1-mini", "text": "still?"})
        return closed

    closed = run()
    assert closed == {"type": "websocket.close", "code": 4401, "reason": None} or closed.get("code") == 4401
    assert not Conversation.objects.filter(user=user).exists()


async def _change(user, change: str) -> None:
    from channels.db import database_sync_to_async

    def apply() -> None:
        fresh = get_user_model().objects.get(id=user.id)
        if change == "deactivate":
            fresh.is_active = False
        else:
            fresh.set_password("a-new-long-pass-456")
        fresh.save()

    await database_sync_to_async(apply)()


def test_a_send_from_a_socket_opened_before_a_password_change_is_refused(catalog, make_user):
    user = make_user()
    fresh = get_user_model().objects.get(id=user.id)
    fresh.set_password("a-new-long-pass-456")
    fresh.save()

    with pytest.raises(actions.ActionRefused) as refused:
        actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="hi")  # the old hash
    assert refused.value.code == "signed_out"
    assert not Conversation.objects.filter(user=user).exists()


# --- The Origin, to the port -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin, host, accepted",
    [
        ("http://localhost:8000", "localhost:8000", True),
        ("http://localhost:9999", "localhost:8000", False),
        ("https://localhost:8000", "localhost:8000", False),
        ("http://evil.example", "localhost:8000", False),
        ("null", "localhost:8000", False),
    ],
)
def test_the_websocket_origin_must_be_the_site_itself(catalog, make_user, origin, host, accepted):
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        headers = [(b"host", host.encode()), (b"origin", origin.encode()), (b"cookie", cookie.encode())]
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert run() is accepted


# --- A flood closes cleanly ------------------------------------------------------------------------------


def test_nothing_is_sent_after_a_flood_closes_the_socket(catalog, make_user):
    cookie = session_cookie(make_user())  # outside the event loop's thread: its connection is never returned

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        for _ in range(40):
            await communicator.send_json_to({"type": "quota"})
        outputs = []
        while True:
            output = await communicator.receive_output(timeout=10)
            outputs.append(output)
            if output["type"] == "websocket.close":
                break
        after = await communicator.receive_nothing(timeout=1)
        return outputs, after

    outputs, nothing_after = run()
    assert outputs[-1]["code"] == 4429
    assert nothing_after, "frames were sent after the close"


# --- PostgreSQL connections reset --------------------------------------------------------------------------


def test_after_the_database_drops_its_connections_the_next_page_and_socket_are_served(simulator_server, isolated_queue, catalog, make_user):
    """On a web server of its own: resetting the shared live stack's connections would affect later tests."""
    env = subprocess_env(simulator_server, isolated_queue, DB_APPLICATION_NAME="chat-reset-test")
    env["CELERY_QUEUE"] = f"{isolated_queue}-unread"
    web, url = start_web(env)
    try:
        user = make_user()
        cookie = {"Cookie": session_cookie(user)}

        def page() -> int:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/", headers=cookie), timeout=30) as response:
                return response.status

        def socket_answers() -> bool:
            with connect(url.replace("http", "ws") + "/ws/chat/", additional_headers={**cookie, "Origin": url}) as ws:
                ws.send(json.dumps({"type": "ping"}))
                return json.loads(ws.recv(timeout=20))["type"] == "pong"

        assert page() == 200 and socket_answers()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'chat-reset-test' AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] > 0, "the web server's pooled connections were reset"
        assert page() == 200
        assert socket_answers()
    finally:
        stop(web)

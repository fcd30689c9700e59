"""The OpenAI-compatible API, driven by the official `openai` SDK over real HTTP against the
live stack (web server, Celery worker, simulator): keys, models, completions streamed or not,
the same quotas as the chat page, OpenAI-shaped refusals, and a race with the chat's socket."""

import datetime as dt
import hashlib
import json

import httpx2 as httpx
import openai
import pytest
from django.test import Client
from django.utils import timezone

from api.models import ApiKey
from api.services import api_key_create, api_key_revoke
from chat.models import Conversation, Message
from chat.selectors import conversation_list
from quotas.models import Plan, QuotaCounter, QuotaOverride
from quotas.selectors import quota_json
from tests.helpers import quota_state, session_cookie, wait_until


def api_access(on: bool = True) -> None:
    Plan.objects.filter(is_default=True).update(api_access=on)


@pytest.fixture
def api_user(live_url, make_user):
    api_access(True)
    return make_user()


def client_for(live_url: str, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key=token, max_retries=0, timeout=30)


def sdk(live_url: str, user) -> openai.OpenAI:
    _, token = api_key_create(user=user, name="tests")
    return client_for(live_url, token)


def left(user, model: str) -> int:
    return next(m for m in quota_json(user) if m["model"] == model)["left"]


# --- Keys -------------------------------------------------------------------------------


def test_a_key_made_on_the_keys_page_is_shown_once_and_stored_only_as_its_hash(catalog, make_user):
    api_access(True)
    user = make_user()
    browser = Client()
    browser.force_login(user)

    page = browser.post("/accounts/api-keys/", {"name": "laptop scripts"}).content.decode()
    key = ApiKey.objects.get(user=user)
    token = page.split('<code class="key-secret">')[1].split("</code>")[0]
    assert token.startswith("sk-chat-") and len(token) > 40
    assert key.name == "laptop scripts" and key.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(list(ApiKey.objects.values()), default=str)
    again = browser.get("/accounts/api-keys/").content.decode()
    assert token not in again and "laptop scripts" in again and key.prefix in again

    browser.post(f"/accounts/api-keys/{key.id}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_a_user_cannot_revoke_another_users_key_nor_make_one_without_api_access(catalog, make_user):
    api_access(True)
    owner, other = make_user(), make_user()
    key, _ = api_key_create(user=owner, name="mine")
    browser = Client()
    browser.force_login(other)
    assert browser.post(f"/accounts/api-keys/{key.id}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None

    api_access(False)
    page = browser.post("/accounts/api-keys/", {"name": "nope"}).content.decode()
    assert "does not include API access" in page
    assert not ApiKey.objects.filter(user=other).exists()


def test_staff_see_every_key_and_revoke_them_in_the_admin(catalog, make_user, staff_client):
    api_access(True)
    key, _ = api_key_create(user=make_user("carol"), name="ci runner")
    listing = staff_client.get("/admin/api/apikey/").content.decode()
    assert "ci runner" in listing and "carol" in listing
    staff_client.post("/admin/api/apikey/", {"action": "revoke", "_selected_action": [key.id]})
    key.refresh_from_db()
    assert key.revoked_at is not None


# --- Models and completions ------------------------------------------------------------------


def test_the_sdk_lists_the_models_on_the_users_plan_only(api_user, live_url, catalog):
    models = sorted(m.id for m in sdk(live_url, api_user).models.list())
    assert models == ["gpt-4o", "o1-mini", "o1-preview"]  # o3 and o4-mini are in the catalog, disabled


def test_a_completion_answers_with_usage_counts_once_and_is_a_conversation_in_the_sidebar(api_user, live_url):
    before = left(api_user, "o1-mini")
    key = ApiKey.objects.filter(user=api_user)
    client = sdk(live_url, api_user)

    answer = client.chat.completions.create(model="o1-mini", messages=[{"role": "user", "content": "Plan a picnic [sim:tokens=30]"}])

    assert answer.choices[0].message.content.startswith("You said: Plan a picnic")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.completion_tokens > 0 and answer.usage.completion_tokens_details.reasoning_tokens > 0
    reply = Message.objects.get(conversation__user=api_user, role="assistant")
    assert reply.text == answer.choices[0].message.content and quota_state(reply) == "settled"
    assert left(api_user, "o1-mini") == before - 1  # the chat page's picker shows it
    assert [c.title for c in conversation_list(user=api_user)] == ["Plan a picnic [sim:tokens=30]"]
    assert key.get().last_used_at is not None


def test_a_streamed_completion_arrives_in_pieces_that_make_the_stored_answer(api_user, live_url):
    stream = sdk(live_url, api_user).chat.completions.create(
        model="o1-mini",
        messages=[{"role": "user", "content": "Stream it [sim:tokens=80]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3, "the answer arrived as it was written"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    reply = Message.objects.get(conversation__user=api_user, role="assistant")
    assert "".join(pieces) == reply.text
    assert usage.completion_tokens == reply.completion_tokens and usage.completion_tokens_details.reasoning_tokens > 0
    assert quota_state(reply) == "settled"


def test_earlier_turns_reach_the_model_and_the_conversation_as_they_were_said(api_user, live_url, simulator_server):
    simulator_server.clear()
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Apple."},
        {"role": "user", "content": [{"type": "text", "text": "Another one?"}]},
    ]
    sdk(live_url, api_user).chat.completions.create(model="o1-mini", messages=messages)

    sent = simulator_server.requests()[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "Answer briefly.\n\nName a fruit."),
        ("assistant", "Apple."),
        ("user", "Another one?"),
    ]
    conversation = Conversation.objects.get(user=api_user)
    stored = [(m.role, m.text) for m in conversation.messages.all()]
    assert stored[:3] == [("user", "Answer briefly.\n\nName a fruit."), ("assistant", "Apple."), ("user", "Another one?")]
    assert conversation.title == "Answer briefly. Name a fruit."


def test_a_client_that_goes_away_mid_answer_stops_it(api_user, live_url):
    stream = sdk(live_url, api_user).chat.completions.create(
        model="o1-mini", messages=[{"role": "user", "content": "A long one [sim:think=0] [sim:tokens=4000] [sim:rate=40]"}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()

    reply = Message.objects.get(conversation__user=api_user, role="assistant")
    wait_until(lambda: quota_state(reply) != "reserved", what="the worker to end the reply")
    reply.refresh_from_db()
    assert reply.status == "stopped" and reply.text
    assert quota_state(reply) == "settled"  # text came: it counts, as with the Stop button


# --- Refusals ----------------------------------------------------------------------------------


def test_an_exhausted_quota_is_a_429_with_retry_after_at_the_reset_and_stores_nothing(api_user, live_url, catalog):
    QuotaOverride.objects.create(user=api_user, model=catalog["o1-preview"], messages=1, window_kind="anchored", window_length=7)
    client = sdk(live_url, api_user)
    client.chat.completions.create(model="o1-preview", messages=[{"role": "user", "content": "one"}])
    resets = QuotaCounter.objects.get(user=api_user, model=catalog["o1-preview"]).window_end

    asked = timezone.now()
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="o1-preview", messages=[{"role": "user", "content": "two"}])
    answered = timezone.now()

    assert refused.value.code == "quota_exhausted" and "o1-preview limit reached" in refused.value.message
    retry_after = dt.timedelta(seconds=int(refused.value.response.headers["retry-after"]))
    assert resets - answered <= retry_after <= resets - asked + dt.timedelta(seconds=1)
    assert Conversation.objects.filter(user=api_user).count() == 1


def test_a_bad_or_revoked_key_is_a_401_and_a_session_cookie_is_not_a_key(api_user, live_url):
    with pytest.raises(openai.AuthenticationError) as refused:
        client_for(live_url, "sk-chat-not-a-key").models.list()
    assert refused.value.code == "invalid_api_key"

    key, token = api_key_create(user=api_user, name="soon revoked")
    client_for(live_url, token).models.list()
    api_key_revoke(key=key)
    with pytest.raises(openai.AuthenticationError):
        client_for(live_url, token).chat.completions.create(model="o1-mini", messages=[{"role": "user", "content": "hi"}])

    signed_in = httpx.get(f"{live_url}/v1/models", headers={"Cookie": session_cookie(api_user)})
    assert signed_in.status_code == 401
    assert not Message.objects.filter(conversation__user=api_user).exists()


def test_a_plan_without_api_access_is_a_403_even_for_a_key_made_before(api_user, live_url):
    client = sdk(live_url, api_user)
    api_access(False)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="o1-mini", messages=[{"role": "user", "content": "hi"}])
    assert "does not include API access" in refused.value.message
    assert not Message.objects.filter(conversation__user=api_user).exists()


def test_an_unknown_model_or_one_not_on_the_plan_is_a_404(api_user, live_url, catalog):
    client = sdk(live_url, api_user)
    for model in ("gpt-9", "o3"):  # o3 is in the catalog but disabled
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert refused.value.code == "model_not_found"
    QuotaOverride.objects.create(user=api_user, model=catalog["gpt-4o"], disabled=True)
    with pytest.raises(openai.NotFoundError, match="not available on your plan"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert not Message.objects.filter(conversation__user=api_user).exists()


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}],
        [{"role": "tool", "content": "42", "tool_call_id": "x"}, {"role": "user", "content": "hi"}],
        [{"role": "user", "content": "   "}],
        [{"role": "user", "content": "x" * 100_001}],
    ],
    ids=["no messages", "ends with the assistant", "an image", "a tool turn", "blank", "too long"],
)
def test_bad_input_is_a_400_that_says_what_is_wrong_and_stores_nothing(api_user, live_url, messages):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_url, api_user).chat.completions.create(model="o1-mini", messages=messages)
    assert refused.value.message
    assert not Message.objects.filter(conversation__user=api_user).exists()


def test_a_body_that_is_not_json_is_a_400(api_user, live_url):
    _, token = api_key_create(user=api_user, name="raw")
    answer = httpx.post(f"{live_url}/v1/chat/completions", content=b"{nope", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 400 and answer.json()["error"]["message"] == "The body is not valid JSON."


# --- The last slot, raced from the API and the chat's socket -----------------------------------


def test_api_and_websocket_sends_racing_from_several_processes_for_the_last_slot_admit_exactly_one(
    api_user, live_url, catalog, simulator_server, isolated_queue
):
    import multiprocessing

    from tests.helpers import start_web, stop, subprocess_env
    from tests.racers import race_api_and_socket

    # Two web servers, four client processes, each firing three API and three socket sends at once.
    second, second_url = start_web(subprocess_env(simulator_server, isolated_queue, DB_POOL_MAX="6"))
    ctx = multiprocessing.get_context("spawn")
    processes, per_process = 4, 6
    tasks, results, start = ctx.Queue(), ctx.Queue(), ctx.Barrier(processes)
    racers = [ctx.Process(target=race_api_and_socket, args=(tasks, results, start)) for _ in range(processes)]
    for p in racers:
        p.start()
    try:
        for used in (0, 1):
            user = api_user if used == 0 else _another_api_user()
            limit = QuotaOverride.objects.create(user=user, model=catalog["o1-preview"], messages=used + 1, window_kind="anchored")
            _, token = api_key_create(user=user, name="race")
            if used:
                client_for(live_url, token).chat.completions.create(model="o1-preview", messages=[{"role": "user", "content": "first"}])
            cookie = session_cookie(user)
            for i in range(processes):
                tasks.put(([live_url, second_url][i % 2], token, cookie, "o1-preview", per_process))
            outcomes = [o for _ in range(processes) for o in results.get(timeout=120)]

            assert len(outcomes) == processes * per_process
            assert sorted(set(outcomes)) == ["admitted", "quota_exhausted"]
            assert outcomes.count("admitted") == 1
            assert QuotaCounter.objects.get(user=user, model=limit.model).used == used + 1
            assert Message.objects.filter(conversation__user=user, role="assistant").count() == used + 1
    finally:
        for _ in racers:
            tasks.put(None)
        for p in racers:
            p.join(30)
        stop(second)


def _another_api_user():
    from accounts.services import user_create

    return user_create(username="racer-two", password="a-long-pass-123")

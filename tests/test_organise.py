"""Organising and sharing conversations (issue 14): export as Markdown and JSON, import,
read-only share links, pin and archive, over HTTP with the real views; and two small
things of sign-in and sign-up."""

import json

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from quotas.selectors import quota_json
from tests.helpers import send

EMAIL = "ada@example.com"


def conversation_with_answer(user, catalog, *, title="Circle areas", thinking_ms=14_200):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    model = catalog["o1-preview"]
    conversation = Conversation.objects.create(user=user, title=title, model=model)
    asked = Message.objects.create(conversation=conversation, role="user", model=model, text="What is the area of a circle?")
    Message.objects.create(
        parent=asked,
        conversation=conversation,
        role="assistant",
        model=model,
        text="It is $\\pi r^2$.\n\n```python\narea = math.pi * r ** 2\n```",
        reasoning="Recall the formula.",
        thinking_ms=thinking_ms,
        prompt_tokens=12,
        completion_tokens=340,
        reasoning_tokens=300,
        status="done",
        finish_reason="stop",
    )
    return conversation


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(content: bytes | str, name: str = "chat.json") -> dict:
    return {"file": SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content, "application/json")}


def conversations_of(user) -> int:
    return apps.get_model("chat", "Conversation").objects.filter(user=user).count()


# --- Export -------------------------------------------------------------------------------


def test_a_chat_exports_as_markdown_with_who_said_what_and_how_long_the_model_thought(make_user, catalog):
    user = make_user(email=EMAIL)
    conversation = conversation_with_answer(user, catalog)
    response = client_for(user).get(reverse("chat-export-markdown", args=[conversation.id]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="Circle-areas.md"'
    body = response.content.decode()
    assert body.startswith("# Circle areas\n")
    assert "## You\n\nWhat is the area of a circle?" in body
    assert "## o1-preview\n\n> **Thought for 14 seconds**\n>\n> Recall the formula." in body
    assert "It is $\\pi r^2$.\n\n```python\narea = math.pi * r ** 2\n```" in body
    assert user.username not in body and EMAIL not in body


def test_a_chat_exports_as_json_that_imports_back_as_a_new_chat_of_the_importer(make_user, catalog):
    owner, friend = make_user(), make_user()
    conversation = conversation_with_answer(owner, catalog)
    exported = client_for(owner).get(reverse("chat-export-json", args=[conversation.id]))
    assert exported["Content-Disposition"] == 'attachment; filename="Circle-areas.json"'
    data = json.loads(exported.content)
    assert data["format"] == "chat-conversation" and data["version"] == 1
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["thought"] == "Thought for 14 seconds"
    assert data["messages"][1]["thinking_ms"] == 14_200

    response = client_for(friend).post(reverse("chat-import"), upload(exported.content))

    assert response.status_code == 201
    imported = apps.get_model("chat", "Conversation").objects.get(id=response.json()["conversation"]["id"])
    assert imported.user == friend and imported.id != conversation.id
    assert imported.title == "Circle areas"
    answer = imported.messages.get(role="assistant")
    assert (answer.text, answer.reasoning, answer.thinking_ms, answer.model.slug, answer.status) == (
        conversation.messages.get(role="assistant").text,
        "Recall the formula.",
        14_200,
        "o1-preview",
        "done",
    )
    again = client_for(friend).get(reverse("chat-export-json", args=[imported.id]))
    assert json.loads(again.content)["messages"][1]["text"] == data["messages"][1]["text"]


def test_an_imported_chat_counts_nothing_against_the_quota(make_user, catalog):
    owner, friend = make_user(), make_user()
    exported = client_for(owner).get(reverse("chat-export-json", args=[conversation_with_answer(owner, catalog).id])).content
    before = quota_json(friend)
    assert client_for(friend).post(reverse("chat-import"), upload(exported)).status_code == 201
    assert quota_json(friend) == before
    assert not apps.get_model("quotas", "Reservation").objects.exists()


BAD_FILES = {
    "not JSON": (b"\x89PNG\r\n", "This is not a JSON file"),
    "another JSON": ('{"hello": "world"}', "not an exported conversation"),
    "a later version": ('{"format": "chat-conversation", "version": 9, "messages": []}', "this server reads version 1"),
    "no messages": ('{"format": "chat-conversation", "version": 1, "messages": []}', "holds no messages"),
    "an unknown model": (
        '{"format": "chat-conversation", "version": 1, "messages": [{"role": "user", "model": "gpt-9", "text": "hi"}]}',
        "models this server does not have: gpt-9",
    ),
    "a bad role": (
        '{"format": "chat-conversation", "version": 1, "messages": [{"role": "system", "model": "o1-mini", "text": "hi"}]}',
        "Message 1: “role” must be “user” or “assistant”",
    ),
    "a reply still being written": (
        '{"format": "chat-conversation", "version": 1, "messages": [{"role": "user", "model": "o1-mini", "text": "hi"},'
        ' {"role": "assistant", "model": "o1-mini", "text": "", "status": "streaming"}]}',
        "Message 2: “status” must be one of done, failed, stopped",
    ),
    "a NUL character": (
        '{"format": "chat-conversation", "version": 1, "messages": [{"role": "user", "model": "o1-mini", "text": "a\\u0000b"}]}',
        "without NUL characters",
    ),
    "a negative token count": (
        '{"format": "chat-conversation", "version": 1, "messages": [{"role": "user", "model": "o1-mini", "text": "hi"},'
        ' {"role": "assistant", "model": "o1-mini", "text": "yo", "prompt_tokens": -1}]}',
        "Message 2: “prompt_tokens” must be a whole number or null",
    ),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_import_file_gets_a_clear_error_and_creates_nothing(kind, make_user, catalog):
    user = make_user()
    content, said = BAD_FILES[kind]
    response = client_for(user).post(reverse("chat-import"), upload(content))
    assert response.status_code == 400
    assert said in response.json()["message"]
    assert conversations_of(user) == 0
    assert not apps.get_model("chat", "Message").objects.exists()


def test_an_import_over_the_size_limit_or_with_a_question_over_the_message_limit_is_refused(make_user, catalog, settings):
    user = make_user()
    settings.MAX_MESSAGE_CHARS = 50
    long_question = json.dumps(
        {"format": "chat-conversation", "version": 1, "messages": [{"role": "user", "model": "o1-mini", "text": "x" * 51}]}
    )
    response = client_for(user).post(reverse("chat-import"), upload(long_question))
    assert response.status_code == 400 and "at most 50 characters" in response.json()["message"]

    settings.IMPORT_MAX_BYTES = 100
    response = client_for(user).post(reverse("chat-import"), upload("x" * 101))
    assert response.status_code == 400
    assert response.json() == {"type": "error", "code": "too_large", "message": "The file is larger than the limit of 100 bytes."}
    assert client_for(user).post(reverse("chat-import"), {}).json()["code"] == "invalid_import"
    assert conversations_of(user) == 0


# --- Ownership ----------------------------------------------------------------------------

OWNER_ROUTES = [
    ("get", "chat-export-markdown", {}),
    ("get", "chat-export-json", {}),
    ("post", "chat-share", {}),
    ("post", "chat-unshare", {}),
    ("post", "chat-pin", {"pinned": "true"}),
    ("post", "chat-archive", {"archived": "true"}),
]


@pytest.mark.parametrize(("method", "name", "data"), OWNER_ROUTES)
def test_another_users_chat_cannot_be_exported_shared_pinned_or_archived(method, name, data, make_user, catalog):
    owner, stranger = make_user(), make_user()
    conversation = conversation_with_answer(owner, catalog)
    response = getattr(client_for(stranger), method)(reverse(name, args=[conversation.id]), data)
    assert response.status_code == 404
    conversation.refresh_from_db()
    assert (conversation.pinned, conversation.archived, conversation.share_links.count()) == (False, False, 0)


@pytest.mark.parametrize(("method", "name", "data"), OWNER_ROUTES)
def test_signed_out_visitors_are_sent_to_log_in(method, name, data, make_user, catalog):
    conversation = conversation_with_answer(make_user(), catalog)
    response = getattr(Client(), method)(reverse(name, args=[conversation.id]), data)
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts-login"))


# --- Share links --------------------------------------------------------------------------


def test_a_shared_link_shows_the_chat_read_only_to_anyone_without_account_or_quota(make_user, catalog):
    owner = make_user(username="ada-lovelace", email=EMAIL)
    conversation = conversation_with_answer(owner, catalog)
    owner_client = client_for(owner)
    share = owner_client.post(reverse("chat-share", args=[conversation.id])).json()["share"]
    assert owner_client.post(reverse("chat-share", args=[conversation.id])).json()["share"]["url"] == share["url"]
    token = share["url"].rstrip("/").rsplit("/", 1)[1]
    assert len(token) >= 40

    page = Client().get(share["url"])

    assert page.status_code == 200
    body = page.content.decode()
    assert "What is the area of a circle?" in body
    assert "Thought for 14 seconds" in body and "Recall the formula." in body
    for private in ("ada-lovelace", EMAIL, "left", "resets", "Log out", "csrfmiddlewaretoken", "<textarea", "Regenerate"):
        assert private not in body, private
    assert page["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-store" in page["Cache-Control"]


def test_a_revoked_link_answers_404_and_sharing_again_makes_a_new_one(make_user, catalog):
    owner = make_user()
    conversation = conversation_with_answer(owner, catalog)
    client = client_for(owner)
    first = client.post(reverse("chat-share", args=[conversation.id])).json()["share"]["url"]
    assert client.post(reverse("chat-unshare", args=[conversation.id])).json() == {"share": None, "revoked": 1}
    assert Client().get(first).status_code == 404
    second = client.post(reverse("chat-share", args=[conversation.id])).json()["share"]["url"]
    assert second != first
    assert Client().get(second).status_code == 200
    assert Client().get(first).status_code == 404


def test_made_up_share_tokens_answer_404(make_user, catalog):
    for token in ["x" * 43, "short", "a" * 65, "é" * 43]:
        assert Client().get(reverse("chat-shared", args=[token])).status_code == 404


def test_a_deleted_chats_link_answers_404(make_user, catalog):
    owner = make_user()
    conversation = conversation_with_answer(owner, catalog)
    client = client_for(owner)
    url = client.post(reverse("chat-share", args=[conversation.id])).json()["share"]["url"]
    client.post(reverse("chat-delete", args=[conversation.id]))
    assert Client().get(url).status_code == 404


def test_staff_see_every_share_link_and_how_long_each_reply_thought_in_the_admin_and_can_revoke_a_link(make_user, catalog, staff_client):
    owner = make_user(username="sharer")
    conversation = conversation_with_answer(owner, catalog, title="Shared circles")
    url = client_for(owner).post(reverse("chat-share", args=[conversation.id])).json()["share"]["url"]
    ShareLink = apps.get_model("chat", "ShareLink")

    listing = staff_client.get(reverse("admin:chat_sharelink_changelist"))
    assert listing.status_code == 200
    assert "Shared circles" in listing.content.decode() and "sharer" in listing.content.decode()

    staff_client.post(reverse("admin:chat_sharelink_changelist"), {"action": "revoke", "_selected_action": [ShareLink.objects.get().id]})
    assert Client().get(url).status_code == 404


# --- Pin and archive ----------------------------------------------------------------------


def test_pinned_chats_list_first_and_archived_ones_say_so(make_user, catalog):
    user = make_user()
    older = conversation_with_answer(user, catalog, title="Older")
    newer = conversation_with_answer(user, catalog, title="Newer")
    client = client_for(user)
    pinned = client.post(reverse("chat-pin", args=[older.id]), {"pinned": "true"}).json()["conversation"]
    archived = client.post(reverse("chat-archive", args=[newer.id]), {"archived": "true"}).json()["conversation"]
    assert (pinned["pinned"], archived["archived"]) == (True, True)

    listed = client.get(reverse("chat-search")).json()["conversations"]  # an empty search lists them all
    assert [(c["title"], c["pinned"], c["archived"]) for c in listed] == [("Older", True, False), ("Newer", False, True)]

    assert client.post(reverse("chat-pin", args=[older.id]), {"pinned": "maybe"}).status_code == 400
    older.refresh_from_db()
    assert older.pinned


def test_sending_in_a_pinned_chat_keeps_it_pinned(make_user, catalog, no_live_reply_cap):
    user = make_user()
    conversation = conversation_with_answer(user, catalog)
    client_for(user).post(reverse("chat-pin", args=[conversation.id]), {"pinned": "true"})
    send(user, conversation_id=conversation.id)
    conversation.refresh_from_db()
    assert conversation.pinned


# --- Small things -------------------------------------------------------------------------


def test_a_logged_in_user_at_the_login_page_goes_on_to_the_chat(make_user):
    response = client_for(make_user()).get(reverse("accounts-login"))
    assert response.status_code == 302 and response["Location"] == reverse("chat-home")


def test_sign_up_lists_places_not_factory_or_localtime_and_starts_from_the_browsers_zone(db, settings):
    settings.SIGNUP_POLICY = "open"
    page = Client().get(reverse("accounts-signup")).content.decode()
    for name in ("Factory", "localtime", "posixrules", "EST5EDT", "Etc/GMT+5", "US/Eastern"):
        assert f'value="{name}"' not in page, name
    assert 'value="Europe/Paris"' in page and 'value="UTC"' in page
    assert "data-browser-default" in page and "js/timezone.js" in page

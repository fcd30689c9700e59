"""Attached files: uploads and their limits, ownership on every route, and what the model receives.

Replies are generated in this process against the simulator over real HTTP;
the simulator's record of each request body shows what was sent.
"""

import base64
import io

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from catalog.models import AIModel
from chat import actions
from chat.models import Attachment, Message
from quotas.models import LedgerEntry, Plan, PlanLimit
from tests.helpers import generate, handshake, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_queue")]

CSV = b"city,people\nOslo,709000\nBergen,291000\n"


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def upload(client: Client, name: str, data: bytes):
    return client.post("/api/attachments/", {"file": SimpleUploadedFile(name, data)})


def uploaded(user, name: str, data: bytes) -> Attachment:
    return actions.attachment_upload(user=user, name=name, data=data)


def send(user, text: str, model: str = "o1-mini", files: tuple | list = (), conversation_id: int | None = None):
    return actions.message_send(
        user=user, conversation_id=conversation_id, model_slug=model, text=text, attachment_ids=[f.id for f in files]
    )


def nothing_sent(user) -> bool:
    return not Message.objects.filter(conversation__user=user).exists() and not LedgerEntry.objects.filter(user=user).exists()


# --- Uploads --------------------------------------------------------------------------


def test_an_uploaded_text_file_is_kept_for_its_owner_until_it_is_sent(catalog, make_user):
    user = make_user()
    response = upload(client_for(user), "cities.csv", CSV)

    assert response.status_code == 201
    attachment = response.json()["attachment"]
    assert (attachment["name"], attachment["kind"], attachment["size"]) == ("cities.csv", "text", len(CSV))
    stored = Attachment.objects.get(id=attachment["id"])
    assert (stored.user, stored.message, bytes(stored.data)) == (user, None, CSV)


def test_an_upload_without_the_csrf_token_is_refused(catalog, make_user):
    user = make_user()
    response = upload(client_for(user, enforce_csrf_checks=True), "cities.csv", CSV)

    assert response.status_code == 403
    assert not Attachment.objects.exists()


def test_a_visitor_who_is_not_signed_in_cannot_upload(catalog):
    response = upload(Client(), "cities.csv", CSV)

    assert response.status_code == 302
    assert not Attachment.objects.exists()


@pytest.mark.parametrize(
    "name, data, says",
    [
        ("report.pdf", b"%PDF-1.7\n\x00\x01\x02\xff binary", "neither a text file"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "neither a text file"),
        ("empty.txt", b"", "is empty"),
        ("broken.png", b"\x89PNG\r\n\x1a\n" + b"not really an image", "cannot be read"),
        ("big.log", b"x" * 2_001, "at most"),
    ],
)
def test_bad_files_are_refused_with_a_clear_message_and_nothing_is_stored(catalog, make_user, settings, name, data, says):
    settings.ATTACHMENT_MAX_BYTES = 2_000
    response = upload(client_for(make_user()), name, data)

    assert response.status_code == 400
    assert says in response.json()["message"]
    assert not Attachment.objects.exists()


def test_what_a_file_is_comes_from_its_bytes_not_its_name(catalog, make_user):
    user = make_user()
    image = uploaded(user, "notes.txt", png())
    text = uploaded(user, "photo.png", b"just words")

    assert (image.kind, image.content_type, image.width, image.height) == ("image", "image/png", 64, 48)
    assert (text.kind, text.content_type) == ("text", "text/plain; charset=utf-8")


def test_a_name_cannot_break_out_of_its_delimiters(catalog, make_user):
    attachment = uploaded(make_user(), '../../x"><script>\n.md', b"hi")

    assert attachment.name == "x___script_.md"


def test_too_many_files_waiting_to_be_sent_are_refused(catalog, make_user, settings):
    settings.ATTACHMENTS_MAX_UNSENT = 2
    user = make_user()
    uploaded(user, "a.txt", b"a")
    uploaded(user, "b.txt", b"b")

    response = upload(client_for(user), "c.txt", b"c")

    assert response.status_code == 400
    assert response.json()["code"] == "too_many"
    assert Attachment.objects.filter(user=user).count() == 2


# --- Downloads ------------------------------------------------------------------------


def test_the_owner_downloads_a_text_file_as_plain_text_even_when_it_holds_html(catalog, make_user):
    user = make_user()
    attachment = uploaded(user, "page.html", b"<script>alert(1)</script>")

    response = client_for(user).get(f"/attachments/{attachment.id}/")

    assert response.status_code == 200
    assert response.content == b"<script>alert(1)</script>"
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_an_image_is_served_inline_for_its_thumbnail(catalog, make_user):
    user = make_user()
    attachment = uploaded(user, "red.png", png())

    response = client_for(user).get(f"/attachments/{attachment.id}/")

    assert (response.status_code, response["Content-Type"], response.content) == (200, "image/png", png())
    assert response["Content-Disposition"].startswith("inline")


def test_another_users_attachment_is_not_found_sent_or_not(catalog, make_user):
    owner, other = make_user(), make_user()
    unsent = uploaded(owner, "a.txt", b"secret")
    sent = uploaded(owner, "b.txt", b"secret too")
    send(owner, "read this", files=[sent])
    client = client_for(other)

    for attachment in (unsent, sent):
        assert client.get(f"/attachments/{attachment.id}/").status_code == 404
        assert client.post(f"/api/attachments/{attachment.id}/remove/").status_code == 404
    assert Attachment.objects.filter(user=owner).count() == 2


def test_a_file_not_yet_sent_can_be_removed_but_a_sent_one_stays_with_its_message(catalog, make_user):
    user = make_user()
    unsent, sent = uploaded(user, "a.txt", b"a"), uploaded(user, "b.txt", b"b")
    send(user, "read this", files=[sent])
    client = client_for(user)

    assert client.post(f"/api/attachments/{unsent.id}/remove/").status_code == 200
    assert client.post(f"/api/attachments/{sent.id}/remove/").status_code == 404
    assert list(Attachment.objects.filter(user=user)) == [sent]


# --- Sending --------------------------------------------------------------------------


def test_a_sent_file_belongs_to_its_message_and_shows_on_it(catalog, make_user):
    user = make_user()
    attachment = uploaded(user, "cities.csv", CSV)

    user_message, _ = send(user, "", files=[attachment])

    attachment.refresh_from_db()
    assert attachment.message == user_message
    assert user_message.conversation.title == "cities.csv"
    page = client_for(user).get(f"/c/{user_message.conversation_id}/")
    listed = page.context["bootstrap"]["snapshot"]["messages"][0]["attachments"]
    assert [(a["name"], a["size"], a["url"]) for a in listed] == [("cities.csv", len(CSV), f"/attachments/{attachment.id}/")]


@pytest.mark.parametrize("whose", ["another user's", "already sent"])
def test_a_send_naming_a_file_it_may_not_take_is_refused_and_nothing_is_charged(catalog, make_user, whose):
    user, other = make_user(), make_user()
    if whose == "another user's":
        attachment = uploaded(other, "theirs.txt", b"not yours")
    else:
        attachment = uploaded(other, "sent.txt", b"once")
        send(other, "first", files=[attachment])

    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "read this", files=[attachment])

    assert refused.value.code == "not_found"
    assert nothing_sent(user)
    attachment.refresh_from_db()
    assert attachment.user == other


@pytest.mark.parametrize("ids", ["1", [True], [1, 1], [{"id": 1}], list(range(1, 12))])
def test_malformed_attachment_lists_are_refused(catalog, make_user, ids):
    user = make_user()
    with pytest.raises(actions.ActionRefused) as refused:
        actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="hi", attachment_ids=ids)

    assert refused.value.code == "invalid"
    assert nothing_sent(user)


def test_files_over_the_per_message_limit_are_refused(catalog, make_user, settings):
    settings.ATTACHMENTS_MAX_MESSAGE_BYTES = 100
    user = make_user()
    files = [uploaded(user, "a.txt", b"a" * 60), uploaded(user, "b.txt", b"b" * 60)]

    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "both", files=files)

    assert refused.value.code == "too_long"
    assert nothing_sent(user)


def test_an_image_for_a_model_that_takes_none_is_refused_and_nothing_is_charged(catalog, make_user):
    user = make_user()
    image = uploaded(user, "red.png", png())

    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "what colour?", model="o1-preview", files=[image])

    assert refused.value.code == "images_unsupported"
    assert str(refused.value) == "o1-preview does not take images. Remove red.png or pick a model that takes images."
    assert nothing_sent(user)
    assert not catalog["o1-preview"].supports_images and not catalog["o1-mini"].supports_images


def test_a_file_too_large_for_the_context_window_is_refused_before_anything_is_charged(catalog, make_user):
    model = catalog["o1-mini"]
    model.context_window, model.max_output_tokens = 1_200, 600
    model.save()
    user = make_user()
    big = uploaded(user, "big.log", b"line of a log\n" * 400)

    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "summarise", files=[big])

    assert refused.value.code == "too_long"
    assert "with its files" in str(refused.value)
    assert nothing_sent(user)


def test_over_the_websocket_only_the_senders_own_files_are_taken(catalog, make_user):
    user, other = make_user(), make_user()
    mine, theirs = uploaded(user, "mine.txt", b"mine"), uploaded(other, "theirs.txt", b"theirs")
    cookie = session_cookie(user)

    @async_to_sync
    async def run():
        _, ws = await handshake(cookie)
        frames = []
        for ids in ([theirs.id], [mine.id]):
            await ws.send_json_to({"type": "send", "conversation_id": None, "model": "o1-mini", "text": "hi", "attachments": ids})
            frames.append(await ws.receive_json_from(timeout=5))
        await ws.disconnect()
        return frames

    refused, sent = run()

    assert (refused["type"], refused["code"]) == ("error", "not_found")
    assert sent["type"] == "sent"
    assert [a["name"] for a in sent["user_message"]["attachments"]] == ["mine.txt"]
    assert Message.objects.filter(conversation__user=user, role="user").count() == 1
    assert Attachment.objects.get(id=theirs.id).message is None


# --- What the model receives ----------------------------------------------------------


def test_a_text_file_reaches_the_model_delimited_and_named_before_the_question(simulator, catalog, make_user):
    user = make_user()
    _, reply = send(user, "Which city is larger? [sim:think=0]", files=[uploaded(user, "cities.csv", CSV)])

    assert generate(reply).status == "done"
    content = simulator.requests()[-1]["messages"][-1]["content"]
    assert content == f'<file name="cities.csv">\n{CSV.decode()}\n</file>\n\nWhich city is larger? [sim:think=0]'


def test_an_earlier_turn_with_a_file_is_trimmed_whole_when_the_window_is_full(simulator, catalog, make_user):
    model = catalog["o1-mini"]
    model.context_window, model.max_output_tokens = 1_500, 600
    model.save()
    user = make_user()
    _, reply = send(user, "Read this [sim:think=0] [sim:tokens=5]", files=[uploaded(user, "old.log", b"OLDLINE here\n" * 150)])
    generate(reply)
    for n in range(2):
        _, reply = send(user, f"Turn {n} " + "B " * 200 + "[sim:think=0] [sim:tokens=5]", conversation_id=reply.conversation_id)
        generate(reply)

    sent = simulator.requests()
    assert "OLDLINE" in sent[0]["messages"][-1]["content"]
    assert "OLDLINE" not in str(sent[-1]["messages"])
    assert sent[-1]["messages"][0]["role"] == "user"


def test_an_image_reaches_an_image_model_as_an_image_part(simulator, catalog, make_user):
    user = make_user()
    _, reply = send(user, "What colour? [sim:think=0]", model="gpt-4o", files=[uploaded(user, "red.png", png())])

    assert generate(reply).status == "done"
    parts = simulator.requests()[-1]["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What colour? [sim:think=0]"}
    url = parts[1]["image_url"]["url"]
    assert parts[1]["type"] == "image_url" and url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png()


def test_on_the_responses_api_an_image_goes_as_input_image(simulator, catalog, make_user):
    model = AIModel.objects.create(
        slug="o4-mini",
        name="o4-mini",
        provider_model="o4-mini",
        api="responses",
        context_window=200_000,
        max_output_tokens=100_000,
        tokenizer="o200k_base",
        supports_images=True,
    )
    PlanLimit.objects.create(plan=Plan.objects.get(is_default=True), model=model, messages=10, window_kind="anchored")
    user = make_user()
    _, reply = send(user, "What colour? [sim:think=0]", model="o4-mini", files=[uploaded(user, "red.png", png())])

    assert generate(reply).status == "done"
    content = simulator.requests()[-1]["input"][-1]["content"]
    assert content[0] == {"type": "input_text", "text": "What colour? [sim:think=0]"}
    assert content[1]["type"] == "input_image"
    assert base64.b64decode(content[1]["image_url"].split(",", 1)[1]) == png()


def test_after_a_switch_to_a_model_without_images_earlier_images_are_named_not_sent(simulator, catalog, make_user):
    user = make_user()
    _, reply = send(user, "What colour? [sim:think=0]", model="gpt-4o", files=[uploaded(user, "red.png", png())])
    generate(reply)
    _, reply = send(user, "And now? [sim:think=0]", model="o1-mini", conversation_id=reply.conversation_id)

    assert generate(reply).status == "done"
    first = simulator.requests()[-1]["messages"][0]
    assert first["content"] == "What colour? [sim:think=0]\n\n[Image red.png not shown: o1-mini does not take images]"


def test_regenerating_with_a_model_without_images_is_refused(simulator, catalog, make_user):
    user = make_user()
    _, reply = send(user, "What colour? [sim:think=0]", model="gpt-4o", files=[uploaded(user, "red.png", png())])
    generate(reply)

    with pytest.raises(actions.ActionRefused) as refused:
        actions.reply_regenerate(user=user, message_id=reply.id, model_slug="o1-mini")

    assert refused.value.code == "images_unsupported"
    assert Message.objects.filter(conversation_id=reply.conversation_id).count() == 2  # no new version


def test_an_edited_message_keeps_its_files(simulator, catalog, make_user):
    user = make_user()
    question, reply = send(user, "Sum it [sim:think=0]", files=[uploaded(user, "cities.csv", CSV)])
    generate(reply)

    edited, reply = actions.message_edit(user=user, message_id=question.id, text="Average it [sim:think=0]")
    generate(reply)

    assert [a.name for a in edited.attachments.all()] == ["cities.csv"]
    assert "Oslo,709000" in simulator.requests()[-1]["messages"][-1]["content"]
    assert client_for(user).get(f"/attachments/{question.attachments.get().id}/").status_code == 200

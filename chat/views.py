import re
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from catalog.models import AIModel
from quotas.selectors import quota_json

from . import actions, files, organise, selectors, transfer
from .models import Conversation, ShareLink
from .serializers import attachment_json, conversation_json, message_json

# A number no other part of a URL holds, to find where the id goes once reversed.
_ID_SENTINEL = 987654321


def _url_template(name: str) -> str:
    """The URL named `name` with `{id}` where a conversation id goes, for the page's JavaScript to fill in."""
    return reverse(name, args=[_ID_SENTINEL]).replace(str(_ID_SENTINEL), "{id}")


def _json_error(exc: actions.ActionRefused, status: int = 400) -> JsonResponse:
    return JsonResponse(exc.as_json(), status=status)


def _conversation_changed(change: Callable[[], Conversation]) -> JsonResponse:
    """The answer to a change of one conversation: the conversation as it is now, or the refusal."""
    try:
        conversation = change()
    except actions.ActionRefused as exc:
        return _json_error(exc)
    return JsonResponse({"conversation": conversation_json(conversation)})


MISSING_CONVERSATION = "This chat does not exist or was deleted."


@login_required
@require_GET
def chat_page(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = None
    if conversation_id is not None:
        try:
            conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
        except Http404:
            # The chat page in its new-chat state, with a notice; the same for another user's id.
            return _render_chat_page(request, None, notice=MISSING_CONVERSATION, status=404)
    return _render_chat_page(request, conversation)


def _render_chat_page(request: HttpRequest, conversation: Conversation | None, *, notice: str = "", status: int = 200) -> HttpResponse:
    is_staff = request.user.is_staff
    quota = quota_json(request.user)
    bootstrap = {
        "conversation_id": conversation.id if conversation else None,
        "model": conversation.model.slug if conversation else selectors.model_for_new_chat(user=request.user, quota=quota),
        "conversations": [conversation_json(c) for c in selectors.conversation_list(user=request.user)[:200]],
        "quota": quota,
        # Whether the user's own custom instructions are set: the composer tells which models take them how.
        "has_instructions": bool(selectors.user_instructions(user=request.user)),
        "few_left_notice": settings.FEW_LEFT_NOTICE,
        "max_chars": settings.MAX_MESSAGE_CHARS,
        "attachments": {
            "max_bytes": settings.ATTACHMENT_MAX_BYTES,
            "per_message": settings.ATTACHMENTS_PER_MESSAGE,
            "image_models": list(AIModel.objects.filter(enabled=True, supports_images=True).values_list("slug", flat=True)),
        },
        "username": request.user.get_username(),
        "is_staff": is_staff,
        "notice": notice,
        # Every URL the page's JavaScript uses (static/js/chat/urls.js).
        "urls": {
            "home": reverse("chat-home"),
            "conversation": _url_template("chat-conversation"),
            "search": reverse("chat-search"),
            "rename": _url_template("chat-rename"),
            "instructions": _url_template("chat-instructions"),
            "profile": reverse("accounts-profile"),
            "delete": _url_template("chat-delete"),
            "pin": _url_template("chat-pin"),
            "archive": _url_template("chat-archive"),
            "share": _url_template("chat-share"),
            "unshare": _url_template("chat-unshare"),
            "export_md": _url_template("chat-export-markdown"),
            "export_json": _url_template("chat-export-json"),
            "import": reverse("chat-import"),
            "quota": reverse("chat-quota"),
            "attachments": reverse("chat-attachment-upload"),
            "attachment_remove": _url_template("chat-attachment-remove"),
            "login": reverse("accounts-login"),
            "socket": "/ws/chat/",  # chat/routing.py: WebSocket routes have no URL name
            **({"admin": reverse("admin:index"), "usage": reverse("quotas-usage")} if is_staff else {}),
        },
        # The stored messages, so a reload shows the conversation before the socket opens.
        "snapshot": {
            "conversation": conversation_json(conversation),
            "messages": [message_json(m) for m in selectors.conversation_messages(conversation=conversation)],
        }
        if conversation
        else None,
    }
    return render(request, "chat/chat.html", {"bootstrap": bootstrap, "conversation": conversation}, status=status)


@login_required
@require_GET
def conversation_search(request: HttpRequest) -> JsonResponse:
    query = request.GET.get("q", "")[:200]
    if "\x00" in query:
        return _json_error(actions.ActionRefused("invalid", "The search contains a NUL character."))
    conversations = selectors.conversation_list(user=request.user, query=query)[:200]
    return JsonResponse({"conversations": [conversation_json(c) for c in conversations]})


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: int) -> JsonResponse:
    return _conversation_changed(
        lambda: actions.conversation_rename(user=request.user, conversation_id=conversation_id, title=request.POST.get("title"))
    )


@login_required
@require_POST
def conversation_instructions(request: HttpRequest, conversation_id: int) -> JsonResponse:
    return _conversation_changed(
        lambda: actions.conversation_instructions_set(
            user=request.user, conversation_id=conversation_id, instructions=request.POST.get("instructions")
        )
    )


@login_required
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: int) -> JsonResponse:
    actions.conversation_delete(user=request.user, conversation_id=conversation_id)
    return JsonResponse({"deleted": conversation_id})


@login_required
@require_GET
def quota(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"models": quota_json(request.user)})


@login_required
@require_POST
def attachment_upload(request: HttpRequest) -> JsonResponse:
    upload = request.FILES.get("file")
    if upload is None:
        return _json_error(actions.ActionRefused("invalid", "Choose a file to attach."))
    if upload.size is not None and upload.size > settings.ATTACHMENT_MAX_BYTES:
        # Refused before its bytes are read into memory.
        limit = files.size_label(settings.ATTACHMENT_MAX_BYTES)
        return _json_error(
            actions.ActionRefused("too_long", f"{files.clean_name(upload.name)} is too large; a file may be at most {limit}.")
        )
    try:
        attachment = actions.attachment_upload(user=request.user, name=upload.name, data=upload.read())
    except actions.ActionRefused as exc:
        return _json_error(exc)
    return JsonResponse({"attachment": attachment_json(attachment)}, status=201)


@login_required
@require_POST
def attachment_remove(request: HttpRequest, attachment_id: int) -> JsonResponse:
    actions.attachment_remove(user=request.user, attachment_id=attachment_id)
    return JsonResponse({"removed": attachment_id})


@login_required
@require_GET
def attachment_download(request: HttpRequest, attachment_id: int) -> HttpResponse:
    """The file as uploaded, to its owner only. Text is always served as plain text, never as a page;
    images inline (the thread's thumbnails) unless `?download`."""
    attachment = selectors.attachment_get_for_user(user=request.user, attachment_id=attachment_id)
    response = HttpResponse(bytes(attachment.data), content_type=attachment.content_type)
    inline = attachment.kind == attachment.Kind.IMAGE and "download" not in request.GET
    response["Content-Disposition"] = content_disposition_header(not inline, attachment.name) or "attachment"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
@require_POST
def conversation_pin(request: HttpRequest, conversation_id: int) -> JsonResponse:
    return _conversation_changed(
        lambda: organise.conversation_pin(user=request.user, conversation_id=conversation_id, pinned=request.POST.get("pinned"))
    )


@login_required
@require_POST
def conversation_archive(request: HttpRequest, conversation_id: int) -> JsonResponse:
    return _conversation_changed(
        lambda: organise.conversation_archive(user=request.user, conversation_id=conversation_id, archived=request.POST.get("archived"))
    )


def _share_json(request: HttpRequest, link: ShareLink) -> dict:
    return {"url": request.build_absolute_uri(reverse("chat-shared", args=[link.token])), "created_at": link.created_at.isoformat()}


@login_required
@require_POST
def conversation_share(request: HttpRequest, conversation_id: int) -> JsonResponse:
    link = organise.share_link_create(user=request.user, conversation_id=conversation_id)
    return JsonResponse({"share": _share_json(request, link)})


@login_required
@require_POST
def conversation_unshare(request: HttpRequest, conversation_id: int) -> JsonResponse:
    revoked = organise.share_link_revoke(user=request.user, conversation_id=conversation_id)
    return JsonResponse({"share": None, "revoked": revoked})


def _export(request: HttpRequest, conversation_id: int, kind: str) -> HttpResponse:
    conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    title = conversation.title or "New chat"
    render_as, content_type = {"md": (transfer.export_markdown, "text/markdown"), "json": (transfer.export_json, "application/json")}[kind]
    body = render_as(title=title, messages=selectors.conversation_record(conversation=conversation), exported_at=timezone.now())
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    stem = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")[:60] or "chat"
    response["Content-Disposition"] = f'attachment; filename="{stem}.{kind}"'
    return response


@login_required
@require_GET
def conversation_export_markdown(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _export(request, conversation_id, "md")


@login_required
@require_GET
def conversation_export_json(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _export(request, conversation_id, "json")


@login_required
@require_POST
def conversation_import(request: HttpRequest) -> JsonResponse:
    upload = request.FILES.get("file")
    if upload is None:
        return _json_error(actions.ActionRefused("invalid_import", "Choose a conversation file (exported as JSON) to import."))
    try:
        # One byte past the limit is enough to refuse it; a huge file is never read into memory.
        conversation = organise.conversation_import(user=request.user, raw=upload.read(settings.IMPORT_MAX_BYTES + 1))
    except actions.ActionRefused as exc:
        return _json_error(exc)
    return JsonResponse({"conversation": conversation_json(conversation)}, status=201)


@never_cache  # a revoked link must stop working at once, for proxies and the back button too
@require_GET
def shared_page(request: HttpRequest, token: str) -> HttpResponse:
    """A shared conversation, read only, for anyone with the link: no account, quota or owner shown."""
    conversation = selectors.share_link_conversation(token=token)
    messages = selectors.conversation_record(conversation=conversation)
    entries = [{"message": m, "thought": transfer.thought_label(m)} for m in messages]
    response = render(request, "chat/shared.html", {"title": conversation.title or "New chat", "entries": entries})
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response

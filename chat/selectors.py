"""Reads. Every lookup by id checks that the row belongs to the user."""

import re

from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404

from accounts.models import Profile

from .models import LIVE, Attachment, Conversation, Message, ShareLink


def as_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Http404("No such item.")
    try:
        number = int(value)
    except ValueError:
        raise Http404("No such item.") from None
    if not 0 < number < 2**63:
        raise Http404("No such item.")
    return number


def conversation_get_for_user(*, user, conversation_id: object) -> Conversation:
    """The user's conversation, or Http404 (also for another user's id: we do not say it exists)."""
    conversation = Conversation.objects.select_related("model").filter(id=as_id(conversation_id), user=user).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def message_get_for_user(*, user, message_id: object) -> Message:
    message = Message.objects.select_related("model", "conversation").filter(id=as_id(message_id), conversation__user=user).first()
    if message is None:
        raise Http404("No such message.")
    return message


def conversation_list(*, user, query: str = "") -> QuerySet[Conversation]:
    conversations = Conversation.objects.filter(user=user).select_related("model").order_by("-pinned", "-updated_at")
    if query:
        matching = Message.objects.filter(text__icontains=query, replaced=False).values("conversation_id")
        conversations = conversations.filter(Q(title__icontains=query) | Q(id__in=matching))
    return conversations


def conversation_messages(*, conversation: Conversation) -> QuerySet[Message]:
    # The attachments' names and sizes; their bytes only when downloaded.
    attachments = Prefetch("attachments", queryset=Attachment.objects.defer("data"))
    return conversation.messages.filter(replaced=False).select_related("model").prefetch_related(attachments)


def attachment_get_for_user(*, user, attachment_id: object) -> Attachment:
    """The user's attachment, or Http404 (also for another user's id)."""
    attachment = Attachment.objects.filter(id=as_id(attachment_id), user=user).first()
    if attachment is None:
        raise Http404("No such attachment.")
    return attachment


def model_for_new_chat(*, user, quota: list[dict]) -> str | None:
    """The model the user picked last, unless it is at its limit or gone: then the first with messages left."""
    last = Profile.objects.filter(user=user).values_list("last_model__slug", flat=True).first()
    usable = [q["model"] for q in quota if not q["exhausted"]]
    if last in usable:
        return last
    if usable:
        return usable[0]
    offered = [q["model"] for q in quota]
    return last if last in offered else (offered[0] if offered else None)


def user_instructions(*, user) -> str:
    """The user's own custom instructions (profile page), sent with every chat."""
    return Profile.objects.filter(user=user).values_list("instructions", flat=True).first() or ""


def instructions_for(conversation: Conversation) -> str:
    """The custom instructions a reply in this conversation is sent with: the user's own, then the chat's."""
    mine = Profile.objects.filter(user_id=conversation.user_id).values_list("instructions", flat=True).first() or ""
    return "\n\n".join(part.strip() for part in (mine, conversation.instructions) if part.strip())


def share_link_conversation(*, token: object) -> Conversation:
    """The conversation a live share link shows, or Http404 (also once revoked, or for any made-up token)."""
    if not isinstance(token, str) or not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", token):
        raise Http404("No such link.")
    link = ShareLink.objects.select_related("conversation").filter(token=token, revoked_at=None).first()
    if link is None:
        raise Http404("No such link.")
    return link.conversation


def conversation_record(*, conversation: Conversation) -> list[Message]:
    """What an export or a shared page shows: the visible messages, without a reply still being written."""
    return list(conversation_messages(conversation=conversation).exclude(status__in=LIVE))

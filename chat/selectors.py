"""Reads. Every lookup by id checks that the row belongs to the user."""

import re

from django.db.models import Q, QuerySet
from django.http import Http404

from .models import LIVE, Conversation, Message, ShareLink


def _as_id(value: object) -> int:
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
    conversation = Conversation.objects.select_related("model").filter(id=_as_id(conversation_id), user=user).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def message_get_for_user(*, user, message_id: object) -> Message:
    message = Message.objects.select_related("model", "conversation").filter(id=_as_id(message_id), conversation__user=user).first()
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
    return conversation.messages.filter(replaced=False).select_related("model")


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

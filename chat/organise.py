"""Writes that organise and share conversations: pin, archive, share links, import.

Kept apart from chat/actions.py (sending and answering); the same rules hold: every
lookup checks ownership, bad input raises ActionRefused and changes nothing.
"""

import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import AIModel

from . import events
from .actions import ActionRefused, title_from
from .models import Conversation, Message, ShareLink
from .selectors import conversation_get_for_user
from .transfer import ImportRefused, import_parse


def _flag(value: object, name: str) -> bool:
    if value in (True, "true", "1"):
        return True
    if value in (False, "false", "0"):
        return False
    raise ActionRefused("invalid", f"“{name}” must be true or false.")


def conversation_pin(*, user, conversation_id: object, pinned: object) -> Conversation:
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    conversation.pinned = _flag(pinned, "pinned")
    conversation.save(update_fields=["pinned"])  # like a rename, it does not move the chat in time
    events.conversation_changed(conversation)
    return conversation


def conversation_archive(*, user, conversation_id: object, archived: object) -> Conversation:
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    conversation.archived = _flag(archived, "archived")
    conversation.save(update_fields=["archived"])
    events.conversation_changed(conversation)
    return conversation


def share_link_create(*, user, conversation_id: object) -> ShareLink:
    """The conversation's live share link, made now if it has none. Sharing twice gives the same link."""
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    link = ShareLink.objects.filter(conversation=conversation, revoked_at=None).first()
    if link:
        return link
    try:
        with transaction.atomic():
            return ShareLink.objects.create(conversation=conversation, token=secrets.token_urlsafe(32))
    except IntegrityError:
        # Two tabs shared at once: the constraint kept one link; both get it.
        return ShareLink.objects.get(conversation=conversation, revoked_at=None)


def share_link_revoke(*, user, conversation_id: object) -> int:
    """End the conversation's share link: its URL answers 404 from now on. Returns how many were live."""
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    return ShareLink.objects.filter(conversation=conversation, revoked_at=None).update(revoked_at=timezone.now())


def conversation_import(*, user, raw: bytes) -> Conversation:
    """A new conversation of `user` from an exported JSON file, all of it or nothing.

    The answers are records of earlier generations, not new ones: no quota is
    reserved or counted for them, and nothing is sent to a model.
    """
    if len(raw) > settings.IMPORT_MAX_BYTES:
        raise ActionRefused("too_large", f"The file is larger than the limit of {settings.IMPORT_MAX_BYTES:,} bytes.")
    try:
        parsed = import_parse(raw, max_chars=settings.MAX_MESSAGE_CHARS)
    except ImportRefused as exc:
        raise ActionRefused("invalid_import", str(exc)) from None
    slugs = {m.model for m in parsed.messages}
    models = {m.slug: m for m in AIModel.objects.filter(slug__in=slugs)}
    unknown = sorted(slugs - models.keys())
    if unknown:
        raise ActionRefused("invalid_import", f"The file names models this server does not have: {', '.join(unknown)}.")
    # The chat goes on with the last model used, while it is still offered; else the first that is.
    last = models[parsed.messages[-1].model]
    model = last if last.enabled else AIModel.objects.filter(enabled=True).first() or last
    now = timezone.now()
    first_question = next((m.text for m in parsed.messages if m.role == Message.Role.USER), "")
    with transaction.atomic():
        conversation = Conversation.objects.create(
            user=user, model=model, title=parsed.title or title_from(first_question) or "Imported chat"
        )
        stored = Message.objects.bulk_create(
            Message(
                conversation=conversation,
                role=m.role,
                model=models[m.model],
                text=m.text,
                finished_at=now if m.fields else None,
                **m.fields,
            )
            for m in parsed.messages
        )
        # One branch, in the file's order, shown to its end.
        for parent, message in zip(stored[:-1], stored[1:], strict=True):
            message.parent = parent
        Message.objects.bulk_update(stored[1:], ["parent"])
        conversation.current_leaf = stored[-1]
        conversation.save(update_fields=["current_leaf"])
        transaction.on_commit(lambda: events.conversation_changed(conversation))
    return conversation

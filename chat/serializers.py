"""The protocol's shapes of conversations and messages (docs/protocol.md)."""

from django.urls import reverse

from .models import Attachment, Conversation, Message


def attachment_json(attachment: Attachment) -> dict:
    return {
        "id": attachment.id,
        "kind": attachment.kind,
        "name": attachment.name,
        "size": attachment.size,
        "content_type": attachment.content_type,
        "url": reverse("chat-attachment", args=[attachment.id]),
    }


def _attachments(message: Message) -> list[dict]:
    if message.role != Message.Role.USER:
        return []  # only the user attaches files: no query for an answer
    if message.attachment_list is not None:
        listed = message.attachment_list
    elif "attachments" in getattr(message, "_prefetched_objects_cache", {}):
        listed = list(message.attachments.all())
    else:
        listed = list(message.attachments.defer("data"))  # never the bytes, only to list them
    return [attachment_json(a) for a in listed]


def message_json(message: Message) -> dict:
    found: dict[str, object] = {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "parent_id": message.parent_id,
        "role": message.role,
        "model": message.model.slug,
        "model_name": message.model.name,
        "is_reasoning": message.model.is_reasoning,
        "text": message.text,
        "reasoning": message.reasoning,
        "status": message.status,
        "incomplete": message.incomplete,
        "finish_reason": message.finish_reason,
        "reasoning_effort": message.reasoning_effort,
        "error": message.error,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "reasoning_tokens": message.reasoning_tokens,
        "thinking_ms": message.thinking_ms,
        "created_at": message.created_at.isoformat(),
        "finished_at": message.finished_at.isoformat() if message.finished_at else None,
        "attachments": _attachments(message),
    }
    if message.versions is not None:  # known where they are read: snapshots and `sent` (chat.selectors)
        found["versions"] = message.versions
    return found


def conversation_json(conversation: Conversation) -> dict:
    return {
        "id": conversation.id,
        "title": conversation.title or "New chat",
        "model": conversation.model.slug,
        "reasoning_effort": conversation.reasoning_effort,
        "instructions": conversation.instructions,
        "pinned": conversation.pinned,
        "archived": conversation.archived,
        "updated_at": conversation.updated_at.isoformat(),
    }

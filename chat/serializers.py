"""The protocol's shapes of conversations and messages (docs/protocol.md)."""

from .models import Conversation, Message


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
        "error": message.error,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "reasoning_tokens": message.reasoning_tokens,
        "thinking_ms": message.thinking_ms,
        "created_at": message.created_at.isoformat(),
        "finished_at": message.finished_at.isoformat() if message.finished_at else None,
    }
    if message.versions is not None:  # known where they are read: snapshots and `sent` (chat.selectors)
        found["versions"] = message.versions
    return found


def conversation_json(conversation: Conversation) -> dict:
    return {
        "id": conversation.id,
        "title": conversation.title or "New chat",
        "model": conversation.model.slug,
        "updated_at": conversation.updated_at.isoformat(),
    }

"""What every open tab is told, through live/publish.py. Sent after commit by the callers."""

from catalog.models import AIModel
from live.publish import event_send, frame_send, user_group
from quotas.selectors import Counted, quota_json

from .models import Conversation, Message
from .serializers import conversation_json, message_json


def conversation_changed(conversation: Conversation, *, deleted: bool = False) -> None:
    """Every tab of the user keeps its sidebar current."""
    event_send(
        user_group(conversation.user_id), {"type": "chat.conversation", "conversation": conversation_json(conversation), "deleted": deleted}
    )


def conversation_deleted(*, user_id: int, snapshot: dict) -> None:
    event_send(user_group(user_id), {"type": "chat.conversation", "conversation": snapshot, "deleted": True})


def quota_changed(user, model: AIModel, counted: Counted | None = None) -> None:
    """Every tab of the user updates `model` in its picker; computed once, here, not per tab,
    or known already from the reservation that just `counted` a reply."""
    models = counted.as_json(user) if counted else quota_json(user, model)
    event_send(user_group(user.id), {"type": "chat.quota", "models": models, "partial": True})


def messages_added(conversation: Conversation, messages: list[Message]) -> None:
    quota_changed(conversation.user, messages[-1].model, messages[-1].counted)
    conversation_changed(conversation)
    frame_send(
        conversation.id,
        {"type": "messages", "conversation": conversation_json(conversation), "messages": [message_json(m) for m in messages]},
    )


def branch_switched(conversation: Conversation) -> None:
    """Every tab on the conversation shows the branch now on screen in the one that switched."""
    frame_send(conversation.id, {"type": "branch", "conversation_id": conversation.id, "leaf_id": conversation.current_leaf_id})


def reply_status(reply: Message, status: str, detail: str = "") -> None:
    frame_send(reply.conversation_id, {"type": "status", "message_id": reply.id, "status": status, "detail": detail})


def reply_done(reply: Message, *, refunded: bool) -> None:
    frame_send(reply.conversation_id, {"type": "done", "message": message_json(reply)})
    if refunded:
        quota_changed(reply.conversation.user, reply.model)

"""Every write to conversations and messages from the web side goes through a function here.

The reply itself is written by the generation worker (generation/reply.py),
which these actions enqueue through `_enqueue`, after commit.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from catalog.context import message_fits
from catalog.models import AIModel
from quotas.services import QuotaRefused, quota_refund, quota_reserve

from . import events
from .models import LIVE, Conversation, Message
from .selectors import branch_leaf, conversation_get_for_user, message_get_for_user, message_versions
from .serializers import conversation_json

log = logging.getLogger(__name__)


class ActionRefused(Exception):
    """Bad input or a refusal; `code` is for programs, the message is for people."""

    def __init__(self, code: str, message: str, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra

    def as_json(self) -> dict:
        return {"type": "error", "code": self.code, "message": str(self), **self.extra}


def _clean_text(text: object) -> str:
    if not isinstance(text, str):
        raise ActionRefused("invalid", "The message must be text.")
    if "\x00" in text:
        raise ActionRefused("invalid", "The message contains a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ActionRefused("invalid", "The message is not valid UTF-8.") from None
    if not text.strip():
        raise ActionRefused("empty", "Type a message first.")
    if len(text) > settings.MAX_MESSAGE_CHARS:
        raise ActionRefused("too_long", f"The message is {len(text):,} characters; the limit is {settings.MAX_MESSAGE_CHARS:,}.")
    return text


def _model_get(slug: object) -> AIModel:
    """An enabled model; anything else (not text, a NUL byte PostgreSQL would refuse, unknown, disabled) is refused."""
    usable = isinstance(slug, str) and len(slug) <= 64 and "\x00" not in slug
    model = AIModel.objects.filter(slug=slug, enabled=True).first() if usable else None
    if model is None:
        raise ActionRefused("unknown_model", f"There is no model called {str(slug)[:60]!r}.")
    return model


@contextmanager
def _quota_explained(user) -> Iterator[None]:
    """Turn a quota refusal into one that offers another model, after the transaction (and its locks) ended."""
    try:
        yield
    except QuotaRefused as exc:
        raise _quota_refusal(user, exc) from None


def _quota_refusal(user, exc: QuotaRefused) -> ActionRefused:
    suggestion = exc.alternative(user)
    message = str(exc)
    if suggestion:
        left = "unlimited" if suggestion.left is None else f"{suggestion.left} left"
        message += f" Switch to {suggestion.model.name} ({left})?"
    return ActionRefused(
        "quota_exhausted",
        message,
        model=exc.model.slug,
        resets_at=exc.resets_at.isoformat() if exc.resets_at else None,
        switch_to=suggestion.model.slug if suggestion else None,
    )


def _enqueue(reply: Message) -> None:
    """The one place the web side starts a generation (tasks call services, not the reverse).

    With the broker down the reply stays pending and `reply.queued` is False: the
    message is kept, and the reaper enqueues it again once the broker is back.
    """
    from generation.tasks import reply_generate

    try:
        reply_generate.delay(reply.id)
    except Exception:
        log.warning("could not enqueue; the reaper will retry", exc_info=True, extra={"reply_id": reply.id})
        reply.queued = False


def _reply_start(*, user, conversation: Conversation, parent: Message | None, model: AIModel, new_conversation: bool = False) -> Message:
    """Store a pending reply to `parent`, reserve its quota and enqueue it; inside the caller's transaction.

    The reply ends the branch on screen: the conversation's current leaf.
    """
    live = Message.objects.filter(conversation__user=user, role=Message.Role.ASSISTANT, status__in=LIVE).count()
    if live >= settings.MAX_LIVE_REPLIES:
        raise ActionRefused("busy", f"You already have {live} answers being written. Wait for one to finish or stop it.")
    reply = Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.ASSISTANT, model=model, status=Message.Status.PENDING
    )
    quota_reserve(user=user, model=model, reply_id=reply.id)
    conversation.current_leaf = reply
    if new_conversation:
        conversation.save(update_fields=["current_leaf"])
    else:
        # The model picked last sticks to the conversation, which moves to the top of the list.
        conversation.model = model
        conversation.save(update_fields=["model", "current_leaf", "updated_at"])
    transaction.on_commit(lambda: _enqueue(reply))
    return reply


def _check_fits(text: str, model: AIModel) -> None:
    if not message_fits(text, context_window=model.context_window, max_output_tokens=model.max_output_tokens, tokenizer=model.tokenizer):
        raise ActionRefused("too_long", f"The message is too long for {model.name}'s context window.")


def _lock_user(user) -> None:
    """Serialise one user's sends, so the cap on live replies cannot be raced past.

    Also refuses a user deactivated, or whose password changed, since their socket
    opened: the row must still be active and carry the password hash it had then.
    """
    locked = get_user_model().objects.select_for_update().filter(pk=user.pk, is_active=True, password=user.password).exists()
    if not locked:
        raise ActionRefused("signed_out", "Your session has ended. Sign in again to go on.")


def message_send(
    *, user, conversation_id: int | None, model_slug: object, text: object, parent_id: object = None
) -> tuple[Message, Message]:
    """Store the user's message and a pending reply, reserving quota, in one transaction.

    The message follows `parent_id`, the last message the sending tab shows, so that the
    model gets the branch on screen even in a tab that missed a switch; by default it
    follows the conversation's current leaf. Raises ActionRefused with nothing stored
    when the input is bad or the quota is spent.
    """
    text = _clean_text(text)
    model = _model_get(model_slug)
    _check_fits(text, model)
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        if conversation_id is None:
            conversation = Conversation.objects.create(user=user, model=model, title=title_from(text))
        else:
            conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
            conversation.user = user  # known: the announcement after commit need not fetch it again
        parent = conversation.current_leaf_id
        if parent_id is not None and parent_id != parent:
            parent = message_get_for_user(user=user, message_id=parent_id).id
            if conversation_id is None or not conversation.messages.filter(id=parent).exists():
                raise ActionRefused("invalid", "That message is not in this conversation.")
        user_message = Message.objects.create(conversation=conversation, parent_id=parent, role=Message.Role.USER, model=model, text=text)
        reply = _reply_start(
            user=user, conversation=conversation, parent=user_message, model=model, new_conversation=conversation_id is None
        )
        transaction.on_commit(lambda: events.messages_added(conversation, [user_message, reply]))
    return user_message, reply


def title_from(text: str) -> str:
    """A title from the first message; no model call, so nothing is counted."""
    words = " ".join(text.split())
    return words if len(words) <= 60 else words[:57].rsplit(" ", 1)[0] + "…"


def _message_to_branch(user, message_id: object, role: str) -> Message:
    """The user's message of `role` to branch from; refused while an answer in its conversation is being written."""
    message = message_get_for_user(user=user, message_id=message_id)
    if message.role != role:
        raise ActionRefused("invalid", "Only your own messages can be edited." if role == Message.Role.USER else "That is not an answer.")
    if message.conversation.messages.filter(status__in=LIVE).exists():
        raise ActionRefused("busy", "Wait for the answer to finish, or stop it first.")
    return message


def _with_versions(message: Message) -> Message:
    message.versions = message_versions(message=message)
    return message


def reply_regenerate(*, user, message_id: object, model_slug: object = None) -> Message:
    """Answer the same question again; the old answer stays as a version. Counts as a message."""
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        old = _message_to_branch(user, message_id, Message.Role.ASSISTANT)
        # The old reply's model unless another is named; either way it must be enabled now.
        model = _model_get(model_slug or old.model.slug)
        reply = _reply_start(user=user, conversation=old.conversation, parent=old.parent, model=model)
        transaction.on_commit(lambda: events.messages_added(old.conversation, [reply]))
    return _with_versions(reply)


def message_edit(*, user, message_id: object, text: object, model_slug: object = None) -> tuple[Message, Message]:
    """Ask any earlier question again with new text, starting a new branch from there. Counts as a message.

    The old question and everything after it stay, as the other version.
    """
    text = _clean_text(text)
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        old = _message_to_branch(user, message_id, Message.Role.USER)
        model = _model_get(model_slug or old.model.slug)
        _check_fits(text, model)
        user_message = Message.objects.create(
            conversation=old.conversation, parent_id=old.parent_id, role=Message.Role.USER, model=model, text=text
        )
        reply = _reply_start(user=user, conversation=old.conversation, parent=user_message, model=model)
        transaction.on_commit(lambda: events.messages_added(old.conversation, [user_message, reply]))
    return _with_versions(user_message), reply


def reply_continue(*, user, message_id: object) -> Message:
    """Go on with an answer that was stopped or cut off, as a new answer after it. Counts as a message.

    The model gets the partial answer as the last assistant turn and is asked to continue
    (generation/reply.py, context_for); the page shows the continuation joined to it.
    """
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        partial = _message_to_branch(user, message_id, Message.Role.ASSISTANT)
        cut = partial.incomplete and partial.finish_reason != "content_filter"
        if not partial.text or not (cut or partial.status == Message.Status.STOPPED):
            raise ActionRefused("invalid", "Only an answer that was stopped or cut off can be continued.")
        if partial.children.exists():
            raise ActionRefused("invalid", "Only the last answer of a branch can be continued.")
        model = _model_get(partial.model.slug)
        reply = _reply_start(user=user, conversation=partial.conversation, parent=partial, model=model)
        transaction.on_commit(lambda: events.messages_added(partial.conversation, [reply]))
    return reply


def branch_switch(*, user, message_id: object) -> Conversation:
    """Show the branch through another version of a message, down to its newest answer."""
    with transaction.atomic():
        _lock_user(user)  # serialised with sends, which add to the branch on screen
        message = message_get_for_user(user=user, message_id=message_id)
        conversation = message.conversation
        if conversation.messages.filter(status__in=LIVE).exists():
            raise ActionRefused("busy", "Wait for the answer to finish, or stop it first.")
        conversation.current_leaf_id = branch_leaf(message=message)
        conversation.save(update_fields=["current_leaf"])  # a switch does not move the chat up the list
        transaction.on_commit(lambda: events.branch_switched(conversation))
    return conversation


def reply_stop(*, user, message_id: object) -> None:
    """Stop a live reply. The worker keeps what was written so far; it counts if any text came."""
    reply = message_get_for_user(user=user, message_id=message_id)
    with transaction.atomic():
        was_pending = Message.objects.filter(id=reply.id, status=Message.Status.PENDING).update(
            status=Message.Status.STOPPED, finished_at=timezone.now()
        )
        if not was_pending:
            Message.objects.filter(id=reply.id, status=Message.Status.STREAMING).update(status=Message.Status.STOPPED)
            return
        # Never started: nothing was produced, so nothing is spent.
        refunded = quota_refund(reply_id=reply.id, reason="stopped before it started")
    reply = Message.objects.select_related("model", "conversation__user").get(id=reply.id)
    events.reply_done(reply, refunded=refunded)


def conversation_rename(*, user, conversation_id: object, title: object) -> Conversation:
    if not isinstance(title, str) or not title.strip() or len(title) > 200 or "\x00" in title:
        raise ActionRefused("invalid", "A title is 1 to 200 characters.")
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    conversation.title = title.strip()
    conversation.save(update_fields=["title"])  # a rename does not move the chat up the list
    events.conversation_changed(conversation)
    return conversation


def conversation_delete(*, user, conversation_id: object) -> None:
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    with transaction.atomic():
        # Live replies would be orphaned: give their quota back first.
        for reply_id in conversation.messages.filter(status=Message.Status.PENDING).values_list("id", flat=True):
            quota_refund(reply_id=reply_id, reason="conversation deleted")
        snapshot = conversation_json(conversation)
        conversation.delete()
    transaction.on_commit(lambda: events.conversation_deleted(user_id=user.id, snapshot=snapshot))

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

from accounts.models import INSTRUCTIONS_MAX_CHARS, Profile
from catalog.context import message_fits
from catalog.models import AIModel
from quotas.selectors import efforts_allowed
from quotas.services import QuotaRefused, quota_refund, quota_reserve

from . import events
from .models import LIVE, Conversation, Message
from .selectors import conversation_get_for_user, instructions_for, message_get_for_user
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


def _effort_choose(user, model: AIModel, requested: object, remembered: str = "") -> str:
    """The reasoning effort to ask `model` for: the one picked, else the chat's last, else medium.

    Fail closed: an effort the model does not take, or the user's plan does not allow, is refused.
    """
    if requested in (None, ""):
        if not model.efforts:
            return ""
        allowed = [e for e in model.efforts if e in efforts_allowed(user)]
        for choice in (remembered, "medium", *allowed):
            if choice in allowed:
                return choice
        raise ActionRefused("effort_not_allowed", f"Your plan allows no reasoning effort for {model.name}.")
    if not isinstance(requested, str) or requested not in model.efforts:
        if not model.efforts:
            raise ActionRefused("invalid", f"{model.name} takes no reasoning effort.")
        raise ActionRefused("invalid", f"{model.name} takes a reasoning effort of {', '.join(model.efforts)}.")
    allowed = [e for e in model.efforts if e in efforts_allowed(user)]
    if requested not in allowed:
        others = f" Your plan allows {', '.join(allowed)}." if allowed else ""
        raise ActionRefused(
            "effort_not_allowed", f"{requested.capitalize()} reasoning effort is not on your plan for {model.name}.{others}"
        )
    return requested


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


def _reply_start(*, user, conversation: Conversation, model: AIModel, effort: str, new_conversation: bool = False) -> Message:
    """Store a pending reply, reserve its quota and enqueue it; inside the caller's transaction."""
    live = Message.objects.filter(conversation__user=user, role=Message.Role.ASSISTANT, status__in=LIVE).count()
    if live >= settings.MAX_LIVE_REPLIES:
        raise ActionRefused("busy", f"You already have {live} answers being written. Wait for one to finish or stop it.")
    reply = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, model=model, status=Message.Status.PENDING, reasoning_effort=effort
    )
    quota_reserve(user=user, model=model, reply_id=reply.id)
    if not new_conversation:
        # The model (and effort) picked last stick to the conversation, which moves to the top of the list.
        conversation.model = model
        conversation.reasoning_effort = effort or conversation.reasoning_effort
        conversation.save(update_fields=["model", "reasoning_effort", "updated_at"])
    # A new chat starts on the model picked last (chat.views); no write when it is the same.
    Profile.objects.filter(user=user).exclude(last_model=model).update(last_model=model)
    transaction.on_commit(lambda: _enqueue(reply))
    return reply


def _check_fits(text: str, model: AIModel, instructions: str = "") -> None:
    fits = message_fits(
        text,
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        tokenizer=model.tokenizer,
        instructions=instructions,
    )
    if not fits:
        with_instructions = " with your custom instructions" if instructions else ""
        raise ActionRefused("too_long", f"The message is too long{with_instructions} for {model.name}'s context window.")


def _lock_user(user) -> None:
    """Serialise one user's sends, so the cap on live replies cannot be raced past.

    Also refuses a user deactivated, or whose password changed, since their socket
    opened: the row must still be active and carry the password hash it had then.
    """
    locked = get_user_model().objects.select_for_update().filter(pk=user.pk, is_active=True, password=user.password).exists()
    if not locked:
        raise ActionRefused("signed_out", "Your session has ended. Sign in again to go on.")


def message_send(*, user, conversation_id: int | None, model_slug: object, text: object, effort: object = None) -> tuple[Message, Message]:
    """Store the user's message and a pending reply, reserving quota, in one transaction.

    Raises ActionRefused with nothing stored when the input is bad or the quota is spent.
    """
    text = _clean_text(text)
    model = _model_get(model_slug)
    _check_fits(text, model)
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        if conversation_id is None:
            chosen = _effort_choose(user, model, effort)
            conversation = Conversation(user=user, model=model, title=title_from(text), reasoning_effort=chosen)
        else:
            conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
            conversation.user = user  # known: the announcement after commit need not fetch it again
            chosen = _effort_choose(user, model, effort, conversation.reasoning_effort)
        _check_fits(text, model, instructions_for(conversation))
        if conversation_id is None:
            conversation.save()
        user_message = Message.objects.create(conversation=conversation, role=Message.Role.USER, model=model, text=text)
        reply = _reply_start(user=user, conversation=conversation, model=model, effort=chosen, new_conversation=conversation_id is None)
        transaction.on_commit(lambda: events.messages_added(conversation, [user_message, reply]))
    return user_message, reply


def model_pick(*, user, model_slug: object) -> None:
    """Remember the model the user picked last: a new chat starts on it (chat.selectors.model_for_new_chat)."""
    model = _model_get(model_slug)
    Profile.objects.filter(user=user).exclude(last_model=model).update(last_model=model)


def title_from(text: str) -> str:
    """A title from the first message; no model call, so nothing is counted."""
    words = " ".join(text.split())
    return words if len(words) <= 60 else words[:57].rsplit(" ", 1)[0] + "…"


def _last_turn(user, message_id: object, role: str) -> Message:
    message = message_get_for_user(user=user, message_id=message_id)
    last = message.conversation.messages.filter(replaced=False, role=role).last()
    if message.role != role or last is None or last.id != message.id:
        raise ActionRefused("not_last", "Only the last message of a conversation can be changed.")
    if message.conversation.messages.filter(status__in=LIVE).exists():
        raise ActionRefused("busy", "Wait for the answer to finish, or stop it first.")
    return message


def reply_regenerate(*, user, message_id: object, model_slug: object = None, effort: object = None) -> Message:
    """Answer the last user message again; the old answer is kept but hidden. Counts as a message."""
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        old = _last_turn(user, message_id, Message.Role.ASSISTANT)
        # The old reply's model unless another is named; either way it must be enabled now.
        model = _model_get(model_slug or old.model.slug)
        chosen = _effort_choose(user, model, effort, old.conversation.reasoning_effort)
        Message.objects.filter(id=old.id).update(replaced=True)
        reply = _reply_start(user=user, conversation=old.conversation, model=model, effort=chosen)
        transaction.on_commit(lambda: events.messages_added(old.conversation, [reply]))
    return reply


def message_edit(*, user, message_id: object, text: object, model_slug: object = None, effort: object = None) -> tuple[Message, Message]:
    """Replace the last user message with new text and answer it. Counts as a message."""
    text = _clean_text(text)
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        old = _last_turn(user, message_id, Message.Role.USER)
        model = _model_get(model_slug or old.model.slug)
        chosen = _effort_choose(user, model, effort, old.conversation.reasoning_effort)
        _check_fits(text, model, instructions_for(old.conversation))
        old.conversation.messages.filter(id__gte=old.id).update(replaced=True)
        user_message = Message.objects.create(conversation=old.conversation, role=Message.Role.USER, model=model, text=text)
        reply = _reply_start(user=user, conversation=old.conversation, model=model, effort=chosen)
        transaction.on_commit(lambda: events.messages_added(old.conversation, [user_message, reply]))
    return user_message, reply


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


def conversation_instructions_set(*, user, conversation_id: object, instructions: object) -> Conversation:
    """This chat's custom instructions, sent with its next replies after the user's own; empty clears them."""
    if not isinstance(instructions, str) or len(instructions) > INSTRUCTIONS_MAX_CHARS or "\x00" in instructions:
        raise ActionRefused("invalid", f"Instructions are text of at most {INSTRUCTIONS_MAX_CHARS:,} characters.")
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    conversation.instructions = instructions.strip()
    conversation.save(update_fields=["instructions"])  # like a rename, it does not move the chat up the list
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

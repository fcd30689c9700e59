"""Every write to conversations and messages from the web side goes through a function here.

The reply itself is written by the generation worker (generation/reply.py),
which these actions enqueue through `_enqueue`, after commit.
"""

import datetime as dt
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Model
from django.http import Http404
from django.utils import timezone

from accounts.models import INSTRUCTIONS_MAX_CHARS, Profile
from catalog.context import REQUEST_OVERHEAD, ContextTooLarge, Turn, context_trim, instructions_tokens, message_fits, turn_size
from catalog.models import AIModel
from quotas.models import Budget
from quotas.selectors import Rules, efforts_allowed, rules_and_budget_from, rules_and_budget_sql
from quotas.services import QuotaHold, QuotaRefused, quota_hold, quota_refund, quota_refusal_notify, quota_reserve

from . import events, files
from .models import LIVE, Attachment, Conversation, Message
from .selectors import (
    as_id,
    branch_leaf,
    branch_turns,
    conversation_get_for_user,
    instructions_for,
    message_get_for_user,
    message_versions,
)
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


def _clean_text(text: object, *, files_attached: bool = False) -> str:
    """The message's text; it may be blank only when files are attached."""
    if not isinstance(text, str):
        raise ActionRefused("invalid", "The message must be text.")
    if "\x00" in text:
        raise ActionRefused("invalid", "The message contains a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ActionRefused("invalid", "The message is not valid UTF-8.") from None
    if not text.strip() and not files_attached:
        raise ActionRefused("empty", "Type a message first.")
    if len(text) > settings.MAX_MESSAGE_CHARS:
        raise ActionRefused("too_long", f"The message is {len(text):,} characters; the limit is {settings.MAX_MESSAGE_CHARS:,}.")
    return text


def _model_get(slug: object) -> AIModel:
    """An enabled model; anything else (not text, a NUL byte PostgreSQL would refuse, unknown, disabled) is refused."""
    model = AIModel.objects.filter(slug=slug, enabled=True).first() if _model_slug_usable(slug) else None
    if model is None:
        raise _unknown_model(slug)
    return model


def _model_slug_usable(slug: object) -> bool:
    return isinstance(slug, str) and len(slug) <= 64 and "\x00" not in slug


def _unknown_model(slug: object) -> ActionRefused:
    return ActionRefused("unknown_model", f"There is no model called {str(slug)[:60]!r}.")


def _effort_choose(user, model: AIModel, requested: object, remembered: str = "", *, plan_efforts: list[str] | None = None) -> str:
    """The reasoning effort to ask `model` for: the one picked, else the chat's last, else medium.

    Fail closed: an effort the model does not take, or the user's plan (whose efforts are
    `plan_efforts` when already read) does not allow, is refused.
    """
    on_plan = lambda: efforts_allowed(user) if plan_efforts is None else plan_efforts  # noqa: E731
    if requested in (None, ""):
        if not model.efforts:
            return ""
        allowed = [e for e in model.efforts if e in on_plan()]
        for choice in (remembered, "medium", *allowed):
            if choice in allowed:
                return choice
        raise ActionRefused("effort_not_allowed", f"Your plan allows no reasoning effort for {model.name}.")
    if not isinstance(requested, str) or requested not in model.efforts:
        if not model.efforts:
            raise ActionRefused("invalid", f"{model.name} takes no reasoning effort.")
        raise ActionRefused("invalid", f"{model.name} takes a reasoning effort of {', '.join(model.efforts)}.")
    allowed = [e for e in model.efforts if e in on_plan()]
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
    quota_refusal_notify(user=user, refusal=exc)
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


# Raw SQL: building the ORM's count with its join cost more CPU than PostgreSQL's work, a fifth of a send.
_LIVE_COUNT_SQL = f"""
SELECT count(*) FROM {Message._meta.db_table} m JOIN {Conversation._meta.db_table} c ON c.id = m.conversation_id
WHERE c.user_id = %(live_user)s AND m.role = %(live_role)s AND m.status = ANY(%(live_status)s)
"""


def _live_params(user) -> dict:
    return {"live_user": user.pk, "live_role": Message.Role.ASSISTANT, "live_status": list(LIVE)}


def _live_cap_check(user, live: int | None = None) -> None:
    """Refuse a reply past the user's cap on answers being written (`live`, else counted now); under the
    user's lock (_lock_user)."""
    if live is None:
        with connection.cursor() as cursor:
            cursor.execute(_LIVE_COUNT_SQL, _live_params(user))
            (live,) = cursor.fetchone()
    if live >= settings.MAX_LIVE_REPLIES:
        raise ActionRefused("busy", f"You already have {live} answers being written. Wait for one to finish or stop it.")


def _reply_start(*, user, conversation: Conversation, parent: Message | None, model: AIModel, effort: str) -> Message:
    """Store a pending reply to `parent`, reserve its quota and enqueue it; inside the caller's transaction."""
    _live_cap_check(user)
    reply = _pending_reply(conversation=conversation, parent_id=parent.id if parent else None, model=model, effort=effort)
    reply.save(force_insert=True)
    _reply_count(user=user, conversation=conversation, reply=reply)
    # A new chat starts on the model picked last (chat.views); no write when it is the same.
    Profile.objects.filter(user=user).exclude(last_model=model).update(last_model=model)
    return reply


def _pending_reply(*, conversation: Conversation, parent_id: int | None, model: AIModel, effort: str, id: int | None = None) -> Message:
    """A reply waiting for its worker, not yet stored."""
    return Message(
        id=id,
        conversation=conversation,
        parent_id=parent_id,
        role=Message.Role.ASSISTANT,
        model=model,
        status=Message.Status.PENDING,
        reasoning_effort=effort,
    )


def _leaf_move(conversation: Conversation, reply: Message) -> None:
    """The reply ends the branch on screen; the model (and effort) picked last stick to the conversation,
    which moves to the top of the list (the caller stores it)."""
    conversation.current_leaf, conversation.model = reply, reply.model
    conversation.reasoning_effort = reply.reasoning_effort or conversation.reasoning_effort


def _reply_count(*, user, conversation: Conversation, reply: Message) -> None:
    """Reserve the stored reply's quota, end the branch on screen with it (the conversation's current
    leaf) and enqueue it after commit; inside the caller's transaction."""
    parent, model = reply.parent_id, reply.model
    reply.counted = quota_reserve(
        user=user, model=model, reply_id=reply.id, prompt_tokens=lambda: _prompt_tokens(conversation, parent, model)
    )
    _leaf_move(conversation, reply)
    conversation.save(update_fields=["model", "reasoning_effort", "current_leaf", "updated_at"])
    transaction.on_commit(lambda: _enqueue(reply))


def _prompt_tokens(conversation: Conversation, parent_id: int | None, model: AIModel) -> int | None:
    """The tokens the reply's prompt will have: its branch, files and instructions, trimmed as the worker trims them.

    Asked only when the user has a token or money budget, to hold the reply's worst case.
    """
    turns = branch_turns(conversation_id=conversation.id, leaf_id=parent_id, model=model)
    instructions = instructions_for(conversation)
    window, output, tokenizer = model.context_window, model.max_output_tokens, model.tokenizer
    try:
        kept = context_trim(turns, context_window=window, max_output_tokens=output, tokenizer=tokenizer, instructions=instructions)
    except ContextTooLarge:
        return None  # the worker will refuse it; meanwhile hold the most a prompt can take
    return REQUEST_OVERHEAD + instructions_tokens(instructions, tokenizer) + sum(turn_size(turn, tokenizer) for turn in kept)


def _check_fits(turn: Turn, model: AIModel, instructions: str = "") -> None:
    fits = message_fits(
        turn,
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        tokenizer=model.tokenizer,
        instructions=instructions,
    )
    if not fits:
        what = "The message with its files" if turn.get("images") or turn["content"].startswith("<file") else "The message"
        with_instructions = " with your custom instructions" if instructions else ""
        raise ActionRefused("too_long", f"{what} is too long{with_instructions} for {model.name}'s context window.")


def _user_turn(text: str, attachments: list[Attachment], model: AIModel) -> Turn:
    return files.turn_for(role=Message.Role.USER, text=text, attachments=attachments, model=model)


def _check_images(attachments: list[Attachment], model: AIModel) -> None:
    images = [a.name for a in attachments if a.kind == Attachment.Kind.IMAGE]
    if images and not model.supports_images:
        raise ActionRefused(
            "images_unsupported", f"{model.name} does not take images. Remove {images[0]} or pick a model that takes images."
        )


def _attachment_ids(value: object) -> list[int]:
    if value is None:
        return []
    limit = settings.ATTACHMENTS_PER_MESSAGE
    if not isinstance(value, list) or len(value) > limit or len(set(map(str, value))) != len(value):
        raise ActionRefused("invalid", f"A message can carry up to {limit} different attachments.")
    try:
        return [as_id(v) for v in value]
    except Http404:
        raise ActionRefused("invalid", "Attachments are named by their ids.") from None


def _attachments_unsent(user, ids: list[int]) -> list[Attachment]:
    """The user's attachments not yet sent, in the order named; another user's id, or one sent already, is not found."""
    if not ids:
        return []
    found = {a.id: a for a in Attachment.objects.filter(id__in=ids, user=user, message=None)}
    if len(found) != len(ids):
        raise ActionRefused("not_found", "An attached file was not found (or was sent already). Attach it again.")
    attachments = [found[i] for i in ids]
    total, limit = sum(a.size for a in attachments), settings.ATTACHMENTS_MAX_MESSAGE_BYTES
    if total > limit:
        raise ActionRefused("too_long", f"The files come to {files.size_label(total)}; one message may carry {files.size_label(limit)}.")
    return attachments


def _attachments_link(user, attachments: list[Attachment], message: Message) -> None:
    """Link the files to their message, inside the send's transaction.

    Conditional on still being unsent: two sends racing with the same file cannot
    both take it; the loser's whole transaction, quota reservation included, rolls back.
    """
    ids = [a.id for a in attachments]
    if ids and Attachment.objects.filter(id__in=ids, user=user, message=None).update(message=message) != len(ids):
        raise ActionRefused("not_found", "An attached file was sent with another message. Attach it again.")
    message.attachment_list = attachments


@dataclass(frozen=True)
class _Locked:
    """What the statement that locks the user also read: their own custom instructions, ids for new
    messages (and a new conversation), the enabled model named (None: no such model, or none named),
    the user's quota rules for it and budget (None: no model named), and the user's conversation named
    (None: not theirs, or none named)."""

    instructions: str
    message_ids: list[int]
    conversation_id: int | None
    model: AIModel | None
    rules_and_budget: tuple[Rules, Budget | None] | None
    conversation: Conversation | None


_USER = get_user_model()._meta.db_table
_PROFILE = Profile._meta.db_table
_MODEL_FIELDS = [f.attname for f in AIModel._meta.concrete_fields]
_PROFILE_FIELDS = [f.attname for f in Profile._meta.concrete_fields]
_CONVERSATION_FIELDS = [f.attname for f in Conversation._meta.concrete_fields]

# FOR NO KEY UPDATE, not FOR UPDATE: it serialises this user's sends (and waits for a deactivation
# or password change) but lets the foreign-key checks of a worker settling one of their answers
# (ledger entry → auth_user, FOR KEY SHARE) through. With FOR UPDATE the settle, holding the budget
# counter, waited on this lock while this send waited on the budget counter: a deadlock.
# In the same round trip a send reads the model it names (enabled, as it is now), remembers it as the
# one picked last (chat.views starts a new chat on it; no write when it is the same, and the rollback
# forgets it when the send is refused), reads the user's profile (instructions, time zone), and takes
# ids for the messages it stores (so a reply names its question before either is stored), and the
# user's quota rules for the model and their budget, as quota_reserve would read them after the lock.
# The conversation named is locked after the user (its condition waits for `locked`), so a send that
# waited for another gets the conversation as that one left it: locking a row reads its latest version.
_LOCK_SQL = f"""
WITH locked AS (
    SELECT id FROM {_USER} WHERE id = %(user)s AND is_active AND password = %(password)s FOR NO KEY UPDATE
),
model AS (
    SELECT {", ".join(_MODEL_FIELDS)} FROM {AIModel._meta.db_table} WHERE slug = %(slug)s AND enabled
),
conversation AS (
    SELECT {", ".join(_CONVERSATION_FIELDS)} FROM {Conversation._meta.db_table}
    WHERE id = %(conversation_id)s AND user_id = (SELECT id FROM locked)
    FOR NO KEY UPDATE
),
remembered AS (
    UPDATE {_PROFILE} SET last_model_id = model.id FROM locked, model
    WHERE user_id = locked.id AND last_model_id IS DISTINCT FROM model.id
)
SELECT ARRAY(SELECT nextval(pg_get_serial_sequence('{Message._meta.db_table}', 'id')) FROM generate_series(1, %(ids)s)),
       CASE WHEN %(conversation)s THEN nextval(pg_get_serial_sequence('{Conversation._meta.db_table}', 'id')) END,
       model.*, profile.*, conversation.*, rules.*
FROM locked
LEFT JOIN model ON true
LEFT JOIN (SELECT {", ".join(_PROFILE_FIELDS)} FROM {_PROFILE}) AS profile ON profile.user_id = locked.id
LEFT JOIN conversation ON true
LEFT JOIN ({rules_and_budget_sql("COALESCE((SELECT id FROM model), 0)")}) AS rules ON %(slug)s::text IS NOT NULL
"""


def _lock_user(
    user,
    *,
    model_slug: str | None = None,
    message_ids: int = 0,
    new_conversation: bool = False,
    conversation_id: int | None = None,
    now: dt.datetime | None = None,
) -> _Locked:
    """Serialise one user's sends, so the cap on live replies cannot be raced past.

    Also refuses a user deactivated, or whose password changed, since their socket
    opened: the row must still be active and carry the password hash it had then.
    With `model_slug`, read that model, and the user's rules for it as at `now`, and remember it
    as the one the user picked last. Takes `message_ids` ids, and one for a conversation if asked.
    With `conversation_id`, lock that conversation of the user's and read it.
    """
    params = {"user": user.pk, "password": user.password, "slug": model_slug, "ids": message_ids}
    params.update(conversation=new_conversation, conversation_id=conversation_id, now=now or timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, params)
        row = cursor.fetchone()
    if row is None:
        raise ActionRefused("signed_out", "Your session has ended. Sign in again to go on.")
    ids, new_id, row = row[0], row[1], row[2:]
    model, row = row[: len(_MODEL_FIELDS)], row[len(_MODEL_FIELDS) :]
    profile, row = row[: len(_PROFILE_FIELDS)], row[len(_PROFILE_FIELDS) :]
    conversation, rules = row[: len(_CONVERSATION_FIELDS)], row[len(_CONVERSATION_FIELDS) :]
    found = AIModel.from_db(connection.alias, _MODEL_FIELDS, model) if model[0] is not None else None
    rules_and_budget = rules_and_budget_from(rules) if model_slug is not None else None
    if conversation[0] is not None:
        conversation = Conversation.from_db(connection.alias, _CONVERSATION_FIELDS, conversation)
        conversation.user = user
    else:
        conversation = None
    if profile[0] is None:
        return _Locked("", ids, new_id, found, rules_and_budget, conversation)
    # Read fresh under the lock: the announcement after commit takes the user's time zone from it.
    user.profile = Profile.from_db(connection.alias, _PROFILE_FIELDS, profile)
    if found is not None:
        user.profile.last_model_id = found.id  # as `remembered` left it
    return _Locked(user.profile.instructions, ids, new_id, found, rules_and_budget, conversation)


def _rows_json(objs: Sequence[Model]) -> str:
    """`objs` (their ids set) as the ORM's INSERT would write them (dates set, values prepared), as JSON
    for jsonb_populate_recordset: one parameter, so the statement is the same for any number of rows."""
    fields = objs[0]._meta.concrete_fields
    rows = []
    for obj in objs:
        rows.append({f.column: f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields})
        obj._state.adding, obj._state.db = False, connection.alias
    return json.dumps(rows, default=dt.datetime.isoformat)


_CONVERSATION_SQL = f"""
INSERT INTO {Conversation._meta.db_table} SELECT * FROM jsonb_populate_recordset(NULL::{Conversation._meta.db_table}, %(c_rows)s)
"""
_MESSAGES_SQL = f"""
INSERT INTO {Message._meta.db_table} SELECT * FROM jsonb_populate_recordset(NULL::{Message._meta.db_table}, %(m_rows)s)
"""

_LEAF_SQL = f"""
UPDATE {Conversation._meta.db_table} SET model_id = %(c_model)s, reasoning_effort = %(c_effort)s,
       current_leaf_id = %(c_leaf)s, updated_at = %(c_now)s
WHERE id = %(c_id)s
"""


def _send_store(*, user, conversation: Conversation, new: bool, messages: list[Message], hold: QuotaHold) -> tuple[int, tuple | None]:
    """Store a send in one statement, under the user's lock: the conversation (new, or moved to its new
    leaf), the messages, and the reply's reservation. Returns the live replies counted before it and
    the reservation's row (QuotaHold.counted); the caller refuses, rolling it all back, past either."""
    params: dict[str, Any]
    if new:
        conversation_sql, params = _CONVERSATION_SQL, {"c_rows": _rows_json([conversation])}
    else:
        conversation_sql = _LEAF_SQL
        params = {"c_model": conversation.model_id, "c_effort": conversation.reasoning_effort, "c_leaf": conversation.current_leaf_id}
        params.update(c_now=conversation.updated_at, c_id=conversation.id)
    params.update(m_rows=_rows_json(messages), **_live_params(user), **hold.params)
    sql = f"""
    WITH live AS ({_LIVE_COUNT_SQL}), conversation AS ({conversation_sql}), messages AS ({_MESSAGES_SQL}), {hold.ctes}
    SELECT (SELECT count FROM live), counted.* FROM (SELECT) AS one
    LEFT JOIN (SELECT true, window_start, used, window_end FROM counter) AS counted ON true
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0], (row[1:] if row[1] else None)


def message_send(
    *,
    user,
    conversation_id: int | None,
    model_slug: object,
    text: object,
    history: Sequence[tuple[object, object]] = (),
    attachment_ids: object = None,
    effort: object = None,
    parent_id: object = None,
) -> tuple[Message, Message]:
    """Store the user's message, its attachments and a pending reply, reserving quota, in one transaction.

    `history` (earlier turns as (role, text), oldest first, as an API client sends
    them) starts a new conversation holding those turns as they were said; the
    worker trims them to the window like any other conversation's.
    The message follows `parent_id`, the last message the sending tab shows, so that the
    model gets the branch on screen even in a tab that missed a switch; by default it
    follows the conversation's current leaf.
    Raises ActionRefused with nothing stored when the input is bad or the quota is spent.
    """
    ids = _attachment_ids(attachment_ids)
    text = _clean_text(text, files_attached=bool(ids))
    turns = [(_clean_role(role), _clean_text(said)) for role, said in history]
    if turns and conversation_id is not None:
        raise ActionRefused("invalid", "Earlier turns can only start a new conversation.")
    if not _model_slug_usable(model_slug):
        raise _unknown_model(model_slug)
    attachments = _attachments_unsent(user, ids)
    new = conversation_id is None
    named = None if new else as_id(conversation_id)
    now = timezone.now()
    with _quota_explained(user), transaction.atomic():
        locked = _lock_user(
            user, model_slug=str(model_slug), message_ids=len(turns) + 2, new_conversation=new, conversation_id=named, now=now
        )
        model = locked.model
        if model is None or locked.rules_and_budget is None:
            raise _unknown_model(model_slug)
        # Refused here when no rule lets the user use the model, or a rolling window is full.
        hold = quota_hold(user=user, model=model, reply_id=locked.message_ids[-1], rules_and_budget=locked.rules_and_budget, now=now)
        _check_images(attachments, model)
        turn = _user_turn(text, attachments, model)
        if new:
            first = next((said for role, said in turns if role == Message.Role.USER), text)
            title = title_from(first) if first.strip() else title_from(", ".join(a.name for a in attachments))
            chosen = _effort_choose(user, model, effort, plan_efforts=hold.rules.efforts)
            conversation = Conversation(id=locked.conversation_id, user=user, model=model, title=title, reasoning_effort=chosen)
        elif locked.conversation is None:
            raise Http404("No such conversation.")  # as conversation_get_for_user: another user's is not found
        else:
            conversation = locked.conversation
            chosen = _effort_choose(user, model, effort, conversation.reasoning_effort, plan_efforts=hold.rules.efforts)
        _check_fits(turn, model, instructions_for(conversation, mine=locked.instructions))
        parent = conversation.current_leaf_id
        if parent_id is not None and parent_id != parent:
            parent = message_get_for_user(user=user, message_id=parent_id).id
            if new or not conversation.messages.filter(id=parent).exists():
                raise ActionRefused("invalid", "That message is not in this conversation.")
        # Each message follows the one before (one branch): the earlier turns, the user's, the reply.
        said = [*turns, (Message.Role.USER, text)]
        new_ids = iter(locked.message_ids)
        messages = []
        for role, words in said:
            messages.append(Message(id=next(new_ids), conversation=conversation, parent_id=parent, role=role, model=model, text=words))
            parent = messages[-1].id
        reply = _pending_reply(conversation=conversation, parent_id=parent, model=model, effort=chosen, id=next(new_ids))
        _leaf_move(conversation, reply)  # a new conversation's current leaf is checked at commit
        conversation.updated_at = now
        live, counted = _send_store(user=user, conversation=conversation, new=new, messages=[*messages, reply], hold=hold)
        _live_cap_check(user, live)
        *earlier, user_message, reply = [*messages, reply]
        _attachments_link(user, attachments, user_message)
        reply.counted = hold.counted(counted, prompt_tokens=lambda: _prompt_tokens(conversation, reply.parent_id, model))
        transaction.on_commit(lambda: _enqueue(reply))
        transaction.on_commit(lambda: events.messages_added(conversation, [*earlier, user_message, reply]))
    return user_message, reply


def _clean_role(role: object) -> str:
    if role not in (Message.Role.USER, Message.Role.ASSISTANT):
        raise ActionRefused("invalid", "An earlier turn is said by the user or the assistant.")
    return str(role)


def model_pick(*, user, model_slug: object) -> None:
    """Remember the model the user picked last: a new chat starts on it (chat.selectors.model_for_new_chat)."""
    model = _model_get(model_slug)
    Profile.objects.filter(user=user).exclude(last_model=model).update(last_model=model)


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


def reply_regenerate(*, user, message_id: object, model_slug: object = None, effort: object = None) -> Message:
    """Answer the same question again; the old answer stays as a version. Counts as a message."""
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        old = _message_to_branch(user, message_id, Message.Role.ASSISTANT)
        # The old reply's model unless another is named; either way it must be enabled now.
        model = _model_get(model_slug or old.model.slug)
        question = old.parent if old.parent is not None and old.parent.role == Message.Role.USER else None
        if question is not None:
            _check_images(list(question.attachments.defer("data")), model)
        chosen = _effort_choose(user, model, effort, old.conversation.reasoning_effort)
        reply = _reply_start(user=user, conversation=old.conversation, parent=old.parent, model=model, effort=chosen)
        transaction.on_commit(lambda: events.messages_added(old.conversation, [reply]))
    return _with_versions(reply)


def message_edit(*, user, message_id: object, text: object, model_slug: object = None, effort: object = None) -> tuple[Message, Message]:
    """Ask any earlier question again with new text and the same files, starting a new branch from there.
    Counts as a message. The old question and everything after it stay, as the other version."""
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        old = _message_to_branch(user, message_id, Message.Role.USER)
        attachments = list(old.attachments.all())
        text = _clean_text(text, files_attached=bool(attachments))
        model = _model_get(model_slug or old.model.slug)
        _check_images(attachments, model)
        chosen = _effort_choose(user, model, effort, old.conversation.reasoning_effort)
        _check_fits(_user_turn(text, attachments, model), model, instructions_for(old.conversation))
        user_message = Message.objects.create(
            conversation=old.conversation, parent_id=old.parent_id, role=Message.Role.USER, model=model, text=text
        )
        # The other version keeps its own rows, as it keeps its text.
        for attachment in attachments:
            attachment.pk = None
            attachment.message = user_message
        user_message.attachment_list = Attachment.objects.bulk_create(attachments)
        reply = _reply_start(user=user, conversation=old.conversation, parent=user_message, model=model, effort=chosen)
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
        effort = _effort_choose(user, model, None, partial.reasoning_effort)  # the same effort, if still allowed
        reply = _reply_start(user=user, conversation=partial.conversation, parent=partial, model=model, effort=effort)
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
        # Serialised with sends: a send locks the user, then the conversation, then a quota counter;
        # a refund here locks a counter before the delete locks the conversation.
        _lock_user(user)
        # Live replies would be orphaned: give their quota back first.
        for reply_id in conversation.messages.filter(status=Message.Status.PENDING).values_list("id", flat=True):
            quota_refund(reply_id=reply_id, reason="conversation deleted")
        snapshot = conversation_json(conversation)
        conversation.delete()
    transaction.on_commit(lambda: events.conversation_deleted(user_id=user.id, snapshot=snapshot))


# Files uploaded but never sent are let go after this long, at the user's next upload.
UNSENT_KEPT = dt.timedelta(days=1)


def attachment_upload(*, user, name: object, data: bytes) -> Attachment:
    """Store a file for the user's next message. Refused, with nothing stored, when it is not a text
    file or an image we take, too large, or too many of the user's uploads wait unsent."""
    try:
        checked = files.file_check(name=name, data=data)
    except files.FileRefused as exc:
        raise ActionRefused("invalid", str(exc)) from None
    with transaction.atomic():
        _lock_user(user)  # serialises the user's uploads, so the cap on unsent files holds
        unsent = Attachment.objects.filter(user=user, message=None)
        unsent.filter(created_at__lt=timezone.now() - UNSENT_KEPT).delete()
        waiting = unsent.count()
        if waiting >= settings.ATTACHMENTS_MAX_UNSENT:
            raise ActionRefused("too_many", f"{waiting} files are waiting to be sent. Send them or remove some first.")
        return Attachment.objects.create(
            user=user,
            kind=checked.kind,
            name=checked.name,
            content_type=checked.content_type,
            size=len(data),
            width=checked.width,
            height=checked.height,
            data=data,
        )


def attachment_remove(*, user, attachment_id: object) -> None:
    """Remove a file the user uploaded but has not sent; a sent one stays with its message."""
    removed, _ = Attachment.objects.filter(id=as_id(attachment_id), user=user, message=None).delete()
    if not removed:
        raise Http404("No such attachment.")

"""Every write to conversations and messages goes through a function here."""

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from . import fanout, providers
from .context import ContextTooLarge, context_trim, message_fits, tokens_estimate
from .limiter import capacity_acquire, redis_sync
from .models import AIModel, Conversation, Message
from .quotas import QuotaRefused, quota_refund, quota_reserve, quota_settle, quota_status, user_time_zone
from .selectors import conversation_get_for_user, message_get_for_user

log = logging.getLogger(__name__)

LIVE = (Message.Status.PENDING, Message.Status.STREAMING)
LEASE = dt.timedelta(seconds=60)
MAX_ATTEMPTS = 4


class SendRefused(Exception):
    """Bad input or a refusal; `code` is for programs, the message is for people."""

    def __init__(self, code: str, message: str, **extra):
        super().__init__(message)
        self.code = code
        self.extra = extra

    def as_json(self) -> dict:
        return {"type": "error", "code": self.code, "message": str(self), **self.extra}


def message_json(message: Message) -> dict:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "role": message.role,
        "model": message.model.slug,
        "model_name": message.model.name,
        "is_reasoning": message.model.is_reasoning,
        "text": message.text,
        "reasoning": message.reasoning,
        "status": message.status,
        "incomplete": message.incomplete,
        "error": message.error,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "reasoning_tokens": message.reasoning_tokens,
        "thinking_ms": message.thinking_ms,
        "created_at": message.created_at.isoformat(),
        "finished_at": message.finished_at.isoformat() if message.finished_at else None,
    }


def conversation_json(conversation: Conversation) -> dict:
    return {
        "id": conversation.id,
        "title": conversation.title or "New chat",
        "model": conversation.model.slug,
        "updated_at": conversation.updated_at.isoformat(),
    }


def _clean_text(text: object) -> str:
    if not isinstance(text, str):
        raise SendRefused("invalid", "The message must be text.")
    if "\x00" in text:
        raise SendRefused("invalid", "The message contains a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SendRefused("invalid", "The message is not valid UTF-8.") from None
    if not text.strip():
        raise SendRefused("empty", "Type a message first.")
    if len(text) > settings.MAX_MESSAGE_CHARS:
        raise SendRefused(
            "too_long", f"The message is {len(text):,} characters; the limit is {settings.MAX_MESSAGE_CHARS:,}."
        )
    return text


def _model_get(slug: object) -> AIModel:
    model = AIModel.objects.filter(slug=slug, enabled=True).first() if isinstance(slug, str) else None
    if model is None:
        raise SendRefused("unknown_model", f"There is no model called {str(slug)[:60]!r}.")
    return model


@contextmanager
def _quota_explained(user) -> Iterator[None]:
    """Turn a quota refusal into one that offers another model, after the transaction (and its locks) ended."""
    try:
        yield
    except QuotaRefused as exc:
        raise _quota_refusal(user, exc) from None


def _quota_refusal(user, exc: QuotaRefused) -> SendRefused:
    others = [s for s in quota_status(user=user) if s.model.id != exc.model.id and not s.exhausted]
    suggestion = others[0] if others else None
    message = str(exc)
    if suggestion:
        left = "unlimited" if suggestion.left is None else f"{suggestion.left} left"
        message += f" Switch to {suggestion.model.name} ({left})?"
    return SendRefused(
        "quota_exhausted",
        message,
        model=exc.model.slug,
        resets_at=exc.resets_at.isoformat() if exc.resets_at else None,
        switch_to=suggestion.model.slug if suggestion else None,
    )


def _reply_start(*, user, conversation: Conversation, model: AIModel, new_conversation: bool = False) -> Message:
    """Store a pending reply, reserve its quota and enqueue it; inside the caller's transaction."""
    live = Message.objects.filter(conversation__user=user, role=Message.Role.ASSISTANT, status__in=LIVE).count()
    if live >= settings.MAX_LIVE_REPLIES:
        raise SendRefused(
            "busy", f"You already have {live} answers being written. Wait for one to finish or stop it."
        )
    reply = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, model=model,
                                   status=Message.Status.PENDING)
    quota_reserve(user=user, model=model, reply=reply)
    if not new_conversation:
        # The model picked last sticks to the conversation, which moves to the top of the list.
        conversation.model = model
        conversation.save(update_fields=["model", "updated_at"])

    from .tasks import generate_reply

    transaction.on_commit(lambda: generate_reply.delay(reply.id))
    return reply


def _lock_user(user) -> None:
    """Serialise one user's sends, so the cap on live replies cannot be raced past."""
    from accounts.models import Profile

    Profile.objects.select_for_update().filter(user=user).first()


def message_send(*, user, conversation_id: int | None, model_slug: object, text: object) -> tuple[Message, Message]:
    """Store the user's message and a pending reply, reserving quota, in one transaction.

    Raises SendRefused with nothing stored when the input is bad or the quota is spent.
    """
    text = _clean_text(text)
    model = _model_get(model_slug)
    if not message_fits(text, context_window=model.context_window, max_output_tokens=model.max_output_tokens):
        raise SendRefused("too_long", f"The message is too long for {model.name}'s context window.")
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        if conversation_id is None:
            conversation = Conversation.objects.create(user=user, model=model, title=title_from(text))
        else:
            conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
            conversation.user = user  # known: the announcement after commit need not fetch it again
        user_message = Message.objects.create(conversation=conversation, role=Message.Role.USER, model=model, text=text)
        reply = _reply_start(user=user, conversation=conversation, model=model, new_conversation=conversation_id is None)
        transaction.on_commit(lambda: _announce(conversation, [user_message, reply]))
    return user_message, reply


def title_from(text: str) -> str:
    """A title from the first message; no model call, so nothing is counted."""
    words = " ".join(text.split())
    return words if len(words) <= 60 else words[:57].rsplit(" ", 1)[0] + "…"


def _conversation_changed(conversation: Conversation, *, deleted: bool = False) -> None:
    """Every tab of the user keeps its sidebar current."""
    fanout.send_event(
        fanout.user_group(conversation.user_id),
        {"type": "chat.conversation", "conversation": conversation_json(conversation), "deleted": deleted},
    )


def _quota_changed(user, model: AIModel) -> None:
    """Every tab of the user updates `model` in its picker; computed once, here, not per tab."""
    fanout.send_event(fanout.user_group(user.id), {"type": "chat.quota", "models": quota_json(user, model), "partial": True})


def _announce(conversation: Conversation, messages: list[Message]) -> None:
    _quota_changed(conversation.user, messages[-1].model)
    _conversation_changed(conversation)
    fanout.send_event(
        fanout.conversation_group(conversation.id),
        {"type": "chat.messages", "conversation": conversation_json(conversation),
         "messages": [message_json(m) for m in messages]},
    )


def _last_turn(user, message_id: object, role: str) -> Message:
    message = message_get_for_user(user=user, message_id=message_id)
    last = message.conversation.messages.filter(replaced=False, role=role).last()
    if message.role != role or last is None or last.id != message.id:
        raise SendRefused("not_last", "Only the last message of a conversation can be changed.")
    if message.conversation.messages.filter(status__in=LIVE).exists():
        raise SendRefused("busy", "Wait for the answer to finish, or stop it first.")
    return message


def reply_regenerate(*, user, message_id: object, model_slug: object = None) -> Message:
    """Answer the last user message again; the old answer is kept but hidden. Counts as a message."""
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        old = _last_turn(user, message_id, Message.Role.ASSISTANT)
        model = _model_get(model_slug) if model_slug else old.model
        Message.objects.filter(id=old.id).update(replaced=True)
        reply = _reply_start(user=user, conversation=old.conversation, model=model)
        transaction.on_commit(lambda: _announce(old.conversation, [reply]))
    return reply


def message_edit(*, user, message_id: object, text: object, model_slug: object = None) -> tuple[Message, Message]:
    """Replace the last user message with new text and answer it. Counts as a message."""
    text = _clean_text(text)
    with _quota_explained(user), transaction.atomic():
        _lock_user(user)
        old = _last_turn(user, message_id, Message.Role.USER)
        model = _model_get(model_slug) if model_slug else old.model
        if not message_fits(text, context_window=model.context_window, max_output_tokens=model.max_output_tokens):
            raise SendRefused("too_long", f"The message is too long for {model.name}'s context window.")
        old.conversation.messages.filter(id__gte=old.id).update(replaced=True)
        user_message = Message.objects.create(conversation=old.conversation, role=Message.Role.USER, model=model, text=text)
        reply = _reply_start(user=user, conversation=old.conversation, model=model)
        transaction.on_commit(lambda: _announce(old.conversation, [user_message, reply]))
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
        quota_refund(reply=reply, reason="stopped before it started")
    reply = _reloaded(reply)
    transaction.on_commit(lambda: _done(reply))


def _done(reply: Message) -> None:
    fanout.send_event(fanout.conversation_group(reply.conversation_id), {"type": "chat.done", "message": message_json(reply)})
    if reply.quota == Message.Quota.REFUNDED:
        _quota_changed(reply.conversation.user, reply.model)


# --- The worker side -------------------------------------------------------


def context_for(reply: Message) -> list[dict[str, str]]:
    """Earlier turns' user text and visible answers, never reasoning, trimmed to the window."""
    earlier = Message.objects.filter(conversation_id=reply.conversation_id, id__lt=reply.id, replaced=False).exclude(text="")
    turns = [{"role": role, "content": text} for role, text in earlier.values_list("role", "text")]
    return context_trim(turns, context_window=reply.model.context_window, max_output_tokens=reply.model.max_output_tokens)


def model_spec(model: AIModel) -> providers.ModelSpec:
    efforts = [e.strip() for e in model.reasoning_efforts.split(",") if e.strip()]
    return providers.ModelSpec(
        provider_model=model.provider_model,
        max_output_tokens=model.max_output_tokens,
        supports_streaming=model.supports_streaming,
        supports_system_message=model.supports_system_message,
        uses_max_completion_tokens=model.uses_max_completion_tokens,
        supports_temperature=model.supports_temperature,
        reasoning_effort="medium" if "medium" in efforts else "",
    )


@dataclass
class ReplyStream:
    """Coalesces deltas for the browser and checkpoints the text to Postgres.

    While a reply streams, `add` and `flush` run on the live loop and
    Checkpoints reads `text` from its thread (joining a list another thread
    appends to is safe under the GIL); the loop only reads `stopped`.
    """

    reply: Message
    started: float = field(default_factory=time.monotonic)
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    sent_text: int = 0
    sent_reasoning: int = 0
    pending_text: str = ""
    pending_reasoning: str = ""
    first_text_at: float | None = None
    last_flush: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    stopped: bool = False

    @property
    def has_output(self) -> bool:
        return bool(self.text) or bool(self.pending_text)

    def add(self, chunk: providers.Chunk) -> None:
        now = time.monotonic()
        if chunk.usage:
            self.usage = chunk.usage
        if chunk.text and self.first_text_at is None:
            self.first_text_at = now
            self.last_flush = 0.0  # the first words go out at once
        self.pending_text += chunk.text
        self.pending_reasoning += chunk.reasoning
        if now - self.last_flush >= settings.STREAM_FLUSH_SECONDS:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if not (self.pending_text or self.pending_reasoning):
            return
        text, reasoning = self.pending_text, self.pending_reasoning
        fanout.send_delta(
            conversation_id=self.reply.conversation_id,
            message_id=self.reply.id,
            offset=self.sent_text,
            text=text,
            reasoning_offset=self.sent_reasoning,
            reasoning=reasoning,
        )
        self.text.append(text)
        self.reasoning.append(reasoning)
        self.sent_text += len(text)
        self.sent_reasoning += len(reasoning)
        self.pending_text = self.pending_reasoning = ""
        self.last_flush = now or time.monotonic()

    @property
    def thinking_ms(self) -> int:
        end = self.first_text_at or time.monotonic()
        return int((end - self.started) * 1000)


def _status(reply: Message, status: str, detail: str = "") -> None:
    fanout.send_event(
        fanout.conversation_group(reply.conversation_id),
        {"type": "chat.status", "message_id": reply.id, "status": status, "detail": detail},
    )


def release_connection() -> None:
    """Hand this thread's database connection back to the pool.

    A generation lasts seconds to minutes but writes only now and then; holding
    a connection throughout would cap concurrent generations at the pool size.
    """
    if not connection.in_atomic_block:
        connection.close()


ALERT_KEY = "provider-alert"


def provider_alert_raise(message: str) -> None:
    """Tell staff: an error in the log and a banner in the admin for a day."""
    log.error(message)
    try:
        redis_sync().set(ALERT_KEY, f"{timezone.now():%Y-%m-%d %H:%M} UTC — {message}", ex=86_400)
    except Exception:
        log.exception("could not store the provider alert")


def provider_alert() -> str:
    try:
        value = redis_sync().get(ALERT_KEY)
    except Exception:
        return ""
    return value.decode() if value else ""


class Checkpoints:
    """Writes the text of every reply this process is streaming to Postgres, in one statement a second.

    The same statement renews each reply's lease, also while the model thinks;
    when the process dies the renewals stop, and reply_reap ends its replies. A
    reply it no longer finds streaming was stopped by the user (or reaped): its
    stream is told to stop.
    """

    def __init__(self) -> None:
        self.streams: dict[int, ReplyStream] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def hold(self, stream: "ReplyStream") -> None:
        with self.lock:
            self.streams[stream.reply.id] = stream
            if self.thread is None:
                self.thread = threading.Thread(target=self._write_forever, name="checkpoints", daemon=True)
                self.thread.start()

    def release(self, stream: "ReplyStream") -> None:
        with self.lock:
            self.streams.pop(stream.reply.id, None)

    def _write_forever(self) -> None:
        while True:
            time.sleep(settings.STREAM_CHECKPOINT_SECONDS)
            with self.lock:
                streams = list(self.streams.values())
            if not streams:
                continue
            try:
                saved = self.write(streams)
            except Exception:
                log.exception("could not checkpoint live replies")
                continue
            finally:
                connections.close_all()
            for stream in streams:
                stream.stopped = stream.reply.id not in saved

    @staticmethod
    def write(streams: list["ReplyStream"]) -> set[int]:
        """Store each stream's text so far; returns the ids of the replies still streaming."""
        rows = [(s.reply.id, "".join(s.text), "".join(s.reasoning)) for s in streams]
        values = ", ".join(["(%s::bigint, %s::text, %s::text)"] * len(rows))
        with connection.cursor() as cursor:
            cursor.execute(
                f"""UPDATE chat_message m SET text = v.text, reasoning = v.reasoning, lease_expires_at = %s
                    FROM (VALUES {values}) AS v (id, text, reasoning)
                    WHERE m.id = v.id AND m.status = %s RETURNING m.id""",
                [timezone.now() + LEASE, *(value for row in rows for value in row), Message.Status.STREAMING],
            )
            return {row[0] for row in cursor.fetchall()}


checkpoints = Checkpoints()


def _capacity_wait(reply: Message, turns: list[dict[str, str]]) -> None:
    """Wait, telling the user so, until the organisation's provider limits have room."""
    model = reply.model
    tokens = sum(tokens_estimate(t["content"]) for t in turns) + model.max_output_tokens
    told = False
    while wait := capacity_acquire(model_slug=model.slug, rpm=model.rpm_limit, tpm=model.tpm_limit, tokens=tokens):
        if not told:
            _status(reply, "waiting", "Waiting for capacity…")
            told = True
        time.sleep(min(wait, 5.0))


def reply_generate(*, message_id: int) -> None:
    """Produce the answer for a pending reply. Safe to run twice: only one run claims it."""
    claimed = Message.objects.filter(id=message_id, status=Message.Status.PENDING).update(
        status=Message.Status.STREAMING, lease_expires_at=timezone.now() + LEASE
    )
    if not claimed:
        return
    reply = Message.objects.select_related("model", "conversation").get(id=message_id)
    try:
        turns = context_for(reply)
    except ContextTooLarge as exc:
        reply_fail(reply=reply, stream=ReplyStream(reply), error=str(exc))
        return
    release_connection()
    fanout.buffer_clear(reply.id)  # nothing left from an earlier database with the same ids
    spec = model_spec(reply.model)
    stream = ReplyStream(reply)
    checkpoints.hold(stream)
    try:
        _generate(reply, spec, turns, stream)
    finally:
        checkpoints.release(stream)


def _generate(reply: Message, spec: providers.ModelSpec, turns: list[dict[str, str]], stream: "ReplyStream") -> None:
    attempt = 1
    while True:
        _capacity_wait(reply, turns)
        try:
            _stream(spec, turns, stream)
            break
        except providers.ProviderError as exc:
            if exc.kind == "insufficient_quota":
                provider_alert_raise("The provider account is out of credit (insufficient_quota): replies are failing.")
            if stream.has_output or exc.permanent or attempt >= MAX_ATTEMPTS:
                reply_fail(reply=reply, stream=stream, error=str(exc))
                return
            wait = max(exc.retry_after or 0.0, settings.PROVIDER_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
            _status(reply, "waiting", "Waiting for capacity…" if exc.kind == "rate_limit" else "Retrying…")
            log.warning("reply %s: %s (%s), retry %s in %.1fs", reply.id, exc.kind, exc, attempt, wait)
            time.sleep(wait)
            attempt += 1
    reply_finish(reply=reply, stream=stream)


def _stream(spec: providers.ModelSpec, turns: list[dict[str, str]], stream: ReplyStream) -> None:
    """One attempt, streamed on the process's live loop; this thread waits.

    One event loop reads every reply a worker writes: a thread per reply, woken
    for every token, starved the thread that takes new tasks from the broker.
    """
    future = fanout.run_soon(_read(spec, turns, stream))
    try:
        future.result()
    finally:
        future.cancel()


async def _read(spec: providers.ModelSpec, turns: list[dict[str, str]], stream: ReplyStream) -> None:
    async for chunk in providers.stream_chat(spec, turns):
        stream.add(chunk)
        if stream.stopped:
            return


def reply_finish(*, reply: Message, stream: ReplyStream) -> None:
    stream.flush()
    usage = stream.usage
    with transaction.atomic():
        values = dict(
            text="".join(stream.text),
            reasoning="".join(stream.reasoning),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            reasoning_tokens=usage.get("reasoning_tokens"),
            thinking_ms=stream.thinking_ms,
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        finished = Message.objects.filter(id=reply.id, status=Message.Status.STREAMING).update(
            status=Message.Status.DONE, **values
        )
        if not finished:
            # Stopped by the user meanwhile: keep what was written.
            Message.objects.filter(id=reply.id, status=Message.Status.STOPPED).update(**values)
        if stream.has_output:
            quota_settle(reply=reply, usage=usage)
        else:
            quota_refund(reply=reply, reason="stopped before any answer" if not finished else "empty answer")
    reply = _reloaded(reply)
    fanout.buffer_clear(reply.id)
    _done(reply)


def _reloaded(reply: Message) -> Message:
    return Message.objects.select_related("model", "conversation").get(id=reply.id)


def reply_fail(*, reply: Message, stream: ReplyStream, error: str, lease_expired_before: dt.datetime | None = None) -> None:
    """End a reply that went wrong. Partial text is kept and marked incomplete; no text, no charge."""
    stream.flush()
    text = "".join(stream.text)
    live = Message.objects.filter(id=reply.id, status__in=[*LIVE, Message.Status.STOPPED])
    if lease_expired_before:
        live = live.filter(lease_expires_at__lt=lease_expired_before)
    with transaction.atomic():
        ended = live.update(
            status=Message.Status.FAILED,
            text=text,
            reasoning="".join(stream.reasoning),
            incomplete=bool(text),
            error=error[:500],
            thinking_ms=stream.thinking_ms,
            finished_at=timezone.now(),
            lease_expires_at=None,
            prompt_tokens=stream.usage.get("prompt_tokens"),
            completion_tokens=stream.usage.get("completion_tokens"),
            reasoning_tokens=stream.usage.get("reasoning_tokens"),
        )
        if not ended:
            return
        if text:
            quota_settle(reply=reply, usage=stream.usage)
        else:
            quota_refund(reply=reply, reason=error)
    reply = _reloaded(reply)
    fanout.buffer_clear(reply.id)
    _done(reply)


PENDING_GRACE = dt.timedelta(minutes=2)


def reply_reap(*, now: dt.datetime | None = None) -> int:
    """End replies whose worker died, and re-enqueue replies whose task was lost.

    A reply is dead when its lease (renewed every 15 s by its worker) ran out:
    it keeps its checkpointed text, marked incomplete, and is refunded if it had
    none. It is never generated again, so no answer is written twice.
    """
    now = now or timezone.now()
    dead = Message.objects.filter(status=Message.Status.STREAMING, lease_expires_at__lt=now)
    ended = 0
    for reply in dead.select_related("conversation", "model"):
        stream = ReplyStream(reply, text=[reply.text], reasoning=[reply.reasoning])
        reply_fail(reply=reply, stream=stream, lease_expired_before=now,
                   error="The worker writing this answer stopped unexpectedly.")
        ended += 1
    # A pending reply nobody claimed (the broker lost its task): enqueue it again;
    # the claim's compare-and-set makes a duplicate harmless.
    lost = Message.objects.filter(status=Message.Status.PENDING, updated_at__lt=now - PENDING_GRACE)
    from .tasks import generate_reply

    for message_id in list(lost.values_list("id", flat=True)):
        Message.objects.filter(id=message_id).update(updated_at=now)
        generate_reply.delay(message_id)
    return ended


def conversation_rename(*, user, conversation_id: object, title: object) -> Conversation:
    if not isinstance(title, str) or not title.strip() or len(title) > 200 or "\x00" in title:
        raise SendRefused("invalid", "A title is 1 to 200 characters.")
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    conversation.title = title.strip()
    conversation.save(update_fields=["title", "updated_at"])
    _conversation_changed(conversation)
    return conversation


def conversation_delete(*, user, conversation_id: object) -> None:
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    with transaction.atomic():
        # Live replies would be orphaned: give their quota back first.
        for reply in conversation.messages.filter(status=Message.Status.PENDING):
            reply.conversation = conversation
            quota_refund(reply=reply, reason="conversation deleted")
        snapshot = conversation_json(conversation)
        conversation.delete()
    fanout.send_event(
        fanout.user_group(user.id), {"type": "chat.conversation", "conversation": snapshot, "deleted": True}
    )


def quota_json(user, model: AIModel | None = None) -> list[dict]:
    tz = user_time_zone(user)
    return [status.as_json(tz) for status in quota_status(user=user, model=model)]


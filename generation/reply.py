"""A reply's whole life in the worker: claim, context, stream, checkpoint, finish, fail, reap.

    pending ──claim (compare-and-set)──▶ streaming ──▶ done | failed | stopped
                                          │ leased; the lease is renewed with each checkpoint
                                          └ lease ran out (worker died) ──reap──▶ failed

The quota reserved with the send is settled when visible text was produced,
and refunded otherwise, exactly once (quotas/services.py).
"""

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from catalog.models import AIModel
from chat import events
from chat.models import LIVE, Message
from live import publish
from live.loop import run_soon
from quotas.services import quota_refund, quota_settle

from . import provider
from .alerts import provider_alert_raise
from .context import ContextTooLarge, context_trim, tokens_estimate
from .limiter import capacity_acquire

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
MAX_ATTEMPTS = 4


def context_for(reply: Message) -> list[dict[str, str]]:
    """Earlier turns' user text and visible answers, never reasoning, trimmed to the window."""
    earlier = Message.objects.filter(conversation_id=reply.conversation_id, id__lt=reply.id, replaced=False).exclude(text="")
    turns = [{"role": role, "content": text} for role, text in earlier.values_list("role", "text")]
    return context_trim(turns, context_window=reply.model.context_window, max_output_tokens=reply.model.max_output_tokens)


def model_spec(model: AIModel) -> provider.ModelSpec:
    efforts = model.efforts
    return provider.ModelSpec(
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

    def add(self, chunk: provider.Chunk) -> None:
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
        publish.delta_send(
            publish.Delta(
                conversation_id=self.reply.conversation_id,
                message_id=self.reply.id,
                offset=self.sent_text,
                text=text,
                reasoning_offset=self.sent_reasoning,
                reasoning=reasoning,
            )
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


def release_connection() -> None:
    """Hand this thread's database connection back to the pool.

    A generation lasts seconds to minutes but writes only now and then; holding
    a connection throughout would cap concurrent generations at the pool size.
    """
    if not connection.in_atomic_block:
        connection.close()


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
                f"""UPDATE {Message._meta.db_table} m SET text = v.text, reasoning = v.reasoning, lease_expires_at = %s
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
            events.reply_status(reply, "waiting", "Waiting for capacity…")
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
    publish.buffer_clear(reply.id)  # nothing left from an earlier database with the same ids
    spec = model_spec(reply.model)
    stream = ReplyStream(reply)
    checkpoints.hold(stream)
    try:
        _generate(reply, spec, turns, stream)
    finally:
        checkpoints.release(stream)


def _generate(reply: Message, spec: provider.ModelSpec, turns: list[dict[str, str]], stream: "ReplyStream") -> None:
    attempt = 1
    while True:
        _capacity_wait(reply, turns)
        try:
            _stream(spec, turns, stream)
            break
        except provider.ProviderError as exc:
            if exc.kind == "insufficient_quota":
                provider_alert_raise("The provider account is out of credit (insufficient_quota): replies are failing.")
            if stream.has_output or exc.permanent or attempt >= MAX_ATTEMPTS:
                reply_fail(reply=reply, stream=stream, error=str(exc))
                return
            wait = max(exc.retry_after or 0.0, settings.PROVIDER_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
            events.reply_status(reply, "waiting", "Waiting for capacity…" if exc.kind == "rate_limit" else "Retrying…")
            log.warning("%s (%s), retry %s in %.1fs", exc.kind, exc, attempt, wait, extra={"reply_id": reply.id})
            time.sleep(wait)
            attempt += 1
    reply_finish(reply=reply, stream=stream)


def _stream(spec: provider.ModelSpec, turns: list[dict[str, str]], stream: ReplyStream) -> None:
    """One attempt, streamed on the process's live loop; this thread waits.

    One event loop reads every reply a worker writes: a thread per reply, woken
    for every token, starved the thread that takes new tasks from the broker.
    """
    future = run_soon(_read(spec, turns, stream))
    try:
        future.result()
    finally:
        future.cancel()


async def _read(spec: provider.ModelSpec, turns: list[dict[str, str]], stream: ReplyStream) -> None:
    async for chunk in provider.stream_chat(spec, turns):
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
        finished = Message.objects.filter(id=reply.id, status=Message.Status.STREAMING).update(status=Message.Status.DONE, **values)
        if not finished:
            # Stopped by the user meanwhile: keep what was written.
            Message.objects.filter(id=reply.id, status=Message.Status.STOPPED).update(**values)
        if stream.has_output:
            quota_settle(reply_id=reply.id, usage=usage)
            refunded = False
        else:
            refunded = quota_refund(reply_id=reply.id, reason="stopped before any answer" if not finished else "empty answer")
    reply = _reloaded(reply)
    publish.buffer_clear(reply.id)
    events.reply_done(reply, refunded=refunded)


def _reloaded(reply: Message) -> Message:
    return Message.objects.select_related("model", "conversation__user").get(id=reply.id)


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
            quota_settle(reply_id=reply.id, usage=stream.usage)
            refunded = False
        else:
            refunded = quota_refund(reply_id=reply.id, reason=error)
    reply = _reloaded(reply)
    publish.buffer_clear(reply.id)
    events.reply_done(reply, refunded=refunded)


PENDING_GRACE = dt.timedelta(minutes=2)


def reply_reap(*, now: dt.datetime | None = None) -> int:
    """End replies whose worker died, and re-enqueue replies whose task was lost.

    A reply is dead when its lease (renewed with every checkpoint, each second) ran out:
    it keeps its checkpointed text, marked incomplete, and is refunded if it had
    none. It is never generated again, so no answer is written twice.
    """
    now = now or timezone.now()
    dead = Message.objects.filter(status=Message.Status.STREAMING, lease_expires_at__lt=now)
    ended = 0
    for reply in dead.select_related("conversation", "model"):
        stream = ReplyStream(reply, text=[reply.text], reasoning=[reply.reasoning])
        reply_fail(reply=reply, stream=stream, lease_expired_before=now, error="The worker writing this answer stopped unexpectedly.")
        ended += 1
    # A pending reply nobody claimed (the broker lost its task): enqueue it again;
    # the claim's compare-and-set makes a duplicate harmless.
    lost = Message.objects.filter(status=Message.Status.PENDING, updated_at__lt=now - PENDING_GRACE)
    from .tasks import reply_generate

    for message_id in list(lost.values_list("id", flat=True)):
        Message.objects.filter(id=message_id).update(updated_at=now)
        reply_generate.delay(message_id)
    return ended

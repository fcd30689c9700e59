"""A reply's whole life in the worker: claim, context, stream, checkpoint, finish, fail, reap.

    pending ──claim (compare-and-set)──▶ streaming ──▶ done | failed | stopped
       │ stop: stopped, refunded           │ leased; the lease is renewed with each checkpoint
                                           ├ stop / conversation deleted ──▶ the watcher cancels the
                                           │   provider request within STOP_POLL_SECONDS
                                           └ lease ran out (worker died) ──reap──▶ failed

How each way of ending is stored and charged is the table in docs/protocol.md
("How an answer ends"). The rule under it: the quota reserved with the send is
settled when visible answer text was produced (reasoning alone is not answer
output) and refunded otherwise, exactly once (quotas/services.py).

Time limits (settings, docs/operations.md): the first output must come within
OPENAI_FIRST_OUTPUT_TIMEOUT, later chunks within OPENAI_CHUNK_GAP_TIMEOUT of each
other, and the whole reply, retries and back-offs included, ends by
REPLY_DEADLINE_SECONDS.
"""

import asyncio
import base64
import concurrent.futures
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TypeVar

from django.conf import settings
from django.db import connection, connections, models, transaction
from django.utils import timezone

from accounts.models import Profile
from catalog.context import ContextTooLarge, Turn, context_trim, instructions_place, turn_size
from catalog.models import AIModel
from chat import events
from chat.models import LIVE, Attachment, Conversation, Message
from chat.selectors import branch_turns, instructions_for, instructions_join
from live import publish
from live.loop import run_soon
from quotas.models import Reservation
from quotas.services import quota_refund, quota_settle

from . import provider
from .alerts import failure_count, provider_alert_raise
from .limiter import capacity_acquire

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
MAX_ATTEMPTS = 4
# How often the watcher asks which live replies were stopped or deleted: Stop takes effect within this.
STOP_POLL_SECONDS = 0.25
# Deltas are coalesced until the next tick (every STREAM_FLUSH_SECONDS), or until this much text waits (a fast model's burst).
FLUSH_CHARS = 2048
# Failures of every reply in this many seconds after which staff are alerted, whatever the cause.
REPEATED_FAILURES = 5
# What staff see in the admin banner for errors only they can fix.
ALERTS = {
    "insufficient_quota": "The provider account is out of credit (insufficient_quota): replies are failing.",
    "auth": "The provider refused the service's API key (401/403): replies are failing.",
    "model_not_found": "The provider does not offer a model in the catalog (model_not_found): replies to it fail.",
}
UNEXPECTED = "Something went wrong while writing this answer. Please try again."
NOTES = {
    "length_empty": "The model spent its whole output budget thinking and wrote no answer. Nothing was charged.",
    "content_filter_empty": "The provider's content filter stopped this answer before it began. Nothing was charged.",
}


class Stopped(Exception):
    """The reply was stopped, deleted or reaped while this worker wrote it."""


def context_for(reply: Message, *, user_instructions: str | None = None) -> list[Turn]:
    """The custom instructions, then the user text with its files and the visible answers of the
    reply's branch only, never reasoning, trimmed to the window.

    Instructions go as a system message where the model takes one, else at the head of the first
    user turn. A turn's images are counted by their size while trimming; only the kept ones are
    read, as data URLs. An answer and its continuations are one assistant turn; a continuation's
    own request ends with the partial answer and CONTINUE_PROMPT as the user's turn (chat.selectors.branch_turns).
    `user_instructions`: the user's own, when already read (with the claim); else they are read here.
    """
    model = reply.model
    turns = branch_turns(conversation_id=reply.conversation_id, leaf_id=reply.parent_id, model=model)
    if user_instructions is None:
        instructions = instructions_for(reply.conversation)
    else:
        instructions = instructions_join(user_instructions, reply.conversation.instructions)
    kept = context_trim(
        turns,
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        tokenizer=model.tokenizer,
        instructions=instructions,
    )
    wanted = [image["id"] for turn in kept for image in turn["images"]]
    urls = {}
    if wanted:
        urls = {
            id: f"data:{content_type};base64,{base64.b64encode(data).decode()}"
            for id, content_type, data in Attachment.objects.filter(id__in=wanted).values_list("id", "content_type", "data")
        }
    kept = [{**turn, "image_urls": [urls[image["id"]] for image in turn["images"]]} for turn in kept]
    return instructions_place(kept, instructions, system_message=model.supports_system_message)


def model_spec(model: AIModel, effort: str = "") -> provider.ModelSpec:
    return provider.ModelSpec(
        provider_model=model.provider_model,
        api=model.api,
        max_output_tokens=model.max_output_tokens,
        supports_streaming=model.supports_streaming,
        uses_max_completion_tokens=model.uses_max_completion_tokens,
        # Chosen per message and checked against the model and the plan when it was sent (chat.actions).
        reasoning_effort=effort if effort in model.efforts else "",
        reasoning_summaries=model.reasoning_summaries,
        store=model.store,
    )


@dataclass
class ReplyStream:
    """Coalesces deltas for the browser, and is what the watcher and the checkpoints see of a live reply.

    The first words (of the reasoning, and of the answer) go out at once; after them, text waits for
    the process's next tick (`ticks`, every STREAM_FLUSH_SECONDS, whether or not another chunk comes)
    or until FLUSH_CHARS wait.
    While a reply streams, `add` and `flush` run on the live loop (under `lock`) and
    Checkpoints reads `text` from its thread (joining a list another thread
    appends to is safe under the GIL). `stop_now` may come from any thread.
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
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str = ""
    stopped: threading.Event = field(default_factory=threading.Event)
    attempt: concurrent.futures.Future | None = None
    ticking: bool = False  # waiting for the next tick
    # The live loop adds and flushes; the reply's thread flushes at the end, possibly while a stopped
    # request's last chunk is still being added.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def has_output(self) -> bool:
        """Visible answer text was produced; reasoning alone is not answer output."""
        return bool(self.pending_text) or any(self.text)

    def add(self, chunk: provider.Chunk) -> None:
        with self.lock:
            self._add(chunk)

    def _add(self, chunk: provider.Chunk) -> None:
        if chunk.usage:
            self.usage = chunk.usage
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        first_text = bool(chunk.text) and self.first_text_at is None
        if first_text:
            self.first_text_at = time.monotonic()
        # The first words, of the answer or of its reasoning, go out at once.
        first = first_text or not (self.text or self.reasoning)
        self.pending_text += chunk.text
        self.pending_reasoning += chunk.reasoning
        if first or len(self.pending_text) + len(self.pending_reasoning) >= FLUSH_CHARS:
            self._flush()
        elif not self.ticking and (self.pending_text or self.pending_reasoning):
            self.ticking = True
            ticks.wait(self)

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
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

    def stop_now(self) -> None:
        """From any thread: end the reply where it is; a provider request in flight is closed."""
        self.stopped.set()
        attempt = self.attempt
        if attempt is not None:
            attempt.cancel()  # cancels the task on the live loop, which closes the HTTP response

    @property
    def thinking_ms(self) -> int:
        end = self.first_text_at or time.monotonic()
        return int((end - self.started) * 1000)


class Ticks:
    """The live loop's one coalescing clock. Text a reply holds goes out at the next tick, every reply's
    at once, so a tick's deltas leave the process in one write to Redis: with a window per reply, each
    delta went out on its own, and that write was a quarter of a worker's CPU (docs/benchmarks.md)."""

    def __init__(self) -> None:
        self.waiting: list[ReplyStream] = []

    def wait(self, stream: ReplyStream) -> None:
        """On the live loop: `stream` holds text; it goes out within STREAM_FLUSH_SECONDS, whether or not more comes."""
        self.waiting.append(stream)
        if len(self.waiting) == 1:
            asyncio.get_running_loop().call_later(settings.STREAM_FLUSH_SECONDS, self._tick)

    def _tick(self) -> None:
        streams, self.waiting = self.waiting, []
        for stream in streams:
            stream.ticking = False
            try:
                stream.flush()  # nothing, if a burst or the end flushed it meanwhile
            except Exception:
                log.exception("could not send a reply's words", extra={"reply_id": stream.reply.id})


ticks = Ticks()


def release_connection() -> None:
    """Hand this thread's database connection back to the pool.

    A generation lasts seconds to minutes but writes only now and then; holding
    a connection throughout would cap concurrent generations at the pool size.
    """
    if not connection.in_atomic_block:
        connection.close()


_MESSAGES = Message._meta.db_table


class Checkpoints:
    """One thread per worker process watches every reply the process is streaming.

    Every STOP_POLL_SECONDS it asks which of them are still streaming (one
    indexed query), and every STREAM_CHECKPOINT_SECONDS it instead writes their
    text so far and renews their leases (one statement; also while the model
    thinks). A reply it no longer finds streaming was stopped by the user,
    deleted with its conversation, or reaped: its stream is stopped at once.
    When the process dies the renewals stop, and reply_reap ends its replies.
    """

    def __init__(self) -> None:
        self.streams: dict[int, ReplyStream] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def hold(self, stream: ReplyStream) -> None:
        with self.lock:
            self.streams[stream.reply.id] = stream
            if self.thread is None:
                self.thread = threading.Thread(target=self._watch_forever, name="checkpoints", daemon=True)
                self.thread.start()

    def release(self, stream: ReplyStream) -> None:
        with self.lock:
            self.streams.pop(stream.reply.id, None)

    def _watch_forever(self) -> None:
        last_write = time.monotonic()
        while True:
            time.sleep(STOP_POLL_SECONDS)
            with self.lock:
                streams = list(self.streams.values())
            if not streams:
                continue
            write = time.monotonic() - last_write >= settings.STREAM_CHECKPOINT_SECONDS
            try:
                live = self.write(streams) if write else self.still_streaming(streams)
            except Exception:
                log.exception("could not checkpoint or watch live replies")
                continue
            finally:
                connections.close_all()
            if write:
                last_write = time.monotonic()
            for stream in streams:
                if stream.reply.id not in live:
                    stream.stop_now()

    @staticmethod
    def still_streaming(streams: list[ReplyStream]) -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {_MESSAGES} WHERE id = ANY(%s) AND status = %s",
                [[s.reply.id for s in streams], Message.Status.STREAMING],
            )
            return {row[0] for row in cursor.fetchall()}

    @staticmethod
    def write(streams: list[ReplyStream]) -> set[int]:
        """Store each stream's text so far; returns the ids of the replies still streaming.

        Arrays, not a VALUES row per stream: one statement text whatever the number of streams, so it is
        prepared once per connection instead of planned anew each second."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"""UPDATE {_MESSAGES} m SET text = v.text, reasoning = v.reasoning, lease_expires_at = %s
                    FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v (id, text, reasoning)
                    WHERE m.id = v.id AND m.status = %s RETURNING m.id""",
                [
                    timezone.now() + LEASE,
                    [s.reply.id for s in streams],
                    ["".join(s.text) for s in streams],
                    ["".join(s.reasoning) for s in streams],
                    Message.Status.STREAMING,
                ],
            )
            return {row[0] for row in cursor.fetchall()}


checkpoints = Checkpoints()


M = TypeVar("M", bound=models.Model)


def _columns(model: type[models.Model], alias: str) -> str:
    return ", ".join(f"{alias}.{field.column}" for field in model._meta.concrete_fields)


# The claim's compare-and-set, and in the same round trip what the reply is written with: its row,
# its model, its conversation and the user's own instructions. Every column read is a plain one
# (text, numbers, booleans, times), which needs no conversion from what psycopg returns.
_CLAIM_SQL = f"""
WITH claimed AS (
    UPDATE {_MESSAGES} SET status = %(streaming)s, lease_expires_at = %(lease)s
    WHERE id = %(id)s AND status = %(pending)s RETURNING *
)
SELECT {_columns(Message, "claimed")}, {_columns(AIModel, "model")}, {_columns(Conversation, "conversation")},
       (SELECT profile.instructions FROM {Profile._meta.db_table} profile WHERE profile.user_id = conversation.user_id)
FROM claimed
LEFT JOIN {AIModel._meta.db_table} model ON model.id = claimed.model_id
LEFT JOIN {Conversation._meta.db_table} conversation ON conversation.id = claimed.conversation_id
"""


def _row_instance(model: type[M], values: list) -> M:
    fields = model._meta.concrete_fields
    return model.from_db(connection.alias, [f.attname for f in fields], values[: len(fields)])


def _claim(message_id: int) -> tuple[Message, str] | None:
    """Take a pending reply for this worker (None if another run has it or it ended), with what context_for reads."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            {
                "id": message_id,
                "pending": Message.Status.PENDING,
                "streaming": Message.Status.STREAMING,
                "lease": timezone.now() + LEASE,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    reply = _row_instance(Message, values)
    del values[: len(Message._meta.concrete_fields)]
    reply.model = _row_instance(AIModel, values)
    del values[: len(AIModel._meta.concrete_fields)]
    reply.conversation = _row_instance(Conversation, values)
    return reply, values[-1] or ""


def reply_generate(*, message_id: int) -> None:
    """Produce the answer for a pending reply. Safe to run twice: only one run claims it."""
    claimed = _claim(message_id)
    if claimed is None:
        return
    reply, user_instructions = claimed
    stream = ReplyStream(reply)
    checkpoints.hold(stream)
    try:
        try:
            turns = context_for(reply, user_instructions=user_instructions)
        except ContextTooLarge as exc:
            reply_fail(reply=reply, stream=stream, error=str(exc), kind="context")
            return
        release_connection()
        publish.buffer_clear(reply.id)  # nothing left from an earlier database with the same ids
        _generate(reply, model_spec(reply.model, reply.reasoning_effort), turns, stream)
    except Exception:
        # Not a provider error: a bug, or the database gone. End the reply now, not when the reaper finds it.
        log.exception("unexpected error while generating", extra={"reply_id": reply.id})
        reply_fail(reply=reply, stream=stream, error=UNEXPECTED, kind="unexpected")
    finally:
        checkpoints.release(stream)


def _generate(reply: Message, spec: provider.ModelSpec, turns: list[Turn], stream: ReplyStream) -> None:
    deadline = stream.started + settings.REPLY_DEADLINE_SECONDS
    attempt = 1
    while True:
        try:
            _capacity_wait(reply, turns, stream, deadline)
            _attempt(spec, turns, stream, deadline)
            break
        except Stopped:
            break
        except provider.ProviderError as exc:
            if stream.stopped.is_set():
                break
            if exc.configuration:
                provider_alert_raise(f"{ALERTS[exc.kind]} {exc.detail}")
            left = deadline - time.monotonic()
            if stream.has_output or exc.permanent or attempt >= MAX_ATTEMPTS or left <= 0:
                reply_fail(reply=reply, stream=stream, error=str(exc), kind=exc.kind, detail=exc.detail)
                return
            wait = min(left, max(exc.retry_after or 0.0, settings.PROVIDER_RETRY_BASE_SECONDS * 2 ** (attempt - 1)))
            events.reply_status(reply, "waiting", "Waiting for capacity…" if exc.kind == "rate_limit" else "Retrying…")
            log.warning("%s (%s), retry %s in %.1fs", exc.kind, exc.detail, attempt, wait, extra={"reply_id": reply.id})
            if stream.stopped.wait(wait):
                break  # stopped during the back-off: no further request
            attempt += 1
    reply_finish(reply=reply, stream=stream)


def _capacity_wait(reply: Message, turns: list[Turn], stream: ReplyStream, deadline: float) -> None:
    """Wait, telling the user so, until the organisation's provider limits have room."""
    model = reply.model
    tokens = 0
    if model.rpm_limit or model.tpm_limit:  # else nothing is counted: spare tokenizing the whole context again
        tokens = sum(turn_size(t, model.tokenizer) for t in turns) + model.max_output_tokens
    told = False
    while wait := capacity_acquire(model_slug=model.slug, rpm=model.rpm_limit, tpm=model.tpm_limit, tokens=tokens):
        if not told:
            events.reply_status(reply, "waiting", "Waiting for capacity…")
            told = True
        if time.monotonic() + wait > deadline:
            raise provider.ProviderError("The model provider had no capacity in time.", permanent=True, kind="capacity")
        if stream.stopped.wait(min(wait, 5.0)):
            raise Stopped


def _attempt(spec: provider.ModelSpec, turns: list[Turn], stream: ReplyStream, deadline: float) -> None:
    """One request, streamed on the process's live loop; this thread waits, and the watcher may cancel it.

    One event loop reads every reply a worker writes: a thread per reply, woken
    for every token, starved the thread that takes new tasks from the broker.
    """
    if stream.stopped.is_set():
        raise Stopped
    stream.attempt = run_soon(_read(spec, turns, stream, deadline))
    if stream.stopped.is_set():  # stopped between the check and the assignment: the watcher missed the future
        stream.attempt.cancel()
    try:
        stream.attempt.result()
    except concurrent.futures.CancelledError:
        raise Stopped from None
    finally:
        stream.attempt = None


async def _read(spec: provider.ModelSpec, turns: list[Turn], stream: ReplyStream, deadline: float) -> None:
    loop = asyncio.get_running_loop()

    def limit(seconds: float) -> float:
        # The loop's clock for "now + seconds", never past the reply's deadline (time.monotonic's clock).
        return loop.time() + min(seconds, deadline - time.monotonic())

    try:
        async with asyncio.timeout_at(limit(settings.OPENAI_FIRST_OUTPUT_TIMEOUT)) as timer:
            async for chunk in provider.stream(spec, turns):
                stream.add(chunk)
                timer.reschedule(limit(settings.OPENAI_CHUNK_GAP_TIMEOUT))
    except TimeoutError:
        waited = "a first word" if not (stream.text or stream.reasoning or stream.pending_text) else "the next words"
        raise provider.ProviderError(
            "The model took too long to answer.", permanent=False, kind="timeout", detail=f"no {waited} in time"
        ) from None


def _ending(stream: ReplyStream, status: str) -> dict:
    """How a reply that got to the end of its stream (or was stopped) is stored: status, note, charge."""
    finish = stream.finish_reason
    if status == Message.Status.STOPPED or finish in ("", "stop"):
        return {"status": status, "incomplete": False, "error": "", "finish_reason": finish}
    if finish in ("length", "content_filter"):
        if stream.has_output:
            return {"status": status, "incomplete": True, "error": "", "finish_reason": finish}
        return {"status": Message.Status.FAILED, "incomplete": False, "error": NOTES[f"{finish}_empty"], "finish_reason": finish}
    return {"status": status, "incomplete": False, "error": "", "finish_reason": finish[:32]}


def reply_finish(*, reply: Message, stream: ReplyStream) -> None:
    """The stream ended (or was stopped, or its conversation deleted): store it, and settle or refund once."""
    stream.flush()
    usage = stream.usage
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
    stored: dict | None = None  # what the row now holds, when this run wrote it
    with transaction.atomic():
        ending = _ending(stream, Message.Status.DONE)
        finished = Message.objects.filter(id=reply.id, status=Message.Status.STREAMING).update(**values, **ending)
        if finished:
            stored = {**values, **ending}
        else:
            # Stopped by the user meanwhile (or deleted with its conversation): keep what was written.
            stopped = _ending(stream, Message.Status.STOPPED)
            if Message.objects.filter(id=reply.id, status=Message.Status.STOPPED).update(**values, **stopped):
                stored = {**values, **stopped}
        if stream.has_output and ending["status"] != Message.Status.FAILED:
            quota_settle(reply_id=reply.id, usage=usage)
            refunded = False
        else:
            why = ending["error"] or ("stopped before any answer" if not finished else "no answer text")
            refunded = quota_refund(reply_id=reply.id, reason=why)
    if ending["status"] == Message.Status.FAILED and finished:
        _log_failure(reply, kind=stream.finish_reason, detail=ending["error"])
    _announce_end(reply, refunded=refunded, stored=stored)


def _announce_end(reply: Message, *, refunded: bool, stored: dict | None) -> None:
    """Every tab gets the reply as stored. `stored`: the values this run's update wrote to its row,
    over the row as claimed (what else a reply has does not change while it streams); None when
    this run's update found it ended or deleted, so the row is read."""
    publish.buffer_clear(reply.id)
    if stored is not None:
        for name, value in stored.items():
            setattr(reply, name, value)
        events.reply_done(reply, refunded=refunded)
        return
    ended = Message.objects.select_related("model", "conversation__user").filter(id=reply.id).first()
    if ended is not None:  # None: deleted with its conversation; no tab shows it
        events.reply_done(ended, refunded=refunded)


def reply_fail(
    *,
    reply: Message,
    stream: ReplyStream,
    error: str,
    kind: str,
    detail: str = "",
    lease_expired_before: dt.datetime | None = None,
) -> None:
    """End a reply that went wrong. Partial text is kept and marked incomplete; no text, no charge.

    `error` is for the user; `kind` and `detail` (the provider's own words) go to the log only.
    """
    stream.flush()
    text = "".join(stream.text)
    live = Message.objects.filter(id=reply.id, status__in=[*LIVE, Message.Status.STOPPED])
    if lease_expired_before:
        live = live.filter(lease_expires_at__lt=lease_expired_before)
    values = dict(
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
    with transaction.atomic():
        ended = live.update(**values)
        if not ended and Message.objects.filter(id=reply.id).exists():
            return  # ended meanwhile by someone else, who settled or refunded it
        # Ended here, or deleted with its conversation: the reservation still needs its one outcome.
        if text:
            quota_settle(reply_id=reply.id, usage=stream.usage)
            refunded = False
        else:
            refunded = quota_refund(reply_id=reply.id, reason=error)
    _log_failure(reply, kind=kind, detail=detail or error)
    _announce_end(reply, refunded=refunded, stored=values if ended else None)


def _log_failure(reply: Message, *, kind: str, detail: str) -> None:
    """One line for every reply that ends failed; staff are alerted when failures repeat."""
    log.error("reply failed: kind=%s model=%s: %s", kind, reply.model.slug, detail, extra={"reply_id": reply.id})
    if failure_count() >= REPEATED_FAILURES:
        provider_alert_raise(f"Replies are failing repeatedly (the last: {kind}, {detail}). See the worker log.")


PENDING_GRACE = dt.timedelta(minutes=2)


def reply_reap(*, now: dt.datetime | None = None) -> int:
    """End replies whose worker died, re-enqueue replies whose task was lost, and close orphaned reservations.

    A reply is dead when its lease (renewed with every checkpoint, each second) ran out:
    it keeps its checkpointed text, marked incomplete, and is refunded if it had
    none. It is never generated again, so no answer is written twice.
    """
    now = now or timezone.now()
    dead = Message.objects.filter(status=Message.Status.STREAMING, lease_expires_at__lt=now)
    ended = 0
    for reply in dead.select_related("conversation", "model"):
        stream = ReplyStream(reply, text=[reply.text], reasoning=[reply.reasoning])
        reply_fail(
            reply=reply,
            stream=stream,
            lease_expired_before=now,
            kind="worker_lost",
            error="The worker writing this answer stopped unexpectedly.",
        )
        ended += 1
    # A pending reply nobody claimed (the broker lost its task): enqueue it again;
    # the claim's compare-and-set makes a duplicate harmless.
    lost = Message.objects.filter(status=Message.Status.PENDING, updated_at__lt=now - PENDING_GRACE)
    from .tasks import reply_generate

    for message_id in list(lost.values_list("id", flat=True)):
        Message.objects.filter(id=message_id).update(updated_at=now)
        reply_generate.delay(message_id)
    # A reservation whose reply was deleted (with its conversation) while no worker was writing it
    # (or its worker died): nothing was shown that we know of, so it is refunded.
    orphans = Reservation.objects.filter(state=Reservation.State.RESERVED, created_at__lt=now - LEASE - PENDING_GRACE)
    orphans = orphans.exclude(reply_id__in=Message.objects.values("id"))
    for reply_id in list(orphans.values_list("reply_id", flat=True)):
        quota_refund(reply_id=reply_id, reason="conversation deleted before the answer was written")
    return ended

"""The only code that reserves, settles or refunds message quota, or changes who gets what.

Every counted reservation takes the user's QuotaCounter row lock for that
model, so concurrent sends from any number of processes are serialised per
user and model. A reply's Reservation row moves reserved → settled or
refunded by compare-and-set, once; the ledger's unique constraints back that up.
Every change lands in the ledger.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from catalog.context import prompt_budget
from catalog.models import AIModel
from catalog.prices import Price, cost_micros, dollars, price_at, price_sql
from live.publish import event_send, user_group

from .models import (
    Budget,
    BudgetCounter,
    BudgetKind,
    LedgerEntry,
    Limit,
    Notice,
    Plan,
    QuotaCounter,
    QuotaGrant,
    QuotaOverride,
    Reservation,
    UserPlan,
    WindowKind,
)
from .notices import notice_send_once
from .selectors import (
    BudgetStatus,
    Counted,
    QuotaStatus,
    Rules,
    budget_current,
    quota_json,
    quota_status,
    rules_and_budget_get,
    user_time_zone,
    window_current,
)
from .windows import Window, anchored_window, calendar_window, format_reset, window_length


class QuotaRefused(Exception):
    """The user may not send to this model now; `str()` says why and until when."""

    def __init__(self, message: str, *, model: AIModel, resets_at: dt.datetime | None, notice: str = ""):
        super().__init__(message)
        self.model = model
        self.resets_at = resets_at
        # The limit reached, as a dedupe key for the staff notice (one per window); "" for no notice.
        self.notice = notice

    def alternative(self, user) -> QuotaStatus | None:
        """Another model the user still has messages for, to offer instead."""
        others = [s for s in quota_status(user=user) if s.model.id != self.model.id and not s.exhausted]
        return others[0] if others else None


def _window_key(rule: Limit | Budget, resets_at: dt.datetime | None, now: dt.datetime) -> str:
    """One key per window: its end, or for rolling windows the window-length slice of time now is in."""
    if rule.window_kind == WindowKind.ROLLING or resets_at is None:
        return f"r{int(now.timestamp() // window_length(rule).total_seconds())}"
    return resets_at.isoformat()


def _refusal(model: AIModel, limit: Limit | None, resets_at: dt.datetime | None, tz: dt.tzinfo, user=None, now=None) -> QuotaRefused:
    if limit is None or limit.disabled or (limit.messages is None and not limit.unlimited):
        return QuotaRefused(f"{model.name} is not available on your plan.", model=model, resets_at=None)
    when = f" — resets {format_reset(resets_at, tz)}" if resets_at else ""
    notice = f"limit:{user.pk}:{model.id}:{_window_key(limit, resets_at, now)}" if user is not None and now is not None else ""
    return QuotaRefused(f"{model.name} limit reached{when}.", model=model, resets_at=resets_at, notice=notice)


_RESERVATION = Reservation._meta.db_table
_LEDGER = LedgerEntry._meta.db_table
_COUNTER = QuotaCounter._meta.db_table

# Count a reply: `counter` is a statement that yields the window the reply is counted in, or no row
# when it refuses; the reservation and its ledger entry are written in the same statement. These are
# the statement's WITH clauses (QuotaHold.ctes): a send runs them with its own writes, in one round trip.
RESERVE_CTES = f"""
counter AS ({{counter}}),
reservation AS (
    INSERT INTO {_RESERVATION} (reply_id, user_id, model_id, state, window_start, counter_resets, created_at, tokens, micros)
    SELECT %(reply)s, %(user)s, %(model)s, %(reserved)s, window_start, resets, %(created_at)s, 0, 0 FROM counter
    RETURNING reply_id
),
ledger AS (
    INSERT INTO {_LEDGER} (user_id, model_id, kind, delta, message_id, note,
                           prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, cost_micros, created_at)
    SELECT %(user)s, %(model)s, %(kind)s, 1, reply_id, '', 0, 0, 0, 0, 0, %(created_at)s FROM reservation
)
"""

# No limit: nothing to count against.
UNLIMITED = "SELECT NULL::timestamptz AS window_start, NULL::integer AS resets, NULL::integer AS used, NULL::timestamptz AS window_end"

# Rolling windows count the reservations themselves, under the counter lock taken beforehand, so
# the reservation keeps no window start: a refund has no counter to give back to.
ROLLING = f"""
UPDATE {_COUNTER} SET window_start = %(start)s, window_end = %(end)s, used = %(used)s
WHERE id = %(counter)s
RETURNING NULL::timestamptz AS window_start, NULL::integer AS resets, NULL::integer AS used, NULL::timestamptz AS window_end
"""

# Anchored and calendar windows: check and count in one statement. ON CONFLICT locks the user's
# (user, model) row and evaluates the WHERE against its latest committed version once the lock is
# granted, so of two sends racing for the last slot the second sees the first's count and is
# refused; a refused send returns no row but holds the lock until its transaction ends.
# The counter's window carries on while an anchored one is open, or while the calendar window of
# now has the same start; otherwise the message opens %(start)s to %(end)s.
_OPEN = "(%(anchored)s AND c.window_end > %(now)s)"
_SAME = f"({_OPEN} OR c.window_start = %(start)s)"
WINDOWED = f"""
INSERT INTO {_COUNTER} AS c (user_id, model_id, window_start, window_end, used)
SELECT %(user)s, %(model)s, %(start)s, %(end)s, 1 WHERE %(allowed)s > 0
ON CONFLICT (user_id, model_id) DO UPDATE SET
    used = CASE WHEN {_SAME} THEN c.used + 1 ELSE 1 END,
    window_start = CASE WHEN {_OPEN} THEN c.window_start ELSE %(start)s END,
    window_end = CASE WHEN {_OPEN} THEN c.window_end ELSE %(end)s END
WHERE CASE WHEN {_SAME} THEN c.used < %(allowed)s ELSE true END
RETURNING c.window_start, c.resets, c.used, c.window_end
"""


def quota_reserve(
    *, user, model: AIModel, reply_id: int, now: dt.datetime | None = None, prompt_tokens: int | Callable[[], int | None] | None = None
) -> Counted | None:
    """Count the reply `reply_id` against the user's limit for `model` and their budget, or raise QuotaRefused.

    Must run inside the transaction that stores the reply. Holds the (user, model)
    QuotaCounter row lock until that transaction ends: this is what stops two
    concurrent sends both taking the last slot. Anchored and calendar windows
    take two round trips (the rules and the budget, then one statement that checks,
    counts and records); rolling windows, which count the reservations themselves, take five.
    A send that read the rules already runs `quota_hold`'s statement with its own writes instead.

    With a token or money budget, the reply also holds its worst case (`prompt_tokens`, a number
    or a function giving it, asked only then; the model's whole prompt room when None, plus the
    model's output reserve) under the user's BudgetCounter row lock, taken after the counter's.

    Returns what the picker now shows for `model` when the statement that counted it says it all
    (unlimited, or an anchored or calendar window; no budget): the announcement after commit need not read it again.
    """
    now = now or timezone.now()
    hold = quota_hold(user=user, model=model, reply_id=reply_id, rules_and_budget=rules_and_budget_get(user, now, model.id), now=now)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {hold.ctes} SELECT true, window_start, used, window_end FROM counter", hold.params)
        counted = cursor.fetchone()
    return hold.counted(counted, prompt_tokens=prompt_tokens)


@dataclass(frozen=True)
class QuotaHold:
    """A reply's reservation, ready to run: `ctes` with `params`, then `counted` with the row the
    statement returns from its `counter` (found, window_start, used, window_end), or None for no row."""

    user: Any
    model: AIModel
    reply_id: int
    rules: Rules
    budget: Budget | None
    limit: Limit
    counter: str
    window: Window | None
    now: dt.datetime
    params: dict

    @property
    def ctes(self) -> str:
        return RESERVE_CTES.format(counter=self.counter)

    def counted(self, row: tuple | None, *, prompt_tokens: int | Callable[[], int | None] | None = None) -> Counted | None:
        """What the reservation did: the picker's numbers for the model (see quota_reserve), or QuotaRefused."""
        user, model, limit, rules, now = self.user, self.model, self.limit, self.rules, self.now
        if row is None or not row[0]:
            # Refused, the counter (if there is one) still locked: read until when.
            counter_row = QuotaCounter.objects.filter(user=user, model=model).first()
            _, _, resets_at = window_current(limit, counter_row, rules, user, now)
            raise _refusal(model, limit, resets_at, user_time_zone(user), user, now)
        if self.budget is not None:
            prompt = prompt_tokens() if callable(prompt_tokens) else prompt_tokens
            _budget_hold(
                user=user, model=model, budget=self.budget, reply_id=self.reply_id, prompt_tokens=prompt, now=now, tz=rules.time_zone
            )
            return None
        if self.counter == UNLIMITED:
            return Counted(QuotaStatus(model, None, 0, None, False, limit.describe()), rules.efforts)
        if self.counter != WINDOWED:
            return None
        _, _, used, window_end = row
        assert limit.messages is not None and self.window is not None  # a windowed counter: quota_hold set both
        allowed = limit.messages + rules.grants.get(model.id, 0)
        # As quota_status (window_current) gives it: the counter's window is the one now is in; an anchored
        # one ends when the counter says, a calendar one at the end of now's window, in the plan's time zone.
        resets_at = window_end if limit.window_kind == WindowKind.ANCHORED else self.window.end
        return Counted(QuotaStatus(model, allowed, used, resets_at, False, limit.describe()), rules.efforts)


def quota_hold(*, user, model: AIModel, reply_id: int, rules_and_budget: tuple[Rules, Budget | None], now: dt.datetime) -> QuotaHold:
    """The statement that counts the reply `reply_id`, given the user's rules and budget read this transaction
    (quotas.selectors.rules_and_budget_get); raises QuotaRefused when the rules alone refuse it.

    A rolling window locks the user's counter for `model` here, and refuses here when it is full.
    """
    rules, budget = rules_and_budget
    limit = rules.limit_for(model.id)
    if limit is None or limit.disabled or (limit.messages is None and not limit.unlimited):
        # Fail closed: no rule for this model, or no number and not explicitly unlimited.
        raise _refusal(model, limit, None, user_time_zone(user))
    params = {
        "user": user.pk,
        "model": model.id,
        "reply": reply_id,
        "reserved": Reservation.State.RESERVED,
        "kind": LedgerEntry.Kind.RESERVE,
        "created_at": timezone.now(),
    }
    window = None
    if limit.unlimited or limit.messages is None:
        counter = UNLIMITED
    elif limit.window_kind == WindowKind.ROLLING:
        counter = ROLLING
        QuotaCounter.objects.bulk_create([QuotaCounter(user=user, model=model)], ignore_conflicts=True)
        locked = QuotaCounter.objects.select_for_update().get(user=user, model=model)
        used, window, resets_at = window_current(limit, locked, rules, user, now)
        if used >= limit.messages + rules.grants.get(model.id, 0):
            raise _refusal(model, limit, resets_at, user_time_zone(user), user, now)
        params.update(counter=locked.id, used=used + 1, start=window.start, end=window.end)
    else:
        counter = WINDOWED
        anchored = limit.window_kind == WindowKind.ANCHORED
        window = anchored_window(limit, now) if anchored else calendar_window(limit, now, rules.time_zone)
        params.update(
            anchored=anchored, now=now, start=window.start, end=window.end, allowed=limit.messages + rules.grants.get(model.id, 0)
        )
    return QuotaHold(user, model, reply_id, rules, budget, limit, counter, window, now, params)


def _budget_hold(*, user, model: AIModel, budget: Budget, reply_id: int, prompt_tokens: int | None, now: dt.datetime, tz) -> None:
    """Hold the reply's worst case against the user's budget, or raise QuotaRefused.

    The BudgetCounter row lock serialises the user's budgeted sends across every model and
    process: of two sends racing for the last cent, the second sees the first's hold.
    """
    prompt = prompt_budget(model.context_window, model.max_output_tokens) if prompt_tokens is None else prompt_tokens
    tokens = prompt + model.max_output_tokens
    price = price_at(model.id, now)
    if price is None and budget.kind == BudgetKind.DOLLARS:
        # Fail closed: an answer of unknown price cannot be held against money.
        raise QuotaRefused(f"{model.name} has no price yet, so it cannot be used on a money budget.", model=model, resets_at=None)
    micros = cost_micros(price, prompt_tokens=prompt, completion_tokens=model.max_output_tokens) if price else 0
    BudgetCounter.objects.bulk_create([BudgetCounter(user=user)], ignore_conflicts=True)
    counter = BudgetCounter.objects.select_for_update().get(user=user)
    spent, window, resets_at = budget_current(budget, counter, tz, user, now)
    need = tokens if budget.kind == BudgetKind.TOKENS else micros
    if spent + need > budget.units:
        status = BudgetStatus(budget, spent, resets_at)
        when = f" — resets {format_reset(resets_at, user_time_zone(user))}" if resets_at else ""
        raise QuotaRefused(
            f"Budget reached: {model.name} needs up to {status.amount(need)}{'' if budget.kind == BudgetKind.DOLLARS else ' tokens'}"
            f" for a message and {status.text()}{when}.",
            model=model,
            resets_at=resets_at,
            notice=f"budget:{user.pk}:{_window_key(budget, resets_at, now)}",
        )
    window_start = resets = None
    if budget.window_kind != WindowKind.ROLLING:  # rolling budgets sum the reservations themselves
        fresh = counter.window_start != window.start
        counter.window_start, counter.window_end = window.start, window.end
        counter.tokens = tokens + (0 if fresh else counter.tokens)
        counter.micros = micros + (0 if fresh else counter.micros)
        counter.save(update_fields=["window_start", "window_end", "tokens", "micros"])
        window_start, resets = window.start, counter.resets
    held = Reservation.objects.filter(reply_id=reply_id)
    held.update(tokens=tokens, micros=micros, budget_window_start=window_start, budget_resets=resets)
    LedgerEntry.objects.filter(reply_id=reply_id, kind=LedgerEntry.Kind.RESERVE).update(
        cost_micros=micros, note=f"holds up to {tokens:,} tokens, ${dollars(micros):.6f}"
    )


def quota_settle(*, reply_id: int, usage: dict[str, int] | None = None) -> bool:
    """Mark a reserved reply as spent, recording its tokens and cost. False if it was already settled or refunded.

    The cost is the reply's usage at the model's price in force when it was sent. A budget's
    hold becomes the actual use, in the window it was held in: the rest goes back.
    """
    usage = usage or {}
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    cached = usage.get("cached_tokens") or 0
    # No savepoint: inside a caller's transaction the writes stand or fall with it.
    with transaction.atomic(savepoint=False):
        moved = _move(reply_id, Reservation.State.SETTLED, with_price=True)
        if moved is None:
            return False
        reservation, price = moved
        micros = cost_micros(price, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached) if price else 0
        _budget_counter_adjust(reservation, tokens=prompt + completion, micros=micros)
        with connection.cursor() as cursor:
            cursor.execute(
                _SETTLE_SQL,
                {
                    "reply": reply_id,
                    "user": reservation.user_id,
                    "model": reservation.model_id,
                    "kind": LedgerEntry.Kind.SETTLE,
                    "tokens": prompt + completion,
                    "prompt": prompt,
                    "completion": completion,
                    "reasoning": usage.get("reasoning_tokens") or 0,
                    "cached": min(cached, prompt),
                    "micros": micros,
                    "note": "" if price else "no price for this model: cost unknown",
                    "created_at": timezone.now(),
                },
            )
        if micros and settings.SPEND_ALERT_DOLLARS > 0:
            _spend_check()
    return True


# A settled reply's actual use on its reservation, and its ledger entry, in one round trip.
_SETTLE_SQL = f"""
WITH used AS (UPDATE {_RESERVATION} SET tokens = %(tokens)s, micros = %(micros)s WHERE reply_id = %(reply)s)
INSERT INTO {_LEDGER} (user_id, model_id, kind, delta, message_id, note,
                       prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, cost_micros, created_at)
VALUES (%(user)s, %(model)s, %(kind)s, 0, %(reply)s, %(note)s,
        %(prompt)s, %(completion)s, %(reasoning)s, %(cached)s, %(micros)s, %(created_at)s)
"""


def _budget_adjust(reservation: Reservation, *, tokens: int, micros: int) -> None:
    """The reply now uses `tokens` and `micros` (0 for a refund): its hold moves to that, once."""
    Reservation.objects.filter(reply_id=reservation.reply_id).update(tokens=tokens, micros=micros)
    _budget_counter_adjust(reservation, tokens=tokens, micros=micros)


def _budget_counter_adjust(reservation: Reservation, *, tokens: int, micros: int) -> None:
    """The budget window the reply was held in gives back (or takes) the difference from its hold."""
    start, resets = reservation.budget_window_start, reservation.budget_resets
    if start is not None and resets is not None and (tokens, micros) != (reservation.tokens, reservation.micros):
        # Only the window it was held in, and only if no reset closed it since (like the message counter).
        BudgetCounter.objects.filter(user_id=reservation.user_id, window_start=start, resets=resets).update(
            tokens=F("tokens") + (tokens - reservation.tokens), micros=F("micros") + (micros - reservation.micros)
        )


def _spend_check(now: dt.datetime | None = None) -> None:
    """Tell staff, once a calendar month (UTC), when the organisation's spend passes SPEND_ALERT_DOLLARS."""
    now = now or timezone.now()
    threshold = settings.SPEND_ALERT_DOLLARS
    month = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    key = f"spend:{month:%Y-%m}:{threshold}"
    if notice_seen(key):
        return
    spent = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SETTLE, created_at__gte=month).aggregate(s=Sum("cost_micros"))["s"] or 0
    if dollars(spent) >= threshold:
        notice_send_once(
            key=key,
            subject=f"Spend passed ${threshold:,.2f} this month",
            body=f"Answers have cost ${dollars(spent):,.2f} since {month:%d %b %Y} 00:00 UTC (threshold ${threshold:,.2f}). See /usage/.",
        )


def notice_seen(key: str) -> bool:
    return Notice.objects.filter(key=key).exists()


def quota_refusal_notify(*, user, refusal: QuotaRefused) -> None:
    """Tell staff a user reached a limit or budget, at most once per window. Call after the refused
    transaction ended (its writes were rolled back); reaching "not on your plan" tells nobody."""
    if not refusal.notice:
        return
    with transaction.atomic():
        notice_send_once(
            key=refusal.notice,
            subject=f"{user.get_username()} reached a limit",
            body=f"{user.get_username()}: {refusal}",
        )


def quota_refund(*, reply_id: int, reason: str) -> bool:
    """Give back the message a failed reply reserved, exactly once.

    The compare-and-set on the reservation's state lets only one of several
    concurrent callers through; the ledger's unique constraint backs it up.
    """
    try:
        with transaction.atomic():
            moved = _move(reply_id, Reservation.State.REFUNDED)
            if moved is None:
                return False
            reservation, _ = moved
            if reservation.window_start is not None and reservation.counter_resets is not None:
                # Only the window the reply was counted in gets the slot back. An admin reset since
                # the reservation closed that window, even when the next one has the same start
                # (a calendar day): its count is not this reservation's to lower.
                QuotaCounter.objects.filter(
                    user_id=reservation.user_id,
                    model_id=reservation.model_id,
                    window_start=reservation.window_start,
                    resets=reservation.counter_resets,
                    used__gt=0,
                ).update(used=F("used") - 1)
            _budget_adjust(reservation, tokens=0, micros=0)
            LedgerEntry.objects.create(
                user_id=reservation.user_id,
                model_id=reservation.model_id,
                kind=LedgerEntry.Kind.REFUND,
                delta=-1,
                reply_id=reply_id,
                note=reason[:300],
            )
    except IntegrityError:
        return False
    return True


_MOVE_SQL = f"""
UPDATE {_RESERVATION} SET state = %s WHERE reply_id = %s AND state = %s
RETURNING user_id, model_id, window_start, counter_resets, created_at, tokens, micros, budget_window_start, budget_resets
"""

# A settle also needs the price in force when the reply was sent: read in the same round trip.
_MOVE_PRICED_SQL = f"""
WITH moved AS ({_MOVE_SQL})
SELECT moved.*, price.* FROM moved LEFT JOIN LATERAL ({price_sql("moved.model_id", "moved.created_at")}) price ON true
"""


def _move(reply_id: int, state: str, *, with_price: bool = False) -> tuple[Reservation, Price | None] | None:
    """Compare-and-set the reply's reservation from reserved to `state`, in one statement.

    With `with_price`, also the model's price in force when the reservation was made (else None).
    """
    with connection.cursor() as cursor:
        cursor.execute(_MOVE_PRICED_SQL if with_price else _MOVE_SQL, [state, reply_id, Reservation.State.RESERVED])
        row = cursor.fetchone()
    if row is None:
        return None
    user_id, model_id, window_start, resets, created_at, tokens, micros, budget_window_start, budget_resets = row[:9]
    reservation = Reservation(
        reply_id=reply_id,
        user_id=user_id,
        model_id=model_id,
        window_start=window_start,
        counter_resets=resets,
        created_at=created_at,
        tokens=tokens,
        micros=micros,
        budget_window_start=budget_window_start,
        budget_resets=budget_resets,
        state=state,
    )
    prices = row[9:]
    return reservation, (Price(*prices) if prices and prices[0] is not None else None)


def quota_reset(*, user, model: AIModel, actor=None, note: str = "") -> None:
    """Close the user's current window for `model`: the next message opens a fresh one."""
    with transaction.atomic():
        QuotaCounter.objects.bulk_create([QuotaCounter(user=user, model=model)], ignore_conflicts=True)
        counter = QuotaCounter.objects.select_for_update().get(user=user, model=model)
        freed = counter.used
        # Rolling windows only count replies sent after reset_at.
        counter.used, counter.window_start, counter.window_end, counter.reset_at = 0, None, None, timezone.now()
        counter.resets += 1  # refunds of replies counted before this reset leave the new window alone
        counter.save(update_fields=["used", "window_start", "window_end", "reset_at", "resets"])
        LedgerEntry.objects.create(
            user=user, model=model, kind=LedgerEntry.Kind.RESET, delta=-freed, actor=actor, note=note or "window reset"
        )
        quota_push(user_ids=[user.pk])


def quota_grant(*, user, model: AIModel, messages: int, expires_at: dt.datetime, actor=None, note: str = "") -> QuotaGrant:
    with transaction.atomic():
        grant = QuotaGrant.objects.create(user=user, model=model, messages=messages, expires_at=expires_at, created_by=actor, note=note)
        LedgerEntry.objects.create(
            user=user,
            model=model,
            kind=LedgerEntry.Kind.GRANT,
            actor=actor,
            note=f"+{messages} until {expires_at:%Y-%m-%d %H:%M} UTC. {note}".strip(),
        )
        quota_push(user_ids=[user.pk])
    return grant


def quota_grant_revoke(*, grant: QuotaGrant, actor=None) -> None:
    with transaction.atomic():
        LedgerEntry.objects.create(
            user_id=grant.user_id,
            model_id=grant.model_id,
            kind=LedgerEntry.Kind.GRANT,
            actor=actor,
            note=f"revoked grant #{grant.pk}: +{grant.messages} until {grant.expires_at:%Y-%m-%d %H:%M} UTC",
        )
        grant.delete()
        quota_push(user_ids=[grant.user_id])


def quota_override_record(*, override: QuotaOverride, actor=None, removed: bool = False) -> None:
    """Audit an override an admin saved or removed (the admin writes the row itself)."""
    what = "removed" if removed else f"set to {override.describe()}"
    LedgerEntry.objects.create(
        user_id=override.user_id,
        model_id=override.model_id,
        kind=LedgerEntry.Kind.OVERRIDE,
        actor=actor,
        note=f"override {what}",
    )
    quota_push(user_ids=[override.user_id])


def budget_override_record(*, override, actor=None, removed: bool = False) -> None:
    """Audit a budget override an admin saved or removed (the admin writes the row itself)."""
    what = "removed" if removed else ("set to no budget" if override.unlimited else f"set to {override.describe()}")
    LedgerEntry.objects.create(user_id=override.user_id, kind=LedgerEntry.Kind.BUDGET, actor=actor, note=f"budget override {what}")
    quota_push(user_ids=[override.user_id])


def plan_set(*, user, plan: Plan | None, actor=None, note: str = "") -> None:
    """Put the user on `plan`; None means "follow the default plan"."""
    what = f"plan set to {plan}" if plan else "plan set to the default plan"
    with transaction.atomic():
        if plan is None:
            UserPlan.objects.filter(user=user).delete()
        else:
            UserPlan.objects.update_or_create(user=user, defaults={"plan": plan})
        LedgerEntry.objects.create(user=user, kind=LedgerEntry.Kind.PLAN, actor=actor, note=f"{what} {note}".strip())
        quota_push(user_ids=[user.pk])


# Changing a plan's limits updates the pickers of this many of its users at most (the rest at their next send).
PUSH_CAP = 500


def quota_push(*, user_ids: list[int]) -> None:
    """After commit, every open tab of these users gets all its models' numbers anew (staff changed them)."""

    def push() -> None:
        users = get_user_model().objects.filter(pk__in=user_ids[:PUSH_CAP]).select_related("profile")
        for user in users:
            event_send(user_group(user.pk), {"type": "chat.quota", "models": quota_json(user), "partial": False})

    transaction.on_commit(push)


def plan_members(plan: Plan) -> list[int]:
    """The users a plan's limits may apply to: its members, the members of its groups, and for the
    default plan those on no plan (a few more than exactly: pushing someone their own quota is harmless)."""
    members = list(UserPlan.objects.filter(plan=plan).values_list("user_id", flat=True)[:PUSH_CAP])
    in_groups = get_user_model().objects.filter(groups__plans=plan, is_active=True).exclude(pk__in=members).distinct()
    members += list(in_groups.values_list("pk", flat=True)[: PUSH_CAP - len(members)])
    if plan.is_default:
        unplanned = get_user_model().objects.filter(quota_plan__isnull=True, is_active=True)
        members += list(unplanned.values_list("pk", flat=True)[: PUSH_CAP - len(members)])
    return members

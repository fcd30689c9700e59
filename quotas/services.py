"""The only code that reserves, settles or refunds message quota, or changes who gets what.

Every counted reservation takes the user's QuotaCounter row lock for that
model, so concurrent sends from any number of processes are serialised per
user and model. A reply's Reservation row moves reserved → settled or
refunded by compare-and-set, once; the ledger's unique constraints back that up.
Every change lands in the ledger.
"""

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import AIModel
from live.publish import event_send, user_group

from .models import LedgerEntry, Limit, Plan, QuotaCounter, QuotaGrant, QuotaOverride, Reservation, UserPlan, WindowKind
from .selectors import QuotaStatus, quota_json, quota_status, rules_get, user_time_zone, window_current
from .windows import anchored_window, calendar_window, format_reset


class QuotaRefused(Exception):
    """The user may not send to this model now; `str()` says why and until when."""

    def __init__(self, message: str, *, model: AIModel, resets_at: dt.datetime | None):
        super().__init__(message)
        self.model = model
        self.resets_at = resets_at

    def alternative(self, user) -> QuotaStatus | None:
        """Another model the user still has messages for, to offer instead."""
        others = [s for s in quota_status(user=user) if s.model.id != self.model.id and not s.exhausted]
        return others[0] if others else None


def _refusal(model: AIModel, limit: Limit | None, resets_at: dt.datetime | None, tz: dt.tzinfo) -> QuotaRefused:
    if limit is None or limit.disabled or (limit.messages is None and not limit.unlimited):
        return QuotaRefused(f"{model.name} is not available on your plan.", model=model, resets_at=None)
    when = f" — resets {format_reset(resets_at, tz)}" if resets_at else ""
    return QuotaRefused(f"{model.name} limit reached{when}.", model=model, resets_at=resets_at)


_RESERVATION = Reservation._meta.db_table
_LEDGER = LedgerEntry._meta.db_table
_COUNTER = QuotaCounter._meta.db_table

# Count a reply: `counter` is a statement that yields the window the reply is counted in, or no row
# when it refuses; the reservation and its ledger entry are written in the same round trip.
RESERVE_SQL = f"""
WITH counter AS ({{counter}}),
reservation AS (
    INSERT INTO {_RESERVATION} (reply_id, user_id, model_id, state, window_start, counter_resets, created_at)
    SELECT %(reply)s, %(user)s, %(model)s, %(reserved)s, window_start, resets, %(created_at)s FROM counter
    RETURNING reply_id
),
ledger AS (
    INSERT INTO {_LEDGER} (user_id, model_id, kind, delta, message_id, note,
                           prompt_tokens, completion_tokens, reasoning_tokens, created_at)
    SELECT %(user)s, %(model)s, %(kind)s, 1, reply_id, '', 0, 0, 0, %(created_at)s FROM reservation
)
SELECT window_start FROM counter
"""

# No limit: nothing to count against.
UNLIMITED = "SELECT NULL::timestamptz AS window_start, NULL::integer AS resets"

# Rolling windows count the reservations themselves, under the counter lock taken beforehand, so
# the reservation keeps no window start: a refund has no counter to give back to.
ROLLING = f"""
UPDATE {_COUNTER} SET window_start = %(start)s, window_end = %(end)s, used = %(used)s
WHERE id = %(counter)s RETURNING NULL::timestamptz AS window_start, NULL::integer AS resets
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
RETURNING c.window_start, c.resets
"""


def quota_reserve(*, user, model: AIModel, reply_id: int, now: dt.datetime | None = None) -> None:
    """Count the reply `reply_id` against the user's limit for `model`, or raise QuotaRefused.

    Must run inside the transaction that stores the reply. Holds the (user, model)
    QuotaCounter row lock until that transaction ends: this is what stops two
    concurrent sends both taking the last slot. Anchored and calendar windows
    take two round trips (the rules, then one statement that checks, counts and
    records); rolling windows, which count the reservations themselves, take five.
    """
    now = now or timezone.now()
    rules = rules_get(user, now, model.id)
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
    if limit.unlimited or limit.messages is None:
        counter = UNLIMITED
    elif limit.window_kind == WindowKind.ROLLING:
        counter = ROLLING
        QuotaCounter.objects.bulk_create([QuotaCounter(user=user, model=model)], ignore_conflicts=True)
        locked = QuotaCounter.objects.select_for_update().get(user=user, model=model)
        used, window, resets_at = window_current(limit, locked, rules, user, now)
        if used >= limit.messages + rules.grants.get(model.id, 0):
            raise _refusal(model, limit, resets_at, user_time_zone(user))
        params.update(counter=locked.id, used=used + 1, start=window.start, end=window.end)
    else:
        counter = WINDOWED
        anchored = limit.window_kind == WindowKind.ANCHORED
        window = anchored_window(limit, now) if anchored else calendar_window(limit, now, rules.time_zone)
        params.update(
            anchored=anchored, now=now, start=window.start, end=window.end, allowed=limit.messages + rules.grants.get(model.id, 0)
        )
    with connection.cursor() as cursor:
        cursor.execute(RESERVE_SQL.format(counter=counter), params)
        counted = cursor.fetchone()
    if counted is None:
        assert limit is not None  # without a limit, nothing refuses
        # Refused, the counter (if there is one) still locked: read until when.
        counter_row = QuotaCounter.objects.filter(user=user, model=model).first()
        _, _, resets_at = window_current(limit, counter_row, rules, user, now)
        raise _refusal(model, limit, resets_at, user_time_zone(user))


def quota_settle(*, reply_id: int, usage: dict[str, int] | None = None) -> bool:
    """Mark a reserved reply as spent, recording its tokens. False if it was already settled or refunded."""
    usage = usage or {}
    # No savepoint: inside a caller's transaction the two writes stand or fall with it.
    with transaction.atomic(savepoint=False):
        reservation = _move(reply_id, Reservation.State.SETTLED)
        if reservation is None:
            return False
        LedgerEntry.objects.create(
            user_id=reservation.user_id,
            model_id=reservation.model_id,
            kind=LedgerEntry.Kind.SETTLE,
            reply_id=reply_id,
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            reasoning_tokens=usage.get("reasoning_tokens") or 0,
        )
    return True


def quota_refund(*, reply_id: int, reason: str) -> bool:
    """Give back the message a failed reply reserved, exactly once.

    The compare-and-set on the reservation's state lets only one of several
    concurrent callers through; the ledger's unique constraint backs it up.
    """
    try:
        with transaction.atomic():
            reservation = _move(reply_id, Reservation.State.REFUNDED)
            if reservation is None:
                return False
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
RETURNING user_id, model_id, window_start, counter_resets
"""


def _move(reply_id: int, state: str) -> Reservation | None:
    """Compare-and-set the reply's reservation from reserved to `state`, in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(_MOVE_SQL, [state, reply_id, Reservation.State.RESERVED])
        row = cursor.fetchone()
    if row is None:
        return None
    return Reservation(reply_id=reply_id, user_id=row[0], model_id=row[1], window_start=row[2], counter_resets=row[3], state=state)


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

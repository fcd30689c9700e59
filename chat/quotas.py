"""The only code that reserves, settles or refunds message quota.

A limit is (model, messages, window). Windows:
- anchored: opens at the first counted message when none is open; a window of
  N days closes at 00:00 UTC N days after the day it opened, one of N hours
  closes exactly N hours after it opened;
- calendar: day, Monday-start week or month boundaries in the plan's time zone;
- rolling: the last N hours or days; a slot frees as each message ages out.

Every counted reservation takes the user's QuotaCounter row lock for that
model, so concurrent sends from any number of processes are serialised per
user and model; the ledger's unique constraints make a second settle or refund
of one reply impossible.
"""

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from .models import (
    AIModel,
    LedgerEntry,
    Limit,
    Message,
    Plan,
    PlanLimit,
    QuotaCounter,
    QuotaGrant,
    QuotaOverride,
    WindowKind,
)

UTC = dt.UTC
COUNTED = (Message.Quota.RESERVED, Message.Quota.SETTLED)
FEW_LEFT = 10


class QuotaRefused(Exception):
    """The user may not send to this model now; `str()` says why and until when."""

    def __init__(self, message: str, *, model: AIModel, resets_at: dt.datetime | None):
        super().__init__(message)
        self.model = model
        self.resets_at = resets_at


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class QuotaStatus:
    """What the picker shows for one model."""

    model: AIModel
    limit: int | None  # None: unlimited
    used: int
    resets_at: dt.datetime | None
    disabled: bool
    describe: str

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    @property
    def exhausted(self) -> bool:
        return self.disabled or (self.left is not None and self.left == 0)

    def as_json(self, tz: dt.tzinfo) -> dict:
        return {
            "model": self.model.slug,
            "name": self.model.name,
            "description": self.model.description,
            "is_reasoning": self.model.is_reasoning,
            "limit": self.limit,
            "used": self.used,
            "left": self.left,
            "disabled": self.disabled,
            "exhausted": self.exhausted,
            "few_left": self.left is not None and 0 < self.left <= FEW_LEFT,
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
            "resets_label": format_reset(self.resets_at, tz) if self.resets_at else "",
            "window": self.describe,
        }


def format_reset(when: dt.datetime, tz: dt.tzinfo) -> str:
    """'Tue 19 Nov, 01:00' in the user's time zone."""
    local = when.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b, %H:%M}"


def user_time_zone(user) -> zoneinfo.ZoneInfo:
    profile = getattr(user, "profile", None)
    return zoneinfo.ZoneInfo(profile.time_zone if profile else "UTC")


def _length(limit: Limit) -> dt.timedelta:
    hours = {"hour": 1, "day": 24, "week": 24 * 7}[limit.window_unit]
    return dt.timedelta(hours=hours * limit.window_length)


def anchored_window(limit: Limit, opened_at: dt.datetime) -> Window:
    if limit.window_unit == "hour":
        return Window(opened_at, opened_at + _length(limit))
    # Whole days: close at 00:00 UTC N days after the day it opened.
    days = _length(limit).days
    day = opened_at.astimezone(UTC).date() + dt.timedelta(days=days)
    return Window(opened_at, dt.datetime.combine(day, dt.time(0), tzinfo=UTC))


def calendar_window(limit: Limit, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> Window:
    today = now.astimezone(tz).date()
    if limit.window_unit == "day":
        first, after = today, today + dt.timedelta(days=1)
    elif limit.window_unit == "week":
        first = today - dt.timedelta(days=today.weekday())
        after = first + dt.timedelta(days=7)
    else:
        first = today.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    # Midnight local time, whatever the UTC offset is on that date (DST-safe).
    return Window(dt.datetime.combine(first, dt.time(0), tzinfo=tz), dt.datetime.combine(after, dt.time(0), tzinfo=tz))


@dataclass
class Rules:
    """Everything that decides one user's limits: per model the limit that applies, and the grants."""

    limits: dict[int, Limit]
    grants: dict[int, int]
    time_zone: zoneinfo.ZoneInfo

    def limit_for(self, model_id: int) -> Limit | None:
        return self.limits.get(model_id)


def user_plan(user) -> Plan | None:
    """The user's plan, or the default plan for users without one."""
    plan = Plan.objects.filter(profiles__user=user).first()
    return plan or Plan.objects.filter(is_default=True).first()


# Every send asks this, so it is one round trip: per model, the user's override, else the limit of
# the user's plan (the default plan when the profile names none); unexpired grants; the plan's time zone.
RULES_SQL = """
WITH plan AS (
    SELECT id, calendar_time_zone FROM chat_plan
    WHERE id = COALESCE((SELECT plan_id FROM accounts_profile WHERE user_id = %(user)s),
                        (SELECT id FROM chat_plan WHERE is_default))
)
SELECT DISTINCT ON (l.model_id)
       l.overridden, l.model_id, l.messages, l.window_kind, l.window_length, l.window_unit, l.disabled,
       (SELECT COALESCE(SUM(g.messages), 0) FROM chat_quotagrant g
         WHERE g.user_id = %(user)s AND g.model_id = l.model_id AND g.expires_at > %(now)s),
       COALESCE((SELECT calendar_time_zone FROM plan), 'UTC')
FROM (
    SELECT true AS overridden, model_id, messages, window_kind, window_length, window_unit, disabled
      FROM chat_quotaoverride WHERE user_id = %(user)s
    UNION ALL
    SELECT false, model_id, messages, window_kind, window_length, window_unit, disabled
      FROM chat_planlimit WHERE plan_id = (SELECT id FROM plan)
) AS l
WHERE %(model)s::bigint IS NULL OR l.model_id = %(model)s
ORDER BY l.model_id, l.overridden DESC
"""


def rules_get(user, now: dt.datetime, model_id: int | None = None) -> Rules:
    with connection.cursor() as cursor:
        cursor.execute(RULES_SQL, {"user": user.pk, "now": now, "model": model_id})
        rows = cursor.fetchall()
    limits, grants = {}, {}
    for overridden, model, messages, kind, length, unit, disabled, granted, _ in rows:
        limits[model] = (QuotaOverride if overridden else PlanLimit)(
            model_id=model, messages=messages, window_kind=kind, window_length=length, window_unit=unit,
            disabled=disabled,
        )
        grants[model] = granted
    # Without limits, no calendar window needs the plan's time zone.
    return Rules(limits, grants, zoneinfo.ZoneInfo(rows[0][-1] if rows else "UTC"))


def _rolling_used(user, model_id: int, since: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Counted replies since `since`, and when the oldest of them was sent.

    Raw SQL: the picker's status asks this after every send, and the ORM's aggregate
    costs several times the query itself.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*), min(m.created_at) FROM chat_message m
               JOIN chat_conversation c ON c.id = m.conversation_id
               WHERE c.user_id = %s AND m.model_id = %s AND m.role = %s AND m.quota = ANY(%s) AND m.created_at > %s""",
            [user.pk, model_id, Message.Role.ASSISTANT, list(COUNTED), since],
        )
        return cursor.fetchone()


def _current(limit: Limit, counter: QuotaCounter | None, rules: Rules, user, now: dt.datetime):
    """(used, window or None, resets_at) of the window a message sent now would fall in."""
    if limit.window_kind == WindowKind.ROLLING:
        since = now - _length(limit)
        if counter is not None and counter.reset_at and counter.reset_at > since:
            since = counter.reset_at
        used, oldest = _rolling_used(user, limit.model_id, since)
        resets_at = oldest + _length(limit) if oldest else None
        return used, Window(now - _length(limit), now), resets_at
    if limit.window_kind == WindowKind.CALENDAR:
        window = calendar_window(limit, now, rules.time_zone)
        same = counter is not None and counter.window_start == window.start
        return (counter.used if same else 0), window, window.end
    # Anchored: the open window if there is one, else the one the next message opens.
    if counter is not None and counter.window_end and counter.window_start and now < counter.window_end:
        return counter.used, Window(counter.window_start, counter.window_end), counter.window_end
    return 0, None, None


def _refusal(model: AIModel, limit: Limit, resets_at: dt.datetime | None, tz: dt.tzinfo) -> QuotaRefused:
    if limit.disabled:
        return QuotaRefused(f"{model.name} is not available on your plan.", model=model, resets_at=None)
    when = f" — resets {format_reset(resets_at, tz)}" if resets_at else ""
    return QuotaRefused(f"{model.name} limit reached{when}.", model=model, resets_at=resets_at)


# Count a reply: `counter` is a statement that yields the reply's quota_window_start, or no row
# when it refuses; the reply and its ledger entry are written in the same round trip.
RESERVE_SQL = """
WITH counter AS ({counter}),
reply AS (
    UPDATE chat_message SET quota = %(reserved)s, quota_window_start = (SELECT window_start FROM counter)
    WHERE id = %(reply)s AND EXISTS (SELECT FROM counter)
    RETURNING id
),
ledger AS (
    INSERT INTO chat_ledgerentry (user_id, model_id, kind, delta, message_id, note,
                                  prompt_tokens, completion_tokens, reasoning_tokens, created_at)
    SELECT %(user)s, %(model)s, %(kind)s, 1, id, '', 0, 0, 0, %(created_at)s FROM reply
)
SELECT window_start FROM counter
"""

# No limit: nothing to count against.
UNLIMITED = "SELECT NULL::timestamptz AS window_start"

# Rolling windows count the replies themselves, under the counter lock taken beforehand, so the
# reply keeps no window start: a refund has no counter to give back to.
ROLLING = """
UPDATE chat_quotacounter SET window_start = %(start)s, window_end = %(end)s, used = %(used)s
WHERE id = %(counter)s RETURNING NULL::timestamptz AS window_start
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
INSERT INTO chat_quotacounter AS c (user_id, model_id, window_start, window_end, used)
SELECT %(user)s, %(model)s, %(start)s, %(end)s, 1 WHERE %(allowed)s > 0
ON CONFLICT (user_id, model_id) DO UPDATE SET
    used = CASE WHEN {_SAME} THEN c.used + 1 ELSE 1 END,
    window_start = CASE WHEN {_OPEN} THEN c.window_start ELSE %(start)s END,
    window_end = CASE WHEN {_OPEN} THEN c.window_end ELSE %(end)s END
WHERE CASE WHEN {_SAME} THEN c.used < %(allowed)s ELSE true END
RETURNING c.window_start
"""


def quota_reserve(*, user, model: AIModel, reply: Message, now: dt.datetime | None = None) -> None:
    """Count `reply` against the user's limit for `model`, or raise QuotaRefused.

    Must run inside the transaction that stores the reply. Holds the (user, model)
    QuotaCounter row lock until that transaction ends: this is what stops two
    concurrent sends both taking the last slot. Anchored and calendar windows
    take two round trips (the rules, then one statement that checks, counts and
    records); rolling windows, which count the replies themselves, take five.
    """
    now = now or timezone.now()
    rules = rules_get(user, now, model.id)
    limit = rules.limit_for(model.id)
    if limit is not None and limit.disabled:
        raise _refusal(model, limit, None, user_time_zone(user))
    params = {"user": user.pk, "model": model.id, "reply": reply.id, "reserved": Message.Quota.RESERVED,
              "kind": LedgerEntry.Kind.RESERVE, "created_at": timezone.now()}
    if limit is None or limit.messages is None:
        counter = UNLIMITED
    elif limit.window_kind == WindowKind.ROLLING:
        counter = ROLLING
        QuotaCounter.objects.bulk_create([QuotaCounter(user=user, model=model)], ignore_conflicts=True)
        locked = QuotaCounter.objects.select_for_update().get(user=user, model=model)
        used, window, resets_at = _current(limit, locked, rules, user, now)
        if used >= limit.messages + rules.grants.get(model.id, 0):
            raise _refusal(model, limit, resets_at, user_time_zone(user))
        params.update(counter=locked.id, used=used + 1, start=window.start, end=window.end)
    else:
        counter = WINDOWED
        anchored = limit.window_kind == WindowKind.ANCHORED
        window = anchored_window(limit, now) if anchored else calendar_window(limit, now, rules.time_zone)
        params.update(anchored=anchored, now=now, start=window.start, end=window.end,
                      allowed=limit.messages + rules.grants.get(model.id, 0))
    with connection.cursor() as cursor:
        cursor.execute(RESERVE_SQL.format(counter=counter), params)
        counted = cursor.fetchone()
    if counted is None:
        # Refused, the counter (if there is one) still locked: read until when.
        _, _, resets_at = _current(limit, QuotaCounter.objects.filter(user=user, model=model).first(), rules, user, now)
        raise _refusal(model, limit, resets_at, user_time_zone(user))
    reply.quota, reply.quota_window_start = Message.Quota.RESERVED, counted[0]


def quota_settle(*, reply: Message, usage: dict[str, int] | None = None) -> bool:
    """Mark a reserved reply as spent, recording its tokens. False if it was already settled or refunded."""
    usage = usage or {}
    # No savepoint: inside a caller's transaction the two writes stand or fall with it.
    with transaction.atomic(savepoint=False):
        if not Message.objects.filter(id=reply.id, quota=Message.Quota.RESERVED).update(quota=Message.Quota.SETTLED):
            return False
        LedgerEntry.objects.create(
            user_id=reply.conversation.user_id,
            model_id=reply.model_id,
            kind=LedgerEntry.Kind.SETTLE,
            message=reply,
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            reasoning_tokens=usage.get("reasoning_tokens") or 0,
        )
    return True


def quota_refund(*, reply: Message, reason: str) -> bool:
    """Give back the message a failed reply reserved, exactly once.

    The compare-and-set on Message.quota lets only one of several concurrent
    callers through; the ledger's unique constraint backs it up.
    """
    try:
        with transaction.atomic():
            if not Message.objects.filter(id=reply.id, quota=Message.Quota.RESERVED).update(
                quota=Message.Quota.REFUNDED
            ):
                return False
            user_id = reply.conversation.user_id
            if reply.quota_window_start is not None:
                # Only the window the reply was counted in gets the slot back.
                QuotaCounter.objects.filter(
                    user_id=user_id, model_id=reply.model_id, window_start=reply.quota_window_start, used__gt=0
                ).update(used=F("used") - 1)
            LedgerEntry.objects.create(
                user_id=user_id,
                model_id=reply.model_id,
                kind=LedgerEntry.Kind.REFUND,
                delta=-1,
                message=reply,
                note=reason[:300],
            )
    except IntegrityError:
        return False
    return True


def quota_status(*, user, now: dt.datetime | None = None, model: AIModel | None = None) -> list[QuotaStatus]:
    """Per enabled model (or just `model`): the limit, what is used and when it resets. Reads only."""
    now = now or timezone.now()
    rules = rules_get(user, now, model.id if model else None)
    counters = QuotaCounter.objects.filter(user=user, **({"model": model} if model else {}))
    counters = {c.model_id: c for c in counters}
    statuses = []
    for one in [model] if model else AIModel.objects.filter(enabled=True):
        limit = rules.limit_for(one.id)
        if limit is None or limit.messages is None or limit.disabled:
            statuses.append(
                QuotaStatus(one, None, 0, None, bool(limit and limit.disabled), limit.describe() if limit else "unlimited")
            )
            continue
        used, _, resets_at = _current(limit, counters.get(one.id), rules, user, now)
        allowed = limit.messages + rules.grants.get(one.id, 0)
        statuses.append(QuotaStatus(one, allowed, used, resets_at, False, limit.describe()))
    return statuses


def quota_reset(*, user, model: AIModel, actor=None, note: str = "") -> None:
    """Close the user's current window for `model`: the next message opens a fresh one."""
    with transaction.atomic():
        QuotaCounter.objects.bulk_create([QuotaCounter(user=user, model=model)], ignore_conflicts=True)
        counter = QuotaCounter.objects.select_for_update().get(user=user, model=model)
        freed = counter.used
        # Rolling windows only count replies sent after reset_at.
        counter.used, counter.window_start, counter.window_end, counter.reset_at = 0, None, None, timezone.now()
        counter.save(update_fields=["used", "window_start", "window_end", "reset_at"])
        LedgerEntry.objects.create(
            user=user, model=model, kind=LedgerEntry.Kind.RESET, delta=-freed, actor=actor, note=note or "window reset"
        )


def quota_grant(*, user, model: AIModel, messages: int, expires_at: dt.datetime, actor=None, note: str = "") -> QuotaGrant:
    with transaction.atomic():
        grant = QuotaGrant.objects.create(
            user=user, model=model, messages=messages, expires_at=expires_at, created_by=actor, note=note
        )
        LedgerEntry.objects.create(
            user=user,
            model=model,
            kind=LedgerEntry.Kind.GRANT,
            actor=actor,
            note=f"+{messages} until {expires_at:%Y-%m-%d %H:%M} UTC. {note}".strip(),
        )
    return grant


def quota_grant_revoke(*, grant: QuotaGrant, actor=None) -> None:
    with transaction.atomic():
        LedgerEntry.objects.create(
            user_id=grant.user_id, model_id=grant.model_id, kind=LedgerEntry.Kind.GRANT, actor=actor,
            note=f"revoked grant #{grant.pk}: +{grant.messages} until {grant.expires_at:%Y-%m-%d %H:%M} UTC",
        )
        grant.delete()


def quota_override_record(*, override: QuotaOverride, actor=None, removed: bool = False) -> None:
    """Audit an override an admin saved or removed (the admin writes the row itself)."""
    what = "removed" if removed else f"set to {override.describe()}"
    LedgerEntry.objects.create(
        user_id=override.user_id, model_id=override.model_id, kind=LedgerEntry.Kind.OVERRIDE, actor=actor,
        note=f"override {what}",
    )


def plan_set(*, user, plan: Plan | None, actor=None, note: str = "") -> None:
    """Put the user on `plan`; None means "follow the default plan"."""
    from accounts.models import Profile

    what = f"plan set to {plan}" if plan else "plan set to the default plan"
    with transaction.atomic():
        Profile.objects.update_or_create(user=user, defaults={"plan": plan})
        LedgerEntry.objects.create(user=user, kind=LedgerEntry.Kind.PLAN, actor=actor, note=f"{what} {note}".strip())

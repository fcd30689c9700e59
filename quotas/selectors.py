"""Reads: the rules that apply to a user, and what the picker shows per model."""

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from catalog.models import AIModel

from .models import (
    LedgerEntry,
    Limit,
    Plan,
    PlanLimit,
    QuotaCounter,
    QuotaGrant,
    QuotaOverride,
    Reservation,
    UserPlan,
    WindowKind,
)
from .windows import Window, calendar_window, format_reset, window_length

FEW_LEFT = 10


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


def user_time_zone(user) -> zoneinfo.ZoneInfo:
    profile = getattr(user, "profile", None)
    return zoneinfo.ZoneInfo(profile.time_zone if profile else "UTC")


@dataclass
class Rules:
    """Everything that decides one user's limits: per model the limit that applies, and the grants."""

    limits: dict[int, Limit]
    grants: dict[int, int]
    time_zone: zoneinfo.ZoneInfo

    def limit_for(self, model_id: int) -> Limit | None:
        return self.limits.get(model_id)


@dataclass(frozen=True)
class PlanChoice:
    """The plan that applies to a user, and why."""

    plan: Plan | None
    source: str  # "user", "group", "default" or "none"
    group: str = ""

    @property
    def source_label(self) -> str:
        """Why, for staff: how the plan came to apply."""
        labels = {"user": "assigned to this user", "default": "the default plan", "none": "no plan and no default"}
        return labels.get(self.source) or f"from the group \u201c{self.group}\u201d (the highest priority of their groups' plans)"

    @property
    def why(self) -> str:
        """Why, for the user."""
        if self.source == "user":
            return "Staff assigned this plan to you personally."
        if self.source == "group":
            return (
                f"You are in the group \u201c{self.group}\u201d, which is on this plan. When your groups are on "
                "several plans, the one with the highest priority applies."
            )
        if self.source == "default":
            return "The default plan: no plan is assigned to you or to any of your groups."
        return "No plan applies to you (no plan of yours or your groups, and no default plan): every model is refused."


# The plan that applies to a user: their own plan (UserPlan), else of the plans their groups are on the one
# with the highest priority (ties: the first by name), else the default plan. One row, or none (fail closed).
PLAN_CHOICE_SQL = f"""
SELECT plan_id, source, group_name FROM (
    SELECT plan_id, 'user' AS source, '' AS group_name, 0 AS rank
      FROM {UserPlan._meta.db_table} WHERE user_id = %(user)s
    UNION ALL
    (SELECT p.id, 'group', g.name, 1
       FROM {Plan._meta.db_table} p
       JOIN {Plan.groups.through._meta.db_table} pg ON pg.plan_id = p.id
       JOIN {Group._meta.db_table} g ON g.id = pg.group_id
       JOIN {get_user_model().groups.through._meta.db_table} ug ON ug.group_id = pg.group_id
      WHERE ug.user_id = %(user)s
      ORDER BY p.priority DESC, p.name, g.name LIMIT 1)
    UNION ALL
    SELECT id, 'default', '', 2 FROM {Plan._meta.db_table} WHERE is_default
) AS choice
ORDER BY rank LIMIT 1
"""


def plan_choice(user) -> PlanChoice:
    """Which plan applies to the user and why (see PLAN_CHOICE_SQL; docs/quotas.md, "Which plan")."""
    with connection.cursor() as cursor:
        cursor.execute(PLAN_CHOICE_SQL, {"user": user.pk})
        row = cursor.fetchone()
    if row is None:
        return PlanChoice(None, "none")
    plan_id, source, group = row
    return PlanChoice(Plan.objects.get(id=plan_id), source, group)


def user_plan(user) -> Plan | None:
    """The plan that applies to the user: their own, else their groups' (highest priority), else the default."""
    return plan_choice(user).plan


# Every send asks this, so it is one round trip: per model, the user's override, else the limit of
# the plan that applies to the user (PLAN_CHOICE_SQL); unexpired grants; the plan's time zone.
RULES_SQL = f"""
WITH plan AS (
    SELECT id, calendar_time_zone FROM {Plan._meta.db_table}
    WHERE id = (SELECT plan_id FROM ({PLAN_CHOICE_SQL}) AS chosen)
)
SELECT DISTINCT ON (l.model_id)
       l.overridden, l.model_id, l.messages, l.window_kind, l.window_length, l.window_unit, l.disabled, l.unlimited,
       (SELECT COALESCE(SUM(g.messages), 0) FROM {QuotaGrant._meta.db_table} g
         WHERE g.user_id = %(user)s AND g.model_id = l.model_id AND g.expires_at > %(now)s),
       COALESCE((SELECT calendar_time_zone FROM plan), 'UTC')
FROM (
    SELECT true AS overridden, model_id, messages, window_kind, window_length, window_unit, disabled, unlimited
      FROM {QuotaOverride._meta.db_table} WHERE user_id = %(user)s
    UNION ALL
    SELECT false, model_id, messages, window_kind, window_length, window_unit, disabled, unlimited
      FROM {PlanLimit._meta.db_table} WHERE plan_id = (SELECT id FROM plan)
) AS l
WHERE %(model)s::bigint IS NULL OR l.model_id = %(model)s
ORDER BY l.model_id, l.overridden DESC
"""


def rules_get(user, now: dt.datetime, model_id: int | None = None) -> Rules:
    with connection.cursor() as cursor:
        cursor.execute(RULES_SQL, {"user": user.pk, "now": now, "model": model_id})
        rows = cursor.fetchall()
    limits: dict[int, Limit] = {}
    grants: dict[int, int] = {}
    for overridden, model, messages, kind, length, unit, disabled, unlimited, granted, _ in rows:
        limits[model] = (QuotaOverride if overridden else PlanLimit)(
            model_id=model,
            messages=messages,
            window_kind=kind,
            window_length=length,
            window_unit=unit,
            disabled=disabled,
            unlimited=unlimited,
        )
        grants[model] = granted
    # Without limits, no calendar window needs the plan's time zone.
    return Rules(limits, grants, zoneinfo.ZoneInfo(rows[0][-1] if rows else "UTC"))


ROLLING_USED_SQL = f"""
SELECT count(*), min(created_at) FROM {Reservation._meta.db_table}
WHERE user_id = %s AND model_id = %s AND state = ANY(%s) AND created_at > %s
"""


def rolling_used(user, model_id: int, since: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Counted messages since `since`, and when the oldest of them was sent.

    Raw SQL: the picker's status asks this after every send, and the ORM's aggregate
    costs several times the query itself.
    """
    counted = [Reservation.State.RESERVED, Reservation.State.SETTLED]
    with connection.cursor() as cursor:
        cursor.execute(ROLLING_USED_SQL, [user.pk, model_id, counted, since])
        return cursor.fetchone()


def window_current(limit: Limit, counter: QuotaCounter | None, rules: Rules, user, now: dt.datetime):
    """(used, window or None, resets_at) of the window a message sent now would fall in."""
    if limit.window_kind == WindowKind.ROLLING:
        since = now - window_length(limit)
        if counter is not None and counter.reset_at and counter.reset_at > since:
            since = counter.reset_at
        used, oldest = rolling_used(user, limit.model_id, since)
        resets_at = oldest + window_length(limit) if oldest else None
        return used, Window(now - window_length(limit), now), resets_at
    if limit.window_kind == WindowKind.CALENDAR:
        window = calendar_window(limit, now, rules.time_zone)
        if counter is not None and counter.window_start == window.start:
            return counter.used, window, window.end
        return 0, window, window.end
    # Anchored: the open window if there is one, else the one the next message opens.
    if counter is not None and counter.window_end and counter.window_start and now < counter.window_end:
        return counter.used, Window(counter.window_start, counter.window_end), counter.window_end
    return 0, None, None


def quota_status(*, user, now: dt.datetime | None = None, model: AIModel | None = None) -> list[QuotaStatus]:
    """Per enabled model (or just `model`): the limit, what is used and when it resets. Reads only."""
    now = now or timezone.now()
    rules = rules_get(user, now, model.id if model else None)
    counters = QuotaCounter.objects.filter(user=user, **({"model": model} if model else {}))
    by_model = {c.model_id: c for c in counters}
    statuses = []
    for one in [model] if model else AIModel.objects.filter(enabled=True):
        limit = rules.limit_for(one.id)
        if limit is None or limit.disabled or limit.messages is None:
            # No rule, or disabled: not available (fail closed). Unlimited: an explicit choice.
            unlimited = limit is not None and limit.unlimited and not limit.disabled
            describe = limit.describe() if limit else "not on your plan"
            statuses.append(QuotaStatus(one, None, 0, None, not unlimited, describe))
            continue
        used, _, resets_at = window_current(limit, by_model.get(one.id), rules, user, now)
        allowed = limit.messages + rules.grants.get(one.id, 0)
        statuses.append(QuotaStatus(one, allowed, used, resets_at, False, limit.describe()))
    return statuses


def quota_json(user, model: AIModel | None = None) -> list[dict]:
    """The picker's numbers, in the user's time zone."""
    tz = user_time_zone(user)
    return [status.as_json(tz) for status in quota_status(user=user, model=model)]


# Every reservation's ledger: one reserve, and one outcome once it is no longer reserved, matching its state.
LEDGER_MISMATCH_SQL = f"""
SELECT r.reply_id, r.state,
       count(*) FILTER (WHERE l.kind = 'reserve'),
       count(*) FILTER (WHERE l.kind = 'settle'),
       count(*) FILTER (WHERE l.kind = 'refund')
FROM {Reservation._meta.db_table} r
LEFT JOIN {LedgerEntry._meta.db_table} l ON l.message_id = r.reply_id AND l.kind IN ('reserve', 'settle', 'refund')
GROUP BY r.reply_id, r.state
HAVING count(*) FILTER (WHERE l.kind = 'reserve') <> 1
    OR count(*) FILTER (WHERE l.kind = 'settle') <> (r.state = 'settled')::int
    OR count(*) FILTER (WHERE l.kind = 'refund') <> (r.state = 'refunded')::int
"""

# Reserve entries with no reservation (a reply counted before reservations existed has one, copied).
ORPHAN_RESERVES_SQL = f"""
SELECT l.message_id FROM {LedgerEntry._meta.db_table} l
WHERE l.kind = 'reserve' AND l.message_id IS NOT NULL
  AND NOT EXISTS (SELECT FROM {Reservation._meta.db_table} r WHERE r.reply_id = l.message_id)
"""

# Anchored and calendar counters: `used` is the reservations still counted in the counter's window.
COUNTER_SQL = f"""
SELECT c.user_id, c.model_id, c.used,
       (SELECT count(*) FROM {Reservation._meta.db_table} r
         WHERE r.user_id = c.user_id AND r.model_id = c.model_id AND r.window_start = c.window_start
           AND r.counter_resets = c.resets AND r.state IN ('reserved', 'settled'))
FROM {QuotaCounter._meta.db_table} c
WHERE c.window_start IS NOT NULL
"""


def quota_check(*, now: dt.datetime | None = None) -> list[str]:
    """The quota invariants, as sentences about what breaks them (an empty list: all hold). Reads only.

    - every reservation has exactly one reserve entry, and one settle or refund entry once it left
      `reserved`, matching its state; every reserve entry has its reservation;
    - every anchored or calendar counter counts exactly the reservations still counted in its window.
    """
    now = now or timezone.now()
    problems = []
    with connection.cursor() as cursor:
        cursor.execute(LEDGER_MISMATCH_SQL)
        for reply_id, state, reserves, settles, refunds in cursor.fetchall():
            problems.append(f"reply #{reply_id} ({state}): {reserves} reserve, {settles} settle, {refunds} refund entries")
        cursor.execute(ORPHAN_RESERVES_SQL)
        for (reply_id,) in cursor.fetchall():
            problems.append(f"reply #{reply_id}: a reserve entry without a reservation")
        cursor.execute(COUNTER_SQL)
        counters = cursor.fetchall()
    users = {u.pk: u for u in get_user_model().objects.filter(id__in={row[0] for row in counters})}
    for user_id, model_id, used, counted in counters:
        limit = rules_get(users[user_id], now, model_id).limit_for(model_id)
        if limit is None or limit.window_kind == WindowKind.ROLLING or limit.messages is None or limit.unlimited:
            continue  # rolling windows count the reservations themselves; unlimited ones count nothing
        if used != counted:
            problems.append(f"user #{user_id}, model #{model_id}: the counter says {used} used, its window holds {counted}")
    return problems

"""Reads: the rules that apply to a user, and what the picker shows per model."""

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from catalog.context import prompt_budget
from catalog.models import AIModel, efforts_parse
from catalog.prices import cost_micros, dollars, price_at

from .models import (
    Budget,
    BudgetCounter,
    BudgetKind,
    BudgetOverride,
    LedgerEntry,
    Limit,
    Plan,
    PlanBudget,
    PlanLimit,
    QuotaCounter,
    QuotaGrant,
    QuotaOverride,
    Reservation,
    UserPlan,
    WindowKind,
)
from .windows import Window, anchored_window, calendar_window, format_reset, window_length

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
    budget: "BudgetStatus | None" = None
    # The budget left cannot cover this model's worst case (its whole output reserve).
    budget_blocked: bool = False

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    @property
    def exhausted(self) -> bool:
        return self.disabled or (self.left is not None and self.left == 0) or self.budget_blocked

    def as_json(self, tz: dt.tzinfo, efforts: list[str] | None = None) -> dict:
        return {
            "model": self.model.slug,
            "name": self.model.name,
            "description": self.model.description,
            "is_reasoning": self.model.is_reasoning,
            # The model's efforts the user's plan allows: the composer's choices (none: no control).
            "efforts": [e for e in self.model.efforts if e in (efforts or [])],
            "system_message": self.model.supports_system_message,
            "limit": self.limit,
            "used": self.used,
            "left": self.left,
            "disabled": self.disabled,
            "exhausted": self.exhausted,
            "few_left": self.left is not None and 0 < self.left <= FEW_LEFT,
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
            "resets_label": format_reset(self.resets_at, tz) if self.resets_at else "",
            "window": self.describe,
            "budget": self.budget.as_json(tz, blocked=self.budget_blocked) if self.budget else None,
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
    # The reasoning efforts the plan allows (efforts_allowed); none without a limit.
    efforts: list[str]

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


def api_access_allowed(user) -> bool:
    """Whether the user's plan lets them use the API. Fail closed: no plan, no access."""
    plan = user_plan(user)
    return plan is not None and plan.api_access


# The id of the plan that applies to the user (PLAN_CHOICE_SQL), or NULL.
PLAN_ID_SQL = f"""(SELECT plan_id FROM ({PLAN_CHOICE_SQL}) AS chosen)"""


def efforts_allowed(user) -> list[str]:
    """The reasoning efforts the user's plan lets them pick (of those a model accepts). No plan: none (fail closed)."""
    plan = user_plan(user)
    return efforts_parse(plan.reasoning_efforts) if plan else []


# Every send asks this, so it is one round trip: per model, the user's override, else the limit of
# the plan that applies to the user (PLAN_ID_SQL); unexpired grants; the plan's time zone and efforts.
RULES_SQL = f"""
WITH plan AS (
    SELECT id, calendar_time_zone, reasoning_efforts FROM {Plan._meta.db_table}
    WHERE id = {PLAN_ID_SQL}
)
SELECT DISTINCT ON (l.model_id)
       l.overridden, l.model_id, l.messages, l.window_kind, l.window_length, l.window_unit, l.disabled, l.unlimited,
       (SELECT COALESCE(SUM(g.messages), 0) FROM {QuotaGrant._meta.db_table} g
         WHERE g.user_id = %(user)s AND g.model_id = l.model_id AND g.expires_at > %(now)s),
       COALESCE((SELECT calendar_time_zone FROM plan), 'UTC'),
       COALESCE((SELECT reasoning_efforts FROM plan), '')
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
        return _rules(cursor.fetchall())


def _rules(rows: list[tuple]) -> Rules:
    limits: dict[int, Limit] = {}
    grants: dict[int, int] = {}
    for overridden, model, messages, kind, length, unit, disabled, unlimited, granted, _, _ in rows:
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
    # Without limits, no calendar window needs the plan's time zone, and no model is offered efforts.
    time_zone, efforts = (rows[0][-2], rows[0][-1]) if rows else ("UTC", "")
    return Rules(limits, grants, zoneinfo.ZoneInfo(time_zone), efforts_parse(efforts))


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


# The user's budget override, else their plan's budget: one round trip, asked on every send.
BUDGET_SQL = f"""
SELECT overridden, kind, amount, window_kind, window_length, window_unit, unlimited FROM (
    SELECT true AS overridden, kind, amount, window_kind, window_length, window_unit, unlimited
      FROM {BudgetOverride._meta.db_table} WHERE user_id = %(user)s
    UNION ALL
    SELECT false, kind, amount, window_kind, window_length, window_unit, false
      FROM {PlanBudget._meta.db_table} WHERE plan_id = {PLAN_ID_SQL}
) AS b ORDER BY overridden DESC LIMIT 1
"""


def budget_get(user) -> Budget | None:
    """The budget that applies to the user (override, else plan), or None: no budget."""
    with connection.cursor() as cursor:
        cursor.execute(BUDGET_SQL, {"user": user.pk})
        return _budget(cursor.fetchone())


def _budget(row: tuple | None) -> Budget | None:
    if row is None or row[1] is None or row[-1]:  # no budget, or explicitly none
        return None
    overridden, kind, amount, window_kind, length, unit, _ = row
    return (BudgetOverride if overridden else PlanBudget)(
        kind=kind, amount=amount, window_kind=window_kind, window_length=length, window_unit=unit
    )


# A reservation asks both, so in one round trip: the user's rules for one model (RULES_SQL, at most
# one row) and their budget (BUDGET_SQL); either side all NULL when there is none.
RULES_AND_BUDGET_SQL = f"""
SELECT r.*, b.* FROM (SELECT) AS one
LEFT JOIN ({RULES_SQL}) AS r ON true
LEFT JOIN ({BUDGET_SQL}) AS b ON true
"""


def rules_and_budget_get(user, now: dt.datetime, model_id: int) -> tuple[Rules, Budget | None]:
    """rules_get(user, now, model_id) and budget_get(user), in one query."""
    with connection.cursor() as cursor:
        cursor.execute(RULES_AND_BUDGET_SQL, {"user": user.pk, "now": now, "model": model_id})
        return rules_and_budget_from(cursor.fetchone())


def rules_and_budget_sql(model: str) -> str:
    """RULES_AND_BUDGET_SQL for the model id that the SQL expression `model` gives (never NULL), to read
    the rules in a statement that finds the model (chat.actions: the one that locks the sender)."""
    return RULES_AND_BUDGET_SQL.replace("%(model)s", f"({model})")


def rules_and_budget_from(row: tuple) -> tuple[Rules, Budget | None]:
    """What rules_and_budget_get gives, from a row of RULES_AND_BUDGET_SQL."""
    rules, budget = row[:11], row[11:]
    return _rules([rules] if rules[1] is not None else []), _budget(budget)


def budget_worst(budget: Budget, model: AIModel, *, prompt_tokens: int | None, now: dt.datetime) -> int | None:
    """What one reply to `model` may use at most, in the budget's units; None: it has no price (dollars).

    The prompt (all of the model's prompt room when unknown) plus the whole output reserve.
    """
    prompt = prompt_budget(model.context_window, model.max_output_tokens) if prompt_tokens is None else prompt_tokens
    if budget.kind == BudgetKind.TOKENS:
        return prompt + model.max_output_tokens
    price = price_at(model.id, now)
    return None if price is None else cost_micros(price, prompt_tokens=prompt, completion_tokens=model.max_output_tokens)


ROLLING_SPENT_SQL = f"""
SELECT COALESCE(sum(tokens), 0), COALESCE(sum(micros), 0), min(created_at) FROM {Reservation._meta.db_table}
WHERE user_id = %s AND state = ANY(%s) AND created_at > %s
"""


def budget_current(budget: Budget, counter: BudgetCounter | None, tz: zoneinfo.ZoneInfo, user, now: dt.datetime):
    """(spent units, window or None, resets_at) of the budget window a reply sent now would fall in."""
    kind_of = (lambda tokens, micros: tokens) if budget.kind == BudgetKind.TOKENS else (lambda tokens, micros: micros)
    if budget.window_kind == WindowKind.ROLLING:
        since = now - window_length(budget)
        if counter is not None and counter.reset_at and counter.reset_at > since:
            since = counter.reset_at
        with connection.cursor() as cursor:
            cursor.execute(ROLLING_SPENT_SQL, [user.pk, [Reservation.State.RESERVED, Reservation.State.SETTLED], since])
            tokens, micros, oldest = cursor.fetchone()
        resets_at = oldest + window_length(budget) if oldest else None
        return kind_of(tokens, micros), Window(now - window_length(budget), now), resets_at
    if budget.window_kind == WindowKind.CALENDAR:
        window = calendar_window(budget, now, tz)
        if counter is not None and counter.window_start == window.start:
            return kind_of(counter.tokens, counter.micros), window, window.end
        return 0, window, window.end
    if counter is not None and counter.window_end and counter.window_start and now < counter.window_end:
        return kind_of(counter.tokens, counter.micros), Window(counter.window_start, counter.window_end), counter.window_end
    return 0, anchored_window(budget, now), None


@dataclass(frozen=True)
class BudgetStatus:
    """What the picker shows beside the message count: "$3.20 of $20.00 left this month"."""

    budget: Budget
    spent: int
    resets_at: dt.datetime | None

    @property
    def left(self) -> int:
        return max(self.budget.units - self.spent, 0)

    def amount(self, units: int) -> str:
        if self.budget.kind == BudgetKind.TOKENS:
            return f"{units:,}"
        return f"${dollars(units):,.2f}"

    def text(self) -> str:
        budget = self.budget
        if budget.window_kind == WindowKind.CALENDAR:
            when = {"day": "today", "week": "this week", "month": "this month"}[budget.window_unit]
        else:
            unit = budget.window_unit + ("s" if budget.window_length != 1 else "")
            when = f"per {budget.window_length} {unit}"
        # Rounded down: never show more left than there is.
        left = self.left if budget.kind == BudgetKind.TOKENS else self.left // 10_000 * 10_000
        noun = " tokens" if budget.kind == BudgetKind.TOKENS else ""
        return f"{self.amount(left)} of {self.amount(budget.units)}{noun} left {when}"

    def as_json(self, tz: dt.tzinfo, *, blocked: bool = False) -> dict:
        return {
            "kind": self.budget.kind,
            "total": self.budget.units,
            "spent": min(self.spent, self.budget.units),
            "left": self.left,
            "label": self.text(),
            "blocked": blocked,
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
            "resets_label": format_reset(self.resets_at, tz) if self.resets_at else "",
        }


def budget_status(*, user, budget: Budget, tz: zoneinfo.ZoneInfo, now: dt.datetime) -> BudgetStatus:
    counter = BudgetCounter.objects.filter(user=user).first()
    spent, _, resets_at = budget_current(budget, counter, tz, user, now)
    return BudgetStatus(budget, spent, resets_at)


def quota_status(*, user, now: dt.datetime | None = None, model: AIModel | None = None) -> list[QuotaStatus]:
    """Per enabled model (or just `model`): the limit, what is used and when it resets. Reads only."""
    now = now or timezone.now()
    rules = rules_get(user, now, model.id if model else None)
    counters = QuotaCounter.objects.filter(user=user, **({"model": model} if model else {}))
    by_model = {c.model_id: c for c in counters}
    budget = budget_get(user)
    spend = budget_status(user=user, budget=budget, tz=rules.time_zone, now=now) if budget else None
    statuses = []
    for one in [model] if model else AIModel.objects.filter(enabled=True):
        limit = rules.limit_for(one.id)
        blocked = False
        if budget is not None and spend is not None:
            worst = budget_worst(budget, one, prompt_tokens=0, now=now)
            blocked = worst is None or worst > spend.left
        if limit is None or limit.disabled or limit.messages is None:
            # No rule, or disabled: not available (fail closed). Unlimited: an explicit choice.
            unlimited = limit is not None and limit.unlimited and not limit.disabled
            describe = limit.describe() if limit else "not on your plan"
            statuses.append(QuotaStatus(one, None, 0, None, not unlimited, describe, spend, blocked))
            continue
        used, _, resets_at = window_current(limit, by_model.get(one.id), rules, user, now)
        allowed = limit.messages + rules.grants.get(one.id, 0)
        statuses.append(QuotaStatus(one, allowed, used, resets_at, False, limit.describe(), spend, blocked))
    return statuses


@dataclass(frozen=True)
class Counted:
    """What the picker shows for the model a reservation just counted, known without reading it back."""

    status: QuotaStatus
    efforts: list[str]

    def as_json(self, user) -> list[dict]:
        """As quota_json(user, model) would give it."""
        return [self.status.as_json(user_time_zone(user), self.efforts)]


def quota_json(user, model: AIModel | None = None) -> list[dict]:
    """The picker's numbers, in the user's time zone."""
    tz = user_time_zone(user)
    efforts = efforts_allowed(user)
    return [status.as_json(tz, efforts) for status in quota_status(user=user, model=model)]


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


# Budget counters: their tokens and micro-dollars are the holds and actual uses of their window's reservations.
BUDGET_COUNTER_SQL = f"""
SELECT c.user_id, c.tokens, c.micros, COALESCE(sum(r.tokens), 0), COALESCE(sum(r.micros), 0)
FROM {BudgetCounter._meta.db_table} c
LEFT JOIN {Reservation._meta.db_table} r
  ON r.user_id = c.user_id AND r.budget_window_start = c.window_start AND r.budget_resets = c.resets
 AND r.state IN ('reserved', 'settled')
WHERE c.window_start IS NOT NULL
GROUP BY c.user_id, c.tokens, c.micros
HAVING c.tokens <> COALESCE(sum(r.tokens), 0) OR c.micros <> COALESCE(sum(r.micros), 0)
"""

# A refunded reply holds nothing; a settled one's cost is its settle entry's.
RESERVATION_COST_SQL = f"""
SELECT r.reply_id, r.state, r.micros, l.cost_micros FROM {Reservation._meta.db_table} r
LEFT JOIN {LedgerEntry._meta.db_table} l ON l.message_id = r.reply_id AND l.kind = 'settle'
WHERE (r.state = 'refunded' AND (r.tokens <> 0 OR r.micros <> 0)) OR (r.state = 'settled' AND r.micros <> l.cost_micros)
"""


def quota_check(*, now: dt.datetime | None = None) -> list[str]:
    """The quota invariants, as sentences about what breaks them (an empty list: all hold). Reads only.

    - every reservation has exactly one reserve entry, and one settle or refund entry once it left
      `reserved`, matching its state; every reserve entry has its reservation;
    - every anchored or calendar counter counts exactly the reservations still counted in its window;
    - every budget counter holds exactly its window's reservations' tokens and micro-dollars, a refunded
      reservation holds nothing and a settled one costs what its settle entry says.
    """
    now = now or timezone.now()
    problems = []
    with connection.cursor() as cursor:
        cursor.execute(BUDGET_COUNTER_SQL)
        for user_id, tokens, micros, held_tokens, held_micros in cursor.fetchall():
            problems.append(
                f"user #{user_id}: the budget counter says {tokens} tokens, {micros} µ$; its window holds {held_tokens}, {held_micros}"
            )
        cursor.execute(RESERVATION_COST_SQL)
        for reply_id, state, micros, cost in cursor.fetchall():
            problems.append(f"reply #{reply_id} ({state}): holds {micros} µ$, its settle entry says {cost}")
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

"""The staff usage dashboard and its CSV export: selectors over the quota ledger, and two thin views.

Counting rules, the same everywhere here:
- messages = reserve entries minus refund entries (a refunded reply never
  happened, a stopped one counts), on the UTC day the entry was written;
- tokens come from settle entries, which carry the reply's usage
  (completion tokens include the reasoning tokens);
- spend comes from settle entries too: each carries what its answer cost at the price in
  force when it was sent, in micro-dollars (catalog/prices.py).
"""

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import wraps

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, Exists, F, Max, OuterRef, Q, Subquery, Sum, When
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from catalog.models import AIModel
from catalog.prices import dollars

from .models import LedgerEntry, Plan, PlanLimit, QuotaCounter, QuotaOverride
from .selectors import quota_status
from .windows import format_reset

UTC = dt.UTC
DEFAULT_DAYS = 30
MAX_DAYS = 366
TOP_USERS = 15
# "At their limit": at most this many candidates get a quota_status (a handful of queries) each.
AT_LIMIT_CAP = 500

COUNTED = Q(kind__in=[LedgerEntry.Kind.RESERVE, LedgerEntry.Kind.REFUND])
SETTLED = Q(kind=LedgerEntry.Kind.SETTLE)


def usage_since(*, days: int, now: dt.datetime) -> dt.datetime:
    """00:00 UTC on the first of the last `days` days, today included."""
    first = now.astimezone(UTC).date() - dt.timedelta(days=days - 1)
    return dt.datetime.combine(first, dt.time(0), tzinfo=UTC)


def _entries(since: dt.datetime):
    return LedgerEntry.objects.filter(created_at__gte=since).filter(COUNTED | SETTLED)


def _totals() -> dict:
    return {
        "messages": Sum("delta", filter=COUNTED, default=0),
        "prompt_tokens": Sum("prompt_tokens", filter=SETTLED, default=0),
        "completion_tokens": Sum("completion_tokens", filter=SETTLED, default=0),
        "reasoning_tokens": Sum("reasoning_tokens", filter=SETTLED, default=0),
        "cost_micros": Sum("cost_micros", filter=SETTLED, default=0),
    }


def usage_messages_by_day(*, since: dt.datetime) -> dict[tuple[dt.date, int], int]:
    """{(UTC day, model id): messages}."""
    rows = (
        LedgerEntry.objects.filter(COUNTED, created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "model_id")
        .annotate(messages=Sum("delta"))
        .order_by()
    )
    return {(r["day"], r["model_id"]): r["messages"] for r in rows}


def usage_spend_by_day(*, since: dt.datetime) -> dict[tuple[dt.date, int], int]:
    """{(UTC day, model id): micro-dollars}, on the day each answer was settled."""
    rows = (
        LedgerEntry.objects.filter(SETTLED, created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "model_id")
        .annotate(micros=Sum("cost_micros"))
        .order_by()
    )
    return {(r["day"], r["model_id"]): r["micros"] for r in rows}


def usage_top_spenders(*, since: dt.datetime, limit: int = TOP_USERS) -> list[dict]:
    return list(
        LedgerEntry.objects.filter(SETTLED, created_at__gte=since)
        .values("user_id", "user__username")
        .annotate(cost_micros=Sum("cost_micros"), answers=Count("id"))
        .filter(cost_micros__gt=0)
        .order_by("-cost_micros", "user__username")[:limit]
    )


def usage_month_projection(*, now: dt.datetime) -> dict:
    """This calendar month's spend (UTC) so far, and where it ends at the same pace."""
    month = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    after = (month + dt.timedelta(days=32)).replace(day=1)
    spent = LedgerEntry.objects.filter(SETTLED, created_at__gte=month).aggregate(s=Sum("cost_micros", default=0))["s"]
    elapsed = Decimal((now - month).total_seconds()) / Decimal((after - month).total_seconds())
    projected = dollars(spent) / elapsed if elapsed > 0 else Decimal(0)
    return {"month": month, "spent": dollars(spent), "projected": projected.quantize(Decimal("0.01"))}


def usage_by_model(*, since: dt.datetime) -> dict[int, dict]:
    """{model id: messages and token sums}."""
    rows = _entries(since).values("model_id").annotate(**_totals()).order_by()
    return {r.pop("model_id"): r for r in rows}


def usage_top_users(*, since: dt.datetime, limit: int = TOP_USERS) -> list[dict]:
    return list(
        _entries(since)
        .values("user_id", "user__username")
        .annotate(**_totals())
        .filter(messages__gt=0)
        .order_by("-messages", "user__username")[:limit]
    )


def usage_rows(*, since: dt.datetime) -> Iterable[dict]:
    """One row per UTC day, user and model: what the CSV holds."""
    return (
        _entries(since)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "user__username", "model__slug")
        .annotate(**_totals())
        .order_by("day", "user__username", "model__slug")
    )


def _longest_window() -> dt.timedelta:
    """The longest window any limit has: nobody can be at a limit without sending within it."""
    longest = dt.timedelta(days=1)
    unit_length = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1), "week": dt.timedelta(days=7), "month": dt.timedelta(days=31)}
    for table in (PlanLimit, QuotaOverride):
        for unit, length in table.objects.values_list("window_unit").annotate(n=Max("window_length")):
            longest = max(longest, unit_length[unit] * length)
    # Anchored day windows close at the next 00:00 UTC after N days: up to a day longer.
    return longest + dt.timedelta(days=1)


def _at_limit_candidates(*, now: dt.datetime, cap: int) -> list[int]:
    """Users who may be at a limit now, most recent window first: a cheap necessary condition in SQL.

    A counter only ever over-states what is used now (windows close, rolling
    messages age out, refunds and resets lower it), and grants only raise a
    limit; so a user can only be at a limit if some counter, written within
    the longest window, has `used` at or above the override's or the plan's
    limit for that model. `quota_status` then decides, exactly.
    """
    default_plan = Plan.objects.filter(is_default=True).values("id")[:1]
    override = QuotaOverride.objects.filter(user_id=OuterRef("user_id"), model_id=OuterRef("model_id"))
    plan_limit = PlanLimit.objects.filter(plan_id=OuterRef("plan_id"), model_id=OuterRef("model_id"))
    rows = (
        QuotaCounter.objects.filter(used__gt=0, window_end__gt=now - _longest_window())
        .annotate(plan_id=Coalesce(F("user__quota_plan__plan_id"), Subquery(default_plan)))
        .annotate(
            limit=Case(
                # The override replaces the plan's limit; disabled or unlimited is never "at the limit".
                When(Exists(override), then=Subquery(override.filter(disabled=False).values("messages")[:1])),
                default=Subquery(plan_limit.filter(disabled=False).values("messages")[:1]),
            )
        )
        .filter(limit__gt=0, used__gte=F("limit"))
        .values("user_id")
        .annotate(last=Max("window_end"))
        .order_by("-last")[:cap]
    )
    return [r["user_id"] for r in rows]


def usage_users_at_limit(*, now: dt.datetime, cap: int = AT_LIMIT_CAP) -> tuple[list[dict], int]:
    """Users with no messages left for some model now, and how many users were checked (at most `cap`)."""
    user_ids = _at_limit_candidates(now=now, cap=cap)
    users = get_user_model().objects.filter(id__in=user_ids).select_related("quota_plan__plan")
    at_limit = []
    for user in users:
        for status in quota_status(user=user, now=now):
            if status.limit and status.exhausted:
                at_limit.append(
                    {
                        "user_id": user.id,
                        "username": user.get_username(),
                        "model": status.model.name,
                        "used": status.used,
                        "limit": status.limit,
                        "resets_at": status.resets_at,
                        "resets_label": format_reset(status.resets_at, UTC) + " UTC" if status.resets_at else "—",
                        "window": status.describe,
                    }
                )
    far_future = dt.datetime.max.replace(tzinfo=UTC)
    at_limit.sort(key=lambda r: (r["resets_at"] or far_future, r["username"]))
    return at_limit, len(user_ids)


def usage_dashboard(*, days: int, now: dt.datetime | None = None) -> dict:
    """Everything the dashboard shows; `data` is what the charts read."""
    now = now or timezone.now()
    since = usage_since(days=days, now=now)
    per_day = usage_messages_by_day(since=since)
    spend_per_day = usage_spend_by_day(since=since)
    per_model = usage_by_model(since=since)
    active_ids = {model_id for _, model_id in per_day} | set(per_model) | {model_id for _, model_id in spend_per_day}
    models = [m for m in AIModel.objects.all() if m.enabled or m.id in active_ids]
    day_list = [since.date() + dt.timedelta(days=i) for i in range(days)]
    top_users = usage_top_users(since=since)
    at_limit, checked = usage_users_at_limit(now=now)

    spenders = usage_top_spenders(since=since)

    zero = {"messages": 0, "prompt_tokens": 0, "completion_tokens": 0, "reasoning_tokens": 0, "cost_micros": 0}
    tokens = [{"model": m.slug, "name": m.name, **per_model.get(m.id, zero)} for m in models]
    for t in tokens:
        t["cost"] = dollars(t["cost_micros"])
    for u in spenders:
        u["cost"] = dollars(u["cost_micros"])
    data = {
        "days": [d.isoformat() for d in day_list],
        "models": [{"slug": m.slug, "name": m.name} for m in models],
        "messages": {m.slug: [per_day.get((d, m.id), 0) for d in day_list] for m in models},
        # US dollars, rounded to the cent for the chart; the tables carry the same.
        "spend": {m.slug: [round(float(dollars(spend_per_day.get((d, m.id), 0))), 2) for d in day_list] for m in models},
        "tokens": [{k: v for k, v in t.items() if k != "cost"} for t in tokens],
        "top_users": [{"username": u["user__username"], "messages": u["messages"]} for u in top_users],
        "top_spenders": [{"username": u["user__username"], "cost_micros": u["cost_micros"]} for u in spenders],
    }
    totals = {key: sum(t[key] for t in tokens) for key in zero}
    totals["cost"] = dollars(totals["cost_micros"])
    return {
        "days": days,
        "since": since,
        "now": now,
        "data": data,
        "totals": totals,
        "daily_table": [
            {"day": d, "counts": [per_day.get((d, m.id), 0) for m in models], "total": sum(per_day.get((d, m.id), 0) for m in models)}
            for d in reversed(day_list)
        ],
        "spend_table": [
            {
                "day": d,
                "costs": [dollars(spend_per_day.get((d, m.id), 0)) for m in models],
                "total": dollars(sum(spend_per_day.get((d, m.id), 0) for m in models)),
            }
            for d in reversed(day_list)
        ],
        "month": usage_month_projection(now=now),
        "models": models,
        "tokens": tokens,
        "top_users": top_users,
        "spenders": spenders,
        "at_limit": at_limit,
        "at_limit_users": len({r["user_id"] for r in at_limit}),
        "checked_users": checked,
        "at_limit_cap": AT_LIMIT_CAP,
    }


# --- Views ------------------------------------------------------------------------


def usage_access(view: Callable) -> Callable:
    """Staff only (others go to the admin login), and staff who may read the ledger (else 403)."""

    @staff_member_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.has_perm("quotas.view_ledgerentry"):
            raise PermissionDenied("You need permission to view the quota ledger.")
        return view(request, *args, **kwargs)

    return wrapped


class BadDays(ValueError):
    pass


def _days(request: HttpRequest) -> int:
    raw = request.GET.get("days", "")
    if raw == "":
        return DEFAULT_DAYS
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_DAYS:
        raise BadDays(f"days must be a whole number from 1 to {MAX_DAYS}.")
    return int(raw)


@require_GET
@usage_access
def usage_page(request: HttpRequest) -> HttpResponse:
    try:
        days = _days(request)
    except BadDays as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    context = usage_dashboard(days=days)
    context["ranges"] = [7, 30, 90]
    return render(request, "quotas/usage.html", context)


def _cell(value: str) -> str:
    # A spreadsheet would run a cell starting with one of these as a formula.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


@require_GET
@usage_access
def usage_csv(request: HttpRequest) -> HttpResponse:
    try:
        days = _days(request)
    except BadDays as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    now = timezone.now()
    since = usage_since(days=days, now=now)
    filename = f"usage-{since:%Y-%m-%d}-to-{now:%Y-%m-%d}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    writer = csv.writer(response)
    writer.writerow(["day", "username", "model", "messages", "prompt_tokens", "completion_tokens", "reasoning_tokens", "cost_usd"])
    for row in usage_rows(since=since):
        writer.writerow(
            [
                row["day"].isoformat(),
                _cell(row["user__username"]),
                _cell(row["model__slug"] or ""),
                row["messages"],
                row["prompt_tokens"],
                row["completion_tokens"],
                row["reasoning_tokens"],
                f"{dollars(row['cost_micros']):.6f}",
            ]
        )
    return response

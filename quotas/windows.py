"""Quota windows, pure date arithmetic (no database).

- anchored: opens at the first counted message when none is open; a window of
  N days closes at 00:00 UTC N days after the day it opened, one of N hours
  closes exactly N hours after it opened;
- calendar: day, Monday-start week or month boundaries in the plan's time zone;
- rolling: the last N hours or days; a slot frees as each message ages out.
"""

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from .models import Budget, Limit

UTC = dt.UTC


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime


def window_length(limit: "Limit | Budget") -> dt.timedelta:
    hours = {"hour": 1, "day": 24, "week": 24 * 7}[limit.window_unit]
    return dt.timedelta(hours=hours * limit.window_length)


def anchored_window(limit: "Limit | Budget", opened_at: dt.datetime) -> Window:
    if limit.window_unit == "hour":
        return Window(opened_at, opened_at + window_length(limit))
    # Whole days: close at 00:00 UTC N days after the day it opened.
    days = window_length(limit).days
    day = opened_at.astimezone(UTC).date() + dt.timedelta(days=days)
    return Window(opened_at, dt.datetime.combine(day, dt.time(0), tzinfo=UTC))


def calendar_window(limit: "Limit | Budget", now: dt.datetime, tz: zoneinfo.ZoneInfo) -> Window:
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


def format_reset(when: dt.datetime, tz: dt.tzinfo) -> str:
    """'Tue 19 Nov, 01:00' in the user's time zone."""
    local = when.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b, %H:%M}"

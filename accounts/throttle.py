"""Login throttling with django-axes: a limit per username and a separate one per client
address (settings.py, "Login throttling"), the client address taken only from the connection,
and the lockout page that says how long to wait."""

import datetime as dt
import math

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from redis import RedisError

from config.redis import redis_client


def client_ip(request: HttpRequest) -> str | None:
    """The connection's peer address. The ASGI server has already replaced it with the
    X-Forwarded-For client when, and only when, the peer is a proxy in FORWARDED_ALLOW_IPS;
    reading the header here would let any client choose its address and escape the limit."""
    return request.META.get("REMOTE_ADDR")


def _limits(*, username: str | None, ip_address: str | None) -> list[tuple[dict, int]]:
    return [({"username": username}, settings.AXES_FAILURE_LIMIT), ({"ip_address": ip_address}, settings.LOGIN_FAILURES_PER_ADDRESS)]


def _failures(lookup: dict, since: dt.datetime) -> int:
    return AccessAttempt.objects.filter(**lookup, attempt_time__gte=since).aggregate(n=Sum("failures_since_start"))["n"] or 0


class LoginThrottleHandler(AxesDatabaseHandler):
    """axes' database handler with two limits instead of one: axes compares what
    get_failures returns with AXES_FAILURE_LIMIT, so the address's count is scaled to it."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        since = (request.axes_attempt_time or timezone.now()) - get_cool_off(request)
        per_username, per_address = (
            _failures(lookup, since) * settings.AXES_FAILURE_LIMIT // limit
            for lookup, limit in _limits(username=get_client_username(request, credentials), ip_address=request.axes_ip_address)
        )
        return max(per_username, per_address)


def lockout_ends_at(*, username: str | None, ip_address: str | None, now: dt.datetime, cool_off: dt.timedelta) -> dt.datetime:
    """When the log-ins refused now are allowed again, if nobody fails meanwhile.

    A limit holds while its failures in the last `cool_off` reach it; the newest attempts
    age out last, so it lifts `cool_off` after the attempt at which, counting back from
    the newest, the failures reach the limit."""
    ends = [now]
    for lookup, limit in _limits(username=username, ip_address=ip_address):
        attempts = AccessAttempt.objects.filter(**lookup, attempt_time__gte=now - cool_off).order_by("-attempt_time")
        counted = 0
        for attempt_time, failures in attempts.values_list("attempt_time", "failures_since_start"):
            counted += failures
            if counted >= limit:
                ends.append(attempt_time + cool_off)
                break
    return max(ends)


def lockout_response(request: HttpRequest, *args: object) -> HttpResponse:
    """The page a locked-out log-in gets (HTTP 429, with Retry-After).

    axes calls this with (request, original_response, credentials) from its synchronous
    middleware but (request, credentials) from its asynchronous one; both keep the
    credentials on the request."""
    credentials = getattr(request, "axes_credentials", None)
    now = timezone.now()
    ends_at = lockout_ends_at(
        username=get_client_username(request, credentials),
        ip_address=client_ip(request),
        now=now,
        cool_off=get_cool_off(request),
    )
    minutes = max(1, math.ceil((ends_at - now).total_seconds() / 60))
    context = {"minutes": minutes, "ends_at": ends_at}
    response = render(request, "accounts/locked_out.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)
    response["Retry-After"] = str(minutes * 60)
    return response


def login_failures_forgive(*, username: str) -> None:
    """Forget a username's failed log-ins, after its owner proved the password or reset it by
    email. The address's failures on other usernames stay counted."""
    AccessAttempt.objects.filter(username=username).delete()


RESET_WINDOW_SECONDS = 3600


def password_reset_allowed(*, ip_address: str | None, email: str) -> tuple[bool, bool]:
    """Counts a password-reset request; returns (address within its limit, mailbox within its limit).

    Per address, so one client cannot make us send mail to thousands of addresses; per mailbox,
    so nobody can flood one person's inbox. Fixed one-hour windows in Redis, under this
    installation's prefix. Redis down counts as over both limits: refuse, never send unchecked.
    """
    keys = [
        f"{settings.CHANNEL_PREFIX}:password-reset:address:{ip_address}",
        f"{settings.CHANNEL_PREFIX}:password-reset:mailbox:{email.strip().lower()}",
    ]
    try:
        with redis_client().pipeline() as pipe:
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, RESET_WINDOW_SECONDS, nx=True)
            per_address, _, per_mailbox, _ = pipe.execute()
    except RedisError:
        return False, False
    return per_address <= settings.PASSWORD_RESETS_PER_ADDRESS, per_mailbox <= settings.PASSWORD_RESETS_PER_MAILBOX

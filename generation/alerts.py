"""The staff alert: a provider configuration problem, in the log and as a banner in the admin for a day."""

import logging

from django.utils import timezone

from config.redis import redis_client

log = logging.getLogger(__name__)
ALERT_KEY = "provider-alert"


def provider_alert_raise(message: str) -> None:
    log.error(message)
    try:
        redis_client().set(ALERT_KEY, f"{timezone.now():%Y-%m-%d %H:%M} UTC — {message}", ex=86_400)
    except Exception:
        log.exception("could not store the provider alert")


FAILURES_KEY = "reply-failures"
FAILURES_WINDOW = 300


def failure_count() -> int:
    """Count one more failed reply; returns how many failed in the last FAILURES_WINDOW seconds or so."""
    try:
        pipe = redis_client().pipeline()
        pipe.incr(FAILURES_KEY)
        pipe.expire(FAILURES_KEY, FAILURES_WINDOW, nx=True)
        return int(pipe.execute()[0])
    except Exception:
        return 0


def provider_alert() -> str:
    try:
        value = redis_client().get(ALERT_KEY)
    except Exception:
        return ""
    return value.decode() if isinstance(value, bytes) else value or ""

"""The staff alert: a provider configuration problem, in the log and as a banner in the admin for a day.

Its keys carry the installation's prefix (settings.CHANNEL_PREFIX), so that two
installations on one Redis never show each other's alerts.
"""

import logging

from django.conf import settings
from django.utils import timezone

from config.redis import redis_client

log = logging.getLogger(__name__)
FAILURES_WINDOW = 300


def _key(name: str) -> str:
    return f"{settings.CHANNEL_PREFIX}:{name}"


def provider_alert_raise(message: str) -> None:
    log.error(message)
    try:
        redis_client().set(_key("provider-alert"), f"{timezone.now():%Y-%m-%d %H:%M} UTC — {message}", ex=86_400)
    except Exception:
        log.exception("could not store the provider alert")


def provider_alert() -> str:
    try:
        value = redis_client().get(_key("provider-alert"))
    except Exception:
        return ""
    return value.decode() if isinstance(value, bytes) else value or ""


def provider_alert_clear() -> None:
    """Dismiss the alert, and forget the recent failures that could raise it again."""
    redis_client().delete(_key("provider-alert"), _key("reply-failures"))


def failure_count() -> int:
    """Count one more failed reply; returns how many failed in the last FAILURES_WINDOW seconds or so."""
    try:
        pipe = redis_client().pipeline()
        pipe.incr(_key("reply-failures"))
        pipe.expire(_key("reply-failures"), FAILURES_WINDOW, nx=True)
        return int(pipe.execute()[0])
    except Exception:
        return 0

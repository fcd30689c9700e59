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


def provider_alert() -> str:
    try:
        value = redis_client().get(ALERT_KEY)
    except Exception:
        return ""
    return value.decode() if isinstance(value, bytes) else value or ""

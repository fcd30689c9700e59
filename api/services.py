"""Every write to API keys. Keys are 256 random bits: a SHA-256 of one cannot be reversed or guessed."""

import datetime as dt
import hashlib
import secrets

from django.db.models import Q
from django.utils import timezone

from quotas.selectors import api_access_allowed

from .models import ApiKey

KEY_PREFIX = "sk-chat-"
# last_used_at is written at most this often per key: a busy key is not one row-lock queue.
TOUCH_EVERY = dt.timedelta(seconds=60)


class KeyRefused(Exception):
    pass


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_key_create(*, user, name: str) -> tuple[ApiKey, str]:
    """A new key and its secret, which is not stored and cannot be shown again."""
    if not api_access_allowed(user):
        raise KeyRefused("Your plan does not include API access. Ask staff to turn it on.")
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(user=user, name=name.strip(), prefix=token[: len(KEY_PREFIX) + 4], key_hash=_hash(token))
    return key, token


def api_key_revoke(*, key: ApiKey) -> bool:
    """Revoke `key` at once; False when it already was."""
    return ApiKey.objects.filter(pk=key.pk, revoked_at=None).update(revoked_at=timezone.now()) == 1


def api_key_user(*, token: str):
    """The active user whose unrevoked key this is, or None; notes when the key was used."""
    if not token.startswith(KEY_PREFIX) or len(token) > 200:
        return None
    key = ApiKey.objects.select_related("user").filter(key_hash=_hash(token), revoked_at=None, user__is_active=True).first()
    if key is None:
        return None
    now = timezone.now()
    ApiKey.objects.filter(Q(last_used_at=None) | Q(last_used_at__lt=now - TOUCH_EVERY), pk=key.pk).update(last_used_at=now)
    return key.user

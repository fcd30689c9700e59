"""The org-wide provider limit: requests and tokens per minute per model, shared by
every worker through Redis. Over the limit, a reply waits for the next minute
instead of failing."""

import time

from django.conf import settings

from config.redis import redis_client

# Count the request in this minute's window only if both budgets allow it.
_ACQUIRE = """
local requests = tonumber(redis.call('GET', KEYS[1]) or '0')
local tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
local rpm, tpm, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if (rpm > 0 and requests + 1 > rpm) or (tpm > 0 and tokens > 0 and tokens + cost > tpm) then
  return 0
end
redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('INCRBY', KEYS[2], cost); redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


def capacity_acquire(*, model_slug: str, rpm: int | None, tpm: int | None, tokens: int) -> float:
    """Take one request and `tokens` tokens from this minute's budget.

    Returns 0 when granted, else the seconds until the next minute starts.
    A request bigger than the whole TPM budget is let through alone in a fresh
    minute rather than blocked forever. (PROVIDER_LIMIT_WINDOW_SECONDS is 60
    but for tests, which cannot wait a minute.)
    """
    if not rpm and not tpm:
        return 0.0
    window = settings.PROVIDER_LIMIT_WINDOW_SECONDS
    now = time.time()
    slot = int(now // window)
    base = f"{settings.CHANNEL_PREFIX}:limit:{model_slug}:{window}:{slot}"  # per installation (config/settings.py)
    keys = [f"{base}:requests", f"{base}:tokens"]
    granted = redis_client().eval(_ACQUIRE, 2, *keys, rpm or 0, tpm or 0, tokens, 2 * window)
    return 0.0 if granted else (slot + 1) * window - now

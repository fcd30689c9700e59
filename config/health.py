"""The health endpoint for load balancers and monitoring, and the worker heartbeat it reads.

GET /healthz answers 200 when PostgreSQL, Redis, the Celery broker and at least one worker
consuming this site's queue are all well, 503 when one is not; the JSON body has one entry
per check. It needs no login and shows nothing secret: no URLs, host names or exception
messages (they can carry credentials), only the name of what failed; the detail is logged.

Workers write a heartbeat to Redis every HEARTBEAT_SECONDS (config/celery.py starts it when
a worker is ready and removes it when the worker stops cleanly). A worker killed outright
drops out when its last beat is HEARTBEAT_TTL_SECONDS old.
"""

import logging
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.redis import redis_client

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
# Three missed beats: a busy worker or a Redis blip is not reported as a dead worker.
HEARTBEAT_TTL_SECONDS = 3 * HEARTBEAT_SECONDS


class Unhealthy(Exception):
    """A check that ran and found something wrong; its message is safe to show."""


def _heartbeat_key(queue: str) -> str:
    return f"chat:heartbeat:{queue}"


def _redis_now(client: redis.Redis) -> float:
    # Redis's clock, not ours: workers on other hosts compare against the same one.
    seconds, micros = client.time()
    return seconds + micros / 1e6


def heartbeat_write(*, worker: str, queues: list[str]) -> None:
    """Record that `worker` consumes `queues` now."""
    client = redis_client()
    now = _redis_now(client)
    with client.pipeline() as pipe:
        for queue in queues:
            key = _heartbeat_key(queue)
            pipe.zadd(key, {worker: now})
            pipe.zremrangebyscore(key, "-inf", now - HEARTBEAT_TTL_SECONDS)
            pipe.expire(key, int(HEARTBEAT_TTL_SECONDS) + 1)
        pipe.execute()


def heartbeat_remove(*, worker: str, queues: list[str]) -> None:
    """A worker stopping cleanly says so at once, rather than when its beat goes stale."""
    with redis_client().pipeline() as pipe:
        for queue in queues:
            pipe.zrem(_heartbeat_key(queue), worker)
        pipe.execute()


def workers_alive(*, queue: str) -> int:
    """How many workers consuming `queue` have beaten within HEARTBEAT_TTL_SECONDS."""
    client = redis_client()
    return client.zcount(_heartbeat_key(queue), _redis_now(client) - HEARTBEAT_TTL_SECONDS, "+inf")


_broker_clients: dict[str, redis.Redis] = {}


def _broker_client() -> redis.Redis:
    url = settings.CELERY_BROKER_URL
    if url == settings.REDIS_URL:
        return redis_client()
    if url not in _broker_clients:
        _broker_clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return _broker_clients[url]


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def _check_redis() -> dict:
    redis_client().ping()
    return {}


def _check_broker() -> dict:
    # Celery's Redis transport keeps the queue as a list named after it.
    return {"queued": _broker_client().llen(settings.CELERY_TASK_DEFAULT_QUEUE)}


def _check_workers() -> dict:
    alive = workers_alive(queue=settings.CELERY_TASK_DEFAULT_QUEUE)
    if not alive:
        raise Unhealthy(f"no worker has reported in the last {HEARTBEAT_TTL_SECONDS:g} s")
    return {"alive": alive}


def _run(name: str, check: Callable[[], dict]) -> dict:
    started = time.monotonic()
    try:
        result = {"ok": True, **check()}
    except Unhealthy as exc:
        log.warning("health check %s failed: %s", name, exc)
        result = {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.warning("health check %s failed: %r", name, exc)
        result = {"ok": False, "error": type(exc).__name__}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


CHECKS: dict[str, Callable[[], dict]] = {
    "database": _check_database,
    "redis": _check_redis,
    "broker": _check_broker,
    "workers": _check_workers,
}


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    checks = {name: _run(name, check) for name, check in CHECKS.items()}
    healthy = all(result["ok"] for result in checks.values())
    return JsonResponse({"status": "ok" if healthy else "failing", "checks": checks}, status=200 if healthy else 503)

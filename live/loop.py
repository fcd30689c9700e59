"""The process's live loop: one asyncio (uvloop) thread, started on first use.

It sends live updates (live/publish.py) and, in a Celery worker, streams every
reply the worker writes (generation/reply.py): one event loop reads hundreds of
provider streams, where a thread per reply, woken for every token, starved the
thread that takes new tasks from the broker.
"""

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine

import uvloop

_loop: asyncio.AbstractEventLoop | None = None
_start_lock = threading.Lock()


def live_loop() -> asyncio.AbstractEventLoop:
    if _loop is None:
        with _start_lock:
            if _loop is None:
                ready = threading.Event()
                threading.Thread(target=_serve, args=(ready,), name="live-loop", daemon=True).start()
                ready.wait()
    assert _loop is not None
    return _loop


def run_soon(coro: Coroutine) -> concurrent.futures.Future:
    """Run `coro` on this process's live loop; the caller may wait on the future."""
    return asyncio.run_coroutine_threadsafe(coro, live_loop())


def _serve(ready: threading.Event) -> None:
    global _loop
    # uvloop: reading hundreds of provider streams costs an epoll re-registration per
    # chunk in asyncio's pure-Python transports (docs/benchmarks.md, "Why the code is as it is").
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    _loop = loop
    ready.set()
    loop.run_forever()

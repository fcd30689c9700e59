"""py-spy profiles of the servers while a figure runs, summarised for the report.

py-spy is optional (`.venv/bin/pip install py-spy`); without it the report says how to get one.
Sampling is non-blocking (py-spy reads the process's memory without stopping it), 50 times a second.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
# Where threads wait rather than work: a sample whose innermost frame is one of these is idle.
IDLE_LEAVES = (
    "Condition.wait",
    "EpollSelector.select",
    "_worker (concurrent/futures/thread.py:81)",
    "Queue.get",
    "Event.wait",
    "select (selectors.py",
    "_epoll.poll",
    "sleep",
    "Thread._wait_for_tstate_lock",
    "Runner.run (asyncio/runners.py",
)  # uvloop's loop waits in C, under Runner.run


# The functions the report names, per process (a function's share includes what it calls).
WORKER_PATTERNS = (
    "generation/",
    "live/",
    "channels_redis/core",
    "msgpack",
    "openai/_streaming",
    "openai/_base_client",
    "httpcore",
    "psycopg_pool",
    "psycopg/cursor",
    "kombu/transport",
    "json/",
)
WEB_STREAM_PATTERNS = (
    "chat/consumers",
    "channels/consumer",
    "channels/generic",
    "channels/utils",
    "channels_redis/",
    "msgpack",
    "uvicorn/protocols/websockets",
    "websockets/",
    "redis/asyncio",
    "json/",
)
RELAY_PATTERNS = ("bench/relay", "openai/", "httpcore", "httpx", "uvicorn/protocols/websockets", "websockets/", "json/")


def available() -> bool:
    return Path(PY_SPY).exists()


class Recording:
    def __init__(self, pid: int, seconds: float, out: Path, *, gil_only: bool):
        self.out = out
        mode = ["--gil"] if gil_only else ["--idle"]
        self.proc = subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "50",
                "--nonblocking",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(out),
                *mode,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self) -> list[tuple[list[str], int]]:
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if not self.out.exists():
            return []
        rows = []
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack:
                rows.append((stack.split(";"), int(count)))
        return rows


def later(delay: float, into: list, pid: int, seconds: float, out: Path) -> threading.Timer:
    """Start a (GIL-only) Recording of `pid` after `delay` seconds, appended to `into`; cancel the timer to skip it."""
    timer = threading.Timer(delay, lambda: into.append(Recording(pid, seconds, out, gil_only=True)))
    timer.start()
    return timer


def _name(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame)


def thread_name(frame: str) -> str:
    m = re.match(r"thread \(\d+\): (.*)", frame)
    return m.group(1) if m else frame


def summarise(
    rows: list[tuple[list[str], int]],
    *,
    thread: str | tuple[str, ...] | None = None,
    patterns: tuple[str, ...],
    busy_marker: str | None = None,
    top: int = 14,
) -> dict:
    """Busy share of a thread (or of the process) and inclusive shares of interesting functions.

    A sample is busy when it contains `busy_marker` (say, the frame that runs a job), else when its
    innermost frame is not a known wait.
    """
    total = busy = 0
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    names: set[str] = set()
    for frames, count in rows:
        name = thread_name(frames[0])
        if thread and not name.startswith(thread):
            continue
        names.add(name)
        total += count
        if busy_marker is not None:
            if not any(busy_marker in f for f in frames):
                continue
        elif any(idle in frames[-1] for idle in IDLE_LEAVES):
            continue
        busy += count
        threads[re.sub(r"_\d+$", "_N", name)] += count
        seen = set()
        for f in frames[1:]:
            n = _name(f)
            if n not in seen and any(p in n for p in patterns):
                seen.add(n)
                inclusive[n] += count
    return {
        "thread_count": len(names),
        "samples": total,
        "busy_samples": busy,
        "threads": threads.most_common(6),
        "functions": [(f, c) for f, c in inclusive.most_common(top)],
    }


# What a streamed frame costs, by process, as groups of frames in the GIL samples (see `shares`), each
# with the design that would remove the cost. The report's
# "What stands in the way" is made of these.
COSTS: dict[str, tuple[tuple[str, tuple[str, ...], str], ...]] = {
    "worker": (
        (
            "reading the provider's stream (the SDK's aiohttp transport, our SSE split, JSON)",
            ("_sse_data", "openai/", "aiohttp/", "httpcore", "httpx", "h11/", "anyio/", "json/decoder"),
            "Paid by the relay too, per chunk, through the same transport. In place: the SDK's aiohttp client parses "
            "HTTP in C, half the CPU per chunk of httpx2's pure-Python default (figure 4). What is left is Python's JSON "
            "and the SDK's stream plumbing; the worker must keep calling the model through the SDK.",
        ),
        (
            "coalescing and publishing deltas (ReplyStream, live/publish, live/wire)",
            ("ReplyStream.", "live/publish", "live/wire", "redis/", "msgpack"),
            "In place: each frame is encoded once and PUBLISHed with the resume buffer's APPEND, and one tick per "
            "process (every 50 ms) sends what every reply holds in one hand-packed write (figure 4). What is left is per "
            "delta; only fewer, larger deltas (a longer tick than the design's ≈50 ms) lower it further.",
        ),
        (
            "checkpoints and the stop watcher (text to PostgreSQL each second, a status poll each 0.25 s)",
            ("Checkpoints",),
            "Checkpoint by time and size (every few seconds, or at N KiB), and take stops from a Redis key the "
            "stop action sets instead of polling PostgreSQL.",
        ),
        (
            "the event loop itself (uvloop: the sockets to the provider and to Redis, timers; seen as `_serve`)",
            ("live/loop",),
            "Paid by the relay too (its server's loop); it grows with reads and writes, and the tick already made "
            "Redis one write per 50 ms.",
        ),
        (
            "Celery: taking tasks from the broker, the thread pool",
            ("kombu/", "celery/"),
            "Not per frame; a per-reply cost that shrinks as replies get longer.",
        ),
        (
            "the reply's own work: claim, context, finish (the Celery thread, the ORM)",
            ("generation/reply.py", "chat/selectors", "catalog/", "quotas/"),
            "Per reply, not per frame: fewer statements per reply (claim and load in one, the `done` frame from what "
            "was stored), and longer replies spread it thinner.",
        ),
    ),
    "web_stream": (
        (
            "the hub: reading the chats' Redis channels and handing each frame to its sockets (live/hub)",
            ("live/hub", "hiredis"),
            "In place, replacing the channel layer's receive and the consumer's dispatch (30 % and 23 % of the "
            "web process's samples before): one subscriber connection per process, parsed by hiredis, the worker's "
            "bytes written as they are.",
        ),
        (
            "each socket's writer (the outbox task) and the consumer",
            ("_write_forever", "chat/consumers", "channels/", "asyncio/"),
            "A task wake-up per socket per batch of frames; writing from the hub directly would save it, but then one "
            "socket that stops reading would stall every other socket of the process.",
        ),
        (
            "writing the WebSocket frame (uvicorn's websockets protocol, the transport)",
            ("uvicorn/protocols/websockets", "websockets/"),
            "Paid by the relay too, per frame; only fewer frames (a longer coalescing window) lower it.",
        ),
        (
            "the event loop itself (uvloop's polling and callbacks, seen as `Runner.run`)",
            ("Runner.run",),
            "Paid by the relay too; it grows with the number of wake-ups.",
        ),
    ),
    "send": (
        (
            "locking the user, with the model, the quota rules and the budget (one statement)",
            ("_lock_user",),
            "One round trip, as the design's one transaction needs before anything is counted.",
        ),
        (
            "storing the chat, the messages and the reservation (one statement)",
            ("_send_store",),
            "One round trip; a PL/pgSQL function doing the lock and the store in one call would save the other, at "
            "the price of the quota rules in two languages.",
        ),
        (
            "Celery's publish of the task, after commit",
            ("_enqueue",),
            "The design has Celery deliver the work: kombu builds the message and a Redis client per publish.",
        ),
        (
            "announcing the messages and the quota to the user's tabs, after commit",
            ("chat/events",),
            "Three small publishes to Redis, encoded once.",
        ),
        (
            "the commit",
            (".commit (django/db", "._commit (django/db", ".commit (psycopg"),
            "The transaction's end, with PostgreSQL's write to its log.",
        ),
        (
            "the checks and the rows: the text, the model, the effort, the context's fit, the title",
            ("chat/actions", "catalog/", "quotas/"),
            "Python's own work per send; already without the ORM's query building.",
        ),
        (
            "Django's transaction and connection handling (atomic, the pool)",
            ("django/db", "psycopg_pool", "psycopg/"),
            "Per transaction; what is left of the ORM.",
        ),
    ),
}


def shares(
    rows: list[tuple[list[str], int]], groups: tuple[tuple[str, tuple[str, ...], str], ...], *, in_order: bool = False
) -> dict[str, int]:
    """Samples per cost group (see COSTS), with the total under "samples".

    Each sample counts once, for the group of the innermost frame that matches one (a delta's JSON encoding
    inside the consumer's dispatch is the encoding's), or with `in_order` for the first group any of its frames
    matches (the query inside a send's store is the store's); samples that match none are "other"."""
    counts = {label: 0 for label, _, _ in groups}
    counts["samples"] = counts["other"] = 0
    for frames, count in rows:
        counts["samples"] += count
        if in_order:
            label = next((label for label, patterns, _ in groups if any(p in f for f in frames[1:] for p in patterns)), "other")
        else:
            label = next((label for f in reversed(frames[1:]) for label, patterns, _ in groups if any(p in f for p in patterns)), "other")
        counts[label] += count
    return counts

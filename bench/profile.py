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

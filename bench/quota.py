"""Figure 3: quota admission through `actions.message_send`, the real user action.

    DATABASE_URL=... python bench/quota.py --out quota.json

Each admitted send is the whole transaction a browser's "send" runs: lock the
user's profile, create the conversation, the user message and the pending
reply, reserve quota (row lock on the (user, model) counter), write the ledger,
then on commit enqueue the Celery task (to a queue no worker reads) and
announce the messages on the channel layer. Racers are processes of threads,
so the GIL of one process does not cap the figure. Before each run, untimed,
the tables are analysed, as autovacuum keeps a live database's statistics.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import profile  # noqa: E402
from bench.stats import percentile  # noqa: E402

MODEL = "o1-mini"
PER_USER = 45  # below the default plan's 50 a day, so distinct users are never refused


def _django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def racer(env: dict[str, str], tasks, results, gate) -> None:
    """A process: for each task, start one thread per lane of user ids, all at once, and report.

    Warmed first, as a running server's process is: a send's first call imports the worker's task module
    (the SDK with it) and connects to the broker, seconds at the start of the first run otherwise."""
    _django(env)
    from generation.tasks import reply_generate

    with reply_generate.app.producer_or_acquire() as producer:
        producer.connection.ensure_connection()
    while (task := tasks.get()) is not None:
        results.put(_run_task(task, gate))


def _run_task(task: dict, gate) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connections, transaction

    from catalog.models import AIModel
    from chat import actions
    from quotas.services import QuotaRefused, quota_reserve

    model = AIModel.objects.get(slug=MODEL)
    lanes: list[list[int]] = task["lanes"]
    users = {u.id: u for u in get_user_model().objects.filter(id__in={uid for lane in lanes for uid in lane})}
    pending: dict[int, list[int]] = task.get("pending", {})  # reserve_only: user id → reply ids, made untimed

    def send(uid: int) -> str:
        if not task.get("reserve_only"):
            actions.message_send(user=users[uid], conversation_id=None, model_slug=MODEL, text="bench")
            return "admitted"
        try:
            with transaction.atomic():
                quota_reserve(user=users[uid], model=model, reply_id=pending[uid].pop())
        except QuotaRefused:
            return "quota_exhausted"
        return "admitted"

    outcomes: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    local_gate = threading.Barrier(len(lanes))
    stop_at: list[float | None] = [None]

    def one(user_ids: list[int]) -> None:
        local_gate.wait()
        try:
            for uid in user_ids:
                if stop_at[0] is not None and time.perf_counter() >= stop_at[0]:
                    break
                t = time.perf_counter()
                try:
                    outcome = send(uid)
                except actions.ActionRefused as exc:
                    outcome = exc.code
                except Exception as exc:  # count it, do not hide it
                    outcome = f"error: {exc!r}"[:200]
                with lock:
                    outcomes.append(outcome)
                    latencies.append(time.perf_counter() - t)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=one, args=(lane,)) for lane in lanes]
    gate.wait()  # every process is ready
    started = time.perf_counter()
    stop_at[0] = started + task["seconds"] if task["seconds"] else None
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"outcomes": outcomes, "latencies": latencies, "wall": time.perf_counter() - started}


def _pending_replies(lanes: list[list[int]]) -> dict[int, list[int]]:
    """For `quota_reserve` alone, made untimed and outside the run's CPU: a conversation and a pending reply
    for every reservation a process's lanes may make; user id → reply ids."""
    from catalog.models import AIModel
    from chat.models import Conversation, Message

    model = AIModel.objects.get(slug=MODEL)
    wanted = [uid for lane in lanes for uid in lane]
    conversations = Conversation.objects.bulk_create([Conversation(user_id=uid, model=model, title="bench") for uid in wanted])
    made = Message.objects.bulk_create(
        [Message(conversation=c, role=Message.Role.ASSISTANT, model=model, status=Message.Status.PENDING) for c in conversations]
    )
    pending: dict[int, list[int]] = {}
    for uid, reply in zip(wanted, made, strict=True):
        pending.setdefault(uid, []).append(reply.id)
    return pending


def cpu_seconds(racers: set[int]) -> dict[str, float]:
    """CPU used so far by the racer processes, by PostgreSQL's and by Redis's, from /proc. A run's
    difference is its own: the racers' database connections stay open from one run to the next."""
    used = {"racers": 0.0, "PostgreSQL": 0.0, "Redis": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue  # ended meanwhile
        comm, fields = rest.rsplit(") ", 1)
        owner = "racers" if int(pid) in racers else {"postgres": "PostgreSQL", "redis-server": "Redis"}.get(comm)
        if owner:
            utime, stime = fields.split()[11:13]
            used[owner] += (int(utime) + int(stime)) / tick
    return used


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--users", required=True, help="JSON file from setup_db.py")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--pool", type=int, default=8, help="DB_POOL_MAX of each racer process")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--race-rounds", type=int, default=5)
    parser.add_argument("--profile-out", help="py-spy the first racer during the first run of whole sends, raw stacks here")
    args = parser.parse_args()

    _django({})
    from django.conf import settings
    from django.db import connection, connections

    # Only in this process: the few race users need no real password hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    from accounts.services import user_create
    from catalog.models import AIModel
    from chat import actions
    from chat.models import Message
    from quotas.models import QuotaCounter, QuotaOverride

    quota_users: list[int] = json.loads(Path(args.users).read_text())["quota_users"]
    mini = AIModel.objects.get(slug=MODEL)
    P, T = args.processes, args.threads  # noqa: N806
    env = {"DB_POOL_MAX": str(args.pool), "DB_POOL_MIN": "1"}
    ctx = multiprocessing.get_context("spawn")
    tasks, results, gate = ctx.Queue(), ctx.Queue(), ctx.Barrier(P)

    t0 = time.monotonic()

    def rates(runs: list[dict]) -> str:
        return ", ".join(f"{r['per_second']:.0f}/s" for r in runs)

    def note(what: str) -> None:
        print(f"[quota +{time.monotonic() - t0:5.1f}s] {what}", file=sys.stderr, flush=True)

    def fire(per_process_lanes: list[list[list[int]]], seconds: float | None, reserve_only: bool = False) -> dict:
        pending = [_pending_replies(lanes) if reserve_only else {} for lanes in per_process_lanes]
        # Untimed: statistics as autovacuum keeps them on a live database. This one starts empty and
        # grows by thousands of pending replies a second, so without this the planner counts a
        # user's live replies by scanning every pending reply of every user.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chat_message, chat_conversation")
        before = cpu_seconds({r.pid for r in racers})
        for lanes, replies in zip(per_process_lanes, pending, strict=True):
            tasks.put({"lanes": lanes, "seconds": seconds, "reserve_only": reserve_only, "pending": replies})
        parts = [results.get(timeout=300) for _ in range(P)]
        after = cpu_seconds({r.pid for r in racers})
        outcomes = [o for part in parts for o in part["outcomes"]]
        latencies = [x for part in parts for x in part["latencies"]]
        wall = max(part["wall"] for part in parts)
        admitted = outcomes.count("admitted")
        return {
            "admitted": admitted,
            "attempts": len(outcomes),
            "wall_s": wall,
            "per_second": admitted / wall if wall else 0.0,
            "not_admitted": {o: outcomes.count(o) for o in set(outcomes) if o != "admitted"},
            "latency_p50_ms": 1000 * percentile(latencies, 50),
            "latency_p99_ms": 1000 * percentile(latencies, 99),
            "outcomes": outcomes,
            "cpu_s": {owner: after[owner] - before[owner] for owner in after},
        }

    racers = [ctx.Process(target=racer, args=(env, tasks, results, gate)) for _ in range(P)]
    out: dict = {
        "cores": os.cpu_count(),
        "processes": P,
        "threads": T,
        "pool_per_process": args.pool,
        "seconds": args.seconds,
        "users": len(quota_users),
    }
    for r in racers:
        r.start()
    note("racers started")
    try:
        # Distinct users: each thread owns its users, so no two sends wait on the same row lock.
        # Each user gets at most PER_USER sends over all runs, under the plan's 50 a day.
        per_run = PER_USER // (args.runs + 1)
        half = len(quota_users) // 2

        def distinct_lanes(users: list[int], sends_each: int) -> list[list[list[int]]]:
            lanes: list[list[int]] = [[] for _ in range(P * T)]
            for i, uid in enumerate(users):  # round-robin over the lane's own users
                lanes[i % (P * T)].append(uid)
            lanes = [lane * sends_each for lane in lanes]
            return [lanes[p * T : (p + 1) * T] for p in range(P)]

        for key, users, reserve_only, n_runs in (
            ("distinct", quota_users[:half], False, args.runs),
            ("reserve_only", quota_users[half:], True, max(1, args.runs - 1)),
        ):
            if key == "distinct":
                # Untimed: each racer's connections opened and their statements prepared, as a running server's are.
                fire(distinct_lanes(users, per_run), 1.0)
            runs = []
            for i in range(n_runs):
                recording = None
                if args.profile_out and key == "distinct" and i == 0 and profile.available():
                    recording = profile.Recording(racers[0].pid, args.seconds, Path(args.profile_out), gil_only=True)
                result = fire(distinct_lanes(users, per_run), args.seconds, reserve_only)
                result.pop("outcomes")
                runs.append(result)
                if recording is not None:
                    rows = recording.wait()
                    out["profile"] = {
                        "samples": sum(c for _, c in rows),
                        "costs": profile.shares(rows, profile.COSTS["send"], in_order=True),
                    }
            out[key] = runs
            note(f"{key}: {rates(runs)}")
        out["users"] = half

        # One hot user: each send waits for the one before (the profile and counter row locks).
        hot = user_create(username="bench-hot", password="bench-pass-123456")
        QuotaOverride.objects.create(user=hot, model=mini, messages=1_000_000, window_kind="anchored", window_length=1, window_unit="day")
        hot_runs = []
        for _ in range(max(1, args.runs - 1)):
            result = fire([[[hot.id] * 100_000 for _ in range(T)] for _ in range(P)], args.seconds)
            result.pop("outcomes")
            hot_runs.append(result)
        out["hot"] = hot_runs
        note(f"hot user: {rates(hot_runs)}")

        # The last slot: a limit of 3 with 2 used, then 100 sends at once from P processes.
        races = []
        for round_ in range(args.race_rounds):
            user = user_create(username=f"bench-race-{round_}", password="bench-pass-123456")
            QuotaOverride.objects.create(user=user, model=mini, messages=3, window_kind="anchored", window_length=7, window_unit="day")
            for _ in range(2):
                actions.message_send(user=user, conversation_id=None, model_slug=MODEL, text="bench")
            per_process = [100 // P + (1 if p < 100 % P else 0) for p in range(P)]
            result = fire([[[user.id] for _ in range(n)] for n in per_process], None)
            outcomes = result["outcomes"]
            used = QuotaCounter.objects.get(user=user, model=mini).used
            replies = Message.objects.filter(conversation__user=user, role="assistant").count()
            admitted = outcomes.count("admitted")
            races.append(
                {
                    "sends": len(outcomes),
                    "admitted": admitted,
                    "refused": outcomes.count("quota_exhausted"),
                    "other": sorted({o for o in outcomes if o not in ("admitted", "quota_exhausted")})[:5],
                    "counter_used": used,
                    "replies_stored": replies,
                    "over_admitted": max(0, admitted - 1, used - 3, replies - 3),
                }
            )
        out["race"] = races
        note(f"races: admitted {[r['admitted'] for r in races]}")
        connections.close_all()
    finally:
        for _ in racers:
            tasks.put(None)
        for r in racers:
            r.join(30)
            if r.is_alive():
                r.terminate()
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()

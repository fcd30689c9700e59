"""The processes a benchmark runs against: the simulator, an ASGI server and a Celery worker.

Every process is started here, in its own process group, and stopped here by
its pid (SIGTERM, then SIGKILL after a grace period). Nothing is stopped by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from config import commands
from tests.helpers import free_port, http_ok, wait_until  # one copy, shared with the tests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
GRACE = 10.0


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class Proc:
    name: str
    command: list[str]
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(GRACE)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    """The processes of one run; `stop_all` ends every one of them."""

    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0
        )
        log.close()
        proc = Proc(name, command, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            proc.stop()
        self.procs.clear()


def start_simulator(stack: Stack, env: dict[str, str], *, think: float, rate: float) -> tuple[Proc, str]:
    port = free_port()
    proc = stack.start("simulator", [PY, "-m", "simulator", "--port", str(port), "--think", str(think), "--rate", str(rate)], env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/_sim/health") or not proc.alive(), timeout=30, what="the simulator")
    if not proc.alive():
        raise RuntimeError(f"the simulator died:\n{proc.log_tail()}")
    return proc, url


def web_command(server: str, port: int) -> list[str]:
    command = commands.web("127.0.0.1", port, server)
    return command + (["-v", "0"] if server == "daphne" else ["--log-level", "warning"])


def start_web(stack: Stack, env: dict[str, str], server: str = "uvicorn") -> tuple[Proc, int]:
    port = free_port()
    proc = stack.start(f"web-{server}", web_command(server, port), env)
    wait_until(lambda: accepts(port) or not proc.alive(), timeout=60, what=f"the web server ({server})")
    if not proc.alive():
        raise RuntimeError(f"the web server died:\n{proc.log_tail()}")
    return proc, port


def start_relay(stack: Stack, env: dict[str, str], sim_url: str) -> tuple[Proc, int]:
    """The baseline (bench/relay.py) under uvicorn, as the product's web server runs."""
    port = free_port()
    command = commands.web("127.0.0.1", port, "uvicorn")
    command[command.index("config.asgi:application")] = "bench.relay:app"
    proc = stack.start("relay", command + ["--log-level", "warning"], {**env, "OPENAI_BASE_URL": f"{sim_url}/v1"})
    wait_until(lambda: accepts(port) or not proc.alive(), timeout=60, what="the relay")
    if not proc.alive():
        raise RuntimeError(f"the relay died:\n{proc.log_tail()}")
    return proc, port


def start_worker(stack: Stack, env: dict[str, str], *, queue: str, concurrency: int, number: int = 1) -> Proc:
    proc = stack.start(f"worker-{number}", commands.worker(concurrency, queue=queue, number=number), env)
    time.sleep(0.5)
    if not proc.alive():
        raise RuntimeError(f"the worker died:\n{proc.log_tail()}")
    return proc


class Sampler:
    """Samples RSS and CPU of named processes in a thread; `mark()` starts a new window.

    Windows report peak RSS and CPU seconds per process, plus the CPU every
    other process on the machine used meanwhile (the machine is shared).
    """

    def __init__(self, pids: dict[str, int | list[int]], interval: float = 0.2):
        self.interval = interval
        self.procs: dict[str, list[psutil.Process]] = {}
        for name, pid in pids.items():
            self.add(name, pid)
        self.lock = threading.Lock()
        self.window: dict | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self.thread.start()

    def add(self, name: str, pids: int | list[int]) -> None:
        pids = [pids] if isinstance(pids, int) else pids
        self.procs[name] = [psutil.Process(p) for p in pids]

    def remove(self, name: str) -> None:
        self.procs.pop(name, None)

    def _cpu(self, name: str) -> float:
        total = 0.0
        for p in self.procs.get(name, []):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _rss(self, name: str) -> int:
        total = 0
        for p in self.procs.get(name, []):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _our_pids(self) -> set[int]:
        return {os.getpid()} | {p.pid for procs in self.procs.values() for p in procs}

    def _threads(self, name: str) -> int:
        total = 0
        for p in self.procs.get(name, []):
            try:
                total += p.num_threads()
            except psutil.Error:
                pass
        return total

    def rss(self, name: str) -> int:
        return self._rss(name)

    def start_window(self) -> None:
        with self.lock:
            self.window = {
                "t0": time.monotonic(),
                "cpu0": {n: self._cpu(n) for n in self.procs},
                "sys0": psutil.cpu_times(),
                "peak": {n: self._rss(n) for n in self.procs},
                "start_rss": {n: self._rss(n) for n in self.procs},
                "threads": {n: self._threads(n) for n in self.procs},
                "owners0": cpu_by_owner(self._our_pids()),
            }

    def end_window(self) -> dict:
        with self.lock:
            w, self.window = self.window, None
        assert w is not None
        wall = time.monotonic() - w["t0"]
        cpu = {n: self._cpu(n) - w["cpu0"].get(n, 0.0) for n in self.procs}
        owners = cpu_delta(w["owners0"], cpu_by_owner(self._our_pids()))
        sys1 = psutil.cpu_times()
        busy = sum(getattr(sys1, f) - getattr(w["sys0"], f) for f in ("user", "system", "nice", "irq", "softirq"))
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "cpu_pct": {n: 100.0 * c / wall for n, c in cpu.items()},
            "machine_busy_pct": 100.0 * busy / wall / psutil.cpu_count(),
            "owners_pct": {k: 100.0 * v / wall for k, v in owners.items()},
            "owners_s": owners,
            "peak_rss": dict(w["peak"]),
            "peak_threads": dict(w["threads"]),
            "start_rss": dict(w["start_rss"]),
        }

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                if self.window is None:
                    continue
                for n in self.procs:
                    self.window["peak"][n] = max(self.window["peak"].get(n, 0), self._rss(n))
                    self.window["threads"][n] = max(self.window["threads"].get(n, 0), self._threads(n))

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(2)


def cpu_by_owner(ours: set[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process on the machine, with who it belongs to.

    "bench": our servers and clients; "postgres (bench_chat)": backends serving the bench database
    (Debian's PostgreSQL puts the database name in the process title); "postgres (other)", "redis";
    "other": everything else, mostly other people's work on this shared machine.
    """
    found = {}
    procs = list(psutil.process_iter(["name", "cmdline", "ppid"]))
    parent = {p.pid: p.info["ppid"] for p in procs}

    def descends(pid: int) -> bool:
        for _ in range(20):
            if pid in ours:
                return True
            pid = parent.get(pid, 0)
            if not pid:
                return False
        return False

    for p in procs:
        try:
            t = p.cpu_times()
            name = p.info["name"] or ""
            title = " ".join(p.info["cmdline"] or [])
            if descends(p.pid):
                owner = "bench"
            elif name.startswith("postgres") or title.startswith("postgres"):
                owner = "postgres (bench_chat)" if " bench_chat " in f" {title} " else "postgres (other)"
            elif name.startswith("redis-server"):
                owner = "redis"
            else:
                owner = "other"
            found[p.pid] = (owner, t.user + t.system)
        except psutil.Error:
            pass
    return found


def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for pid, (owner, cpu) in after.items():
        start = before.get(pid, (owner, 0.0))[1]
        totals[owner] = totals.get(owner, 0.0) + max(0.0, cpu - start)
    return totals

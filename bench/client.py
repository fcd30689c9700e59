"""The load generator: browsers over WebSockets, and direct SDK calls to the simulator.

Runs in its own process, on uvloop, so it competes with the servers only for CPU:

    python bench/client.py JOB.json OUT.json

It prints "ready" once its sockets are open and waits for a line on stdin
before it starts sending, so several client processes start together. The job
says what to do ("ttft", "stream", or "relay": a stream step's prompts through
bench/relay.py); the result has raw samples and the client's own CPU time and
event-loop lag, which show whether the client kept up.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import uvloop
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from simulator.app import build_answer, parse_directives, tokenize  # noqa: E402

MODEL = "o1-mini"
MAX_COMPLETION_TOKENS = 65_536  # what the app sends for o1-mini (chat/catalog.py)


def expected_answer(text: str) -> str:
    """What the simulator answers to `text`: it is deterministic."""
    return "".join(build_answer(text, parse_directives(text)))


class LoopLag:
    """How late the event loop wakes a 10 ms sleeper: a busy client shows here first."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.samples.append(time.perf_counter() - t - 0.01)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self.task:
            self.task.cancel()


async def open_socket(job: dict, session: str, attempts: int = 1):
    headers = {"Cookie": f"{job['cookie_name']}={session}", "Origin": job["origin"]}
    for attempt in range(attempts):
        try:
            return await connect(
                job["ws_url"],
                additional_headers=headers,
                proxy=None,
                max_size=None,
                compression=job.get("compression", "deflate"),
                open_timeout=60,
                ping_interval=None,
                max_queue=None,
            )
        except Exception as exc:
            print(f"handshake failed ({exc!r}), attempt {attempt + 1} of {attempts}", file=sys.stderr, flush=True)
            if attempt + 1 == attempts:
                raise
            await asyncio.sleep(2)


async def wait_for_go() -> None:
    print("ready", flush=True)
    await stdin_line()


# --- Figure 1: time to first token ---------------------------------------------------


async def product_chat(job: dict, ws, client, chat: int, stop_at: float, pairs: list, errors: list) -> None:
    """Wraps one tab: if the server drops its socket, count it and open a new one, as the page does."""
    counter = [0]  # message numbers go on across reconnects, so every prompt stays unique
    while time.perf_counter() < stop_at:
        try:
            await _product_chat(job, ws, client, chat, stop_at, pairs, errors, counter)
            return
        except Exception as exc:  # a closed socket, a timeout: reported, not fatal to the run
            errors.append({"chat": chat, "what": f"socket lost: {exc!r}"[:200]})
            try:
                await ws.close()
            except Exception:
                pass
            ws = await open_socket(job, job["sessions"][chat], attempts=5)


async def _product_chat(job: dict, ws, client, chat: int, stop_at: float, pairs: list, errors: list, counter: list[int]) -> None:
    """One browser tab sending message after message, each as soon as the last answer is done.

    At the moment each message is sent, the same prompt also goes straight to the simulator
    through the SDK (a separate task on the same loop), so (a) and (b) are taken side by side.
    """
    conversation_id, turns = None, 0
    first_delta: dict[int, float] = {}
    while time.perf_counter() < stop_at:
        counter[0] += 1
        i = counter[0]
        text = job["prompt"].format(chat=chat, i=i)
        if turns >= job.get("turns_per_conversation", 20):
            conversation_id, turns = None, 0
        sent_at, sent_wall = time.perf_counter(), time.time()
        await ws.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation_id": conversation_id,
                    "model": job.get("model", MODEL),
                    "text": text,
                    "client_id": f"c{chat}-{i}",
                }
            )
        )
        direct = asyncio.create_task(direct_ttft(client, text, errors))
        reply_id, sent_frame_wall = None, None
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
            kind = frame["type"]
            if kind == "sent" and frame.get("client_id") == f"c{chat}-{i}":
                sent_frame_wall = time.time()
                reply_id = frame["reply"]["id"]
                conversation_id = frame["conversation"]["id"]
            elif kind == "delta" and frame["text"] and frame["message_id"] not in first_delta:
                first_delta[frame["message_id"]] = time.perf_counter()
            elif kind == "message" and frame["message"]["text"] and frame["message"]["id"] not in first_delta:
                # The text so far, sent when the reply began before the socket joined its new chat.
                first_delta[frame["message"]["id"]] = time.perf_counter()
            elif kind == "done" and reply_id is not None and frame["message"]["id"] == reply_id:
                break
            elif kind == "error":
                errors.append(frame)
                if frame.get("client_id") == f"c{chat}-{i}":
                    break
        turns += 1
        a = await direct
        if reply_id is None or reply_id not in first_delta:
            errors.append({"chat": chat, "i": i, "what": "no text delta"})
            continue
        b = first_delta.pop(reply_id) - sent_at
        pairs.append(
            {
                "start": sent_at,
                "b": b,
                "a": a,
                "reply_id": reply_id,
                "text": text,
                "sent_wall": sent_wall,
                "first_wall": sent_wall + b,
                "sent_frame_wall": sent_frame_wall,
            }
        )


async def direct_ttft(client, text: str, errors: list) -> float | None:
    """The same prompt straight to the simulator through the openai SDK: seconds to the first text."""
    started = time.perf_counter()
    first = None
    try:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": text}],
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=MAX_COMPLETION_TOKENS,
            user="bench-direct",
        )  # only marks the request in the simulator's log; ignored otherwise
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
    except Exception as exc:  # report, keep going
        errors.append({"what": repr(exc)})
    return None if first is None else first - started


async def run_ttft(job: dict) -> dict:
    from openai import AsyncOpenAI

    n = job["chats"]
    sockets = [await open_socket(job, s, attempts=5) for s in job["sessions"][:n]]
    client = AsyncOpenAI(base_url=job["sim_url"] + "/v1", api_key="bench", max_retries=0)
    await wait_for_go()
    lag, cpu0, wall0 = LoopLag(), psutil.Process().cpu_times(), time.perf_counter()
    lag.start()
    pairs, errors = [], []
    stop_at = time.perf_counter() + job["warmup"] + job["duration"]
    await asyncio.gather(*(product_chat(job, ws, client, c, stop_at, pairs, errors) for c, ws in enumerate(sockets)))
    lag.stop()
    cpu1, wall = psutil.Process().cpu_times(), time.perf_counter() - wall0
    for ws in sockets:
        await ws.close()
    measured_from = wall0 + job["warmup"]
    kept = [p for p in pairs if p["start"] >= measured_from and p["a"] is not None]
    return {
        "product": [p["b"] for p in kept],
        "direct": [p["a"] for p in kept],
        "pairs": [{k: p[k] for k in ("reply_id", "text", "sent_wall", "first_wall", "sent_frame_wall")} for p in kept],
        "errors": errors[:20],
        "error_count": len(errors),
        "wall_s": wall,
        "measured_s": job["duration"],
        "client_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "loop_lag": lag.samples,
    }


# --- Figure 2: concurrent streaming generations ----------------------------------------


@dataclass
class Reply:
    chat: int
    text_sent: str
    sent_at: float = 0.0  # wall clock (time.time) for cross-process concurrency
    reply_id: int | None = None
    deltas: list[tuple[float, int, str]] = field(default_factory=list)  # (perf time, offset, text)
    streamed: str = ""
    overlaps: int = 0
    gaps: int = 0
    done: dict | None = None
    first_wall: float | None = None
    done_wall: float | None = None
    last_wall: float | None = None
    frames: int = 0  # every delta frame received for this reply, text or not: what the server sent
    error: str = ""


async def stream_one(job: dict, ws, reply: Reply, start_at: float) -> None:
    await asyncio.sleep(max(0.0, start_at - time.time()))
    reply.sent_at = time.time()
    t_sent = time.perf_counter()
    client_id = f"s{reply.chat}"
    if job["kind"] == "relay":
        return await relay_one(job, ws, reply, t_sent)
    send = {"type": "send", "conversation_id": None, "model": job.get("model", MODEL), "text": reply.text_sent, "client_id": client_id}
    await ws.send(json.dumps(send))
    deadline = t_sent + job["reply_timeout"]
    early: list[dict] = []
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.perf_counter())))
            now = time.perf_counter()
            kind = frame["type"]
            if kind == "sent" and frame.get("client_id") == client_id:
                reply.reply_id = frame["reply"]["id"]
                for f in early:  # deltas that beat the "sent" frame
                    _delta(reply, f, now)
                early = []
            elif kind == "delta":
                reply.frames += reply.reply_id is None or frame["message_id"] == reply.reply_id
                if reply.reply_id is None:
                    early.append(frame)
                elif frame["message_id"] == reply.reply_id:
                    if _delta(reply, frame, now):
                        await ws.send(json.dumps({"type": "resync", "message_id": reply.reply_id}))
            elif kind == "message" and frame["message"]["id"] == reply.reply_id:
                # Answer to a resync: carry on from the stored text.
                if len(frame["message"]["text"]) > len(reply.streamed):
                    reply.streamed = frame["message"]["text"]
            elif kind == "done" and reply.reply_id is not None and frame["message"]["id"] == reply.reply_id:
                reply.done = frame["message"]
                reply.done_wall = time.time()
                return
            elif kind == "error":
                reply.error = f"{frame.get('code')}: {frame.get('message')}"
                if frame.get("client_id") == client_id:
                    return
    except TimeoutError:
        reply.error = reply.error or "timed out waiting for done"
    except Exception as exc:
        reply.error = reply.error or repr(exc)


async def relay_one(job: dict, ws, reply: Reply, t_sent: float) -> None:
    """The same prompt through the baseline relay (bench/relay.py): it sends only text deltas, then done."""
    await ws.send(reply.text_sent)
    deadline = t_sent + job["reply_timeout"]
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.perf_counter())))
            now = time.perf_counter()
            if frame["type"] == "delta":
                reply.frames += 1
                _delta(reply, {"text": frame["text"], "offset": len(reply.streamed)}, now)
            elif frame["type"] == "done":
                reply.done = {"text": reply.streamed, "status": "done"}
                reply.done_wall = time.time()
                return
    except TimeoutError:
        reply.error = "timed out waiting for done"
    except Exception as exc:
        reply.error = repr(exc)


def _delta(reply: Reply, frame: dict, now: float) -> bool:
    """Apply a delta by offset, as the browser does; True when a gap needs a resync."""
    text, offset = frame["text"], frame["offset"]
    if not text:
        return False
    if reply.first_wall is None:
        reply.first_wall = time.time() - (time.perf_counter() - now)
    reply.deltas.append((now, offset, text))
    reply.last_wall = time.time() - (time.perf_counter() - now)
    n = len(reply.streamed)
    if offset > n:
        reply.gaps += 1
        return True
    if offset < n:
        reply.overlaps += 1
    reply.streamed += text[n - offset :]
    return False


def reply_metrics(reply: Reply, rate: float) -> dict:
    expected = expected_answer(reply.text_sent)
    tokens = tokenize(expected)
    ends, total = [], 0
    for t in tokens:
        total += len(t)
        ends.append(total)
    added, added_at, lag = [], [], []
    prev_t = prev_k = None
    wall_minus_perf = time.time() - time.perf_counter()
    t0 = k0 = None
    for t, offset, text in reply.deltas:
        k = bisect.bisect_right(ends, offset + len(text))  # whole tokens received so far
        if prev_t is not None:
            added.append((t - prev_t) - (k - prev_k) / rate)
            added_at.append(t + wall_minus_perf)
        if t0 is None:
            t0, k0 = t, k
        else:
            lag.append((t - t0) - (k - k0) / rate)
        prev_t, prev_k = t, k
    stored = (reply.done or {}).get("text")
    status = (reply.done or {}).get("status")
    # What the person ends up reading: the final stored text from `done` (the browser shows it), else the stream.
    final = stored if reply.done is not None else reply.streamed
    if reply.error == "connect failed":
        outcome = "connect failed"
    elif reply.done is None:
        outcome = "socket closed" if "ConnectionClosed" in reply.error else "no done"
    elif status != "done":
        outcome = f"status {status}"
    elif final == expected and reply.streamed == expected:
        outcome = "complete"
    elif final == expected:
        outcome = "complete at done"  # the stream missed its tail; `done` carried the full text
    elif len(final) < len(expected):
        outcome = "lost text"
    elif len(final) > len(expected):
        outcome = "duplicated text"
    else:
        outcome = "different text"
    return {
        "reply_id": reply.reply_id,
        "outcome": outcome,
        "error": reply.error or (reply.done or {}).get("error", ""),
        "stored_matches_expected": stored == expected,
        "streamed_matches_expected": reply.streamed == expected,
        "streamed_short_by": max(0, len(expected) - len(reply.streamed)),
        "deltas": len(reply.deltas),
        "frames": reply.frames,
        "gaps": reply.gaps,
        "overlaps": reply.overlaps,
        "added_gaps": [round(x, 5) for x in added],
        "added_at": [round(x, 4) for x in added_at],
        "schedule_lag": [round(x, 5) for x in lag],
        "sent_at": reply.sent_at,
        "first_wall": reply.first_wall,
        "done_wall": reply.done_wall,
        "last_delta_wall": reply.last_wall,
        "ttft": (reply.first_wall - reply.sent_at) if reply.first_wall else None,
    }


async def run_stream(job: dict) -> dict:
    sessions = job["sessions"]
    sem = asyncio.Semaphore(50)

    connect_errors: list[str] = []

    async def opened(s: str):
        async with sem:
            try:
                return await open_socket(job, s)
            except Exception as exc:  # the server refused or failed the handshake: count it
                connect_errors.append(repr(exc)[:200])
                return None

    t = time.perf_counter()
    sockets = await asyncio.gather(*(opened(s) for s in sessions))
    connect_s = time.perf_counter() - t
    print("ready", flush=True)
    start_at = float(await stdin_line())
    lag, cpu0, wall0 = LoopLag(), psutil.Process().cpu_times(), time.perf_counter()
    lag.start()
    first = job["first_chat"]
    replies = [Reply(chat=first + i, text_sent=job["prompt"].format(chat=first + i)) for i in range(len(sockets))]
    spread = job["spread"]
    total = job["total_chats"]
    for ws, r in zip(sockets, replies, strict=True):
        if ws is None:
            r.error = "connect failed"
    tasks = [
        asyncio.create_task(stream_one(job, ws, r, start_at + spread * (r.chat / total)))
        for ws, r in zip(sockets, replies, strict=True)
        if ws is not None
    ]
    # The runner writes "stop" when the database shows no reply moving any more: stop waiting then.
    stop = asyncio.create_task(stdin_line())
    pending = set(tasks)
    while pending and not stop.done():
        _, pending = await asyncio.wait(pending | {stop}, return_when=asyncio.FIRST_COMPLETED)
        pending.discard(stop)
    stop.cancel()
    for t in pending:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for r in replies:
        if r.done is None and not r.error:
            r.error = "no done when the run stopped: no reply was moving any more"
    lag.stop()
    cpu1, wall = psutil.Process().cpu_times(), time.perf_counter() - wall0
    await asyncio.gather(*(ws.close() for ws in sockets if ws is not None), return_exceptions=True)
    return {
        "replies": [reply_metrics(r, job["rate"]) for r in replies],
        "connect_s": connect_s,
        "connect_errors": connect_errors,
        "wall_s": wall,
        "client_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "loop_lag": lag.samples,
    }


_stdin: asyncio.StreamReader | None = None


async def stdin_line() -> str:
    """The next line from the runner, read without a thread (a blocked reader thread would delay exit)."""
    global _stdin
    if _stdin is None:
        _stdin = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(_stdin), sys.stdin)
    return (await _stdin.readline()).decode().strip()


async def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    result = await (run_ttft(job) if job["kind"] == "ttft" else run_stream(job))  # "stream" or "relay"
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    uvloop.run(main())

"""docs/benchmarks.md from a run's results (bench/results/*/results.json)."""

from __future__ import annotations

import math
import statistics

from bench.stats import mib, ms, ms3, pcts, percentile

TTFT_P50, TTFT_P99 = 0.010, 0.050
STREAMS, GAP_P99 = 500, 0.100
RESERVATIONS = 1000
MB_PER_GENERATION = 0.5
TTFT_AT_1 = 0.005
CPU_PER_FRAME, RELAY_RATIO = 0.0003, 1.5


def others(window: dict) -> str:
    """CPU other people's processes used meanwhile (the machine is shared), and PostgreSQL's for us."""
    o = window.get("owners_pct", {})
    if not o:
        return "–"
    return f"{o.get('other', 0) + o.get('postgres (other)', 0):.0f} %"


def pg_ours(window: dict) -> str:
    o = window.get("owners_pct", {})
    return f"{o.get('postgres (bench_chat)', 0):.0f} %" if o else "–"


def owner_seconds(window: dict) -> dict[str, float]:
    """CPU seconds by owner (cpu_by_owner in bench/stack.py) during a window."""
    if "owners_s" in window:
        return window["owners_s"]
    return {k: v * window["wall_s"] / 100 for k, v in window.get("owners_pct", {}).items()}


def ours_cpu(window: dict) -> dict[str, float]:
    """The product's CPU seconds in a window: worker + web + PostgreSQL (bench_chat backends) + Redis.

    Redis is the machine's one server, so it also counts what other people's tests asked of it meanwhile;
    the load generator and the simulator are in neither side."""
    owners = owner_seconds(window)
    parts = {
        "worker": window["cpu_s"].get("worker", 0.0),
        "web": window["cpu_s"].get("web", 0.0),
        "PostgreSQL": owners.get("postgres (bench_chat)", 0.0),
        "Redis": owners.get("redis", 0.0),
    }
    return {**parts, "total": sum(parts.values())}


def step_stats(row: dict) -> dict:
    """What one streaming step (through the product or the relay) delivered, and what it cost."""
    replies = [r for res in row["results"] for r in res["replies"]]
    outcomes = [r["outcome"] for r in replies]
    held, window = added_while_all_stream(replies)
    frames = sum(r.get("frames", r["deltas"]) for r in replies)
    return {
        "n": row["chats"],
        "complete": outcomes.count("complete") + outcomes.count("complete at done"),
        "lost": outcomes.count("lost text"),
        "duplicated": outcomes.count("duplicated text") + outcomes.count("different text"),
        "failed": sum(1 for o in outcomes if o.startswith("status") or o in ("no done", "socket closed", "connect failed")),
        "frames": frames,
        "held_p99": percentile(held, 99),
        "whole_p99": percentile([x for r in replies for x in r["added_gaps"]], 99),
        "ttft": [r["ttft"] for r in replies if r["ttft"] is not None],
        "peak": peak_concurrency(replies),
    }


def per_frame(cpu: float, frames: int) -> float:
    return cpu / frames if frames else math.nan


def cpu_verdict(ours: float, relay: float) -> bool:
    return ours <= CPU_PER_FRAME and ours <= RELAY_RATIO * relay


def yes(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def added_while_all_stream(replies: list[dict]) -> tuple[list[float], float]:
    """Added inter-chunk delays of the deltas that came while every reply of the step was streaming."""
    firsts = [r["first_wall"] for r in replies if r["first_wall"]]
    ends = [r["done_wall"] or r["last_delta_wall"] for r in replies if r["first_wall"]]
    if not firsts or len(firsts) < len(replies):
        return [], 0.0
    start, end = max(firsts), min(ends)
    held = [x for r in replies for x, at in zip(r["added_gaps"], r.get("added_at", []), strict=False) if start <= at <= end]
    return held, max(0.0, end - start)


def peak_concurrency(replies: list[dict]) -> int:
    events = []
    for r in replies:
        end = r["done_wall"] or r.get("last_delta_wall")
        if r["first_wall"] and end:
            events += [(r["first_wall"], 1), (end, -1)]
    peak = live = 0
    for _, d in sorted(events):
        live += d
        peak = max(peak, live)
    return peak


def halves(values: list[float], p: float) -> str:
    """The percentile in the first and second half of the samples, in time order: a spread."""
    if len(values) < 4:
        return "–"
    mid = len(values) // 2
    a, b = percentile(values[:mid], p), percentile(values[mid:], p)
    return f"{ms(min(a, b))}–{ms(max(a, b))}"


def ttft_section(results: dict) -> list[str]:
    rows = results.get("ttft")
    if not rows:
        return []
    s = results["settings"]
    think, tokens, rate = s["ttft_shape"]
    out = [
        "## 1. Time to first token the app adds",
        "",
        f"Prompt: `{s['ttft_prompt']}`: a fixed {think:g} s of thinking, then {tokens} tokens at {rate:g}/s. For N",
        "active chats, N browser tabs (one WebSocket and one user each) each send a message as soon as the previous",
        "answer's `done` arrives, so N answers are always in flight (and streaming while others start; an answer",
        "this short, next to real reasoning models' tens of seconds, keeps the send rate high). At the instant",
        "each tab sends, the client also sends",
        "the same prompt straight to the simulator through the `openai` SDK (`AsyncOpenAI`, streaming), so every",
        "(b) has an (a) taken side by side, under the same load:",
        "",
        "- (a) direct: `chat.completions.create(stream=True)` called → first chunk with content;",
        "- (b) product: WebSocket `send` frame written → the first frame with text for that reply (a `delta`, or the",
        "  `message` with the text so far that a socket gets when the reply began before it joined its new chat);",
        "- **added p-th** = p-th percentile of (b) − p-th percentile of (a) (the distributions paired by",
        '  percentile); "per pair" is the distribution of b − a over the pairs taken side by side.',
        "",
        "The first 2 s of each level are a warm-up and not counted. Spread: added p50 computed separately over",
        "the first and the second half of the pairs, in time order. Times in ms.",
        "",
        "| server | active chats | pairs | (a) direct p50 / p99 | (b) product p50 / p99 | **added p50** | added p95 "
        "| **added p99** | per pair b − a: p50 / p99 | spread of added p50 | target | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        r = row["result"]
        a, b = r["direct"], r["product"]
        pa, pb = pcts(a), pcts(b)
        added = {k: pb[k] - pa[k] for k in pb}
        diffs = [y - x for x, y in zip(a, b, strict=True)]
        spread = "–"
        if len(a) >= 4:
            mid = len(a) // 2
            vals = [percentile(b[:mid], 50) - percentile(a[:mid], 50), percentile(b[mid:], 50) - percentile(a[mid:], 50)]
            spread = f"{ms(min(vals))}–{ms(max(vals))}"
        at_target = row["chats"] >= 50
        if not b:
            verdict = "**missed** (no answer in time)" if at_target else "–"
        elif at_target:
            verdict = yes(added["p50"] <= TTFT_P50 and added["p99"] <= TTFT_P99)
        else:
            verdict = "(the target is at 50)"
        out.append(
            f"| {row['server']} | {row['chats']} | {len(b)} | {ms(pa['p50'])} / {ms(pa['p99'])} | "
            f"{ms(pb['p50'])} / {ms(pb['p99'])} | **{ms(added['p50'])}** | {ms(added['p95'])} | **{ms(added['p99'])}** | "
            f"{ms(percentile(diffs, 50))} / {ms(percentile(diffs, 99))} | {spread} | p50 ≤ 10, p99 ≤ 50 | {verdict} |"
        )
    out += [
        "",
        "Load during each level (CPU as % of one core, averaged over the level; the machine has "
        f'{results["machine"]["cores"]} cores, so 200 % is all of it; "machine busy" counts every process on the '
        "machine, ours and other people's):",
        "",
        "| server | active chats | sends/s | web | worker | simulator | client | PostgreSQL (bench_chat) "
        "| client loop lag p99 (ms) | machine busy | other people's processes "
        "| web's channel-layer inbox, peak waiting | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        r, w = row["result"], row["window"]
        c = w["cpu_pct"]
        out.append(
            f"| {row['server']} | {row['chats']} | {len(r['product']) / r['measured_s']:.1f} | {c.get('web', 0):.0f} % | "
            f"{c.get('worker', 0):.0f} % | {c.get('simulator', 0):.0f} % | {100 * r['client_cpu_s'] / r['wall_s']:.0f} % | "
            f"{pg_ours(w)} | {ms(percentile(r['loop_lag'], 99))} | {w['machine_busy_pct'] * 2:.0f} % | {others(w)} | "
            f"{row.get('peak_inbox', '–')} | {r['error_count']} |"
        )
    kinds = sorted({str(e.get("what") or e.get("code") or e)[:120] for row in rows for e in row["result"]["errors"]})
    if kinds:
        out += ["", "Errors the clients saw (distinct, first few): " + "; ".join(f"`{k}`" for k in kinds[:6]) + "."]
    parts = list(rows[0]["result"].get("breakdown", {}))
    if parts:
        out += [
            "",
            "Where the product's time to first token goes, hop by hop, p50 / p99 in ms. Clocks: the client's (send,",
            "`sent`, first delta), PostgreSQL's (two triggers the bench adds to its database while this figure runs:",
            "the reply row's commit, and its claim by a worker, pending → streaming) and the simulator's (request",
            f"received; its first token comes {think * 1000:.0f} ms later, which is taken out). Store + claim + provider",
            "request + first token add up to the product's time to first token less the thinking; the enqueue hop is",
            "inside the claim hop (an upper bound of it: it ends when `sent` reaches the browser). The last column",
            f"is the same for the direct SDK call, i.e. (a) − {think * 1000:.0f} ms:",
            "",
            "| server | active chats | " + " | ".join(parts) + " | direct: client → simulator → client |",
            "| --- | --- | " + " | ".join("---" for _ in parts) + " | --- |",
        ]
        for row in rows:
            r = row["result"]
            cells = [f"{ms(percentile(r['breakdown'][k], 50))} / {ms(percentile(r['breakdown'][k], 99))}" for k in parts]
            direct = [x - think for x in r["direct"]]
            out.append(
                f"| {row['server']} | {row['chats']} | "
                + " | ".join(cells)
                + f" | {ms(percentile(direct, 50))} / {ms(percentile(direct, 99))} |"
            )
        out += ttft_obstacles(rows[0], think)
    out.append("")
    return out


# Per hop of the time to first token: what it is made of, and the design that would remove it.
TTFT_OBSTACLES = {
    "store": "two statements in one transaction (BEGIN and COMMIT are round trips too): the one that locks the user "
    "and reads the model and the quota rules, then the one that stores the chat, the messages and the reservation. "
    "A database function doing both in a single call would leave one round trip, at the price of writing the quota "
    "rules in PL/pgSQL beside their Python.",
    "enqueue": "Celery's publish after commit, then the announcements (`sent`, `quota`, `messages`) on the socket.",
    "claim": "kombu's delivery of the task to a worker thread, and the claim's compare-and-set; a worker's live loop "
    "taking reply ids from a Redis list itself would skip Celery's hop, but the design has Celery deliver the work.",
    "provider request": "the branch's context (one query), then the SDK building and sending the request; paid once per reply.",
    "first token": "the worker's read, the tick (the first words go out at once), Redis, the hub and the socket: about "
    "what the direct call spends reading the same first chunk.",
}


def ttft_obstacles(row: dict, think: float) -> list[str]:
    breakdown = row["result"]["breakdown"]
    out = [
        "",
        f"What stands in the way at {row['chats']} active chat(s), where nothing waits for CPU (p50 of each hop, ms):",
        "",
        "| hop | p50 (ms) | what it is, and the design that would remove it |",
        "| --- | --- | --- |",
    ]
    for key, values in breakdown.items():
        what = next((text for name, text in TTFT_OBSTACLES.items() if key.startswith(name)), "")
        out.append(f"| {key.split(':')[0]} | {ms(percentile(values, 50))} | {what} |")
    direct = percentile([x - think for x in row["result"]["direct"]], 50)
    out += [
        "",
        f"The direct call's own round trip is {ms(direct)} ms, so the first-token hop adds about nothing; the ≤ 5 ms target",
        "would need the store, the claim and the provider request together under 5 ms, i.e. no Celery hop and one",
        "call per send.",
    ]
    return out


def stream_section(results: dict) -> list[str]:
    rows = results.get("stream")
    if not rows:
        return []
    s = results["settings"]
    interval = 1 / s["stream_rate"]
    out = [
        "## 2. Concurrent streaming generations",
        "",
        f"Prompt: `{s['stream_prompt']}`: {s['stream_think']:g} s of thinking, then {s['stream_tokens']} tokens at "
        f"{s['stream_rate']:g} tokens/s (one every {interval * 1000:.0f} ms), about "
        f"{s['stream_think'] + s['stream_tokens'] / s['stream_rate']:.0f} s per answer.",
        "Each step opens N WebSockets (one per user, as in the product), then every socket sends one message, the",
        f"sends spread evenly over {s['stream_spread']:g} s, and assembles the answer from `delta` frames by offset",
        "exactly as docs/protocol.md says (a gap triggers `resync`).",
        "",
        "- **complete**: the stored message (the `done` frame, which the browser shows) equals the simulator's",
        '  deterministic answer for that prompt, and so does the text assembled from deltas ("tail only in `done`"',
        "  counts replies whose last deltas never arrived, so only `done` completed them); **lost / duplicated**:",
        "  the final text is shorter / longer than that answer; **failed**: the reply ended `failed`, no `done`",
        f"  came within {s['stream_think'] + s['stream_tokens'] / s['stream_rate'] + 45:.0f} s of sending, or the server "
        "closed the socket, or the WebSocket handshake failed;",
        "- **added inter-chunk delay** of a delta = its gap since the previous delta at the client − (new whole tokens",
        f"  it carries × {interval * 1000:.0f} ms), i.e. how much later than the simulator's pacing it came. Deltas are",
        f"  coalesced every {s['flush_seconds'] * 1000:.0f} ms by design, and this subtracts their token count, so",
        "  coalescing alone adds ≈ 0 on average; **schedule lag** = how far a delta is behind the first delta plus",
        "  the simulator's schedule (accumulated delay);",
        "- **peak simultaneous** = the most replies between their first delta and their `done` (or their last",
        '  delta, when no `done` came) at one instant, as the clients saw it; "in the DB" = the most replies',
        "  with status `streaming` at once (polled every 0.5 s);",
        "- memory: peak RSS during the step (sampled every 0.2 s with psutil); per generation =",
        "  (peak worker RSS during the step − worker RSS at idle before the first step) / N tasks started, and",
        "  the same divided by the peak number of replies streaming at once.",
        "",
        "- **while all N stream**: the deltas that arrived between the moment the last reply's first delta came",
        "  and the moment the first reply finished, i.e. while every one of the N generations was held at once; the",
        "  target is about that. The whole step also includes the ramp, when the N sends are admitted (figure 3",
        "  measures how fast sends go) while the first answers already stream.",
        "",
        "| simultaneous chats | peak simultaneous streams | complete | failed | lost text | duplicated text "
        "| gaps resynced / overlaps dropped / tail only in `done` | added inter-chunk p50 / p99, whole step (ms) "
        "| **added p99 while all N stream** (ms; window) | schedule lag p99 (ms) | TTFT p50 / p99 (ms) | target | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    mem_rows = []
    for row in rows:
        replies = [r for res in row["results"] for r in res["replies"]]
        n = row["chats"]
        outcomes = [r["outcome"] for r in replies]
        complete = outcomes.count("complete") + outcomes.count("complete at done")
        tail_fixed = outcomes.count("complete at done")
        lost = outcomes.count("lost text")
        dup = outcomes.count("duplicated text")
        failed = sum(1 for o in outcomes if o.startswith("status") or o in ("no done", "socket closed", "connect failed"))
        closed = outcomes.count("socket closed")
        refused = outcomes.count("connect failed")
        gaps = sum(r["gaps"] for r in replies)
        overlaps = sum(r["overlaps"] for r in replies)
        added = [x for r in replies for x in r["added_gaps"]]
        lag = [x for r in replies for x in r["schedule_lag"]]
        ttft = [r["ttft"] for r in replies if r["ttft"] is not None]
        peak = peak_concurrency(replies)
        held, window = added_while_all_stream(replies)
        p99 = percentile(held, 99)
        ok = complete == n and lost == dup == failed == 0 and p99 <= GAP_P99
        target = "all complete, p99 ≤ 100 ms" + (" (≥ 500 held)" if n >= STREAMS else "")
        out.append(
            f"| {n} | {peak} (in the DB: {row.get('peak_streaming_db', '–')}) | {complete} | {failed}"
            f"{f'; {closed} sockets closed by the server' if closed else ''}"
            f"{f'; {refused} handshakes failed' if refused else ''} | {lost} | {dup} | {gaps} / {overlaps} / {tail_fixed} | "
            f"{ms(percentile(added, 50))} / {ms(percentile(added, 99))} | **{ms(p99)}** ({len(held)} deltas in "
            f"{window:.1f} s) | {ms(percentile(lag, 99))} | {ms(percentile(ttft, 50))} / "
            f"{ms(percentile(ttft, 99))} | {target} | {yes(ok and (n < STREAMS or peak >= STREAMS))} |"
        )
        w = row["window"]
        per_gen = (w["peak_rss"].get("worker", 0) - row["idle_worker_rss"]) / n / 2**20
        held = max(row.get("peak_streaming_db") or 0, peak)
        per_held = (w["peak_rss"].get("worker", 0) - row["idle_worker_rss"]) / held / 2**20 if held else math.nan
        mem_rows.append((n, w, row, per_gen, per_held))
    notes = []
    for row in rows:
        st = row.get("no_done_db_statuses")
        if st is None:
            continue
        parts = ", ".join(f"{v} `{k}`" for k, v in sorted(st.items())) or "none"
        notes.append(f"- {row['chats']} chats: {parts}; {row.get('never_admitted', 0)} sends never got a `sent` frame.")
    if notes:
        out += [
            "",
            "Replies that failed without a `failed` status (no `done` reached the browser), by their status in the",
            "database at the end of the step (`done` there would mean the answer was stored complete but the",
            "browser was never told; `streaming` means it was still being written):",
            "",
            *notes,
            "",
            "After each step, replies still pending or streaming are stopped the way the stop button does it",
            "(status → `stopped`; the worker ends at its next checkpoint), so the next step starts from an idle worker.",
        ]
    errors = sorted(
        {r["error"] for row in rows for res in row["results"] for r in res["replies"] if r["error"]}
        | {e for row in rows for res in row["results"] for e in res.get("connect_errors", [])}
    )
    if errors:
        out += ["", "Errors seen by clients or stored on failed replies (distinct): " + "; ".join(f"`{e[:160]}`" for e in errors[:8])]
    out += relay_table(rows)
    out += [
        "",
        "Memory and CPU per step (CPU % of one core, averaged over the step):",
        "",
        "| simultaneous chats | worker peak RSS (MiB) | worker MiB per generation | target | verdict "
        "| web peak RSS (MiB) | worker threads (peak) | worker CPU | web CPU | simulator CPU | client CPU (processes) "
        "| client loop lag p99 (ms) | PostgreSQL (bench_chat) | machine busy | other people's processes "
        "| step wall (s) | web's channel-layer inbox, peak messages waiting | reply statuses in the DB after the step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, w, row, per_gen, per_held in mem_rows:
        c = w["cpu_pct"]
        lag = [x for res in row["results"] for x in res["loop_lag"]]
        client_cpu = 100 * sum(res["client_cpu_s"] for res in row["results"]) / w["wall_s"]
        out.append(
            f"| {n} | {mib(w['peak_rss'].get('worker', 0))} (idle {mib(row['idle_worker_rss'])}) | {per_gen:.2f} per task started; "
            f"{per_held:.2f} per generation streaming at the peak | ≤ 0.5 | "
            f"{yes(per_gen <= MB_PER_GENERATION)} | {mib(w['peak_rss'].get('web', 0))} (idle {mib(row['idle_web_rss'])}) | "
            f"{w.get('peak_threads', {}).get('worker', '–')} | "
            f"{c.get('worker', 0):.0f} % | {c.get('web', 0):.0f} % | {c.get('simulator', 0):.0f} % | "
            f"{client_cpu:.0f} % ({len(row['results'])}) | {ms(percentile(lag, 99))} | "
            f"{pg_ours(w)} | {w['machine_busy_pct'] * 2:.0f} % | {others(w)} | {w['wall_s']:.0f} | "
            f"{row.get('peak_inbox', '–')} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(row['db_statuses'].items()))} |"
        )
    out.append("")
    return out


def relay_table(rows: list[dict]) -> list[str]:
    rows = [row for row in rows if row.get("relay")]
    if not rows:
        return []
    out = [
        "",
        "### The same streams through a bare relay",
        "",
        "Right after each step, the same N sockets send the same N prompts to `bench/relay.py` (under uvicorn with",
        "the web server's options): a few dozen lines that call the simulator's streaming Chat Completions",
        "through the `openai` SDK and forward each chunk's text as a WebSocket frame, then a `done` frame; no",
        "database, no Redis, no Django, no coalescing. **CPU per frame** = CPU seconds over the step ÷ the delta",
        "frames the clients received: ours = worker + web + PostgreSQL (the bench database's backends) + Redis",
        "(the machine's one server, so other people's use of it counts against us); the relay = its process. The",
        "load generator and the simulator count on neither side. Per reply = the same CPU ÷ N. Both deliver the same",
        "text, but we coalesce: fewer, larger frames, so per frame flatters the relay and per reply is the like-for-like",
        "ratio (the same as per provider chunk streamed, which both read alike).",
        "",
        "| simultaneous chats | frames received: ours / relay | ours: CPU s (worker + web + PostgreSQL + Redis) "
        "| **ours per frame** (ms) | ours per reply (s) | relay: CPU s | **relay per frame** (ms) | relay per reply (s) "
        "| **ratio** per frame | ratio per reply | relay complete / lost / duplicated / failed | added inter-chunk p99 while "
        "all N stream: ours / relay (ms) | target | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ours, relay = step_stats(row), step_stats(row["relay"])
        cpu = ours_cpu(row["window"])
        relay_cpu = row["relay"]["window"]["cpu_s"].get("relay", 0.0)
        a, b = per_frame(cpu["total"], ours["frames"]), per_frame(relay_cpu, relay["frames"])
        out.append(
            f"| {row['chats']} | {ours['frames']:,} / {relay['frames']:,} | {cpu['total']:.1f} ({cpu['worker']:.1f} + "
            f"{cpu['web']:.1f} + {cpu['PostgreSQL']:.1f} + {cpu['Redis']:.1f}) | **{ms3(a)}** | {cpu['total'] / row['chats']:.2f} | "
            f"{relay_cpu:.1f} | **{ms3(b)}** | {relay_cpu / row['chats']:.2f} | **{a / b:.1f}×** | {cpu['total'] / relay_cpu:.1f}× | "
            f"{relay['complete']} / {relay['lost']} / {relay['duplicated']} / {relay['failed']} | "
            f"{ms(ours['held_p99'])} / {ms(relay['held_p99'])} | ≤ 0.3 ms per frame and ≤ {RELAY_RATIO:g}× the relay | "
            f"{yes(cpu_verdict(a, b))} |"
        )
    return out


def responses_section(results: dict) -> list[str]:
    row = results.get("responses")
    if not row:
        return []
    s = results["settings"]
    same = next((r for r in results.get("stream", []) if r["chats"] == row["chats"]), None)
    out = [
        "## 2b. The same streams through the Responses API",
        "",
        f"{row['chats']} sockets each send the streaming figure's prompt to `{s.get('responses_model', 'o4-mini')}`, a catalog model "
        "called through the Responses API (`client.responses.create(stream=True)`; the simulator streams its events",
        "in the real order), enabled for the run. Beside it, the Chat Completions step with as many streams, if the",
        "run had one. Same definitions as above; CPU per frame is ours (worker + web + PostgreSQL + Redis).",
        "",
        "| API | model | streams | complete | lost text | duplicated text | failed | frames received | CPU per frame (ms) "
        "| CPU per reply (s) | added inter-chunk p99 while all stream (ms) | TTFT p50 / p99 (ms) | verdict (all complete, "
        "no lost or duplicated text) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for api, r in (("Chat Completions", same), ("Responses", row)):
        if r is None:
            continue
        st, cpu = step_stats(r), ours_cpu(r["window"])
        ok = st["complete"] == st["n"] and st["lost"] == st["duplicated"] == st["failed"] == 0
        out.append(
            f"| {api} | {r.get('model', s.get('chat_model', 'o1-mini'))} | {st['n']} | {st['complete']} | {st['lost']} | "
            f"{st['duplicated']} | {st['failed']} | {st['frames']:,} | {ms3(per_frame(cpu['total'], st['frames']))} | "
            f"{cpu['total'] / st['n']:.2f} | {ms(st['held_p99'])} | {ms(percentile(st['ttft'], 50))} / "
            f"{ms(percentile(st['ttft'], 99))} | {yes(ok)} |"
        )
    out.append("")
    return out


def quota_section(results: dict) -> list[str]:
    q = results.get("quota")
    if not q:
        return []

    def spread(runs: list[dict]) -> tuple[float, float, float]:
        rates = [r["per_second"] for r in runs]
        return min(rates), statistics.median(rates), max(rates)

    d_min, d_med, d_max = spread(q["distinct"])
    h_min, h_med, h_max = spread(q["hot"])
    r_min, r_med, r_max = spread(q["reserve_only"]) if q.get("reserve_only") else (math.nan,) * 3
    races = q["race"]
    over = [r["over_admitted"] for r in races]
    out = [
        "## 3. Quota admission",
        "",
        "Two things are timed. `quota_reserve` is the reservation the target is about. `chat.actions.message_send`",
        "is the whole action behind a browser's `send`, of which the reservation is a part: one transaction of two",
        "statements, the first locking the user's row (and reading the model, the quota rules and the budget), the",
        "second creating the conversation, the user message and the pending reply and reserving quota (the same",
        "statement as `quota_reserve`'s: row lock on the user's counter for the model, conditional update, ledger",
        "row); on commit it enqueues the Celery task (to a queue no worker reads, so nothing is generated) and",
        "announces the messages to the chat's tabs and the quota to the user's. No web server or worker runs meanwhile.",
        f"{q['processes']} processes × {q['threads']} threads (psycopg pool of {q['pool_per_process']} per process) "
        f"send for {q['seconds']:g} s per run; model o1-mini.",
        "",
        f"- distinct users: {q['users']} users (and {q['users']} others for `quota_reserve` alone) on the seeded",
        "  default plan (o1-mini 50 a day, anchored); each thread owns its users, so no two concurrent sends wait",
        "  on the same row lock; no user nears the limit;",
        "- one hot user: every thread sends for the same user (limit raised to 1,000,000 a day by an override), so",
        "  every send waits for the one before it;",
        "- race: a user with a limit of 3 (override, 7 days anchored) sends 2, then 100 sends are fired at once",
        f"  ({q['processes']} processes, 100/{q['processes']} threads each, started together behind barriers); "
        "  exactly one may be admitted.",
        "",
        "| what | measured | spread (min–max over runs) | p50 / p99 latency of one send (ms) | target | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| reservations per second, distinct users: `quota_reserve`, the reservation itself (in its own "
        f"transaction; reply rows made beforehand, untimed) | **{r_med:,.0f}/s** (median of "
        f"{len(q.get('reserve_only', []))} runs) | {r_min:,.0f}–{r_max:,.0f}/s | "
        f"{q['reserve_only'][0]['latency_p50_ms']:.1f} / {q['reserve_only'][0]['latency_p99_ms']:.1f} (first run) | "
        f"≥ 1,000/s | {yes(r_med >= RESERVATIONS)} |",
        f"| whole sends per second, distinct users: `message_send` | **{d_med:,.0f}/s** (median of "
        f"{len(q['distinct'])} runs) | {d_min:,.0f}–{d_max:,.0f}/s | {q['distinct'][0]['latency_p50_ms']:.1f} / "
        f"{q['distinct'][0]['latency_p99_ms']:.1f} (first run) | ≥ 1,000/s | {yes(d_med >= RESERVATIONS)} |",
        f"| whole sends per second, one hot user (`message_send`) | **{h_med:,.0f}/s** (median of {len(q['hot'])} runs) | "
        f"{h_min:,.0f}–{h_max:,.0f}/s | {q['hot'][0]['latency_p50_ms']:.1f} / {q['hot'][0]['latency_p99_ms']:.1f} (first run) | "
        "(none) | – |",
        f"| over-admission, 100 racing sends for the last slot | **{max(over)}** in every one of {len(races)} runs "
        f"({', '.join(str(x) for x in over)}) | admitted per run: {', '.join(str(r['admitted']) for r in races)}; "
        f"counter after: {', '.join(str(r['counter_used']) for r in races)} (limit 3) | – | exactly 0, every run | "
        f"{yes(max(over) == 0 and all(r['admitted'] == 1 for r in races))} |",
        "",
    ]
    out += send_profile(q)
    not_admitted = {}
    for r in q["distinct"] + q["hot"]:
        for k, v in r["not_admitted"].items():
            not_admitted[k] = not_admitted.get(k, 0) + v
    if not_admitted:
        out += [f"Sends not admitted in the throughput runs: {not_admitted}.", ""]
    others = sorted({o for r in races for o in r["other"]})
    if others:
        out += [f"Race outcomes other than admitted / quota_exhausted: {others}.", ""]
    return out


def send_cpu(q: dict) -> list[str]:
    """CPU per reservation and per whole send, by process, over the runs across distinct users; the rate it allows."""
    rows = []
    cores = q.get("cores") or 2
    for what, key in (("`quota_reserve` alone", "reserve_only"), ("the whole send (`message_send`)", "distinct")):
        runs = [r for r in q.get(key, []) if r.get("cpu_s")]
        admitted = sum(r["admitted"] for r in runs)
        if not admitted:
            continue
        per = {owner: 1000 * sum(r["cpu_s"][owner] for r in runs) / admitted for owner in runs[0]["cpu_s"]}
        total = sum(per.values())
        rows.append(
            f"| {what} | {len(runs)} ({admitted:,}) | {per['racers']:.2f} ms | {per['PostgreSQL']:.2f} ms | "
            f"{per['Redis']:.2f} ms | **{total:.2f} ms** | {1000 * cores / total:,.0f}/s |"
        )
    if not rows:
        return []
    return [
        "CPU per admitted send across distinct users, over the runs above, from /proc; the ceiling is the rate",
        f"this machine's {cores} cores allow with every core busy and nothing waiting:",
        "",
        "| what | runs (sends) | the racers' Python (Django, psycopg, the send's Celery publish) | PostgreSQL | Redis | in all | ceiling |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"1,000 a second needs {cores} ms of CPU in all per send. PostgreSQL's share alone (for the whole send: its two",
        "statements, the commit's foreign-key checks and log write, for the seven rows a send writes: chat, two",
        "messages, counter, reservation, ledger entry, the profile's last model) is what would remain with no Python at all;",
        "`quota_reserve` alone reads the rules, then runs its one statement, in a transaction of its own: four round trips",
        "with BEGIN and COMMIT, each paid in Python and in PostgreSQL. A send runs the same reservation inside its two",
        "statements, so the whole send's figure is the one users pay; fewer round trips (a database function) would lower both.",
        "",
    ]


def send_profile(q: dict) -> list[str]:
    """Where a whole send's CPU goes in a racer process, from its py-spy GIL samples (bench/profile.py COSTS["send"])."""
    from bench.profile import COSTS

    out = send_cpu(q)
    p = q.get("profile")
    if not p or not p["samples"]:
        return out
    costs = p["costs"]
    out += [
        "Where a whole send's Python goes: py-spy's GIL samples of one racer process during those runs of whole",
        f"sends ({p['samples']} samples; raw stacks in `bench/results/<date>/send.pyspy.txt`). Each sample counts for the",
        "first of these parts it has a frame of; what is left is the bench's own loop and thread switching.",
        "",
        "| part of the send | share of the samples | what it is, and what would lower it |",
        "| --- | --- | --- |",
    ]
    for label, _, design in COSTS["send"]:
        out.append(f"| {label} | {100 * costs.get(label, 0) / costs['samples']:.0f} % | {design} |")
    out += [f"| everything else | {100 * costs.get('other', 0) / costs['samples']:.0f} % | – |", ""]
    return out


def micro_section(results: dict) -> list[str]:
    row = results.get("micro")
    if not row:
        return []
    runs = row["us_per_delta"]
    med = {name: sorted(values)[len(values) // 2] for name, values in runs.items()}
    return [
        "## 4. Publishing one streamed delta, reading one streamed chunk",
        "",
        f"`bench/micro.py`: the worker's `live.publish._send_batch` (a batch of {row['replies_per_batch']} replies' deltas, as when",
        "that many stream, in one hand-packed write: live/wire.py) and, beside it, the same commands (APPEND, EXPIRE, PUBLISH",
        f"per delta) through redis-py's asyncio pipeline; {row['batches']} batches per run, the two ways interleaved in one",
        "process against the local Redis; CPU of that process per delta.",
        "",
        "| way | µs CPU per delta, each run | median |",
        "| --- | --- | --- |",
        *(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | **{med[name]:.1f}** |" for name, values in runs.items()),
        "",
        f"Ours costs {med['ours'] / med['redis-py']:.2f}× redis-py's pipeline for the same commands.",
        "",
        *_reading(row),
    ]


def _reading(row: dict) -> list[str]:
    runs = row.get("read_us_per_chunk")
    if not runs:
        return []
    med = {name: sorted(values)[len(values) // 2] for name, values in runs.items()}
    ours, default = med["aiohttp (ours)"], med["httpx2 (the SDK's default)"]
    return [
        "### Reading one streamed chunk",
        "",
        f"`generation.provider.stream_chat` (the SDK's request, our SSE split and JSON) reading {row['streams']} replies of",
        f"{row['chunks']} chunks at once, 2.5 ms apart (so that, as in use, most arrive on their own), from a simulator",
        "`bench/micro.py` starts, through the SDK's aiohttp client (the",
        "product's, and the relay's) and through httpx2's default transport (the product's before); the two ways",
        "interleaved in one process, after a warm-up round; CPU of that process per chunk.",
        "",
        "| HTTP client | µs CPU per chunk, each run | median |",
        "| --- | --- | --- |",
        *(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | **{med[name]:.1f}** |" for name, values in runs.items()),
        "",
        f"aiohttp costs {ours / default:.2f}× httpx2's default transport per chunk read.",
        "",
    ]


def profile_section(results: dict) -> list[str]:
    profiles = results.get("profiles") or {}
    out = ["## Profiles", ""]
    if not results.get("profiler"):
        return out + ["No profile: py-spy is not installed (`.venv/bin/pip install py-spy`, then `make bench` again).", ""]
    out += [
        "Taken by `make bench` itself with py-spy (`py-spy record --nonblocking --rate 50 --threads`), while the",
        "figure named below ran; raw stacks in `bench/results/<date>/*.pyspy.txt`. Percentages are of the samples",
        "named in each heading; a function's share includes what it calls.",
        "",
    ]
    web = profiles.get("web")
    if web:
        out += [
            f"### Web server: {web['what']}",
            "",
            "Threads that run the consumers' ORM calls (`database_sync_to_async`), sampled with `--idle`; a",
            "thread is busy while it runs a call (including time it waits on PostgreSQL or Redis inside it):",
            "",
        ]
        for label, st in web.get("db_threads", {}).items():
            if not st["samples"]:
                continue
            busy = 100 * st["busy_samples"] / st["samples"]
            out += [f"{label}: {st['thread_count']} thread(s), busy **{busy:.0f} %** of their samples.", ""]
            if st["busy_samples"]:
                out += ["| share of the busy samples | function |", "| --- | --- |"]
                out += [f"| {100 * c / st['busy_samples']:.0f} % | `{f}` |" for f, c in st["functions"]]
                out.append("")
        loop = web.get("event_loop")
        if loop and loop["samples"]:
            out += [
                f"The event loop (`MainThread`, uvloop) was busy {100 * loop['busy_samples'] / loop['samples']:.0f} % of its samples.",
                "",
            ]
    for key, title in (("worker", "Worker"), ("web_stream", "Web server while streaming"), ("relay", "The baseline relay")):
        if profiles.get(key):
            out += gil_profile(title, profiles[key])
    return out


def gil_profile(title: str, p: dict) -> list[str]:
    pr = p["process"]
    if not pr["samples"]:
        return [f"### {title}: {p['what']}", "", "No samples.", ""]
    out = [
        f"### {title}: {p['what']}",
        "",
        f"Samples holding the GIL (`--gil`): {pr['samples']} in 10 s at 50 Hz, i.e. the process's Python ran "
        f"{100 * pr['samples'] / 500:.0f} % of the time. By thread:",
        "",
        "| share | thread |",
        "| --- | --- |",
    ]
    out += [f"| {100 * c / pr['samples']:.0f} % | `{t}` |" for t, c in pr["threads"]]
    out += ["", "| share | function |", "| --- | --- |"]
    out += [f"| {100 * c / pr['samples']:.0f} % | `{f}` |" for f, c in pr["functions"]]
    out.append("")
    return out


def obstacles_section(results: dict) -> list[str]:
    """What stands in the way of the CPU-per-frame target: each cost, its share, and the design that removes it."""
    from bench.profile import COSTS

    profiles = results.get("profiles") or {}
    rows = {r["chats"]: r for r in results.get("stream", [])}
    out = [
        "## What stands in the way",
        "",
        "The CPU a streamed frame costs us, by where it goes, from the profiles above (GIL samples of the worker",
        "and the web server while the same step streamed) and the sampled CPU of PostgreSQL and Redis. Each",
        "sample counts once, for the cost of the innermost frame that matches one (the WebSocket write inside the",
        "consumer's dispatch is the write's). A cost's \"per frame\" is its share of the process's samples × that",
        "process's CPU per frame in the step (both worker processes' CPU, though the profile is of the first);",
        "time outside the GIL (the kernel's socket work) is spread in proportion. Against it: the relay's whole",
        "CPU per frame, in the table of figure 2.",
        "",
    ]
    if not profiles.get("worker") and not profiles.get("web_stream"):
        return out + ["No streaming profile in this run (py-spy missing, or `--no-profile`).", ""]
    out += ["| process | cost | share of its samples | per frame (ms) | design that removes it |", "| --- | --- | --- | --- | --- |"]
    relay_work = 0.0  # what the relay does too, done by us in two processes
    for key, process in (("worker", "worker"), ("web_stream", "web")):
        p = profiles.get(key)
        row = rows.get(p["chats"]) if p else None
        if not p or row is None or not p["costs"]["samples"]:
            continue
        frames = step_stats(row)["frames"]
        cpu = ours_cpu(row["window"])[process]
        for label, _, design in COSTS[key]:
            share = p["costs"].get(label, 0) / p["costs"]["samples"]
            out.append(f"| {process} | {label} | {100 * share:.0f} % | {ms3(share * per_frame(cpu, frames))} | {design} |")
            if design.startswith("Paid by the relay too"):
                relay_work += share * per_frame(cpu, frames)
        other = p["costs"].get("other", 0) / p["costs"]["samples"]
        out.append(f"| {process} | everything else | {100 * other:.0f} % | {ms3(other * per_frame(cpu, frames))} | – |")
    row = rows.get((profiles.get("worker") or profiles.get("web_stream"))["chats"])
    if row is not None:
        frames, cpu = step_stats(row)["frames"], ours_cpu(row["window"])
        out += [
            f"| PostgreSQL | the checkpoints (each live reply's text rewritten every second), the stop watcher's poll, "
            f"the claim and the finish | – | {ms3(per_frame(cpu['PostgreSQL'], frames))} | Checkpoint by time and size "
            "(every few seconds or N KiB, the last one with the finish), stops from Redis instead of a poll |",
            f"| Redis | the PUBLISH of each frame to its chat's channel, the resume buffer's APPEND and EXPIRE, the user "
            f"events' channel layer | – | {ms3(per_frame(cpu['Redis'], frames))} | Per delta; fewer, larger deltas lower it |",
        ]
        relay = per_frame(row["relay"]["window"]["cpu_s"].get("relay", 0.0), step_stats(row["relay"])["frames"])
        if relay:
            ours_only = per_frame(cpu["total"], frames) - relay_work
            left = max(RELAY_RATIO - relay_work / relay, 0)
            out += [
                "",
                f'The rows "paid by the relay too" add up to {ms3(relay_work)} ms per frame, {relay_work / relay:.1f}× the relay\'s whole '
                f"{ms3(relay)} ms in the same step. The relay reads the provider and writes the socket in one process and one",
                "event loop; the design has a Celery worker read the provider and the web process write the socket, so each",
                "frame passes two event loops, with Redis between them. That split alone uses most of the 1.5× the target",
                f"allows, and leaves {left:.1f}× for what only we do (coalescing and publishing, the resume buffer,",
                f"each socket's writer, checkpoints, the claim and the finish), which costs {ms3(ours_only)} ms per frame,",
                f"{ours_only / relay:.1f}× the relay. Only reading the provider in the web process would remove the split, and the design",
                "requires the Celery workers to call the model.",
            ]
    out.append("")
    return out


# Figures measured while choosing a design, quoted by the code's comments; kept here rather than in comments.
WHY = [
    "## Why the code is as it is",
    "",
    "Figures measured on this machine when each choice was made (earlier runs of `make bench` and py-spy",
    "profiles), which the code's comments point to:",
    "",
    "- **SSE read as plain JSON** (generation/provider.py): 13 µs a chunk against 90–110 µs for the SDK's typed",
    "  chunk objects; that was most of a worker's CPU per token.",
    "- **uvloop for the live loop** (live/loop.py): asyncio's pure-Python transports re-registered epoll for every",
    "  chunk, a quarter of the loop's time while hundreds of provider streams were read.",
    "- **0.5 ms GIL switch interval** in the worker and the web process (config/celery.py, config/asgi.py): at the",
    "  default 5 ms the thread that takes tasks from the broker waited behind generating threads; the queue backed",
    "  up to 240 tasks at 15 tasks/s while 200 replies streamed.",
    "- **Prepared statements** (config/settings.py, `DB_PREPARED_STATEMENTS`): planning was most of PostgreSQL's",
    "  time per reservation.",
    "- **Live publishing speaks Redis itself** (live/wire.py): 19–27 µs of CPU per delta (its APPEND, EXPIRE and",
    "  PUBLISH packed by hand, a batch in one write, replies parsed by hiredis) against 97–110 µs through redis-py's",
    "  asyncio pipeline, which wraps every reply in a timeout context (three runs each, 200 replies × 100 batches,",
    "  `live.publish._send_batch` timed in-process against the local Redis).",
    "- **A chat's frames skip the channel layer** (live/hub.py): the channel layer's receive and the consumer's dispatch",
    "  were 53 % of the web process's samples while 200 replies streamed.",
    "- **SSE split by hand from the response's bytes** (generation/provider.py), and **the body after `[DONE]` read",
    "  to its end**: a response closed unread closes its connection, so every reply opened a new one to the provider",
    "  (a TLS handshake each against OpenAI); with the drain, 200 sequential one-token replies open one connection.",
    "- **The SDK's aiohttp transport** (generation/provider.py): HTTP parsed in C, 21–27 µs of CPU per streamed chunk",
    "  against 51–56 µs through httpx2's default (figure 4); the relay uses it too, so the comparison stays of what",
    "  happens after. With it, and the tick below, our CPU per frame at 200 streams went from 0.314 to 0.200 ms.",
    "- **One coalescing tick per process** (generation/reply.py, `Ticks`): with a 50 ms window per reply, each",
    "  delta left in its own write to Redis, a quarter of a worker's CPU at 200 streams; a tick sends every reply's",
    "  held text in one write.",
    "- **The pool hands out the connection returned last** (config/postgresql): handed out oldest first, at light load",
    "  every send landed on a connection that had not yet prepared its statements, and planning doubled the send's",
    "  database time (a send committed in 11 ms instead of 7 on `make run`).",
    "- **A send is two statements** (chat/actions.py, `_lock_user` and `_send_store`): the lock reads the model, the",
    "  rules and the budget; one statement stores the chat, the messages (rows as JSON, so its text is the same",
    "  for any number of them and psycopg caches its parsing) and the reservation. Before, eight round trips and the",
    "  ORM building each insert: a send took 4.3 ms of CPU in-process, 2.1 ms after.",
    "",
]


def render(results: dict) -> str:
    m, v = results["machine"], results["versions"]
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py); do not edit by hand. Every figure below comes from one run on",
        f"one machine, on **{results['started'][:19].replace('T', ' ')} UTC** (the run took {results['duration_s']:.0f} s).",
        "",
        "## Machine and versions",
        "",
        f"- {m['cores']} cores ({m['cpu']}), {m['memory']}, Linux {m['kernel']}; load average at start {m['load average at start']}.",
        "- Every process on this machine: PostgreSQL, Redis, the simulator, the web server, the Celery worker and",
        "  the load generator. **The machine is shared**: other people's test runs may have used CPU meanwhile; the",
        '  "machine busy" columns count all processes, ours included.',
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "## How it ran",
        "",
        f'- Command: `make bench`, i.e. `{results["command"]}` after `eval "$(.venv/bin/python -m config.devservices env)"`.',
        "- A fresh database `bench_chat` (dropped, created, `manage.py migrate`), its own Celery queue and",
        "  `CHANNEL_PREFIX`; `DEBUG=false`, `MAX_LIVE_REPLIES=100000`; streaming users are on a plan without limits.",
        "- Users are made with `accounts.services.user_create`; their sessions with Django's `SessionStore`, as",
        "  `login()` would (bench/setup_db.py), which also enables the Responses API model of figure 2b.",
        "- The baseline: `bench/relay.py`, a bare pass-through relay (provider SSE → WebSocket frames, nothing",
        "  stored) under uvicorn, through which figure 2 streams the same N prompts right after each step.",
        "- While figure 1 runs, two triggers in `bench_chat` note each reply's commit and claim times (the TTFT",
        "  hops); they are dropped before figure 2 measures CPU.",
    ]
    for name, command in results.get("commands", {}).items():
        env = {
            "web": f"DB_POOL_MAX={results['settings']['web_db_pool']}",
            "web (daphne)": f"DB_POOL_MAX={results['settings']['web_db_pool']}",
            "worker": f"DB_POOL_MAX={results['settings']['worker_db_pool']}",
        }.get(name, "")
        if name == "worker":
            command = command.replace(" ; ", f"` and `{env} ")
        out.append(f"- {name}: `{env + ' ' if env else ''}{command}`")
    out += [
        "- Load generator: `bench/client.py` (asyncio on uvloop, the `websockets` client with permessage-deflate",
        "  as browsers negotiate it, and `openai.AsyncOpenAI`), in separate processes; its CPU and event-loop",
        "  lag are reported with each figure to show it was not the bottleneck.",
        "- Raw samples: `bench/results/<date>/results.json` (not committed).",
        "",
    ]

    summary = summary_rows(results)
    if summary:
        out += ["## Summary", "", "| what | target | measured | verdict |", "| --- | --- | --- | --- |", *summary, ""]
    out += ttft_section(results)
    out += stream_section(results)
    out += responses_section(results)
    out += quota_section(results)
    out += micro_section(results)
    if "profiles" in results:
        out += profile_section(results)
        out += obstacles_section(results)
    if results.get("notes"):
        out += ["## Notes", "", *results["notes"], ""]
    out += WHY
    return "\n".join(out) + "\n"


def relay_p99(row: dict) -> str:
    if not row.get("relay"):
        return ""
    return f"; the bare relay: {ms(step_stats(row['relay'])['held_p99'])} ms while all {row['chats']} stream"


def summary_rows(results: dict) -> list[str]:
    rows = []
    for row in results.get("ttft", []):
        if row["server"] == "uvicorn" and row["chats"] == max(r["chats"] for r in results["ttft"]):
            a, b = row["result"]["direct"], row["result"]["product"]
            p50 = percentile(b, 50) - percentile(a, 50)
            p99 = percentile(b, 99) - percentile(a, 99)
            rows.append(
                f"| TTFT added over a direct SDK call, {row['chats']} active chats (uvicorn) | p50 ≤ 10 ms, "
                f"p99 ≤ 50 ms | p50 {ms(p50)} ms, p99 {ms(p99)} ms | {yes(p50 <= TTFT_P50 and p99 <= TTFT_P99)} |"
            )
    for row in results.get("ttft", []):
        if row["server"] == "uvicorn" and row["chats"] == 1:
            a, b = row["result"]["direct"], row["result"]["product"]
            p50 = percentile(b, 50) - percentile(a, 50)
            rows.append(f"| TTFT added over a direct SDK call, 1 chat (uvicorn) | ≤ 5 ms | p50 {ms(p50)} ms | {yes(p50 <= TTFT_AT_1)} |")
    relayed = [row for row in results.get("stream", []) if row.get("relay")]
    if relayed:
        cells, ok = [], True
        for row in relayed:
            ours, relay = step_stats(row), step_stats(row["relay"])
            cpu = ours_cpu(row["window"])["total"]
            relay_cpu = row["relay"]["window"]["cpu_s"].get("relay", 0.0)
            a, b = per_frame(cpu, ours["frames"]), per_frame(relay_cpu, relay["frames"])
            ok = ok and cpu_verdict(a, b)
            cells.append(
                f"{row['chats']} streams: ours {ms3(a)} ms per frame ({cpu / row['chats']:.2f} s per reply), relay {ms3(b)} ms "
                f"({relay_cpu / row['chats']:.2f} s per reply), **{a / b:.1f}×** per frame, {cpu / relay_cpu:.1f}× per reply"
            )
        rows.append(
            "| CPU per streamed frame, ours (worker + web + PostgreSQL + Redis) against the bare relay "
            f"| ≤ 0.3 ms and ≤ {RELAY_RATIO:g}× the relay | {'; '.join(cells)} | {yes(ok)} |"
        )
    if results.get("responses"):
        st = step_stats(results["responses"])
        cpu = ours_cpu(results["responses"]["window"])["total"]
        ok = st["complete"] == st["n"] and st["lost"] == st["duplicated"] == st["failed"] == 0
        rows.append(
            f"| the Responses API path ({results['responses'].get('model')}), {st['n']} streams | all complete, no lost or "
            f"duplicated text | {st['complete']} complete, {st['lost']} lost, {st['duplicated']} duplicated, {st['failed']} failed; "
            f"{ms3(per_frame(cpu, st['frames']))} ms CPU per frame | {yes(ok)} |"
        )
    if results.get("stream"):
        row = results["stream"][-1]
        replies = [r for res in row["results"] for r in res["replies"]]
        n = row["chats"]
        complete = sum(1 for r in replies if r["outcome"] in ("complete", "complete at done"))
        bad = sum(1 for r in replies if r["outcome"] in ("lost text", "duplicated text", "different text"))
        added = [x for r in replies for x in r["added_gaps"]]
        peak = peak_concurrency(replies)
        held, _ = added_while_all_stream(replies)
        p99 = percentile(held, 99)
        rows.append(
            f"| concurrent streaming generations | ≥ 500, no lost or duplicated text, p99 added inter-chunk "
            f"≤ 100 ms | {n} started, peak {peak} simultaneous, {complete} complete, {bad} with lost/duplicated "
            f"text, p99 added {ms(p99)} ms while all {n} stream ({ms(percentile(added, 99))} ms over the whole "
            f"step, ramp included){relay_p99(row)} | {yes(peak >= STREAMS and complete == n and bad == 0 and p99 <= GAP_P99)} |"
        )
        w = row["window"]
        per_gen = (w["peak_rss"].get("worker", 0) - row["idle_worker_rss"]) / n / 2**20
        rows.append(
            f"| worker memory per concurrent generation | ≤ 0.5 MB | {per_gen:.2f} MiB at {n} | {yes(per_gen <= MB_PER_GENERATION)} |"
        )
    q = results.get("quota")
    if q:
        for what, runs in (
            ("quota reservations across distinct users (`quota_reserve`, the reservation itself)", q.get("reserve_only", [])),
            ("the whole send across distinct users (`message_send`: lock, inserts, reservation, enqueue, announce)", q["distinct"]),
        ):
            if runs:
                rates = [r["per_second"] for r in runs]
                med = statistics.median(rates)
                rows.append(
                    f"| {what} | ≥ 1,000/s | {med:,.0f}/s (runs {min(rates):,.0f}–{max(rates):,.0f}) | {yes(med >= RESERVATIONS)} |"
                )
        over = [r["over_admitted"] for r in q["race"]]
        rows.append(
            f"| over-admission, 100 racing sends for the last slot | exactly 0, every run | "
            f"{', '.join(map(str, over))} over {len(over)} runs | {yes(max(over) == 0)} |"
        )
    return rows

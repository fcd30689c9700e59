"""Figure 4: the cost of publishing one streamed delta, and of reading one streamed chunk, ours against
the way the code did it before.

    DATABASE_URL=... REDIS_URL=... python bench/micro.py --out micro.json

Publishing: `live.publish._send_batch` (each batch one hand-packed write, live/wire.py) and,
beside it, the same commands (APPEND, EXPIRE, PUBLISH per delta) through
redis-py's asyncio pipeline: 200 replies' deltas per
batch, as when 200 replies stream, interleaved rounds on one event loop in one
process, CPU time of this process only (Redis's own is the same for both).

Reading: `generation.provider.stream_chat` (the SDK's request, our SSE split and JSON) over 50 replies
of 400 chunks at once, 2.5 ms apart (so that, as in use, most chunks arrive on their own), from a
simulator this script starts, through the SDK's aiohttp client (ours) and through httpx2's default
transport, interleaved rounds, CPU time of this process per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPLIES, BATCHES, ROUNDS = 200, 100, 3
STREAMS, CHUNKS = 50, 400


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import uvloop

    from bench.stack import Stack, start_simulator

    results = uvloop.run(measure())
    stack = Stack(Path(args.out).parent / "logs")
    try:
        _, url = start_simulator(stack, dict(os.environ), think=0, rate=400)
        results["read_us_per_chunk"] = uvloop.run(measure_reading(f"{url}/v1"))
    finally:
        stack.stop_all()
    results["streams"], results["chunks"] = STREAMS, CHUNKS
    print(json.dumps(results), file=open(args.out, "w"))


async def measure_reading(url: str) -> dict[str, list[float]]:
    import httpx2
    import openai

    from generation import provider

    spec = provider.ModelSpec(provider_model="o1-mini", max_output_tokens=4000)
    limits, timeout = httpx2.Limits(max_connections=2000, max_keepalive_connections=200), httpx2.Timeout(60, connect=5)
    ways = {
        "aiohttp (ours)": lambda: openai.DefaultAioHttpClient(limits=limits, timeout=timeout),
        "httpx2 (the SDK's default)": lambda: httpx2.AsyncClient(limits=limits, timeout=timeout),
    }

    async def chunks_read(i: int) -> int:
        prompt = f"micro {i} [sim:think=0] [sim:tokens={CHUNKS}] [sim:rate=400]"
        return sum([1 async for _ in provider.stream_chat(spec, [{"role": "user", "content": prompt}])])

    runs: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(ROUNDS + 1):
        for name, http_client in ways.items():
            provider._client = openai.AsyncOpenAI(api_key="micro", base_url=url, max_retries=0, http_client=http_client())
            await asyncio.gather(*(chunks_read(i) for i in range(5)))  # connections open, code warm
            t = time.process_time()
            read = sum(await asyncio.gather(*(chunks_read(i) for i in range(STREAMS))))
            if round_:  # the first round warms up
                runs[name].append((time.process_time() - t) / read * 1e6)
            await provider._client.close()
    provider._client = None
    return runs


async def measure() -> dict:
    from live import publish
    from live.publish import Delta

    offsets = [0] * REPLIES
    base = 2_000_000_000  # ids no real reply has

    def batch() -> list[Delta]:
        out = []
        for r in range(REPLIES):
            out.append(
                Delta(conversation_id=base + r, message_id=base + r, offset=offsets[r], text=" token", reasoning_offset=0, reasoning="")
            )
            offsets[r] += 6
        return out

    async def redis_py(deltas: list[Delta]) -> None:
        async with publish.redis_client().pipeline(transaction=False) as pipe:
            for d in publish.merged(deltas):
                text_key, _ = publish._buffer_keys(d.message_id)
                pipe.append(text_key, d.text.encode())
                pipe.expire(text_key, int(publish.BUFFER_TTL))
                pipe.publish(publish.conversation_channel(d.conversation_id), d.frame())
            await pipe.execute()

    ways = {"ours": publish._send_batch, "redis-py": redis_py}
    for send in ways.values():
        await send(batch())  # connections opened, code warm
    runs: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(ROUNDS):
        for name, send in ways.items():
            t = time.process_time()
            for _ in range(BATCHES):
                await send(batch())
            runs[name].append((time.process_time() - t) / (REPLIES * BATCHES) * 1e6)
    async with publish.redis_client().pipeline(transaction=False) as pipe:
        for r in range(REPLIES):
            pipe.delete(*publish._buffer_keys(base + r))
        await pipe.execute()
    return {"replies_per_batch": REPLIES, "batches": BATCHES, "us_per_delta": runs}


if __name__ == "__main__":
    main()

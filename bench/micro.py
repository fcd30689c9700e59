"""Figure 4: the cost of publishing one streamed delta, ours against redis-py doing the same.

    DATABASE_URL=... REDIS_URL=... python bench/micro.py --out micro.json

`live.publish._send_batch` (each batch one hand-packed write, live/wire.py) and,
beside it, the same commands (APPEND, EXPIRE, PUBLISH per delta) through
redis-py's asyncio pipeline, as the code did before: 200 replies' deltas per
batch, as when 200 replies stream, interleaved rounds on one event loop in one
process, CPU time of this process only (Redis's own is the same for both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPLIES, BATCHES, ROUNDS = 200, 100, 3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import uvloop

    print(json.dumps(uvloop.run(measure())), file=open(args.out, "w"))


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

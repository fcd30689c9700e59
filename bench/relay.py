"""The baseline `make bench` compares the product's streaming with: a bare pass-through relay.

    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 python -m uvicorn bench.relay:app --ws-per-message-deflate false

One WebSocket per browser tab, at any path. Each text frame the client sends is a prompt; the relay
asks the provider for a streaming Chat Completion through the `openai` SDK and forwards each chunk's
text as it comes, as `{"type": "delta", "text": …}`, then `{"type": "done"}`. No database, no Redis,
no Django, no coalescing: the lightest path a chat server can offer. It reads the SSE events as plain
JSON and through the same HTTP transport (the SDK's aiohttp client) as the product does
(generation/provider.py), so that the comparison is of what happens after.
"""

import asyncio
import json
import os

import httpx2
import openai

MODEL = os.environ.get("RELAY_MODEL", "o1-mini")
client = openai.AsyncOpenAI(
    api_key="relay",
    base_url=os.environ["OPENAI_BASE_URL"],
    max_retries=0,
    http_client=openai.DefaultAioHttpClient(limits=httpx2.Limits(max_connections=2000, max_keepalive_connections=200), timeout=120),
)


async def relay(prompt: str, send) -> None:
    request = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True}
    async with client.chat.completions.with_streaming_response.create(**request) as response:
        async for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices")
            text = choices and (choices[0].get("delta") or {}).get("content")
            if text:
                await send({"type": "websocket.send", "text": json.dumps({"type": "delta", "text": text}, ensure_ascii=False)})
    await send({"type": "websocket.send", "text": '{"type":"done"}'})


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})  # lifespan.startup / lifespan.shutdown
            if kind == "lifespan.shutdown":
                return
    if scope["type"] != "websocket":
        return
    tasks: set[asyncio.Task] = set()
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive" and message.get("text"):
            task = asyncio.create_task(relay(message["text"], send))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif message["type"] == "websocket.disconnect":
            for task in tasks:
                task.cancel()
            return

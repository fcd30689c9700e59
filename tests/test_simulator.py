"""Tests for the OpenAI-compatible simulator (chat/simulator), via the real openai SDK.

No Django here: the simulator runs as a subprocess (``python -m simulator``)
on a free port, so this also exercises the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--port", str(port), "--think", "0", "--rate", "2000"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_sim/health", timeout=1) as r:
                    assert json.load(r) == {"ok": True}
                    break
            except (OSError, urllib.error.URLError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    log.seek(0)
                    pytest.fail(f"simulator did not start: {log.read().decode(errors='replace')}")
                time.sleep(0.05)
        try:
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Deliberate drops and client timeouts must not spam the server log with tracebacks.
        log.seek(0)
        assert "Traceback" not in log.read().decode(errors="replace")


@pytest.fixture
def client(base_url: str) -> OpenAI:
    return OpenAI(api_key="sim", base_url=f"{base_url}/v1", max_retries=0)


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _raw(base_url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"{base_url}{path}", data=body, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_models(client: OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"o1-preview", "o1-mini", "gpt-4o"} <= ids


def test_streaming_with_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="o1-mini",
        messages=_user("hello there [sim:think=0]"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-sim-")
    assert all(c.model == "o1-mini" and c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("You said: hello there. ")
    assert "[sim:" not in text
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert 40 <= len(content_chunks) <= 80  # one token per chunk
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens_details.reasoning_tokens > 0
    assert usage_chunk.usage.completion_tokens == len(content_chunks) + 64
    assert usage_chunk.usage.prompt_tokens_details.cached_tokens == 0
    assert usage_chunk.usage.total_tokens == usage_chunk.usage.prompt_tokens + usage_chunk.usage.completion_tokens


def test_streaming_without_usage_has_no_usage_chunk(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=_user("hi"), stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_non_streaming(client: OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o", messages=_user("what is 2+2? [sim:rate=5000]"))
    assert r.object == "chat.completion"
    assert r.choices[0].message.content.startswith("You said: what is 2+2?. ")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens_details.reasoning_tokens == 0  # not a reasoning model
    assert r.usage.prompt_tokens > 4


def test_think_delay(client: OpenAI) -> None:
    start = time.monotonic()
    stream = client.chat.completions.create(model="o1-mini", messages=_user("[sim:think=0.3] x"), stream=True)
    first_visible = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first_visible.choices[0].delta.content == "You "
    assert time.monotonic() - start >= 0.3
    stream.close()


def test_reasoning_deltas(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="o1-mini", messages=_user("why? [sim:reasoning]"), stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks)
    assert reasoning.startswith("Considering the question")
    first_content = next(i for i, c in enumerate(chunks) if c.choices[0].delta.content)
    last_reasoning = max(i for i, c in enumerate(chunks) if (c.choices[0].delta.model_extra or {}).get("reasoning_content"))
    assert last_reasoning < first_content


def test_reply_and_reply_b64_exact(client: OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o", messages=_user("[sim:reply=Just this.]"))
    assert r.choices[0].message.content == "Just this."
    payload = '<img src=x onerror="alert(1)">]] **bold** `code`'
    b64 = base64.b64encode(payload.encode()).decode()
    stream = client.chat.completions.create(model="gpt-4o", messages=_user(f"[sim:reply_b64={b64}]"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == payload


def test_markdown_and_token_count(client: OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o", messages=_user("show me markdown please"))
    text = r.choices[0].message.content
    assert "\n## " in text and "\n- " in text and "```python\n" in text
    r = client.chat.completions.create(model="gpt-4o", messages=_user("long [sim:tokens=300]"))
    assert r.usage.completion_tokens == 300


def test_max_completion_tokens_truncates(client: OpenAI) -> None:
    r = client.chat.completions.create(model="o1-mini", messages=_user("hi"), max_completion_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "You said: hi. "
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=_user("hi"), max_tokens=3, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"


def test_rate_limit_429(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="o1-mini", messages=_user("[sim:fault=429] [sim:retry_after=2]"))
    assert exc.value.response.headers["retry-after"] == "2"
    assert exc.value.code == "rate_limit_exceeded"


def test_quota(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="o1-mini", messages=_user("[sim:fault=quota]"), stream=True)
    assert exc.value.code == "insufficient_quota"
    assert exc.value.type == "insufficient_quota"


def test_500(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=_user("[sim:fault=500]"))


def test_fault_times_then_success(client: OpenAI) -> None:
    messages = _user(f"retry me {uuid.uuid4()} [sim:fault=500] [sim:fault_times=2]")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o", messages=messages)
    r = client.chat.completions.create(model="gpt-4o", messages=messages)
    assert r.choices[0].message.content.startswith("You said: retry me")


def test_drop_mid_stream(client: OpenAI) -> None:
    got = []
    stream = client.chat.completions.create(model="gpt-4o", messages=_user("hello world [sim:fault=drop]"), stream=True)
    # The SDK wraps httpx2.RemoteProtocolError (incomplete chunked read) in APIConnectionError.
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "You said: hello world"  # the default 5 tokens


def test_drop_non_streaming(client: OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=_user("[sim:fault=drop]"))


def test_stall_times_out(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=_user("hello [sim:fault=stall] [sim:after=2]"),
        stream=True,
        timeout=1.0,
    )
    got = []
    with pytest.raises(openai.APITimeoutError):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "You said"


def test_o1_validation(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="o1-mini", messages=_user("hi"), max_tokens=10)
    assert exc.value.code == "unsupported_parameter" and exc.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="o1-preview", messages=_user("hi"), temperature=0.2)
    assert exc.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="o1-preview", messages=[{"role": "system", "content": "be nice"}, *_user("hi")])
    # Non-reasoning models accept all three.
    r = client.chat.completions.create(
        model="gpt-4o", temperature=0.2, max_tokens=50, messages=[{"role": "system", "content": "be nice"}, *_user("hi")]
    )
    assert r.choices[0].message.content


def test_bad_requests(base_url: str) -> None:
    assert _raw(base_url, "POST", "/v1/chat/completions", b"not json")[0] == 400
    status, body = _raw(base_url, "POST", "/v1/chat/completions", b'{"model": "gpt-4o"}')
    assert status == 400 and body["error"]["code"] == "missing_required_parameter"
    status, body = _raw(base_url, "POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o", "messages": _user("[sim:nope]")}).encode())
    assert status == 400 and "nope" in body["error"]["message"]


def test_request_log(client: OpenAI, base_url: str) -> None:
    marker = f"log me {uuid.uuid4()}"
    client.chat.completions.create(model="gpt-4o", messages=_user(marker))
    status, log = _raw(base_url, "GET", "/_sim/requests")
    assert status == 200
    entry = next(e for e in log if e.get("messages") == _user(marker))
    assert entry["model"] == "gpt-4o"
    assert entry["_sim"]["authorization"] is True
    assert _raw(base_url, "DELETE", "/_sim/requests")[0] == 200
    assert _raw(base_url, "GET", "/_sim/requests")[1] == []


def test_many_concurrent_streams(base_url: str) -> None:
    """100 streams of 50 tokens at 50 tok/s (about a second each) are served at once, not one after another."""
    open_now, most_open = 0, 0

    async def main() -> list[str]:
        async with AsyncOpenAI(api_key="sim", base_url=f"{base_url}/v1", max_retries=0) as aclient:

            async def one(i: int) -> str:
                nonlocal open_now, most_open
                stream = await aclient.chat.completions.create(
                    model="gpt-4o", messages=_user(f"n{i} [sim:rate=50] [sim:tokens=50]"), stream=True
                )
                parts = []
                async for c in stream:
                    if not parts:
                        open_now += 1
                        most_open = max(most_open, open_now)
                    parts.append(c.choices[0].delta.content or "")
                open_now -= 1
                return "".join(parts)

            return await asyncio.gather(*(one(i) for i in range(100)))

    texts = asyncio.run(main())
    assert all(t.startswith(f"You said: n{i}. ") for i, t in enumerate(texts))
    assert most_open >= 20, f"only {most_open} streams were open at once"

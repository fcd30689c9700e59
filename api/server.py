"""The ASGI app that serves /v1/ (config/asgi.py routes it), beside Django's.

Why not Django views: the middleware stack has synchronous members (WhiteNoise),
so an async view would hold Django's one sync thread while it waits on an answer
for seconds or minutes, and a client's disconnect would never reach it. Here a
request reads its body, runs its handler as a task, and a disconnect cancels that
task (chat_completions then stops the reply, as the Stop button does). There is
no session, cookie or CSRF on this path: a bearer key is the only credential.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from .protocol import ApiError, sse

log = logging.getLogger(__name__)
# Messages of up to MAX_MESSAGE_CHARS, written as \uXXXX escapes, and the turns before them.
MAX_BODY_BYTES = 8 * 1024 * 1024


class Disconnected(Exception):
    pass


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class Response:
    """A JSON answer, or a stream of server-sent events."""

    def __init__(self, send: Callable[[dict], Awaitable[None]]):
        self._send = send
        self.started = False

    async def _start(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.started = True
        pairs = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
        pairs += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        await self._send({"type": "http.response.start", "status": status, "headers": pairs})

    async def json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        await self._start(status, "application/json", {**(headers or {}), "content-length": str(len(body))})
        await self._send({"type": "http.response.body", "body": body})

    async def stream_start(self, headers: dict[str, str]) -> None:
        await self._start(200, "text/event-stream; charset=utf-8", {**headers, "x-accel-buffering": "no"})

    async def write(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})

    async def error(self, exc: ApiError) -> None:
        if not self.started:
            await self.json(exc.status, exc.as_json(), exc.headers)
        else:  # mid-stream: the SDK raises an error it reads in the stream
            await self.write(sse(exc.as_json()))
            await self.end()


Handler = Callable[[Request, Response], Awaitable[None]]


def _routes() -> dict[str, dict[str, Handler]]:
    from . import v1

    return {"/v1/models": {"GET": v1.models_list}, "/v1/chat/completions": {"POST": v1.chat_completions}}


async def _read_body(receive: Callable[[], Awaitable[dict]]) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"The body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB.")
        if not message.get("more_body"):
            return bytes(body)


async def _disconnected(receive: Callable[[], Awaitable[dict]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _serve(scope: dict, receive: Callable[[], Awaitable[dict]], response: Response) -> None:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    domain, _ = split_domain_port(headers.get("host", ""))
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        raise ApiError(400, "This host name is not served here.")
    methods = _routes().get(scope["path"].rstrip("/"))
    if methods is None:
        raise ApiError(404, f"No API at {scope['path'][:100]}.", code="unknown_url")
    handler = methods.get(scope["method"])
    if handler is None:
        raise ApiError(405, f"{scope['path']} takes {', '.join(methods)}.", headers={"allow": ", ".join(methods)})
    body = await _read_body(receive)
    request = Request(scope["method"], scope["path"], headers, body)
    work = asyncio.ensure_future(handler(request, response))
    gone = asyncio.ensure_future(_disconnected(receive))
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if not work.done():
        work.cancel()  # the client went away: the handler stops what it started
    await work


async def application(scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
    response = Response(send)
    try:
        await _serve(scope, receive, response)
    except (Disconnected, asyncio.CancelledError):
        pass
    except ApiError as exc:
        await response.error(exc)
    except Exception:
        log.exception("API request failed")
        await response.error(ApiError(500, "Something went wrong on our side.", type="server_error"))

"""Redis spoken directly, for the two hot paths of live traffic: commands packed by hand, replies
parsed by hiredis, on a plain asyncio connection.

redis-py costs about 30 µs of CPU per pipelined command (its packing, a timeout
context per reply, its hooks); a streamed delta takes three commands, so that
was most of what a worker spent per delta beyond reading the provider
(docs/benchmarks.md, "Why the code is as it is"). Here a command costs a
formatted bytes string, and a whole batch one write and one read.
"""

import asyncio
import logging
import ssl
from collections import deque

import hiredis
from django.conf import settings
from redis.asyncio.connection import parse_url

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5.0


def command(*parts: bytes) -> bytes:
    """One command in RESP, Redis's wire format."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


async def connect(protocol: asyncio.Protocol) -> None:
    """Connect `protocol` to REDIS_URL (TCP, TLS or a Unix socket); it gets the greeting commands it needs
    (AUTH, SELECT) from `greeting()`."""
    options = parse_url(settings.REDIS_URL)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(TIMEOUT_SECONDS):
        if "path" in options:
            await loop.create_unix_connection(lambda: protocol, options["path"])
        else:
            context = ssl.create_default_context() if settings.REDIS_URL.startswith("rediss:") else None
            await loop.create_connection(lambda: protocol, options.get("host", "localhost"), options.get("port", 6379), ssl=context)


def greeting(*, select: bool) -> list[bytes]:
    """AUTH when REDIS_URL has a password; SELECT its database number when `select` (pub/sub ignores it)."""
    options = parse_url(settings.REDIS_URL)
    out = []
    if options.get("password"):
        credentials = [options.get("username") or "", options["password"]]
        out.append(command(b"AUTH", *(part.encode() for part in credentials if part)))
    if select and int(options.get("db") or 0):
        out.append(command(b"SELECT", str(options["db"]).encode()))
    return out


class Connection(asyncio.Protocol):
    """A Redis connection whose replies, parsed by hiredis, go one by one to `received`."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.WriteTransport | None = None

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.received(reply)

    def received(self, reply: object) -> None:
        raise NotImplementedError

    def send(self, *parts: bytes) -> None:
        assert self.transport is not None
        self.transport.write(command(*parts))


class Pipeline(Connection):
    """One connection that sends a batch of commands in one write and waits for all their replies.

    Used by one event loop only (the process's live loop). A command Redis refuses is logged, not
    raised: live updates are best effort, and a batch's other commands still count.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waiting: deque[list] = deque()  # [replies still to come, future], in the order sent

    @classmethod
    async def open(cls) -> "Pipeline":
        pipeline = cls()
        await connect(pipeline)
        for greeting_command in greeting(select=True):
            await pipeline.execute(greeting_command, 1)
        return pipeline

    def received(self, reply: object) -> None:
        if isinstance(reply, hiredis.ReplyError):
            log.warning("Redis refused a live update: %s", reply)
        entry = self.waiting[0]
        entry[0] -= 1
        if entry[0] == 0:
            self.waiting.popleft()
            if not entry[1].done():
                entry[1].set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        for _, future in self.waiting:
            if not future.done():
                future.set_exception(ConnectionError("Redis closed the connection"))
        self.waiting.clear()

    async def execute(self, payload: bytes, replies: int) -> None:
        """Send `payload` (`replies` commands) and wait until Redis has answered them all."""
        assert self.transport is not None
        future = asyncio.get_running_loop().create_future()
        self.waiting.append([replies, future])
        self.transport.write(payload)
        try:
            await asyncio.wait_for(future, TIMEOUT_SECONDS)
        except TimeoutError:
            self.transport.abort()  # replies to what follows would be mistaken for these
            raise

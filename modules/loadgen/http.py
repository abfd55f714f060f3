"""A small asyncio HTTP/1.1 client with keep-alive connection pools, built for request rate.

Why not aiohttp or httpx: the load controller sends small JSON requests to a handful of
endpoints and needs the client to cost as little CPU per request as possible, so that it measures
the server rather than itself. A bare `asyncio.Protocol` with one request in flight per connection
(no pipelining), a pool of idle connections per (host, port) and a minimal response parser
(Content-Length, chunked, or read-to-close bodies) does that with the standard library only;
`bench/load.py` measures it against wrk and locust.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit


class RequestError(Exception):
    """A request got no HTTP response; `kind` classifies it for the report."""

    kind = "connection_error"


class Unreachable(RequestError):
    kind = "unreachable"


class Timeout(RequestError):
    kind = "timeout"


class ConnectionLost(RequestError):
    kind = "connection_error"


class Response:
    """An HTTP answer (a plain slotted class: built once per request, so kept cheap)."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:60]!r})"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    prefix: str  # path prefix of the base URL, without trailing slash

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not an http:// URL: {url!r}")
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"))


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head_end = -1
        self._status = 0
        self._length = -1  # -1: unknown yet; -2: chunked; -3: until close
        self._keep_alive = True
        self._got_bytes = False
        self.deadline = 0.0  # loop time after which the pending request times out

    @property
    def waiter(self) -> asyncio.Future[Response] | None:
        return self._waiter

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        self._buf += data
        if self._waiter is not None:
            self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._length == -3 and self._head_end >= 0:
            self._finish(bytes(self._buf[self._head_end :]))
        else:
            waiter.set_exception(ConnectionLost(f"connection closed: {exc or 'by peer'}"))

    # request/response
    def send(self, data: bytes, waiter: asyncio.Future[Response]) -> None:
        self._buf.clear()
        self._head_end = -1
        self._length = -1
        self._status = 0
        self._keep_alive = True
        self._got_bytes = False
        self._waiter = waiter
        assert self.transport is not None
        self.transport.write(data)

    @property
    def answered_nothing(self) -> bool:
        return not self._got_bytes

    def _parse(self) -> None:
        buf = self._buf
        if self._head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head_end = end + 4
            # Searching the lower-cased head for the three headers that matter is several times
            # cheaper than splitting it into lines (this runs once per request).
            head = bytes(buf[:end]).lower() + b"\r\n"
            space = head.find(b" ")
            try:
                self._status = int(head[space + 1 : space + 4])
            except ValueError:
                self._fail(ConnectionLost(f"malformed status line {head[:80]!r}"))
                return
            length = -3
            value = _header(head, b"\r\ncontent-length:")
            if value is not None:
                length = int(value)
            elif b"chunked" in (_header(head, b"\r\ntransfer-encoding:") or b""):
                length = -2
            if _header(head, b"\r\nconnection:") == b"close":
                self._keep_alive = False
            if self._status in (204, 304) or 100 <= self._status < 200:
                length = 0
            self._length = length
            if length == -3:
                self._keep_alive = False
        start = self._head_end
        if self._length >= 0:
            if len(buf) - start >= self._length:
                self._finish(bytes(buf[start : start + self._length]))
        elif self._length == -2:
            body = self._dechunk(start)
            if body is not None:
                self._finish(body)

    def _dechunk(self, pos: int) -> bytes | None:
        buf = self._buf
        out = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                # Trailers (none expected) end with an empty line.
                end = buf.find(b"\r\n", pos)
                return bytes(out) if end >= 0 else None
            if len(buf) < pos + size + 2:
                return None
            out += buf[pos : pos + size]
            pos += size + 2

    def _finish(self, body: bytes) -> None:
        waiter, self._waiter = self._waiter, None
        if not self._keep_alive and self.transport is not None:
            self.transport.close()
            self.closed = True
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, body))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if self.transport is not None:
            self.transport.close()
        self.closed = True
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def abort(self) -> None:
        self._waiter = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class HttpClient:
    """Keep-alive pools per endpoint; callers bound concurrency themselves (the pool follows)."""

    def __init__(self, connect_timeout: float = 3.0, request_timeout: float = 10.0):
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._busy: set[_Connection] = set()  # awaiting an answer
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.create_task(self._sweep())

    async def request(self, endpoint: Endpoint, method: str, path: str, body: bytes = b"") -> Response:
        head = (
            f"{method} {endpoint.prefix}{path} HTTP/1.1\r\nHost: {endpoint.host}:{endpoint.port}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        data = head + body if body else head
        if self._sweeper is None:
            self._start()
        key = (endpoint.host, endpoint.port)
        idle = self._idle.setdefault(key, deque())
        # A pooled connection the server has closed since answers nothing: retry such a
        # request once on a fresh connection (nothing reached the server's application).
        for attempt in (0, 1):
            conn = None
            while idle:
                candidate = idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            reused = conn is not None
            if conn is None:
                conn = await self._connect(endpoint)
            waiter: asyncio.Future[Response] = self._loop.create_future()
            conn.send(data, waiter)
            conn.deadline = self._loop.time() + self.request_timeout
            self._busy.add(conn)
            try:
                response = await waiter
            except ConnectionLost:
                if reused and attempt == 0 and conn.answered_nothing:
                    continue
                raise
            except (Timeout, asyncio.CancelledError):
                conn.abort()  # a late answer would be read as the next request's
                self._all.discard(conn)
                raise
            finally:
                self._busy.discard(conn)
            if not conn.closed:
                idle.append(conn)
            else:
                self._all.discard(conn)
            return response
        raise AssertionError("unreachable")

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, endpoint.host, endpoint.port),
                self.connect_timeout,
            )
        except TimeoutError:
            raise Timeout(
                f"connect to {endpoint.host}:{endpoint.port} timed out after {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise Unreachable(f"{endpoint.host}:{endpoint.port}: {exc.strerror or exc}") from None
        self._all.add(conn)
        return conn

    async def _sweep(self) -> None:
        """Fail requests past their deadline; one timer for all requests instead of one each."""
        tick = min(0.05, self.request_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = self._loop.time()
            for conn in [c for c in self._busy if c.deadline <= now]:
                waiter = conn.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_exception(Timeout(f"no response within {self.request_timeout:g} s"))

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._all):
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)


def _header(head: bytes, name: bytes) -> bytes | None:
    """The stripped value of header `name` (b"\\r\\n" + lower-case name + b":") in a lower-cased head."""
    at = head.find(name)
    if at < 0:
        return None
    start = at + len(name)
    return head[start : head.find(b"\r\n", start)].strip()

"""The HTTP client parses what servers send: Content-Length, chunked, close-delimited; reuses and
re-opens connections."""

from __future__ import annotations

import asyncio

import pytest

from modules.loadgen.http import Endpoint, HttpClient, Timeout, Unreachable


async def _serve(
    responses: list[bytes], close_after_each: bool = False
) -> tuple[asyncio.AbstractServer, list]:
    connections: list = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while responses:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(responses.pop(0))
            await writer.drain()
            if close_after_each:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections


def test_body_framings_and_keepalive() -> None:
    async def main() -> None:
        replies = [
            b'HTTP/1.1 201 \r\nContent-Length: 11\r\n\r\n{"port":{}}',
            b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n',
            b"HTTP/1.1 500 \r\nConnection: close\r\n\r\nboom",
        ]
        server, conns = await _serve(replies)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(1, 2)
        ep = Endpoint.parse(f"http://127.0.0.1:{port}")
        r1 = await client.request(ep, "POST", "/x", b"{}")
        r2 = await client.request(ep, "GET", "/y")
        r3 = await client.request(ep, "GET", "/z")
        assert (r1.status, r1.body) == (201, b'{"port":{}}')
        assert (r2.status, r2.body) == (200, b'{"a": 1}')
        assert (r3.status, r3.body) == (500, b"boom")
        assert len(conns) == 1  # one keep-alive connection served all three
        await client.close()
        server.close()

    asyncio.run(main())


def test_reopens_connection_closed_by_server() -> None:
    async def main() -> None:
        replies = [b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\n{}"] * 2
        server, conns = await _serve(list(replies), close_after_each=True)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(1, 2)
        ep = Endpoint.parse(f"http://127.0.0.1:{port}")
        assert (await client.request(ep, "GET", "/")).status == 200
        await asyncio.sleep(0.05)  # the server has closed the idle connection by now
        assert (await client.request(ep, "GET", "/")).status == 200
        assert len(conns) == 2
        await client.close()
        server.close()

    asyncio.run(main())


def test_unreachable_and_timeout() -> None:
    async def main() -> None:
        client = HttpClient(1, 0.2)
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        with pytest.raises(Unreachable):
            await client.request(Endpoint.parse(f"http://127.0.0.1:{port}"), "GET", "/")

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(1)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        ep = Endpoint.parse(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        with pytest.raises(Timeout):
            await client.request(ep, "GET", "/")
        await client.close()
        server.close()

    asyncio.run(main())

"""The comparison clients: websocket-client, websockets, aiohttp, urllib3, httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import httpx
import urllib3
import websocket
from _common import Meter, Params, Result, rate, rss_bytes, timed, warmup_count
from websockets.asyncio.client import connect

_RECEIVE = 10.0


# -- websocket-client (blocking, a thread per connection for fan-out) ----------


def wsclient_echo(params: Params) -> Result:
    ws = websocket.create_connection(params.ws_url, timeout=_RECEIVE)
    payload = b"x" * params.size

    def one() -> None:
        ws.send_binary(payload)
        if len(ws.recv()) != params.size:
            raise RuntimeError("short echo")

    try:
        return rate(params, one)
    finally:
        ws.close()


def wsclient_fanout(params: Params) -> Result:
    payload = b"x" * params.size

    def client(_: int) -> int:
        try:
            ws = websocket.create_connection(params.ws_url, timeout=_RECEIVE)
            try:
                for _ in range(params.messages):
                    ws.send_binary(payload)
                    ws.recv()
            finally:
                ws.close()
        except Exception:
            return 1
        return 0

    def run() -> int:
        with ThreadPoolExecutor(max_workers=params.conns) as pool:
            return sum(pool.map(client, range(params.conns)))

    return timed(params, run)


# -- asyncio clients: one coroutine per connection -----------------------------


async def _gather(count: int, one: Callable[[int], Awaitable[int]]) -> int:
    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    return sum(1 if isinstance(r, BaseException) else r for r in results)


def _async_rate(
    params: Params,
    setup: Callable[
        [], Awaitable[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]]
    ],
) -> Result:
    """``rate`` for an asyncio client: ``setup`` returns ``(one, close)``."""

    async def main() -> Result:
        one, close = await setup()
        try:
            for _ in range(warmup_count(params)):
                await one()
            meter = Meter(params)
            while meter.more():
                await one()
            return meter.result()
        finally:
            await close()

    return asyncio.run(main())


def websockets_echo(params: Params) -> Result:
    payload = b"x" * params.size

    async def setup() -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
        ws = await connect(params.ws_url, compression=None, max_size=None)

        async def one() -> None:
            await ws.send(payload)
            if len(await ws.recv()) != params.size:
                raise RuntimeError("short echo")

        return one, ws.close

    return _async_rate(params, setup)


def aiohttp_echo(params: Params) -> Result:
    payload = b"x" * params.size

    async def setup() -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(params.ws_url, max_msg_size=0, compress=0)

        async def one() -> None:
            await ws.send_bytes(payload)
            message = await ws.receive()
            if len(message.data) != params.size:
                raise RuntimeError("short echo")

        async def close() -> None:
            await ws.close()
            await session.close()

        return one, close

    return _async_rate(params, setup)


def _websockets_conn(
    params: Params, messages: int, ready: Callable[[], Awaitable[None]]
) -> Callable[[int], Awaitable[int]]:
    payload = b"x" * params.size

    async def one(_: int) -> int:
        # As long as the measurement may take: opening 10,000 at once ("many") takes
        # longer than _RECEIVE, and one handshake given up would hold the others
        # waiting for all to be open until the measurement's timeout.
        async with connect(params.ws_url, compression=None, open_timeout=params.timeout) as ws:
            await ready()
            for _ in range(messages):
                await ws.send(payload)
                await asyncio.wait_for(ws.recv(), _RECEIVE)
        return 0

    return one


def _aiohttp_conn(
    params: Params, messages: int, ready: Callable[[], Awaitable[None]]
) -> Callable[[int], Awaitable[int]]:
    payload = b"x" * params.size

    async def one(_: int) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(params.ws_url, compress=0) as ws,
        ):
            await ready()
            for _ in range(messages):
                await ws.send_bytes(payload)
                await asyncio.wait_for(ws.receive(), _RECEIVE)
        return 0

    return one


async def _no_wait() -> None:
    return None


def _async_fanout(params: Params, conn: Callable[..., Callable[[int], Awaitable[int]]]) -> Result:
    return timed(
        params, lambda: asyncio.run(_gather(params.conns, conn(params, params.messages, _no_wait)))
    )


def _async_many(params: Params, conn: Callable[..., Callable[[int], Awaitable[int]]]) -> Result:
    """All ``conns`` connect, wait for each other (all open at once), then echo once."""

    async def main() -> Result:
        rss0 = rss_bytes()
        all_open = asyncio.Event()
        opened = [0]
        marks: dict[str, float] = {}

        async def ready() -> None:
            opened[0] += 1
            if opened[0] == params.conns:
                marks["open"] = time.perf_counter()
                marks["rss"] = rss_bytes()
                all_open.set()
            await asyncio.wait_for(all_open.wait(), params.timeout)

        start = time.perf_counter()
        failures = await _gather(params.conns, conn(params, 1, ready))
        end = time.perf_counter()
        return {
            "open_s": marks.get("open", end) - start,
            "echo_s": end - marks.get("open", end),
            "failures": failures,
            "conns": params.conns,
            "rss_per_conn": (marks.get("rss", rss_bytes()) - rss0) / params.conns,
            "threads": 0,
        }

    return asyncio.run(main())


def websockets_fanout(params: Params) -> Result:
    return _async_fanout(params, _websockets_conn)


def aiohttp_fanout(params: Params) -> Result:
    return _async_fanout(params, _aiohttp_conn)


def websockets_many(params: Params) -> Result:
    return _async_many(params, _websockets_conn)


def aiohttp_many(params: Params) -> Result:
    return _async_many(params, _aiohttp_conn)


# -- HTTP/1.1 keep-alive: one connection, one GET at a time --------------------


def urllib3_http(params: Params) -> Result:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", params.http_port, maxsize=1, timeout=_RECEIVE)

    def one() -> None:
        if pool.request("GET", "/").data != b"hello":
            raise RuntimeError("unexpected body")

    try:
        return rate(params, one)
    finally:
        pool.close()


def httpx_http(params: Params) -> Result:
    client = httpx.Client(timeout=_RECEIVE)

    def one() -> None:
        if client.get(params.http_url).content != b"hello":
            raise RuntimeError("unexpected body")

    try:
        return rate(params, one)
    finally:
        client.close()

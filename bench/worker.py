"""One measurement in a fresh process: ``worker.py PARAMS_JSON`` prints a JSON result.

A fresh process per measurement keeps the clients from sharing threads,
event loops or memory, so RSS and thread counts belong to one client.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import client_others as others
import client_tether
from _common import Params, Result

SCENARIOS: dict[tuple[str, str], Callable[[Params], Result]] = {
    ("echo", "tether"): client_tether.echo,
    ("echo", "tether-protocol"): client_tether.protocol_echo,
    ("echo", "tether-actor"): client_tether.actor_echo,
    ("echo", "tether-owner"): client_tether.actor_echo,
    ("echo", "tether-pooled"): client_tether.actor_echo,
    ("echo", "tether-asyncio"): client_tether.async_echo,
    ("fanout", "tether-asyncio"): client_tether.async_fanout,
    ("echo", "websocket-client"): others.wsclient_echo,
    ("echo", "websockets"): others.websockets_echo,
    ("echo", "aiohttp"): others.aiohttp_echo,
    ("fanout", "tether"): client_tether.fanout,
    ("fanout", "tether-actor"): client_tether.actor_fanout,
    ("fanout", "tether-owner"): client_tether.actor_fanout,
    ("fanout", "tether-pooled"): client_tether.actor_fanout,
    ("fanout", "websocket-client"): others.wsclient_fanout,
    ("fanout", "websockets"): others.websockets_fanout,
    ("fanout", "aiohttp"): others.aiohttp_fanout,
    ("fanout-threads", "tether"): client_tether.fanout_threads,
    ("fanout-threads", "websocket-client"): others.wsclient_fanout,
    ("fanout-threads", "websockets"): others.websockets_fanout,
    ("many", "tether"): client_tether.many,
    ("many", "websockets"): others.websockets_many,
    ("many", "aiohttp"): others.aiohttp_many,
    ("http", "tether"): client_tether.http,
    ("http", "urllib3"): others.urllib3_http,
    ("http", "httpx"): others.httpx_http,
}


def main() -> None:
    params = Params(**json.loads(sys.argv[1]))
    client = params.client
    if client == "tether-threads":
        # tether with its former I/O model: a reader thread per connection.
        from legacy_transport import ThreadedTransport  # noqa: PLC0415

        import tether.actors._connection as connection  # noqa: PLC0415

        connection.TcpTransport = ThreadedTransport  # type: ignore[attr-defined]
        client = "tether"
    result = SCENARIOS[params.scenario, client](params)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

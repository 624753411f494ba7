"""A chaos soak, run by hand: ``python bench/chaos.py --conns 200 --seconds 180 --server aiohttp``.

N tether connections (half Websocket echo clients with ``reupgrade``, half
HTTP clients; owners on Inbox threads and pykka actors) talk to a
third-party server on 127.0.0.1 through fault-injecting proxies
(``tests/faults.py``) while faults are injected on a seeded schedule (the
seed is printed; ``--seed`` replays the schedule, though not the threads'
timing). Every message and event is accounted for, and at the end no
thread or file descriptor may be left: see ``tests/chaos.py`` for what is
checked. Prints a summary; exits 1 on any violation. The defaults finish in
about a minute. Needs the test extra (``pip install -e '.[test]'``), from a
checkout (it imports ``tests``). See docs/performance.md (how to run it)
and bench/NOTES.md, "Chaos soak" (the figures).
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.chaos import SOAK_SERVERS, SoakConfig, run  # noqa: E402


def _raise_fd_limit() -> None:
    """Up to the hard limit: each connection costs three descriptors here (and the proxy's)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=defaults.conns, help="connections")
    parser.add_argument(
        "--seconds", type=float, default=defaults.seconds, help="seconds of faults"
    )
    parser.add_argument("--server", choices=sorted(SOAK_SERVERS), default=defaults.server)
    parser.add_argument("--seed", type=int, default=None, help="the fault schedule's seed")
    parser.add_argument(
        "--group", type=int, default=defaults.group, help="connections per fault proxy"
    )
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="messages/s per connection, at most"
    )
    parser.add_argument(
        "--fault-interval",
        type=float,
        default=defaults.fault_interval,
        help="mean seconds between faults on one proxy",
    )
    parser.add_argument(
        "--churn",
        type=float,
        default=defaults.churn,
        help="mean seconds between a client's close and reopen (0: never)",
    )
    parser.add_argument(
        "--owner-churn",
        type=float,
        default=defaults.owner_churn,
        help="mean seconds between an Inbox or AsyncInbox owner's deaths (closing it; 0: never)",
    )
    parser.add_argument(
        "--actor-share",
        type=float,
        default=defaults.actor_share,
        help="part of the connections owned by pykka actors",
    )
    parser.add_argument(
        "--via",
        choices=["tinyproxy", "microsocks"],
        default=None,
        help="every connection through this real proxy (Debian's package), behind the faults",
    )
    parser.add_argument(
        "--async-share",
        type=float,
        default=defaults.async_share,
        help="part of the connections owned by coroutines (AsyncInbox)",
    )
    args = parser.parse_args()
    _raise_fd_limit()
    config = SoakConfig(
        conns=args.conns,
        seconds=args.seconds,
        server=args.server,
        seed=args.seed,
        group=args.group,
        rate=args.rate,
        fault_interval=args.fault_interval,
        churn=args.churn,
        owner_churn=args.owner_churn,
        actor_share=args.actor_share,
        async_share=args.async_share,
        via=args.via,
        progress=lambda line: print(line, flush=True),
    )
    print(
        f"chaos soak: {config.conns} connections, {config.seconds:.0f} s of faults, "
        f"server {config.server}",
        flush=True,
    )
    report = run(config)
    print(report.format(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

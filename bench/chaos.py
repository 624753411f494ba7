"""A chaos soak, run by hand: ``python bench/chaos.py --conns 200 --seconds 180 --server aiohttp``.

N tether connections (half Websocket echo clients with ``reupgrade``, half
HTTP clients; owners on Inbox threads, event loops and pykka actors) talk
to a third-party server on 127.0.0.1 (over HTTP/1.1, or HTTP/2 with h2c or
TLS; ``--via``: through a real HTTP or SOCKS5 proxy) through fault-injecting proxies
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


# The numbers a soak takes: SoakConfig's field of each flag, its type, what it is.
_NUMBERS: tuple[tuple[str, type, str], ...] = (
    ("--conns", int, "connections"),
    ("--seconds", float, "seconds of faults"),
    ("--group", int, "connections per fault proxy"),
    ("--rate", float, "messages/s per connection, at most"),
    ("--fault-interval", float, "mean seconds between faults on one proxy"),
    ("--churn", float, "mean seconds between a client's close and reopen (0: never)"),
    (
        "--owner-churn",
        float,
        "mean seconds between an Inbox or AsyncInbox owner's deaths (0: never)",
    ),
    ("--actor-share", float, "part of the connections owned by pykka actors"),
    ("--async-share", float, "part of the connections owned by coroutines (AsyncInbox)"),
)


def _field(flag: str) -> str:
    """SoakConfig's field of ``--a-flag`` (and argparse's name for it): ``a_flag``."""
    return flag[2:].replace("-", "_")


def main() -> int:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, kind, what in _NUMBERS:
        parser.add_argument(flag, type=kind, default=getattr(defaults, _field(flag)), help=what)
    parser.add_argument("--server", choices=sorted(SOAK_SERVERS), default=defaults.server)
    parser.add_argument("--seed", type=int, default=None, help="the fault schedule's seed")
    parser.add_argument(
        "--via",
        choices=["tinyproxy", "microsocks"],
        default=None,
        help="every connection through this real proxy (Debian's package), behind the faults",
    )
    args = parser.parse_args()
    _raise_fd_limit()
    numbers = {_field(flag): getattr(args, _field(flag)) for flag, _, _ in _NUMBERS}
    config = SoakConfig(
        **numbers,
        server=args.server,
        seed=args.seed,
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

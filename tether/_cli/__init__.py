"""The ``tether`` command: ``get``, ``ws``, ``demo`` and ``serve``.

``tether get URL`` is a small curl, ``tether ws URL`` a small websocat,
both built on tether's public API only; ``tether demo`` walks Gun's
Websocket guide against the embedded server and ``tether serve`` runs that
server. Failures print one line on stderr, ``tether: <what went wrong>``,
and exit with a code of :class:`~tether._cli._exit.ExitCode` (curl's codes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import tether
from tether._cli._demo import demo
from tether._cli._exit import CliFailure, ExitCode, exit_codes_help
from tether._cli._get import add_parser as add_get_parser
from tether._cli._get import get
from tether._cli._serve import serve
from tether._cli._ws import add_parser as add_ws_parser
from tether._cli._ws import ws

__all__ = ["demo", "main", "serve"]

# 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C.
_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    epilog = exit_codes_help()
    parser = argparse.ArgumentParser(
        prog="tether",
        description="Gun for Python: an actor-based HTTP/Websocket client.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_get_parser(sub, epilog)
    add_ws_parser(sub, epilog)
    sub.add_parser("demo", help="walk Gun's Websocket guide against the embedded server")
    serve_p = sub.add_parser("serve", help="run the embedded HTTP/Websocket server")
    serve_p.add_argument("--host", default="127.0.0.1")
    serve_p.add_argument("--port", type=int, default=8080)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tether`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    commands: dict[str, Callable[[], int]] = {
        "get": lambda: get(args),
        "ws": lambda: ws(args),
        "demo": demo,
        "serve": lambda: serve(args.host, args.port),
    }
    try:
        return commands[args.command]()
    except CliFailure as failure:
        sys.stderr.write(f"tether: {failure.message}\n")
        return failure.code
    except tether.TetherError as exc:  # a case the commands did not foresee: still one line
        sys.stderr.write(f"tether: {exc}\n")
        return ExitCode.FAILURE
    except KeyboardInterrupt:
        return _INTERRUPTED
    except BrokenPipeError:
        return ExitCode.WRITE_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

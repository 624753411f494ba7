"""Function calls and context switches per operation, tether next to the others.

Where ``run.py`` says how fast, this says how much work: each client's
own benchmark loop (the same ``one()`` that ``run.py`` times, from
``client_tether`` and ``client_others``) runs ``--count`` times after its
warm-up, in a fresh process against the Node echo server, and reports per
operation:

- Python calls and C calls, every thread counted (``sys.setprofile`` and
  ``threading.setprofile`` are installed before the client starts its
  first thread), by thread;
- voluntary context switches (``getrusage``) and CPU µs (all, and of it
  in the kernel), in a second run without the profiler (which would slow
  it).

Counts move with timing, not with speed: when an echo arrives before
the caller waits, the I/O thread reads it and the caller skips borrowing
the socket, so compare trees on the same machine in the same state.

``--instructions`` counts instead the user-space instructions each
operation takes (valgrind's cachegrind, every thread, the kernel not
included): the count for ``--count`` operations more, minus that of the
warm-up alone. Where rates and CPU times move by 2x between runs on a
shared virtual machine, this moves by about 1%, so it tells two trees
apart by a few per cent (tether imported from ``PYTHONPATH`` if set).
tether's Inbox does not busy-poll there (``busy_poll=0``): a spin's
instructions are waiting, not work. It needs ``valgrind`` (Debian's
package) and takes about a minute per client.

``--opcodes`` counts the byte code instructions each operation runs, by
function (``sys.settrace`` with ``f_trace_opcodes``; ``--functions N``
lists the N functions that run most), which is where a tree's extra
instructions are; no spinning either.

Run it with ``bench/.venv``'s Python (``python bench/run.py`` creates it)::

    bench/.venv/bin/python bench/calls.py                 # 32 B echo and HTTP GET
    bench/.venv/bin/python bench/calls.py --only echo --count 5000
    PYTHONPATH=../other bench/.venv/bin/python bench/calls.py --instructions
    bench/.venv/bin/python bench/calls.py --opcodes --only echo --functions 30
    /tmp/v313/bin/python bench/calls.py --instructions --only echo --clients tether
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
CLIENTS = {
    "echo": ["tether", "tether-actor", "tether-owner", "tether-pooled", "websocket-client"],
    "http": ["tether", "urllib3", "httpx"],
    "asyncio": ["tether-asyncio", "websockets"],  # the 32 B echo from a coroutine
}
WORKER_SCENARIO = {"asyncio": "echo"}  # where the worker's name differs


class _Counting:
    """What :func:`_measure` counts while ``counting`` (the loop after the warm-up)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.counting = False
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.functions: collections.Counter[str] = collections.Counter()
        self.outcome: dict[str, Any] = {}

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if self.counting and event in ("call", "c_call"):
            self.calls[threading.current_thread().name, event] += 1
            if event == "call":
                self.functions[_name(frame.f_code)] += 1
            else:
                self.functions[f"{getattr(arg, '__qualname__', arg)} (C)"] += 1

    def trace(self, frame: Any, event: str, arg: Any) -> Any:
        # --opcodes: every byte code instruction a function runs, by function.
        if not self.counting:
            return None
        frame.f_trace_opcodes = True
        name = _name(frame.f_code)
        functions = self.functions

        def opcode(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode":
                functions[name] += 1
            return opcode

        return opcode

    def counted(self, params: Any, one: Callable[[], None]) -> dict[str, Any]:
        """The clients' ``rate``: the warm-up, then ``count`` operations counted.

        A batched client's one() does ``one.ops`` operations (``_common.rate``).
        """
        import _common  # noqa: PLC0415 - bench modules, importable from BENCH only

        ops = getattr(one, "ops", 1)
        calls_of_one = -(-self.count // ops)
        for _ in range(_common.warmup_count(params)):
            one()
        self._begin()
        for _ in range(calls_of_one):
            one()
        self._end(calls_of_one * ops)
        return {}

    def counted_async(
        self,
        params: Any,
        setup: Callable[[], Awaitable[tuple[Callable[[], Awaitable[None]], Any]]],
    ) -> dict[str, Any]:
        """The asyncio clients' ``_async_rate``: as :meth:`counted`, from a coroutine."""
        import _common  # noqa: PLC0415 - bench modules, importable from BENCH only

        async def run() -> None:
            one, close = await setup()
            for _ in range(_common.warmup_count(params)):
                await one()
            self._begin()
            for _ in range(self.count):
                await one()
            self._end(self.count)
            await close()

        asyncio.run(run())
        return {}

    def _begin(self) -> None:
        self._usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self._main = threading.current_thread().name
        self.counting = True

    def _end(self, done: int) -> None:
        """``done`` operations were counted since _begin()."""
        self.counting = False
        if not self.count:  # the warm-up alone (--instructions)
            return
        usage0, main = self._usage0, self._main
        usage = resource.getrusage(resource.RUSAGE_SELF)
        outcome = self.outcome
        outcome["ops"] = done
        outcome["vcsw"] = (usage.ru_nvcsw - usage0.ru_nvcsw) / done
        system = usage.ru_stime - usage0.ru_stime
        outcome["cpu_us"] = (usage.ru_utime - usage0.ru_utime + system) / done * 1e6
        outcome["sys_us"] = system / done * 1e6
        outcome["calls"] = {
            f"{'caller' if name == main else name} {event}": n / done
            for (name, event), n in sorted(self.calls.items())
        }
        outcome["functions"] = {name: n / done for name, n in self.functions.most_common()}
        outcome["opcodes"] = sum(self.functions.values()) / done

    def install(self, mode: str) -> None:
        if mode == "calls":
            threading.setprofile(self.profile)
            sys.setprofile(self.profile)
        if mode == "opcodes":
            threading.settrace(self.trace)
            sys.settrace(self.trace)

    @staticmethod
    def uninstall() -> None:
        sys.setprofile(None)
        threading.setprofile(None)
        sys.settrace(None)
        threading.settrace(None)


def _measure(mode: str, scenario: str, client: str, ports: tuple[int, int], count: int) -> Any:
    """In this (fresh) process: run the client's loop ``count`` times, counted."""
    import _common  # noqa: PLC0415 - bench modules, importable from BENCH only
    import client_others  # noqa: PLC0415
    import client_tether  # noqa: PLC0415
    import worker  # noqa: PLC0415

    counting = _Counting(count)
    for module in (client_tether, client_others):
        module.rate = counting.counted  # type: ignore[attr-defined]
    client_others._async_rate = counting.counted_async  # type: ignore[assignment]
    if mode in ("instructions", "opcodes"):
        import tether  # noqa: PLC0415

        # Inbox() in the clients: no spinning while waiting (see the docstring).
        defaults = tether.Inbox.__init__.__kwdefaults__
        assert defaults is not None
        defaults["busy_poll"] = 0.0
        tether.OwnerActor.busy_poll = 0.0
    counting.install(mode)
    scenario = WORKER_SCENARIO.get(scenario, scenario)
    params = _common.Params(scenario=scenario, client=client, ws_port=ports[0], http_port=ports[1])
    worker.SCENARIOS[scenario, client](params)
    counting.uninstall()
    return counting.outcome


def _name(code: Any) -> str:
    return f"{code.co_qualname} ({'/'.join(Path(code.co_filename).parts[-2:])})"


def _child(
    mode: str,
    scenario: str,
    client: str,
    ports: tuple[int, int],
    count: int,
    *,
    under: tuple[str, ...] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run :func:`_measure` in a fresh process, ``under`` a wrapper command (valgrind) if any."""
    args = json.dumps([mode, scenario, client, ports, count])
    return subprocess.run(
        [*under, sys.executable, __file__, "--child", args],
        cwd=BENCH,
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run(mode: str, scenario: str, client: str, ports: tuple[int, int], count: int) -> Any:
    return json.loads(_child(mode, scenario, client, ports, count).stdout.splitlines()[-1])


_VALGRIND = ("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null")
_INSTRUCTIONS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _instructions(scenario: str, client: str, ports: tuple[int, int], count: int) -> float:
    """User-space instructions per operation: the run of ``count`` more, minus the warm-up's."""
    totals = []
    for n in (0, count):
        out = _child("instructions", scenario, client, ports, n, under=_VALGRIND, timeout=1200)
        found = _INSTRUCTIONS.search(out.stderr)
        if found is None:
            sys.exit(f"calls.py: no instruction count from valgrind:\n{out.stderr[-2000:]}")
        totals.append(int(found.group(1).replace(",", "")))
    done = json.loads(out.stdout.splitlines()[-1])["ops"]  # count, rounded up to whole batches
    return (totals[1] - totals[0]) / done


def _report(scenario: str, client: str, counted: dict[str, Any], run: dict[str, float]) -> str:
    calls: dict[str, float] = counted["calls"]
    python = sum(n for key, n in calls.items() if key.endswith(" call"))
    native = sum(n for key, n in calls.items() if key.endswith(" c_call"))
    threads = ", ".join(f"{key} {n:.1f}" for key, n in calls.items() if n >= 0.05)
    return (
        f"| {scenario} | {client} | {python + native:.0f} | {python:.0f} | "
        f"{run['vcsw']:.2f} | {run['cpu_us']:.0f} ({run['sys_us']:.0f}) | {threads} |"
    )


def _each_client(
    only: list[str] | None, clients: list[str] | None = None
) -> Iterator[tuple[tuple[int, int], str, str]]:
    """``(ports, scenario, client)`` for each chosen client of the chosen scenarios, one server."""
    from run import echo_server, ensure_node_modules  # noqa: PLC0415 - needs BENCH on sys.path

    with echo_server(ensure_node_modules()) as ports:
        for scenario in only or list(CLIENTS):
            for client in CLIENTS[scenario]:
                if clients is None or client in clients:
                    yield ports, scenario, client


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(CLIENTS), help="these scenarios only")
    parser.add_argument("--count", type=int, default=2000, help="operations counted per client")
    parser.add_argument(
        "--clients", nargs="*", help="these clients only (e.g. tether: one Python's baseline)"
    )
    parser.add_argument(
        "--functions", type=int, default=0, metavar="N", help="also list the N most called"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count user-space instructions per operation instead (valgrind)",
    )
    parser.add_argument(
        "--opcodes",
        action="store_true",
        help="count byte code instructions per operation instead, by function (sys.settrace)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def _print_instructions(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("calls.py --instructions needs valgrind (apt install valgrind)")
    print("| scenario | client | instructions/op |")
    print("| --- | --- | --- |")
    for ports, scenario, client in _each_client(args.only, args.clients):
        per_op = _instructions(scenario, client, ports, args.count)
        print(f"| {scenario} | {client} | {per_op:,.0f} |", flush=True)


def _print_opcodes(args: argparse.Namespace) -> None:
    print("| scenario | client | byte code instructions/op |")
    print("| --- | --- | --- |")
    for ports, scenario, client in _each_client(args.only, args.clients):
        counted = _run("opcodes", scenario, client, ports, args.count)
        print(f"| {scenario} | {client} | {counted['opcodes']:,.0f} |", flush=True)
        for name, n in list(counted["functions"].items())[: args.functions]:
            print(f"  {n:7.1f}  {name}")


def _print_calls(args: argparse.Namespace) -> None:
    print(
        "| scenario | client | calls/op | Python calls/op | vcsw/op | CPU µs/op (system) "
        "| by thread |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    listed: list[tuple[str, str, dict[str, float]]] = []
    for ports, scenario, client in _each_client(args.only, args.clients):
        counted = _run("calls", scenario, client, ports, args.count)
        run = _run("switches", scenario, client, ports, args.count)
        print(_report(scenario, client, counted, run), flush=True)
        listed.append((scenario, client, counted["functions"]))
    for scenario, client, functions in listed if args.functions else []:
        print(f"\n{scenario}, {client}: calls per operation, most called first")
        for name, n in list(functions.items())[: args.functions]:
            print(f"  {n:6.2f}  {name}")


def main() -> None:
    args = _parser().parse_args()
    if args.child:
        mode, scenario, client, ports, count = json.loads(args.child)
        print(json.dumps(_measure(mode, scenario, client, tuple(ports), count)), flush=True)
        return
    sys.path.insert(0, str(BENCH))
    if args.instructions:
        _print_instructions(args)
    elif args.opcodes:
        _print_opcodes(args)
    else:
        _print_calls(args)


if __name__ == "__main__":
    main()

"""The hot-path ledger's measurements: each micro-optimisation against its plain form.

``docs/design.md`` ("Hot-path ledger") lists every place where tether
writes a hot path in a less obvious form to save work per message. This
script measures each entry as a micro-benchmark of the two forms, on the
Python that runs it, and prints one table row per entry:

- by default: ns per operation, the minimum of ``--repeat`` runs of
  ``--number`` operations each (``timeit``), for the optimised and the
  plain form. On a shared 2-vCPU machine single timings move by 2x; the
  minimum of many is the steadiest figure timing gives, and still not
  steady enough for the small entries.
- ``--instructions``: user-space instructions per operation under
  valgrind's callgrind (one process for all entries: a ``getppid()`` call
  between segments makes callgrind dump its counters there), each form's
  loop run twice and the second run counted, minus an empty loop's. This
  moves by well under 1% between runs, where timings move by 2x.

Gain per round trip is the gain per operation times how many times the
site runs per 32 B Websocket round trip (``per_rt``, counted with
``bench/calls.py --functions``) or per keep-alive GET (``per_get``); with
``--round-trip N`` (a round trip's instructions from ``bench/calls.py
--instructions --only echo``, on the same Python) it is also given as a
share of the round trip.

Run with each Python (tether importable: installed, or ``PYTHONPATH``)::

    python bench/ledger.py                              # timings
    python bench/ledger.py --instructions --round-trip 94000
    python bench/ledger.py --only lock-acquire type-is --instructions
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re
import subprocess
import sys
import tempfile
import timeit


@dataclasses.dataclass(frozen=True)
class Entry:
    key: str
    where: str
    setup: str
    fast: str
    plain: str
    per_rt: float = 0.0  # times per 32 B round trip
    per_get: float = 0.0  # times per keep-alive GET


_LOCK = "import threading\nlock = threading.Lock()\n"
_RLOCK = "import threading\nlock = threading.RLock()\n"
_ACQUIRE = "lock.acquire()\ntry:\n    x = 1\nfinally:\n    lock.release()"
_WITH = "with lock:\n    x = 1"

# An h2 client with one open stream (its response head read), as a Websocket over
# HTTP/2 has: H2Client's DATA fast paths against h2's own (a 32 B message is a
# 38-byte DATA frame each way). Each statement gives the windows back, so that
# every one of the loop's runs sends and reads the same frame.
_H2 = """
import h2.config, h2.connection
from tether.protocol._h2_streams import H2Client
H2 = h2.connection.H2Connection
c = H2Client(h2.config.H2Configuration(client_side=True, header_encoding=None))
srv = H2(h2.config.H2Configuration(client_side=False, header_encoding=None))
took = lambda stream_id, data, size: True  # Http2Protocol's on_data, as cheap as one can be
c.initiate_connection(); srv.initiate_connection()
srv.receive_data(c.data_to_send()); c.receive_data(srv.data_to_send(), took)
c.send_headers(1, [(b':method', b'GET'), (b':path', b'/'), (b':scheme', b'http'),
                   (b':authority', b'h')])
srv.receive_data(c.data_to_send()); srv.send_headers(1, [(b':status', b'200')])
srv.send_data(1, b'x' * 38); c.receive_data(srv.data_to_send(), took); c.data_to_send()
payload = b'x' * 38
frame = (38).to_bytes(3, 'big') + bytes(2) + (1).to_bytes(4, 'big') + payload  # DATA, stream 1
stream = c.streams[1]
"""
_H2_GIVE_BACK = (
    "\nc.outbound_flow_control_window += 38; stream.outbound_flow_control_window += 38"
    "\nc.acknowledge_received_data(38, 1); c.data_to_send()"
)

ENTRIES = [
    Entry(
        "lock-acquire",
        "_mailbox.Mailbox._enter, ._continue_turn; _handle.Connection._await_stream, .await_body",
        _LOCK,
        _ACQUIRE,
        _WITH,
        per_rt=4,
        per_get=6,
    ),
    Entry(
        "rlock-acquire",
        "_inbox.Inbox.take, .tell_all; _ioloop.Watch.read",
        _RLOCK,
        _ACQUIRE,
        _WITH,
        per_rt=3,
        per_get=3,
    ),
    Entry(
        "lock-not-condition",
        "_mailbox.Mailbox, _inbox.Inbox (self._lock, not self._cond)",
        _LOCK + "cond = threading.Condition(lock)\n",
        _WITH,
        "with cond:\n    x = 1",
        per_rt=6,
        per_get=6,
    ),
    Entry(
        "received-new",
        "protocol._received.ws_message",
        "from tether.protocol import _received\nfrom tether import Ws, Binary\n"
        "conn = object(); stream = object(); payload = b'x' * 32\n",
        "_received.ws_message(conn, stream, payload)",
        "Ws(conn, stream, Binary(payload))",
        per_rt=1,
    ),
    Entry(
        "received-new-http",
        "protocol._received.response, .data",
        "from tether.protocol import _received\nfrom tether import Response, Data\n"
        "conn = object(); stream = object(); headers = (('a', 'b'),)\n",
        "_received.response(conn, stream, False, 200, headers)\n"
        "_received.data(conn, stream, True, b'hello')",
        "Response(conn, stream, False, 200, headers)\nData(conn, stream, True, b'hello')",
        per_get=1,
    ),
    Entry(
        "mailbox-tell",
        "_mailbox.Mailbox.tell (from _handle.Connection._tell, _connection._report)",
        "import threading, pykka\nfrom tether.actors._mailbox import Mailbox\n"
        "class A: pass\n"
        "a = A(); a.actor_urn = 'urn'; a.actor_inbox = mb = Mailbox()\n"
        "a.actor_stopped = stopped = threading.Event()\n"
        "mb.bind(lambda m: True, stopped); mb.open(); ref = pykka.ActorRef(a); m = object()\n",
        "mb.tell(m)",
        "ref.tell(m)",
        per_rt=2,
        per_get=2,
    ),
    Entry(
        "messages-not-frozen",
        "_messages.WsSend, .BytesIn",
        "import dataclasses\nfrom tether.actors._messages import BytesIn\n"
        "Frozen = dataclasses.make_dataclass("
        "'Frozen', [('epoch', int), ('data', bytes)], frozen=True, slots=True)\n",
        "BytesIn(1, b'x')",
        "Frozen(1, b'x')",
        per_rt=2,
        per_get=2,
    ),
    Entry(
        "flag-done",
        "_handle.Connection._done (mirrors _stopped.is_set())",
        "import threading\nclass H: pass\n"
        "h = H(); h._done = False; h._stopped = threading.Event()\n",
        "h._done",
        "h._stopped.is_set()",
        per_rt=1,
        per_get=2,
    ),
    Entry(
        "flag-failing",
        "protocol._ws.WsClient.failing (an attribute, not a property)",
        "class P:\n    _f = None\n    @property\n"
        "    def failing(self): return self._f is not None\n"
        "class A:\n    failing = False\np = P(); a = A()\n",
        "a.failing",
        "p.failing",
        per_rt=2,
    ),
    Entry(
        "flag-bounded",
        "_inbox.Inbox._bounded (mirrors bool(_backlogs))",
        "class I: pass\ni = I(); i._bounded = True; i._backlogs = {1: 2}\n",
        "if i._bounded:\n    x = 1",
        "if i._backlogs:\n    x = 1",
        per_rt=2,
        per_get=3,
    ),
    Entry(
        "flag-only",
        "_lending.Lending.only (mirrors _lent when it has one socket)",
        "class L:\n    def __init__(self):\n"
        "        self._lent = [object()]; self.only = self._lent[0]\n"
        "    def only_lent(self):\n"
        "        return self._lent[0] if len(self._lent) == 1 else None\n"
        "l = L()\n",
        "l.only",
        "l.only_lent()",
        per_rt=2,
        per_get=2,
    ),
    Entry(
        "flag-fresh",
        "_lending.Lending.hold (a flag where it read the clock)",
        "import time\nclass L: pass\nl = L()\n",
        "l._fresh = True",
        "l._last = time.monotonic()",
        per_rt=1,
        per_get=1,
    ),
    Entry(
        "type-is-h11",
        "protocol._http (_check_limits and the event loop: h11's events by type())",
        "import h11\nev = h11.Data(data=b'x')\n",
        "type(ev) is h11.Response",
        "isinstance(ev, h11.Response)",
        per_get=6,
    ),
    Entry(
        "type-is-tether",
        "_connection._deliver_events, ._ws_send; protocol._received.ws_message",
        "from tether import Ws, Binary, Upgrade\nev = Ws(object(), object(), Binary(b'x'))\n",
        "type(ev) is Upgrade",
        "isinstance(ev, Upgrade)",
        per_rt=3,
        per_get=2,
    ),
    Entry(
        "inline-waker",
        "_lending.Lending.wait_and_read (_waker() inlined)",
        "import threading\n_local = threading.local()\n"
        "def _waker():\n    w = getattr(_local, 'waker', None)\n"
        "    if w is None:\n        w = _local.waker = object()\n    return w\n_waker()\n",
        "w = getattr(_local, 'waker', None) or _waker()",
        "w = _waker()",
        per_rt=1,
        per_get=1,
    ),
    Entry(
        "inline-mine",
        "_handle.Connection._waiter's match (self._mine() inlined)",
        "class C:\n    def _mine(self, m):\n        return getattr(m, 'conn', None) is self\n"
        "class M: pass\nc = C(); m = M(); m.conn = c\n",
        "getattr(m, 'conn', None) is not c",
        "not c._mine(m)",
        per_get=2,
    ),
    Entry(
        "try-not-suppress",
        "_connection.ConnectionActor._report (try/except, not contextlib.suppress)",
        "import contextlib\ndef f(): pass\n",
        "try:\n    f()\nexcept KeyError:\n    pass",
        "with contextlib.suppress(KeyError):\n    f()",
        per_rt=1,
        per_get=1,
    ),
    Entry(
        "poll-registered",
        "_lending._Waker.wait (the socket stays registered between waits)",
        "import select, socket\na, b = socket.socketpair()\nfd = a.fileno()\n"
        "poll = select.poll()\nregistered = -1\n",
        "if fd != registered:\n    poll.register(fd, select.POLLIN)\n    registered = fd",
        "poll.register(fd, select.POLLIN)\npoll.unregister(fd)",
        per_rt=1,
        per_get=1,
    ),
    Entry(
        "notify-if-sleepers",
        "_inbox.Inbox.tell, .tell_all (notify only while a thread waits)",
        _RLOCK + "cond = threading.Condition(lock)\nlock.acquire()\nsleepers = 0\n",
        "if sleepers:\n    cond.notify_all()",
        "cond.notify_all()",
        per_rt=1,
        per_get=1,
    ),
    Entry(
        "drain",
        "protocol._client.ClientProtocol.drain (one call where the flush made five)",
        "import tether\nfrom tether.protocol import ClientProtocol\nproto = ClientProtocol("
        "None, authority='h:80', http_opts=tether.HttpOpts(), ws_opts=tether.WsOpts())\n",
        "proto.drain()",
        "proto.chunks_to_send(); proto.events(); proto.close_reason; proto._ws",
        per_rt=2,
        per_get=2,
    ),
    Entry(
        "h2-data",
        "protocol._h2_streams.H2Client.send_data, .receive_data: an open stream's DATA"
        " framed and read without h2's frame objects, a read handed to on_data, not made an"
        " event (1 each per round trip over HTTP/2)",
        _H2,
        "c.send_data(1, payload); c.receive_data(frame, took)" + _H2_GIVE_BACK,
        "H2.send_data(c, 1, payload); H2.receive_data(c, frame)" + _H2_GIVE_BACK,
    ),
    Entry(
        "headers-raw-items",
        "protocol._http._headers (h11's raw_items(), not its Sequence)",
        "import h11\nfrom tether.protocol._http import _headers\n"
        "r = h11.Response(status_code=200, headers=[('content-length', '5'), "
        "('date', 'x'), ('server', 'y')])\nh = r.headers\n",
        "_headers(h)",
        "tuple((n.decode('latin-1'), v.decode('latin-1')) for n, v in h)",
        per_get=1,
    ),
]


def _timer(entry: Entry, stmt: str) -> timeit.Timer:
    return timeit.Timer(stmt, entry.setup, globals={})


def _time(entries: list[Entry], number: int, repeat: int) -> dict[str, tuple[float, float]]:
    """ns per operation, min of ``repeat`` runs, for (fast, plain)."""
    out = {}
    for entry in entries:
        pair = []
        for stmt in (entry.fast, entry.plain):
            runs = _timer(entry, stmt).repeat(repeat, number)
            pair.append(min(runs) / number * 1e9)
        out[entry.key] = (pair[0], pair[1])
    return out


def _child(keys: list[str], number: int) -> None:
    """Under callgrind: for each entry and form, a warm-up loop then a counted one."""
    by_key = {e.key: e for e in ENTRIES}
    timers = [timeit.Timer("pass", "", globals={})]
    for key in keys:
        entry = by_key[key]
        timers += [_timer(entry, entry.fast), _timer(entry, entry.plain)]
    for timer in timers:
        timer.timeit(number)
        os.getppid()  # callgrind dumps here: the segment before is the warm-up
        timer.timeit(number)
        os.getppid()  # ... and this one the counted loop


def _instructions(entries: list[Entry], number: int) -> dict[str, tuple[float, float]]:
    keys = [e.key for e in entries]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--dump-before=getppid",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                ",".join(keys),
                "--number",
                str(number),
            ],
            check=True,
            capture_output=True,
            timeout=3600,
        )
        totals = {}
        for path in glob.glob(out + ".*"):
            with open(path) as f:
                found = re.search(r"^totals:\s+(\d+)", f.read(), re.M)
            assert found is not None, path
            totals[int(path.rsplit(".", 1)[1])] = int(found.group(1))
    # Dumps 1, 2, ...: segment k ends at the k-th getppid(). Segment 1 is the
    # start-up and the first warm-up; segments 2i (counted) for timer i.
    counted = [totals[2 * (i + 1)] / number for i in range(1 + 2 * len(keys))]
    empty = counted[0]
    result = {}
    for i, key in enumerate(keys):
        result[key] = (counted[1 + 2 * i] - empty, counted[2 + 2 * i] - empty)
    return result


def _share(gain: float, total: float) -> str:
    return f"{gain:,.0f}" + (f" ({gain / total:.1%})" if total else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="these entries only (keys)")
    parser.add_argument("--instructions", action="store_true", help="count with valgrind")
    parser.add_argument("--number", type=int, default=0, help="operations per run")
    parser.add_argument("--repeat", type=int, default=25, help="runs (--time), the min is kept")
    parser.add_argument(
        "--round-trip", type=float, default=0.0, help="instructions per 32 B round trip"
    )
    parser.add_argument("--get", type=float, default=0.0, help="instructions per keep-alive GET")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child.split(","), args.number)
        return
    entries = [e for e in ENTRIES if not args.only or e.key in args.only]
    unit = "instructions" if args.instructions else "ns"
    if args.instructions:
        numbers = _instructions(entries, args.number or 5000)
    else:
        numbers = _time(entries, args.number or 10_000, args.repeat)
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"Python {version}, {unit} per operation" + ("" if args.instructions else ", min"))
    print(f"| entry | fast | plain | gain/op | per 32 B RT | per GET | {unit} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for entry in entries:
        fast, plain = numbers[entry.key]
        gain = plain - fast
        rt = gain * entry.per_rt
        get = gain * entry.per_get
        rt_text = _share(rt, args.round_trip) if entry.per_rt else "-"
        get_text = _share(get, args.get) if entry.per_get else "-"
        print(
            f"| {entry.key} | {fast:,.1f} | {plain:,.1f} | {gain:,.1f} "
            f"| {rt_text} | {get_text} | {unit} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

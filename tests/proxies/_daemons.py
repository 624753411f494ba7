"""Real proxies (squid, tinyproxy, dante, microsocks) run by the tests on 127.0.0.1.

Each :class:`ProxyDaemon` is one process of ours: a free port, a config and
a log in a temp directory of its own, in the foreground (never daemonized),
in a process group of its own so that killing it also kills the helpers it
forked (squid's auth helper, dante's children). It is ready once a TCP
connect to its port succeeds; ``kill`` then ``start`` again brings it back
on the same port (the reconnect scenarios).

A binary that is not installed is a skip naming it (``.ci/run`` installs
them with apt-get when it runs as root); a proxy that dies or never listens
is a failure showing its log.
"""

from __future__ import annotations

import contextlib
import enum
import glob
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import pytest

from tests._ports import NotListening, free_port, wait_listening

#: Fresh ports tried when a proxy dies at start (another test took its port).
_PORT_ATTEMPTS = 3

USER = "tether"
#: A colon, a space and an "@": the URL's userinfo must be percent-encoded and decoded.
PASSWORD = "s3cret:with space@"
#: The address every proxy connects to origins from: an origin that sees it knows the
#: request came through the proxy (tether's own connections come from 127.0.0.1).
OUTGOING = "127.0.0.2"
#: tinyproxy's config grammar takes letters, digits, "-", "_" and "." only.
TINYPROXY_PASSWORD = "s3cret-pw"


class Kind(enum.StrEnum):
    """The proxy programs the tests run."""

    SQUID = "squid"
    TINYPROXY = "tinyproxy"
    DANTE = "dante"
    MICROSOCKS = "microsocks"

    @property
    def scheme(self) -> str:
        """The URL scheme tether is given for this proxy."""
        return "socks5" if self in (Kind.DANTE, Kind.MICROSOCKS) else "http"


#: Where Debian puts the binaries (/usr/sbin is not on a non-root user's PATH).
_BINARIES = {
    Kind.SQUID: "squid",
    Kind.TINYPROXY: "tinyproxy",
    Kind.DANTE: "danted",
    Kind.MICROSOCKS: "microsocks",
}
#: The Debian package of each (as .ci/run installs them), for the skip's message.
_PACKAGES = {Kind.DANTE: "dante-server"}  # the others are named as their programs


def binary(kind: Kind) -> str:
    """The path of ``kind``'s program; a skip naming it if it is not installed."""
    name = _BINARIES[kind]
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        package = _PACKAGES.get(kind, name)
        pytest.skip(
            f"{name} is not installed (Debian package {package};"
            " .ci/run installs it with apt-get as root)"
        )
    return found


def _ncsa_auth() -> str:
    """squid's basic_ncsa_auth helper; a skip if it is missing."""
    for pattern in ("/usr/lib/squid/basic_ncsa_auth", "/usr/lib*/squid*/basic_ncsa_auth"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    pytest.skip("squid's basic_ncsa_auth helper is not installed")


# -- squid's password file: MD5-crypt ("$apr1$"), which basic_ncsa_auth checks -------------
# (Python's crypt module is deprecated and gone in 3.13; htpasswd may not be installed.)

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _to64(value: int, count: int) -> str:
    chars = []
    for _ in range(count):
        chars.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(chars)


def apr1(password: str, salt: str) -> str:
    """Apache's MD5-crypt of ``password`` (the ``$apr1$`` scheme of htpasswd -m)."""
    pw, salt_b, magic = password.encode(), salt.encode()[:8], b"$apr1$"
    alternate = hashlib.md5(pw + salt_b + pw).digest()
    data = pw + magic + salt_b
    data += (alternate * (len(pw) // 16 + 1))[: len(pw)]
    length = len(pw)
    while length:
        data += b"\0" if length & 1 else pw[:1]
        length >>= 1
    digest = hashlib.md5(data).digest()
    for i in range(1000):
        round_data = pw if i & 1 else digest
        if i % 3:
            round_data += salt_b
        if i % 7:
            round_data += pw
        round_data += digest if i & 1 else pw
        digest = hashlib.md5(round_data).digest()
    triples = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    encoded = "".join(
        _to64(digest[a] << 16 | digest[b] << 8 | digest[c], 4) for a, b, c in triples
    )
    return f"$apr1${salt_b.decode()}${encoded}{_to64(digest[11], 2)}"


# -- configs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """What to run: the command line, and the files to write before it."""

    argv: list[str]
    files: dict[str, str]


def _squid(work: Path, port: int, auth: bool, tls: bool) -> Launch:
    # With tls, squid speaks TLS itself (an https:// proxy) with the certificate in
    # tls.crt / tls.key (written by ProxyDaemon).
    listen = f"https_port 127.0.0.1:{port} tls-cert={work / 'tls.crt'} tls-key={work / 'tls.key'}"
    lines = [
        listen if tls else f"http_port 127.0.0.1:{port}",
        f"pid_filename {work / 'squid.pid'}",
        "cache deny all",
        "cache_mem 8 MB",
        f"access_log stdio:{work / 'access.log'}",
        f"cache_log {work / 'cache.log'}",
        "cache_store_log none",
        f"tcp_outgoing_address {OUTGOING}",
        "logfile_rotate 0",
        f"coredump_dir {work}",
        "shutdown_lifetime 0 seconds",
        # No ICMP pinger child: killed with squid, it would be left for init to reap.
        "pinger_enable off",
        # The origins are local: /etc/hosts answers "localhost"; no DNS server is asked.
        "dns_nameservers 127.0.0.1",
        "acl local src 127.0.0.0/8",
        "acl CONNECT method CONNECT",
        # squid's default refuses CONNECT to ports other than 443; the origins use
        # ephemeral ports.
        "acl SSL_ports port 1-65535",
        "http_access deny CONNECT !SSL_ports",
    ]
    files = {}
    if auth:
        files["htpasswd"] = f"{USER}:{apr1(PASSWORD, secrets.token_hex(4))}\n"
        lines += [
            f"auth_param basic program {_ncsa_auth()} {work / 'htpasswd'}",
            "auth_param basic children 1 startup=1 idle=1",
            "auth_param basic realm tether-tests",
            "acl users proxy_auth REQUIRED",
            "http_access allow local users",
        ]
    else:
        lines.append("http_access allow local")
    lines.append("http_access deny all")
    if os.geteuid() == 0:
        # As root squid becomes this user: the temp directory is made writable for it.
        lines.append("cache_effective_user nobody")
    files["squid.conf"] = "\n".join(lines) + "\n"
    return Launch([binary(Kind.SQUID), "-N", "-f", str(work / "squid.conf")], files)


def _tinyproxy(work: Path, port: int, auth: bool) -> Launch:
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 60",
        f'LogFile "{work / "proxy.log"}"',
        "LogLevel Info",
        "MaxClients 1000",  # (the chaos soak tunnels hundreds of connections through it)
        "Allow 127.0.0.1",
        f"Bind {OUTGOING}",
        # No ConnectPort line: CONNECT is allowed to every port (the origins' are ephemeral).
    ]
    if auth:
        lines.append(f"BasicAuth {USER} {TINYPROXY_PASSWORD}")
    files = {"tinyproxy.conf": "\n".join(lines) + "\n"}
    return Launch([binary(Kind.TINYPROXY), "-d", "-c", str(work / "tinyproxy.conf")], files)


def _dante(work: Path, port: int, auth: bool, blocked_port: int) -> Launch:
    # dante's username method checks system accounts (passwd/PAM): the tests do not add
    # users to the machine, so SOCKS username/password is microsocks' (-u/-P).
    assert not auth, "dante's username auth needs system users: use microsocks"
    lines = [
        f"logoutput: {work / 'proxy.log'}",
        f"internal: 127.0.0.1 port = {port}",
        f"external: {OUTGOING}",
        "clientmethod: none",
        "socksmethod: none",
        # Settings before rules (dante's grammar); as root it works as "nobody".
        *(["user.privileged: root", "user.unprivileged: nobody"] if os.geteuid() == 0 else []),
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
        # A port dante refuses, logging the destination as the client sent it (a name
        # or an address): the socks5 / socks5h tests read who resolved the name.
        f"socks block {{ from: 0.0.0.0/0 to: 0.0.0.0/0 port = {blocked_port} log: connect }}",
        "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
    ]
    files = {"danted.conf": "\n".join(lines) + "\n"}
    argv = [binary(Kind.DANTE), "-N", "1", "-f", str(work / "danted.conf")]
    return Launch([*argv, "-p", str(work / "danted.pid")], files)


def _microsocks(_work: Path, port: int, auth: bool) -> Launch:
    argv = [binary(Kind.MICROSOCKS), "-i", "127.0.0.1", "-p", str(port), "-b", OUTGOING]
    if auth:
        argv += ["-u", USER, "-P", PASSWORD]
    return Launch(argv, {})


# -- the process -------------------------------------------------------------------------------


class ProxyDaemon:
    """One proxy process of ours on 127.0.0.1; a context manager (killed on exit).

    Not thread-safe: the test's thread drives it.

    Args:
        kind: Which program.
        auth: Require the username ``USER`` and password ``PASSWORD``
            (squid: basic_ncsa_auth; tinyproxy: BasicAuth; microsocks: -u/-P).
        tls: squid only: speak TLS to clients (an ``https://`` proxy) with
            this certificate chain and key (PEM).
    """

    def __init__(
        self, kind: Kind, *, auth: bool = False, tls: tuple[bytes, bytes] | None = None
    ) -> None:
        assert tls is None or kind is Kind.SQUID, "only squid serves TLS here"
        self.kind = kind
        self.auth = auth
        self.tls = tls is not None
        #: dante only: a port it refuses (reply 0x02), logging the requested destination.
        self.blocked_port = free_port()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._work = Path(tempfile.mkdtemp(prefix=f"tether-{kind}-"))
        if os.geteuid() == 0:
            # squid and dante drop root for "nobody", who must write their logs here.
            self._work.chmod(0o777)
        self._output = self._work / "output.log"
        if tls is not None:
            (self._work / "tls.crt").write_bytes(tls[0])
            (self._work / "tls.key").write_bytes(tls[1])
            for name in ("tls.crt", "tls.key"):  # read by squid as "nobody"
                (self._work / name).chmod(0o644)

    @property
    def password(self) -> str:
        """The password it requires (when ``auth``)."""
        return TINYPROXY_PASSWORD if self.kind is Kind.TINYPROXY else PASSWORD

    def url(
        self, *, scheme: str | None = None, user: str | None = None, password: str | None = None
    ) -> str:
        """The proxy URL for tether: this proxy's credentials, or those given (percent-encoded).

        ``user=""`` gives a URL without credentials.
        """
        user = USER if user is None and self.auth else user
        password = self.password if password is None and self.auth else password
        userinfo = ""
        if user:
            userinfo = quote(user, safe="")
            if password is not None:
                userinfo += ":" + quote(password, safe="")
            userinfo += "@"
        scheme = scheme or ("https" if self.tls else self.kind.scheme)
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}"

    def _launch(self, port: int) -> Launch:
        builders: dict[Kind, Callable[[Path, int, bool], Launch]] = {
            Kind.SQUID: lambda work, p, auth: _squid(work, p, auth, self.tls),
            Kind.TINYPROXY: _tinyproxy,
            Kind.DANTE: lambda work, p, auth: _dante(work, p, auth, self.blocked_port),
            Kind.MICROSOCKS: _microsocks,
        }
        return builders[self.kind](self._work, port, self.auth)

    def start(self, port: int | None = None) -> ProxyDaemon:
        """Start on ``port`` (by default the previous one, or a free one); return once it listens.

        A proxy that exits before listening is tried again on a fresh port
        (another process may have taken the one picked), unless ``port``
        was given or this is a restart: then the log is shown and the test fails.
        """
        assert self._process is None, "already running"
        fixed = port is not None or self.port != 0
        for _ in range(1 if fixed else _PORT_ATTEMPTS):
            chosen = port or self.port or free_port()
            if self._spawn(chosen):
                self.port = chosen
                return self
        pytest.fail(f"{self.kind} did not start:\n{self.logs()}")

    def _spawn(self, port: int) -> bool:
        launch = self._launch(port)
        for name, text in launch.files.items():
            (self._work / name).write_text(text)
            (self._work / name).chmod(0o644)
        with self._output.open("ab") as output:
            process = subprocess.Popen(
                launch.argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self._work,
                start_new_session=True,  # its own process group: kill() reaches its helpers
            )
        self._process = process
        try:
            wait_listening(port, process, name=str(self.kind), log=self.logs)
        except NotListening as failure:
            if failure.returncode is None:  # running, yet not listening: no use trying again
                self.kill()
                raise
            self._process = None  # exited: start() tries a fresh port
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the proxy and everything it forked; return once it is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group start_new_session made
        process.wait(timeout=10)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def log(self, name: str = "proxy.log") -> str:
        """The text of one of its log files ("" if it has none yet)."""
        path = self._work / name
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        """All its logs (for a failure's message)."""
        parts = [
            f"--- {path.name}\n{path.read_text(errors='replace')}"
            for path in sorted(self._work.glob("*.log"))
        ]
        return "\n".join(parts) or "(no logs)"

    def close(self) -> None:
        """Kill it and remove its temp directory."""
        self.kill()
        shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self) -> ProxyDaemon:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        auth = "+auth" if self.auth else ""
        tls = "+tls" if self.tls else ""
        return f"<{self.kind}{auth}{tls} on 127.0.0.1:{self.port}>"

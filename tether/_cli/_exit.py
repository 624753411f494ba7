"""Exit codes of the ``tether`` command, and the one-line message for each failure.

The codes are curl's where curl has one (``man curl``, EXIT CODES), so
scripts that already test ``curl``'s status keep working with
``tether get``; ``tether ws`` uses the same table.
"""

from __future__ import annotations

import enum
import socket
import ssl

import tether

__all__ = ["CliFailure", "ExitCode", "classify", "exit_codes_help"]


class ExitCode(enum.IntEnum):
    """What the process exit status of ``tether get`` / ``tether ws`` means."""

    OK = 0
    FAILURE = 1  # anything without a more precise code (a protocol error, a lost Websocket)
    USAGE = 2  # a bad option (argparse's own status)
    BAD_URL = 3  # curl: URL malformed
    CANNOT_RESOLVE = 6  # curl: could not resolve host
    CANNOT_CONNECT = 7  # curl: failed to connect (refused, unreachable)
    HTTP_ERROR = 22  # curl -f: status >= 400; tether ws: the upgrade was refused
    WRITE_ERROR = 23  # curl: could not write the output
    TIMEOUT = 28  # curl: operation timeout
    TLS_FAILED = 35  # curl: TLS handshake failed
    CONNECTION_LOST = 56  # curl: failure receiving network data
    TLS_UNTRUSTED = 60  # curl: the peer's certificate could not be verified
    PROXY_FAILED = 97  # curl: proxy handshake error


_MEANING = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "other failure (a protocol error, an unexpected event)",
    ExitCode.USAGE: "bad command line",
    ExitCode.BAD_URL: "malformed URL or unsupported scheme",
    ExitCode.CANNOT_RESOLVE: "cannot resolve the host name",
    ExitCode.CANNOT_CONNECT: "cannot connect (refused, unreachable)",
    ExitCode.HTTP_ERROR: "get --fail: HTTP status >= 400; ws: upgrade refused",
    ExitCode.WRITE_ERROR: "cannot write the output (-o FILE, a closed pipe)",
    ExitCode.TIMEOUT: "timed out (--connect-timeout, --max-time)",
    ExitCode.TLS_FAILED: "TLS handshake failed",
    ExitCode.CONNECTION_LOST: "the connection was lost",
    ExitCode.TLS_UNTRUSTED: "the server's certificate could not be verified",
    ExitCode.PROXY_FAILED: "the proxy refused the tunnel, or broke its handshake",
}


def exit_codes_help() -> str:
    """The table of exit codes, for ``--help``."""
    return "exit codes:\n" + "\n".join(f"  {code.value:>3}  {_MEANING[code]}" for code in ExitCode)


class CliFailure(Exception):
    """Ends a command: ``message`` goes to stderr as one line, ``code`` is the exit status."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _root_cause(reason: BaseException | None) -> BaseException | None:
    """Unwrap the tether errors that only carry another reason."""
    while True:
        match reason:
            case tether.RetriesExhausted(last_reason=inner) if inner is not None:
                reason = inner
            case tether.ConnectionDownError(reason=inner) | tether.StreamLost(reason=inner) if (
                inner is not None
            ):
                reason = inner
            case _:
                return reason


def classify(reason: BaseException | None, where: str) -> CliFailure:
    """The failure (exit code and one-line message) for a connection's error ``reason``.

    Args:
        reason: the exception an event or ``await_*`` carried.
        where: ``host:port``, for the message.
    """
    cause = _root_cause(reason)
    match cause:
        case tether.ProxyError():  # it names the proxy (never the password) and the origin
            return CliFailure(ExitCode.PROXY_FAILED, str(cause))
        case ssl.SSLCertVerificationError():
            # Raised by the ssl module these attributes are set; built by hand they may not be.
            detail = getattr(cause, "verify_message", None) or str(cause)
            return CliFailure(
                ExitCode.TLS_UNTRUSTED,
                f"TLS: the certificate of {where} is not trusted: {detail} "
                "(--cacert FILE to trust a CA, --insecure to skip verification)",
            )
        case ssl.SSLError():
            return CliFailure(
                ExitCode.TLS_FAILED,
                f"TLS handshake with {where} failed: {getattr(cause, 'reason', None) or cause}",
            )
        case socket.gaierror():
            return CliFailure(
                ExitCode.CANNOT_RESOLVE, f"cannot resolve {where}: {cause.strerror or cause}"
            )
        case TimeoutError():  # ConnectTimeout, ReceiveTimeout, socket timeouts
            return CliFailure(ExitCode.TIMEOUT, f"timed out talking to {where}: {cause}")
        case ConnectionRefusedError():
            return CliFailure(ExitCode.CANNOT_CONNECT, f"cannot connect to {where}: refused")
        case tether.ConnectionClosed() | tether.WsClosed() | ConnectionError():
            return CliFailure(ExitCode.CONNECTION_LOST, f"connection to {where} lost: {cause}")
        case OSError():
            return CliFailure(
                ExitCode.CANNOT_CONNECT, f"cannot connect to {where}: {cause.strerror or cause}"
            )
        case _:
            return CliFailure(ExitCode.FAILURE, f"{where}: {cause!r}")

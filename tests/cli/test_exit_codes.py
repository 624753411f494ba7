"""Which exit code each failure reason gets (the reasons the subprocess tests cannot provoke).

DNS failures need a resolver, and a connection reset needs a peer that
resets; the mapping itself is a pure function, checked here with the
exceptions tether reports for them.
"""

from __future__ import annotations

import socket
import ssl

import pytest

import tether
from tether._cli._exit import ExitCode, classify


@pytest.mark.parametrize(
    ("reason", "code", "message"),
    [
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            ExitCode.CANNOT_RESOLVE,
            "cannot resolve h:80: Name or service not known",
        ),
        (ConnectionResetError(104, "reset"), ExitCode.CONNECTION_LOST, "connection to h:80 lost"),
        (OSError(113, "No route to host"), ExitCode.CANNOT_CONNECT, "cannot connect to h:80"),
        (tether.ConnectTimeout("slow"), ExitCode.TIMEOUT, "timed out talking to h:80: slow"),
        (ssl.SSLError(1, "bad"), ExitCode.TLS_FAILED, "TLS handshake with h:80 failed"),
        (tether.RemoteProtocolError("bad frame"), ExitCode.FAILURE, "h:80: RemoteProtocolError"),
    ],
)
def test_each_reason_gets_its_code_and_a_one_line_message(
    reason: BaseException, code: ExitCode, message: str
) -> None:
    failure = classify(reason, "h:80")
    assert failure.code == code
    assert failure.message.startswith(message)
    assert "\n" not in failure.message


def test_wrapped_reasons_are_classified_by_their_cause() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    wrapped = tether.ConnectionDownError("down", tether.RetriesExhausted(3, refused))
    assert classify(wrapped, "h:80").code == ExitCode.CANNOT_CONNECT
    lost = tether.StreamLost("lost", tether.ConnectionClosed())
    assert classify(lost, "h:80").code == ExitCode.CONNECTION_LOST

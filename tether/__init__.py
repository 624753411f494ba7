"""tether: Gun, the Erlang HTTP/Websocket client, for Python on pykka actors.

Layout: ``tether.protocol`` is sans-I/O (h11 and wsproto, no sockets or
threads), ``tether.actors`` holds the connection actor, its I/O and the
``Inbox``, ``tether.supervision`` restarts crashed actors. Events, frames,
errors and options are leaf modules everyone imports. This module
re-exports the public names of the contract (``docs/`` and ``API.md``).
"""

from tether._errors import CallError as CallError
from tether._errors import ClosedByUser as ClosedByUser
from tether._errors import ConnectionClosed as ConnectionClosed
from tether._errors import ConnectionDownError as ConnectionDownError
from tether._errors import ConnectionStoppedError as ConnectionStoppedError
from tether._errors import ConnectTimeout as ConnectTimeout
from tether._errors import Crashed as Crashed
from tether._errors import GoAway as GoAway
from tether._errors import InboxClosedError as InboxClosedError
from tether._errors import InvalidRequestError as InvalidRequestError
from tether._errors import NoConnectionAvailable as NoConnectionAvailable
from tether._errors import NotUpgradedError as NotUpgradedError
from tether._errors import OwnerDown as OwnerDown
from tether._errors import OwnerError as OwnerError
from tether._errors import PongTimeout as PongTimeout
from tether._errors import PoolStopped as PoolStopped
from tether._errors import ProtocolError as ProtocolError
from tether._errors import ProxyError as ProxyError
from tether._errors import ReceiveTimeout as ReceiveTimeout
from tether._errors import RemoteProtocolError as RemoteProtocolError
from tether._errors import ReportedError as ReportedError
from tether._errors import ResponseTimeout as ResponseTimeout
from tether._errors import RetriesExhausted as RetriesExhausted
from tether._errors import SendTimeout as SendTimeout
from tether._errors import StreamLost as StreamLost
from tether._errors import StreamReset as StreamReset
from tether._errors import SupervisorGaveUp as SupervisorGaveUp
from tether._errors import SupervisorStopped as SupervisorStopped
from tether._errors import TetherError as TetherError
from tether._errors import UnsupportedByProtocol as UnsupportedByProtocol
from tether._errors import UpgradedError as UpgradedError
from tether._errors import UpgradeError as UpgradeError
from tether._errors import UpgradeTimeout as UpgradeTimeout
from tether._errors import WriteTimeout as WriteTimeout
from tether._errors import WsClosed as WsClosed
from tether._events import Data as Data
from tether._events import Down as Down
from tether._events import Error as Error
from tether._events import Event as Event
from tether._events import Inform as Inform
from tether._events import PingAck as PingAck
from tether._events import Response as Response
from tether._events import StreamRef as StreamRef
from tether._events import Trailers as Trailers
from tether._events import TunnelUp as TunnelUp
from tether._events import Up as Up
from tether._events import Upgrade as Upgrade
from tether._events import Ws as Ws
from tether._frames import Binary as Binary
from tether._frames import Close as Close
from tether._frames import Frame as Frame
from tether._frames import Ping as Ping
from tether._frames import Pong as Pong
from tether._frames import Text as Text
from tether._options import ConnectOpts as ConnectOpts
from tether._options import ExponentialBackoff as ExponentialBackoff
from tether._options import Http2Opts as Http2Opts
from tether._options import HttpOpts as HttpOpts
from tether._options import WsOpts as WsOpts
from tether._proxies import Proxy as Proxy
from tether._proxies import ProxyScheme as ProxyScheme
from tether._wire import ConnectionRef as ConnectionRef
from tether.actors import ActorPool as ActorPool
from tether.actors import AsyncInbox as AsyncInbox
from tether.actors import Connection as Connection
from tether.actors import ConnectionInfo as ConnectionInfo
from tether.actors import ConnectionState as ConnectionState
from tether.actors import Inbox as Inbox
from tether.actors import Owner as Owner
from tether.actors import OwnerActor as OwnerActor
from tether.actors import PooledOwnerActor as PooledOwnerActor
from tether.actors import StreamInfo as StreamInfo
from tether.pool import Pool as Pool
from tether.pool import PoolConnectionInfo as PoolConnectionInfo
from tether.pool import PoolConnectionState as PoolConnectionState
from tether.pool import PoolInfo as PoolInfo
from tether.pool import PoolState as PoolState
from tether.pool import start_pool as start_pool
from tether.supervision import ChildInfo as ChildInfo
from tether.supervision import ChildSpec as ChildSpec
from tether.supervision import Supervised as Supervised
from tether.supervision import Supervisor as Supervisor
from tether.supervision import open as open
from tether.supervision import open_unix as open_unix

__version__ = "0.1.0"

__all__ = [
    "ActorPool",
    "AsyncInbox",
    "Binary",
    "CallError",
    "ChildInfo",
    "ChildSpec",
    "Close",
    "ClosedByUser",
    "ConnectOpts",
    "ConnectTimeout",
    "Connection",
    "ConnectionClosed",
    "ConnectionDownError",
    "ConnectionInfo",
    "ConnectionRef",
    "ConnectionState",
    "ConnectionStoppedError",
    "Crashed",
    "Data",
    "Down",
    "Error",
    "Event",
    "ExponentialBackoff",
    "Frame",
    "GoAway",
    "Http2Opts",
    "HttpOpts",
    "Inbox",
    "InboxClosedError",
    "Inform",
    "InvalidRequestError",
    "NoConnectionAvailable",
    "NotUpgradedError",
    "OwnerActor",
    "OwnerDown",
    "OwnerError",
    "Ping",
    "PingAck",
    "Pong",
    "PongTimeout",
    "Pool",
    "PoolConnectionInfo",
    "PoolConnectionState",
    "PoolInfo",
    "PoolState",
    "PoolStopped",
    "PooledOwnerActor",
    "ProtocolError",
    "Proxy",
    "ProxyError",
    "ProxyScheme",
    "ReceiveTimeout",
    "RemoteProtocolError",
    "ReportedError",
    "Response",
    "ResponseTimeout",
    "RetriesExhausted",
    "SendTimeout",
    "StreamInfo",
    "StreamLost",
    "StreamRef",
    "StreamReset",
    "Supervised",
    "Supervisor",
    "SupervisorGaveUp",
    "SupervisorStopped",
    "TetherError",
    "Text",
    "Trailers",
    "TunnelUp",
    "UnsupportedByProtocol",
    "Up",
    "Upgrade",
    "UpgradeError",
    "UpgradeTimeout",
    "UpgradedError",
    "WriteTimeout",
    "Ws",
    "WsClosed",
    "WsOpts",
    "open",
    "open_unix",
    "start_pool",
]

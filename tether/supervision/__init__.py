"""OTP-style supervision for pykka actors, connections included.

``Supervisor`` (strategies one_for_one / one_for_all / rest_for_one,
restart types permanent / transient / temporary, restart intensity, nested
trees), ``ChildSpec`` / ``ChildInfo``, and ``open`` / ``open_unix``, which
start every connection under a supervisor (the process-wide default one
unless ``supervisor=`` names another; none with ``supervise=False``).
"""

from tether.actors import Supervised as Supervised
from tether.supervision._connections import open as open
from tether.supervision._connections import open_unix as open_unix
from tether.supervision._default import default_supervisor as default_supervisor
from tether.supervision._spec import ChildInfo as ChildInfo
from tether.supervision._spec import ChildSpec as ChildSpec
from tether.supervision._spec import Restart as Restart
from tether.supervision._spec import Strategy as Strategy
from tether.supervision._supervisor import Supervisor as Supervisor

__all__ = [
    "ChildInfo",
    "ChildSpec",
    "Restart",
    "Strategy",
    "Supervised",
    "Supervisor",
    "default_supervisor",
    "open",
    "open_unix",
]

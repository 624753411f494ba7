"""tether over a Ray cluster: connections spread over host actors that Ray restarts.

``import tether.ray`` needs the extra ``tether[ray]`` (Ray itself);
``import tether`` never imports Ray. See ``docs/fleets.md``:

```python
fleet = tether.ray.Fleet.start("feeds", hosts=2)
conn = fleet.open("btc", "feed.example", 443, owner=aggregator, transport="tls")
```

Layering: ``tether.ray`` -> ``tether.supervision`` / ``tether.actors`` ->
``tether.protocol``; nothing below imports it.
"""

try:
    import ray as _ray  # noqa: F401  (the extra's one dependency)
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "tether.ray needs Ray: pip install 'tether[ray]' (Ray has wheels for"
        " CPython 3.11-3.13 on Linux, macOS and Windows)",
        name="ray",
    ) from _exc

from tether.ray._errors import FleetStopped as FleetStopped
from tether.ray._errors import HostDown as HostDown
from tether.ray._errors import HostRestarted as HostRestarted
from tether.ray._fleet import Fleet as Fleet
from tether.ray._handle import FleetConnection as FleetConnection
from tether.ray._host import HostInfo as HostInfo
from tether.ray._placement import host_index as host_index
from tether.ray._sender import DEFAULT_MAX_IN_FLIGHT as DEFAULT_MAX_IN_FLIGHT

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "Fleet",
    "FleetConnection",
    "FleetStopped",
    "HostDown",
    "HostInfo",
    "HostRestarted",
    "host_index",
]

"""tether.ray fleets on a local Ray cluster (marked ``ray``: ``python -m pytest -m ray``)."""

import sys

#: Why these tests skip where Ray is not installed (it has wheels for CPython 3.11-3.13).
NO_RAY = f"Ray is not installed for Python {sys.version.split()[0]} (tether[ray]; no wheel?)"

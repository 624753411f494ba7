"""``python -m tether``: the same as the ``tether`` command."""

import sys

from tether._cli import main

sys.exit(main())

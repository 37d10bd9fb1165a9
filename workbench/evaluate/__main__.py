"""``python -m workbench.evaluate``: see :mod:`workbench.evaluate`."""

import sys

from . import main

sys.exit(main())

"""``python -m workbench.bench``: see :mod:`workbench.bench`."""

import sys

from . import main

sys.exit(main())

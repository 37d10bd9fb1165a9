"""``python -m workbench``: the command line (:mod:`workbench.app.cli`)."""

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())

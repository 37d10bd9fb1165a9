"""Where a warning of the library points: the user's line that called into it."""

from __future__ import annotations

import os
import sys

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes ``warnings.warn``, called by the function that asks, name the
    first line outside this package. A fixed stacklevel named the library's own line (compute_pefs,
    the run's checks) or the line above the user's, by which entry point had been called, so the
    source shown was the library's and a filter on the user's module caught nothing."""
    frame, level = sys._getframe(2), 2  # the asking function's caller: stacklevel 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level

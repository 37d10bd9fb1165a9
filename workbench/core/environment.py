"""Environment variables set for the processes a block starts (a notebook's kernel inherits them)."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def environment_variable(name: str, value: str):
    """``os.environ[name] = value`` while the block runs, then as it was (unset if it was unset).

    Not ``unittest.mock.patch.dict(os.environ)``: that restores the whole environment, undoing what
    libraries set meanwhile for themselves (a tokenizer's parallelism switch).
    """
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before

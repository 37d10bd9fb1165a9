"""Whether the numba-compiled kernels run, and the threads they run on.

Two layers have CPU kernels compiled with numba: :mod:`workbench.fisher.kernels` (each
example's top entries, for the PEFs of small models) and :mod:`workbench.npeff.kernels`
(the sparse products of the fits). Both switch on and off together here, and both run
their serial loops, which release the GIL, on one pool of Python threads rather than
numba's OpenMP layer, whose spinning threads slowed torch's own operations between the
products on a busy machine (docs/design.md, "Fast fits").

numba is imported on first use only; without it the callers fall back to torch and numpy.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def _numba():
    try:
        import numba
    except ImportError:  # an optional speed-up: torch does the products without it
        return None
    return numba


_enabled = True


def available() -> bool:
    """Whether the numba kernels can run here (and are not switched off by :func:`disabled`)."""
    return _enabled and _numba() is not None


@contextlib.contextmanager
def disabled():
    """Within this block the fits use torch's products and the PEF selection numpy, e.g. to compare against them."""
    global _enabled
    saved, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = saved


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="workbench-kernels")


def n_threads() -> int:
    """Threads the kernels use: torch's, at most one per core."""
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def run(kernel, ranges: list[tuple[int, int]], *args) -> None:
    """kernel(*args(i), start, stop) for each range, on threads (the kernels release the GIL)."""
    if len(ranges) == 1:
        kernel(*args[0], *ranges[0])
        return
    for future in [_pool().submit(kernel, *a, start, stop) for a, (start, stop) in zip(args, ranges)]:
        future.result()

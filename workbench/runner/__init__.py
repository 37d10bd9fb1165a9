"""PEF runs: a model and its examples → PEFs, into memory or into a store, measured before they start.

- :mod:`.run`: :class:`PefRun`, the one runner: the probe (the first batch, measured), the
  batch size chosen from it, what a store records of the run, and the loop that delivers
  every batch's chunk, checked, with a progress bar;
- :mod:`.compute`: :func:`compute_pefs`, every chunk into memory;
- :mod:`.write`: :func:`write_pefs`, every chunk into a store (resumable), through
  :class:`workbench.store.PefStoreWriter`; :func:`workbench.distributed.write_pefs_sharded`
  shares the batches of one store out among processes the same way;
- :mod:`.estimate`, :mod:`.resources`, :mod:`.checks`: the cost of a run before it starts,
  and the checks on what the model produced before anything is written.

This layer joins :mod:`workbench.fisher` (the batches' PEFs) and :mod:`workbench.store`
(the files), which know nothing of each other.
"""

from .checks import HalfPrecisionError, NonFinitePefsError
from .compute import compute_pefs
from .estimate import InsufficientResourcesError, PefEstimate
from .run import PefRun
from .write import write_pefs

__all__ = ["HalfPrecisionError", "InsufficientResourcesError", "NonFinitePefsError", "PefEstimate", "PefRun", "compute_pefs", "write_pefs"]

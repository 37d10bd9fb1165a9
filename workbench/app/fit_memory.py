"""Whether a fit will fit in memory, known before its PEF store is loaded: :func:`check_fit_memory`.

The PEF stage refuses a run the machine cannot hold (:mod:`workbench.runner.estimate`); the fit
then loads the whole store and builds its data (the PEFs, their pruned and normalised copy, torch
CSR in both orientations, the components and, for the dual solver, the examples' n_rows² Gram).
Without a check, a run whose PEFs fit could be killed for memory in the fit, and again at every
rerun. The estimate reads only the chunk files' headers (their non-zeros and rows) and the first
chunk (a lower bound on the kept parameters: the whole store keeps at least those).

Its factors were measured on the CPU (peak RSS, ``VmHWM``, from before the load to the end of the
fit) on tiny-model stores of 640 to 20 M non-zeros, LRM primal and dual and D, r = 2 to 256: a fit
holds about 36 bytes per stored non-zero (the PEFs, 12; their pruned and scaled copy, 12; the torch
CSR of both orientations beside them, 12; 39 to 41 at the peak of the preparation) above some
120 MB of one-off working memory (numba's kernels, torch's sparse routines), and 3.6 to 3.8
copies of the components in its steps. The estimate counts the non-zeros at 36 bytes, the one-off
memory at 100 MB, the components three times over the first chunk's kept parameters and the
dual's Gram once, so it stays below the real peak: the measured peak was 1.04 to 1.35 times the
estimate (1.04 to 1.19 from 5 M non-zeros up). A refused fit would not have fitted.

On CUDA the data and components live on the device (torch CSR both ways, 16 bytes per non-zero,
the components and the Gram), counted from the same layout, not measured: the host keeps the
PEFs and their scipy copies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..npeff.data import examples_per_column
from ..runner.estimate import InsufficientResourcesError
from ..runner.resources import available_memory, format_bytes
from ..store.pef_store import PefStore, chunk_path

logger = logging.getLogger(__name__)

#: one-off working memory of a fit (numba's kernels, torch's sparse routines): 118 MB measured on a 640-value store
FIXED_BYTES = 100e6
#: host bytes per stored non-zero while the fit runs (38.7 to 40.5 measured at the peak)
HOST_BYTES_PER_VALUE = 36
#: float32 (r, kept) arrays held at once in the fit's steps: G (or H), the gradient and temporaries (3.6 to 3.8 measured)
COMPONENT_COPIES = 3
#: device bytes per non-zero on CUDA: X and Xᵀ as torch CSR, float32 values and int32 indices each
DEVICE_BYTES_PER_VALUE = 16


@dataclass
class FitMemoryEstimate:
    """A fit's peak memory above what is in use before its store is loaded, and what it is made of."""

    n_values: int  # stored non-zeros
    n_rows: int  # examples × class slots (LRM), examples (D)
    n_kept_at_least: int  # kept parameters: at least the first chunk's
    n_components: int
    solver: str | None
    host_bytes: int
    device_bytes: int | None  # on CUDA; None where the fit runs on the host

    def __str__(self) -> str:
        device = "" if self.device_bytes is None else f" and {format_bytes(self.device_bytes)} on the device"
        return (f"fit memory ≈ {format_bytes(self.host_bytes)}{device} at least: {self.n_values} stored values, "
                f"{self.n_rows} rows, ≥ {self.n_kept_at_least} kept parameters × {self.n_components} components"
                + (f", solver {self.solver}" if self.solver else ""))


def _stored_shape(store: PefStore) -> tuple[int, int]:
    """(non-zeros, rows) of the whole store from its chunk files' headers; no array is read."""
    from safetensors import safe_open

    n_values = n_rows = 0
    for index in range(store.n_chunks):
        with safe_open(str(chunk_path(store.path, index)), framework="np") as f:
            n_values += f.get_slice("values").get_shape()[0]
            n_rows += f.get_slice("row_offsets").get_shape()[0] - 1
    return n_values, n_rows


def _kept_at_least(store: PefStore, min_nonzero_per_col: int) -> int:
    """The kept parameters of the first chunk: the whole store's counts are no lower."""
    chunk = store.read_chunk(0)
    n_rows = chunk.row_offsets.shape[0] - 1
    matrix = sp.csr_matrix((chunk.values, chunk.indices, chunk.row_offsets), shape=(n_rows, store.layout.n_parameters))
    example_of_row = np.repeat(np.arange(chunk.n_examples), n_rows // max(chunk.n_examples, 1))
    return int((examples_per_column(matrix, example_of_row, chunk.n_examples) >= min_nonzero_per_col).sum())


def estimate_fit_memory(store: PefStore, n_components: int, *, solver: str | None = None, min_nonzero_per_col: int = 1,
                        device=None, n_ranks: int = 1) -> FitMemoryEstimate | None:
    """The fit's peak memory, a lower-bound-ish estimate (see the module's notes); None where the store
    cannot be read (incomplete or damaged: its load says what is wrong). ``n_ranks``: processes that
    split the parameter columns (``torchrun ... -m workbench fit``), each holding its share of the data and components."""
    if not store.complete:
        return None
    try:
        n_values, n_rows = _stored_shape(store)
        n_kept = _kept_at_least(store, min_nonzero_per_col)
    except Exception:  # noqa: BLE001 - a damaged chunk is named by the load that follows
        return None
    components = COMPONENT_COPIES * 4.0 * n_components * n_kept / n_ranks  # float32 (r, kept) on each rank
    gram = 8.0 * n_rows**2 if solver == "dual" else 0.0  # float64, whole on every rank
    host = FIXED_BYTES + HOST_BYTES_PER_VALUE * n_values / n_ranks
    cuda = device is not None and torch.device(device).type == "cuda"
    device_bytes = DEVICE_BYTES_PER_VALUE * n_values / n_ranks + components + gram if cuda else None
    if not cuda:
        host += components + gram
    return FitMemoryEstimate(n_values, n_rows, n_kept, n_components, solver, int(host),
                             None if device_bytes is None else int(device_bytes))


def check_fit_memory(store: PefStore, n_components: int, *, solver: str | None = None, min_nonzero_per_col: int = 1,
                     device=None, n_ranks: int = 1, resume: str, refuse: bool = True) -> FitMemoryEstimate | None:
    """Log the fit's estimate and refuse (InsufficientResourcesError, with both numbers and the fixes)
    a fit the memory available cannot hold, before the store is loaded; the store is left in place.
    ``resume`` says how the same fit is run again on a bigger machine. ``refuse=False`` logs the refusal as a
    warning instead: one rank of several refusing alone left the others waiting in the fit's collectives."""
    estimate = estimate_fit_memory(store, n_components, solver=solver, min_nonzero_per_col=min_nonzero_per_col,
                                   device=device, n_ranks=n_ranks)
    if estimate is None:
        return None
    logger.info("fit of %s: %s", store.path, estimate)
    needs = [(estimate.host_bytes, available_memory(None), "memory")]
    if estimate.device_bytes is not None:
        needs.append((estimate.device_bytes, available_memory(torch.device(device)), f"{device} memory"))
    for needed, available, where in needs:
        if available is not None and needed > available:
            dual = " or solver='primal' (the dual's Gram of the examples is n_rows² × 8 bytes)" if solver == "dual" else ""
            error = InsufficientResourcesError(
                f"the fit of the PEF store {store.path} needs at least {format_bytes(needed)} of {where} "
                f"({estimate.n_values} stored values, {estimate.n_rows} rows, ≥ {estimate.n_kept_at_least} kept "
                f"parameters × {n_components} components), but only {format_bytes(available)} is available. Fit "
                f"fewer examples, PEFs of a smaller n_values, a narrower parameter scope (include=/exclude=, or "
                f"--scope), fewer components{dual}, or move to a machine with more memory. The PEF store was "
                f"left in place: {resume}"
            )
            if refuse:
                raise error
            logger.warning("%s", error)
    return estimate

"""Peak memory of a fit's pre-processing, ours against the plain whole-matrix version, and the fit's estimate.

For a PEF store, prints the peak memory (above what is in use before the step, Linux's VmHWM reset with
/proc/self/clear_refs) of counting the examples per parameter and of pruning and scaling the PEF matrix, done a
block of rows at a time (``workbench.npeff.data``) and as a plain implementation does it (a COO matrix of the
whole, a float64 copy of the whole), then the whole fit's peak beside ``app.fit_memory``'s estimate.

    python benchmarks/fit_memory.py runs/demo/pefs

Measured 2026-12-08 (load average 1.9, a CI run beside it) on the MiniLM demo run's store (400 examples,
3.3 M stored values, 38 MB), each step in a process of its own: counting 65 MB against 185 MB plain (2.8x),
pruning and scaling 88 MB against 273 MB plain (3.1x); the whole fit (16 components, 10 steps) 167 MB above the
loaded PEFs, where the code before the block-wise steps (commit 68117df) took 338 MB.
"""

import sys

import numpy as np
import scipy.sparse as sp

from workbench import LrmNpeff, DNpeff
from workbench.app.fit_memory import estimate_fit_memory
from workbench.npeff.data import examples_per_column, scaled_rows
from workbench.store.pef_store import PefStore


def peak_of(step):
    """(result, peak MB above the memory in use when ``step`` began)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    result = step()
    return result, (_status("VmHWM") - before) / 1e3


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def plain_examples_per_column(matrix, example_of_row, n_examples):
    rows = np.repeat(example_of_row, np.diff(matrix.indptr))
    touched = sp.csr_matrix((np.ones(matrix.nnz, dtype=np.int32), (rows, matrix.indices)),
                            shape=(n_examples, matrix.shape[1]))
    touched.sum_duplicates()
    return np.diff(touched.tocsc().indptr)


def plain_scaled_rows(matrix, row_scale):
    return sp.csr_matrix(sp.diags(row_scale.astype(np.float64)) @ matrix.astype(np.float64), dtype=np.float32)


def measure(path: str, step: str) -> float:
    """Peak MB of one step, in this process, after loading the store."""
    store = PefStore(path)
    pefs = store.load()
    estimator = (LrmNpeff if store.kind == "lrm" else DNpeff)(n_components=16, progress=False)
    rows, n = pefs.example_of_row(), pefs.n_examples
    counts = examples_per_column(pefs.matrix, rows, n)
    kept = np.flatnonzero(counts >= estimator.min_nonzero_per_col)
    scale = np.repeat(estimator._row_scale(pefs), len(rows) // n)
    steps = {
        "count": lambda: examples_per_column(pefs.matrix, rows, n),
        "plain count": lambda: plain_examples_per_column(pefs.matrix, rows, n),
        "scale": lambda: scaled_rows(pefs.matrix[:, kept], scale),
        "plain scale": lambda: plain_scaled_rows(pefs.matrix, scale)[:, kept],
        "fit": lambda: (estimator.set_params(n_iters_g_only=5, n_iters_joint=5) if store.kind == "lrm"
                        else estimator.set_params(n_iters=10)).fit(pefs),
    }
    del counts
    return peak_of(steps[step])[1]


def main(path: str) -> None:
    """Each step in a process of its own: in one, the allocator's reuse of an earlier step's memory moved the peaks."""
    import subprocess

    def peak(step: str) -> float:
        out = subprocess.run([sys.executable, __file__, path, step], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    store = PefStore(path)
    print(f"{path}: {sum(store.read_chunk(i).values.size for i in range(store.n_chunks)):,} stored values, "
          f"{store.layout.n_parameters:,} parameters")
    for what, step in (("examples per parameter", "count"), ("pruned and scaled matrix", "scale")):
        ours, plain = peak(step), peak("plain " + step)
        print(f"{what}: {ours:.0f} MB, plain {plain:.0f} MB ({plain / max(ours, 1):.1f}x)")
    print(f"fit (16 components, 10 steps): {peak('fit'):.0f} MB above the loaded PEFs; the estimate before loading, "
          f"which counts the load too: {estimate_fit_memory(store, 16).host_bytes / 1e6:.0f} MB")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        print(measure(sys.argv[1], sys.argv[2]))
    else:
        main(sys.argv[1])

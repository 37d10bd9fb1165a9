"""How much an example's coefficients (``transform``) depend on the batch it is fitted in, in a run folder.

Prints, for the workbench's steps and for the steps it replaced (one random start drawn for the whole batch,
one stop for all), the largest difference between the coefficients of some examples fitted alone or in a
small batch and the same examples fitted among all the run's, over the largest coefficient.

    python benchmarks/transform_batch_dependence.py RUN_FOLDER

Measured 2026-12-07 (load average 3.9): the MiniLM demo run (400 examples, 16 components) 1.5e-8 against
1.7e-3 before; the tiny demo run (60 examples, 4 components) 0 against 1.1e-6.
"""

import sys
import warnings

import numpy as np
import torch

import workbench.npeff.base as base
import workbench.npeff.d as d_npeff
import workbench.npeff.lrm as lrm_npeff
from workbench.app.explore import RunExplorer
from workbench.store import load_pefs


def batch_dependence(estimator, pefs) -> float:
    together = estimator.transform(pefs)
    worst = 0.0
    for rows in (np.arange(10), np.arange(len(together) // 2, len(together)), np.array([3])):
        alone = estimator.transform(pefs[rows])
        worst = max(worst, float(np.abs(alone - together[rows]).max() / together[rows].max()))
    return worst


def replaced_steps(numer, Q, n_iters, tol=base.TRANSFORM_TOL):
    """The steps before 2026-12-07: a random start for the whole batch, stopped when all of it settled."""
    W = torch.rand(numer.shape, generator=torch.Generator().manual_seed(2))
    before, floor = W, base.division_floor(numer, dim=1)
    for it in range(n_iters):
        W = W * numer / (W @ Q + floor)
        if tol and it % 10 == 9:
            if float((W - before).abs().max()) <= tol * float(W.abs().max()):
                break
            before = W
    return W


def main(run: str) -> None:
    warnings.simplefilter("ignore")
    estimator, pefs = RunExplorer.open(run).decomposition, load_pefs(f"{run}/pefs")
    print(f"workbench steps:  largest difference / largest coefficient {batch_dependence(estimator, pefs):.2e}")
    lrm_npeff.multiplicative_w_steps = d_npeff.multiplicative_w_steps = replaced_steps
    print(f"replaced steps:   largest difference / largest coefficient {batch_dependence(estimator, pefs):.2e}")


if __name__ == "__main__":
    main(sys.argv[1])

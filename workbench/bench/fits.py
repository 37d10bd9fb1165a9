"""Fit figures: one LRM-NPEFF iteration against its memory floor and torch's products, a whole
fit by each solver, and D-NPEFF against scikit-learn's NMF."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from ..core import compiled
from ..core.params import ParameterLayout
from ..core.pefs import DPefs
from ..npeff import DNpeff, LrmNpeff
from ..npeff.data import prepare
from ..npeff.solvers import ExampleSpace, make_space
from ..runner import compute_pefs
from .cases import embedded_case, random_sparse
from .figures import Figure, Report, best_time


def lrm_iteration_figure(report: Report, n_rows: int, n_cols: int, nnz_per_row: int, r: int,
                         bandwidth: float, device: torch.device, repeats: int, plain: bool,
                         make=random_sparse, solvers=("primal", "dual")) -> None:
    """Seconds per joint LRM-NPEFF iteration (W step + G step with its exact line search),
    for each solver (workbench.npeff.solvers); for the dual also its one-off Gram matrix."""
    X = make(n_rows, n_cols, nnz_per_row)
    X.data *= 1e-3  # PEF-like scale; the line search makes the step size irrelevant
    n_slots = 2
    data = prepare(X, float(X.power(2).sum()), n_rows // n_slots, device)
    G0 = (1e-3 * torch.randn((r, n_cols), generator=torch.Generator().manual_seed(1))).to(device)

    def iteration_time(space) -> float:
        model = LrmNpeff(n_components=r, progress=False)
        W = torch.rand((data.n_examples, r), generator=torch.Generator().manual_seed(0)).to(device)
        G = space.initial(G0.clone())  # the primal steps its G in place
        state = dict(W=W, G=G, AG=space.times_t(G), GG=space.gram(G, G).float(), loss=math.inf, first_loss=math.inf)

        def step():
            model._w_step(data, state, n_slots)
            model._g_step(space, state, n_slots, "joint", 0)

        return best_time(step, repeats, device)

    plain_time = None
    if plain:
        with compiled.disabled():
            plain_time = iteration_time(make_space("primal", data, G0))
    bytes_moved = 2 * X.nnz * 8 + 2 * r * n_cols * 4  # X twice (values + indices), G read, gradient written
    floor = bytes_moved / bandwidth
    what = f"X {n_rows} x {n_cols}, {X.nnz / 1e6:.3g} M non-zeros, r = {r}"
    per_iteration = {}
    for solver in solvers:
        start = time.perf_counter()
        space = make_space(solver, data, G0)
        setup = time.perf_counter() - start
        per_iteration[solver] = iteration_time(space)
        report.add(Figure(f"LRM-NPEFF, {solver}: s per iteration", per_iteration[solver], "s", floor, plain_time,
                          higher_is_better=False, note=what))
        if isinstance(space, ExampleSpace):
            as_primal = f", {setup / per_iteration['primal']:.1f} primal iterations" if "primal" in per_iteration else ""
            report.add(Figure("LRM-NPEFF, dual: its Gram X Xᵀ, once", setup, "s", higher_is_better=False,
                              note=f"= {setup / per_iteration[solver]:.0f} dual iterations{as_primal}"))
        del space


def lrm_fit_figure(report: Report, n_examples: int, r: int, n_iters_g_only: int, n_iters_joint: int,
                   device: torch.device) -> None:
    """Seconds of a whole LRM-NPEFF fit (the demo's settings) of the embedded model's PEFs,
    solver "auto" (on a GPU: "dual") against the primal: what the dual's one-off Gram matrix
    buys end to end."""
    model, inputs = embedded_case(device, n_examples)
    pefs = compute_pefs(model, inputs, n_values=8192, batch_size=32, device=device, progress=False)
    seconds, fits = {}, {}
    other = "auto" if device.type == "cpu" else "dual"
    for solver in ("primal", other):
        estimator = LrmNpeff(r, n_iters_g_only=n_iters_g_only, n_iters_joint=n_iters_joint, solver=solver,
                             device=device, progress=False)
        start = time.perf_counter()
        fits[solver] = estimator.fit(pefs)
        seconds[solver] = time.perf_counter() - start
    losses = {k: float(f.loss_history_["joint"][-1, 1]) for k, f in fits.items()}
    note = (f"{n_examples} examples, r = {r}, {n_iters_g_only} + {n_iters_joint} steps; {other} took the "
            f"{fits[other].solver_}; final losses {losses[other]:.4g} vs primal {losses['primal']:.4g}")
    report.add(Figure(f"LRM-NPEFF fit, embedded PEFs ({other} vs primal)", seconds[other], "s", plain=seconds["primal"],
                      higher_is_better=False, note=note))


def d_npeff_figure(report: Report, n_rows: int, n_cols: int, nnz_per_row: int, r: int, n_iters: int, device: torch.device) -> None:
    """Seconds for D-NPEFF to reach the loss scikit-learn's NMF(solver="mu") reaches in n_iters."""
    from sklearn.decomposition import NMF

    D = random_sparse(n_rows, n_cols, nnz_per_row, seed=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nmf = NMF(n_components=r, solver="mu", init="random", max_iter=n_iters, tol=0, random_state=0)
        nmf.fit(D)
    sklearn_time = time.perf_counter() - start
    target = float(nmf.reconstruction_err_) ** 2

    pefs = DPefs(
        F=D, frobenius_norms=np.ones(n_rows, dtype=np.float32), labels=np.zeros(n_rows, dtype=np.int64),
        logits=np.zeros((n_rows, 2), dtype=np.float32), layout=ParameterLayout(("p",), ((n_cols,),)), info={},
    )
    ours = DNpeff(n_components=r, n_iters=3 * n_iters, normalize=False, log_every=1, device=device, progress=False)
    start = time.perf_counter()
    ours.fit(pefs)
    total = time.perf_counter() - start
    losses = ours.loss_history_["joint"]
    reached = np.flatnonzero(losses[:, 1] <= target)
    if reached.size == 0:
        report.add(Figure("D-NPEFF vs sklearn NMF(mu): seconds to its loss", math.inf, "s", None, sklearn_time,
                          higher_is_better=False, note=f"did not reach {target:.4g} in {3 * n_iters} iterations"))
        return
    iterations = int(losses[reached[0], 0]) + 1
    # iterations cost alike, so the time to the target is the share of the fit that reached it
    ours_time = total * iterations / (3 * n_iters)
    what = f"{n_rows} x {n_cols}, {D.nnz / 1e6:.3g} M non-zeros, r = {r}: {iterations} iterations vs sklearn's {n_iters}"
    report.add(Figure("D-NPEFF vs sklearn NMF(mu): seconds to its loss", ours_time, "s", None, sklearn_time,
                      higher_is_better=False, note=what))

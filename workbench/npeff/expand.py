"""Growing a fitted dictionary: fit more components while the fitted ones stay as they are.

``Estimator(n_components=r + k).fit(pefs, init=previous)`` (or ``previous.expand(pefs, k)``)
starts from ``previous``'s r components and coefficients and fits k new components, the
r old ones frozen: in every G (or H) step the old components' rows of the step are zero,
so they end exactly as they were, and the new ones fit what the old ones leave
unexplained. The W steps (multiplicative) update every coefficient, old components'
included: an example's share between an old and a new component has to move when the
new one explains part of it. ``init`` with ``keep_init=False`` frees every component (a
warm start: a few joint steps after an expansion, or more steps of the same fit).

Why ``fit(pefs, init=previous)``: a scikit-learn estimator takes its settings in
``__init__`` (the new size is the new estimator's ``n_components``) and data and
starting points in ``fit``, as ``NMF.fit_transform(X, W=..., H=...)`` does; ``expand`` is the
short form for the common case, a clone of ``previous`` with k more components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.arguments import flag
from ..store.fingerprints import fingerprint_pefs


@dataclass
class Start:
    """Where a fit starts when given ``init``: the previous fit's coefficients of these PEFs'
    examples and its components on this fit's kept columns; the first ``n_frozen`` stay fixed."""

    W: np.ndarray  # (n_examples, r_old)
    components: np.ndarray  # (r_old, n_kept), zeros on columns the previous fit did not keep
    n_frozen: int

    def continued(self, W: torch.Tensor, components: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A fit's random starts W (n_examples, r) and components (r, n_kept) with their
        first r_old columns and rows replaced by the previous fit's."""
        r_old = self.components.shape[0]
        old_W = torch.from_numpy(np.ascontiguousarray(self.W, dtype=np.float32))
        old_components = torch.from_numpy(np.ascontiguousarray(self.components, dtype=np.float32))
        return (torch.cat([old_W, W[:, r_old:].to(old_W.dtype)], dim=1),
                torch.cat([old_components, components[r_old:].to(old_components.dtype)], dim=0))


def continue_from(start: Start | None, W: torch.Tensor, components: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(W, components, number of frozen components) a fit starts from: its random starts as
    they are without ``start``, else continued from it (:meth:`Start.continued`)."""
    if start is None:
        return W, components, 0
    return (*start.continued(W, components), start.n_frozen)


def start_from(estimator, init, pefs, kept: np.ndarray, keep_init: bool) -> Start:
    """The start of ``estimator``'s fit of ``pefs`` (kept columns ``kept``) from the fitted
    ``init``; ValueError naming the fix when ``init`` cannot be continued this way."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    flag(keep_init, "keep_init")  # "no" would keep every component of init
    if type(init) is not type(estimator):
        raise TypeError(f"init must be a fitted {type(estimator).__name__}, got {type(init).__name__}")
    try:
        check_is_fitted(init)
    except NotFittedError:  # sklearn's words read as if the estimator being fitted were not fitted
        raise NotFittedError(f"init is an unfitted {type(init).__name__}: fit it first (init.fit(pefs)), or leave init "
                             "out to start from scratch") from None
    r_old, r = init.n_components, estimator.n_components
    if r < r_old or (keep_init and r == r_old):
        raise ValueError(
            f"n_components={r} must be larger than init's {r_old} to add components"
            + ("" if r < r_old else " (or pass keep_init=False to continue fitting all of them)")
        )
    if init.normalize != estimator.normalize:
        raise ValueError(f"init was fitted with normalize={init.normalize}; fit with the same setting")
    if pefs.layout != init.layout_:
        raise ValueError(
            "these PEFs were computed over other parameters than init's decomposition; "
            "grow a dictionary with PEFs of the same model and parameter filter"
        )
    position = np.searchsorted(kept, init.kept_columns_)
    inside = position < kept.size
    inside[inside] = kept[position[inside]] == init.kept_columns_[inside]
    dropped = np.flatnonzero(~inside)
    if dropped.size and keep_init and np.abs(init.components_[:, dropped]).max() > 0:
        raise ValueError(
            f"{dropped.size} parameters of init's components are pruned from these PEFs (e.g. column "
            f"{int(init.kept_columns_[dropped[0]])}), so the old components cannot stay as they are; "
            f"fit with min_nonzero_per_col={init.min_nonzero_per_col} (init's) on the same PEFs"
        )
    components = np.zeros((r_old, kept.size), dtype=np.float32)
    components[:, position[inside]] = init.components_[:, inside]
    same = init.pef_info_.get("pefs_fingerprint") == fingerprint_pefs(pefs) and init.W_.shape[0] == pefs.n_examples
    W = init.W_ if same else init.transform(pefs)
    return Start(W=np.asarray(W, dtype=np.float32), components=components, n_frozen=r_old if keep_init else 0)


def continued_history(previous: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The loss history of a fit started from ``previous``'s: each phase's new records after the
    old ones, their iteration numbers continuing from the old last one."""
    history = {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in previous.items()}
    for phase, records in new.items():
        records = np.asarray(records, dtype=np.float64).reshape(-1, 2).copy()
        old = history.get(phase, np.zeros((0, 2)))
        if old.size:
            records[:, 0] += old[-1, 0] + 1
        history[phase] = np.concatenate([old, records])
    return history

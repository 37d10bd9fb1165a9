"""A fit of sketched PEFs, mapped back to the parameters: :func:`unsketch`.

The components of an LRM-NPEFF fit of sketched PEFs live in the sketch's d coordinates;
:func:`unsketch` returns the same decomposition on the parameter axis (components M X,
:mod:`workbench.npeff.sketched`), so that perturbation checks, highlights and exports
work on it as on any fit. X, the PEFs' rows on the parameter axis, comes from the model
(one more pass over the examples, exact gradients) or from PEFs of the same examples on
the parameter axis (top-n PEFs: X is then approximate as well).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.pefs import LrmPefs
from ..core.sketch import CountSketch
from ..npeff.lrm import LrmNpeff
from ..npeff.sketched import back_projection, unsketched
from ..runner.sketch import parameter_products


def unsketch(estimator: LrmNpeff, pefs: LrmPefs, source, inputs=None, *, batch_size: int = 16,
             device: str | torch.device | None = None, progress: bool = True) -> LrmNpeff:
    """``estimator`` (fitted on the sketched ``pefs``) as a fit on the parameter axis.

    source: the model the sketched PEFs came from, with its ``inputs`` (the same examples,
        in the same order); or :class:`LrmPefs` of the same examples on the parameter axis.
    """
    _, parameters = CountSketch.from_info(pefs.info)
    if not isinstance(source, (LrmPefs, torch.nn.Module)):
        raise TypeError(f"source must be the model the sketched PEFs came from (with its inputs), or LrmPefs of the "
                        f"same examples on the parameter axis; got {type(source).__name__}")
    ours, theirs = pefs.info.get("model_fingerprint"), getattr(source, "info", {}).get("model_fingerprint")
    if ours and theirs and ours != theirs:  # same names and shapes, other weights: another model's gradients
        raise ValueError("source PEFs come from another model than the sketched PEFs (their weights' fingerprints "
                         "differ); pass the PEFs of the model the sketch was taken of")
    M = back_projection(estimator, pefs)  # (r, n_examples · n_slots)
    if isinstance(source, LrmPefs):
        if source.layout != parameters or source.n_examples != pefs.n_examples or source.n_slots != pefs.n_slots:
            raise ValueError(
                f"source PEFs must be the sketched PEFs' examples ({pefs.n_examples}, {pefs.n_slots} slots each) on their "
                f"parameter axis ({parameters.n_parameters} parameters); got {source.n_examples} examples, "
                f"{source.n_slots} slots, {source.n_parameters} parameters"
            )
        products = np.asarray((source.X.T.astype(np.float64) @ M.T).T)
    else:
        if inputs is None:
            raise TypeError("unsketch(estimator, pefs, model, inputs): the model's inputs are needed to recompute its gradients")
        coefficients = M.T.reshape(pefs.n_examples, pefs.n_slots, -1)
        products = parameter_products(source, inputs, coefficients, pefs.info, classes=pefs.classes,
                                      batch_size=batch_size, device=device, progress=progress)
    return unsketched(estimator, pefs, products)

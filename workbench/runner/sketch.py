"""One pass over the exact gradients for a sketched fit's way back: :func:`parameter_products`.

A fit of sketched PEFs maps back to the parameters as M X (:mod:`workbench.npeff.sketched`),
X the PEFs' rows on the parameter axis. This computes M X from the model, batch by batch,
with the sketched run's own settings (parameters, class slots, method), keeping only the
(r, m) result: nothing of size m per example is stored.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.device import run_device
from ..core.sketch import CountSketch
from ..fisher import PefConfig, check_plan, eval_mode, make_plan, n_inputs, slice_inputs, split_labels
from ..fisher.checks import computed_alone
from ..fisher.inputs import groups_as_computed
from ..fisher.gradients import BatchGradients
from ..fisher.sketch import gradient_products
from ..store.fingerprints import check_same_model


def parameter_products(model: nn.Module, inputs, coefficients: np.ndarray, info: dict, *, classes: np.ndarray | None = None,
                       batch_size: int = 16, device: str | torch.device | None = None, progress: bool = True) -> np.ndarray:
    """Σ_i Σ_s coefficients[i, s] ⊗ A_i[:, s], (r, n_parameters) float32, over the exact
    gradients of ``inputs`` under ``model``, for ``coefficients`` (n_examples, n_slots, r).

    ``info`` is the sketched PEFs' (``pefs.info``): it says which parameters and class slots
    their run took, and which model (refused if another). ``classes`` (n_examples, n_slots),
    the sketched PEFs' slot classes, are checked against the model's (the same examples)."""
    _, parameters = CountSketch.from_info(info)
    check_same_model(info, model, "the sketched PEFs")
    inputs, _ = split_labels(inputs, None)
    n = n_inputs(inputs)
    if coefficients.ndim != 3 or coefficients.shape[0] != n:
        raise ValueError(f"coefficients have shape {coefficients.shape}, expected ({n}, n_slots, n_components): one row "
                         "per example of inputs; pass the inputs the sketched PEFs were computed from")
    config = PefConfig("lrm", None, info.get("top_k_classes"), info.get("include"), info.get("exclude"), batch_size,
                       info.get("method", "hooks"))
    device = run_device(model, device)
    model.to(device)
    plan = make_plan(model, config)
    if plan.layout != parameters:
        raise ValueError("the model's selected parameters are not those the sketched PEFs were computed over; "
                         "use the model and parameter filter of that run")
    out = torch.zeros((coefficients.shape[2], parameters.n_parameters), dtype=torch.float32, device=device)
    with eval_mode(model), tqdm(total=n, desc="components back on the parameters", unit="ex", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = slice_inputs(inputs, start, stop, device)
            check_plan(model, plan, batch, config.top_k_classes)  # as a PEF run does: the rules checked on its first batch
            # as a PEF run does, a model whose outputs change with padding takes examples of one length at a time
            for rows, part in groups_as_computed(batch, computed_alone(model, plan, batch)):
                grads = BatchGradients(model, plan, part, config.top_k_classes, factor_two_classes=True)
                examples = start + rows.numpy()
                if classes is not None and not np.array_equal(grads.classes.cpu().numpy(), classes[examples]):
                    raise ValueError(f"the model's most probable classes of examples {start}..{stop - 1} are not the "
                                     "sketched PEFs' slots: these are not the inputs (or the model) the PEFs were "
                                     "computed from")
                gradient_products(grads, torch.from_numpy(coefficients[examples]).to(device), out)
            bar.update(stop - start)
    return out.cpu().numpy()

"""Per-example Fisher matrices (PEFs) of a classifier, batch by batch.

For example x_i and its k most probable classes y_1..y_k (k = ``top_k_classes``, or all
classes), the low-rank PEF is A_i with columns √p(y_s|x_i) ∇θ log p(y_s|x_i); the diagonal
PEF is f_i = Σ_s A_i[:, s]² (method notes, section 1). Each is kept sparse: its
``n_values`` largest entries, and the Frobenius norm of the full PEF.

Two exact ways to get the per-example gradients:

- ``method="hooks"`` (default): one batched forward, one batched backward per class slot
  to the *outputs* of the layers that own the selected parameters (:mod:`.hooks`,
  :mod:`.gradients`), then each layer's per-example parameter gradients from its stored
  input and output gradient (the Opacus approach), mostly kept factored (:mod:`.rules`)
  so that the top entries are found without writing every gradient out (:mod:`.sparsify`,
  :mod:`.selection`, :mod:`.kernels`; docs/design.md, "Fast exact PEFs"). Layer types with
  a rule are listed in ``PER_EXAMPLE_RULES``; parameters of any other module get
  per-example gradients from ``torch.func`` over the batch (:mod:`.transforms`), or, where
  vmap cannot run the model, fall back to the loop below.
- ``method="loop"``: one example at a time, one ``torch.autograd.grad`` per class, then
  ``torch.topk``. The plain reference the hooks path is tested against.

:func:`iter_pef_chunks` (:mod:`.batches`) yields one :class:`~workbench.core.chunks.PefChunk`
per batch; :mod:`workbench.runner` runs it into memory (``compute_pefs``) or a store
(``write_pefs``). This layer reads no file and writes none.
"""

from .batches import iter_pef_chunks
from .checks import check_plan
from .config import PefConfig, Plan, make_plan, pef_info, stored_layout
from .inputs import Inputs, NotClassLogitsError, class_logits, eval_mode, n_inputs, pef_mode, slice_inputs, split_labels
from .rules import PER_EXAMPLE_RULES, BlockGradient, DenseGradient, PerExampleRule, register_rule

__all__ = [
    "PER_EXAMPLE_RULES",
    "BlockGradient",
    "DenseGradient",
    "Inputs",
    "NotClassLogitsError",
    "PefConfig",
    "PerExampleRule",
    "Plan",
    "check_plan",
    "class_logits",
    "eval_mode",
    "iter_pef_chunks",
    "make_plan",
    "n_inputs",
    "pef_mode",
    "pef_info",
    "register_rule",
    "slice_inputs",
    "split_labels",
    "stored_layout",
]

"""Per-example Fisher matrices (PEFs) of a classifier, batch by batch.

For example x_i and its k most probable classes y_1..y_k (k = ``top_k_classes``, or all
classes), the low-rank PEF is A_i with columns √p(y_s|x_i) ∇θ log p(y_s|x_i); the diagonal
PEF is f_i = Σ_s A_i[:, s]² (method notes, section 1). Each is kept sparse: its
``n_values`` largest entries, and the Frobenius norm of the full PEF.

Two exact ways to get the per-example gradients:

- ``method="hooks"`` (default): one batched forward, one batched backward per class slot
  to the *outputs* of the layers that own the selected parameters, then each layer's
  per-example parameter gradients from its stored input and output gradient (the
  Opacus approach), mostly kept factored (:mod:`workbench.fisher.rules`) so that the top
  entries are found without writing every gradient out (:mod:`workbench.fisher.selection`;
  docs/design.md, "Fast exact PEFs"). Layer types with a rule are listed in
  ``PER_EXAMPLE_RULES``; parameters of any other module fall back to the loop below.
- ``method="loop"``: one example at a time, one ``torch.autograd.grad`` per class, then
  ``torch.topk``. The plain reference the hooks path is tested against.

Batches yield :class:`PefChunk` objects; :func:`compute_pefs` gathers them in memory and
:func:`workbench.store.write_pefs` streams them to disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .. import kernels
from ..params import NameFilter, ParameterLayout, layout_of, select_parameters
from ..pefs import DPefs, LrmPefs
from .rules import PER_EXAMPLE_RULES, BlockGradient, DenseGradient, PerExampleRule, register_rule
from .selection import RunningTop, candidates, top_entries, top_entries_of_rows

__all__ = [
    "PER_EXAMPLE_RULES",
    "BlockGradient",
    "NotClassLogitsError",
    "PefChunk",
    "PefConfig",
    "PerExampleRule",
    "chunks_to_pefs",
    "compute_pefs",
    "iter_pef_chunks",
    "register_rule",
]

logger = logging.getLogger(__name__)

Inputs = Mapping[str, torch.Tensor] | torch.Tensor


class NotClassLogitsError(ValueError):
    """The model's forward does not return a (batch, n_classes) tensor of logits."""


# ---------------------------------------------------------------------------------------
# Configuration and results
# ---------------------------------------------------------------------------------------


@dataclass
class PefConfig:
    """What to compute. Stored beside the PEFs, so a resumed run can check it matches."""

    kind: str = "lrm"  # "lrm" or "d"
    n_values: int | None = 65536  # entries kept per example; None keeps all non-zeros
    top_k_classes: int | None = None  # None: all classes
    include: NameFilter = None  # regular expression(s) on parameter names
    exclude: NameFilter = None
    batch_size: int = 16
    method: str = "hooks"  # "hooks" or "loop"

    def __post_init__(self):
        for name in ("n_values", "top_k_classes", "batch_size"):
            value = getattr(self, name)
            if not (value is None and name != "batch_size") and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
                raise TypeError(f"{name} must be an integer{'' if name == 'batch_size' else ' or None'}, got {value!r}")
        if self.kind not in ("lrm", "d"):
            raise ValueError(f"kind must be 'lrm' or 'd', got {self.kind!r}")
        if self.method not in ("hooks", "loop"):
            raise ValueError(f"method must be 'hooks' or 'loop', got {self.method!r}")
        if self.n_values is not None and self.n_values < 1:
            raise ValueError(f"n_values must be a positive integer or None, got {self.n_values}")
        if self.top_k_classes is not None and self.top_k_classes < 1:
            raise ValueError(f"top_k_classes must be a positive integer or None, got {self.top_k_classes}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")

    def to_dict(self) -> dict:
        def filt(f):
            if callable(f):
                raise ValueError("a callable parameter filter cannot be recorded; pass regular expressions")
            return f if f is None or isinstance(f, str) else list(f)

        return {
            "kind": self.kind,
            "n_values": self.n_values,
            "top_k_classes": self.top_k_classes,
            "include": filt(self.include),
            "exclude": filt(self.exclude),
            "batch_size": self.batch_size,
            "method": self.method,
        }


@dataclass
class PefChunk:
    """The PEFs of one batch, sparse, in the layout the store writes.

    LRM: entries of row r = i * n_slots + s (example i, slot s) are
    ``values[row_offsets[r]:row_offsets[r+1]]`` at parameter ``indices[...]``.
    D: one row per example, so n_slots is 1 and ``classes`` is still (b, k).
    """

    values: np.ndarray  # (nnz,) float32
    indices: np.ndarray  # (nnz,) int64, parameter index on the flat axis
    row_offsets: np.ndarray  # (n_rows + 1,) int64
    classes: np.ndarray  # (b, k) int64
    frobenius_norms: np.ndarray  # (b,) float32
    labels: np.ndarray  # (b,) int64
    logits: np.ndarray  # (b, n_classes) float32
    arrays_order = ("values", "indices", "row_offsets", "classes", "frobenius_norms", "labels", "logits")

    @property
    def n_examples(self) -> int:
        return int(self.labels.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.arrays_order}


def chunks_to_pefs(
    chunks: list[PefChunk], kind: str, layout: ParameterLayout, info: dict | None = None
) -> LrmPefs | DPefs:
    """Concatenate chunks into one in-memory PEF set."""
    if not chunks:
        raise ValueError("no PEF chunks to concatenate")
    m = layout.n_parameters
    values = np.concatenate([c.values for c in chunks])
    indices = np.concatenate([c.indices for c in chunks])
    row_counts = np.concatenate([np.diff(c.row_offsets) for c in chunks])
    indptr = np.concatenate([[0], np.cumsum(row_counts)]).astype(np.int64)
    matrix = sp.csr_matrix((values, indices, indptr), shape=(len(row_counts), m))
    common = dict(
        frobenius_norms=np.concatenate([c.frobenius_norms for c in chunks]),
        labels=np.concatenate([c.labels for c in chunks]),
        logits=np.concatenate([c.logits for c in chunks]),
        layout=layout,
        info=dict(info or {}),
    )
    if kind == "lrm":
        return LrmPefs(X=matrix, classes=np.concatenate([c.classes for c in chunks]), **common)
    return DPefs(F=matrix, **common)


# ---------------------------------------------------------------------------------------
# Running the model
# ---------------------------------------------------------------------------------------


def n_inputs(inputs: Inputs) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if not isinstance(inputs, Mapping) or not inputs:
        raise TypeError("inputs must be a tensor or a non-empty dict of tensors with one row per example")
    sizes = {k: int(v.shape[0]) for k, v in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every input must have one row per example; got first dimensions {sizes}")
    return next(iter(sizes.values()))


def slice_inputs(inputs: Inputs, start: int, stop: int, device: torch.device) -> Inputs:
    """Rows start:stop, moved to device; padding columns no row of the slice uses are cut."""
    if isinstance(inputs, torch.Tensor):
        return inputs[start:stop].to(device)
    batch = {k: v[start:stop] for k, v in inputs.items()}
    mask = batch.get("attention_mask")
    if mask is not None and mask.ndim == 2:
        full = mask.shape[1]
        used = int(mask.sum(dim=1).max()) if mask.shape[0] else full
        if mask[:, used:].any():  # left padding: keep everything
            used = full
        batch = {k: v[:, :used] if v.ndim >= 2 and v.shape[1] == full else v for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


def class_logits(model: nn.Module, batch: Inputs) -> torch.Tensor:
    """Run the model and return (batch, n_classes) logits, or say clearly why not."""
    out = model(**batch) if isinstance(batch, Mapping) else model(batch)
    logits = getattr(out, "logits", out)
    if isinstance(logits, (tuple, list)) and logits:
        logits = logits[0]
    n = n_inputs(batch)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise NotClassLogitsError(
            f"the model's output should be class logits of shape (batch={n}, n_classes>=2), got {shape}. "
            "Wrap the model so its forward returns one logit per class (for a language model, see "
            "workbench.lm), or pass a model whose output has a .logits attribute of that shape."
        )
    return logits


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Dropout off while PEFs are taken; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@dataclass
class _Capture:
    """One call of a layer that owns selected parameters: its input and output."""

    module: nn.Module
    layer_input: torch.Tensor
    output: torch.Tensor


@dataclass
class _CaptureLayers:
    """Context manager that records the inputs and outputs of the given layers.

    A layer whose output is shared by the whole batch (BERT's position embeddings, computed
    once with a batch dimension of 1 and broadcast) has no per-example output gradient;
    its output is expanded to the batch here so that it gets one. Hooks live here, not on
    the model, and are removed on exit, also after an exception.
    """

    modules: list[nn.Module]
    batch_size: int
    captures: list[_Capture] = field(default_factory=list)
    unbatched: set[int] = field(default_factory=set)  # ids of layers with no batch dimension
    _handles: list = field(default_factory=list)

    def __enter__(self) -> "_CaptureLayers":
        for module in self.modules:
            self._handles.append(module.register_forward_hook(self._record))
        return self

    def _record(self, module, args, output):
        if not (isinstance(output, torch.Tensor) and output.requires_grad and args):
            return None
        layer_input = args[0].detach()
        if output.shape[0] == 1 and self.batch_size > 1 and layer_input.shape[0] == 1:
            output = output.expand(self.batch_size, *output.shape[1:])
            layer_input = layer_input.expand(self.batch_size, *layer_input.shape[1:])
        if output.shape[0] == self.batch_size and layer_input.shape[0] == self.batch_size:
            self.captures.append(_Capture(module, layer_input, output))
        else:
            self.unbatched.add(id(module))
        return output

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass
class _Plan:
    """Which selected parameters the hooks path covers, and where each sits on the flat axis."""

    named: list[tuple[str, nn.Parameter]]
    layout: ParameterLayout
    rule_modules: list[nn.Module]  # modules with a rule that own selected parameters
    owned: dict[int, list[tuple[str, int]]]  # id(module) -> [(attribute name, parameter index)]
    fallback: list[int]  # parameter indices no rule covers

    @classmethod
    def make(cls, model: nn.Module, named: list[tuple[str, nn.Parameter]], use_rules: bool) -> "_Plan":
        index_of = {id(p): k for k, (_, p) in enumerate(named)}
        owned: dict[int, list[tuple[str, int]]] = {}
        rule_modules = []
        covered = set()
        if use_rules:
            for module in model.modules():
                if type(module) not in PER_EXAMPLE_RULES:
                    continue
                mine = [(a, index_of[id(p)]) for a, p in module.named_parameters(recurse=False) if id(p) in index_of]
                if mine:
                    owned[id(module)] = mine
                    rule_modules.append(module)
                    covered.update(k for _, k in mine)
        fallback = [k for k in range(len(named)) if k not in covered]
        return cls(named, layout_of(named), rule_modules, owned, fallback)


# ---------------------------------------------------------------------------------------
# Per-example gradients of one batch
# ---------------------------------------------------------------------------------------


def _slot_classes(log_probs: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """(b, k): each example's k most probable classes, most probable first."""
    k = log_probs.shape[1] if top_k is None else min(top_k, log_probs.shape[1])
    return log_probs.topk(k, dim=1, sorted=True).indices


def _example_slice(batch: Inputs, i: int) -> Inputs:
    """Example i alone, without padding (the plain per-example computation)."""
    if isinstance(batch, torch.Tensor):
        return batch[i : i + 1]
    one = {k: v[i : i + 1] for k, v in batch.items()}
    mask = one.get("attention_mask")
    if mask is not None and mask.ndim == 2 and not mask[0, int(mask.sum()) :].any():
        used, full = int(mask.sum()), mask.shape[1]
        one = {k: v[:, :used] if v.ndim >= 2 and v.shape[1] == full else v for k, v in one.items()}
    return one


def _loop_gradients(model, batch, classes, params, i) -> list[torch.Tensor]:
    """Example i's gradients (k, *shape) of log p(y_s|x_i) w.r.t. params, one backward per slot."""
    log_probs = torch.log_softmax(class_logits(model, _example_slice(batch, i)).float(), dim=-1)[0]
    per_slot = []
    for s in range(classes.shape[1]):
        grads = torch.autograd.grad(log_probs[classes[i, s]], params, retain_graph=True, allow_unused=True)
        per_slot.append([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
    return [torch.stack([slot[j] for slot in per_slot]).float() for j in range(len(params))]


def output_gradients(log_probs: torch.Tensor, classes: torch.Tensor, outputs: list[torch.Tensor],
                     scale: torch.Tensor | None = None) -> list[torch.Tensor]:
    """For each layer output (b, ...), the gradients of log p(y_s|x_i) for every slot s: (k, b, ...).

    One backward per slot of Σ_i log p(y_is|x_i); examples do not interact in eval mode,
    so row i of the result is example i's own gradient. ``scale`` (b, k): example i's
    slot-s gradients are multiplied by scale[i, s] (and kept in at least float32) as
    they are written into the result, one pass rather than a copy and then a product.
    """
    if not outputs:
        return []
    k = classes.shape[1]
    if k == 2 and log_probs.shape[1] == 2:
        return _two_class_output_gradients(log_probs, classes, outputs, scale)
    stacked: list[torch.Tensor | None] = [None] * len(outputs)
    for s in range(k):
        objective = log_probs.gather(1, classes[:, s : s + 1]).sum()
        grads = torch.autograd.grad(objective, outputs, retain_graph=True, allow_unused=True)
        for j, (g, o) in enumerate(zip(grads, outputs)):
            if stacked[j] is None:
                dtype = o.dtype if scale is None else torch.promote_types(o.dtype, torch.float32)
                stacked[j] = torch.empty((k, *o.shape), dtype=dtype, device=o.device)
            if g is None:
                stacked[j][s].zero_()
            elif scale is None:
                stacked[j][s].copy_(g)
            else:
                torch.mul(g, scale[:, s].reshape(-1, *[1] * (g.ndim - 1)), out=stacked[j][s])
    return stacked


def _two_class_gradient(log_probs, classes, outputs) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """A two-class model's output gradients from one backward pass instead of two.

    With two classes, ∇ log p₀ = p₁ ∇(z₀ − z₁) and ∇ log p₁ = −p₀ ∇(z₀ − z₁) (the
    log-sum-exp's gradients cancel), so both slots' gradients are multiples of one
    gradient, that of Σ_i log p(0|x_i) − log p(1|x_i). Returns that gradient for each
    output (None where unused) and the multiples (b, 2), which take the other class's
    probability from its log-probability: 1 − p computed in float32 would round to 0
    for a confident example, as the softmax's own backward does."""
    w = torch.autograd.grad((log_probs[:, 0] - log_probs[:, 1]).sum(), outputs, retain_graph=True, allow_unused=True)
    p_other = log_probs.detach().flip(1).gather(1, classes).exp()  # (b, 2): p of the class not in the slot
    return list(w), torch.where(classes == 0, p_other, -p_other)


def _two_class_output_gradients(log_probs, classes, outputs, scale):
    """:func:`output_gradients` of a two-class model: :func:`_two_class_gradient`, stacked."""
    w, multiple = _two_class_gradient(log_probs, classes, outputs)
    if scale is not None:
        multiple = multiple * scale
    stacked = []
    for g, o in zip(w, outputs):
        dtype = o.dtype if scale is None else torch.promote_types(o.dtype, torch.float32)
        out = torch.empty((2, *o.shape), dtype=dtype, device=o.device)
        for s in range(2):
            if g is None:
                out[s].zero_()
            else:
                torch.mul(g, multiple[:, s].reshape(-1, *[1] * (g.ndim - 1)), out=out[s])
        stacked.append(out)
    return stacked


class _BatchGradients:
    """A batch's per-example gradients, scaled by √p: example i's rows of A_iᵀ (method notes, section 1).

    The batch's forward pass and one backward pass per class slot run once. Each selected
    parameter's gradients are then a :class:`~workbench.fisher.rules.BlockGradient` over
    the batch, mostly kept factored (layer input × output gradient) rather than written
    out; parameters no rule covers are computed one example at a time (:meth:`fallback`).
    """

    def __init__(self, model: nn.Module, plan: _Plan, batch: Inputs, top_k: int | None, factor_two_classes: bool = False):
        self.model, self.plan, self.batch = model, plan, batch
        with _CaptureLayers(plan.rule_modules, n_inputs(batch)) as capture:
            logits = class_logits(model, batch)
        self.logits = logits.detach().float()
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        self.classes = _slot_classes(log_probs.detach(), top_k)  # (b, k)
        self.sqrt_p = torch.exp(0.5 * log_probs.detach().gather(1, self.classes))  # (b, k)
        unbatched = [k for m in plan.rule_modules if id(m) in capture.unbatched for _, k in plan.owned[id(m)]]
        self.fallback_indices = plan.fallback + unbatched
        outputs = [c.output for c in capture.captures]
        # With factor_two_classes, a two-class model's blocks hold one gradient per example,
        # and slot s of example i is slot_scales[i, s] times it: half the writing out.
        self.slot_scales: torch.Tensor | None = None  # (b, 2)
        if factor_two_classes and log_probs.shape[1] == 2 and self.n_slots == 2 and not self.fallback_indices:
            w, multiple = _two_class_gradient(log_probs, self.classes, outputs)
            self.slot_scales = multiple * self.sqrt_p
            at_least_float32 = [torch.promote_types(o.dtype, torch.float32) for o in outputs]
            grad_outputs = [(torch.zeros_like(o) if g is None else g).to(t).unsqueeze(0) for g, o, t in zip(w, outputs, at_least_float32)]
        else:
            # scaled by √p as they are written; half precision would lose small gradients, so at least float32
            grad_outputs = output_gradients(log_probs, self.classes, outputs, scale=self.sqrt_p)
        del log_probs, logits  # the batch's graph; only layer inputs and output gradients are needed
        self.blocks = self._rule_blocks(capture.captures, grad_outputs)

    @property
    def n_examples(self) -> int:
        return int(self.classes.shape[0])

    @property
    def n_slots(self) -> int:
        return int(self.classes.shape[1])

    def _rule_blocks(self, captures: list[_Capture], grad_outputs: list[torch.Tensor]) -> list[tuple[int, BlockGradient]]:
        """[(parameter index, its gradients over the batch)] from the layers' rules."""
        per_parameter: dict[int, list[BlockGradient]] = {}
        for capture, g in zip(captures, grad_outputs):
            x = capture.layer_input
            x = x.to(g.dtype) if x.is_floating_point() else x
            grads = PER_EXAMPLE_RULES[type(capture.module)](capture.module, x, g)
            for attr, index in self.plan.owned[id(capture.module)]:
                block = grads[attr]
                block = block if isinstance(block, BlockGradient) else DenseGradient(block)
                per_parameter.setdefault(index, []).append(block)
            capture.output = None
        # A layer called more than once in a forward pass adds up its calls' gradients.
        return [
            (index, blocks[0] if len(blocks) == 1 else DenseGradient(sum(blk.dense() for blk in blocks)))
            for index, blocks in per_parameter.items()
        ]

    def fallback(self, i: int) -> list[tuple[int, BlockGradient]]:
        """Example i's gradients of the parameters no rule covers, as blocks of one example."""
        if not self.fallback_indices:
            return []
        params = [self.plan.named[k][1] for k in self.fallback_indices]
        grads = _loop_gradients(self.model, self.batch, self.classes, params, i)
        scale = self.sqrt_p[i].reshape(-1, 1)
        return [(k, DenseGradient((g.reshape(g.shape[0], 1, -1) * scale[:, :, None]))) for k, g in zip(self.fallback_indices, grads)]

    def lrm_grams(self) -> torch.Tensor:
        """(b, k, k) float64 on the CPU: A_iᵀ A_i over the rule-covered parameters (fallback
        ones not included). Summed where the blocks are and moved once: a move per block
        waits for the GPU each time (200 waits per batch of bert-base, measured on an H200)."""
        gram = torch.zeros((self.n_examples, self.n_slots, self.n_slots), dtype=torch.float64, device=self.logits.device)
        dense = [block.values for _, block in self.blocks if isinstance(block, DenseGradient)]
        if dense:  # small parameters (biases, norms) together, in one product
            gram += DenseGradient(torch.cat(dense, dim=2)).gram()
        for _, block in self.blocks:
            if not isinstance(block, DenseGradient):
                gram += block.gram()
        return gram.cpu()


# ---------------------------------------------------------------------------------------
# From gradients to sparse PEFs
# ---------------------------------------------------------------------------------------

# Models whose k·m gradient entries per example are at most this many are written out
# whole, several examples at a time, and ranked with one selection per example; larger
# ones are taken block by block with an exact running threshold (docs/design.md).
DENSE_MAX_ENTRIES = 1 << 20
_DENSE_GROUP_ENTRIES = 1 << 23  # entries written at a time (32 MB): larger groups measured faster


def _writes_out_whole(n_entries: int, device: torch.device) -> bool:
    """Whether an example's k·m gradient entries are written out whole and ranked at once.

    On a CPU only small models are: ranking blocks by their bound skips most of a large
    model's work. On a GPU the blockwise path's Python loop and its synchronisations cost
    far more than the writing (measured on an H200: MiniLM at 21 examples/s blockwise, 2%
    of the floor), so every example whose entries, their magnitudes and masks fit in a
    quarter of the free memory is written out whole.
    """
    if n_entries <= DENSE_MAX_ENTRIES:
        return True
    return device.type == "cuda" and n_entries <= _gpu_group_entries(device)


def _gpu_group_entries(device: torch.device) -> int:
    """Gradient entries a GPU writes out at a time: those whose values, magnitudes (4 bytes
    each) and mask (1) fit in a quarter of the memory free on it, counting what torch's
    allocator holds unused (the previous batch's buffers)."""
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return free // 4 // 9


@dataclass
class _ExamplePef:
    """One example's sparse PEF: flat positions on the (n_rows, m) grid, ascending, and values."""

    positions: torch.Tensor
    values: torch.Tensor
    norm: float


_GRAM_COLUMNS = 1 << 12  # columns per float32 partial Gram: ~2e-7 relative error, summed in float64


def _slot_grams(A_t: torch.Tensor) -> torch.Tensor:
    """(e, k, k) float64: A_iᵀ A_i of each written-out example, A_t of shape (e, k, m).

    On CPU, where only small models are written out whole: one float32 product over all m
    columns erred by up to 5e-6 (relative) on the embedded model; the products of 4,096
    columns at a time, added in float64, by 2e-7, in 1.5× the time of the single product
    and 40% of the factored grams' (rules.py). A GPU writes out models of any size, where
    that is thousands of small products, so it keeps the factored grams."""
    grams = torch.zeros((A_t.shape[0], A_t.shape[1], A_t.shape[1]), dtype=torch.float64, device=A_t.device)
    for start in range(0, A_t.shape[2], _GRAM_COLUMNS):
        part = A_t[:, :, start : start + _GRAM_COLUMNS]
        grams += (part @ part.transpose(1, 2)).double()
    return grams


def _dense_pefs(grads: _BatchGradients, kind: str, n_values: int | None) -> list[_ExamplePef]:
    """Small models (any model on a GPU): write groups of examples out whole, then select
    each example's top entries, group by group."""
    grams = grads.lrm_grams() if kind == "lrm" and grads.logits.device.type != "cpu" else None
    return _select_groups(grads, kind, n_values, _written_groups(grads, grams), grams)


def _written_groups(grads: _BatchGradients, grams: torch.Tensor | None, fresh: bool = False) -> Iterator[tuple[slice, torch.Tensor]]:
    """The batch's examples in groups with their gradients written out: (rows, A_t (e, k, m)).

    One buffer is reused from group to group, unless ``fresh`` (a group's selection may
    come after the next group is written). Fallback parameters' grams are added to
    ``grams`` where it is given (the GPU's factored grams)."""
    offsets, m = grads.plan.layout.offsets, grads.plan.layout.n_parameters
    k = grads.n_slots if grads.slot_scales is None else 1  # rows written out per example
    device = grads.logits.device
    group = max(1, (_gpu_group_entries(device) if device.type == "cuda" else _DENSE_GROUP_ENTRIES) // (k * m))
    written = [index for index, _ in grads.blocks] + list(grads.fallback_indices)
    covers_all = sum(int(offsets[i + 1] - offsets[i]) for i in written) == m
    buffer = None
    for start in range(0, grads.n_examples, group):
        rows = slice(start, min(start + group, grads.n_examples))
        e = rows.stop - rows.start
        if buffer is None or fresh:
            buffer = torch.empty((min(group, grads.n_examples), k, m), dtype=torch.float32, device=device)
        A_t = buffer[:e]  # (e, k, m)
        if not covers_all:
            A_t.zero_()  # parameters of layers the forward pass never reached have zero gradients
        for index, block in grads.blocks:
            A_t[:, :, offsets[index] : offsets[index + 1]] = block.dense(rows).transpose(0, 1)
        if grads.fallback_indices:
            for j, i in enumerate(range(rows.start, rows.stop)):
                for index, block in grads.fallback(i):
                    A_t[j, :, offsets[index] : offsets[index + 1]] = block.dense()[:, 0]
                    if grams is not None:
                        grams[i] += block.gram()[0].cpu()
        yield rows, A_t


def _select_groups(grads: _BatchGradients, kind: str, n_values: int | None, groups, grams: torch.Tensor | None) -> list[_ExamplePef]:
    pefs = []
    for rows, A_t in groups:
        scales = None if grads.slot_scales is None else grads.slot_scales[rows]
        selected, norms = _select(A_t, kind, n_values, None if grams is None else grams[rows], scales)
        pefs += [_ExamplePef(positions, values, norm) for (positions, values), norm in zip(selected, norms)]
    return pefs


def _select(A_t: torch.Tensor, kind: str, n_values: int | None, grams: torch.Tensor | None,
            slot_scales: torch.Tensor | None = None):
    """Each example's top entries and PEF norm from its written-out gradients A_t (e, k, m).

    The PEF is A_i for LRM (norm ‖A_iᵀ A_i‖_F, from ``grams`` where the GPU had them
    factored) and f_i = Σ_s A_i[s]² for D (norm ‖f_i‖). On a CPU the compiled kernel takes
    each example's top entries and Grams in one pass (without numba: numpy, one example at
    a time); elsewhere the selection takes all examples at once. With ``slot_scales``
    (e, k) (two classes, LRM, CPU kernel), A_t (e, 1, m) holds one gradient per example
    and slot s is slot_scales[i, s] times it."""
    e = A_t.shape[0]
    pef = A_t if kind == "lrm" else A_t.square().sum(dim=1, keepdim=True)  # (e, k, m) or (e, 1, m)
    if A_t.device.type == "cpu" and kernels.available():
        selected, own_grams = kernels.top_entries_of_examples(pef, n_values, slot_scales)  # D: its 1 × 1 "Gram" is ‖f_i‖²
        norms = torch.linalg.matrix_norm(own_grams) if kind == "lrm" else own_grams[:, 0, 0].sqrt()
        return selected, norms.tolist()
    if kind == "lrm":
        norms = torch.linalg.matrix_norm(_slot_grams(A_t) if grams is None else grams)
    else:
        norms = torch.linalg.vector_norm(pef[:, 0].double(), dim=1)
    rows = pef.reshape(e, -1)
    if A_t.device.type == "cpu":
        return [top_entries(row, n_values) for row in rows], norms.tolist()
    return top_entries_of_rows(rows, n_values), norms.tolist()


def _blockwise_pefs(grads: _BatchGradients, kind: str, n_values: int | None) -> list[_ExamplePef]:
    """Large models: per example, parameter blocks in order of their bound on |entry|;
    once n_values entries are in, a block whose bound is below the n-th largest so far
    is skipped, and only rows and columns of a Linear weight that can reach it are computed."""
    offsets, m = grads.plan.layout.offsets, grads.plan.layout.n_parameters
    grams = grads.lrm_grams() if kind == "lrm" else None
    bounds = torch.stack([block.bounds() for _, block in grads.blocks]).cpu().numpy() if grads.blocks else None
    pefs = []
    for i in range(grads.n_examples):
        fallback = grads.fallback(i)
        # (bound on |entry|, parameter index, block, row of the example in the block)
        queue = [(float(bounds[j, i]), index, block, i) for j, (index, block) in enumerate(grads.blocks)]
        queue += [(float(block.bounds()[0]), index, block, 0) for index, block in fallback]
        top = RunningTop(n_values)
        if kind == "lrm":
            gram = grams[i] + sum((block.gram()[0].cpu() for _, block in fallback), torch.zeros_like(grams[i]))
            for bound, index, block, row in sorted(queue, key=lambda c: -c[0]):
                if bound < top.floor:
                    break  # every later block is bounded lower still
                slots, local, values = block.entries(row, top.floor, n_values)
                top.add(slots * m + int(offsets[index]) + local, values)
            positions, values = top.result()
            pefs.append(_ExamplePef(positions, values, float(torch.linalg.matrix_norm(gram))))
        else:  # f = Σ_s A_s²: every entry counts towards the norm, so every block is written out
            squared_norm = torch.zeros((), dtype=torch.float64)
            for _, index, block, row in queue:
                local, values = block.example(row)
                f = values.square().sum(dim=0)
                squared_norm += f.double().square().sum().cpu()
                hit = candidates(f, top.floor, n_values)
                top.add(int(offsets[index]) + (hit if local is None else local[hit]), f[hit])
            positions, values = top.result()
            pefs.append(_ExamplePef(positions, values, float(squared_norm.sqrt())))
    return pefs


def _top_entries(matrix: torch.Tensor, n_values: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain reference selection: flat positions and values of the n_values largest
    |entries| by ``torch.topk``, exact zeros dropped, in ascending position order."""
    flat = matrix.reshape(-1)
    if n_values is not None and n_values < flat.numel():
        position = flat.abs().topk(n_values, sorted=False).indices
    else:
        position = torch.arange(flat.numel(), device=flat.device)
    position = position[flat[position] != 0].sort().values
    return position, flat[position]


def _loop_pef(grads: list[torch.Tensor], sqrt_p: torch.Tensor, kind: str, n_values: int | None) -> _ExamplePef:
    """The plain per-example PEF: grads [(k, *shape)] of every parameter, sqrt_p (k,)."""
    A_t = torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1) * sqrt_p[:, None]  # (k, m) = A_iᵀ
    if kind == "lrm":
        gram = A_t.double() @ A_t.double().T  # (k, k); ‖A Aᵀ‖_F = ‖Aᵀ A‖_F
        return _ExamplePef(*_top_entries(A_t, n_values), float(torch.linalg.matrix_norm(gram)))
    f = (A_t.double() ** 2).sum(dim=0)  # (m,)
    return _ExamplePef(*_top_entries(f.float(), n_values), float(torch.linalg.vector_norm(f)))


def _loop_pefs(grads: _BatchGradients, kind: str, n_values: int | None) -> list[_ExamplePef]:
    params = [p for _, p in grads.plan.named]
    return [
        _loop_pef(_loop_gradients(grads.model, grads.batch, grads.classes, params, i), grads.sqrt_p[i], kind, n_values)
        for i in range(grads.n_examples)
    ]


def _check_labels(labels: torch.Tensor, n_classes: int, start: int) -> None:
    bad = (labels < -1) | (labels >= n_classes)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"label {int(labels[i])} of example {start + i} is out of range for a model with {n_classes} "
            f"classes; labels must be in 0..{n_classes - 1} (or -1 for unknown)"
        )


def batch_pefs(model: nn.Module, plan: _Plan, batch: Inputs, labels: torch.Tensor, config: PefConfig, start: int = 0):
    """The PEFs of one batch as a :class:`PefChunk`."""
    return _batch_in_two_stages(model, plan, batch, labels, config, start)()


def _batch_in_two_stages(model, plan, batch, labels, config, start) -> Callable[[], PefChunk]:
    """Runs the batch's model passes (and, for small models on a CPU, writes its gradients
    out) now, and returns the rest: a call that selects and makes the chunk, which
    :func:`iter_pef_chunks` may run on another core while the next batch's passes run."""
    compiled = plan.named[0][1].device.type == "cpu" and _compiled_selection(plan, config)
    # A two-class model's slots stay multiples of one gradient where the compiled selection reads them
    grads = _BatchGradients(model, plan, batch, config.top_k_classes, factor_two_classes=compiled and config.kind == "lrm")
    _check_labels(labels, grads.logits.shape[1], start)
    if config.method == "loop":
        pefs = _loop_pefs(grads, config.kind, config.n_values)
    elif _writes_out_whole(grads.n_slots * plan.layout.n_parameters, grads.logits.device):
        if compiled:  # written out now, selected later
            groups = list(_written_groups(grads, None, fresh=True))
            return lambda: _chunk(grads, _select_groups(grads, config.kind, config.n_values, groups, None), labels, config)
        pefs = _dense_pefs(grads, config.kind, config.n_values)
    else:
        pefs = _blockwise_pefs(grads, config.kind, config.n_values)
    return lambda: _chunk(grads, pefs, labels, config)


def _compiled_selection(plan: _Plan, config: PefConfig) -> bool:
    """Whether a CPU run's batches are written out whole (with two or more slots) and
    selected by the compiled kernel: the case whose selection is a second stage."""
    return config.method == "hooks" and kernels.available() and 2 * plan.layout.n_parameters <= DENSE_MAX_ENTRIES


def _chunk(grads: _BatchGradients, pefs: list[_ExamplePef], labels: torch.Tensor, config: PefConfig) -> PefChunk:
    plan = grads.plan
    n_rows = grads.n_slots if config.kind == "lrm" else 1
    m = plan.layout.n_parameters
    positions = torch.cat([p.positions for p in pefs]).cpu().numpy().astype(np.int64, copy=False)  # each example's ascending
    # Example i's positions moved to i·n_rows·m on: the chunk's (example, row) cells in order,
    # so their boundaries are found by bisection (a division and a bincount took 5× longer).
    cell_of_chunk = positions + np.repeat(np.arange(len(pefs)) * (n_rows * m), [len(p.positions) for p in pefs])
    row_offsets = np.searchsorted(cell_of_chunk, np.arange(len(pefs) * n_rows + 1) * m).astype(np.int64)
    return PefChunk(
        values=torch.cat([p.values for p in pefs]).cpu().numpy().astype(np.float32, copy=False),
        indices=cell_of_chunk - np.repeat(np.arange(len(pefs) * n_rows) * m, np.diff(row_offsets)),
        row_offsets=row_offsets,
        classes=grads.classes.cpu().numpy().astype(np.int64),
        frobenius_norms=np.array([p.norm for p in pefs], dtype=np.float32),
        labels=labels.cpu().numpy().astype(np.int64),
        logits=grads.logits.cpu().numpy(),
    )


# ---------------------------------------------------------------------------------------
# The whole data set
# ---------------------------------------------------------------------------------------


def split_labels(inputs: Inputs, labels) -> tuple[Inputs, torch.Tensor]:
    """Labels given apart, or as inputs["labels"], or unknown (-1); never passed to the model,
    so a Hugging Face model returns logits rather than a loss."""
    if isinstance(inputs, Mapping) and "labels" in inputs:
        inputs = dict(inputs)
        from_inputs = inputs.pop("labels")
        labels = from_inputs if labels is None else labels
    n = n_inputs(inputs)
    if n == 0:
        raise ValueError("the data set is empty: pass at least one example")
    if labels is None:
        return inputs, torch.full((n,), -1, dtype=torch.long)
    labels = torch.tensor(np.asarray(labels), dtype=torch.long)
    if labels.shape != (n,):
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected ({n},), one per example")
    return inputs, labels


def model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", "") or type(model).__name__)


def make_plan(model: nn.Module, config: PefConfig) -> _Plan:
    named = select_parameters(model, config.include, config.exclude)
    plan = _Plan.make(model, named, use_rules=config.method == "hooks")
    if config.method == "hooks" and plan.fallback:
        names = [named[k][0] for k in plan.fallback[:5]]
        logger.warning(
            "no per-example rule for the layers owning %d selected parameters (e.g. %s); "
            "they are computed one example at a time, which is slower",
            len(plan.fallback),
            ", ".join(names),
        )
    return plan


def iter_pef_chunks(
    model: nn.Module,
    inputs: Inputs,
    labels: torch.Tensor,
    config: PefConfig,
    plan: _Plan,
    device: torch.device,
    skip: Callable[[int], bool] = lambda batch_index: False,
) -> Iterator[tuple[int, int, PefChunk | None]]:
    """Yields (batch index, number of examples, chunk) for every batch in order; the chunk is
    None where ``skip(batch_index)`` says it exists already (a resumed run)."""
    n = n_inputs(inputs)
    pending = []  # at most one (batch index, size, call giving its chunk), not yet delivered

    def delivered():
        b, size, finish = pending.pop()
        return b, size, finish()

    with _second_stage_runner(device if _compiled_selection(plan, config) else None) as run_later:
        for b, start in enumerate(range(0, n, config.batch_size)):
            stop = min(start + config.batch_size, n)
            if skip(b):
                if pending:
                    yield delivered()
                yield b, stop - start, None
                continue
            try:
                batch = slice_inputs(inputs, start, stop, device)
                finish = run_later(_batch_in_two_stages(model, plan, batch, labels[start:stop], config, start))
            except BaseException:  # an interrupt or an error: the batch before it is still delivered
                if pending:
                    yield delivered()
                raise
            if pending:
                yield delivered()
            pending.append((b, stop - start, finish))
        if pending:
            yield delivered()


@contextlib.contextmanager
def _second_stage_runner(device: torch.device | None):
    """Where each batch's second stage (a small model's selection, and the chunk) runs: on
    a worker thread beside the next batch's model passes, when the PEFs are computed on a
    CPU and torch may use more than one thread, torch then using one thread fewer for the
    duration (so the cores used stay as many as torch's setting: on the embedded model with
    two cores, 18% more examples/s than torch's two threads for everything, whose small
    operations gain little from the second); otherwise (device None too) in turn. Yields
    ``run_later(stage) -> call returning its result``."""
    threads = torch.get_num_threads()
    if device is None or device.type != "cpu" or threads < 2:
        yield lambda stage: stage
        return
    from concurrent.futures import ThreadPoolExecutor

    torch.set_num_threads(threads - 1)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-pefs") as pool:
            yield lambda stage: pool.submit(stage).result
    finally:
        torch.set_num_threads(threads)


def pef_info(model: nn.Module, config: PefConfig, plan: _Plan, n_examples: int) -> dict:
    """Provenance stored with the PEFs."""
    from .. import __version__

    return {
        "model": model_name(model),
        "n_examples": n_examples,
        "n_parameters": plan.layout.n_parameters,
        "package_version": __version__,
        **config.to_dict(),
    }


def compute_pefs(
    model: nn.Module,
    inputs: Inputs,
    labels=None,
    *,
    kind: str = "lrm",
    n_values: int | None = 65536,
    top_k_classes: int | None = None,
    include: NameFilter = None,
    exclude: NameFilter = None,
    batch_size: int | None = None,
    method: str = "hooks",
    device: str | torch.device | None = None,
    progress: bool = True,
    check_resources: bool = True,
) -> LrmPefs | DPefs:
    """PEFs of every example, in memory. See :func:`workbench.store.write_pefs` to stream
    them to disk instead (resumable, memory flat in the number of examples).

    inputs: a tensor, or a dict of tensors (e.g. a tokenizer's output), one row per example;
        ``inputs["labels"]`` is used as labels when ``labels`` is None.
    labels: (n_examples,) ints, or None when unknown.
    batch_size: examples per batch; None chooses it from the memory available.
    check_resources: estimate the peak memory and time from the first batch (shown in the
        progress bar) and refuse up front when the memory will not hold the run
        (:mod:`workbench.estimate`).
    """
    from tqdm.auto import tqdm

    from .. import estimate as est
    from ..device import resolve_device
    from ..store import fingerprint_model

    config = PefConfig(kind, n_values, top_k_classes, include, exclude, est.PROBE_BATCH if batch_size is None else batch_size, method)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    inputs, labels = split_labels(inputs, labels)
    plan = make_plan(model, config)
    n = n_inputs(inputs)
    with eval_mode(model):
        probe = est.probe_batch(model, inputs, labels, config, plan, device, 0)
        if batch_size is None:
            config = dataclasses.replace(config, batch_size=est.choose_batch_size(probe, n, device, plan.layout.n_parameters))
            if probe.size != min(config.batch_size, n):
                probe = est.probe_batch(model, inputs, labels, config, plan, device, 0, warm_up=False)
        est.check_probe(probe, labels)
        estimate = est.estimate_pef_run(probe, config, plan, n, n_done=0, out=None, in_memory=True, device=device)
        if check_resources:
            estimate.check()
        chunks = [probe.chunk]
        with tqdm(total=n, desc="PEFs", unit="ex", disable=not progress) as bar:
            bar.set_postfix_str(estimate.postfix(), refresh=False)
            bar.update(probe.size)
            for index, size, chunk in iter_pef_chunks(model, inputs, labels, config, plan, device, skip=lambda b: b == 0):
                if chunk is not None:
                    est.check_chunk_finite(chunk, index * config.batch_size)
                    chunks.append(chunk)
                    bar.update(size)
    info = dict(pef_info(model, config, plan, n), model_fingerprint=fingerprint_model(model))
    return chunks_to_pefs(chunks, kind, plan.layout, info)

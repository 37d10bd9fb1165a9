"""Per-example Fisher matrices (PEFs) of a classifier, batch by batch.

For example x_i and its k most probable classes y_1..y_k (k = ``top_k_classes``, or all
classes), the low-rank PEF is A_i with columns √p(y_s|x_i) ∇θ log p(y_s|x_i); the diagonal
PEF is f_i = Σ_s A_i[:, s]² (method notes, section 1).

Two exact ways to get the per-example gradients:

- ``method="hooks"`` (default): one batched forward, one batched backward per class slot
  to the *outputs* of the layers that own the selected parameters, then each layer's
  per-example parameter gradient from its stored input and output gradient (the
  Opacus approach). Layer types with a rule are listed in ``PER_EXAMPLE_RULES``;
  parameters of any other module fall back to the loop below.
- ``method="loop"``: one example at a time, one ``torch.autograd.grad`` per class. The
  plain reference the hooks path is tested against.

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

from .params import NameFilter, ParameterLayout, layout_of, select_parameters
from .pefs import DPefs, LrmPefs

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
# Per-layer rules: per-example parameter gradients from a layer's input and output gradient
# ---------------------------------------------------------------------------------------

# rule(module, layer_input, grad_output) -> {parameter attribute name: gradient}
# layer_input: (..., in) for ONE example; grad_output: (k, ..., out) for that example's k
# class slots. Each gradient has shape (k, *parameter.shape).
PerExampleRule = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
PER_EXAMPLE_RULES: dict[type, PerExampleRule] = {}


def register_rule(*module_types: type) -> Callable[[PerExampleRule], PerExampleRule]:
    def decorate(rule: PerExampleRule) -> PerExampleRule:
        for t in module_types:
            PER_EXAMPLE_RULES[t] = rule
        return rule

    return decorate


@register_rule(nn.Linear)
def _linear_rule(module: nn.Linear, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    x2 = x.reshape(-1, x.shape[-1])  # (t, in)
    g3 = g.reshape(g.shape[0], -1, g.shape[-1])  # (k, t, out)
    grads = {"weight": torch.matmul(g3.transpose(1, 2), x2)}  # (k, out, in)
    if module.bias is not None:
        grads["bias"] = g3.sum(dim=1)
    return grads


@register_rule(nn.Embedding)
def _embedding_rule(module: nn.Embedding, ids: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    ids = ids.reshape(-1)
    g3 = g.reshape(g.shape[0], -1, g.shape[-1])  # (k, t, d)
    if module.padding_idx is not None:  # torch gives the padding row no gradient
        keep = ids != module.padding_idx
        ids, g3 = ids[keep], g3[:, keep]
    grad = torch.zeros((g.shape[0], *module.weight.shape), dtype=g.dtype, device=g.device)
    grad.index_add_(1, ids, g3)
    return {"weight": grad}


@register_rule(nn.LayerNorm)
def _layer_norm_rule(module: nn.LayerNorm, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    x_hat = nn.functional.layer_norm(x, module.normalized_shape, eps=module.eps)
    shape = (g.shape[0], -1, *module.normalized_shape)  # (k, positions, *normalised axes)
    grads = {}
    if module.weight is not None:
        grads["weight"] = (g * x_hat).reshape(shape).sum(dim=1)
    if module.bias is not None:
        grads["bias"] = g.reshape(shape).sum(dim=1)
    return grads


def _register_transformers_rules() -> None:
    """GPT-2's Conv1D is a Linear with its weight stored as (in, out)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return

    @register_rule(Conv1D)
    def _conv1d_rule(module, x, g):
        x2 = x.reshape(-1, x.shape[-1])
        g3 = g.reshape(g.shape[0], -1, g.shape[-1])
        return {"weight": torch.matmul(x2.T, g3), "bias": g3.sum(dim=1)}


_register_transformers_rules()


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


def output_gradients(log_probs: torch.Tensor, classes: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """For each layer output (b, ...), the gradients of log p(y_s|x_i) for every slot s: (k, b, ...).

    One backward per slot of Σ_i log p(y_is|x_i); examples do not interact in eval mode,
    so row i of the result is example i's own gradient.
    """
    if not outputs:
        return []
    per_slot = []
    for s in range(classes.shape[1]):
        objective = log_probs.gather(1, classes[:, s : s + 1]).sum()
        grads = torch.autograd.grad(objective, outputs, retain_graph=True, allow_unused=True)
        per_slot.append([torch.zeros_like(o) if g is None else g.detach() for g, o in zip(grads, outputs)])
    return [torch.stack([slot[j] for slot in per_slot]) for j in range(len(outputs))]


class _BatchGradients:
    """Per-example, per-slot gradients of a batch, produced one example at a time.

    The batch's forward and backward passes run once; :meth:`example` then assembles
    example i's (k, n_parameters) matrix A_iᵀ (unscaled by √p) in a reused buffer, so
    memory holds one example's gradients, never the whole batch's.
    """

    def __init__(self, model: nn.Module, plan: _Plan, batch: Inputs, top_k: int | None):
        self.model, self.plan, self.batch = model, plan, batch
        with _CaptureLayers(plan.rule_modules, n_inputs(batch)) as capture:
            logits = class_logits(model, batch)
        self.logits = logits.detach().float()
        self.log_probs = torch.log_softmax(logits.float(), dim=-1)
        self.classes = _slot_classes(self.log_probs.detach(), top_k)
        self.captures = capture.captures
        self.fallback = plan.fallback + [k for m in plan.rule_modules if id(m) in capture.unbatched for _, k in plan.owned[id(m)]]
        self.grad_outputs = output_gradients(self.log_probs, self.classes, [c.output for c in self.captures])
        for c in self.captures:  # drop the batch's graph; only inputs and output gradients are needed
            c.output = None
        del self.log_probs
        k = self.classes.shape[1]
        self.buffer = torch.empty((k, plan.layout.n_parameters), dtype=torch.float32, device=self.logits.device)

    def example(self, i: int) -> torch.Tensor:
        """(k, n_parameters): row s is ∇θ log p(y_s|x_i), not yet scaled by √p."""
        buffer, offsets = self.buffer, self.plan.layout.offsets
        buffer.zero_()
        for capture, g in zip(self.captures, self.grad_outputs):
            g = g[:, i].to(torch.promote_types(g.dtype, torch.float32))  # half precision loses small gradients
            x = capture.layer_input[i]
            x = x.to(g.dtype) if x.is_floating_point() else x
            grads = PER_EXAMPLE_RULES[type(capture.module)](capture.module, x, g)
            for attr, k in self.plan.owned[id(capture.module)]:
                buffer[:, offsets[k] : offsets[k + 1]] += grads[attr].reshape(buffer.shape[0], -1)
        if self.fallback:
            params = [self.plan.named[k][1] for k in self.fallback]
            for k, grad in zip(self.fallback, _loop_gradients(self.model, self.batch, self.classes, params, i)):
                buffer[:, offsets[k] : offsets[k + 1]] = grad.reshape(buffer.shape[0], -1)
        return buffer


# ---------------------------------------------------------------------------------------
# From gradients to sparse PEFs
# ---------------------------------------------------------------------------------------


def _top_entries(matrix: torch.Tensor, n_values: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions and values of the n_values largest |entries|, exact zeros dropped,
    in ascending position order (row-major, so rows come out grouped and sorted)."""
    flat = matrix.reshape(-1)
    if n_values is not None and n_values < flat.numel():
        position = flat.abs().topk(n_values, sorted=False).indices
    else:
        position = torch.arange(flat.numel(), device=flat.device)
    position = position[flat[position] != 0].sort().values
    return position, flat[position]


def _sparse_rows(position: torch.Tensor, values: torch.Tensor, n_rows: int, n_cols: int):
    """Row-major flat positions of an (n_rows, n_cols) matrix -> (values, column, row counts)."""
    rows = torch.div(position, n_cols, rounding_mode="floor")
    counts = torch.bincount(rows, minlength=n_rows)
    return values.cpu().numpy(), (position % n_cols).cpu().numpy(), counts.cpu().numpy()


def _pef_of_example(grads: torch.Tensor, sqrt_p: torch.Tensor, kind: str, n_values: int | None):
    """grads: (k, m) rows ∇ log p(y_s); sqrt_p: (k,). Returns (values, indices, row counts, norm)."""
    A_t = grads * sqrt_p[:, None]  # (k, m) = A_iᵀ
    if kind == "lrm":
        gram = A_t.double() @ A_t.double().T  # (k, k); ‖A Aᵀ‖_F = ‖Aᵀ A‖_F
        norm = float(torch.linalg.matrix_norm(gram))
        position, values = _top_entries(A_t, n_values)
        return (*_sparse_rows(position, values, A_t.shape[0], A_t.shape[1]), norm)
    f = (A_t.double() ** 2).sum(dim=0)  # (m,)
    norm = float(torch.linalg.vector_norm(f))
    position, values = _top_entries(f.float(), n_values)
    return (*_sparse_rows(position, values, 1, f.shape[0]), norm)


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
    grads = _BatchGradients(model, plan, batch, config.top_k_classes)
    _check_labels(labels, grads.logits.shape[1], start)
    log_p = torch.log_softmax(grads.logits, dim=-1).gather(1, grads.classes)  # (b, k)
    sqrt_p = torch.exp(0.5 * log_p)
    values, indices, counts, norms = [], [], [], []
    for i in range(grads.classes.shape[0]):
        v, ix, c, norm = _pef_of_example(grads.example(i), sqrt_p[i], config.kind, config.n_values)
        values.append(v)
        indices.append(ix)
        counts.append(c)
        norms.append(norm)
    counts = np.concatenate(counts)
    return PefChunk(
        values=np.concatenate(values).astype(np.float32),
        indices=np.concatenate(indices).astype(np.int64),
        row_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        classes=grads.classes.cpu().numpy().astype(np.int64),
        frobenius_norms=np.array(norms, dtype=np.float32),
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
    for b, start in enumerate(range(0, n, config.batch_size)):
        stop = min(start + config.batch_size, n)
        if skip(b):
            yield b, stop - start, None
            continue
        batch = slice_inputs(inputs, start, stop, device)
        yield b, stop - start, batch_pefs(model, plan, batch, labels[start:stop], config, start)


def pef_info(model: nn.Module, config: PefConfig, plan: _Plan, n_examples: int) -> dict:
    """Provenance stored with the PEFs."""
    from . import __version__

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

    from . import estimate as est
    from .device import resolve_device
    from .store import fingerprint_model

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

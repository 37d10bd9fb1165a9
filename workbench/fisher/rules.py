"""Per-layer rules: a layer's per-example parameter gradients from its input and output gradient.

For a batch, a rule receives the layer's input ``x`` of shape (e, ...) (one row per
example) and the gradients of the k class-slot objectives with respect to the layer's
output, ``g`` of shape (k, e, ...), and returns, for each parameter it owns, the e
examples' gradients as a :class:`BlockGradient`. A rule may return a plain tensor of
shape (k, e, *parameter.shape) instead; it is wrapped in :class:`DenseGradient`.

Most gradients are never written out whole: a Linear layer's is a sum over positions of
outer products, so its Gram matrix over class slots, a bound on its largest entry and the
entries above a threshold can all be had from the factors (see ``docs/design.md``,
"Fast exact PEFs"). That is what lets the top-n selection skip most of a large model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .selection import candidates

# Relative slack on the Cauchy-Schwarz bounds: the bound and the entries are rounded
# differently in float32, and a bound must never fall below an entry it covers.
BOUND_SLACK = 1.0 + 1e-5


class BlockGradient:
    """One parameter's gradients for the e examples of a batch and their k class slots.

    Entries are indexed (slot s, example i, position j) with j the position in the
    flattened parameter (``numel`` of them).
    """

    numel: int

    def dense(self, rows: slice = slice(None)) -> torch.Tensor:
        """(k, e_rows, numel): every entry of the examples in ``rows``."""
        raise NotImplementedError

    def write(self, rows: slice, out: torch.Tensor) -> None:
        """:meth:`dense` of ``rows`` into ``out`` (k, e_rows, numel), contiguous."""
        out.copy_(self.dense(rows))

    def gram(self) -> torch.Tensor:
        """(e, k, k) float64: Σ_j G[s, i, j] G[t, i, j] for each example i."""
        raise NotImplementedError

    def bounds(self) -> torch.Tensor:
        """(e,): for each example, a number at least as large as its largest |entry|."""
        raise NotImplementedError

    def example(self, i: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Example i's non-zero part: (positions (n,) or None for all ``numel``, values (k, n))."""
        raise NotImplementedError

    def entries(self, i: int, floor: float, n: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Example i's entries that may be among its n largest |values| overall, given that
        n others are at least ``floor``: (slots, positions, values); never exact zeros."""
        positions, values = self.example(i)
        width = values.shape[1]
        flat = values.reshape(-1)
        hit = candidates(flat.abs(), floor, n)
        local = hit % width
        return hit // width, local if positions is None else positions[local], flat[hit]


def _gram(values: torch.Tensor) -> torch.Tensor:
    """(k, e, n) -> (e, k, k) in float64."""
    v = values.double().transpose(0, 1)  # (e, k, n)
    return v @ v.transpose(1, 2)


def _ghost_gram(g: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Gram of Σ_t g[s, i, t] ⊗ x[i, t] from the position-by-position inner products of the
    x factors, ``inner`` (e, T, T), without forming the outer products (the "ghost norm"
    trick of per-example gradient clipping). g: (k, e, T, out).

    The inner products over features run in float32 (sums of at most a layer's width);
    the sum over position pairs in float64."""
    k, e, T, _ = g.shape
    gg = g.transpose(0, 1).reshape(e, k * T, -1)
    gg = (gg @ gg.transpose(1, 2)).reshape(e, k, T, k, T)
    return torch.einsum("esatb,eab->est", gg.double(), inner.double())


class DenseGradient(BlockGradient):
    """Gradients written out in full: (k, e, numel)."""

    def __init__(self, values: torch.Tensor):
        self.values = values.reshape(values.shape[0], values.shape[1], -1)
        self.numel = self.values.shape[2]

    def dense(self, rows: slice = slice(None)) -> torch.Tensor:
        return self.values[:, rows]

    def gram(self) -> torch.Tensor:
        return _gram(self.values)

    def bounds(self) -> torch.Tensor:
        return self.values.abs().amax(dim=(0, 2))

    def example(self, i: int):
        return None, self.values[:, i]


class OuterProductGradient(BlockGradient):
    """A Linear-type weight: G[s, i] = Σ_t g[s, i, t] ⊗ x[i, t], shape (out, in), or its
    transpose (in, out) for GPT-2's Conv1D.

    g: (k, e, T, out) output gradients; x: (e, T, in) inputs.
    """

    def __init__(self, g: torch.Tensor, x: torch.Tensor, transposed: bool = False):
        self.g, self.x, self.transposed = g, x, transposed
        self.numel = g.shape[3] * x.shape[2]
        self._norms = None

    def _outer(self, g: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """g (k, ..., T, R), x (..., T, C) -> (k, ..., R, C), or (k, ..., C, R) transposed."""
        if self.transposed:
            return torch.matmul(x.transpose(-1, -2), g, out=out)
        return torch.matmul(g.transpose(-1, -2), x, out=out)

    def dense(self, rows: slice = slice(None)) -> torch.Tensor:
        out = self._outer(self.g[:, rows], self.x[rows])
        return out.reshape(out.shape[0], out.shape[1], -1)

    def write(self, rows: slice, out: torch.Tensor) -> None:
        """Each slot's products straight into ``out``: no product written and then copied."""
        g, x = self.g[:, rows], self.x[rows]
        if g.ndim != 4 or g.dtype != out.dtype or x.dtype != out.dtype:
            return super().write(rows, out)
        shape = (x.shape[0], x.shape[2], g.shape[3]) if self.transposed else (x.shape[0], g.shape[3], x.shape[2])
        for s in range(g.shape[0]):
            self._outer(g[s], x, out=out[s].view(shape))

    def gram(self) -> torch.Tensor:
        T, n_out, n_in = self.x.shape[1], self.g.shape[3], self.x.shape[2]
        if T * (n_in + n_out) <= n_in * n_out:  # the factors are smaller than the gradient
            return _ghost_gram(self.g, self.x @ self.x.transpose(1, 2))
        return _gram(self.dense())

    def norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example, the largest (over slots) norm over positions of each output unit's
        gradient (e, out), and each input unit's norm over positions (e, in). By
        Cauchy-Schwarz, |G[s, i, a, b]| ≤ rows[i, a] · cols[i, b]."""
        if self._norms is None:
            # Positions with no output gradient (padding) add nothing to G; leaving them out
            # of the column norms keeps the bounds tight.
            g_squared = self.g.square().sum(dim=2)  # (k, e, out); not linalg.vector_norm, slow over a middle axis
            live = (self.g != 0).any(dim=3).any(dim=0)  # (e, T)
            x_squared = (self.x.square() * live.unsqueeze(-1)).sum(dim=1)  # (e, in)
            self._norms = g_squared.amax(dim=0).sqrt() * BOUND_SLACK, x_squared.sqrt()
        return self._norms

    def bounds(self) -> torch.Tensor:
        rows, cols = self.norms()
        return rows.amax(dim=1) * cols.amax(dim=1)

    def example(self, i: int):
        out = self._outer(self.g[:, i], self.x[i])
        return None, out.reshape(out.shape[0], -1)

    def entries(self, i: int, floor: float, n: int | None):
        """Only the rows and columns whose bound reaches ``floor`` are computed."""
        rows, cols = self.norms()
        rows, cols = rows[i], cols[i]
        g, x = self.g[:, i], self.x[i]
        if rows.device.type == "cpu":  # the index work in numpy: on these small arrays torch's operations cost 3-5× more
            return self._entries_on_cpu(g, x, rows.numpy(), cols.numpy(), floor, n)
        keep_rows = (rows * cols.max() >= floor).nonzero().squeeze(1)
        keep_cols = (cols * rows.max() >= floor).nonzero().squeeze(1)
        if keep_rows.numel() < rows.numel():
            g = g.index_select(2, keep_rows)
        if keep_cols.numel() < cols.numel():
            x = x.index_select(1, keep_cols)
        sub = self._outer(g, x)  # (k, R, C), or (k, C, R) transposed
        flat = sub.reshape(-1)
        hit = candidates(flat.abs(), floor, n)
        slots, positions = self._positions_of(hit, keep_rows, keep_cols, rows.numel(), cols.numel())
        return slots, positions, flat[hit]

    def _entries_on_cpu(self, g, x, rows: np.ndarray, cols: np.ndarray, floor: float, n: int | None):
        keep_rows = np.flatnonzero(rows * cols.max() >= floor)
        keep_cols = np.flatnonzero(cols * rows.max() >= floor)
        if len(keep_rows) < len(rows):
            g = g.index_select(2, torch.from_numpy(keep_rows))
        if len(keep_cols) < len(cols):
            x = x.index_select(1, torch.from_numpy(keep_cols))
        flat = self._outer(g, x).reshape(-1).numpy()  # (k, R, C), or (k, C, R) transposed
        hit = candidates(torch.from_numpy(np.abs(flat)), floor, n).numpy()
        slots, positions = self._positions_of(hit, keep_rows, keep_cols, len(rows), len(cols))
        return torch.from_numpy(slots), torch.from_numpy(positions), torch.from_numpy(flat[hit])

    def _positions_of(self, hit, keep_rows, keep_cols, n_rows: int, n_cols: int):
        """(slot, position in the parameter) of flat positions ``hit`` in the (k, R, C) product of
        the kept rows and columns (numpy arrays or tensors alike)."""
        n_r, n_c = len(keep_rows), len(keep_cols)
        slots, rest = hit // (n_r * n_c), hit % (n_r * n_c)
        if self.transposed:  # parameter (in, out): position b * out + a
            b, a = keep_cols[rest // n_r], keep_rows[rest % n_r]
            return slots, b * n_rows + a
        a, b = keep_rows[rest // n_c], keep_cols[rest % n_c]  # parameter (out, in): position a * in + b
        return slots, a * n_cols + b


class EmbeddingGradient(BlockGradient):
    """An embedding table's gradient: example i's row v is Σ over its tokens t with id v
    of g[s, i, t]. Only the rows of the tokens an example uses are ever written.

    ids: (e, T); g: (k, e, T, d); tokens with ``padding_idx`` get no gradient (as in torch).
    """

    def __init__(self, ids: torch.Tensor, g: torch.Tensor, n_rows: int, padding_idx: int | None):
        if padding_idx is not None:
            g = g * (ids != padding_idx).unsqueeze(-1).to(g.dtype)
        self.ids, self.g, self.n_rows = ids, g, n_rows
        self.numel = n_rows * g.shape[3]

    def dense(self, rows: slice = slice(None)) -> torch.Tensor:
        g = self.g[:, rows]
        out = torch.empty((g.shape[0], g.shape[1], self.numel), dtype=g.dtype, device=g.device)
        self.write(rows, out)
        return out

    def write(self, rows: slice, out: torch.Tensor) -> None:
        ids, g = self.ids[rows], self.g[:, rows]
        if g.dtype != out.dtype:
            return super().write(rows, out)
        k, e, T, d = g.shape
        out.zero_()
        index = ids + self.n_rows * torch.arange(e, device=ids.device).unsqueeze(1)
        out.view(k, e * self.n_rows, d).index_add_(1, index.reshape(-1), g.reshape(k, e * T, d))

    def gram(self) -> torch.Tensor:
        same = self.ids.unsqueeze(2) == self.ids.unsqueeze(1)  # (e, T, T): tokens sharing a row
        return _ghost_gram(self.g, same)

    def bounds(self) -> torch.Tensor:
        return self.g.abs().sum(dim=2).amax(dim=(0, 2)) * BOUND_SLACK

    def example(self, i: int):
        used, token_row = torch.unique(self.ids[i], return_inverse=True)
        g = self.g[:, i]  # (k, T, d)
        d = g.shape[2]
        rows = torch.zeros((g.shape[0], used.numel(), d), dtype=g.dtype, device=g.device)
        rows.index_add_(1, token_row, g)
        positions = (used.unsqueeze(1) * d + torch.arange(d, device=used.device)).reshape(-1)
        return positions, rows.reshape(g.shape[0], -1)


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------

# rule(module, x (e, ...), g (k, e, ...)) -> {parameter attribute name: BlockGradient or (k, e, *shape)}
PerExampleRule = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, BlockGradient | torch.Tensor]]
PER_EXAMPLE_RULES: dict[type, PerExampleRule] = {}


def register_rule(*module_types: type, parameters: tuple[str, ...] = ("weight", "bias")
                  ) -> Callable[[PerExampleRule], PerExampleRule]:
    """Register a rule for layer types (exact type match; subclasses get it after a numerical
    check, :mod:`.matching`); see the module docs for the contract. ``parameters`` names
    the layer's own parameters the rule computes: a layer of the type holding any other
    (torch's old ``weight_norm`` turns a Linear's weight into ``weight_g``, ``weight_v``)
    gets the rule only after the numerical check."""

    def decorate(rule: PerExampleRule) -> PerExampleRule:
        rule.parameters = frozenset(parameters)
        for t in module_types:
            PER_EXAMPLE_RULES[t] = rule
        return rule

    return decorate


def _positions(x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (e, ..., in), g (k, e, ..., out) -> (e, T, in), (k, e, T, out): the leading axes
    between example and features are positions (tokens)."""
    e = x.shape[0]
    return x.reshape(e, -1, x.shape[-1]), g.reshape(g.shape[0], e, -1, g.shape[-1])


@register_rule(nn.Linear)
def _linear_rule(module: nn.Linear, x: torch.Tensor, g: torch.Tensor) -> dict:
    x, g = _positions(x, g)
    grads = {"weight": OuterProductGradient(g, x)}
    if module.bias is not None:
        grads["bias"] = g.sum(dim=2)
    return grads


@register_rule(nn.Embedding, parameters=("weight",))
def _embedding_rule(module: nn.Embedding, ids: torch.Tensor, g: torch.Tensor) -> dict:
    e = ids.shape[0]
    ids, g = ids.reshape(e, -1), g.reshape(g.shape[0], e, -1, g.shape[-1])
    return {"weight": EmbeddingGradient(ids, g, module.num_embeddings, module.padding_idx)}


@register_rule(nn.LayerNorm)
def _layer_norm_rule(module: nn.LayerNorm, x: torch.Tensor, g: torch.Tensor) -> dict:
    x_hat = nn.functional.layer_norm(x, module.normalized_shape, eps=module.eps)
    shape = (g.shape[0], g.shape[1], -1, *module.normalized_shape)  # (k, e, positions, *normalised axes)
    grads = {}
    if module.weight is not None:
        grads["weight"] = (g * x_hat).reshape(shape).sum(dim=2)
    if module.bias is not None:
        grads["bias"] = g.reshape(shape).sum(dim=2)
    return grads


@register_rule(nn.RMSNorm, parameters=("weight",))
def rms_norm_rule(module: nn.Module, x: torch.Tensor, g: torch.Tensor) -> dict:
    """An RMS normalisation's weight: y = w ∘ x̂ (Llama, Mistral, Qwen2, T5, torch's
    ``nn.RMSNorm``) or (1 + w) ∘ x̂ (Gemma) with x̂ = x / √(mean x² + ε); in both the
    gradient is Σ_positions g ∘ x̂. The families name ε differently; the check in
    :mod:`.matching` runs this rule against autograd before it is trusted."""
    shape = tuple(getattr(module, "normalized_shape", module.weight.shape))
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    x32 = x.float()
    axes = tuple(range(-len(shape), 0))
    mean_square = x32.square().mean(dim=axes, keepdim=True)
    x_hat = x32 * torch.rsqrt(mean_square + (torch.finfo(x32.dtype).eps if eps is None else eps))
    return {"weight": (g * x_hat.to(g.dtype)).reshape(g.shape[0], g.shape[1], -1, *shape).sum(dim=2)}


def scaled_embedding_rule(module: nn.Embedding, ids: torch.Tensor, g: torch.Tensor) -> dict:
    """An embedding whose rows are multiplied by ``embed_scale`` (BART's, Gemma's word
    embeddings): the plain embedding's gradient of the scaled output gradient."""
    scale = module.embed_scale
    scale = float(scale) if not isinstance(scale, torch.Tensor) else scale.to(g.dtype)
    return _embedding_rule(module, ids, g * scale)


def looked_up_rows(module: nn.Embedding, args: tuple, kwargs: dict) -> torch.Tensor:
    """(..., 2): for each output position of a call of ``module``, the table row it read and
    the factor it was multiplied by, found by running the call again with a table whose
    row r is (r, 1, 0, ...). So an embedding whose forward computes its own indices
    (BART's and OPT's learned positions, from the input's shape or the attention mask)
    gets the indices it really used, whatever its signature."""
    weight = module.weight
    code = torch.zeros((weight.shape[0], 2), dtype=torch.float64 if weight.dtype == torch.float64 else torch.float32,
                       device=weight.device)
    code[:, 0] = torch.arange(weight.shape[0], device=weight.device)
    code[:, 1] = 1
    code = torch.cat([code, code.new_zeros((weight.shape[0], max(weight.shape[1] - 2, 0)))], dim=1)[:, : weight.shape[1]]
    with torch.no_grad():
        out = torch.func.functional_call(module, {"weight": code.to(weight.dtype)}, args, kwargs)
    return out[..., :2].detach()


def looked_up_ids(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, factor) of ``rows`` (..., 2) from :func:`looked_up_rows`: the table row each position read,
    and the factor its row was multiplied by."""
    factor = rows[..., 1]
    ids = torch.where(factor != 0, rows[..., 0] / torch.where(factor != 0, factor, 1), 0).round().long()
    return ids, factor


def lookup_embedding_rule(module: nn.Embedding, rows: torch.Tensor, g: torch.Tensor) -> dict:
    """An embedding subclass with a forward of its own: ``rows`` (e, ..., 2) from
    :func:`looked_up_rows` (row read × factor, factor), so the gradient is the plain
    embedding's of the rows read, with the output gradient times the factor."""
    ids, factor = looked_up_ids(rows)
    return _embedding_rule(module, ids, g * factor.unsqueeze(-1).to(g.dtype))


# The rule's layer input is not the call's first argument but what this computes from the call
lookup_embedding_rule.input_from_call = looked_up_rows


def _register_transformers_rules() -> None:
    """GPT-2's Conv1D is a Linear with its weight stored as (in, out)."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return

    @register_rule(Conv1D)
    def _conv1d_rule(module, x, g):
        x, g = _positions(x, g)
        return {"weight": OuterProductGradient(g, x, transposed=True), "bias": g.sum(dim=2)}


_register_transformers_rules()

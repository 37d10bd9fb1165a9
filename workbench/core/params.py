"""Which parameters count, and where each one sits in the flat parameter axis.

Every PEF, component and perturbation in this package lives on one flat axis of
``n_parameters`` entries: the selected parameters, flattened in ``model.named_parameters()``
order and concatenated. :class:`ParameterLayout` is that axis's map, stored beside
every PEF set and decomposition so a component can be put back into the model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the records of this layer are read without torch (workbench.report, widgets)
    import torch

NameFilter = str | Sequence[str] | Callable[[str], bool] | None


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class ParameterLayout:
    """Names, shapes and offsets of the selected parameters on the flat axis."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        # lists were kept as given, and a layout of lists was unequal to the same layout read back from a file;
        # a name without its shape was kept too, and split() dropped the parameters after it
        names, shapes = tuple(self.names), tuple(tuple(s) for s in self.shapes)
        if len(names) != len(shapes):
            raise ValueError(f"a ParameterLayout takes one name per shape: got {len(names)} names for {len(shapes)} "
                             "shapes; pass names=('a', ...), shapes=((rows, columns), ...)")
        if not all(isinstance(n, str) for n in names):
            raise ValueError(f"a ParameterLayout's names are the parameters' names (str), got {names!r}")
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for s in shapes for d in s):
            raise ValueError(f"a ParameterLayout's shapes are tuples of sizes (integers of at least 0), got {shapes!r}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "shapes", tuple(tuple(int(d) for d in s) for s in shapes))

    # Computed once (a PEF batch asks for them per block), and read-only, since shared.
    @cached_property
    def sizes(self) -> np.ndarray:
        return _read_only(np.array([math.prod(s) for s in self.shapes], dtype=np.int64))

    @cached_property
    def offsets(self) -> np.ndarray:
        """offsets[k] is where parameter k starts; offsets[-1] is n_parameters."""
        return _read_only(np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64))

    @cached_property
    def n_parameters(self) -> int:
        return int(self.sizes.sum())

    def split(self, vector: np.ndarray | torch.Tensor) -> dict[str, np.ndarray | torch.Tensor]:
        """A flat vector of n_parameters as {name: array shaped like the parameter}."""
        if vector.shape[-1] != self.n_parameters:
            raise ValueError(
                f"vector has {vector.shape[-1]} entries but the layout has {self.n_parameters} parameters"
            )
        offsets = self.offsets
        return {
            name: vector[..., offsets[k] : offsets[k + 1]].reshape(*vector.shape[:-1], *shape)
            for k, (name, shape) in enumerate(zip(self.names, self.shapes))
        }

    def to_dict(self) -> dict:
        """The layout as JSON-ready names and shapes; :meth:`from_dict` reads it back."""
        return {"names": list(self.names), "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def from_dict(cls, d: dict) -> "ParameterLayout":
        """The layout :meth:`to_dict` wrote (a store's manifest, a decomposition's header)."""
        return cls(tuple(d["names"]), tuple(tuple(int(x) for x in s) for s in d["shapes"]))

    @classmethod
    def anonymous(cls, n_parameters: int) -> "ParameterLayout":
        """A layout for data made outside a model (e.g. from a dense array)."""
        return cls(("theta",), ((int(n_parameters),),))


#: The heads of transformers' sequence classifiers by name: BERT-likes' classifier and pooler (DistilBERT's
#: pre_classifier), decoders' score (GPT-2, Llama, Mistral, Qwen2, Gemma, Phi, MoEs), BART's and T5's
#: classification_head, XLNet's sequence_summary and logits_proj, ModernBERT's head, EuroBERT's dense at
#: the top of the model, a zero-shot LM's lm_head. "classifier|pooler" alone left the head in the PEFs of
#: every decoder, where it held 0.8-1.0 of each top example's mass.
HEAD_PATTERN = r"classifier|pooler|score|classification_head|sequence_summary|logits_proj|^head\.|^dense\.|lm_head"


def select_parameters(
    model: torch.nn.Module, include: NameFilter = None, exclude: NameFilter = None
) -> list[tuple[str, torch.nn.Parameter]]:
    """The model's parameters that count, in ``named_parameters()`` order.

    ``include`` / ``exclude`` are regular expressions searched in parameter names
    (a string or a list of them), or a predicate on the name. ``None`` includes all
    trainable parameters and excludes none.
    """
    from .validation import name_predicate  # on use: the records of this module are read without torch

    keep = name_predicate(include, "include", True)
    drop = name_predicate(exclude, "exclude", False)
    all_named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not all_named:
        raise ValueError("none of the model's parameters is trainable (requires_grad=False everywhere), so there is "
                         "no gradient to compute; unfreeze the ones the PEFs should cover, e.g. model.requires_grad_(True)")
    selected = [(n, p) for n, p in all_named if keep(n) and not drop(n)]
    if exclude is not None and not any(drop(n) for n, _ in all_named):
        warnings.warn(
            f"exclude={exclude!r} matches none of the model's {len(all_named)} trainable parameters, so nothing is "
            f"left out{_outside_body(model)}; pass a pattern found in the names to leave out (the heads of "
            f"transformers' classifiers: exclude=workbench.core.params.HEAD_PATTERN)", stacklevel=2)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and keep(n) and not drop(n)]
    if not selected and frozen:
        raise ValueError(
            f"the parameter filter (include={include!r}, exclude={exclude!r}) matches {len(frozen)} of the model's "
            f"parameters, all frozen (requires_grad=False; e.g. {', '.join(frozen[:3])}), so there is no gradient to "
            "compute: unfreeze them first, e.g. p.requires_grad_(True) for each"
        )
    if frozen and selected and include is not None:  # a partly frozen fine-tune: the PEFs covered 6 of 16 asked for
        warnings.warn(
            f"the parameter filter (include={include!r}, exclude={exclude!r}) matches {len(selected) + len(frozen)} of "
            f"the model's parameters, of which {len(frozen)} are frozen (requires_grad=False; e.g. "
            f"{', '.join(frozen[:3])}) and left out of the PEFs: unfreeze them first (p.requires_grad_(True)) to cover "
            "them")  # reported at this line, so once however many steps of the run select the parameters
    if not selected:
        examples = ", ".join(n for n, _ in all_named[:6])
        raise ValueError(
            f"the parameter filter (include={include!r}, exclude={exclude!r}) matches none of the "
            f"model's {len(all_named)} trainable parameters (e.g. {examples}); "
            "pass a regular expression that is found in some of these names, or include=None for all."
        )
    return selected


def layout_of(named: Iterable[tuple[str, torch.Tensor]]) -> ParameterLayout:
    named = list(named)
    return ParameterLayout(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))


def _outside_body(model) -> str:
    """", whose head is score.weight, score.bias": the trainable parameters outside a transformers model's body
    (its ``base_model``), for a message; "" for other models."""
    import torch

    body = getattr(model, "base_model", None)
    if not isinstance(body, torch.nn.Module) or body is model:
        return ""
    inside = {id(p) for p in body.parameters()}
    names = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in inside]
    return f" (its head is {', '.join(names[:6])})" if names else ""

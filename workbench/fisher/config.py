"""What a PEF run computes (:class:`PefConfig`), over which parameters and by which path (:class:`Plan`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from torch import nn

from .. import __version__
from ..core import kinds
from ..core.params import NameFilter, ParameterLayout, layout_of, select_parameters
from ..core.provenance import model_name
from .rules import PER_EXAMPLE_RULES

logger = logging.getLogger(__name__)


@dataclass
class PefConfig:
    """What to compute. Stored beside the PEFs, so a resumed run can check it matches."""

    kind: str = "lrm"  # a name in workbench.core.kinds.KINDS
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
        kinds.kind(self.kind)  # ValueError naming the kinds
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
class Plan:
    """Which selected parameters the hooks path covers, and where each sits on the flat axis."""

    named: list[tuple[str, nn.Parameter]]
    layout: ParameterLayout
    rule_modules: list[nn.Module]  # modules with a rule that own selected parameters
    owned: dict[int, list[tuple[str, int]]]  # id(module) -> [(attribute name, parameter index)]
    fallback: list[int]  # parameter indices no rule covers

    @classmethod
    def make(cls, model: nn.Module, named: list[tuple[str, nn.Parameter]], use_rules: bool) -> "Plan":
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


def make_plan(model: nn.Module, config: PefConfig) -> Plan:
    named = select_parameters(model, config.include, config.exclude)
    plan = Plan.make(model, named, use_rules=config.method == "hooks")
    if config.method == "hooks" and plan.fallback:
        names = [named[k][0] for k in plan.fallback[:5]]
        logger.warning(
            "no per-example rule for the layers owning %d selected parameters (e.g. %s); "
            "they are computed one example at a time, which is slower",
            len(plan.fallback),
            ", ".join(names),
        )
    return plan


def pef_info(model: nn.Module, config: PefConfig, plan: Plan, n_examples: int) -> dict:
    """Provenance stored with the PEFs."""
    return {
        "model": model_name(model),
        "n_examples": n_examples,
        "n_parameters": plan.layout.n_parameters,
        "package_version": __version__,
        **config.to_dict(),
    }

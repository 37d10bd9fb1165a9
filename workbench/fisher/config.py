"""What a PEF run computes (:class:`PefConfig`), over which parameters and by which path (:class:`Plan`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from .. import __version__
from ..core import kinds
from ..core.params import NameFilter, ParameterLayout, layout_of, select_parameters
from ..core.provenance import model_name
from ..core.sketch import CountSketch
from ..core.validation import name_filter
from .matching import rule_for
from .regions import Region
from .rules import PerExampleRule

logger = logging.getLogger(__name__)


DEFAULT_N_VALUES = 65536  # compute_pefs' and write_pefs' default


@dataclass
class PefConfig:
    """What to compute. Stored beside the PEFs, so a resumed run can check it matches."""

    kind: str = "lrm"  # a name in workbench.core.kinds.KINDS
    n_values: int | None = DEFAULT_N_VALUES  # entries kept per example; None keeps all non-zeros
    top_k_classes: int | None = None  # None: all classes
    include: NameFilter = None  # regular expression(s) on parameter names
    exclude: NameFilter = None
    batch_size: int = 16
    method: str = "hooks"  # "hooks" or "loop"
    sketch: int | None = None  # LRM only: d, a count sketch of the parameter axis instead of the top n_values
    sketch_seed: int = 0

    def __post_init__(self):
        # compiled patterns become their text here, so the run records them (workbench.core.validation)
        self.include, self.exclude = name_filter(self.include, "include"), name_filter(self.exclude, "exclude")
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
        if self.sketch is None and self.sketch_seed != 0:
            raise ValueError(f"sketch_seed={self.sketch_seed!r} chooses a count sketch, but sketch is None: pass "
                             "sketch=d (a few thousand numbers per class slot) with it, or leave sketch_seed out")
        if self.sketch is not None:
            if self.n_values not in (None, DEFAULT_N_VALUES):
                raise ValueError(f"n_values={self.n_values} selects each example's top entries, which a sketched PEF "
                                 "does not do (it keeps all its d numbers): leave n_values out with sketch=d, or pass "
                                 "sketch=None to keep the top n_values")
            if self.kind != "lrm":
                raise ValueError(
                    f"sketch= applies to kind='lrm' only, got kind={self.kind!r}: a D-PEF's sketch would have negative "
                    "entries (the signs), which D-NPEFF cannot fit; use kind='lrm' with sketch, or kind='d' with n_values"
                )
            CountSketch(self.sketch, 1, self.sketch_seed)  # TypeError/ValueError naming a bad d or seed
            self.n_values = None  # a sketched PEF keeps all its d·k numbers

    def count_sketch(self, n_parameters: int) -> CountSketch | None:
        """The count sketch of ``n_parameters`` this run applies; None for top-n PEFs."""
        if self.sketch is not None and self.sketch >= n_parameters:
            # A sketch as wide as the parameters keeps more numbers than the exact PEFs (and a typo of 10**9
            # asked for 89 GiB per batch before any estimate)
            raise ValueError(f"sketch={self.sketch} is not smaller than the {n_parameters} parameters the PEFs cover: "
                             "a sketch that wide keeps more numbers than the exact PEFs; pass n_values=None (exact) "
                             "instead, or a sketch of a few thousand")
        return None if self.sketch is None else CountSketch(self.sketch, n_parameters, self.sketch_seed)

    def to_dict(self) -> dict:
        """The settings as a store's manifest records them; a function as a filter is refused (ValueError)."""
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
        }  # a sketch is recorded by pef_info, and only when set: unsketched runs' records (and store identities) stay as they were


@dataclass
class Plan:
    """Which selected parameters the hooks path covers, and where each sits on the flat axis.

    ``rule_modules`` are the layers whose rule serves their selected parameters; before a
    run's first batch, :func:`workbench.fisher.checks.check_plan` moves to ``fallback`` those
    whose calls have no per-example batch axis or whose rule disagrees with the loop, and
    names in ``expand`` the layers whose output, shared by the batch, is expanded to it, and
    in ``fold`` those called on examples and positions folded into one axis. It then moves
    from ``fallback`` to ``transformed`` the parameters whose per-example gradients
    ``torch.func`` computes for the whole batch (:mod:`workbench.fisher.transforms`); what
    stays in ``fallback`` takes the loop, one example at a time. Of those transformed, the
    ones in ``regions`` are computed over a sub-module rather than the whole model
    (:mod:`workbench.fisher.regions`)."""

    named: list[tuple[str, nn.Parameter]]
    layout: ParameterLayout
    rule_modules: list[nn.Module]  # modules with a rule that own selected parameters
    owned: dict[int, list[tuple[str, int]]]  # id(module) -> [(attribute name, parameter index)]
    fallback: list[int]  # parameter indices no rule covers (and not transformed): the loop
    rules: dict[int, PerExampleRule] = field(default_factory=dict)  # id(module) -> its rule
    expand: set[int] = field(default_factory=set)  # ids of layers whose batch-shared output is expanded
    fold: set[int] = field(default_factory=set)  # ids of layers called on examples × positions folded into one axis
    checked: bool = False  # whether check_plan has run
    transformed: list[int] = field(default_factory=list)  # parameter indices served by torch.func's vmap
    regions: list[Region] = field(default_factory=list)  # those of them computed over a sub-module
    # every batch computed in groups of one length, without padding (the plain loop's plan; for the
    # fast path, where padding changes the outputs: fisher.checks.computed_alone)
    unpadded: bool = False

    @classmethod
    def make(cls, model: nn.Module, named: list[tuple[str, nn.Parameter]], use_rules: bool) -> "Plan":
        index_of = {id(p): k for k, (_, p) in enumerate(named)}
        owned: dict[int, list[tuple[str, int]]] = {}
        rules: dict[int, PerExampleRule] = {}
        rule_modules = []
        covered = set()
        if use_rules:
            for module in model.modules():
                mine = [(a, index_of[id(p)]) for a, p in module.named_parameters(recurse=False) if id(p) in index_of]
                rule = rule_for(module) if mine else None
                if rule is not None:
                    owned[id(module)], rules[id(module)] = mine, rule
                    rule_modules.append(module)
                    covered.update(k for _, k in mine)
        fallback = [k for k in range(len(named)) if k not in covered]
        # the plain loop takes each example alone, its probabilities too (not those of a padded batch)
        return cls(named, layout_of(named), rule_modules, owned, fallback, rules, checked=not use_rules,
                   unpadded=not use_rules)

    def without(self, modules: list[nn.Module]) -> None:
        """Moves ``modules``' parameters from their rules to the loop."""
        gone = {id(m) for m in modules}
        for m in gone & set(self.owned):
            self.fallback.extend(k for _, k in self.owned.pop(m))
            self.rules.pop(m, None)
        self.rule_modules = [m for m in self.rule_modules if id(m) not in gone]
        self.expand -= gone
        self.fold -= gone
        self.fallback.sort()

    @property
    def call_inputs(self) -> dict:
        """id(module) -> how its rule's input is found from its call, where not the first argument."""
        return {m: rule.input_from_call for m, rule in self.rules.items() if hasattr(rule, "input_from_call")}

    def transform(self, indices: list[int]) -> None:
        """Moves parameters from the loop to torch.func's per-example gradients."""
        self.transformed = sorted(set(self.transformed) | set(indices))
        self.fallback = [k for k in self.fallback if k not in set(indices)]

    def add_regions(self, regions: list[Region]) -> None:
        """Moves the regions' parameters from the loop to torch.func over their sub-modules."""
        self.regions.extend(regions)
        self.transform([k for region in regions for _, k in region.parameters])

    @property
    def whole_model_transformed(self) -> list[int]:
        """The transformed parameters computed by ``vmap`` over the whole model."""
        in_regions = {k for region in self.regions for _, k in region.parameters}
        return [k for k in self.transformed if k not in in_regions]

    @property
    def fast_share(self) -> float:
        """The share of the selected parameters' entries that do not take the loop (rules and torch.func)."""
        fallback = sum(self.named[k][1].numel() for k in self.fallback)
        return 1.0 - fallback / max(self.layout.n_parameters, 1)


def make_plan(model: nn.Module, config: PefConfig, named: list | None = None) -> Plan:
    """The run's plan over ``named`` (the parameters ``config`` selects, selected here where not given)."""
    named = select_parameters(model, config.include, config.exclude) if named is None else named
    plan = Plan.make(model, named, use_rules=config.method == "hooks")
    if config.method == "hooks" and plan.fallback:
        names = [named[k][0] for k in plan.fallback[:5]]
        # not a warning yet: the first batch's check warns of what it leaves on the loop, and why
        logger.info(
            "no per-example rule for the layers owning %d selected parameters (e.g. %s); "
            "torch.func computes their per-example gradients for the whole batch where the first batch's check "
            "finds that it can, else the per-example loop does (slower)",
            len(plan.fallback),
            ", ".join(names),
        )
    return plan


def pef_info(model: nn.Module, config: PefConfig, plan: Plan, n_examples: int) -> dict:
    """Provenance stored with the PEFs; a sketched run's ``"sketch"`` names its sketch and the
    parameter axis it sketches (:meth:`workbench.core.sketch.CountSketch.to_info`)."""
    sketch = config.count_sketch(plan.layout.n_parameters)
    return {
        "model": model_name(model),
        "n_examples": n_examples,
        "n_parameters": plan.layout.n_parameters,
        "package_version": __version__,
        **config.to_dict(),
        **({"sketch": sketch.to_info(plan.layout)} if sketch is not None else {}),
    }


def stored_layout(config: PefConfig, plan: Plan) -> ParameterLayout:
    """The axis the run's PEFs live on: the parameters, or a sketched run's d coordinates."""
    sketch = config.count_sketch(plan.layout.n_parameters)
    return plan.layout if sketch is None else sketch.layout()

"""What did a fine-tune change? Strategies gained, lost and kept between two models.

Two models with the same parameter layout (a model and a copy trained further, on other
data or with a strategy added) get PEFs on the same examples and a fit each; their
components are paired by |cos| (:mod:`.matching`). Every component is then shown with
the evidence from *both* models: it is expressed on the other model's PEFs too
(``transform``), so each has a coefficient mass, a top set and a KL ratio (perturbation
check, method notes section 7) on model A and on model B.

- component status: ``kept`` (paired, the same majority strategy on both), ``changed``
  (paired, another strategy in B), ``lost`` (A's, no partner in B), ``gained`` (B's, no
  partner in A);
- strategy status: a strategy (any attribute value of the examples) is *named* by a model
  when one of its components' top sets holds it with purity ≥ ``min_purity``; named by both
  is ``kept``, by A only ``lost``, by B only ``gained``. This is the answer the table is
  for; the component rows are its evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..core.defaults import N_ITERS_G_ONLY, N_ITERS_JOINT, N_VALUES
from ..core.arguments import fraction, positive_int
from ..core.params import layout_of, select_parameters
from ..core.validation import as_labels
from ..fisher.inputs import n_inputs
from .perturb import check_step
from .matching import DEFAULT_MIN_COS, OnCoefficients, match_components, match_quality
from .tables import coefficient_mass, component_table, top_examples, values_of

#: A component names a strategy when this share of its top set holds it.
DEFAULT_MIN_PURITY = 0.8


@dataclass
class ModelDiff:
    """The two models' components side by side, and the strategies each names."""

    components: pd.DataFrame  # one row per pair or unmatched component; see model_diff
    strategies: pd.DataFrame  # index: strategy; named_a, named_b, status, components_a, components_b
    quality: dict  # match_quality of the pairing
    names: tuple[str, str] = ("A", "B")

    def status(self, strategy) -> str:
        return str(self.strategies.loc[strategy, "status"])

    def __repr__(self) -> str:
        counts = self.strategies["status"].value_counts().to_dict()
        return (f"ModelDiff({self.names[0]} → {self.names[1]}: {self.quality['n_matched']} components kept, "
                f"strategies {counts})")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        from ..report import fragment, model_diff_html

        return {"text/plain": repr(self), "text/html": fragment(model_diff_html(self))}


def _evidence(fit, other_W, model_own, model_other, inputs, labels, groups, n_top, n_baseline, epsilon, seed,
              device) -> pd.DataFrame:
    """Per component of ``fit``: mass, strategy and purity, KL ratio on its own model and on the other."""
    from .over_training import kl_ratios

    attributes = pd.DataFrame({"strategy": list(groups)})
    own = component_table(fit.W_, fit.components_, labels=labels, attributes=attributes, n_top=n_top, kind=fit.kind)
    other = component_table(other_W, fit.components_, labels=labels, attributes=attributes, n_top=n_top,
                            kind=fit.kind)
    settings = dict(n_top=n_top, n_baseline=n_baseline, epsilon=epsilon, seed=seed, device=device)
    kl_own = kl_ratios(model_own, fit, inputs, labels, **settings)
    kl_other = kl_ratios(model_other, OnCoefficients(fit, other_W), inputs, labels, **settings)
    return pd.DataFrame({
        "top_own": [top_examples(fit.W_, j, n_top) for j in range(fit.W_.shape[1])],
        "mass_own": own["mass"], "mass_other": coefficient_mass(other_W, fit.components_, fit.kind, share=True),
        "strategy_own": own["strategy"], "purity_own": own["strategy_purity"],
        "strategy_other": other["strategy"], "purity_other": other["strategy_purity"],
        "kl_ratio_own": kl_own, "kl_ratio_other": kl_other,
    })


def model_diff(
    model_a,
    model_b,
    inputs,
    labels,
    groups: Sequence,
    *,
    names: tuple[str, str] = ("A", "B"),
    n_components: int = 16,
    n_iters_g_only: int = N_ITERS_G_ONLY,
    n_iters_joint: int = N_ITERS_JOINT,
    n_values: int | None = N_VALUES,
    include=None,
    exclude=None,
    n_top: int = 20,
    n_baseline: int = 100,
    epsilon: float = 0.1,
    min_cos: float = DEFAULT_MIN_COS,
    min_purity: float = DEFAULT_MIN_PURITY,
    seed: int = 0,
    device=None,
) -> ModelDiff:
    """Compare two models of the same parameter layout on the same examples.

    groups: per example, its strategies (or any attribute; tuples count for each value).
    include, exclude: the parameters the PEFs cover (regular expressions on names), the same
        for both models. The head (pooler, classifier) serves every strategy, so a strategy
        that lives in the encoder can stand out more clearly without it.
    Returns a :class:`ModelDiff`: ``components`` has one row per pair or unmatched
    component with columns status, component_a, component_b, cos, and for each model
    (suffix ``_a``/``_b``) mass, strategy, purity, kl_ratio of the component as seen on that
    model; ``strategies`` one row per strategy value.
    """
    from ..npeff import estimator_for
    from ..runner import compute_pefs

    # the settings the evidence reads, checked before the two models' PEFs and fits (minutes)
    check_step(epsilon, None)
    fraction(min_cos, "min_cos")
    fraction(min_purity, "min_purity")
    positive_int(n_top, "n_top")
    positive_int(n_baseline, "n_baseline")
    n_examples = n_inputs(inputs)
    if labels is None:  # the evidence reads each example's accuracy
        raise ValueError("model_diff needs the examples' labels (one class index per example); got labels=None")
    labels = as_labels(labels, n_examples).numpy()
    groups = [tuple(g) if isinstance(g, (list, tuple, np.ndarray)) else g for g in groups]
    if len(groups) != len(labels):
        raise ValueError(f"groups has {len(groups)} rows for {len(labels)} labels; give one per example")
    estimator = estimator_for("lrm").for_iterations(n_components, n_iters_g_only, n_iters_joint, seed=seed,
                                                     device=device, progress=False)
    estimator.check_params()  # the fit of each model is a clone of it
    if n_components > n_examples:
        raise ValueError(f"n_components={n_components} is more than the {n_examples} examples; use at most as many")
    # two layouts, or two class counts, found after both models' PEFs and fits (minutes): found now
    layouts = [layout_of(select_parameters(m, include, exclude)) for m in (model_a, model_b)]
    if layouts[0] != layouts[1]:
        raise ValueError(f"the two models have different parameter layouts ({layouts[0].n_parameters} and "
                         f"{layouts[1].n_parameters} parameters selected); compare models of the same architecture")
    pefs, fits = [], []
    for model in (model_a, model_b):
        p = compute_pefs(model, inputs, labels, n_values=n_values, include=include, exclude=exclude, device=device,
                         progress=False)
        p.info.pop("model_fingerprint", None)  # each fit is also applied to the other model's PEFs
        pefs.append(p)
        fits.append(clone(estimator).fit(p))
    settings = dict(inputs=inputs, labels=labels, groups=groups, n_top=n_top, n_baseline=n_baseline, epsilon=epsilon,
                    seed=seed, device=device)
    ev_a = _evidence(fits[0], fits[0].transform(pefs[1]), model_a, model_b, **settings)
    ev_b = _evidence(fits[1], fits[1].transform(pefs[0]), model_b, model_a, **settings)
    matches = match_components(fits[0], fits[1], min_cos=min_cos)
    rows = [_row(m, ev_a, ev_b) for m in matches.itertuples()]
    components = pd.DataFrame(rows)
    return ModelDiff(components, _strategy_status(ev_a, ev_b, groups, min_purity), match_quality(matches), names)


def _side(evidence: pd.DataFrame, j: int, own: str, other: str) -> dict:
    e = evidence.loc[j]
    return {f"mass_{own}": e.mass_own, f"mass_{other}": e.mass_other,
            f"strategy_{own}": e.strategy_own, f"purity_{own}": e.purity_own,
            f"strategy_{other}": e.strategy_other, f"purity_{other}": e.purity_other,
            f"kl_ratio_{own}": e.kl_ratio_own, f"kl_ratio_{other}": e.kl_ratio_other}


def _row(match, ev_a: pd.DataFrame, ev_b: pd.DataFrame) -> dict:
    """One row of the component table: a pair (A's evidence on both models, B's strategy), or one side."""
    if match.matched:
        # A pair whose top sets are of other strategies is the same direction put to another use.
        same = ev_a.loc[match.a, "strategy_own"] == ev_b.loc[match.b, "strategy_own"]
        row = {"status": "kept" if same else "changed", "component_a": match.a, "component_b": match.b,
               "cos": match.cos}
        row.update(_side(ev_a, match.a, "a", "b"))
        row.update(strategy_b=ev_b.loc[match.b, "strategy_own"], purity_b=ev_b.loc[match.b, "purity_own"],
                   mass_b=ev_b.loc[match.b, "mass_own"], kl_ratio_b=ev_b.loc[match.b, "kl_ratio_own"])
        return row
    if match.a >= 0:
        return {"status": "lost", "component_a": match.a, "component_b": -1, "cos": match.cos,
                **_side(ev_a, match.a, "a", "b")}
    return {"status": "gained", "component_a": -1, "component_b": match.b, "cos": match.cos,
            **_side(ev_b, match.b, "b", "a")}


def _best_share(evidence: pd.DataFrame, groups: list, value) -> float:
    """The largest share of a component's top set that holds ``value``, over the components."""
    shares = [_share_holding(top, groups, value) for top in evidence["top_own"] if len(top)]
    return float(max(shares)) if shares else float("nan")


def _share_holding(top, groups: list, value) -> float:
    """The share of the examples ``top`` whose attribute values include ``value``."""
    return float(np.mean([value in values_of(groups[i]) for i in top]))


def _strategy_status(ev_a: pd.DataFrame, ev_b: pd.DataFrame, groups: list, min_purity: float) -> pd.DataFrame:
    def named(evidence):
        # By the share of the top set holding the value, as best_purity: an example of two
        # strategies holds each (a top set of contrast and contrast+negation examples names
        # contrast, though its majority label is neither).
        components: dict = {}
        for j, top in evidence["top_own"].items():
            if len(top):
                for value in {v for i in top for v in values_of(groups[i])}:
                    if _share_holding(top, groups, value) >= min_purity:
                        components.setdefault(value, []).append(int(j))
        return {value: sorted(js) for value, js in components.items()}

    in_a, in_b = named(ev_a), named(ev_b)
    values = {v for cell in groups for v in values_of(cell)}
    rows = []
    for value in sorted(values, key=str):
        a, b = value in in_a, value in in_b
        status = "kept" if a and b else "lost" if a else "gained" if b else "not named"
        rows.append({"strategy": value, "named_a": a, "named_b": b, "status": status,
                     "components_a": in_a.get(value, []), "components_b": in_b.get(value, []),
                     "best_purity_a": _best_share(ev_a, groups, value),
                     "best_purity_b": _best_share(ev_b, groups, value)})
    return pd.DataFrame(rows).set_index("strategy")

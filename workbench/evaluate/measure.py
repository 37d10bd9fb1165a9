"""One evaluated setting: PEFs of one scope, an NPEFF fit, its scores beside the baselines.

Everything a setting needs that does not depend on the fit (model, examples, PEFs of a
scope, the baselines' gradients and activations) is computed once per process and kept in
a :class:`Workspace`, so the settings of a study share it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from ..core.defaults import N_ITERS_G_ONLY, N_ITERS_JOINT, N_VALUES
from ..analysis.baselines import (
    dictionary_coefficients,
    hidden_states,
    kmeans_coefficients,
    npeff_coefficients,
    predicted_class_gradients,
    score_components,
)
from ..analysis.highlights import token_scores
from ..analysis.moves import perturbation_direction, perturbed
from ..analysis.perturb import perturbation_table, showcase_component
from ..analysis.tables import component_table, top_examples
from ..app.pipeline import SCOPES
from ..fisher.inputs import class_logits, eval_mode
from ..models.embedded import default_model, load_default_model, tokenize
from ..models.embedded.splits import analysis_examples, seen_texts
from ..npeff import estimator_for
from ..runner.compute import compute_pefs

BASELINES = ("k-means on gradients", "dictionary learning on activations")


@dataclass(frozen=True)
class Setting:
    """One NPEFF configuration on one model; ``perturb`` and ``highlights`` say whether the
    (slower) perturbation checks and highlight hit rate are measured too."""

    base: str = "tiny"
    seed: int = 0
    scope: str = "all"
    kind: str = "lrm"
    n_components: int = 16
    n_values: int = N_VALUES
    orthogonal_reg: float = 0.0
    n_iters_g_only: int = N_ITERS_G_ONLY
    n_iters_joint: int = N_ITERS_JOINT
    normalize: bool = True
    perturb: bool = True
    highlights: bool = False
    label: str = ""

    def but(self, **changes) -> "Setting":
        return replace(self, **changes)


class Workspace:
    """Models, examples, PEFs and baseline inputs, computed once per key."""

    def __init__(self, n_examples: int = 600, progress: bool = False) -> None:
        self.n_examples = n_examples
        self.progress = progress
        self._cache: dict = {}

    @property
    def cached(self) -> set:
        return set(self._cache)

    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def model(self, base: str, seed: int):
        """(folder, model, tokenizer) of the trained embedded model."""
        def make():
            folder = default_model(base=base, seed=seed, progress=self.progress)
            return (folder, *load_default_model(folder))
        return self._get(("model", base, seed), make)

    def examples(self, base: str, seed: int) -> tuple[pd.DataFrame, dict]:
        def make():
            folder, _, tokenizer = self.model(base, seed)
            examples = analysis_examples(self.n_examples, seed=seed, model_folder=folder)
            return examples, tokenize(tokenizer, list(examples["text"]))
        return self._get(("examples", base, seed), make)

    def overlap(self, base: str, seed: int) -> int:
        """Analysed texts the model was trained or validated on (0 when held out)."""
        folder = self.model(base, seed)[0]
        return int(self.examples(base, seed)[0]["text"].isin(seen_texts(folder) or frozenset()).sum())

    def pefs(self, setting: Setting):
        def make():
            _, model, _ = self.model(setting.base, setting.seed)
            examples, inputs = self.examples(setting.base, setting.seed)
            return compute_pefs(model, inputs, examples["label"].to_numpy(), kind=setting.kind, n_values=setting.n_values,
                                batch_size=32, progress=self.progress, **SCOPES[setting.scope])
        return self._get(("pefs", setting.base, setting.seed, setting.scope, setting.kind, setting.n_values), make)

    def baselines(self, setting: Setting) -> dict[str, np.ndarray]:
        """k-means on the predicted class's gradients (same scope and n_values as NPEFF) and
        dictionary learning on [CLS] activations, with the setting's number of components."""
        _, model, _ = self.model(setting.base, setting.seed)
        _, inputs = self.examples(setting.base, setting.seed)
        gradients = self._get(("gradients", setting.base, setting.seed, setting.scope, setting.n_values), lambda: predicted_class_gradients(
            compute_pefs(model, inputs, top_k_classes=1, n_values=setting.n_values, batch_size=32, progress=self.progress,
                         **SCOPES[setting.scope])))
        activations = self._get(("activations", setting.base, setting.seed), lambda: hidden_states(model, inputs))
        r = setting.n_components
        return {
            BASELINES[0]: self._get(("kmeans", setting.base, setting.seed, setting.scope, setting.n_values, r),
                                    lambda: kmeans_coefficients(gradients, r, seed=setting.seed)),
            BASELINES[1]: self._get(("dictionary", setting.base, setting.seed, r),
                                    lambda: dictionary_coefficients(activations, r, seed=setting.seed)),
        }


def fit(setting: Setting, workspace: Workspace):
    pefs = workspace.pefs(setting)
    estimator_type = estimator_for(setting.kind)
    # only some estimators have an orthogonal penalty: asked of the estimator, not of the kind's name
    options = {"orthogonal_reg": setting.orthogonal_reg} if "orthogonal_reg" in estimator_type().get_params() else {}
    estimator = estimator_type.for_iterations(
        setting.n_components, setting.n_iters_g_only, setting.n_iters_joint, seed=setting.seed,
        normalize=setting.normalize, progress=workspace.progress, **options)
    return estimator.fit(pefs)


def measure(setting: Setting, workspace: Workspace, *, baselines: bool = True) -> list[dict]:
    """Rows for NPEFF (and, with ``baselines``, k-means and dictionary learning with the same
    number of components), every one scored by :func:`score_components`."""
    started = time.perf_counter()
    examples, inputs = workspace.examples(setting.base, setting.seed)
    strategies = examples["strategies"].map(tuple).tolist()
    estimator = fit(setting, workspace)
    row = {**asdict(setting), "method": "NPEFF", **score_components(npeff_coefficients(estimator), strategies)}
    _, model, tokenizer = workspace.model(setting.base, setting.seed)
    if setting.perturb:
        kl = perturbation_table(model, estimator, inputs, examples["label"].to_numpy(), progress=False)["kl_ratio"]
        row.update(kl_median=float(kl.median()), kl_q25=float(kl.quantile(0.25)), kl_q75=float(kl.quantile(0.75)))
        row["showcase"] = showcase(estimator, examples, kl)
    if setting.highlights:
        row["hit_rate"] = hit_rate(model, tokenizer, estimator, examples, inputs)
    row["seconds"] = time.perf_counter() - started
    rows = [row]
    if baselines:
        for name, coefficients in workspace.baselines(setting).items():
            rows.append({**asdict(setting), "method": name, **score_components(coefficients, strategies)})
    return rows


def showcase(estimator, examples: pd.DataFrame, kl: pd.Series) -> dict:
    """The component the quickstart would show (:func:`~workbench.analysis.perturb.showcase_component`)."""
    table = component_table(estimator.W_, estimator.components_, labels=examples["label"].to_numpy(),
                            attributes=pd.DataFrame({"strategy": examples["strategies"].map(tuple)}), n_top=20,
                            kind=estimator.kind)
    best = showcase_component(table, kl)
    return {"component": best, "kl_ratio": float(kl[best]),
            "strategy": table.loc[best, "strategy"], "strategy_purity": float(table.loc[best, "strategy_purity"])}


def hit_rate(model, tokenizer, estimator, examples: pd.DataFrame, inputs: dict, n_top: int = 10) -> float:
    """Share of the (component, top example) pairs whose highest-scored visible token (not a
    special token) is one of the example's deciding words, over every component's top ``n_top``."""
    from ..models.embedded import deciding_token_positions

    hits = []
    for j in range(estimator.n_components):
        top = top_examples(estimator.W_, j, n_top)
        batch = {k: v[top] for k, v in inputs.items()}
        for i, scores in zip(top, token_scores(model, estimator, j, batch)):
            word_ids = tokenizer(examples["text"].iloc[i]).word_ids()
            visible = [t for t, w in enumerate(word_ids) if w is not None and t < len(scores.scores)]
            best = max(visible, key=lambda t: scores.scores[t])
            hits.append(best in deciding_token_positions(examples.iloc[i], word_ids))
    return float(np.mean(hits))


def cross_perturbation(setting: Setting, workspace: Workspace, *, per_group: int = 30, epsilon: float = 0.1) -> pd.DataFrame:
    """Does the model use a strategy's direction on the multi-factor examples too?

    For each single strategy, the purest component naming it is perturbed by ±ε; the mean
    KL on ``per_group`` examples of every strategy (single and multi-factor) is divided by
    the mean KL over all of them (the larger sign's). Rows: the component's strategy;
    columns: the examples' strategy.
    """
    examples, inputs = workspace.examples(setting.base, setting.seed)
    _, model, _ = workspace.model(setting.base, setting.seed)
    estimator = fit(setting.but(perturb=False), workspace)
    table = component_table(estimator.W_, estimator.components_, labels=examples["label"].to_numpy(),
                            attributes=pd.DataFrame({"strategy": examples["strategies"].map(tuple)}), n_top=20,
                            kind=estimator.kind)
    rng = np.random.default_rng(setting.seed)
    groups = {name: np.sort(rng.choice(idx, size=min(per_group, len(idx)), replace=False))
              for name, idx in examples.groupby("strategy").indices.items()}
    sample = np.concatenate(list(groups.values()))
    batch = {k: v[sample] for k, v in inputs.items()}
    where = {name: np.isin(sample, idx) for name, idx in groups.items()}
    with torch.no_grad(), eval_mode(model):
        original = torch.log_softmax(class_logits(model, batch).double(), dim=-1)
        rows = {}
        for strategy, named in table.groupby("strategy"):
            j = int(named.sort_values(["strategy_purity", "mass"], ascending=False).index[0])
            direction = perturbation_direction(estimator, j)
            best = None
            for sign in (1.0, -1.0):
                with perturbed(model, estimator.layout_, sign * epsilon * direction):
                    log_p = torch.log_softmax(class_logits(model, batch).double(), dim=-1)
                kl = (original.exp() * (original - log_p)).sum(dim=1).numpy()
                ratios = {name: kl[mask].mean() / max(kl.mean(), 1e-30) for name, mask in where.items()}
                if best is None or max(ratios.values()) > max(best.values()):
                    best = ratios
            rows[f"{strategy} (component {j})"] = best
    return pd.DataFrame(rows).T[sorted(groups, key=lambda s: (s.count("+"), s))]

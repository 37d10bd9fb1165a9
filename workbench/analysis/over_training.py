"""When does a strategy appear? Components followed over a model's training checkpoints.

Each checkpoint's PEFs are computed on the same examples and expressed on one set of
components, in one or both of two ways:

- ``"transform"``: the components of one reference fit (by default of the last checkpoint)
  are kept fixed and each checkpoint's coefficients are fitted to them (method notes,
  section 5); the KL ratio of each component's perturbation is measured on the
  checkpoint's own model, on the top set those coefficients give.
- ``"match"``: every checkpoint gets a fit of its own, whose components are paired with the
  reference's by |cos| (:mod:`.matching`); the match quality says how much of the
  reference component existed then.

Per component and step: its coefficient mass (share of the reconstruction's Fisher mass),
its KL ratio, its purity (the share of its top set at that step holding the strategy that
the reference component's top set is mostly of: the strategy is *carried* by the component
once this is high), and for ``"match"`` the |cos| of its partner. Per step and strategy (any
attribute of the examples): the checkpoint's accuracy on the analysed examples, and the
held-out accuracy the training recorded in the checkpoint's ``checkpoint.json``, if any.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.defaults import N_ITERS_G_ONLY, N_ITERS_JOINT, N_VALUES
from ..core.arguments import fraction, positive_int, seed_value, user_path
from .perturb import check_step
from .tables import accuracy_by_group, coefficient_mass, top_examples, values_of

STRATEGIES = ("transform", "match")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: The training's record in each checkpoint folder (``models.embedded.train_default_model`` writes it).
CHECKPOINT_RECORD = "checkpoint.json"


def checkpoint_series(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """The ``checkpoint-<step>`` model folders under ``folder`` (Hugging Face Trainer's layout),
    as (step, path) by step. Folders without a ``config.json`` (an optimizer state only) are skipped."""
    folder = user_path(folder, "folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of checkpoints")
    series = sorted((int(m.group(1)), p) for p in folder.iterdir()
                    if (m := _CHECKPOINT.match(p.name)) and (p / "config.json").is_file())
    if not series:
        raise ValueError(
            f"{folder} holds no checkpoint-<step>/ model folders; save them while training (e.g. "
            "models.embedded.default_model(checkpoint_every=100), or Trainer(save_strategy='steps'))"
        )
    return series


def recorded_accuracy(path: str | os.PathLike) -> dict:
    """The accuracy per strategy the training recorded for a checkpoint ({} when none)."""
    record = Path(path) / CHECKPOINT_RECORD
    return json.loads(record.read_text()) if record.is_file() else {}


@dataclass
class OverTraining:
    """Components over training: long frames, one row per (step, component, strategy) and per (step, group)."""

    components: pd.DataFrame  # step, component, strategy, mass, kl_ratio, purity, cos, partner
    accuracy: pd.DataFrame  # step, group, accuracy, source ("analysed" or "recorded")
    reference: pd.DataFrame  # the reference fit's component table (index: component)
    steps: list[int] = field(default_factory=list)

    def pivot(self, value: str = "mass", strategy: str = "transform") -> pd.DataFrame:
        """(steps × components) of ``value`` ("mass", "kl_ratio", "purity" or "cos") for one strategy."""
        rows = self.components[self.components["strategy"] == strategy]
        if rows.empty:
            raise ValueError(f"no {strategy!r} rows; this result has {sorted(self.components['strategy'].unique())}")
        return rows.pivot(index="step", columns="component", values=value)

    @staticmethod
    def values_of(strategy: str) -> list[str]:
        """The values ``pivot`` has for a strategy: the KL ratio where the reference's components are kept
        (``"transform"``), their |cos| to the reference where each checkpoint is fitted anew (``"match"``)."""
        return ["mass", "kl_ratio"] if strategy == "transform" else ["mass", "cos"]

    def accuracy_table(self, source: str = "analysed") -> pd.DataFrame:
        """(steps × groups) of the accuracy from one source."""
        rows = self.accuracy[self.accuracy["source"] == source]
        return rows.pivot(index="step", columns="group", values="accuracy")

    def match_quality(self) -> pd.DataFrame:
        """Per step, how well the checkpoint's own fit matches the reference (``"match"`` rows):
        components paired, their mean and lowest |cos|."""
        rows = self.components[self.components["strategy"] == "match"]
        if rows.empty:
            raise ValueError("no 'match' rows: run over_training with strategy='match' or 'both'")
        paired = rows[rows["partner"] >= 0]
        return pd.DataFrame({
            "n_matched": paired.groupby("step").size().reindex(self.steps, fill_value=0),
            "mean_cos": paired.groupby("step")["cos"].mean().reindex(self.steps),
            "min_cos": paired.groupby("step")["cos"].min().reindex(self.steps),
        }).rename_axis("step")

    def first_step(self, component: int, value: str = "mass", threshold: float = 0.5,
                   strategy: str = "transform") -> int | None:
        """The first step where ``value`` of ``component`` reaches ``threshold`` × its final value."""
        series = self.pivot(value, strategy)[component]
        reached = series.index[series >= threshold * series.iloc[-1]]
        return int(reached[0]) if len(reached) else None

    def __repr__(self) -> str:
        return (f"OverTraining({len(self.steps)} checkpoints, steps {self.steps[0]}-{self.steps[-1]}, "
                f"{len(self.reference)} components, strategies {sorted(self.components['strategy'].unique())})")

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        from ..report import fragment
        from ..report.strategies import over_training_html

        return {"text/plain": repr(self), "text/html": fragment(over_training_html(self))}


def _strategies(strategy: str) -> tuple[str, ...]:
    chosen = STRATEGIES if strategy == "both" else (strategy,)
    if any(s not in STRATEGIES for s in chosen):
        raise ValueError(f"strategy must be 'transform', 'match' or 'both', got {strategy!r}")
    return chosen


def over_training(
    checkpoints: Sequence[tuple[int, str | os.PathLike]] | str | os.PathLike,
    inputs,
    labels,
    groups: Sequence | None = None,
    *,
    reference=None,
    strategy: str = "transform",
    n_components: int = 16,
    n_iters_g_only: int = N_ITERS_G_ONLY,
    n_iters_joint: int = N_ITERS_JOINT,
    n_values: int | None = N_VALUES,
    include=None,
    exclude=None,
    n_top: int = 20,
    n_baseline: int = 100,
    epsilon: float = 0.1,
    min_cos: float | None = None,
    load_model=None,
    seed: int = 0,
    device=None,
    progress: bool = True,
) -> OverTraining:
    """Follow components over ``checkpoints`` (a folder of ``checkpoint-<step>/``, or (step, path) pairs).

    inputs, labels: the same examples for every checkpoint (a tokenizer's output and labels).
    groups: per example, the values to group the accuracy by (e.g. its strategies; tuples count
        for each value); None groups nothing and reports the overall accuracy only.
    reference: a fitted decomposition whose components are followed; default: a fit of
        ``n_components`` on the last checkpoint's PEFs (``seed``, the iterations given).
    strategy: "transform", "match" or "both" (see the module's docstring).
    load_model: path → model (default ``AutoModelForSequenceClassification`` from the folder, offline).
    """
    from tqdm.auto import tqdm

    from ..npeff import estimator_for
    from ..runner import compute_pefs
    from .matching import DEFAULT_MIN_COS, OnCoefficients, match_components

    strategies = _strategies(strategy)
    series = checkpoint_series(checkpoints) if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)
    if not series:
        raise ValueError("no checkpoints given")
    if not all(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (int, np.integer))
               for item in series):
        raise TypeError("checkpoints must be a folder of checkpoint-<step>/ folders, or (step, path) pairs with "
                        f"integer steps; got {series[:2]!r}...")
    # the settings, checked before the checkpoints' PEFs and fits (minutes)
    for name, value in (("n_components", n_components), ("n_top", n_top), ("n_baseline", n_baseline)):
        positive_int(value, name)
    seed_value(seed)  # torch's range, as every other entry point checks it
    check_step(epsilon, None)
    if min_cos is not None:
        fraction(min_cos, "min_cos")
    if reference is not None and not hasattr(reference, "W_"):
        raise TypeError(f"reference must be a fitted decomposition, got {type(reference).__name__}")
    load_model = load_model or _load_model
    labels = np.asarray(labels)
    groups = list(groups) if groups is not None else ["all"] * len(labels)
    if len(groups) != len(labels):
        raise ValueError(f"groups has {len(groups)} rows for {len(labels)} labels: give one per example")

    def pefs_of(path):
        model = load_model(path)
        pefs = compute_pefs(model, inputs, labels, n_values=n_values, include=include, exclude=exclude,
                            device=device, progress=False)
        # Every checkpoint is another model: transforming onto the reference's components is the point.
        pefs.info.pop("model_fingerprint", None)
        return model, pefs

    def new_fit():
        return estimator_for("lrm").for_iterations(n_components, n_iters_g_only, n_iters_joint, seed=seed,
                                                   device=device, progress=False)

    cache, own_fit = {}, {}
    if reference is None:
        step, path = series[-1]
        cache[step] = pefs_of(path)
        reference = own_fit[step] = new_fit().fit(cache[step][1])
    table = _reference_table(reference, labels, groups, n_top)
    majority = table["strategy"].tolist()

    def purity_of(W, j, value):
        """Share of component j's top set under W that holds the reference's majority value."""
        top = top_examples(W, j, n_top)
        return float(np.mean([value in values_of(groups[i]) for i in top])) if len(top) else float("nan")

    component_rows, accuracy_rows = [], []
    for step, path in tqdm(series, desc="checkpoints", disable=not progress):
        model, pefs = cache.pop(step, None) or pefs_of(path)
        predictions = pefs.predictions
        for group, value in accuracy_by_group(labels, predictions, groups).items():
            accuracy_rows.append({"step": step, "group": group, "accuracy": value, "source": "analysed"})
        for group, value in recorded_accuracy(path).get("accuracy_by_strategy", {}).items():
            accuracy_rows.append({"step": step, "group": group, "accuracy": value, "source": "recorded"})
        if "transform" in strategies:
            W = reference.transform(pefs)
            mass = coefficient_mass(W, reference.components_, reference.kind)
            shown = OnCoefficients(reference, W)
            kl = kl_ratios(model, shown, inputs, labels, n_top=n_top, n_baseline=n_baseline, epsilon=epsilon,
                           seed=seed, device=device)
            for j in range(W.shape[1]):
                component_rows.append({"step": step, "component": j, "strategy": "transform", "mass": mass[j],
                                       "kl_ratio": kl.get(j, np.nan), "purity": purity_of(W, j, majority[j]),
                                       "cos": 1.0, "partner": j})
        if "match" in strategies:
            fit = own_fit.get(step) or new_fit().fit(pefs)  # the reference is the last checkpoint's fit
            matches = match_components(reference, fit, min_cos=DEFAULT_MIN_COS if min_cos is None else min_cos)
            mass = coefficient_mass(fit.W_, fit.components_, fit.kind)
            for row in matches[matches["a"] >= 0].itertuples():
                component_rows.append({"step": step, "component": row.a, "strategy": "match",
                                       "mass": mass[row.b] if row.matched else 0.0, "kl_ratio": np.nan,
                                       "purity": purity_of(fit.W_, row.b, majority[row.a]) if row.matched
                                       else float("nan"), "cos": row.cos, "partner": row.b})
    return OverTraining(pd.DataFrame(component_rows), pd.DataFrame(accuracy_rows), table,
                        [int(s) for s, _ in series])


def kl_ratios(model, decomposition, inputs, labels, **settings) -> pd.Series:
    """``perturb.perturbation_table``'s KL ratio of every component that has top examples
    (NaN for the others: a component no example uses at a checkpoint has nothing to perturb on)."""
    from .perturb import perturbation_table

    W = np.asarray(decomposition.W_)
    used = [j for j in range(W.shape[1]) if (W[:, j] > 0).any()]
    ratios = pd.Series(np.nan, index=pd.RangeIndex(W.shape[1], name="component"), name="kl_ratio")
    if used:
        table = perturbation_table(model, decomposition, inputs, labels, components=used, progress=False, **settings)
        ratios.loc[table.index] = table["kl_ratio"]
    return ratios


def _reference_table(reference, labels, groups, n_top: int) -> pd.DataFrame:
    from .tables import component_table

    from .labels import NAME_COLUMN, component_labels

    attributes = pd.DataFrame({"strategy": [tuple(g) if isinstance(g, (list, tuple)) else g for g in groups]})
    table = component_table(reference.W_, reference.components_, labels=labels, attributes=attributes, n_top=n_top,
                            kind=reference.kind)
    table.insert(0, NAME_COLUMN, component_labels(table))  # the lines of the charts are named by it
    return table


def _load_model(path):
    from transformers import AutoModelForSequenceClassification

    from ..models.loading import check_saved_head

    check_saved_head(path)  # a token classifier's checkpoints load as a sequence classifier's, without a word
    return AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True).eval()


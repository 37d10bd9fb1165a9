"""Reading a decomposition: each component's top examples and how concentrated they are.

Everything here takes plain arrays or DataFrames and returns DataFrames, so notebooks,
widgets and exports share one source of numbers (method notes, section 6).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pandas as pd

from ..core.arguments import component_index, positive_int
from ..core.kinds import kind as kind_named


def component_norms(components: np.ndarray) -> np.ndarray:
    """(n_components,): ‖g_j‖ (LRM) or ‖h_j‖ (D)."""
    return np.linalg.norm(np.asarray(components, dtype=np.float64), axis=1)


def scaled_coefficients(W: np.ndarray, components: np.ndarray, kind: str = "lrm") -> np.ndarray:
    """W as if every component had unit norm: W_ij ‖g_j‖² (LRM) or W_ij ‖h_j‖ (D).

    Rankings within one component do not change; comparisons across components do.
    """
    norms = component_norms(components)
    return W * (norms ** kind_named(kind).mass_power)[None, :]


def top_examples(W: np.ndarray, component: int, n_top: int = 20) -> np.ndarray:
    """Indices of the examples with the largest coefficients for ``component``, largest
    first; examples with a zero coefficient are never among them."""
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"W must be the (n_examples, n_components) coefficients of a fit (its W_), got shape {W.shape}")
    component = component_index(component, W.shape[1])
    return _top_of(W[:, component], positive_int(n_top, "n_top"))


def top_sets(W: np.ndarray, n_top: int = 20) -> np.ndarray:
    """(n_components, n_top): :func:`top_examples` of every component, -1 after a component's last example
    of positive coefficient; at most as many columns as examples (an explorer opened with n_top=10**12 asked
    for 21.8 TiB)."""
    W = np.asarray(W)
    n_top = min(positive_int(n_top, "n_top"), W.shape[0])
    sets = np.full((W.shape[1], n_top), -1, dtype=np.int64)
    for j in range(W.shape[1]):
        top = _top_of(W[:, j], n_top)
        sets[j, : len(top)] = top
    return sets


def _top_of(column: np.ndarray, n_top: int) -> np.ndarray:
    """The largest positive entries' indices, largest first, ties by index: a partial sort (the explorer asks it
    of every component at once), then a stable sort of all entries as large as the n_top-th (argpartition alone
    picked an arbitrary few of the tied, and the explorer's search read other examples than its pages)."""
    k = min(n_top, len(column))
    if k < len(column):
        kth = np.partition(-column, k - 1)[k - 1]
        candidates = np.flatnonzero(-column <= kth)
    else:
        candidates = np.arange(len(column))
    order = candidates[np.argsort(-column[candidates], kind="stable")][:k]
    return order[column[order] > 0]


def values_of(cell) -> tuple:
    """An attribute cell as a tuple of values: multi-valued cells (tuples, lists, arrays)
    count for each of their values, so a multi-factor example counts for both strategies.
    A missing value (None, NaN) is none: it read as the majority of a component whose top
    examples were three fifths unlabelled, and each NaN of a float column as a value of its own."""
    values = tuple(cell) if isinstance(cell, (tuple, list, np.ndarray)) else (cell,)
    return tuple(v for v in values if not (np.ndim(v) == 0 and pd.isna(v)))


def purity(cells: Sequence) -> tuple[object, float]:
    """(majority value, share of the cells that hold it). Multi-valued cells hold each of their values; a
    missing value is never the majority, and a cell without a known value holds none (so a top set of 20
    with one known value reads 0.05, not 1.0)."""
    if len(cells) == 0:
        return None, float("nan")
    counts = Counter(v for cell in cells for v in set(values_of(cell)))
    if not counts:
        return None, 0.0
    value, count = max(counts.items(), key=lambda kv: (kv[1], str(kv[0])))
    return value, count / len(cells)


def entropy(cells: Sequence) -> float:
    """Shannon entropy (bits) of the values in ``cells``: 0 when all cells hold one value.

    A multi-valued cell splits its unit weight equally over its values, so the weights
    still sum to the number of cells; empty cells are ignored.
    """
    # Exact weights and an exactly rounded sum: a float sum in the order of a set of strings (PYTHONHASHSEED's)
    # changed the last digit from one run to the next, and with it components.csv's checksum in run.json.
    weights: Counter = Counter()
    for cell in cells:
        values = set(values_of(cell))
        for v in values:
            weights[v] += Fraction(1, len(values))
    total = sum(weights.values())
    if total == 0:
        return float("nan")
    shares = [float(w / total) for w in weights.values()]
    return max(0.0, -math.fsum(s * math.log2(s) for s in shares))


def chance_purity(cells: Sequence, n_top: int, n_draws: int = 2000, seed: int = 0) -> float:
    """Mean purity of random sets of n_top examples: the floor a component must beat."""
    rng = np.random.default_rng(seed)
    cells = list(cells)
    n_top = min(n_top, len(cells))
    return float(np.mean([purity([cells[i] for i in rng.choice(len(cells), n_top, replace=False)])[1] for _ in range(n_draws)]))


def attribute_figures(table: pd.DataFrame, attributes: pd.DataFrame, n_top: int) -> dict:
    """Each attribute's mean purity over the components' top sets, beside chance's (:func:`chance_purity`): a mean
    purity alone says nothing (0.9 is no finding where one value holds 90% of the texts), and only the embedded
    task's run recorded its chance."""
    figures = {}
    for name in attributes.columns:
        figures[f"mean_{name}_purity"] = float(table[f"{name}_purity"].mean())
        figures[f"chance_{name}_purity"] = chance_purity(attributes[name].tolist(), n_top)
    return figures


#: The columns component_table writes itself, beside NAME, NAME_purity and NAME_entropy of each attribute.
TABLE_COLUMNS = frozenset({"component", "n_top", "g_norm", "mass", "label", "label_purity", "prediction",
                           "prediction_purity", "accuracy"})


#: The column the component labels go to (:mod:`.labels`); an attribute of that name hid them.
NAME_COLUMN = "name"
#: The names no attribute may take: the table's own columns, and the labels'.
RESERVED_COLUMNS = TABLE_COLUMNS | {NAME_COLUMN}


def check_attribute_names(names, reserved=RESERVED_COLUMNS) -> None:
    """Refuse attribute names that would replace a column of the table (an attribute "mass" replaced the
    components' mass shares by its values, without a word) or stand for another attribute's."""
    names = [str(n) for n in names]
    taken = [n for n in names if n in reserved or n.endswith(("_purity", "_entropy")) or names.count(n) > 1]
    if taken:
        raise ValueError(f"attributes column {taken[0]!r} would stand for a column written from the run itself or for "
                         f"another attribute (those columns: {', '.join(sorted(reserved))}, and NAME_purity and "
                         "NAME_entropy for each attribute): rename it")


def check_attribute_cells(column: pd.Series) -> None:
    """An attribute's cells are values, or a tuple or list of values for an example with several: a set
    or a dict in a cell was Python's own "unhashable type" from the purity count."""
    for cell in column:
        for value in values_of(cell):
            try:
                hash(value)
            except TypeError:
                raise TypeError(f"attributes column {column.name!r} holds a {type(value).__name__} ({value!r}): a cell "
                                "is a value, or a list of values for an example with several") from None


def component_table(
    W: np.ndarray,
    components: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    attributes: pd.DataFrame | None = None,
    n_top: int = 20,
    kind: str = "lrm",
) -> pd.DataFrame:
    """One row per component.

    Columns: ``n_top`` (size of its top set), ``g_norm``, ``mass`` (share of the
    reconstruction's total Σ_i W_ij ‖g_j‖² that is component j's), ``label`` /
    ``label_purity``, ``prediction`` / ``prediction_purity``, ``accuracy`` (of the model
    on the top set's examples whose label is known, i.e. not -1), and ``<attribute>`` /
    ``<attribute>_purity`` / ``<attribute>_entropy`` for every column of ``attributes``
    (one row per example; cells may be tuples for multi-valued attributes).
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or not np.isfinite(W).all() or (W < 0).any():
        raise ValueError(f"W must be a fit's (n_examples, n_components) coefficients, finite and non-negative; got "
                         f"shape {W.shape}" + ("" if W.ndim != 2 else ", with negative or non-finite entries"))
    if np.ndim(components) != 2 or np.shape(components)[0] != W.shape[1]:
        raise ValueError(f"components must have one row per column of W ({W.shape[1]}), got shape {np.shape(components)}")
    # checked as W is: a NaN or inf in G read as g_norm inf and mass NaN for every component, without a word
    bad = np.flatnonzero(~np.isfinite(np.asarray(components, dtype=np.float64)).all(axis=1))
    if bad.size:
        raise ValueError(f"components must be finite; {bad.size} of {W.shape[1]} components (e.g. {bad[:5].tolist()}) "
                         "hold NaN or infinite entries, which make their g_norm and every component's mass inf or "
                         "NaN: pass the fit's own components (a fit whose loss went NaN or inf is to be fitted again)")
    if attributes is not None and not isinstance(attributes, pd.DataFrame):
        raise TypeError(f"attributes must be a DataFrame with one column per attribute, got {type(attributes).__name__}")
    if attributes is not None:
        check_attribute_names(attributes.columns)
        for name in attributes.columns:
            check_attribute_cells(attributes[name])
    _check_rows(W.shape[0], labels=labels, predictions=predictions, attributes=attributes)
    norms = component_norms(components)
    mass = coefficient_mass(W, components, kind)
    label_cells = None if labels is None else known_labels(labels)
    rows = []
    for j in range(W.shape[1]):
        top = top_examples(W, j, n_top)
        row = {"component": j, "n_top": len(top), "g_norm": norms[j], "mass": mass[j]}
        if labels is not None:
            row["label"], row["label_purity"] = purity(label_cells[top])
        if predictions is not None:
            row["prediction"], row["prediction_purity"] = purity(np.asarray(predictions)[top])
        if labels is not None and predictions is not None:
            row["accuracy"] = accuracy_of(np.asarray(labels)[top], np.asarray(predictions)[top])
        for name in [] if attributes is None else attributes.columns:
            cells = attributes[name].to_numpy()[top]
            row[name], row[f"{name}_purity"] = purity(cells)
            row[f"{name}_entropy"] = entropy(cells)
        rows.append(row)
    return pd.DataFrame(rows).set_index("component")


def known_labels(labels) -> np.ndarray:
    """Labels as purity cells: -1 (unknown, as the PEFs and ``accuracy_of`` read it) is a missing value, never
    a label. A top set of unlabelled examples read "label -1" at purity 1.0, and a run without labels named
    every component after it."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iuf" or not (labels == -1).any():
        return labels
    cells = labels.astype(object)
    cells[labels == -1] = None
    return cells


def coefficient_mass(W: np.ndarray, components: np.ndarray, kind: str = "lrm", *, share: bool = True) -> np.ndarray:
    """(n_components,): Σ_i W_ij ‖g_j‖² (LRM; D: ‖h_j‖), each component's part of the
    reconstruction's total Fisher mass; with ``share`` divided by the total (so it sums to 1)."""
    mass = scaled_coefficients(np.asarray(W, dtype=np.float64), components, kind).sum(axis=0)
    return mass / mass.sum() if share and mass.sum() > 0 else mass


def value_shares(cells: Sequence) -> pd.Series:
    """Share of the cells holding each value, largest first; a multi-valued cell holds each of its values,
    a missing one none."""
    counts = Counter(v for cell in cells for v in set(values_of(cell)))
    n = max(len(cells), 1)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))  # ties in a set's order were PYTHONHASHSEED's
    return pd.Series({value: count / n for value, count in ranked}, dtype=np.float64)


def accuracy_by_group(labels, predictions, groups: Sequence) -> pd.Series:
    """Accuracy of ``predictions`` per value of ``groups`` (e.g. each example's strategies;
    a multi-valued cell counts for each value), over the examples whose label is known."""
    _check_rows(len(labels), predictions=predictions, groups=groups)
    correct = np.asarray(labels) == np.asarray(predictions)
    known = np.asarray(labels) != -1
    hits: Counter = Counter()
    counts: Counter = Counter()
    for cell, ok, keep in zip(groups, correct, known):
        for value in set(values_of(cell)) if keep else ():
            counts[value] += 1
            hits[value] += bool(ok)
    return pd.Series({value: hits[value] / counts[value] for value in sorted(counts, key=str)}, dtype=np.float64)


def accuracy_of(labels, predictions) -> float:
    """The share of the examples of known label that are predicted right (nan if none is known): -1 marks an
    unknown label (workbench.fisher.inputs.split_labels), which the run's accuracy and a perturbation check's
    counted as a mistake."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    known = labels != -1
    return float(np.mean(labels[known] == predictions[known])) if known.any() else float("nan")


def _check_rows(n_examples: int, **per_example) -> None:
    """Every per-example argument must have one row per row of W, or rows would be misread."""
    for name, value in per_example.items():
        if value is not None and len(value) != n_examples:
            raise ValueError(
                f"{name} has {len(value)} rows but W has {n_examples} (one per example); "
                "pass the examples the decomposition was fitted on, in the same order"
            )


def top_examples_table(
    W: np.ndarray,
    component: int,
    examples: pd.DataFrame,
    *,
    labels: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    n_top: int = 20,
) -> pd.DataFrame:
    """The top examples of one component: their rows of ``examples`` plus label,
    prediction and coefficient, largest coefficient first."""
    _check_rows(np.shape(W)[0], examples=examples, labels=labels, predictions=predictions)
    added = {"label": labels, "prediction": predictions}
    taken = [c for c in ("example", "coefficient") if c in examples] + [c for c, v in added.items()
                                                                      if v is not None and c in examples]
    if taken:  # "example" raised pandas' "cannot insert example, already exists"; a label column was overwritten
        raise ValueError(f"examples has column(s) {taken}, which the table adds: rename them in examples, or leave "
                         "out labels=/predictions= where examples already holds them")
    top = top_examples(W, component, n_top)
    table = examples.iloc[top].copy()
    table.insert(0, "example", top)
    for column, values in added.items():
        if values is not None:
            table[column] = np.asarray(values)[top]
    table["coefficient"] = W[top, component]
    return table.reset_index(drop=True)

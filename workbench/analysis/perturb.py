"""Perturbation checks: does a component's direction change the model on its own examples?

For component j, ĝ = g_j / ‖g_j‖ placed back in parameter space (zeros where pruned),
optionally first semi-orthogonalised against the other components. The model's
parameters are moved to θ ± ε ĝ, and the mean KL(p_θ ‖ p_θ') is measured on the
component's top examples and on a baseline set of other examples. A ratio top/baseline
well above 1 (max over ±) says the direction selectively changes the model's behaviour
on the examples the component claims (method notes, section 7).

The weights are moved and restored bit for bit by :mod:`.moves`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from tqdm.auto import tqdm

from ..core.arguments import component_index, component_indices, positive_int, seed_value
from ..core.device import run_device
from ..core.validation import as_labels, check_label_range, check_model
from ..fisher.checks import padding_changes_outputs
from ..fisher.inputs import Inputs, class_logits, groups_as_computed, n_inputs, pef_mode, slice_inputs
from ..report import fragment, perturbation_html
from ..report.html import bound_text
from .draws import BASELINE_DRAWS, DRAW_WORDS
from .moves import perturbation_direction, perturbed
from .tables import accuracy_of, top_examples


def check_step(epsilon, max_sim, *, zero_ok: bool = False) -> None:
    """ε a positive finite step (or 0 where ``zero_ok``: no move at all), ``max_sim`` a |cos|
    threshold in (0, 1] (or None)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.number)) or not np.isfinite(epsilon) \
            or epsilon < 0 or (epsilon == 0 and not zero_ok):
        raise ValueError(f"epsilon must be a positive, finite step along the component (e.g. 0.1), got {epsilon!r}")
    if max_sim is not None and not (isinstance(max_sim, (int, float, np.number)) and 0 < max_sim <= 1):
        raise ValueError(f"max_sim is a |cos| between components, in (0, 1] (e.g. 0.5), or None; got {max_sim!r}")


#: Examples a set needs for a bootstrap interval: of fewer, the resamples are a handful of sets, and the
#: percentile interval reads far surer than the draw is
MIN_RESAMPLED = 5


def check_finite_outputs(values: torch.Tensor, epsilon: float, sign: str, what: str) -> None:
    """The perturbed model's ``what`` (rows of examples) are finite: a step that overflows the model made NaN
    KLs, read as "undecided: more examples would tell", and NaN rows in a trace, without a word."""
    finite = torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(f"at epsilon={epsilon:g} ({sign}) the perturbed model's {what} are NaN or infinite for "
                         f"{int((~finite).sum())} of {len(finite)} examples: the step overflows the model; use a smaller "
                         "epsilon (e.g. 0.1, or a sweep from 0.1 to find where the outputs move)")


def check_sweep(epsilons, max_sim, on_result=None) -> None:
    """Every step of a sweep, and its progress callback, checked before the first perturbation runs."""
    if isinstance(epsilons, (str, bytes)) or not hasattr(epsilons, "__len__") or len(epsilons) == 0:
        raise ValueError(f"epsilons must be a non-empty list of step sizes, e.g. (0.1, 0.3, 1.0); got {epsilons!r} "
                         "(a generator is read once: pass list(...))")
    for epsilon in epsilons:
        check_step(epsilon, max_sim)
    if on_result is not None and not callable(on_result):
        raise TypeError(f"on_result must be a function (result, done, total), got {on_result!r}")


def _rows(inputs: Inputs, rows: np.ndarray, device) -> Inputs:
    batch = {k: v[rows] for k, v in inputs.items()} if isinstance(inputs, Mapping) else inputs[rows]
    return slice_inputs(batch, 0, len(rows), device)


def padding_matters(model, inputs: Inputs, rows: np.ndarray, device, batch_size: int = 64) -> bool:
    """Whether the model's outputs change with padding, tried on the first batch of ``rows``
    (``fisher.checks.padding_changes_outputs``): its PEFs were then computed with each example as
    alone, and so are the predictions compared with them."""
    with torch.no_grad():
        return padding_changes_outputs(model, _rows(inputs, np.asarray(rows)[:batch_size], device), warn=False,
                                       remember=True)


def log_probabilities(model, inputs: Inputs, rows: np.ndarray, *, batch_size: int, device, unpadded: bool) -> torch.Tensor:
    """(len(rows), n_classes) float64 log-probabilities of the examples ``rows``; each example
    computed as alone where padding changes the outputs (``unpadded``: see :func:`padding_matters`)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = _rows(inputs, rows[start : start + batch_size], device)
            groups = [(r, class_logits(model, part).double().cpu()) for r, part in groups_as_computed(batch, unpadded)]
            logits = torch.empty((n_inputs(batch), groups[0][1].shape[1]), dtype=torch.float64)
            for r, part_logits in groups:
                logits[r] = part_logits
            out.append(torch.log_softmax(logits, dim=-1))
    return torch.cat(out)


def _kl(reference: torch.Tensor, other: torch.Tensor) -> np.ndarray:
    """KL(p_ref ‖ p_other) of each example, from log-probabilities."""
    return (reference.exp() * (reference - other)).sum(dim=1).double().numpy()


@dataclass
class PerturbationResult:
    """One perturbation check of one component at one ε."""

    component: int
    epsilon: float
    max_sim: float | None
    n_top: int
    n_baseline: int
    kl_top: dict[str, float]  # {"+": KL on the top examples at θ + εĝ, "-": at θ − εĝ}
    kl_baseline: dict[str, float]
    accuracy_top: dict[str, float]  # {"original": ..., "+": ..., "-": ...}
    accuracy_baseline: dict[str, float]
    sign: str = field(default="+")  # the sign that gave the larger ratio
    baseline_draw: str = "random"  # one of BASELINE_DRAWS, or "given" (indices the caller chose)
    note: str = ""  # why this component is shown (e.g. SHOWCASE_CRITERION), for reports
    # {"top": {"+": (n_top,), "-": ...}, "baseline": {...}}: each example's KL, whose means are kl_top and kl_baseline
    kl_examples: dict = field(default_factory=dict, repr=False)
    _intervals: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def explanation(self) -> str:
        """The KL ratio in words: what was moved, what changed, and what the number says."""
        s = self.sign
        low, high = self.ratio_bounds()
        beyond = ", beyond their class" if self.baseline_draw == "same classes" else ""
        if self.too_few_to_tell:
            verdict = (f"{min(self.n_top, self.n_baseline)} examples in a set are too few to tell whether the direction "
                       f"is selective (a verdict needs {MIN_RESAMPLED} top and {MIN_RESAMPLED} baseline examples at least)")
        elif low >= SELECTIVE:
            verdict = f"the direction acts selectively on the examples the component claims{beyond}"
        elif high < SELECTIVE:
            verdict = "the direction moves most examples alike, so it is not a strategy of its own examples"
        else:  # read from the ratio alone, 11 of 32 MiniLM checks got a verdict their own interval did not back
            verdict = (f"the interval crosses {SELECTIVE:g}, so these examples cannot tell whether the direction is "
                       "selective (more top or baseline examples would)")
        return (f"Moving the parameters by ε = {self.epsilon:g} along the component ({s}) changes the predictions on "
                f"its {self.n_top} top examples by a mean KL of {self.kl_top[s]:.3g} and on {self.n_baseline} other "
                f"examples{self.baseline_words} by {self.kl_baseline[s]:.3g}: {self.kl_ratio:.3g} times as much"
                f"{self.interval_text()}; "
                f"{verdict} "
                f"(a ratio of {SELECTIVE:g} or more is read as selective).")

    @property
    def too_few_to_tell(self) -> bool:
        """Whether a set holds fewer examples than an interval needs (:data:`MIN_RESAMPLED`)."""
        return bool(self.kl_examples) and min(self.n_top, self.n_baseline) < MIN_RESAMPLED

    @property
    def baseline_words(self) -> str:
        """How the baseline examples were drawn, as words to follow "examples"."""
        return DRAW_WORDS.get(self.baseline_draw, "")

    def interval_text(self, signs: Sequence[str] = ("+", "-"), words: str = "95% interval over the examples drawn") -> str:
        """`` (95% interval ...: low to high)`` of :meth:`ratio_interval` for display; "" without per-example KLs."""
        low, high = self.ratio_interval(signs)
        return "" if np.isnan(low) else f" ({words}: {bound_text(low)} to {bound_text(high)})"

    @property
    def kl_ratio(self) -> float:
        """max over ± of KL(top) / KL(baseline)."""
        return self.ratio(("+", "-"))

    def ratio(self, signs: Sequence[str] = ("+", "-")) -> float:
        """max over ``signs`` of KL(top) / KL(baseline): the ratio of what a panel shows when it shows
        only θ + εĝ (``("+",)``) or only θ − εĝ."""
        unknown = set(signs) - {"+", "-"}
        if unknown or not signs:
            raise ValueError(f"signs must be some of '+' and '-', got {signs!r}")
        return max(_ratio(self.kl_top[s], self.kl_baseline[s]) for s in signs)

    def ratio_interval(self, signs: Sequence[str] = ("+", "-"), confidence: float = 0.95,
                       n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """A bootstrap interval of :meth:`ratio` over the examples drawn, top and baseline resampled
        apart: how much the ratio owes to which examples were drawn (a component's ratio ranged
        0.84-23 over ten baseline draws of 100). (nan, nan) without per-example KLs."""
        from scipy.stats import bootstrap

        if not (isinstance(confidence, float) and 0 < confidence < 1):
            raise ValueError(f"confidence must be a float between 0 and 1 (e.g. 0.95), got {confidence!r}")
        if not isinstance(n_resamples, int) or isinstance(n_resamples, bool) or n_resamples < 100:
            raise ValueError(f"n_resamples must be an integer of at least 100 (e.g. 2000), got {n_resamples!r}")
        if not np.isfinite(self.ratio(signs)) or not self.kl_examples or self.too_few_to_tell:
            # no examples kept, no ratio, or too few to resample: 2 baseline examples read "selective (70.9 to 112)"
            return float("nan"), float("nan")
        key = (tuple(signs), confidence, n_resamples, seed)
        if key in self._intervals:  # a panel or report asks again for each view
            return self._intervals[key]
        # (signs, examples) per set: an example drawn into a resample brings its KL at every sign. Resampled apart,
        # the "+" and "-" KLs of the same examples read as other examples, and where the signs agree (small ε) the
        # low bound came out too high (2.15 where drawing each example once gives 1.76)
        samples = [np.stack([np.asarray(self.kl_examples[subset][s], dtype=np.float64) for s in signs])
                   for subset in ("top", "baseline")]

        def ratio(top, baseline, axis=-1):  # (signs, ..., examples) each: max over the signs of the means' ratio
            with np.errstate(divide="ignore", invalid="ignore"):
                return (top.mean(axis=axis) / baseline.mean(axis=axis)).max(axis=0)

        with np.errstate(invalid="ignore"):  # its standard error of resamples with no baseline KL (inf) is nan
            interval = bootstrap(samples, ratio, n_resamples=n_resamples, confidence_level=confidence, axis=-1,
                                 method="percentile", rng=np.random.default_rng(seed)).confidence_interval
        self._intervals[key] = float(interval.low), float(interval.high)
        return self._intervals[key]

    def mean_interval(self, subset: str, sign: str, confidence: float = 0.95, n_resamples: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
        """A bootstrap interval of one set's mean KL at one sign (``subset``: "top" or "baseline"); (nan, nan)
        without per-example KLs or with one example. A sweep's lines had no spread beside them."""
        from scipy.stats import bootstrap

        values = np.asarray(self.kl_examples.get(subset, {}).get(sign, ()), dtype=np.float64)
        if len(values) < 2 or not np.isfinite(values).all():
            return float("nan"), float("nan")
        key = (subset, sign, confidence, n_resamples, seed)
        if key not in self._intervals:
            interval = bootstrap([values], np.mean, n_resamples=n_resamples, confidence_level=confidence,
                                 method="percentile", rng=np.random.default_rng(seed)).confidence_interval
            self._intervals[key] = float(interval.low), float(interval.high)
        return self._intervals[key]

    def ratio_bounds(self, signs: Sequence[str] = ("+", "-")) -> tuple[float, float]:
        """:meth:`ratio_interval`, the bounds a verdict is read on: (0, inf) where a set is too small to
        resample (it read "selective" from 2 baseline examples), the ratio itself twice for a result
        without per-example KLs."""
        low, high = self.ratio_interval(signs)
        if not np.isnan(low):
            return low, high
        if self.too_few_to_tell and np.isfinite(self.ratio(signs)):
            return 0.0, float("inf")  # nothing is told either way
        return (self.ratio(signs),) * 2

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (set, sign), each mean KL with its 95% interval (``kl_low``, ``kl_high``),
        and the check's ``kl_ratio`` with its interval (``kl_ratio_low``, ``kl_ratio_high``) on every row."""
        rows = []
        ratio_low, ratio_high = self.ratio_interval()
        for subset, kl, acc in (("top", self.kl_top, self.accuracy_top), ("baseline", self.kl_baseline, self.accuracy_baseline)):
            for sign in ("+", "-"):
                low, high = self.mean_interval(subset, sign)
                rows.append({"component": self.component, "epsilon": self.epsilon, "max_sim": self.max_sim,
                             "baseline_draw": self.baseline_draw, "set": subset, "sign": sign, "kl": kl[sign],
                             "kl_low": low, "kl_high": high, "accuracy": acc[sign], "accuracy_original": acc["original"],
                             "kl_ratio": self.kl_ratio, "kl_ratio_low": ratio_low, "kl_ratio_high": ratio_high})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """The result as plain JSON-ready values (lists, not arrays): what the exports write."""
        plain = asdict(self)
        del plain["_intervals"]
        plain["kl_examples"] = {name: {s: np.asarray(v).tolist() for s, v in kl.items()} for name, kl in self.kl_examples.items()}
        return dict(plain, kl_ratio=self.kl_ratio, kl_ratio_interval=self.ratio_interval())

    def __repr__(self) -> str:
        return (f"PerturbationResult(component={self.component}, epsilon={self.epsilon:g}, "
                f"kl_ratio={self.kl_ratio:.3g}, kl_top={self.kl_top}, kl_baseline={self.kl_baseline})")

    def _repr_html_(self) -> str:
        return fragment(perturbation_html(self))


#: A KL ratio from which a component's direction is read as acting on its own examples.
SELECTIVE = 3.0
#: The criterion that picks the component a notebook or report shows first.
SHOWCASE_CRITERION = ("shown because it has the highest KL ratio among the components whose top examples "
                      "are at least 90% one strategy")


def showcase_component(table: pd.DataFrame, kl_ratio, *, min_purity: float = 0.9,
                       purity_column: str = "strategy_purity") -> int:
    """The component to show first: the highest KL ratio among the components whose top
    examples are at least ``min_purity`` one value of ``purity_column`` (a column of the
    component table); among all components when none is that pure.

    kl_ratio: per component (a Series indexed like ``table``, or a mapping), e.g. the
    ``kl_ratio`` column of :func:`perturbation_table`.
    """
    if purity_column not in table:
        raise ValueError(f"the component table has no column {purity_column!r}; pass purity_column= one of "
                         f"{[c for c in table.columns if c.endswith('_purity')]}")
    ratios = pd.Series(kl_ratio, dtype=np.float64).reindex(table.index)
    if ratios.isna().all():
        raise ValueError("no component has a KL ratio: run the perturbation checks first")
    pure = table[purity_column] >= min_purity
    candidates = ratios[pure] if ratios[pure].notna().any() else ratios
    return int(candidates.idxmax())


def _ratio(top: float, baseline: float) -> float:
    if baseline <= 0:
        return float("inf") if top > 0 else float("nan")
    return top / baseline


def baseline_examples(n_examples: int, top: Sequence[int], n_baseline: int = 100, seed: int = 0, *,
                      classes=None) -> np.ndarray:
    """A random set of examples outside the top set.

    classes: each example's class (e.g. the model's prediction). Given, the baseline is drawn with the top
    set's mix of classes, as large as the examples of the scarcest class allow. A direction that moves
    every example of a class then reads a ratio near 1: against a random baseline a component whose top
    examples are all one class reads as selective for that alone (on MiniLM about half of a typical ratio).
    """
    n_baseline = positive_int(n_baseline, "n_baseline")  # no baseline: no ratio to read
    seed_value(seed)  # numpy's own error named no argument
    top = np.asarray(top, dtype=np.int64)
    others = np.setdiff1d(np.arange(n_examples), top)
    if others.size == 0:  # torch.cat of no batches said only "expected a non-empty list of Tensors"
        raise ValueError(f"no example is left outside the top set ({len(np.unique(top))} of the {n_examples} examples) "
                         "to draw the baseline from: take a smaller top set (n_top=...), or more examples")
    rng = np.random.default_rng(seed)
    if classes is None:
        return np.sort(rng.choice(others, size=min(n_baseline, len(others)), replace=False))
    counts = _class_counts(np.asarray(classes), n_examples, top, others, n_baseline)
    return np.sort(np.concatenate([rng.choice(pool, size=count, replace=False) for pool, count in counts]))


def baseline_classes(draw: str, predictions) -> np.ndarray | None:
    """The ``classes`` that :func:`baseline_examples` draws a baseline of kind ``draw`` by: None for "random",
    each example's predicted class for "same classes"."""
    if draw not in BASELINE_DRAWS:
        raise ValueError(f"baseline must be one of {BASELINE_DRAWS}, got {draw!r}")
    if draw == "same classes" and predictions is None:
        raise ValueError("the examples have no predictions (a 'prediction' column), which a baseline of the same "
                         "classes is drawn by; use baseline='random'")
    return None if draw == "random" else np.asarray(predictions)


def _class_counts(classes: np.ndarray, n_examples: int, top: np.ndarray, others: np.ndarray,
                  n_baseline: int) -> list[tuple[np.ndarray, int]]:
    """(the other examples of a class, how many to draw of them) for each class of the top set: its share of
    the top set, of the largest baseline of at most ``n_baseline`` that the other examples hold."""
    if classes.shape != (n_examples,):
        raise ValueError(f"classes must hold one class per example ({n_examples}), got shape {classes.shape}")
    if pd.isna(classes).any():  # NaN is no class of its own (NaN != NaN), and None failed inside numpy's sort
        raise ValueError(f"classes holds {int(pd.isna(classes).sum())} missing values (None or NaN): give every "
                         "example a class, e.g. the model's prediction")
    names, counts = np.unique(classes[top], return_counts=True)
    share = counts / counts.sum()
    pools = [others[classes[others] == name] for name in names]
    scarcest = int(np.argmin([len(pool) / s for pool, s in zip(pools, share)]))
    if len(pools[scarcest]) == 0:
        raise ValueError(f"no example outside the top set is of class {names[scarcest].item()!r}, which {counts[scarcest]} of "
                         f"the {len(top)} top examples are: a baseline of the same classes cannot be drawn; use a "
                         "random one, or analyse more examples")
    size = min(n_baseline, int(np.floor(min(len(pool) / s for pool, s in zip(pools, share)) + 1e-9)))
    wanted = share * size
    drawn = np.floor(wanted + 1e-9).astype(int)
    # the examples left over go to the classes whose share was cut most (largest remainder): never past a pool,
    # since a class at its pool's size has no remainder
    for i in np.argsort(-(wanted - drawn), kind="stable")[: size - drawn.sum()]:
        drawn[i] += 1
    return [(pool, int(count)) for pool, count in zip(pools, drawn) if count > 0]


def example_indices(values, n_examples: int, argument: str) -> np.ndarray:
    """``values`` as indices of examples (rows of the inputs): whole numbers from 0 to n - 1. A boolean
    mask read as indices 0 and 1, a negative index counted from the end, a float was cut: all read
    other examples than meant."""
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise TypeError(f"{argument} must be a list of example indices (integers), got {array.dtype} values of shape "
                        f"{array.shape}" + ("; for a mask pass numpy.flatnonzero(mask)" if array.dtype == bool else ""))
    outside = array[(array < 0) | (array >= n_examples)]
    if outside.size:
        raise IndexError(f"{argument} holds example {int(outside[0])}, outside 0..{n_examples - 1} (the inputs have "
                         f"{n_examples} rows; a negative index does not count from the end)")
    return array.astype(np.int64)


def perturbation_check(
    model: torch.nn.Module,
    decomposition,
    component: int,
    inputs: Inputs,
    labels,
    top: Sequence[int],
    baseline: Sequence[int] | None = None,
    *,
    epsilon: float = 0.1,
    max_sim: float | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    baseline_draw: str | None = None,
) -> PerturbationResult:
    """Perturb the model along ``component`` by ±ε and compare top vs baseline examples.

    inputs, labels: the model inputs and labels of all examples (rows indexed by ``top``
        and ``baseline``); ``baseline`` defaults to 100 random other examples.
    baseline_draw: how ``baseline`` was drawn, for the result to say: one of BASELINE_DRAWS (e.g. "same
        classes" for :func:`baseline_examples` with ``classes=``); None: "random" when the check draws it,
        "given" otherwise.
    """
    check_step(epsilon, max_sim)
    if baseline_draw is None:
        baseline_draw = "random" if baseline is None else "given"
    elif baseline_draw not in BASELINE_DRAWS:
        raise ValueError(f"baseline_draw must be one of {BASELINE_DRAWS} or None, got {baseline_draw!r}")
    if not hasattr(decomposition, "components_"):
        raise TypeError(f"decomposition must be a fitted LrmNpeff or DNpeff, got {type(decomposition).__name__}; fit "
                        "one first, or load it with LrmNpeff.load(path)")
    component = component_index(component, len(decomposition.components_))
    batch_size = positive_int(batch_size, "batch_size")
    check_model(model, inputs)  # token ids the model holds, lengths within its positions
    n = n_inputs(inputs)
    labels = as_labels(labels, n).numpy()  # the checks of write_pefs: one class index per example, -1 unknown
    top = example_indices(top, n, "top")
    if len(top) == 0:
        raise ValueError(f"component {component} has no top examples to perturb on")
    baseline = baseline_examples(n, top) if baseline is None else example_indices(baseline, n, "baseline")
    if len(baseline) == 0:
        raise ValueError("baseline holds no example: the KL ratio compares the top set with a baseline; pass some, "
                         "or baseline=None for 100 random examples outside the top set")
    shared = np.intersect1d(top, baseline)
    if shared.size or len(np.unique(top)) < len(top) or len(np.unique(baseline)) < len(baseline):
        # top=baseline read a ratio of 1, and top=[0, 0, 0, 0] a top set of four
        raise ValueError("top and baseline must be two sets of distinct examples"
                         + (f" with none in both (both hold {shared[:5].tolist()})" if shared.size else
                            " (one lists an example twice)") + "; pass each example once")
    device = run_device(model, device)
    model.to(device)
    direction = perturbation_direction(decomposition, component, max_sim)
    with pef_mode(model):  # the model as the PEFs read it: a caller's autocast moved the KL ratio 15%
        unpadded = padding_matters(model, inputs, np.concatenate([top, baseline]), device, batch_size)
        original = {name: log_probabilities(model, inputs, idx, batch_size=batch_size, device=device, unpadded=unpadded)
                    for name, idx in (("top", top), ("baseline", baseline))}
        check_label_range(torch.as_tensor(labels), original["top"].shape[1])  # a label 7 of 3 classes read as a mistake
        kl = {"top": {}, "baseline": {}}  # each example's
        accuracy = {name: {"original": accuracy_of(labels[idx], original[name].argmax(dim=1).numpy())} for name, idx in (("top", top), ("baseline", baseline))}
        for sign, factor in (("+", 1.0), ("-", -1.0)):
            with perturbed(model, decomposition.layout_, factor * epsilon * direction):
                for name, idx in (("top", top), ("baseline", baseline)):
                    log_p = log_probabilities(model, inputs, idx, batch_size=batch_size, device=device, unpadded=unpadded)
                    check_finite_outputs(log_p, epsilon, sign, "class probabilities")
                    kl[name][sign] = _kl(original[name], log_p)
                    accuracy[name][sign] = accuracy_of(labels[idx], log_p.argmax(dim=1).numpy())
    mean = {name: {s: float(values.mean()) for s, values in kl[name].items()} for name in kl}
    ratios = {s: _ratio(mean["top"][s], mean["baseline"][s]) for s in ("+", "-")}
    return PerturbationResult(
        component=int(component), epsilon=float(epsilon), max_sim=max_sim, n_top=len(top), n_baseline=len(baseline),
        kl_top=mean["top"], kl_baseline=mean["baseline"], accuracy_top=accuracy["top"],
        accuracy_baseline=accuracy["baseline"], sign=max(ratios, key=lambda s: np.nan_to_num(ratios[s], nan=-1.0)),
        baseline_draw=baseline_draw, kl_examples=kl,
    )


def epsilon_sweep(model, decomposition, component: int, inputs, labels, top, baseline=None, *,
                  epsilons: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0), **kwargs) -> pd.DataFrame:
    """``perturbation_check`` at several ε: one row per (ε, set, sign), long format."""
    check_sweep(epsilons, kwargs.get("max_sim"))
    frames = []
    for epsilon in epsilons:
        result = perturbation_check(model, decomposition, component, inputs, labels, top, baseline, epsilon=epsilon, **kwargs)
        frames.append(result.to_frame())
    return pd.concat(frames, ignore_index=True)


def perturbation_table(
    model: torch.nn.Module,
    decomposition,
    inputs: Inputs,
    labels,
    *,
    components: Sequence[int] | None = None,
    n_top: int = 20,
    n_baseline: int = 100,
    epsilon: float = 0.1,
    max_sim: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
    baseline: str = "random",
) -> pd.DataFrame:
    """``perturbation_check`` of every component (or of ``components``) on its top ``n_top``
    examples against ``n_baseline`` others (``baseline``: drawn at random, or with the top set's mix of
    the model's predicted classes, "same classes"): one row per component, wide format.

    Columns: ``n_top``, ``kl_top`` / ``kl_baseline`` (of the sign with the larger ratio),
    ``kl_ratio``, ``sign``, ``accuracy_top`` / ``accuracy_baseline`` (original, unperturbed).
    """
    n_top, n_baseline = positive_int(n_top, "n_top"), positive_int(n_baseline, "n_baseline")
    batch_size = positive_int(batch_size, "batch_size")
    n_components = decomposition.W_.shape[1]
    components = range(n_components) if components is None else component_indices(components, n_components)
    classes = baseline_classes(baseline, _predictions(model, inputs, batch_size, device) if baseline == "same classes" else None)
    rows = []
    for j in tqdm(components, desc="perturbation checks", disable=not progress):
        top = top_examples(decomposition.W_, j, n_top)
        drawn = baseline_examples(n_inputs(inputs), top, n_baseline, seed=seed, classes=classes)
        result = perturbation_check(model, decomposition, j, inputs, labels, top, drawn, epsilon=epsilon,
                                    max_sim=max_sim, batch_size=batch_size, device=device, baseline_draw=baseline)
        rows.append({
            "component": int(j), "n_top": result.n_top, "kl_top": result.kl_top[result.sign],
            "kl_baseline": result.kl_baseline[result.sign], "kl_ratio": result.kl_ratio, "sign": result.sign,
            "accuracy_top": result.accuracy_top["original"], "accuracy_baseline": result.accuracy_baseline["original"],
        })
    return pd.DataFrame(rows).set_index("component")


def _predictions(model, inputs: Inputs, batch_size: int, device) -> np.ndarray:
    """The model's predicted class of every example, as the checks compute them."""
    rows = np.arange(n_inputs(inputs))
    device = run_device(model, device)
    model.to(device)
    with pef_mode(model):
        unpadded = padding_matters(model, inputs, rows, device, batch_size)
        return log_probabilities(model, inputs, rows, batch_size=batch_size, device=device, unpadded=unpadded).argmax(1).numpy()

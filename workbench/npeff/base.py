"""What LRM- and D-NPEFF share: settings, checks of the PEFs, the fit's skeleton, saving, components.

Both are scikit-learn estimators (:class:`~sklearn.base.BaseEstimator`): settings in
``__init__`` and nothing else there, so ``get_params``, ``set_params`` and
:func:`sklearn.base.clone` work; every setting is checked at ``fit`` against one table,
``_parameter_constraints``, in scikit-learn's own constraint language (numpy integers
are integers, bools are not: scikit-learn would take ``n_components=True`` for 1); ``fit``
returns self; learned state ends in ``_``; ``transform`` before ``fit`` raises
:class:`sklearn.exceptions.NotFittedError`. ``save``/``load`` write and read one safetensors
file (no pickle).
"""

from __future__ import annotations

import os
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, InvalidParameterError, make_constraint
from sklearn.utils.validation import check_is_fitted

from ..core.arguments import MAX_SEED, check_outside_run, component_index
from ..core.device import resolve_device
from ..core.kinds import KINDS
from ..core.params import ParameterLayout
from ..core.validation import check_weights
from ..store.checkpoint import FitCheckpoint
from ..store.files import StoreError, check_replaceable, producer, read_arrays, write_arrays
from ..store.fingerprints import check_same_model, fingerprint_matrix, fingerprint_pefs
from ..store.formats import FileFormat
from .data import Columns, FitData, check_finite_norms, examples_per_column, prepare, to_torch_csr
from .expand import continued_history, start_from

EPS = 1e-9  # guards the multiplicative updates' denominators, relative to their numerators (division_floor)


class NpeffDivergenceError(RuntimeError):
    """The fit could not lower its loss; carries what to change."""


class NpeffConvergenceWarning(ConvergenceWarning):
    """The fit used all its iterations before the loss settled to within ``tol``."""


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, initial=initial)


#: the coefficients of a new example stop before ``n_iters_transform`` once none of them moved by more than
#: this share of the example's largest in 10 steps
TRANSFORM_TOL = 1e-7


def division_floor(numerator: torch.Tensor, dim: int) -> torch.Tensor:
    """What a multiplicative update adds to its denominator: EPS times the numerator's largest entry along
    ``dim``, a floor that scales with the data. A fixed 1e-9 swamped the denominators of PEFs near 1e-6
    (normalize=False: real PEFs' entries are about 1e-4), and every coefficient went to zero without a word."""
    return numerator.amax(dim=dim, keepdim=True).mul_(EPS).add_(torch.finfo(numerator.dtype).tiny)


def coefficients_start(numer: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """Where the coefficients of each example start: all equal, at the best such value c_i = Σ_j numer_ij / Σ Q
    (n_examples, r). It depends on the example alone, so its coefficients do not depend on the batch it
    came in; a random start drawn for the whole batch moved them by up to 2e-3 with the batch."""
    scale = numer.sum(dim=1, keepdim=True) / Q.sum().clamp_min(torch.finfo(Q.dtype).tiny)
    return scale.clamp_min(torch.finfo(numer.dtype).tiny).expand(-1, Q.shape[0]).contiguous()


def multiplicative_w_steps(numer, Q, n_iters: int, tol: float = TRANSFORM_TOL) -> torch.Tensor:
    """Minimise Σ_i (w_i Q w_iᵀ − 2 numer_i · w_i) over W ≥ 0 by multiplicative updates
    (a non-negative least-squares problem); used to fit coefficients with components fixed.

    Each example stops on its own, once its coefficients settle, so that its answer is the same in any
    batch. The stop watches the coefficients, not the objective: near its optimum the objective summed
    over the examples changed by less than 1e-7 while coefficients were still 0.1% from the solution."""
    W, floor = coefficients_start(numer, Q), division_floor(numer, dim=1)
    settled_W, moving = torch.empty_like(W), torch.arange(len(W), device=W.device)
    before = W
    for it in range(n_iters):
        W = W * numer / (W @ Q + floor)
        if tol and it % 10 == 9:
            moved = (W - before).abs().amax(dim=1) > tol * W.abs().amax(dim=1)
            settled_W[moving[~moved]] = W[~moved]
            moving, W, numer, floor = moving[moved], W[moved], numer[moved], floor[moved]
            if not len(moving):
                break
            before = W
    settled_W[moving] = W
    return settled_W


def positive_int(minimum: int = 1) -> list:
    return [Interval(Integral, minimum, None, closed="left")]


#: The PEF settings new PEFs must share with the fit's for :meth:`NpeffBase.transform` to compare them.
SAME_SETTINGS = ("n_values", "top_k_classes", "sketch")


def _setting(value):
    """A recorded PEF setting as an error shows it: a sketch by its method, width and seed."""
    return {k: v for k, v in value.items() if k != "parameters"} if isinstance(value, dict) else value


class NpeffBase(BaseEstimator):
    """What LRM- and D-NPEFF share. Subclasses fit (``_fit_prepared``) and find coefficients
    (``_coefficients_of``) in their own way."""

    kind: ClassVar[str]  # the kind of PEF fitted, a name in workbench.core.kinds.KINDS
    file_format: ClassVar[FileFormat]  # of save()
    components_name: ClassVar[str]  # "G" or "H": the learned components are ``G_`` or ``H_``
    count_keys: ClassVar[tuple[str, ...]]  # the count saved beside the arrays; older files' names after the first

    # Every setting and what it may be, in the order files record them (scikit-learn's constraints).
    _parameter_constraints: ClassVar[dict] = {
        "n_components": positive_int(),
        "min_nonzero_per_col": positive_int(),
        "normalize": ["boolean"],
        "log_every": positive_int(),
        "seed": [Interval(Integral, 0, MAX_SEED, closed="both")],  # torch.manual_seed's range
        "tol": [Interval(Real, 0, None, closed="left")],
        "progress": ["boolean"],
    }

    def check_params(self) -> None:
        """Raise ``InvalidParameterError`` (a ValueError) naming a setting outside ``_parameter_constraints``.
        ``fit`` checks first; this is for code that needs the settings before it fits."""
        self._validate_params()

    def _validate_params(self) -> None:
        # scikit-learn counts a bool as an int (True == 1): a flag in a count's place is a slip, refused by name
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) and "boolean" not in constraints:
                allowed = " or ".join(str(make_constraint(c)) for c in constraints)
                raise InvalidParameterError(f"The {name!r} parameter of {type(self).__name__} must be {allowed}, "
                                            f"not a bool. Got {value!r} instead.")
        super()._validate_params()

    def recorded_params(self) -> dict:
        """``get_params()`` as files record them: in the table's order, devices as text."""
        params = self.get_params(deep=False)
        return {k: str(params[k]) if isinstance(params[k], torch.device) else params[k] for k in self._parameter_constraints}

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "W_")

    # -- the data ----------------------------------------------------------------------

    def _pef_class_name(self) -> str:
        return KINDS[self.kind].pefs_type.__name__

    def _check_pefs(self, pefs, fitted: bool) -> None:
        if hasattr(pefs, "load") and not hasattr(pefs, "frobenius_norms"):  # a store on disk, not its PEFs
            raise TypeError(f"{type(self).__name__} fits PEFs in memory, got a {type(pefs).__name__}: pass store.load() "
                            "(or, for a store larger than memory, python -m workbench fit STORE --out FILE)")
        if getattr(pefs, "kind", None) != self.kind:
            fix = (f"wrap a dense array with {self._pef_class_name()}.from_dense(...)" if not hasattr(pefs, "kind") else
                   f"compute {self.kind!r} PEFs (kind={self.kind!r}), or use {_estimator_name(pefs.kind)}")
            raise TypeError(f"{type(self).__name__} takes {self.kind!r} PEFs ({self._pef_class_name()}), got "
                            f"{type(pefs).__name__}: {fix}")
        if pefs.n_examples == 0:
            raise ValueError(f"the PEF set is empty: there are no examples to {'find coefficients of' if fitted else 'fit'}; "
                             "pass the PEFs of at least one example")
        check_finite_norms(pefs.frobenius_norms)
        self._check_values(pefs)
        if not fitted and self.n_components > pefs.n_examples:
            raise ValueError(
                f"n_components={self.n_components} is larger than the number of examples ({pefs.n_examples}); "
                "use at most as many components as examples"
            )
        if fitted:
            self.check_same_source(pefs.info, pefs.layout)

    def _check_values(self, pefs) -> None:
        """The PEFs' stored values finite, and non-negative for a kind that is (a sum of squares): a PEF record
        made by hand (DPefs(F=...)) with a negative entry failed in the fit as 'math domain error'."""
        values = pefs.matrix.data
        if not values.size:
            return
        low, high = values.min(), values.max()  # NaN carries through both: no array of the values' size
        finite, negative = bool(np.isfinite(low) and np.isfinite(high)), KINDS[self.kind].non_negative and low < 0
        if finite and not negative:
            return
        bad = ~np.isfinite(values) if not finite else values < 0
        rows = np.repeat(np.arange(pefs.matrix.shape[0]), np.diff(pefs.matrix.indptr))[bad]
        first = np.unique(pefs.example_of_row()[rows])[:5].tolist()
        fix = ("check the model (torch.isfinite on its parameters and outputs) and compute them again" if not finite else
               "a diagonal Fisher is a sum of squares: compute them with compute_pefs(..., kind='d'), or bring them "
               "with DPefs.from_dense(f), which checks them")
        raise ValueError(f"the PEFs hold {int(bad.sum())} {'NaN or infinite' if not finite else 'negative'} values "
                         f"(first in examples {first}); {fix}")

    def check_same_source(self, info: dict, layout: ParameterLayout) -> None:
        """Refuse PEFs (their ``info`` and ``layout``: a PEF set's or a store's) that come from
        another model, or are over other parameters, than the PEFs this decomposition was
        fitted to; :meth:`transform` and :func:`workbench.distributed.transform_distributed`
        (the command line's ``transform``) refuse alike."""
        if self.pef_info_.get("model_fingerprint") and info.get("model_fingerprint") not in (
            None, self.pef_info_["model_fingerprint"]
        ):
            raise StoreError(
                f"these PEFs come from another model ({info.get('model')}, weights "
                f"{info['model_fingerprint'][:12]}) than the decomposition's ({self.pef_info_.get('model')}, "
                f"{self.pef_info_['model_fingerprint'][:12]}); compute them with the decomposition's model. To compare "
                "two models on purpose, drop the record first: pefs.info.pop('model_fingerprint')"
            )
        if layout != self.layout_:
            raise ValueError(
                f"these PEFs were computed over other parameters ({layout.n_parameters} parameters, "
                f"first {layout.names[:2]}) than the decomposition ({self.layout_.n_parameters}, first "
                f"{self.layout_.names[:2]}); compute them with the same model and parameter filter"
            )
        # kept at another count, over other classes or in another sketch, their coefficients are of other
        # numbers (a fit at n_values=256 gave W[0] = [0.32, 1.12, 0.29]; the same examples at 16, [0, 0.04, 0])
        differing = [f"{key}={_setting(info[key])!r} (the fit's {_setting(self.pef_info_[key])!r})" for key in SAME_SETTINGS
                     if key in info and key in self.pef_info_ and info[key] != self.pef_info_[key]]
        if differing:
            raise ValueError(
                f"these PEFs were computed with other settings than the PEFs the decomposition was fitted to: "
                f"{', '.join(differing)}; their coefficients would not be comparable. Compute them with the fit's "
                "settings (compute_pefs(..., n_values=..., top_k_classes=...) as recorded in decomposition.pef_info_)"
            )

    def _kept_columns(self, pefs) -> np.ndarray:
        """The parameters (columns) non-zero in at least ``min_nonzero_per_col`` examples."""
        counts = examples_per_column(pefs.matrix, pefs.example_of_row(), pefs.n_examples)
        kept = np.flatnonzero(counts >= self.min_nonzero_per_col)
        if kept.size == 0:
            raise ValueError(
                f"no parameter is non-zero in at least min_nonzero_per_col={self.min_nonzero_per_col} examples; "
                "lower min_nonzero_per_col or keep more values per example (n_values)"
            )
        return kept

    def _check_rank(self, n_kept: int) -> None:
        """n_components no more than the kept parameters can hold apart: D's components are
        vectors over n_kept parameters, LRM's stand for rank-one n_kept × n_kept symmetric
        matrices g gᵀ, of which at most n_kept (n_kept + 1) / 2 are linearly independent. More
        than that come out as duplicates or mixtures (issue 19: 4 components over 2 parameters)."""
        most = n_kept * (n_kept + 1) // 2 if KINDS[self.kind].one_row_per_slot else n_kept
        if self.n_components > most:
            raise ValueError(
                f"n_components={self.n_components} is more than the data can tell apart: the PEFs keep {n_kept} "
                f"parameters (after min_nonzero_per_col={self.min_nonzero_per_col}), which hold at most {most} "
                f"independent components; use n_components <= {most}, or select more parameters (include=/exclude=) "
                "or keep more values per example (n_values)"
            )

    def _row_scale(self, pefs) -> np.ndarray:
        if not self.normalize:
            return np.ones(pefs.n_examples)
        return self._unit_scale(pefs.frobenius_norms)

    def _whole_squared_norm(self, pefs) -> float:
        """The loss's constant term Σ_i ‖F_i‖² over every parameter, not only the fit's kept ones: the entries of
        new PEFs where the components are zero are error the reconstruction leaves (:meth:`loss`)."""
        return self._matrix(pefs, np.arange(pefs.n_parameters))[1]

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.seed) + offset)

    def _checkpoint(self, path, every: int, matrix: sp.csr_matrix, kept: np.ndarray, squared_norm: float,
                    gather_steps=None):
        if path is None:
            return None
        return FitCheckpoint(path, every, self, fingerprint_matrix(matrix, kept, squared_norm), gather_steps=gather_steps)

    # -- fitting -----------------------------------------------------------------------

    def fit(self, pefs, y=None, *, init: "NpeffBase | None" = None, keep_init: bool = True,
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50):
        """Fit the coefficients ``W_`` and the components to the PEFs; returns self. ``y`` is not
        used (scikit-learn's Pipeline passes it): the PEFs carry their labels.

        With ``init`` (a fitted estimator of this class with fewer components), its
        components stay as they are and ``n_components - init.n_components`` new ones are
        fitted beside them (:mod:`workbench.npeff.expand`; :meth:`expand` is the short form);
        ``keep_init=False`` starts from ``init`` and lets every component move. The loss
        history continues ``init``'s.

        With ``checkpoint`` (a file path), the fit's state is saved there every
        ``checkpoint_every`` steps and at the end; calling ``fit`` again with the same PEFs
        and settings resumes from it (and returns at once if it had finished), ending
        exactly where an uninterrupted fit ends. A checkpoint of other data or settings is
        refused (:class:`~workbench.store.StoreError`). See :mod:`workbench.store.checkpoint`.
        """
        self._validate_params()
        self._check_pefs(pefs, fitted=False)
        device = self._device()
        kept = self._kept_columns(pefs)
        self._check_rank(kept.size)
        start = None
        if init is not None:
            if checkpoint is not None:
                raise ValueError("a fit from init= is not checkpointed; pass checkpoint=None (it is as long as a fit of "
                                 "its new components)")
            start = start_from(self, init, pefs, kept, keep_init)
        matrix, squared_norm = self._matrix(pefs, kept)
        saver = self._checkpoint(checkpoint, checkpoint_every, matrix, kept, squared_norm)
        data = prepare(matrix, squared_norm, pefs.n_examples, device)
        columns = Columns.all_kept(kept, pefs.layout)
        self._fit_prepared(data, matrix, pefs, columns, device, saver, start)
        if init is not None:
            self.loss_history_ = continued_history(init.loss_history_, self.loss_history_)
        self._set_columns(columns)
        self.pef_info_ = dict(pefs.info, pefs_fingerprint=fingerprint_pefs(pefs))
        return self

    def expand(self, pefs, n_new: int, **settings):
        """A new estimator with ``n_new`` more components, fitted to ``pefs`` with this one's
        components kept as they are: ``clone(self)`` with ``n_components + n_new`` (and any
        other ``settings``), ``.fit(pefs, init=self)``. This estimator is left unchanged."""
        check_is_fitted(self)
        if not isinstance(n_new, (int, np.integer)) or isinstance(n_new, bool) or n_new < 1:
            raise ValueError(f"n_new must be a positive integer (components to add), got {n_new!r}")
        if "n_components" in settings:
            more = max(1, settings["n_components"] - self.n_components)
            raise TypeError(f"expand sets n_components itself ({self.n_components} + n_new); pass the number of "
                            f"components to add as n_new, e.g. expand(pefs, {more})")
        bigger = clone(self).set_params(n_components=self.n_components + int(n_new), **settings)
        return bigger.fit(pefs, init=self)

    def fit_columns(self, pefs, columns: Columns, info: dict, *, device: torch.device | None = None,
                    checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50):
        """Fit to this process's columns of the PEFs (``pefs`` holds just them), the others'
        held by other processes that call this too (:func:`workbench.distributed.fit_distributed`);
        ``columns`` says how they are split, ``info`` what the fit records of the PEFs,
        ``device`` this process's (default: the estimator's). Every process ends with the whole fit.
        ``checkpoint``: this process's checkpoint file, as in :meth:`fit`; the processes resume
        at the latest step all of them saved."""
        self._validate_params()
        self._check_pefs(pefs, fitted=False)
        self._check_rank(columns.n_kept)
        device = device or self._device()
        own = np.arange(pefs.n_parameters)
        matrix, squared_norm = self._matrix(pefs, own, columns.reduce)
        saver = self._checkpoint(checkpoint, checkpoint_every, matrix, own, squared_norm, columns.gather_steps)
        data = prepare(matrix, squared_norm, pefs.n_examples, device, reduce=columns.reduce, columns=columns.span)
        self._fit_prepared(data, matrix, pefs, columns, device, saver, None)
        self._set_columns(columns)
        self.pef_info_ = dict(info)
        return self

    def _set_columns(self, columns: Columns) -> None:
        self.kept_columns_ = columns.kept_columns()
        self.n_parameters_ = columns.layout.n_parameters
        self.layout_ = columns.layout

    def fit_transform(self, pefs, y=None) -> np.ndarray:
        """``fit(pefs).W_``: the fitted examples' coefficients, of shape (n_examples, n_components)."""
        return self.fit(pefs).W_

    # -- coefficients of (new) examples --------------------------------------------------

    def transform(self, pefs) -> np.ndarray:
        """Coefficients W of shape (n_examples, n_components) for (new) PEFs, the components fixed."""
        check_is_fitted(self)
        self._check_pefs(pefs, fitted=True)
        device = self._device()
        matrix, _ = self._matrix(pefs, self.kept_columns_)
        data = FitData(to_torch_csr(matrix, device), None, 0.0, pefs.n_examples)
        return self._coefficients_of(data, torch.from_numpy(self.components_).to(device), pefs).cpu().numpy()

    def transform_columns(self, pefs, columns: Columns, *, device: torch.device | None = None) -> np.ndarray:
        """:meth:`transform` of this process's columns of the PEFs, the others' held by other
        processes (:func:`workbench.distributed.transform_distributed`); every process returns W."""
        check_is_fitted(self)
        check_finite_norms(pefs.frobenius_norms)
        device = device or self._device()
        matrix, squared_norm = self._matrix(pefs, np.arange(pefs.n_parameters), columns.reduce)
        data = FitData(to_torch_csr(matrix, device), None, squared_norm, pefs.n_examples, reduce=columns.reduce,
                       columns=columns.span)
        components = torch.from_numpy(self.components_[:, columns.span]).contiguous().to(device)
        return self._coefficients_of(data, components, pefs).cpu().numpy()

    def _loss_coefficients(self, pefs, W, device) -> torch.Tensor:
        """``W`` for :meth:`loss` on ``pefs``, checked as :meth:`transform` checks the PEFs (None: their
        transform): a W of another shape raised torch's own error, a negative one was scored as it was."""
        check_is_fitted(self)
        self._check_pefs(pefs, fitted=True)
        if W is None:
            return torch.from_numpy(self.transform(pefs)).to(device)
        W = np.asarray(W)
        expected = (pefs.n_examples, self.n_components)
        if W.shape != expected or not np.issubdtype(W.dtype, np.number) or not np.isfinite(W).all() or (W < 0).any():
            raise ValueError(f"W must be finite non-negative coefficients of shape {expected} (examples, components), "
                             f"got {W.dtype} values of shape {W.shape}; e.g. W=estimator.transform(pefs)")
        return torch.from_numpy(W.astype(np.float32)).to(device)

    # -- components --------------------------------------------------------------------

    @property
    def components_(self) -> np.ndarray:
        """(n_components, n_kept_columns): G_ or H_."""
        return getattr(self, self.components_name + "_")

    @property
    def final_loss_(self) -> float | None:
        """The last loss the fit recorded: of its joint phase, else of its first; None if none."""
        for phase in ("joint", *self.loss_history_):
            history = self.loss_history_.get(phase)
            if history is not None and len(history):
                return float(history[-1, 1])
        return None

    def component(self, j: int) -> np.ndarray:
        """Component j as a full parameter-space vector of n_parameters (zeros where pruned)."""
        check_is_fitted(self)
        j = component_index(j, len(self.components_))
        full = np.zeros(self.n_parameters_, dtype=np.float32)
        full[self.kept_columns_] = self.components_[j]
        return full

    def component_by_parameter(self, j: int) -> dict[str, np.ndarray]:
        """Component j split into arrays shaped like the model's parameters."""
        return self.layout_.split(self.component(j))

    # -- saving ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted decomposition as one safetensors file (no pickle); an existing file is
        replaced only if it is one of this package's."""
        check_is_fitted(self)
        check_outside_run(path, "the decomposition file", "a decomposition")
        check_replaceable(path, "decomposition or other safetensors file")
        count = self.count_keys[0]
        header = {
            **self.file_format.header(),
            "producer": producer(),
            "params": self.recorded_params(),
            "n_parameters": self.n_parameters_,
            count: getattr(self, count + "_"),
            "layout": self.layout_.to_dict(),
            "pef_info": self.pef_info_,
            **({"solver": self.solver_} if hasattr(self, "solver_") else {}),  # LRM-NPEFF's primal or dual
        }
        arrays = {
            "W": self.W_,
            self.components_name: self.components_,
            "kept_columns": self.kept_columns_,
            **{f"losses/{phase}": values for phase, values in self.loss_history_.items()},
        }
        write_arrays(path, arrays, header)

    @classmethod
    def load(cls, path: str | os.PathLike, *, model: torch.nn.Module | None = None):
        """Read a decomposition written by :meth:`save`. With ``model``, refuse (StoreError) a
        decomposition made from another model's PEFs or over parameters it does not have."""
        arrays, header = read_arrays(path, cls.file_format)
        try:
            estimator = cls(**dict(header["params"]))
            estimator._validate_params()
            estimator.n_parameters_ = int(header["n_parameters"])
            count = next((key for key in cls.count_keys if key in header), cls.count_keys[0])
            setattr(estimator, cls.count_keys[0] + "_", int(header[count]))
            estimator.layout_ = ParameterLayout.from_dict(header["layout"])
            estimator.pef_info_ = dict(header.get("pef_info", {}))
            if header.get("solver"):
                estimator.solver_ = str(header["solver"])
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise StoreError(f"{path} has a damaged header ({err!r}); re-create it with save()") from err
        needed = {"W", cls.components_name, "kept_columns"}
        if not needed <= set(arrays):
            raise StoreError(f"{path} lacks {sorted(needed - set(arrays))}")
        W, components, kept = arrays["W"], arrays[cls.components_name], arrays["kept_columns"]
        r, m = estimator.n_components, estimator.n_parameters_
        consistent = (
            W.ndim == 2 and W.shape[1] == r and components.ndim == 2 and components.shape[0] == r
            and kept.ndim == 1 and kept.shape[0] == components.shape[1] and m == estimator.layout_.n_parameters
            and np.issubdtype(kept.dtype, np.integer) and (kept.size == 0 or (kept.min() >= 0 and kept.max() < m))
            and W.dtype == np.float32 and components.dtype == np.float32
        )
        if not consistent:
            raise StoreError(f"{path} is damaged: its arrays do not fit each other or its header; re-create it with save()")
        estimator.W_ = W
        setattr(estimator, cls.components_name + "_", components)
        estimator.kept_columns_ = kept.astype(np.int64)
        estimator.loss_history_ = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("losses/")}
        if model is not None:
            estimator.check_model(model, what=f"the decomposition {path}")
        return estimator

    def check_model(self, model: torch.nn.Module, what: str = "this decomposition") -> None:
        """Refuse (StoreError) a model other than the one whose PEFs were decomposed: other
        weights (when the PEFs recorded them), or no parameters of the decomposition's names and shapes."""
        check_is_fitted(self)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be the torch model the PEFs were computed from, got {type(model).__name__}; "
                            "load it first (e.g. AutoModelForSequenceClassification.from_pretrained(folder))")
        check_weights(model)  # its fingerprint read the weights: torch's "Cannot copy out of meta tensor"
        params = dict(model.named_parameters())
        wrong = [n for n, shape in zip(self.layout_.names, self.layout_.shapes)
                 if n not in params or tuple(params[n].shape) != tuple(shape)]
        if wrong:
            raise StoreError(
                f"{what} was made over parameters this model does not have, or has in other shapes (e.g. {wrong[:3]}): "
                f"it comes from another model ({self.pef_info_.get('model', 'unnamed')}); load that model, or "
                "recompute the PEFs and decomposition with this one"
            )
        check_same_model(self.pef_info_, model, what)


def _estimator_name(kind_name) -> str:
    """The name of the estimator of PEFs of kind ``kind_name``, from the package's registry."""
    from . import ESTIMATORS  # the package's table, made once its estimators are defined

    estimator = ESTIMATORS.get(kind_name)
    return estimator.__name__ if estimator is not None else "the estimator of their kind"

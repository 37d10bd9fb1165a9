"""Exploring a finished run: the one object that panels, notebooks and HTML reports read from.

``RunExplorer.open("runs/demo")`` opens a run folder and loads what it needs when first
asked (examples, decomposition, the component table, the model and tokenizer), so opening
a run with thousands of components is cheap. It answers three questions, each with a
result object that renders itself in a notebook, with or without widgets:

- which components are there: :meth:`RunExplorer.components` → :class:`ComponentPage`,
  a filtered, sorted page of the component table (``workbench.analysis.component_table``);
- what does a component fire on: :meth:`RunExplorer.top_examples` → :class:`TopExamplesPage`,
  a page of its top examples with per-token scores (``workbench.analysis.highlights.token_scores``);
- does its direction matter to the model: :meth:`RunExplorer.perturb` →
  ``workbench.analysis.perturb.PerturbationResult``.

The widgets in ``widgets/`` only render these objects, computed here or deeper in the library.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from functools import cached_property, lru_cache

import numpy as np
import pandas as pd

from ..core.defaults import N_VALUES
from ..analysis.tables import component_table, top_examples, top_sets
from ..analysis.token_shares import LEFT_OUT_NOTED
from ..core.arguments import component_index, component_indices, flag, fraction, is_within, item_index, positive_int, user_path
from ..store.files import atomic_path
from .results import (ComponentDashboard, ComponentFilter, ComponentPage, HighlightedExample, Lookup, TopExamplesPage,
                      checked_filter)
from ..models.text import example_texts, is_pair, shown_text
from .explore_checks import check_model_and_tokenizer, example_to_read, lookup_example, offsets_note
from .run_folder import COMPONENTS, EXPORTS, LABELS, MODEL, Run

__all__ = ["ComponentDashboard", "ComponentFilter", "ComponentPage", "HighlightedExample", "Lookup", "RunExplorer",
           "TopExamplesPage", "check_explorer"]


logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 25
DEFAULT_EXAMPLES_PAGE_SIZE = 10
#: Tokens scored per example, as in ``workbench.models.embedded.tokenize``.
TOKEN_MAX_LENGTH = 64


# ---------------------------------------------------------------------------------------
# The explorer
# ---------------------------------------------------------------------------------------


class RunExplorer:
    """Read access to one run folder for browsing components, examples and perturbations.

    model, tokenizer: use these instead of the run's ``model/`` folder (for runs whose model
        lives elsewhere). Without a model, examples are shown without token scores and
        perturbation checks explain why they cannot run.
    n_top: size of the top set used for the search and the perturbation checks
        (default: the run's ``n_top`` parameter, else 20).
    """

    def __init__(self, run: Run, *, model=None, tokenizer=None, n_top: int | None = None, device=None):
        if not isinstance(run, Run):  # a path read as a Run failed on 'str' object has no attribute 'params'
            path = repr(str(run)) if isinstance(run, (str, os.PathLike)) else "path"
            raise TypeError(f"RunExplorer takes an opened Run, got {type(run).__name__}; use RunExplorer.open({path})")
        check_model_and_tokenizer(model, tokenizer)
        self.run = run
        self.device = device
        self.n_top = positive_int(n_top if n_top is not None else run.param("n_top", 20), "n_top")
        self._model = model
        self._tokenizer = tokenizer
        self._model_unchecked = model is not None  # a model given here is checked against the run's on first use
        self._ranking = lru_cache(maxsize=256)(self._compute_ranking)
        # One computation with the model at a time: a perturbation moves its weights in place, and the
        # token scores' forward-mode derivatives cannot interleave (panels may fill in on a thread).
        self.model_lock = threading.RLock()

    @classmethod
    def open(cls, path: str | os.PathLike, **kwargs) -> "RunExplorer":
        """The run folder at ``path`` (refused, naming what is missing, when its run stopped early);
        ``kwargs`` as :class:`RunExplorer` takes them (``n_top``, ``model``, ``tokenizer``, ``device``)."""
        return cls(Run.open(path), **kwargs)

    def __repr__(self) -> str:
        return f"RunExplorer({str(self.run.path)!r})"

    @property
    def max_length(self) -> int:
        """Where texts are cut, as the run's PEFs cut them (the embedded task's 64 by default)."""
        return self.run.param("max_length") or TOKEN_MAX_LENGTH

    # -- what the run holds, loaded on first use ------------------------------------------

    @property
    def record(self) -> dict:
        return self.run.record

    @cached_property
    def examples(self) -> pd.DataFrame:
        """One row per example: text, label, prediction and any attributes."""
        examples = self.run.examples
        if "text" not in examples:
            raise ValueError(f"{self.run.path}: examples.parquet has no 'text' column; the browser needs the texts")
        return examples

    @cached_property
    def texts(self) -> list:
        """Each example's text, or its pair of texts as a (first, second) tuple."""
        return example_texts(self.examples)

    @cached_property
    def decomposition(self):
        return self.run.decomposition()

    @property
    def W(self) -> np.ndarray:
        """(n_examples, n_components): the coefficients."""
        return self.decomposition.W_

    @property
    def n_components(self) -> int:
        return self.W.shape[1]

    @cached_property
    def labels(self) -> np.ndarray | None:
        return self.examples["label"].to_numpy() if "label" in self.examples else None

    @cached_property
    def predictions(self) -> np.ndarray | None:
        return self.examples["prediction"].to_numpy() if "prediction" in self.examples else None

    @cached_property
    def table(self) -> pd.DataFrame:
        """The component table: the run's ``components.csv`` if it has one, else computed now; with
        each component's short label (``name``, :mod:`workbench.analysis.labels`) first."""
        from ..analysis.labels import with_names

        return with_names(self._bare_table, self.run.path / LABELS)

    @cached_property
    def _bare_table(self) -> pd.DataFrame:
        path = self.run.path / COMPONENTS
        if path.exists():
            table = self.run.components()
            if len(table) == self.n_components:
                return table
            logger.warning("%s has %d rows for %d components; recomputing it", path, len(table), self.n_components)
        return component_table(
            self.W, self.decomposition.components_, labels=self.labels, predictions=self.predictions,
            n_top=self.n_top, kind=self.run.param("kind", "lrm"),
        )

    def component_name(self, component: int) -> str | None:
        """The component's short label (the table's ``name`` column), or None when it has none."""
        from ..analysis.labels import NAME_COLUMN

        component = self._check_component(component)
        if NAME_COLUMN not in self.table.columns or component not in self.table.index:
            return None
        name = self.table.loc[component, NAME_COLUMN]
        return None if pd.isna(name) else str(name)

    def label_components(self, *, n_examples: int = 10, progress: bool = False) -> pd.Series:
        """Labels with each component's top token (``analysis.labels.top_tokens`` over its first
        ``n_examples`` top examples, scored with the run's model), saved to the run's ``labels.csv``
        so the table, panels, reports and exports show them from now on; returns them."""
        from ..analysis.labels import component_labels, top_tokens

        n_examples = positive_int(n_examples, "n_examples")
        self.run.check_writable(f"the labels ({LABELS})")
        model, tokenizer = self.model_and_tokenizer()
        sets = {int(j): (row[row >= 0] if n_examples <= self.n_top else self.ranking(j))[:n_examples]
                for j, row in enumerate(self.top_sets)}  # the top sets stop at the explorer's n_top
        with self.model_lock:
            tokens = top_tokens(model, tokenizer, self.decomposition, self.texts, sets,
                                max_length=self.max_length, device=self.device, progress=progress)
        names = component_labels(self._bare_table, tokens)
        self.run.check_unchanged()
        with atomic_path(self.run.path / LABELS) as tmp:  # the table reads it whole or not at all
            names.to_frame().to_csv(tmp)
        self.__dict__.pop("table", None)
        self.__dict__.pop("_search_text", None)
        return names

    def trace(self, component: int, *, epsilon: float = 0.1, n_top: int | None = None, n_baseline: int = 10,
              seed: int = 0, max_sim: float | None = None):
        """``workbench.analysis.trace.perturbation_trace`` of ``component`` on its top examples
        (the first ``n_top``, default the explorer's) against ``n_baseline`` random others."""
        from ..analysis.perturb import baseline_examples
        from ..analysis.trace import perturbation_trace

        n_top = self.n_top if n_top is None else positive_int(n_top, "n_top")
        top = self.ranking(component)[:n_top]  # not the top set, which stops at the explorer's n_top
        if len(top) == 0:
            raise ValueError(f"component {component} has no examples with a positive coefficient to trace")
        baseline = baseline_examples(len(self.examples), top, n_baseline, seed)  # its checks before the model loads
        model, tokenizer = self.model_and_tokenizer()
        with self.model_lock:  # it moves the weights, as a perturbation check does
            return perturbation_trace(model, tokenizer, self.decomposition, int(component),
                                      self.texts, top, baseline, epsilon=epsilon, max_sim=max_sim,
                                      max_length=self.max_length)

    @cached_property
    def label_names(self) -> dict:
        """{str(label id): name}: a language model's label words, else the names in the model's config,
        when the run has one."""
        from ..models.prompt import prompt_of

        if self._model is not None:
            words = getattr(self._model, "label_words", None)
        else:
            words = (prompt_of(self.run.path / MODEL) or {}).get("label_words")
        if words is not None:
            return {str(k): str(w) for k, w in enumerate(words)}
        config = self.run.path / MODEL / "config.json"
        if self._model is not None:
            names = getattr(getattr(self._model, "config", None), "id2label", None) or {}
        else:
            names = json.loads(config.read_text()).get("id2label", {}) if config.exists() else {}
        # transformers names classes LABEL_0, LABEL_1, ... where the config has none (and only once loaded): no names
        return {str(k): str(v) for k, v in names.items() if str(v) != f"LABEL_{k}"}

    @property
    def has_model(self) -> bool:
        return self._model is not None or (self.run.path / MODEL / "config.json").exists()

    def model_and_tokenizer(self):
        """(model, tokenizer), loaded from the run's ``model/`` folder on first use."""
        if self._model is None:
            if not self.has_model:
                raise FileNotFoundError(
                    f"{self.run.path} has no model/ folder, so tokens cannot be scored and directions cannot be "
                    "perturbed; open the run with RunExplorer.open(path, model=..., tokenizer=...)"
                )
            from ..models.embedded import load_default_model

            with self.model_lock:  # loaded once, also when two panels ask at the same time
                if self._model is None:  # checked as a given one is: a folder's weights swapped after the run
                    self._model, self._tokenizer = load_default_model(self.run.path / MODEL)  # read KL 9.7 for 7542
                    self._model_unchecked = True
        if self._tokenizer is None:
            raise ValueError("a model was given without its tokenizer; pass tokenizer= as well")
        if self._model_unchecked:  # other weights would score tokens and perturb a model the PEFs never saw
            self.decomposition.check_model(self._model, f"the run {self.run.path} (its decomposition)")
            self._model_unchecked = False
        from ..analysis.moves import restore_pending  # torch, which `import widgets` does without

        with self.model_lock:  # while another panel's perturbation holds it, its saved weights are not left over
            restore_pending(self._model)  # weights an interrupted perturbation left moved: every reading comes here
        return self._model, self._tokenizer

    # -- components --------------------------------------------------------------------

    def filter_components(self, filter: ComponentFilter | None = None, **changes) -> pd.DataFrame:
        """The rows of the component table that pass ``filter``, sorted (all of them, not a page)."""
        filter = checked_filter(filter, changes)
        fraction(filter.min_purity, "min_purity")
        fraction(filter.min_mass, "min_mass")  # a share of the total mass
        table = self.table
        keep = np.ones(len(table), dtype=bool)
        if filter.min_purity > 0:
            if filter.purity not in table:
                raise ValueError(f"no purity column {filter.purity!r}; the table has {self.purity_columns()}")
            keep &= table[filter.purity].fillna(0).to_numpy() >= filter.min_purity
        if filter.min_mass > 0:
            keep &= table["mass"].to_numpy() >= filter.min_mass
        if filter.label is not None:
            keep &= (table["label"].astype(str) == str(filter.label)).to_numpy()
        if filter.search.strip():
            keep &= self._search_text.str.contains(filter.search.strip().lower(), regex=False).to_numpy()
        if filter.sort_by not in table.columns and filter.sort_by != "component":
            raise ValueError(f"cannot sort by {filter.sort_by!r}; choose one of {['component', *table.columns]}")
        rows = table[keep]
        # Stable sorts of a table in component order: ties stay in component order both ways.
        if filter.sort_by == "component":
            return rows.sort_index(ascending=not filter.descending, kind="stable")
        return rows.sort_values(filter.sort_by, ascending=not filter.descending, kind="stable", na_position="last")

    def components(self, filter: ComponentFilter | None = None, *, page: int = 0,
                   page_size: int = DEFAULT_PAGE_SIZE, **changes) -> ComponentPage:
        """A page of the component table; ``changes`` set :class:`ComponentFilter` fields."""
        filter = checked_filter(filter, changes)
        page_size = positive_int(page_size, "page_size")
        matching = self.filter_components(filter)
        n_pages = max(1, -(-len(matching) // page_size))
        page = min(positive_int(page, "page", 0), n_pages - 1)  # past the end: the last page, as a pager shows
        rows = matching.iloc[page * page_size:(page + 1) * page_size]
        return ComponentPage(rows, page, page_size, len(matching), self.n_components, filter)

    def purity_columns(self) -> list[str]:
        return [c for c in self.table.columns if c.endswith("_purity")]

    def component(self, component: int) -> pd.Series:
        """The table row of one component."""
        return self.table.loc[self._check_component(component)]

    def _check_component(self, component, argument: str = "component") -> int:
        return component_index(component, self.n_components, argument)

    @cached_property
    def top_sets(self) -> np.ndarray:
        """(n_components, n_top) indices of each component's top examples, largest first; -1 pads
        components with fewer examples of positive coefficient (``analysis.tables.top_sets``)."""
        return top_sets(self.W, self.n_top)

    @cached_property
    def _search_text(self) -> pd.Series:
        """Per component, the lower-cased texts of its top examples, for the text search."""
        texts = np.array([shown_text(t).lower() for t in self.texts], dtype=object)
        joined = ["\n".join(texts[row[row >= 0]]) for row in self.top_sets]
        return pd.Series(joined, index=self.table.index)

    # -- examples ----------------------------------------------------------------------

    def _compute_ranking(self, component: int) -> np.ndarray:
        return top_examples(self.W, component, n_top=self.W.shape[0])

    def ranking(self, component: int) -> np.ndarray:
        """All examples with a positive coefficient for ``component``, largest first."""
        return self._ranking(self._check_component(component))

    def top_examples(self, component: int, *, page: int = 0, page_size: int = DEFAULT_EXAMPLES_PAGE_SIZE,
                     highlight: bool = True) -> TopExamplesPage:
        """A page of ``component``'s examples with their token scores (when ``highlight`` and the run has a model)."""
        component, page_size = self._check_component(component), positive_int(page_size, "page_size")
        flag(highlight, "highlight")  # highlight='no' highlighted: a non-empty string is true
        ranking = self.ranking(component)
        n_pages = max(1, -(-len(ranking) // page_size))
        page = min(positive_int(page, "page", 0), n_pages - 1)  # past the end: the last page
        rows = ranking[page * page_size:(page + 1) * page_size]
        examples = [
            HighlightedExample(
                example=int(i), rank=page * page_size + r, text=shown_text(self.texts[i]),
                label=None if self.labels is None else _plain(self.labels[i]),
                prediction=None if self.predictions is None else _plain(self.predictions[i]),
                coefficient=float(self.W[i, component]),
            )
            for r, i in enumerate(rows)
        ]
        note = ""
        if highlight and examples:
            if self.has_model:
                note = self._score_tokens(component, examples)
            else:
                note = "Tokens are not highlighted: this run folder has no model/ to score them with."
        return TopExamplesPage(int(component), examples, page, page_size, len(ranking), self.label_names, note)

    def _score_tokens(self, component: int, examples: list[HighlightedExample]) -> str:
        """Scores the examples' tokens in place; returns why they are not highlighted, or ""."""
        from ..analysis.highlights import real_positions, token_scores  # on use, as the other imports of torch below
        from ..analysis.read_out import page_read_out
        from ..analysis.token_shares import token_shares
        from ..models.text import encode_texts

        model, tokenizer = self.model_and_tokenizer()
        # Character offsets (fast tokenizers only) let the page show the original text, shaded.
        encoded = encode_texts(model, tokenizer, [self.texts[e.example] for e in examples], self.max_length, warn=False,
                               spans=True)
        with self.model_lock:
            scores = token_scores(model, self.decomposition, component, encoded.inputs, device=self.device)
            read_out = page_read_out(model, encoded.inputs, self.device)
        if not any(s.projection > 0 for s in scores):
            return ("Tokens are not highlighted: none of the component's layers could be read per token, so every "
                    "score is zero (layers called time-major, as XLNet's, are left out: see the log).")
        left_out, names = max((s.left_out_share, s.left_out) for s in scores)
        for k, (e, s) in enumerate(zip(examples, scores)):
            real = real_positions(encoded.inputs, k)  # the scores are of these, whichever side the padding is on
            e.tokens = tokenizer.convert_ids_to_tokens(encoded.inputs["input_ids"][k, real].tolist())
            e.scores, e.head_share = s.scores, s.head_share
            # the tokenizer's special tokens, and a prompt's template: no word of the example's text
            e.special = encoded.special[k].tolist()
            shares = token_shares(e.scores, e.special, e.head_share)
            e.visible, e.visible_share, e.special_share = shares.visible, shares.visible_share, shares.special_share
            e.read_out = None if read_out is None else (read_out[k] & ~shares.special).tolist()
            e.spans, e.words = encoded.text_spans(k), None if encoded.word_ids is None else encoded.word_ids[k]
        if left_out >= LEFT_OUT_NOTED:
            named = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            return (f"{left_out:.0%} of the component's ‖g‖² lies in parameters that cannot be read per token ({named}: "
                    "called without an example axis, time-major or with more than their input). They are left out of "
                    "the highlights: the words', special tokens' and head's shares are of the rest of each example's "
                    "mass, and 'head' is no sign that the component acts in the head.")
        return offsets_note(encoded, tokenizer)

    # -- perturbations -----------------------------------------------------------------

    def _top_set(self, component: int) -> np.ndarray:
        return self.ranking(component)[: self.n_top]

    def perturb(self, component: int, *, epsilon: float = 0.1, max_sim: float | None = None,
                n_baseline: int = 100, seed: int = 0, batch_size: int = 64, baseline: str = "random"):
        """``workbench.analysis.perturb.perturbation_check`` of ``component`` on its top set vs a baseline of
        other examples: drawn at random (``baseline="random"``), or with the top set's mix of predicted classes
        (``"same classes"``), which asks whether the direction acts on the component's examples beyond their class."""
        from ..analysis.perturb import perturbation_check

        batch_size = positive_int(batch_size, "batch_size")
        args = self._perturbation_inputs(component, n_baseline, seed, baseline)
        with self.model_lock:
            return perturbation_check(*args, epsilon=epsilon, max_sim=max_sim, batch_size=batch_size, device=self.device,
                                      baseline_draw=baseline)

    def sweep(self, component: int, epsilons: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0), *,
              max_sim: float | None = None, n_baseline: int = 100, seed: int = 0, baseline: str = "random",
              on_result: Callable | None = None) -> pd.DataFrame:
        """The frame of ``workbench.analysis.perturb.epsilon_sweep`` (one row per ε, set and sign), computed
        one ε at a time so that ``on_result(result, done, total)`` can follow progress."""
        from ..analysis.perturb import check_sweep

        check_sweep(epsilons, max_sim, on_result)  # before the first perturbation runs
        frames = []
        for done, epsilon in enumerate(epsilons, start=1):
            result = self.perturb(component, epsilon=epsilon, max_sim=max_sim, n_baseline=n_baseline, seed=seed,
                                  baseline=baseline)
            frames.append(result.to_frame())
            if on_result is not None:
                on_result(result, done, len(epsilons))
        return pd.concat(frames, ignore_index=True)

    def selectivity(self, components: Sequence[int] | None = None, *, epsilon: float = 0.1, seed: int = 0,
                    progress: bool = False) -> pd.DataFrame:
        """Which components act beyond their class: ``analysis.selectivity.selectivity_table`` of :meth:`perturb`
        against random examples and against examples of the top set's classes (default: every component)."""
        from ..analysis.selectivity import selectivity_table

        return selectivity_table(lambda j, baseline: self.perturb(j, epsilon=epsilon, seed=seed, baseline=baseline),
                                 self._components(components), progress=progress)

    def _perturbation_inputs(self, component: int, n_baseline: int, seed: int, draw: str) -> tuple:
        """(model, decomposition, component, inputs, labels, top, baseline) over only the examples
        the check reads, so a run with 50,000 examples tokenizes a few hundred."""
        from ..analysis.perturb import baseline_classes, baseline_examples
        from ..models.text import encode_texts

        if self.labels is None:
            raise ValueError(f"{self.run.path}: the examples have no 'label' column, which the check needs")
        classes = baseline_classes(draw, self.predictions)
        top = self._top_set(component)
        if len(top) == 0:
            raise ValueError(f"component {component} has no examples with a positive coefficient to perturb on")
        baseline = baseline_examples(len(self.examples), top, n_baseline, seed, classes=classes)  # before the model loads
        model, tokenizer = self.model_and_tokenizer()
        rows = np.concatenate([top, baseline])
        # the PEF run warned of the texts it cut, by their numbers; a subset would number them anew
        inputs = encode_texts(model, tokenizer, [self.texts[i] for i in rows], self.max_length, warn=False).inputs
        positions = np.arange(len(rows))
        return (model, self.decomposition, int(component), inputs, self.labels[rows],
                positions[: len(top)], positions[len(top):])


    # -- at a glance: dashboards, reverse lookup, definitions --------------------------

    def dashboard(self, component: int, *, epsilon: float = 0.1, sweep: Sequence[float] | None = (0.01, 0.1, 1.0),
                  n_examples: int | None = None) -> ComponentDashboard:
        """Everything about ``component`` at a glance (``workbench.analysis.dashboard``): the histogram of its
        coefficients, its nearest components, where it lives (``analysis.location``) and, when the run has a
        model, the class its direction pushes toward (at ``epsilon``), its top tokens over its top
        ``n_examples`` (default: n_top) and the perturbation sweep over ``sweep`` (None: no sweep)."""
        from ..analysis.dashboard import coefficient_histogram, nearest_components
        from ..analysis.location import mass_by_location

        from ..analysis.perturb import check_step, check_sweep
        from .explore_checks import dashboard_sweep

        row = self.component(component)
        component = int(component)
        n_examples = self.n_top if n_examples is None else positive_int(n_examples, "n_examples")
        check_step(epsilon, None)  # as perturb checks it, and the sweep's steps before any work
        if sweep is not None:
            check_sweep(sweep, None)
        histogram, n_zero = coefficient_histogram(self.W[:, component])
        result = ComponentDashboard(
            component, row, histogram, n_zero, self.W.shape[0],
            nearest_components(self.decomposition.components_, component),
            mass_by_location(self.decomposition, component), epsilon=float(epsilon),
            definitions=self.definitions().to_dict()["definition"])
        if not self.has_model:
            result.notes.append("This run folder has no model/: no token shares, logit change or perturbation sweep.")
            return result
        page = self.top_examples(component, page_size=n_examples)
        result.top_tokens, result.examples = page.top_tokens(), page
        if page.examples:
            result.logit_change = self._logit_change(component, [e.example for e in page.examples], epsilon)
            result.sweep = dashboard_sweep(self, component, sweep, result.notes)
        return result

    def _logit_change(self, component: int, rows: Sequence[int], epsilon: float) -> pd.DataFrame:
        from ..analysis.dashboard import logit_change
        from ..models.text import encode_texts

        model, tokenizer = self.model_and_tokenizer()
        inputs = encode_texts(model, tokenizer, [self.texts[i] for i in rows], self.max_length, warn=False).inputs
        with self.model_lock:
            return logit_change(model, self.decomposition, component, inputs, epsilon=epsilon,
                                class_names=self.label_names)

    def lookup(self, example: int | str | tuple, *, n: int | None = 10) -> Lookup:
        """The components ``example`` loads on: an example of the run (its row of W, also when given by its text) or
        a new text, or a new (first, second) pair in a run of pairs (its PEF, taken as the run's, and the
        decomposition's ``transform``, which needs the model; the cost is in ``Lookup.seconds``). An example's text
        read as new gave transform's coefficients, not the fit's: its top component differed for one example of the
        tiny run, and every other panel shows the fit's."""
        from ..analysis.lookup import coefficients_of_texts, loadings, read_spans

        kind = self.run.param("kind", "lrm")
        if n is not None:
            n = positive_int(n, "n")  # before a new text's PEF is computed
        example = lookup_example(self.texts, example)
        if isinstance(example, (int, np.integer)) and not isinstance(example, bool):
            i = item_index(example, self.W.shape[0], "example", "examples")
            return Lookup(shown_text(self.texts[i]),
                          loadings(self.W[i], self.decomposition.components_, kind=kind, n=n), example=i,
                          label=None if self.labels is None else _plain(self.labels[i]),
                          prediction=None if self.predictions is None else _plain(self.predictions[i]))
        model, tokenizer = self.model_and_tokenizer()
        with self.model_lock:
            W, seconds = coefficients_of_texts(model, tokenizer, self.decomposition, [example], **self._text_pefs)
        return Lookup(shown_text(example), loadings(W[0], self.decomposition.components_, kind=kind, n=n),
                      seconds=seconds, is_pair=is_pair(example), **read_spans(model, tokenizer, example, self.max_length))

    @property
    def _text_pefs(self) -> dict:
        """How a new text's PEF is taken, as the run took its examples': kind, n_values, device, where texts are cut."""
        return dict(kind=self.run.param("kind", "lrm"), n_values=self.run.param("n_values", N_VALUES),
                    device=self.device, max_length=self.max_length)

    def deletion_effects(self, component: int, example: int | str | tuple) -> pd.DataFrame:
        """``analysis.lookup.deletion_effects`` of ``component`` on an example of the run (its number) or a text (a
        pair in a run of pairs, whose words of either text are deleted, a column ``text`` saying which): each word
        deleted in turn, the coefficient fitted again, the words it depends on first."""
        from ..analysis.lookup import deletion_effects

        component = self._check_component(component)
        example = example_to_read(self.texts, example, "deletion_effects")
        model, tokenizer = self.model_and_tokenizer()
        with self.model_lock:
            return deletion_effects(model, tokenizer, self.decomposition, example, component, **self._text_pefs)

    def definitions(self) -> pd.DataFrame:
        """What every column of the component table and every number of the panels means (one row each)."""
        from ..analysis.definitions import table_definitions

        return table_definitions(self.table)

    def highlight_hit_rate(self, *, n_top: int = 10, components: Sequence[int] | None = None) -> pd.DataFrame:
        """For each of the top ``n_top`` examples of each component: is its strongest visible token one of its
        deciding words (the ``deciding_words`` column of the embedded task)? One row per example; the rate
        is the mean of ``hit``, ``chance`` the rate of a visible word drawn at random."""
        from ..models.embedded.task import strongest_word_hits

        if "deciding_words" not in self.examples:
            raise ValueError(f"{self.run.path}: the examples have no 'deciding_words' column (the embedded task's)")
        n_top, components = positive_int(n_top, "n_top"), self._components(components)
        pages = [(j, self.top_examples(j, page_size=n_top)) for j in components]
        return pd.DataFrame(strongest_word_hits(pages, self.examples, self.model_and_tokenizer()[1], self.max_length))

    def _components(self, components: Sequence[int] | None) -> Sequence[int]:  # None: every component
        return range(self.n_components) if components is None else component_indices(components, self.n_components)

    # -- exports -----------------------------------------------------------------------

    def export(self, folder: str | os.PathLike | None = None, *, format: str = "parquet",
               perturbations: Sequence = ()) -> dict[str, "os.PathLike"]:
        """Write the run's results as tidy files with ``workbench.analysis.export``; returns {what: path}.

        Into ``folder`` (default: the run's ``exports/``): the component table, the per-example
        coefficients (long format, zeros left out), the perturbation results given (results of
        :meth:`perturb` or frames of :meth:`sweep`), all as ``format`` ("parquet" or "csv"), and
        the components as safetensors keyed by parameter name. The files of an earlier export there
        are replaced.
        """
        from ..analysis.export import export_run

        if folder is None:
            self.run.check_writable(f"an export ({EXPORTS}/)", ", or export elsewhere: export(folder='my-exports')")
        folder = user_path(folder, "folder") if folder is not None else self.run.path / EXPORTS
        if is_within(folder, self.run.path):
            self.run.check_unchanged()
        return export_run(folder, self.table, self.W, self.decomposition, format=format, perturbations=perturbations)


def check_explorer(explorer, fix: str = "RunExplorer.open(path)") -> "RunExplorer":
    """``explorer`` is a :class:`RunExplorer`; a run folder's path is refused with ``fix``, which opens it."""
    if not isinstance(explorer, RunExplorer):
        hint = f"; to open the run folder {str(explorer)!r}, use {fix}" if isinstance(explorer, (str, os.PathLike)) else ""
        raise TypeError(f"explorer must be a RunExplorer, got {type(explorer).__name__}{hint}")
    return explorer


def _plain(value):
    """A numpy scalar as the Python value it holds (for display and JSON)."""
    return value.item() if isinstance(value, np.generic) else value

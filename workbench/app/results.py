"""The result objects :class:`~workbench.app.explore.RunExplorer` returns: each renders itself in a
notebook (``text/plain`` and ``text/html``, with or without widgets) and holds plain numbers and frames.

- :class:`ComponentFilter`, :class:`ComponentPage`: which components, and a page of the component table;
- :class:`HighlightedExample`, :class:`TopExamplesPage`: a component's examples with their token shares;
- :class:`ComponentDashboard`: one component at a glance;
- :class:`Lookup`: the components one example (or a new text) loads on.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import report
from ..core.arguments import flag
from ..analysis.token_shares import strongest_word
from ..core.words import PAIR_SEPARATOR, word_positions
from ..models.text import BLANK, spelled_tokens


@dataclass
class ComponentFilter:
    """Which components to list, and in which order. The defaults list all, largest mass first."""

    min_purity: float = 0.0  # keep components whose ``purity`` column is at least this
    purity: str = "label_purity"  # the purity column the threshold applies to
    min_mass: float = 0.0  # size: share of the reconstruction's total mass
    label: object = None  # majority label of the top examples (None: any)
    search: str = ""  # case-insensitive text that one of the top examples must contain
    sort_by: str = "mass"
    descending: bool = True



def checked_filter(filter, changes: dict) -> ComponentFilter:
    """``filter`` (None: the defaults) with ``changes`` made, checked: a slip fails here by name, not in pandas."""
    if filter is not None and not isinstance(filter, ComponentFilter):
        raise TypeError(f"filter must be a ComponentFilter, got {type(filter).__name__}; or pass its fields as keywords, "
                        "e.g. components(min_purity=0.8, sort_by='label_purity')")
    fields = [f.name for f in dataclasses.fields(ComponentFilter)]
    unknown = [name for name in changes if name not in fields]
    if unknown:  # dataclasses.replace named ComponentFilter.__init__, not the call, nor what it takes
        close = difflib.get_close_matches(unknown[0], fields, n=1)
        raise TypeError(f"{unknown[0]!r} is not a filter of the component table"
                        + (f" (did you mean {close[0]!r}?)" if close else "") + f"; the filters are {', '.join(fields)}")
    filter = dataclasses.replace(filter or ComponentFilter(), **changes)
    if not isinstance(filter.search, str):
        raise TypeError(f"search must be a text, got {filter.search!r}")
    flag(filter.descending, "descending")
    return filter


@dataclass
class ComponentPage:
    """One page of the (filtered, sorted) component table."""

    rows: pd.DataFrame  # index: component
    page: int
    page_size: int
    n_matching: int
    n_components: int
    filter: ComponentFilter = field(default_factory=ComponentFilter)

    @property
    def n_pages(self) -> int:
        """How many pages the matching rows take (at least 1)."""
        return max(1, -(-self.n_matching // self.page_size))

    def caption(self) -> str:
        """The line above the rows: which of how many are shown, on which page."""
        if not self.n_matching:
            return (f"no component matches the filters ({self.n_components} in all): change them, or reset them "
                    "to list every component")
        first = self.page * self.page_size + 1
        last = min((self.page + 1) * self.page_size, self.n_matching)
        return (f"components {first}-{last} of {self.n_matching} matching ({self.n_components} in all), "
                f"page {self.page + 1} of {self.n_pages}, sorted by {self.filter.sort_by}")

    def __repr__(self) -> str:
        with pd.option_context("display.width", 120, "display.precision", 3):
            return f"{self.caption()}\n{self.rows.to_string()}"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": repr(self), "text/html": report.component_page_html(self)}


@dataclass
class HighlightedExample:
    """One top example of a component, with its tokens scored when the run has a model."""

    example: int  # row of the run's examples
    rank: int  # 0: the largest coefficient
    text: str
    label: object
    prediction: object
    coefficient: float  # W[example, component]
    tokens: list[str] | None = None
    scores: np.ndarray | None = None  # (n_tokens,) shares of the example's Fisher mass along the component
    head_share: float | None = None  # share through layers without a token axis (pooler, classifier)
    special: list[bool] | None = None  # tokens the tokenizer added ([CLS], [SEP], ...)
    spans: list[tuple[int, int]] | None = None  # each token's character span in ``text``
    # The scores as read (``workbench.analysis.token_shares``): normalised over the visible tokens,
    # and the shares that no word carries.
    visible: np.ndarray | None = None  # (n_tokens,) Σ |visible| = 1 over the visible tokens
    visible_share: float | None = None  # Σ score over the visible tokens (the words)
    special_share: float | None = None  # Σ score over the special tokens ([CLS], [SEP])
    read_out: list[bool] | None = None  # (n_tokens,) the word where the model reads its class (a decoder's last)
    words: list[int | None] | None = None  # (n_tokens,) each token's word (fast tokenizers): its pieces are one word

    def __repr__(self) -> str:  # the dataclass's own printed every array of scores, spans and words
        strongest = (f"; strongest word {self.strongest_token!r} ({report.percent(self.strongest_share, '+')} of the "
                     "words' share)" if self.strongest_token is not None else "")
        return (f"HighlightedExample(#{self.rank + 1}, example {self.example}, label {self.label}, prediction "
                f"{self.prediction}, coefficient {self.coefficient:.4g}{strongest}): "
                + report.read_text(self.text, self.spans, self.special))

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": repr(self), "text/html": report.fragment(report.example_html(self))}

    @property
    def strongest_positions(self) -> list[int]:
        """The token positions of the word with the largest |share| (its pieces' shares summed: all of "blick",
        not its piece '##lick'), or [] without scores or visible tokens; never a special token, also when every
        word's share is negative, nor a token of whitespace alone (SentencePiece's lone '▁': ALBERT's strongest
        "word" of every component was one)."""
        if self.visible is None:
            return []
        skip = np.zeros(len(self.visible), bool) if self.special is None else np.asarray(self.special, bool)
        if self.tokens is not None:
            skip = skip | (np.asarray(self.shown_tokens, dtype=object) == BLANK)
        return strongest_word(self.visible, skip, self.words)

    @property
    def strongest_is_read_out(self) -> bool:
        """Whether the strongest word is where the model reads its class (``analysis.read_out``): its share then holds
        that read-out of the whole text as well as its own part, as [CLS]'s does in an encoder."""
        return self.read_out is not None and any(self.read_out[p] for p in self.strongest_positions)

    @property
    def strongest_share(self) -> float | None:
        """The strongest word's share of the words' total |share| (the sum over its pieces)."""
        where = self.strongest_positions
        return float(np.sum(self.visible[where])) if where else None

    @property
    def shown_tokens(self) -> list[str] | None:
        """Each token as the text spells it (its span: no 'Ġ', '▁' or '##' of the tokenizer's), else as the
        tokenizer does (a slow tokenizer gives no spans)."""
        return None if self.tokens is None else spelled_tokens(self.text, self.tokens, self.spans)

    @property
    def word_shares(self) -> tuple[list[str], list[float]]:
        """Each word of the text (its pieces' shares summed, spelled as the text spells it) and its share: no special
        token, nor a token of whitespace alone, whose '␣' was a word of the page's table under byte-level BPE and
        SentencePiece, beside the pieces of its words ('Z' 'ü' 'ri' 'ch' for "Zürich")."""
        if self.visible is None or self.tokens is None:
            return [], []
        skip = np.zeros(len(self.visible), bool) if self.special is None else np.asarray(self.special, bool)
        skip = skip | (np.asarray(self.shown_tokens, dtype=object) == BLANK)
        words, shares = [], []
        for group in word_positions(self.words, len(self.visible)):
            group = [p for p in group if not skip[p]]
            if group:
                words.append(self._spelled(group))
                shares.append(float(np.sum(np.asarray(self.visible)[group])))
        return words, shares

    def _spelled(self, where: list[int]) -> str:
        """The tokens at ``where`` (one word's) as the text spells them."""
        if self.spans is not None and self.spans[where[-1]][1] > self.spans[where[0]][0]:
            return self.text[self.spans[where[0]][0]:self.spans[where[-1]][1]].strip()
        return "".join(self.shown_tokens[p] for p in where)

    @property
    def strongest_token(self) -> str | None:
        """The strongest word as the text spells it: the whole word (not the tokenizer's '##lick' of "blick",
        'Ġbad' or '▁bad')."""
        where = self.strongest_positions
        return self._spelled(where) if where else None

    def strongest_place(self, example_text: str | tuple[str, str]):
        """The strongest word where ``report.deletions_html`` finds its deletion, given the run's ``example_text``
        (a pair as its tuple): (word, side, start, stop), side a pair's "first" or "second" (None for one text) and
        the span in that text, where the card's spans are on "first ‖ second"; the word alone where the tokenizer
        gives no spans; None where no word is shaded."""
        where, spans = self.strongest_positions, self.spans
        if not where or spans is None:
            return self.strongest_token
        start, stop = min(spans[p][0] for p in where), max(spans[p][1] for p in where)
        side = None
        if isinstance(example_text, tuple):
            seam = len(example_text[0]) + len(PAIR_SEPARATOR)
            side, start, stop = (("first", start, stop) if stop <= len(example_text[0])
                                 else ("second", start - seam, stop - seam))
        return (self.strongest_token, side, start, stop)


@dataclass
class TopExamplesPage:
    """One page of a component's examples, largest coefficient first."""

    component: int
    examples: list[HighlightedExample]
    page: int
    page_size: int
    n_ranked: int  # examples with a positive coefficient for the component
    label_names: dict = field(default_factory=dict)
    note: str = ""  # why tokens are not highlighted, when they are not

    @property
    def n_pages(self) -> int:
        """How many pages the matching rows take (at least 1)."""
        return max(1, -(-self.n_ranked // self.page_size))

    def caption(self) -> str:
        """The line above the rows: which of how many are shown, on which page."""
        if self.n_ranked == 0:  # not "examples 0-0 of 0"
            return f"component {self.component}: no example has a positive coefficient on it"
        first = self.page * self.page_size + 1 if self.examples else 0
        last = self.page * self.page_size + len(self.examples)
        return (f"component {self.component}: examples {first}-{last} of {self.n_ranked} with a positive "
                f"coefficient (page {self.page + 1} of {self.n_pages})")

    def label_name(self, value) -> str:
        """A label as shown: its number, and its class name where the run has one."""
        name = self.label_names.get(str(value))
        return f"{value} ({name})" if name is not None else str(value)

    def top_tokens(self) -> pd.DataFrame:
        """The words that carry the component over the page's highlighted examples (``analysis.dashboard.token_table``)."""
        from ..analysis.dashboard import token_table

        return token_table(e.word_shares for e in self.examples if e.visible is not None)

    def to_frame(self) -> pd.DataFrame:
        """One row per example: rank, example, text, label, prediction, coefficient, the shares of its
        mass along the component in words (visible tokens), special tokens and the head, and its strongest word
        (whole) with its share of the words'."""
        return pd.DataFrame([
            {"rank": e.rank, "example": e.example, "text": e.text, "label": e.label, "prediction": e.prediction,
             "coefficient": e.coefficient, "visible_share": e.visible_share, "special_share": e.special_share,
             "head_share": e.head_share, "strongest_token": e.strongest_token, "strongest_share": e.strongest_share}
            for e in self.examples
        ])

    def __repr__(self) -> str:
        lines = [self.caption()]
        for e in self.examples:
            lines.append(f"  #{e.rank + 1} example {e.example} (label {self.label_name(e.label)}, prediction "
                         f"{self.label_name(e.prediction)}, coefficient {e.coefficient:.4g}): "
                         + report.read_text(e.text, e.spans, e.special))  # the whole text of one read 16 tokens of
            if e.strongest_token is not None:
                share = report.percent(e.strongest_share, "+")
                read_out = ", where the model reads its class: the share holds that read-out too" if e.strongest_is_read_out else ""
                lines.append(f"      strongest word: {e.strongest_token!r} ({share} of the words' share{read_out}); "
                             f"words {report.percent(e.visible_share)}, special tokens {report.percent(e.special_share)}, "
                             f"head {report.percent(e.head_share)} of the mass")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": repr(self), "text/html": report.examples_page_html(self)}


@dataclass
class ComponentDashboard:
    """One component at a glance (``RunExplorer.dashboard``): its table row, the distribution of its
    coefficients, the class its direction pushes toward, its top tokens, its nearest components,
    where it lives in the network and its perturbation sweep. Parts the run cannot give (no model)
    are None, and ``notes`` says why."""

    component: int
    row: pd.Series  # its row of the component table
    histogram: pd.DataFrame  # left, right, count over the positive coefficients
    n_zero: int  # examples with coefficient 0
    n_examples: int
    nearest: pd.DataFrame  # index component, column cos
    location: pd.DataFrame  # mass by layer (rows) and module kind (columns)
    logit_change: pd.DataFrame | None = None  # index class, columns "+", "-"
    top_tokens: pd.DataFrame | None = None  # index token: mean share, count, total
    examples: TopExamplesPage | None = None  # the top examples the tokens and the logit change were read on
    sweep: pd.DataFrame | None = None  # RunExplorer.sweep's frame
    epsilon: float = 0.1
    definitions: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def pushes_toward(self) -> str | None:
        """The class whose log-probability rises most at θ + εĝ (None without the check)."""
        if self.logit_change is None or self.logit_change.empty:
            return None
        return str(self.logit_change["+"].idxmax())

    @property
    def pulls_toward(self) -> str | None:
        """The class whose log-probability rises most at θ − εĝ. NPEFF fits g_j g_jᵀ, so the sign of g_j is
        arbitrary: the two directions together say which classes the component separates."""
        if self.logit_change is None or self.logit_change.empty:
            return None
        return str(self.logit_change["-"].idxmax())

    @property
    def direction_text(self) -> str | None:
        """The two directions' classes in words: "θ + εĝ pushes toward class 1, θ − εĝ toward 0" read as
        separating them; where both push toward one class it says so ("toward 1, θ − εĝ toward 1" read as a
        contradiction of "the classes the component separates")."""
        if self.pushes_toward is None:
            return None
        if self.pushes_toward == self.pulls_toward:
            return f"θ + εĝ pushes toward class {self.pushes_toward}, and so does θ − εĝ (moving either way favours it)"
        return f"θ + εĝ pushes toward class {self.pushes_toward}, θ − εĝ toward {self.pulls_toward}"

    @property
    def words_share(self) -> float | None:
        """The mean share of the top examples' mass that their words carry: the part top tokens' shares are of."""
        shares = [e.visible_share for e in (self.examples.examples if self.examples is not None else [])
                  if e.visible_share is not None]
        return float(np.mean(shares)) if shares else None

    def __repr__(self) -> str:
        lines = [f"Component {self.component}: {self.n_examples - self.n_zero} of {self.n_examples} examples "
                 f"with a positive coefficient; mass {self.row.get('mass', float('nan')):.3g}"]
        if self.direction_text is not None:
            lines.append(f"  {self.direction_text}")
        if self.top_tokens is not None and len(self.top_tokens):
            of = f" (shares of the words' part of the mass, {self.words_share:.0%})" if self.words_share is not None else ""
            lines.append(f"  top tokens{of}: " + ", ".join(f"{t} ({r['mean share']:.0%} × {int(r['count'])})"
                                                             for t, r in self.top_tokens.head(8).iterrows()))
        lines.append("  nearest components: " + ", ".join(f"{j} (|cos| {c:.2f})" for j, c in self.nearest["cos"].items()))
        kinds = self.location.sum(axis=0).sort_values(ascending=False)
        lines.append("  lives in: " + ", ".join(f"{k} {v:.0%}" for k, v in kinds.head(4).items()))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": repr(self), "text/html": report.fragment(report.dashboard_html(self))}


@dataclass
class Lookup:
    """The components one example loads on (``RunExplorer.lookup``): ``loadings`` has one row per component
    with a positive coefficient (coefficient, scaled, share), largest first."""

    text: str
    loadings: pd.DataFrame
    example: int | None = None  # the run's example, or None for a new text
    seconds: float | None = None  # the cost of a new text's PEF and transform
    label: object = None
    prediction: object = None
    is_pair: bool = False  # a new example that is a (first, second) pair of texts, shown joined
    spans: list | None = None  # a new text's tokens' characters in it, and which are special: where a cut stopped the model
    special: list | None = None

    def caption(self) -> str:
        """The line above the rows: which example (or new text) they are of, and a new one's cost."""
        source = f"example {self.example}" if self.example is not None else "a new pair of texts" if self.is_pair else "a new text"
        cost = f"; its PEF and coefficients took {self.seconds:.2f} s" if self.seconds is not None else ""
        return f"Components that {source} loads on, largest scaled coefficient first{cost}"

    def __repr__(self) -> str:
        with pd.option_context("display.width", 120, "display.precision", 3):
            return f"{self.caption()}\n  {report.read_text(self.text, self.spans, self.special)}\n{self.loadings.to_string()}"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": repr(self), "text/html": report.fragment(report.lookup_html(self))}

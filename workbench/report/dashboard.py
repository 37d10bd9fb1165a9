"""HTML of a component's dashboard, of a reverse lookup and of the definitions legend.

Renders the objects ``workbench.app.results`` holds (read by attribute, as everything in this
package): numbers and frames in, escaped HTML and plotly charts out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .charts import figure_html, histogram_figure, location_figure, logit_figure, sweep_figure
from .html import bar_columns, bound_text, escape, new_id, read_html, table_html, text_box_html


def definitions_html(definitions: dict, columns=None) -> str:
    """A legend: the definition of each of ``columns`` (all by default) that has one."""
    keys = [c for c in (definitions if columns is None else columns) if c in definitions]
    items = "".join(f"<dt><b>{escape(k)}</b></dt><dd>{escape(definitions[k])}</dd>" for k in keys)
    return f'<details class="definitions"><summary>What the columns mean</summary><dl>{items}</dl></details>'


def dashboard_numbers_html(dashboard) -> str:
    """The dashboard's headline numbers and its row of the component table (column tooltips: definitions)."""
    d = dashboard
    row = d.row.to_frame().T.rename_axis("component")
    # "load on it" counted coefficients down to 1e-43: 442 of a component's 566 were below 1% of its largest
    numbers = [f"{d.n_examples - d.n_zero} of {d.n_examples} examples have a positive coefficient"]
    if d.direction_text is not None:
        numbers.append(f"{escape(d.direction_text)} (the sign of g is arbitrary)")
    kinds = d.location.sum(axis=0).sort_values(ascending=False)
    numbers.append("lives in " + ", ".join(f"{escape(k)} {v:.0%}" for k, v in kinds.head(3).items()))
    if d.sweep is not None and len(d.sweep):
        numbers.append("KL ratio " + ", ".join(_ratio_at(row) for _, row in d.sweep.drop_duplicates("epsilon").iterrows()))
    return (f'<div class="dashboard"><div class="numbers">{" · ".join(numbers)}</div>'
            + table_html(row, bars=bar_columns(row), titles=d.definitions or {},
                         label=f"component {int(d.component)} in the component table") + "</div>")


def _ratio_at(row: pd.Series) -> str:
    """"4.2 (2.9 to 6.1) at ε = 0.1": a sweep's ratio with its 95% interval, where the frame has one."""
    low, high = row.get("kl_ratio_low", np.nan), row.get("kl_ratio_high", np.nan)
    spread = "" if pd.isna(low) else f" ({bound_text(low)} to {bound_text(high)})"
    return f"{row['kl_ratio']:.3g}{spread} at ε = {row['epsilon']:g}"


def dashboard_figures(dashboard) -> list:
    """The dashboard's charts: coefficient histogram, location, logit change and sweep (when computed)."""
    d = dashboard
    figures = [histogram_figure(d.histogram, d.n_zero), location_figure(d.location)]
    if d.logit_change is not None:
        figures.append(logit_figure(d.logit_change, d.epsilon))
    if d.sweep is not None and len(d.sweep):
        figures.append(sweep_figure(d.sweep))
    return figures


def dashboard_tables_html(dashboard) -> str:
    """The dashboard's top tokens and nearest components, and its notes."""
    d = dashboard
    titles = d.definitions or {}
    tables = []
    tokens, nearest = new_id("top-tokens"), new_id("nearest")
    if d.top_tokens is not None:
        of = (f" (shares of the words' part of the mass: {d.words_share:.0%} of it on average; special tokens and the "
              "head carry the rest)") if getattr(d, "words_share", None) is not None else ""
        tables.append(f'<div><b id="{tokens}">Top tokens</b> over its top examples{escape(of)}'
                      + table_html(d.top_tokens, titles=titles, bars=["mean share"], labelled_by=tokens) + "</div>")
    table = (table_html(d.nearest, titles=titles, bars=["cos"], labelled_by=nearest) if len(d.nearest)
             else '<div class="note">No other component: the run has one.</div>')  # not an empty table
    tables.append(f'<div><b id="{nearest}">Nearest components</b>{table}</div>')
    notes = "".join(f'<div class="note">{escape(n)}</div>' for n in d.notes)
    return f'<div class="dashboard"><div class="tables">{"".join(tables)}</div>{notes}</div>'


def dashboard_html(dashboard, *, include_plotlyjs: bool | str = False) -> str:
    """One component at a glance: its numbers and row, the charts, its top tokens and nearest components."""
    drawn = "".join(f"<div>{figure_html(f, include_plotlyjs if k == 0 else False)}</div>"
                    for k, f in enumerate(dashboard_figures(dashboard)))
    return (dashboard_numbers_html(dashboard) + f'<div class="charts">{drawn}</div>' + chart_numbers_html(dashboard)
            + dashboard_tables_html(dashboard))


def chart_numbers_html(dashboard) -> str:
    """The numbers of the charts that have no table of their own, folded: without JavaScript, or to a screen
    reader, the histogram, the location breakdown and the logit change were titles alone."""
    d = dashboard
    frames = [("Coefficient histogram", d.histogram), ("Mass by layer and module kind", d.location.round(4))]
    if d.logit_change is not None:
        frames.append(("Change of each class's log-probability", d.logit_change))
    ids = [new_id("chart-numbers") for _ in frames]
    tables = "".join(f'<div><b id="{i}">{escape(title)}</b>{table_html(frame, labelled_by=i)}</div>'
                     for i, (title, frame) in zip(ids, frames))
    return (f'<details class="chart-numbers"><summary>The charts\' numbers</summary>'
            f'<div class="dashboard"><div class="tables">{tables}</div></div></details>')


def lookup_html(lookup) -> str:
    """The components an example loads on, as a captioned table."""
    facts = [f"label {escape(lookup.label)}" if lookup.label is not None else "",
             f"prediction {escape(lookup.prediction)}" if lookup.prediction is not None else ""]
    facts = " · ".join(f for f in facts if f)
    caption = new_id("lookup")
    body = (table_html(lookup.loadings, bars=["share"], labelled_by=caption) if len(lookup.loadings)
            else '<div class="note">It loads on no component (every coefficient is 0).</div>')
    return (f'<div class="lookup"><div class="caption" id="{caption}">{escape(lookup.caption())}</div>'
            f'{text_box_html(lookup.text, read_html(lookup.text, lookup.spans, lookup.special))}'
            f'<div class="caption">{facts}</div>{body}</div>')

"""Charts and HTML sections for strategies over training, between two models and through the layers.

Renders the results of ``workbench.analysis.over_training`` and ``.model_diff`` (a ``.trace`` is
rendered by :mod:`.traces`; :func:`section_html` takes any of the three), read by their
attributes (nothing is imported from them): plotly figures that the panels
in ``widgets/`` show live, and HTML sections for notebooks and reports, every text escaped
(``html.escape``) and every chart beside a table of its numbers.
"""

from __future__ import annotations

import re

import pandas as pd

from ..core.arguments import user_path
from ..core.disk import naming_disk_errors
from ..core.staging import remove_dead_staging, staging_path
from .charts import LINES_LAYOUT, LOG_AXIS, figure_html, with_title
from .html import CONTAINER_CLASSES, escape, new_id, plotly_text, table_html
from .traces import trace_html

#: Statuses of a strategy or component between two models, and their colours.
STATUS_COLOURS = {"gained": "#2e7d32", "lost": "#c62828", "kept": "#607d8b", "changed": "#f9a825",
                  "not named": "#bdbdbd"}
VALUE_TITLES = {"mass": "coefficient mass (share)", "kl_ratio": "KL ratio top/baseline", "cos": "|cos| to the reference"}


def component_name(table: pd.DataFrame | None, j) -> str:
    """'component j' and, when the table has one, its label or majority strategy."""
    if table is not None and j in table.index:
        for column in ("name", "strategy"):
            if column in table.columns and pd.notna(table.loc[j, column]):
                return f"{j}: {table.loc[j, column]}"
    return str(j)


def over_training_figure(result=None, value: str = "mass", strategy: str = "transform", components=None):
    """One line per component of ``value`` against the training step (empty without a result)."""
    import plotly.graph_objects as go

    figure = go.Figure(layout=dict(**LINES_LAYOUT, xaxis=dict(title="training step"),
                                   yaxis=dict(LOG_AXIS if value == "kl_ratio" else {},
                                              title=VALUE_TITLES.get(value, value))))
    with_title(figure, f"{VALUE_TITLES.get(value, value)} over training ({strategy})")
    if result is None:
        return figure
    frame = result.pivot(value, strategy)
    for j in frame.columns if components is None else components:
        figure.add_scatter(x=list(frame.index), y=frame[j].tolist(), mode="lines+markers",
                           name=plotly_text(component_name(result.reference, j)),
                           hovertemplate="step %{x}: %{y:.3g}<extra>%{fullData.name}</extra>")
    return figure


def accuracy_over_training_figure(result=None, source: str = "analysed"):
    """Accuracy per strategy (group) against the training step."""
    import plotly.graph_objects as go

    figure = go.Figure(layout=dict(**LINES_LAYOUT, xaxis=dict(title="training step"),
                                   yaxis=dict(title="accuracy", range=[0, 1.02])))
    with_title(figure, f"accuracy per strategy ({source} examples)")
    if result is None:
        return figure
    frame = result.accuracy_table(source)
    for group in frame.columns:
        figure.add_scatter(x=list(frame.index), y=frame[group].tolist(), mode="lines+markers", name=plotly_text(group),
                           hovertemplate="step %{x}: %{y:.3f}<extra>%{fullData.name}</extra>")
    return figure


def over_training_html(result, *, include_plotlyjs: bool | str = False, strategy: str | None = None) -> str:
    """The over-training section: mass, KL ratio and accuracy charts, and their tables."""
    strategies = sorted(result.components["strategy"].unique())
    strategy = strategy or ("transform" if "transform" in strategies else strategies[0])
    values = result.values_of(strategy)
    charts = [figure_html(over_training_figure(result, v, strategy), include_plotlyjs if k == 0 else False)
              for k, v in enumerate(values)]
    charts.append(figure_html(accuracy_over_training_figure(result), False))
    parts = [f"<h3>Components over training</h3><div class=\"caption\">{len(result.steps)} checkpoints, steps "
             f"{result.steps[0]}-{result.steps[-1]}; {len(result.reference)} components of the reference fit, "
             f"followed by {escape(', '.join(strategies))}</div>",
             '<div class="charts">' + "".join(f"<div>{c}</div>" for c in charts) + "</div>",
             named_table("Reference components", result.reference)]
    for v in values:
        parts.append(named_table(f"{VALUE_TITLES.get(v, v)} by step ({strategy})", result.pivot(v, strategy)))
    if "match" in strategies:
        parts.append(named_table("Match quality of each checkpoint's own fit", result.match_quality()))
    parts.append(named_table("Accuracy per strategy by step", result.accuracy_table("analysed")))
    if (result.accuracy["source"] == "recorded").any():
        parts.append(named_table("Held-out accuracy the training recorded", result.accuracy_table("recorded")))
    return "".join(parts)


def model_diff_figure(diff=None):
    """Per component (pair), its coefficient mass on model A and on model B, coloured by status."""
    import plotly.graph_objects as go

    a, b = diff.names if diff is not None else ("A", "B")
    figure = go.Figure(layout=dict(**LINES_LAYOUT, barmode="group", yaxis=dict(title="coefficient mass (share)")))
    with_title(figure, f"components of {a} and {b}\nmass on each model")
    if diff is None:
        return figure
    rows = diff.components
    x = [plotly_text(_pair_name(r)) for r in rows.itertuples()]
    for model, key, pattern in ((a, "mass_a", ""), (b, "mass_b", "/")):
        figure.add_bar(name=plotly_text(f"mass on {model}"), x=x, y=rows[key].tolist(), marker_pattern_shape=pattern,
                       marker_color=[STATUS_COLOURS.get(s, "#999") for s in rows["status"]],
                       hovertemplate="%{x}: %{y:.3g}<extra>%{fullData.name}</extra>")
    return figure


def _pair_name(row) -> str:
    a = f"A{row.component_a}" if row.component_a >= 0 else ""
    b = f"B{row.component_b}" if row.component_b >= 0 else ""
    strategy = row.strategy_b if row.status == "gained" else row.strategy_a
    return f"{'/'.join(p for p in (a, b) if p)} {strategy} ({row.status})"


def model_diff_html(diff, *, include_plotlyjs: bool | str = False) -> str:
    """The model-diff section: strategies gained, lost and kept, the chart, and the component evidence."""
    a, b = diff.names
    strategies = diff.strategies.copy()
    strategies["status"] = [f"{s}" for s in strategies["status"]]
    quality = diff.quality
    caption = (f"{quality['n_matched']} components paired (mean |cos| {quality['mean_cos']:.3g}), "
               f"{quality['n_unmatched_a']} of {escape(a)} and {quality['n_unmatched_b']} of {escape(b)} without a partner")
    badges = " ".join(f'<span style="color:{STATUS_COLOURS.get(s, "#333")};font-weight:bold">{escape(v)}: '
                      f"{escape(s)}</span>" for v, s in zip(strategies.index, strategies["status"]))
    return (f"<h3>What changed from {escape(a)} to {escape(b)}</h3><div class=\"caption\">{caption}</div>"
            f"<div>{badges}</div>{named_table('Strategies', strategies)}"
            f"{figure_html(model_diff_figure(diff), include_plotlyjs)}"
            f"{named_table('Components and their evidence on both models', diff.components)}")


def named_table(heading: str, frame: pd.DataFrame) -> str:
    """``heading`` (h4) above ``frame``'s table, which it names for a screen reader."""
    ident = new_id("table")
    return f'<h4 id="{ident}">{escape(heading)}</h4>' + table_html(frame, labelled_by=ident)


def section_html(result, *, include_plotlyjs: bool | str = False) -> str:
    """The section of any of the three results (over training, model diff, trace)."""
    if hasattr(result, "heatmaps"):
        return trace_html(result, include_plotlyjs=include_plotlyjs)
    if hasattr(result, "strategies") and hasattr(result, "quality"):
        return model_diff_html(result, include_plotlyjs=include_plotlyjs)
    if hasattr(result, "steps") and hasattr(result, "pivot"):
        return over_training_html(result, include_plotlyjs=include_plotlyjs)
    raise TypeError(f"no report section for {type(result).__name__}; give an OverTraining, ModelDiff or "
                    "PerturbationTrace result")


def export_sections(results, out, *, title: str = "NPEFF strategies"):
    """One page ``out`` (a file path) holding the sections of ``results``, plotly.js inline once,
    readable offline from disk; written under a temporary name and renamed into place."""
    import os

    from .pages import REPORT_KEPT, html_page, plotlyjs_script

    out = user_path(out, "out")
    if out.is_file() and not _is_page(out):
        raise FileExistsError(f"{out} is not a page the workbench wrote, and export_sections would replace it; choose "
                              f"another file name, such as {out.with_stem(out.stem + '-sections')}, or move the file away")
    # the sections' h3 and h4, one level up under the page's h1: a heading level was skipped
    sections = "".join(section_html(r) for r in results)
    for level in (3, 4):
        sections = re.sub(rf"<(/?)h{level}([ >])", rf"<\1h{level - 1}\2", sections)  # a heading's id kept
    body = f"<h1>{escape(title)}</h1>" + sections
    out.parent.mkdir(parents=True, exist_ok=True)
    # named with this process's id: what a killed write leaves (a 5 MB page is mostly its write) is removed by
    # the next one, and export_html's check of the folder passes it over (a random name stayed for ever and
    # made the folder "not a report's")
    remove_dead_staging(out)
    staging = staging_path(out)
    try:
        with naming_disk_errors(out, REPORT_KEPT):
            staging.write_text(html_page(title, body, head=plotlyjs_script()), encoding="utf-8")
            os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    return out


def _is_page(path) -> bool:
    """``path`` is a page of :func:`~workbench.report.pages.html_page` (its body opens as only those pages do)."""
    try:
        return f'<body id="top"><div class="{CONTAINER_CLASSES}">' in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False

"""Charts and the HTML section of a perturbation trace (``workbench.analysis.trace``).

Read by its attributes (nothing is imported from the analysis): the plotly figures the trace
panel in ``widgets/`` shows live, and the section the strategy pages and the run report
(:func:`.pages.export_html`) show, every text escaped and the chart beside its numbers.
"""

from __future__ import annotations

from .charts import LINES_LAYOUT, SET_COLOURS, figure_html, short_ticks, with_title
from .html import escape, new_id, plotly_text, table_html


def trace_heatmap_figure(trace=None, k: int = 0):
    """Example k's layer × token heatmap of the relative change of the hidden states."""
    import plotly.graph_objects as go

    figure = with_title(go.Figure(layout=dict(height=300, margin=dict(l=90, r=10, b=60))),
                        "hidden-state change per layer and token")
    if trace is None:
        return figure
    heat = trace.heatmap(k)
    tokens = [plotly_text(c) for c in heat.columns]
    figure.add_heatmap(z=heat.to_numpy(), x=tokens, y=[plotly_text(i) for i in heat.index], colorscale="Oranges",
                       hovertemplate="%{y}, %{x}: %{z:.3g}<extra></extra>", colorbar=dict(title="‖Δh‖/‖h‖"))
    short_ticks(figure, tokens)
    with_title(figure, f"component {trace.component}, example {trace.examples[k]} ({trace.sets[k]}), ε = {trace.epsilon:g}")
    figure.update_layout(yaxis=dict(autorange="reversed"), xaxis=dict(tickangle=-45))
    return figure


def trace_profile_figure(trace=None):
    """The layer profile: mean relative change per layer, top vs baseline examples."""
    import plotly.graph_objects as go

    figure = go.Figure(layout=dict(**LINES_LAYOUT, xaxis=dict(title="layer"), yaxis=dict(title="mean ‖Δh‖/‖h‖")))
    with_title(figure, "layer profile: top vs baseline")
    if trace is None:
        return figure
    profile = trace.profile
    for name in ("top", "baseline"):
        figure.add_scatter(x=list(profile.index), y=profile[name].tolist(), mode="lines+markers",
                           name=f"{name} examples ({trace.sets.count(name)})", line=dict(color=SET_COLOURS[name]),
                           hovertemplate="%{x}: %{y:.3g}<extra>%{fullData.name}</extra>")
    return figure


def trace_html(trace, *, include_plotlyjs: bool | str = False, n_heatmaps: int = 3) -> str:
    """The trace section: the layer profile, heatmaps of the first top examples, the profile's numbers and,
    folded, the heatmaps' (without JavaScript, or to a screen reader, a heatmap was its title alone)."""
    tops = [k for k, s in enumerate(trace.sets) if s == "top"][:n_heatmaps]
    charts = [figure_html(trace_profile_figure(trace), include_plotlyjs)]
    charts += [figure_html(trace_heatmap_figure(trace, k), False) for k in tops]
    # a token per row: a long example's tokens as columns made a table hundreds of columns wide
    # each table named by its heading and the section's: "Example 12" alone repeats on a page of traces
    section, profile, ids = new_id("trace"), new_id("profile"), {k: new_id("heatmap") for k in tops}
    heatmaps = "".join(f'<div><b id="{ids[k]}">Example {escape(trace.examples[k])}</b>'
                       + table_html(trace.heatmap(k).T.round(4).rename_axis("token"), labelled_by=f"{section} {ids[k]}")
                       + "</div>" for k in tops)
    numbers = (f'<details class="chart-numbers"><summary>The heatmaps\' numbers</summary>'
               f'<div class="dashboard"><div class="tables">{heatmaps}</div></div></details>' if tops else "")
    return (f'<h3 id="{section}">Perturbation trace of component {int(trace.component)}</h3>'
            f"<div class=\"caption\">ε = {trace.epsilon:g}; relative change of each layer's hidden state per token, "
            f"mean over θ ± εĝ; {trace.sets.count('top')} top and {trace.sets.count('baseline')} baseline examples</div>"
            '<div class="charts">' + "".join(f"<div>{c}</div>" for c in charts) + "</div>"
            + f'<div class="caption" id="{profile}">Layer profile: mean change per layer</div>'
            + table_html(trace.profile, labelled_by=f"{section} {profile}") + numbers)

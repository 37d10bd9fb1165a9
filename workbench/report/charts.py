"""Perturbation charts as plotly figures, and figures as HTML fragments.

Fragments for notebooks leave plotly.js out (a notebook would otherwise carry 4.8 MB per
chart) and draw with whatever plotly.js the page has loaded; where there is none the
placeholder says so, and the numbers are in the table beside it.
"""

from __future__ import annotations

import html
import json
import math
import textwrap
import uuid
from collections.abc import Sequence

import pandas as pd

from .html import escape, new_id, plotly_text, table_html


SIGN_NAMES = {"+": "θ + εĝ", "-": "θ − εĝ"}
SET_COLOURS = {"top": "#e8710a", "baseline": "#7f7f7f"}
#: The layout of the strategy and trace charts (lines over steps or layers, legend below).
LINES_LAYOUT = dict(height=340, margin=dict(l=60, r=10, b=40), legend=dict(orientation="h", y=-0.2))
#: The characters of a title line that the narrowest chart box (280 px) shows whole at 13 px: plotly
#: never wraps a title, and longer ones ran past the chart's right edge on a phone.
TITLE_LINE = 44
#: Pixels at the top of a chart that plotly's modebar (its buttons, shown on hover) takes.
MODEBAR = 38
#: A log axis labelled in powers of ten: plotly's default SI prefixes wrote a KL of 1e-10 as "100p".
LOG_AXIS = dict(type="log", exponentformat="power")


def log_ticks(low: float, high: float) -> dict:
    """Ticks at 1, 2 and 5 of each power of ten around [low, high], each labelled with its whole value:
    plotly's own (dtick "D2") labelled 0.5 as "5", drawn below the "1" of 1, on a chart of KLs of 0.48-0.99."""
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
             for m in (1, 2, 5) if low / 2.5 <= m * 10.0 ** e <= high * 2.5]
    return dict(tickvals=ticks, ticktext=[_tick_text(t) for t in ticks])


def _tick_text(value: float) -> str:
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    power = "10" + str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return power if mantissa == "1" else f"{mantissa}×{power}"


def with_title(figure, text: str):
    """``figure`` titled ``text`` (escaped for plotly): its own lines (``\\n``: a headline, then the
    detail), each wrapped into lines a narrow chart shows whole, never inside ``a = b``; below the
    modebar (which covered a narrow chart's first title line on hover), with the top margin they need."""
    parts = str(text).replace(" = ", "\u00a0=\u00a0").split("\n")
    lines = [line for part in parts for line in textwrap.wrap(part, TITLE_LINE)] or [""]
    height = figure.layout.height or 450  # plotly's default
    return figure.update_layout(title=dict(text="<br>".join(plotly_text(line) for line in lines), font=dict(size=13),
                                           yref="container", y=1 - MODEBAR / height, yanchor="top"),
                                margin_t=MODEBAR + 18 * len(lines) + 10)


#: The characters of a tick label: a 200-character token squeezed a heatmap into a strip at the chart's edge,
#: and ten long class names pushed the bars out of their chart. The whole label is in the hover.
TICK_LABEL = 20


def short_ticks(figure, labels: Sequence[str], axis: str = "x"):
    """``figure`` with its ``axis`` ticks at ``labels`` (escaped already) shown cut to :data:`TICK_LABEL`
    characters; the labels themselves, which hovers show, stay whole."""
    def cut(label: str) -> str:
        text = html.unescape(label)
        return label if len(text) <= TICK_LABEL else plotly_text(text[: TICK_LABEL - 1] + "…")

    return figure.update_layout({f"{axis}axis": dict(tickmode="array", tickvals=list(labels),
                                                     ticktext=[cut(label) for label in labels])})


def kl_figure(result=None, signs: Sequence[str] = ("+", "-")):
    """Bars of the mean KL(p_θ ‖ p_θ') on the top and the baseline examples, per sign (log scale).

    Without a result the figure has the same two traces, empty, for a widget to fill.
    """
    import plotly.graph_objects as go

    x = [SIGN_NAMES[s] for s in signs]
    figure = go.Figure(layout=dict(
        barmode="group", height=320, margin=dict(l=60, r=10, b=40), yaxis=dict(LOG_AXIS, title="mean KL"),
        legend=dict(orientation="h", y=-0.15),
    ))
    with_title(figure, "KL on top vs baseline examples")
    for name in ("top", "baseline"):
        values = [] if result is None else [getattr(result, f"kl_{name}")[s] for s in signs]
        count = "" if result is None else f" ({getattr(result, f'n_{name}')})"
        figure.add_bar(name=f"{name} examples{_same_classes(result, name)}{count}", x=x if result is not None else [], y=values,
                       marker_color=SET_COLOURS[name], hovertemplate="%{x}: %{y:.3g}<extra>%{fullData.name}</extra>")
    if result is not None:
        shown = [v for bar in figure.data for v in bar.y if v > 0]
        if shown and max(shown) / min(shown) < 100:  # within two decades: 1, 2 and 5 of each, not every digit
            figure.update_yaxes(**log_ticks(min(shown), max(shown)))
        ratio = result.ratio(signs) if hasattr(result, "ratio") else result.kl_ratio
        interval = result.interval_text(signs, "95% interval") if hasattr(result, "interval_text") else ""
        interval = f"\n{interval.strip(' ()')}" if interval else ""  # a line of its own: never cut inside
        with_title(figure, f"Component {result.component}, ε = {result.epsilon:g}\nKL ratio top/baseline {ratio:.3g}{interval}")
    return figure


def accuracy_figure(result=None, signs: Sequence[str] = ("+", "-")):
    """Bars of the accuracy on the top and baseline examples: original and perturbed."""
    import plotly.graph_objects as go

    keys = ["original", *signs]
    x = ["original"] + [SIGN_NAMES[s] for s in signs]
    figure = go.Figure(layout=dict(
        barmode="group", height=320, margin=dict(l=60, r=10, b=40), yaxis=dict(range=[0, 1.02], title="accuracy"),
        legend=dict(orientation="h", y=-0.15),
    ))
    with_title(figure, "Accuracy")
    for name in ("top", "baseline"):
        values = [] if result is None else [getattr(result, f"accuracy_{name}")[k] for k in keys]
        figure.add_bar(name=f"{name} examples{_same_classes(result, name)}", x=x if result is not None else [], y=values,
                       marker_color=SET_COLOURS[name], hovertemplate="%{x}: %{y:.3f}<extra>%{fullData.name}</extra>")
    return figure


def _same_classes(result, name: str) -> str:
    """", same classes" after the baseline's name in a legend, where the check drew it so."""
    return ", same classes" if name == "baseline" and getattr(result, "baseline_draw", "") == "same classes" else ""


def sweep_figure(frame: pd.DataFrame):
    """Mean KL against ε (log-log) from ``epsilon_sweep``'s long frame: one line per (set, sign), with the
    mean's 95% interval as error bars."""
    import plotly.graph_objects as go

    figure = go.Figure(layout=dict(
        height=320, margin=dict(l=60, r=10, b=40), xaxis=dict(LOG_AXIS, title="ε"),
        yaxis=dict(LOG_AXIS, title="mean KL"), legend=dict(orientation="h", y=-0.2),
    ))
    with_title(figure, "KL against ε")
    same = "baseline_draw" in frame and (frame["baseline_draw"] == "same classes").any()
    for (subset, sign), rows in frame.groupby(["set", "sign"], sort=False):
        of = " (same classes)" if same and subset == "baseline" else ""
        figure.add_scatter(x=rows["epsilon"], y=rows["kl"], mode="lines+markers", name=f"{subset}{of}, {SIGN_NAMES[sign]}",
                           line=dict(color=SET_COLOURS[subset], dash="solid" if sign == "+" else "dot"),
                           error_y=_spread(rows))
    return figure


def _spread(rows: pd.DataFrame) -> dict | None:
    """Error bars of the mean KL's 95% interval (``kl_low``, ``kl_high``), where the frame has them."""
    if not {"kl_low", "kl_high"} <= set(rows) or rows["kl_low"].isna().all():
        return None
    return dict(type="data", symmetric=False, array=(rows["kl_high"] - rows["kl"]).clip(lower=0).fillna(0).tolist(),
                arrayminus=(rows["kl"] - rows["kl_low"]).clip(lower=0).fillna(0).tolist(), thickness=1, width=3)


#: Keeps a drawn chart as wide as its box. plotly's ``responsive`` follows only the window's size, and a
#: chart drawn while the page loads is sized to a box that shrinks once its neighbours arrive in the same
#: flex row: at a 1280 px window it stayed 1264 px wide in a 413 px column. A hidden box (width 0) is
#: left alone, as plotly refuses to resize a plot that is not displayed.
#: Printing lays the page out at the paper's width with no script running, so a chart is narrowed to
#: what an A4 or Letter page holds before, and fitted to its box again after.
#: The modebar's ten buttons per chart leave the keyboard's tab order: a report of 80 charts had 800
#: stops among its 65 controls (the mouse still reaches them). To a screen reader the chart is its label
#: (role="img"): what plotly drew is hidden from it, which read each tick label and the ten buttons of each chart.
#: Where the page is dark the chart takes its dark colours (its box's CSS variables), and follows a change of
#: scheme; plotly's template is white, and each chart was a white box on the dark page. Which scheme is the
#: style sheet's (``css.py``: JupyterLab's theme inside JupyterLab, elsewhere the system's), read from the
#: box's color-scheme. On paper it is light again, as the page is.
FIT_SCRIPT = ("if (window.ResizeObserver) new ResizeObserver(function () {"
              " if (div.offsetWidth) Plotly.Plots.resize(div); }).observe(div);"
              " var dark = window.matchMedia ? window.matchMedia('screen and (prefers-color-scheme: dark)') : {matches: false};"
              " var box = div.closest('.npeff') || div, shown = false;"
              " function darkNow() { return getComputedStyle(box).colorScheme === 'dark'; }"
              " function paint(isDark, update) {"
              "  update = update || {};"
              "  if (isDark !== shown) {"
              "   var css = getComputedStyle(box);"
              "   var v = function (name) { return isDark ? css.getPropertyValue(name).trim() || null : null; };"
              "   update.paper_bgcolor = v('--bg'); update.plot_bgcolor = v('--head'); update['font.color'] = v('--fg');"
              "   Object.keys(div._fullLayout || {}).filter(function (k) { return /^[xy]axis[0-9]*$/.test(k); })"
              "    .forEach(function (k) { update[k + '.gridcolor'] = v('--box');"
              "     update[k + '.zerolinecolor'] = update[k + '.linecolor'] = v('--rule'); });"
              "   shown = isDark;"
              "   var bars = div.data.map(function (t, i) { return t.type === 'bar' ? i : -1; }).filter(function (i) { return i >= 0; });"
              "   if (bars.length) return Plotly.update(div, {'marker.line.color': v('--bg')}, update, bars);"  # the template's light outlines
              "  }"
              "  return Object.keys(update).length ? Plotly.relayout(div, update) : Promise.resolve();"
              " }"
              " paint(darkNow());"
              " if (dark.addEventListener) dark.addEventListener('change', function () { paint(darkNow()); });"
              " window.addEventListener('beforeprint', function () {"
              " paint(false, div.offsetWidth > PRINT_WIDTH ? {width: PRINT_WIDTH} : {}); });"
              " window.addEventListener('afterprint', function () { var wide = Boolean(div.layout.width);"
              " paint(darkNow(), wide ? {width: null} : {}).then(function () { if (wide) Plotly.Plots.resize(div); }); });"
              " function untab() { div.querySelectorAll('.modebar-btn').forEach(function (b) { b.tabIndex = -1; });"
              " var drawn = div.querySelector('.plot-container'); if (drawn) drawn.setAttribute('aria-hidden', 'true'); }"
              " untab(); div.on('plotly_afterplot', untab);").replace("PRINT_WIDTH", "680")

NO_SCRIPT = '<noscript><div class="caption">(chart not drawn: JavaScript is off in this browser)</div></noscript>'


def chart_label(figure: dict) -> str:
    """What a screen reader says for the chart: its title (the chart is an image to it)."""
    title = figure.get("layout", {}).get("title") or {}
    text = title.get("text") if isinstance(title, dict) else title
    return escape(html.unescape(str(text).replace("<br>", " "))) if text else "chart"


def figure_html(figure, include_plotlyjs: bool | str = False) -> str:
    """A plotly figure as an HTML fragment (class ``npeff-plot``) that fits the width of its box.

    With ``include_plotlyjs`` this is plotly's own ``to_html``. Without, the figure is drawn
    by whatever plotly.js the page has loaded, and where there is none (a notebook opened
    elsewhere) the placeholder says so instead of failing with a script error.
    """
    import plotly.io as pio

    config = {"displaylogo": False, "responsive": True}
    figure = figure.to_dict()  # a copy: the caller's figure keeps its layout
    figure["layout"].pop("width", None)  # the box sets the width
    figure["layout"]["autosize"] = True
    label = f'role="img" aria-label="{chart_label(figure)}"'
    if include_plotlyjs:
        fit = "var div = document.getElementById('{plot_id}'); " + FIT_SCRIPT
        inner = pio.to_html(figure, full_html=False, include_plotlyjs=include_plotlyjs, default_width="100%",
                            config=config, post_script=fit, validate=False)
        return f'<div class="npeff-plot" {label}>{inner}{NO_SCRIPT}</div>'
    div = f"npeff-plot-{uuid.uuid4().hex}"
    spec = pio.to_json(figure, validate=False).replace("</", "<\\/")  # no "</script>" can end the script early
    return (f'<div id="{div}" class="npeff-plot" {label}>{NO_SCRIPT}</div><script type="text/javascript">(function () {{'
            f' var spec = {spec}; var div = document.getElementById("{div}"); if (!div) return;'
            f" if (window.Plotly) {{ Plotly.newPlot(div, spec.data, spec.layout, {json.dumps(config)}).then(function () {{ {FIT_SCRIPT} }}); }}"
            f' else {{ div.textContent = "(chart not drawn: this page has no plotly.js; the numbers are in the table)"; }}'
            f" }})();</script>")


def perturbation_html(result, *, include_plotlyjs: bool | str = False, signs: Sequence[str] = ("+", "-")) -> str:
    """A perturbation result: the verdict, the KL and accuracy charts, and the numbers."""
    frame = result.to_frame()
    frame = frame[frame["sign"].isin(signs)]
    against = " against examples of the top set's classes" if getattr(result, "baseline_draw", "") == "same classes" else ""
    heading = new_id("perturbation")
    summary = (f'<h3 id="{heading}">Perturbation of component {int(result.component)}{against}</h3>'
               f'<div class="caption">ε = {result.epsilon:g}'
               + (f", semi-orthogonal (max_sim = {result.max_sim:g})" if result.max_sim is not None else "")
               + f": KL ratio top/baseline = <b>{_shown_ratio(result, signs):.3g}</b>"
               + (escape(result.interval_text(signs)) if hasattr(result, "interval_text") else "")
               + f" ({_sign_note(result, signs)}), "
               f"{result.n_top} top and {result.n_baseline} baseline examples{escape(getattr(result, 'baseline_words', ''))}</div>")
    # Results of workbench.analysis.perturb say in words what the number means (and, when a
    # notebook chose the component for showing, why this one).
    for text in (getattr(result, "note", ""), getattr(result, "explanation", "")):
        summary += f'<p class="caption">{escape(text[:1].upper() + text[1:])}</p>' if text else ""
    charts = (f'<div class="charts"><div>{figure_html(kl_figure(result, signs), include_plotlyjs)}</div>'
              f"<div>{figure_html(accuracy_figure(result, signs), False)}</div></div>")
    return summary + charts + table_html(frame.set_index("set"), labelled_by=heading)


def histogram_figure(histogram: pd.DataFrame, n_zero: int = 0, component=None):
    """Bars of the coefficient histogram (left, right, count) over the positive coefficients."""
    import plotly.graph_objects as go

    title = "Coefficients over all examples" + (f"\n({n_zero} at 0, not shown)" if n_zero else "")
    figure = go.Figure(layout=dict(
        height=260, margin=dict(l=50, r=10, b=40), bargap=0.05,
        xaxis=dict(title="coefficient W[:, j]"), yaxis=dict(title="examples"),
    ))
    with_title(figure, title)
    centres = (histogram["left"] + histogram["right"]) / 2 if len(histogram) else []
    widths = (histogram["right"] - histogram["left"]) if len(histogram) else []
    figure.add_bar(x=list(centres), y=list(histogram["count"]) if len(histogram) else [], width=list(widths),
                   marker_color="#7aa6d8", hovertemplate="%{x:.3g}: %{y} examples<extra></extra>")
    return figure


def logit_figure(frame: pd.DataFrame, epsilon: float = 0.1):
    """Bars of the mean change of each class's log-probability on the top examples at θ ± εĝ."""
    import plotly.graph_objects as go

    figure = go.Figure(layout=dict(
        barmode="group", height=260, margin=dict(l=60, r=10, b=40),
        yaxis=dict(title="mean Δ log p"), legend=dict(orientation="h", y=-0.2),
    ))
    with_title(figure, f"Log-probability change on the top set\nε = {epsilon:g}")
    classes = [plotly_text(c) for c in frame.index]
    for sign, colour in (("+", "#e8710a"), ("-", "#4c78a8")):
        if sign in frame:
            figure.add_bar(name=SIGN_NAMES[sign], x=classes, y=list(frame[sign]),
                           marker_color=colour, hovertemplate="class %{x}: %{y:+.3g}<extra>%{fullData.name}</extra>")
    return short_ticks(figure, classes)


#: One colour per module kind (``analysis.location.MODULE_KINDS``), fixed so that charts compare.
KIND_COLOURS = {"embeddings": "#8c564b", "attention q": "#1f77b4", "attention k": "#aec7e8", "attention v": "#17becf",
                "attention qkv": "#1f77b4", "attention o": "#9edae5", "MLP in": "#2ca02c", "MLP out": "#98df8a",
                "router": "#ff7f0e", "state space": "#e377c2", "LayerNorm": "#bcbd22", "pooler": "#9467bd", "classifier": "#d62728",
                "other": "#7f7f7f"}


def location_figure(location: pd.DataFrame):
    """Stacked bars of a component's mass by layer (x, network order) and module kind (colour)."""
    import plotly.graph_objects as go

    # The legend beside it needs a line per kind (a mixture of experts' ten scrolled in 280 px), and the layer
    # names below, turned when they crowd, take height of their own (MiniLM's hid "embeddings" at 1280 px).
    longest = max((len(str(i)) for i in location.index), default=0)
    figure = go.Figure(layout=dict(
        barmode="stack", height=max(280, 110 + 20 * len(location.columns) + 5 * longest), margin=dict(l=50, r=10, b=40),
        yaxis=dict(title="share of ‖g‖²", tickformat=".0%"), xaxis=dict(tickangle=-45 if len(location.index) > 4 else 0),
        legend=dict(font=dict(size=10)),
    ))
    with_title(figure, "Where the component lives\nshare of ‖g‖² by layer and module kind")
    for kind in location.columns:
        figure.add_bar(name=plotly_text(kind), x=[plotly_text(i) for i in location.index], y=list(location[kind]),
                       marker_color=KIND_COLOURS.get(str(kind), "#7f7f7f"),
                       hovertemplate="%{x}, " + plotly_text(kind) + ": %{y:.1%}<extra></extra>")
    return figure


def _shown_ratio(result, signs: Sequence[str]) -> float:
    return result.ratio(signs) if hasattr(result, "ratio") else result.kl_ratio


def _sign_note(result, signs: Sequence[str]) -> str:
    if len(signs) == 1:
        return f"{escape(SIGN_NAMES[signs[0]])} only"
    return f"larger sign: {escape(result.sign)}"

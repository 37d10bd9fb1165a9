"""Static HTML for everything the workbench shows: tables, highlighted examples, charts, run records.

The same functions serve three places: the ``text/html`` part of every result object a
notebook displays (so a notebook opened without a widget manager, in VS Code, on GitHub or
through nbconvert, still shows the content), the static snapshots beside the live widgets,
and :func:`export_html`, a report folder readable offline from disk.

Every piece of text from the data (example texts, labels, column names, parameters) goes
through :func:`html.escape` here, in one place, so an example reading ``<script>...`` is
shown as text and runs nothing.

Charts are plotly figures. Fragments for notebooks leave plotly.js out (a notebook would
otherwise carry 4.8 MB per chart); the pages this module writes embed it once, inline, so
they work from disk with no network. A report split into one page per component shares
one ``plotly.min.js`` file beside the pages instead of inlining it into thousands of them.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Above this many components a report is an index page plus one page per component.
MAX_SINGLE_PAGE_COMPONENTS = 300
PLOTLY_FILE = "plotly.min.js"

CSS = """
.npeff { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; font-size: 13px; color: #222; }
.npeff h2 { font-size: 18px; margin: 14px 0 6px; } .npeff h3 { font-size: 15px; margin: 12px 0 4px; }
.npeff .caption { color: #555; margin: 4px 0; }
.npeff table.npeff-table { border-collapse: collapse; margin: 4px 0 10px; }
.npeff table.npeff-table th { text-align: left; border-bottom: 2px solid #999; padding: 2px 8px; background: #f4f4f4; }
.npeff table.npeff-table td { border-bottom: 1px solid #e2e2e2; padding: 2px 8px; text-align: right; white-space: nowrap; }
.npeff table.npeff-table td.text { text-align: left; }
.npeff .bar { display: inline-block; height: 8px; background: #7aa6d8; margin-left: 4px; vertical-align: middle; }
.npeff .example { border: 1px solid #ddd; border-radius: 4px; padding: 6px 8px; margin: 6px 0; max-width: 900px; }
.npeff .example .meta { color: #555; font-size: 12px; margin-bottom: 4px; }
.npeff .example .meta .wrong { color: #b00020; font-weight: bold; }
.npeff .tokens { font-family: Menlo, Consolas, monospace; font-size: 13px; line-height: 1.9; white-space: pre-wrap; }
.npeff .tok { border-radius: 3px; padding: 1px 1px; }
.npeff .note { color: #8a5a00; background: #fff7e0; padding: 4px 8px; border-radius: 4px; }
.npeff .error { color: #b00020; background: #fdecee; padding: 6px 8px; border-radius: 4px; white-space: pre-wrap; }
.npeff .this-run { background: #f7f9fc; border: 1px solid #dde3ec; border-radius: 4px; padding: 4px 10px; }
.npeff .this-run .run-line { margin: 3px 0; } .npeff .this-run details { margin: 3px 0; color: #333; }
.npeff .charts { display: flex; flex-wrap: wrap; gap: 12px; }
.npeff .charts > div { flex: 1 1 380px; min-width: 320px; }
.npeff nav a { margin-right: 12px; }
"""


def escape(value) -> str:
    """Text for HTML, quotes included, so it is safe in element content and in attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def style() -> str:
    return f"<style>{CSS}</style>"


def fragment(body: str) -> str:
    """A self-styled block for a notebook output."""
    return f'{style()}<div class="npeff">{body}</div>'


def format_value(value) -> str:
    """A table cell: floats to 3 significant digits, missing values empty, everything escaped."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return escape(f"{value:.3g}")
    if isinstance(value, np.generic):
        value = value.item()
    return escape(value)


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def table_html(frame: pd.DataFrame, *, index_links: dict | None = None, bars: Sequence[str] = ()) -> str:
    """A DataFrame as an HTML table, every header and cell escaped.

    index_links: {index value: href} turns index cells into links.
    bars: columns in [0, 1] drawn with a small bar beside the number.
    """
    index_name = frame.index.name or ""
    head = "".join(f"<th>{escape(c)}</th>" for c in [index_name, *frame.columns])
    rows = []
    for key, row in zip(frame.index, frame.itertuples(index=False)):
        cell = format_value(key)
        if index_links and key in index_links:
            cell = f'<a href="{escape(index_links[key])}">{cell}</a>'
        cells = [f"<td>{cell}</td>"]
        for column, value in zip(frame.columns, row):
            text = format_value(value)
            if column in bars and isinstance(value, (float, np.floating)) and np.isfinite(value):
                text += f'<span class="bar" style="width:{40 * min(max(float(value), 0.0), 1.0):.0f}px"></span>'
            kind = "text" if isinstance(value, str) else ""
            cells.append(f'<td class="{kind}">{text}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="npeff-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def bar_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.endswith("_purity") or c in ("accuracy", "mass")]


def component_page_html(page, *, links: dict | None = None) -> str:
    """A :class:`~workbench.explore.ComponentPage` as a captioned table."""
    return fragment(f'<div class="caption">{escape(page.caption())}</div>'
                    + table_html(page.rows, index_links=links, bars=bar_columns(page.rows)))


# ---------------------------------------------------------------------------------------
# Highlighted examples
# ---------------------------------------------------------------------------------------


def token_colour(score: float, scale: float) -> str:
    """Orange for tokens that carry the component's Fisher mass, blue for ones that cancel it."""
    alpha = 0.0 if scale <= 0 else min(abs(score) / scale, 1.0) * 0.8
    rgb = "255,140,0" if score >= 0 else "40,120,255"
    return f"rgba({rgb},{alpha:.2f})"


def highlighted_text_html(text: str, tokens: Sequence[str] | None, scores, spans=None, special=None) -> str:
    """The example with each token's span shaded by its score.

    With ``spans`` (character offsets of each token in ``text``, from a fast tokenizer) the
    original text is shown, so nothing is lost to unknown tokens; otherwise the tokens.
    Scores are scaled per example by the largest |score|; the exact share is in each token's
    tooltip.
    """
    if tokens is None or scores is None:
        return f'<div class="tokens">{escape(text)}</div>'
    scores = np.asarray(scores, dtype=np.float64)
    special = special or [False] * len(tokens)
    scale = float(np.max(np.abs(scores))) if len(scores) else 0.0

    def span(piece: str, score: float, token: str) -> str:
        title = escape(f"{token}: {score:+.1%} of the example's mass along the component")
        return f'<span class="tok" style="background:{token_colour(score, scale)}" title="{title}">{escape(piece)}</span>'

    if spans is not None:
        pieces, cursor = [], 0
        for (start, stop), score, token, is_special in zip(spans, scores, tokens, special):
            if is_special or stop <= start:
                continue
            if start > cursor:
                pieces.append(escape(text[cursor:start]))
            pieces.append(span(text[start:stop], score, token))
            cursor = max(cursor, stop)
        pieces.append(escape(text[cursor:]))
        return f'<div class="tokens">{"".join(pieces)}</div>'
    shown = [span(token, score, token) for token, score, is_special in zip(tokens, scores, special) if not is_special]
    return f'<div class="tokens">{" ".join(shown)}</div>'


def example_html(example, label_name=str) -> str:
    wrong = example.label is not None and example.prediction is not None and example.label != example.prediction
    prediction = escape(label_name(example.prediction))
    meta = [
        f"#{example.rank + 1}", f"example {example.example}", f"label {escape(label_name(example.label))}",
        f'prediction <span class="wrong">{prediction}</span>' if wrong else f"prediction {prediction}",
        f"coefficient {example.coefficient:.4g}",
    ]
    if example.head_share is not None:
        meta.append(f"head share {example.head_share:.0%}")
    body = highlighted_text_html(example.text, example.tokens, example.scores,
                                 getattr(example, "spans", None), example.special)
    return f'<div class="example"><div class="meta">{" · ".join(meta)}</div>{body}</div>'


def examples_page_html(page) -> str:
    """A :class:`~workbench.explore.TopExamplesPage`: caption, then one card per example."""
    parts = [f'<div class="caption">{escape(page.caption())}</div>']
    parts += [example_html(e, page.label_name) for e in page.examples]
    if page.note:
        parts.append(f'<div class="note">{escape(page.note)}</div>')
    return fragment("".join(parts))


# ---------------------------------------------------------------------------------------
# Perturbation charts
# ---------------------------------------------------------------------------------------

SIGN_NAMES = {"+": "θ + εĝ", "-": "θ − εĝ"}
SET_COLOURS = {"top": "#e8710a", "baseline": "#7f7f7f"}


def kl_figure(result=None, signs: Sequence[str] = ("+", "-")):
    """Bars of the mean KL(p_θ ‖ p_θ') on the top and the baseline examples, per sign (log scale).

    Without a result the figure has the same two traces, empty, for a widget to fill.
    """
    import plotly.graph_objects as go

    x = [SIGN_NAMES[s] for s in signs]
    figure = go.Figure(layout=dict(
        barmode="group", height=320, margin=dict(l=60, r=10, t=50, b=40), yaxis=dict(type="log", title="mean KL"),
        title=dict(text="KL on top vs baseline examples", font=dict(size=14)), legend=dict(orientation="h", y=-0.15),
    ))
    for name in ("top", "baseline"):
        values = [] if result is None else [getattr(result, f"kl_{name}")[s] for s in signs]
        count = "" if result is None else f" ({getattr(result, f'n_{name}')})"
        figure.add_bar(name=f"{name} examples{count}", x=x if result is not None else [], y=values,
                       marker_color=SET_COLOURS[name], hovertemplate="%{x}: %{y:.3g}<extra>%{fullData.name}</extra>")
    if result is not None:
        figure.update_layout(title_text=f"Component {result.component}, ε = {result.epsilon:g}: "
                                        f"KL ratio top/baseline {result.kl_ratio:.3g}")
    return figure


def accuracy_figure(result=None, signs: Sequence[str] = ("+", "-")):
    """Bars of the accuracy on the top and baseline examples: original and perturbed."""
    import plotly.graph_objects as go

    keys = ["original", *signs]
    x = ["original"] + [SIGN_NAMES[s] for s in signs]
    figure = go.Figure(layout=dict(
        barmode="group", height=320, margin=dict(l=60, r=10, t=50, b=40), yaxis=dict(range=[0, 1.02], title="accuracy"),
        title=dict(text="Accuracy", font=dict(size=14)), legend=dict(orientation="h", y=-0.15),
    ))
    for name in ("top", "baseline"):
        values = [] if result is None else [getattr(result, f"accuracy_{name}")[k] for k in keys]
        figure.add_bar(name=f"{name} examples", x=x if result is not None else [], y=values,
                       marker_color=SET_COLOURS[name], hovertemplate="%{x}: %{y:.3f}<extra>%{fullData.name}</extra>")
    return figure


def sweep_figure(frame: pd.DataFrame):
    """Mean KL against ε (log-log) from ``epsilon_sweep``'s long frame: one line per (set, sign)."""
    import plotly.graph_objects as go

    figure = go.Figure(layout=dict(
        height=320, margin=dict(l=60, r=10, t=50, b=40), xaxis=dict(type="log", title="ε"),
        yaxis=dict(type="log", title="mean KL"), title=dict(text="KL against ε", font=dict(size=14)),
        legend=dict(orientation="h", y=-0.2),
    ))
    for (subset, sign), rows in frame.groupby(["set", "sign"], sort=False):
        figure.add_scatter(x=rows["epsilon"], y=rows["kl"], mode="lines+markers", name=f"{subset}, {SIGN_NAMES[sign]}",
                           line=dict(color=SET_COLOURS[subset], dash="solid" if sign == "+" else "dot"))
    return figure


def figure_html(figure, include_plotlyjs: bool | str = False) -> str:
    """A plotly figure as an HTML fragment (class ``npeff-plot``).

    With ``include_plotlyjs`` this is plotly's own ``to_html``. Without, the figure is drawn
    by whatever plotly.js the page has loaded, and where there is none (a notebook opened
    elsewhere) the placeholder says so instead of failing with a script error.
    """
    config = {"displaylogo": False, "responsive": True}
    if include_plotlyjs:
        inner = figure.to_html(full_html=False, include_plotlyjs=include_plotlyjs, default_width="100%", config=config)
        return f'<div class="npeff-plot">{inner}</div>'
    div = f"npeff-plot-{uuid.uuid4().hex}"
    spec = figure.to_json().replace("</", "<\\/")  # no "</script>" can end the script early
    return (f'<div id="{div}" class="npeff-plot"></div><script type="text/javascript">(function () {{'
            f' var spec = {spec}; var div = document.getElementById("{div}"); if (!div) return;'
            f" if (window.Plotly) {{ Plotly.newPlot(div, spec.data, spec.layout, {json.dumps(config)}); }}"
            f' else {{ div.textContent = "(chart not drawn: this page has no plotly.js; the numbers are in the table)"; }}'
            f" }})();</script>")


def perturbation_html(result, *, include_plotlyjs: bool | str = False, signs: Sequence[str] = ("+", "-")) -> str:
    """A perturbation result: the verdict, the KL and accuracy charts, and the numbers."""
    frame = result.to_frame()
    frame = frame[frame["sign"].isin(signs)]
    summary = (f"<h3>Perturbation of component {int(result.component)}</h3>"
               f'<div class="caption">ε = {result.epsilon:g}'
               + (f", semi-orthogonal (max_sim = {result.max_sim:g})" if result.max_sim is not None else "")
               + f": KL ratio top/baseline = <b>{result.kl_ratio:.3g}</b> (larger sign: {escape(result.sign)}), "
               f"{result.n_top} top and {result.n_baseline} baseline examples</div>")
    charts = (f'<div class="charts"><div>{figure_html(kl_figure(result, signs), include_plotlyjs)}</div>'
              f"<div>{figure_html(accuracy_figure(result, signs), False)}</div></div>")
    return summary + charts + table_html(frame.set_index("set"))


def error_html(message: str, details: str = "") -> str:
    more = f"<details><summary>details</summary>{escape(details)}</details>" if details else ""
    return f'<div class="error">{escape(message)}{more}</div>'


# ---------------------------------------------------------------------------------------
# The run record
# ---------------------------------------------------------------------------------------


def _plain_value(value) -> str:
    """A value for a line of prose: lists joined, floats to 3 significant digits, None as None."""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _items(pairs: Iterable[tuple[str, object]], marked: set = frozenset()) -> str:
    """``name value · name value`` with the marked names starred, all escaped."""
    return " · ".join(f"<b>{escape(k)}{'*' if k in marked else ''}</b> {escape(_plain_value(v))}" for k, v in pairs)


def _duration(record: dict) -> str:
    try:
        start = dt.datetime.fromisoformat(record["started"])
        end = dt.datetime.fromisoformat(record["finished"])
    except (KeyError, TypeError, ValueError):
        return ""
    return f" in {(end - start).total_seconds():.0f} s"


def run_section_html(record: dict, *, title: str = "This run") -> str:
    """A short "this run" section from a run record (run.json): status, device, versions, seeds,
    the notebooks that ran (their parameters, papermill's injected ones starred), stage timings,
    figures, and every parameter in a collapsed list."""
    env = record.get("environment", {})
    versions = env.get("versions", {})
    shown_versions = ", ".join(f"{k} {v}" for k, v in versions.items()
                               if k in ("npeff-workbench", "torch", "transformers", "papermill"))
    lines = [
        f"<b>{escape(record.get('status', '?'))}</b>, started {escape(record.get('started', '?'))}"
        f"{escape(_duration(record))} · device {escape(env.get('device') or 'cpu')} · {escape(shown_versions)} · "
        f"python {escape(env.get('python', '?'))} · seeds "
        + escape(", ".join(f"{k} {v}" for k, v in record.get("seeds", {}).items()) or "none"),
    ]
    for name, notebook in record.get("notebooks", {}).items():
        injected = set(notebook.get("injected", []))
        lines.append(
            f"notebook <b>{escape(name)}</b> ({escape(notebook.get('source'))}, {escape(notebook.get('status'))} in "
            f"{escape(notebook.get('seconds', '?'))} s, papermill {escape(notebook.get('papermill', '?'))}): "
            + _items(notebook.get("parameters", {}).items(), injected) + (" (* injected)" if injected else ""))
    stages = record.get("stages", {})
    if stages:
        lines.append("stages: " + " · ".join(f"<b>{escape(k)}</b> {escape(v.get('seconds', v.get('status')))} s"
                                             for k, v in stages.items()))
    figures = record.get("figures", {})
    if figures:
        lines.append("figures: " + _items(figures.items()))
    params = record.get("params", {})
    details = (f"<details><summary>all {len(params)} parameters</summary>{_items(params.items())}</details>"
               if params else "")
    body = "".join(f'<div class="run-line">{line}</div>' for line in lines)
    return fragment(f'<section class="this-run"><h2>{escape(title)}</h2>{body}{details}</section>')


def run_section_text(record: dict) -> str:
    lines = [f"status {record.get('status')}, started {record.get('started')}",
             "parameters: " + ", ".join(f"{k}={v!r}" for k, v in record.get("params", {}).items())]
    lines += [f"figure {k}: {v}" for k, v in record.get("figures", {}).items()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Pages and the report folder
# ---------------------------------------------------------------------------------------


def plotlyjs_script() -> str:
    """plotly.js inline, as plotly's own ``include_plotlyjs=True`` writes it."""
    from plotly.offline import get_plotlyjs

    return ("<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
            f'<script charset="utf-8" type="text/javascript">{get_plotlyjs()}</script>')


def html_page(title: str, body: str, *, head: str = "") -> str:
    """A complete HTML document; ``head`` is trusted markup (scripts), ``title`` is escaped."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'{head}{style()}</head><body><div class="npeff">{body}</div></body></html>')


def _component_file(component: int) -> str:
    return f"components/{int(component):05d}.html"


def _component_section(explorer, component: int, results: list, n_examples: int, highlight: bool, plotlyjs) -> str:
    row = explorer.table.loc[[component]]
    parts = [table_html(row, bars=bar_columns(row))]
    page = explorer.top_examples(component, page_size=n_examples, highlight=highlight)
    parts.append(examples_page_html(page))
    parts += [perturbation_html(r, include_plotlyjs=plotlyjs) for r in results]
    return "".join(parts)


def export_html(explorer, out: str | os.PathLike, *, perturbations: Sequence = (), n_examples: int = 10,
                highlight: bool = True, max_single_page: int = MAX_SINGLE_PAGE_COMPONENTS,
                progress: bool = True) -> Path:
    """Write a report of ``explorer``'s run to the folder ``out``; returns the index page.

    Up to ``max_single_page`` components the report is one page (``index.html``, plotly.js
    inline); above, ``index.html`` holds the run record and the component table, linked to one
    page per component under ``components/``. ``perturbations``: results of
    :meth:`RunExplorer.perturb` to chart under their component. The folder is built under a
    temporary name and moved into place at the end, so an interrupted export leaves the
    previous report, not half of a new one.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    by_component: dict[int, list] = {}
    for result in perturbations:
        by_component.setdefault(int(result.component), []).append(result)
    table = explorer.table
    split = len(table) > max_single_page
    title = f"NPEFF run {explorer.run.path.name}"
    staging = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        header = run_section_html(explorer.record)
        caption = f'<div class="caption">{len(table)} components</div>'
        components = tqdm(table.index, desc="report", disable=not progress, leave=False)
        if not split:
            links = {j: f"#component-{j}" for j in table.index}
            sections = [f'<section id="component-{j}"><h2>Component {j}</h2>'
                        f"{_component_section(explorer, j, by_component.get(j, []), n_examples, highlight, False)}</section>"
                        for j in components]
            body = (f"<h1>{escape(title)}</h1>{header}<h2>Components</h2>{caption}"
                    f"{table_html(table, index_links=links, bars=bar_columns(table))}{''.join(sections)}")
            head = plotlyjs_script() if by_component else ""
            (staging / "index.html").write_text(html_page(title, body, head=head), encoding="utf-8")
        else:
            (staging / "components").mkdir()
            links = {j: _component_file(j) for j in table.index}
            body = (f"<h1>{escape(title)}</h1>{header}<h2>Components</h2>{caption}"
                    f"{table_html(table, index_links=links, bars=bar_columns(table))}")
            (staging / "index.html").write_text(html_page(title, body), encoding="utf-8")
            order = list(table.index)
            for position, j in enumerate(components):
                nav = ['<a href="../index.html">index</a>']
                if position > 0:
                    nav.append(f'<a href="../{_component_file(order[position - 1])}">previous</a>')
                if position + 1 < len(order):
                    nav.append(f'<a href="../{_component_file(order[position + 1])}">next</a>')
                results = by_component.get(j, [])
                head = f'<script src="../{PLOTLY_FILE}"></script>' if results else ""
                section = _component_section(explorer, j, results, n_examples, highlight, False)
                page = f"<nav>{''.join(nav)}</nav><h1>Component {j}</h1>{section}"
                (staging / _component_file(j)).write_text(html_page(f"{title}: component {j}", page, head=head),
                                                          encoding="utf-8")
            if by_component:
                from plotly.offline import get_plotlyjs

                (staging / PLOTLY_FILE).write_text(get_plotlyjs(), encoding="utf-8")
        _replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote the report to %s (%s)", out, "split into pages" if split else "one page")
    return out / "index.html"


def _replace_folder(staging: Path, out: Path) -> None:
    """Move ``staging`` to ``out``, replacing a previous report only once the new one is complete."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

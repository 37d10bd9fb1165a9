"""Whole pages, and :func:`export_html`: a report folder readable offline from disk.

The pages embed plotly.js once, inline, so they work from disk with no network. A report
split into one page per component (above :data:`MAX_SINGLE_PAGE_COMPONENTS`) shares one
``plotly.min.js`` file beside the pages instead of inlining it into thousands of them.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from .charts import perturbation_html
from .html import bar_columns, escape, examples_page_html, run_section_html, style, table_html

logger = logging.getLogger(__name__)

#: Above this many components a report is an index page plus one page per component.
MAX_SINGLE_PAGE_COMPONENTS = 300
PLOTLY_FILE = "plotly.min.js"


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

"""Whole pages, and :func:`export_html`: a report folder readable offline from disk.

The pages embed plotly.js once, inline, so they work from disk with no network. A report
split into one page per component (above :data:`MAX_SINGLE_PAGE_COMPONENTS`) shares one
``plotly.min.js`` file beside the pages instead of inlining it into thousands of them.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..core.arguments import flag, is_within, positive_int, user_path
from ..core.disk import naming_disk_errors
from ..core.staging import dead_staging, remove_dead_staging, staging_path, writer_ended
from .charts import perturbation_html
from .dashboard import dashboard_html, definitions_html
from .html import (CONTAINER_CLASSES, bar_columns, error_html, escape, examples_page_html, run_section_html, style,
                   table_html)
from .traces import trace_html

logger = logging.getLogger(__name__)

#: Above this many components a report is an index page plus one page per component.
MAX_SINGLE_PAGE_COMPONENTS = 300
#: ... and above this many charts: a browser draws them all as the page loads, and a page of 64 components
#: with a model (320 charts) took 48 s to open, one of 300 without (600 charts) 107 s (load 7, 2 cores).
MAX_SINGLE_PAGE_CHARTS = 120
PLOTLY_FILE = "plotly.min.js"

#: Sorts a ``table.sortable`` by the clicked header (numbers by their ``data-sort``, text otherwise;
#: again to reverse). Each header's name is a button, which Enter and Space click, and ``aria-sort``
#: tells a screen reader which column the rows are sorted by, and which way.
#: Plain script, no library: the report works from disk.
SORT_SCRIPT = """<script>(function () {
  function sort(th) {
    var headers = Array.from(th.parentNode.children), i = headers.indexOf(th), body = th.closest("table").tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[i], y = b.cells[i], c;
      if (x.dataset.sort !== undefined && y.dataset.sort !== undefined) {
        var p = parseFloat(x.dataset.sort), q = parseFloat(y.dataset.sort);
        if (isNaN(p) || isNaN(q)) return isNaN(p) - isNaN(q);  // missing values last, either way
        c = p === q ? 0 : p - q;  // (Infinity - Infinity is NaN)
      } else c = x.textContent.localeCompare(y.textContent);
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.addEventListener("click", function (event) {  // on the button, or beside it in its header
    var th = event.target.closest && event.target.closest("table.sortable th");
    if (th) sort(th);
  });
})();</script>"""


def plotlyjs_script() -> str:
    """plotly.js inline, as plotly's own ``include_plotlyjs=True`` writes it."""
    from plotly.offline import get_plotlyjs

    return ("<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
            f'<script charset="utf-8" type="text/javascript">{get_plotlyjs()}</script>')


#: The page's metadata: its width on phones, and light and dark schemes (its CSS has both).
META = ('<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">')


def html_page(title: str, body: str, *, head: str = "") -> str:
    """A complete HTML document; ``head`` is trusted markup (scripts), ``title`` is escaped."""
    return (f'<!DOCTYPE html><html lang="en"><head>{META}<title>{escape(title)}</title>'
            f'{head}{style()}</head><body id="top"><div class="{CONTAINER_CLASSES}">{body}</div>{SORT_SCRIPT}</body></html>')


def _component_file(component: int) -> str:
    return f"components/{int(component):05d}.html"


def _trace_section(explorer, component: int) -> str:
    """The component's perturbation trace as the workbench's trace panel takes it (its top set against
    ten baseline examples: the report's own counts read other numbers beside the panel's in a notebook),
    and the heatmap of its top example; a failure (a model without hidden states) is shown in the
    section rather than stopping the report."""
    try:
        trace = explorer.trace(component)
    except Exception as error:  # noqa: BLE001 - shown where the trace would be
        logger.warning("no trace of component %s in the report: %s", component, error)
        return error_html(f"No perturbation trace: {type(error).__name__}: {error}")
    return trace_html(trace, n_heatmaps=1)


def _component_section(explorer, component: int, results: list, n_examples: int, highlight: bool, plotlyjs,
                       dashboards: bool, sweep, traces: bool = False) -> str:
    page = None
    if dashboards:
        dashboard = explorer.dashboard(component, sweep=sweep, n_examples=n_examples)
        parts = [dashboard_html(dashboard)]
        if highlight:  # the examples the dashboard scored: not scored twice
            page = dashboard.examples
    else:
        row = explorer.table.loc[[component]]
        parts = [table_html(row, bars=bar_columns(explorer.table))]  # its mass bar against the largest
    if page is None:
        page = explorer.top_examples(component, page_size=n_examples, highlight=highlight)
    parts.append(examples_page_html(page))
    parts += [perturbation_html(r, include_plotlyjs=plotlyjs) for r in results]
    if traces:
        parts.append(_trace_section(explorer, component))
    return "".join(parts)


def export_html(explorer, out: str | os.PathLike, *, perturbations: Sequence = (), n_examples: int = 10,
                highlight: bool = True, max_single_page: int | None = None,
                progress: bool = True, dashboards: bool = True, sweep: Sequence[float] | None = None,
                traces: bool | None = None) -> Path:
    """Write a report of ``explorer``'s run to the folder ``out``; returns the index page.

    Up to ``max_single_page`` components the report is one page (``index.html``, plotly.js
    inline); above, ``index.html`` holds the run record and the component table, linked to one
    page per component under ``components/``. By default (None) a report is one page up to
    :data:`MAX_SINGLE_PAGE_COMPONENTS` components and :data:`MAX_SINGLE_PAGE_CHARTS` charts. ``perturbations``: results of
    :meth:`RunExplorer.perturb` to chart under their component. ``dashboards``: each component's
    dashboard (:meth:`RunExplorer.dashboard`; with its perturbation sweep over ``sweep`` when given).
    ``traces``: each component's perturbation trace (:meth:`RunExplorer.trace`, as the trace panel
    takes it: the layer profile and its top example's heatmap); default: when the explorer has a model.
    The index has a table of contents, sortable tables (click a header) and links back to the top.
    The folder is built under a
    temporary name and moved into place at the end, so an interrupted export leaves the
    previous report, not half of a new one. ``out`` must be new, empty or a report written
    before: any other folder (a run folder, one of the user's) is refused, never replaced.
    """
    from tqdm.auto import tqdm

    if isinstance(explorer, (str, os.PathLike)):
        raise TypeError(f"export_html takes a RunExplorer, got the path {str(explorer)!r}; to report that run folder, "
                        "use export_html(RunExplorer.open(path), out)")
    if not all(hasattr(explorer, name) for name in ("table", "top_examples", "run")):
        raise TypeError(f"export_html takes a RunExplorer, got {type(explorer).__name__}; e.g. "
                        "export_html(RunExplorer.open(path), out)")
    perturbations = list(perturbations)
    if not all(hasattr(result, "component") and hasattr(result, "kl_ratio") for result in perturbations):
        raise TypeError("perturbations must hold results of RunExplorer.perturb (or perturbation_check)")
    n_examples = positive_int(n_examples, "n_examples")
    for name, value in (("highlight", highlight), ("dashboards", dashboards), ("progress", progress)):
        flag(value, name)  # highlight='no' highlighted: a non-empty string is true
    if traces is not None:
        flag(traces, "traces")
    if max_single_page is not None:
        max_single_page = positive_int(max_single_page, "max_single_page")
    out = user_path(out, "out")
    _check_report_folder(out)
    if is_within(out, explorer.run.path):  # a report of its earlier decomposition into a folder run again since
        explorer.run.check_unchanged()
    traces = explorer.has_model if traces is None else traces
    by_component: dict[int, list] = {}
    for result in perturbations:
        by_component.setdefault(int(result.component), []).append(result)
    table = explorer.table
    title = f"NPEFF run {explorer.run.path.name}"
    _recover_report(out)
    staging = staging_path(out)
    try:
        with naming_disk_errors(out, REPORT_KEPT):
            staging.mkdir(parents=True)
            header = run_section_html(explorer.record)
            definitions = explorer.definitions()["definition"].to_dict()
            caption = (f'<div class="caption">{len(table)} components; click a header to sort, hover it for its '
                       "definition; each mass bar is relative to the largest mass</div>"
                       f"{definitions_html(definitions, ['component', *table.columns])}")
            charts = dashboards or traces or bool(by_component)

            def components_table(links: dict, **options) -> str:  # named by the "Components" heading above it
                return table_html(table, index_links=links, bars=bar_columns(table), titles=definitions, sortable=True,
                                  labelled_by="components", **options)

            sections = {j: _component_section(explorer, j, by_component.get(j, []), n_examples, highlight, False,
                                              dashboards, sweep, traces)
                        for j in tqdm(table.index, desc="report", disable=not progress, leave=False)}
            if max_single_page is None:
                n_charts = sum(section.count('class="npeff-plot"') for section in sections.values())
                split = len(table) > MAX_SINGLE_PAGE_COMPONENTS or n_charts > MAX_SINGLE_PAGE_CHARTS
            else:
                split = len(table) > max_single_page
            if not split:
                links = {j: f"#component-{j}" for j in table.index}
                top = '<a class="top" href="#top">back to top ↑</a>'
                sections = [f'<section id="component-{j}">{top}<h2>Component {j}</h2>{sections[j]}</section>'
                            for j in table.index]
                toc = ('<nav class="toc"><a href="#run">This run</a><a href="#components">Component table</a>'
                       + "".join(f'<a href="#component-{j}">Component {j}</a>' for j in table.index) + "</nav>")
                body = (f"<h1>{escape(title)}</h1>{toc}<div id=\"run\">{header}</div>"
                        f"<h2 id=\"components\">Components</h2>{caption}{components_table(links)}"
                        f"{''.join(sections)}")
                head = plotlyjs_script() if charts else ""
                (staging / "index.html").write_text(html_page(title, body, head=head), encoding="utf-8")
            else:
                (staging / "components").mkdir()
                links = {j: _component_file(j) for j in table.index}
                body = (f'<h1>{escape(title)}</h1>{header}<h2 id="components">Components</h2>{caption}'
                        f"{components_table(links, row_ids='component-')}")
                (staging / "index.html").write_text(html_page(title, body), encoding="utf-8")
                order = list(table.index)
                for position, j in enumerate(order):
                    nav = [f'<a href="../index.html#component-{j}">index</a>']  # back to this component's row
                    if position > 0:
                        nav.append(f'<a href="../{_component_file(order[position - 1])}">previous</a>')
                    if position + 1 < len(order):
                        nav.append(f'<a href="../{_component_file(order[position + 1])}">next</a>')
                    results = by_component.get(j, [])
                    head = f'<script src="../{PLOTLY_FILE}"></script>' if results or dashboards or traces else ""
                    # h1, h2, h3 as on the single page: "Component j" as h1 above its h3 sections skipped a level
                    page = f"<nav>{''.join(nav)}</nav><h1>{escape(title)}</h1><h2>Component {j}</h2>{sections[j]}"
                    (staging / _component_file(j)).write_text(html_page(f"{title}: component {j}", page, head=head),
                                                              encoding="utf-8")
                if charts:
                    from plotly.offline import get_plotlyjs

                    (staging / PLOTLY_FILE).write_text(get_plotlyjs(), encoding="utf-8")
            if is_within(out, explorer.run.path):  # run again while the pages were made (minutes, for many components)
                explorer.run.check_unchanged()
            _replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote the report to %s (%s)", out, "split into pages" if split else "one page")
    return out / "index.html"


#: What a report not written leaves
REPORT_KEPT = "a page or report written there before is kept, and nothing half-written is left"


#: What a report folder holds: anything else in ``out`` is not ours to replace.
REPORT_FILES = {"index.html", "components", PLOTLY_FILE}


def _check_report_folder(out: Path) -> None:
    if out.is_file() or out.is_symlink():
        raise FileExistsError(f"{out} is a file; a report is a folder: choose a new or empty folder")
    if out.is_dir():
        # what a killed writer left (a page's staging file, named with its dead process's id) is no file of the user's
        other = sorted(p.name for p in out.iterdir() if p.name not in REPORT_FILES and not writer_ended(p))
        if other:
            raise FileExistsError(
                f"{out} holds files that are not a report's ({', '.join(other[:5])}); a report replaces its folder "
                "whole, so it writes only to a new or empty folder or over a report written before: choose another "
                f"folder, such as {out / 'report'}")


#: What the renames meet when another export of the same report moves it at the same moment
_MOVED_MEANWHILE = {errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST}


def _replace_folder(staging: Path, out: Path) -> None:
    """Move ``staging`` to ``out``, replacing a previous report only once the new one is complete. Another export
    of the same report (a second notebook or panel) may move it between the two renames: they failed with a bare
    'Directory not empty' or 'No such file', so they are tried again, and the report moved in last stays."""
    for attempt in range(5):
        old = None
        try:
            if out.exists():
                old = staging_path(out, "old")
                os.replace(out, old)
            os.replace(staging, out)  # a kill just before this leaves no report, and the old one aside: see _recover_report
            return
        except OSError as err:
            if err.errno not in _MOVED_MEANWHILE or attempt == 4:
                raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)


def _recover_report(out: Path) -> None:
    """What killed exports left beside ``out``: their unfinished reports go, and a previous report
    moved aside by one killed between its two renames comes back (the newest, if several)."""
    remove_dead_staging(out)
    aside = dead_staging(out, "old")
    if aside and not out.exists():
        os.replace(aside.pop(), out)
    for path in aside:
        shutil.rmtree(path, ignore_errors=True)

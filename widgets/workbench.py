"""The workbench: the three panels over one run folder, wired together."""

from __future__ import annotations

import os
import threading
import urllib.parse
from pathlib import Path

import ipywidgets as w

from workbench import report
from workbench.app.explore import RunExplorer, check_explorer
from workbench.app.notebook import HEADLESS_ENV
from workbench.core.arguments import flag, positive_int

from .browser import ComponentBrowser
from .dashboard import ComponentDashboard
from .examples import ExampleViewer
from .lookup import LookupPanel
from .perturbation import PerturbationPanel
from .static import StaticFallback, on_click_shown
from .trace import TracePanel


#: How long displaying the workbench waits for its first component's fill (see ``Workbench.static_html``).
SNAPSHOT_WAIT_S = 2.0


class Workbench(StaticFallback, w.VBox):
    """Component browser, example viewer, dashboard, perturbation and trace panels and reverse lookup for one run.

    Selecting a component in the browser shows its details, top examples, dashboard and perturbation
    trace (``RunExplorer.trace``, when the run has a model) and points the perturbation panel at it.
    ``Workbench.from_run(path, page_size=10)`` opens the run folder ``path``; ``Workbench(explorer, ...)`` takes
    an opened :class:`~workbench.app.explore.RunExplorer`. ``wb.select(j)`` does the same as a click from code;
    ``wb.explorer`` is the :class:`~workbench.app.explore.RunExplorer` the panels read from.

    page_size: components per page of the browser; examples_per_page: examples per page of the viewer.
    component: the component shown first (default: the largest by mass).
    background: the first component's token shares, dashboard and trace, which need the model (seconds on a
        fresh kernel), are computed on a thread after the workbench is shown, its examples shown
        plain meanwhile; ``wb.wait()`` waits for them. Default: yes, except in the headless runs of
        ``python -m workbench run`` (``HEADLESS_ENV``), whose snapshots must show everything.
    """

    def __init__(self, explorer: RunExplorer, *, page_size: int = 10, examples_per_page: int = 5,
                 component: int | None = None, background: bool | None = None):
        self.explorer = check_explorer(explorer, "Workbench.from_run(path)")
        # checked here, so the message names the workbench's own arguments, not the panels'
        page_size = positive_int(page_size, "page_size")
        examples_per_page = positive_int(examples_per_page, "examples_per_page")
        self.browser = ComponentBrowser(explorer, page_size=page_size)
        self.examples = ExampleViewer(explorer, page_size=examples_per_page)
        self.dashboard = ComponentDashboard(explorer)
        self.lookup = LookupPanel(explorer, on_select=self.select)
        self.perturbation = PerturbationPanel(explorer)
        self.trace = TracePanel(explorer)
        self._background = os.environ.get(HEADLESS_ENV) != "1" if background is None else flag(background, "background")
        self._filling: threading.Thread | None = None
        self.details = w.HTML()
        self.export_format = w.Dropdown(options=["parquet", "csv"], value="parquet", description="format",
                                        layout=w.Layout(width="180px"))
        self.export_button = w.Button(description="export tables", icon="download",
                                      tooltip="components, coefficients, perturbations and component vectors "
                                              "into the run's exports/ folder",
                                      layout=w.Layout(width="auto", min_width="130px", flex="0 0 auto"))
        self.export_button.on_click(on_click_shown(self.export))
        self.export_status = RenderedHtml()
        self.browser.observe(self._selected, names="selected")
        header = w.HTML(self._header_html())
        super().__init__([
            header,
            w.HTML("<h3>Components</h3>"), self.browser,
            w.HTML("<h3>Selected component</h3>"), self.details, self.examples,
            w.HTML("<h3>Dashboard</h3>"), self.dashboard,
            w.HTML("<h3>Perturbation</h3>"), self.perturbation,
            w.HTML("<h3>Trace through the layers</h3>"), self.trace,
            w.HTML("<h3>Reverse lookup</h3>"), self.lookup,
            w.HTML("<h3>Export</h3>"),
            w.HBox([self.export_format, self.export_button, self.export_status],
                   layout=w.Layout(align_items="center", flex_flow="row wrap")),
        ])
        self.add_class("npeff-workbench")
        first = self.browser.current.rows.index
        if component is not None:
            self.select(component)
        elif len(first):
            self.select(int(first[0]))

    @classmethod
    def from_run(cls, path: str | os.PathLike, *, device=None, **kwargs) -> "Workbench":
        """The workbench for the run folder ``path`` (as written by ``run_embedded`` or a notebook run)."""
        return cls(RunExplorer.open(path, device=device), **kwargs)

    def select(self, component: int) -> None:
        """Select ``component`` in every panel, as a click in the browser does."""
        self.browser.select(component)

    def wait(self, timeout: float | None = None) -> "Workbench":
        """Wait until the first component's token shares and dashboard are shown (see ``background``)."""
        if self._filling is not None:
            self._filling.join(timeout)
        return self

    def export(self, folder=None) -> dict:
        """``explorer.export`` of the run's tables and the perturbation panel's last results, in the
        format chosen; the panel lists the files written (or shows the error), and they are returned."""
        panel = self.perturbation
        results = [panel.sweep_frame if panel.sweep_frame is not None else panel.result] if panel.result is not None else []
        self.export_status.value = "<i>exporting…</i>"
        try:
            written = self.explorer.export(folder, format=self.export_format.value, perturbations=results)
        except Exception as error:
            self.export_status.value = report.fragment(report.error_html(f"{type(error).__name__}: {error}"))
            raise
        # Links, so the browser can download what was written: paths relative to the notebook (the kernel's
        # working folder), which JupyterLab's HTML renderer serves from its file route; ``download`` makes it a download.
        self.export_status.value = "wrote " + ", ".join(
            f'<a href="{report.escape(_link(path))}" download="{report.escape(Path(path).name)}" target="_blank">'
            f"{report.escape(what)}</a>" for what, path in written.items()) + f" in <code>{report.escape(Path(next(iter(written.values()))).parent)}</code>"
        return written

    def _selected(self, change) -> None:
        component = change["new"]
        self.perturbation.set_component(component)
        self.trace.set_component(component)
        if component is None:
            self.details.value = ""
            return
        if self._filling is not None and self._filling.is_alive():
            self._filling.join()  # the first component's fill ends before another is shown, never after
        row = self.explorer.table.loc[[component]]
        titles = self.explorer.definitions()["definition"].to_dict()
        bars = report.bar_columns(self.explorer.table)  # a mass bar is relative to the largest mass of all components
        self.details.value = report.fragment(report.table_html(row, bars=bars, titles=titles,
                                                               label=f"component {int(component)} in the component table"))
        if self._background and self._filling is None and self.explorer.has_model:
            # The first selection, while the workbench is being shown: plain examples now, the rest on a thread.
            self._show_quietly(lambda j: self.examples.show(j, highlight=False), component)
            self.examples.status.value = "<i>scoring tokens…</i>"
            self._filling = threading.Thread(target=self._fill, args=(component, self.examples.requests), daemon=True)
            self._filling.start()
            return
        self._fill(component)

    def _fill(self, component: int, examples_shown: int | None = None) -> None:
        """Fill the panels for ``component``; on the background thread, the example viewer only while the
        user has not paged or toggled it since its plain examples (``examples_shown`` shows)."""
        shows = [lambda j: self.examples.show(j, unless_shown_since=examples_shown), self.dashboard.show]
        if self.explorer.has_model:  # a trace is a few forward passes: cheaper than the dashboard's scores
            shows.append(lambda _: self.trace.run())
        for show in shows:
            if self.browser.selected == component:  # not once the user has moved on
                self._show_quietly(show, component)

    @staticmethod
    def _show_quietly(show, component) -> None:
        try:
            show(component)
        except Exception:  # noqa: BLE001 - shown in its panel
            pass

    def _header_html(self) -> str:
        run = self.explorer.run
        figures = run.record.get("figures", {})
        facts = [f"{self.explorer.n_components} components", f"{len(self.explorer.examples)} examples",
                 f"status {run.record.get('status')}"]
        facts += [f"{k} {v:.3g}" for k, v in figures.items() if isinstance(v, (int, float))][:4]
        # a path in the home folder from ~: the snapshot is kept in the notebook and its HTML, which are shared
        return (f"<b>NPEFF workbench</b> · run <code>{report.escape(report.home_as_tilde(str(run.path)))}</code> · "
                + " · ".join(report.escape(f) for f in facts))

    # -- static display ----------------------------------------------------------------

    def static_html(self) -> str:
        # The snapshot kept beside the widget view (what nbconvert shows without widget state): it waits a
        # little for the first fill, so that a warm model's highlights are in it, never long enough to
        # delay the live view much (a cold first scoring, seconds, fills in after the display).
        self.wait(SNAPSHOT_WAIT_S)
        filled = self._filled_views(lambda panel: panel.static_html(), lambda text: report.fragment(f"<i>{text}</i>"))
        parts = [f"<div>{self._header_html()}</div>", "<h3>Components</h3>", self.browser.static_html()]
        if self._still_filling():
            parts.insert(1, '<div class="caption">The selected component\'s highlights, dashboard and trace were still '
                            "filling in when this view was kept: display the workbench after <code>wb.wait()</code> to "
                            "keep them.</div>")
        if self.browser.current.n_matching > len(self.browser.current.rows):
            parts.append('<div class="caption">Only this page of the table is shown here; '
                         "workbench.report.export_html writes every component.</div>")
        parts += ["<h3>Selected component</h3>", self.details.value, self.examples.static_html(),
                  "<h3>Dashboard</h3>", filled["dashboard"],
                  "<h3>Perturbation</h3>", self.perturbation.static_html(),
                  "<h3>Trace through the layers</h3>", filled["trace"],
                  "<h3>Reverse lookup</h3>", self.lookup.static_html()]
        return report.fragment("".join(parts))

    def static_text(self) -> str:
        filled = self._filled_views(lambda panel: panel.static_text(), str)
        return "\n\n".join([f"NPEFF workbench of {report.home_as_tilde(str(self.explorer.run.path))}", self.browser.static_text(),
                            self.examples.static_text(), filled["dashboard"], self.perturbation.static_text(),
                            filled["trace"], self.lookup.static_text()])

    def _still_filling(self) -> bool:
        return self._filling is not None and self._filling.is_alive()

    def _filled_views(self, view, note) -> dict:
        """The dashboard's and the trace's views, or, while the first fill has yet to show them, a note that says
        so: "No component selected." read under the selected component's examples."""
        views = {}
        for name, panel, shown in (("dashboard", self.dashboard, self.dashboard.current), ("trace", self.trace, self.trace.result)):
            pending = self._still_filling() and shown is None
            views[name] = (note(f"Still filling in for component {self.browser.selected} when this view was kept.")
                           if pending else view(panel))
        return views


class RenderedHtml(w.Output):
    """HTML drawn by the front end's own HTML renderer, not as an HTML widget's content: JupyterLab
    then resolves a relative link against the notebook's folder and serves it from its file route
    (``/files/…``). In an HTML widget the export's links resolved against the page (``/lab/tree/…``),
    and a click downloaded JupyterLab's own page under the name components.csv."""

    def __init__(self, value: str = ""):
        super().__init__()
        self.value = value

    @property
    def value(self) -> str:
        return self.outputs[0]["data"]["text/html"] if self.outputs else ""

    @value.setter
    def value(self, html: str) -> None:
        self.outputs = ({"output_type": "display_data", "metadata": {}, "data": {"text/html": html}},) if html else ()


def _link(path) -> str:
    """``path`` relative to the working folder (the notebook's), as a URL path."""
    try:
        return urllib.parse.quote(Path(os.path.relpath(path)).as_posix())
    except ValueError:  # another drive (Windows)
        return Path(path).as_uri()

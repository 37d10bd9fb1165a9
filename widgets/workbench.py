"""The workbench: the three panels over one run folder, wired together."""

from __future__ import annotations

import os

import ipywidgets as w

from workbench import report
from workbench.app.explore import RunExplorer

from .browser import ComponentBrowser
from .examples import ExampleViewer
from .perturbation import PerturbationPanel
from .static import StaticFallback, on_click_shown


class Workbench(StaticFallback, w.VBox):
    """Component browser, example viewer and perturbation panel for one run.

    Selecting a component in the browser shows its details and top examples and points the
    perturbation panel at it. ``wb.select(j)`` does the same from code;
    ``wb.explorer`` is the :class:`~workbench.app.explore.RunExplorer` the panels read from.
    """

    def __init__(self, explorer: RunExplorer, *, page_size: int = 20, examples_per_page: int = 5):
        self.explorer = explorer
        self.browser = ComponentBrowser(explorer, page_size=page_size)
        self.examples = ExampleViewer(explorer, page_size=examples_per_page)
        self.perturbation = PerturbationPanel(explorer)
        self.details = w.HTML()
        self.export_format = w.Dropdown(options=["parquet", "csv"], value="parquet", description="format",
                                        layout=w.Layout(width="180px"))
        self.export_button = w.Button(description="export tables", icon="download",
                                      tooltip="components, coefficients, perturbations and component vectors "
                                              "into the run's exports/ folder")
        self.export_button.on_click(on_click_shown(self.export))
        self.export_status = w.HTML()
        self.browser.observe(self._selected, names="selected")
        header = w.HTML(self._header_html())
        super().__init__([
            header,
            w.HTML("<h3>Components</h3>"), self.browser,
            w.HTML("<h3>Selected component</h3>"), self.details, self.examples,
            w.HTML("<h3>Perturbation</h3>"), self.perturbation,
            w.HTML("<h3>Export</h3>"),
            w.HBox([self.export_format, self.export_button, self.export_status], layout=w.Layout(align_items="center")),
        ])
        self.add_class("npeff-workbench")
        first = self.browser.current.rows.index
        if len(first):
            self.select(int(first[0]))

    @classmethod
    def from_run(cls, path: str | os.PathLike, *, device=None, **kwargs) -> "Workbench":
        """The workbench for the run folder ``path`` (as written by ``run_embedded`` or a notebook run)."""
        return cls(RunExplorer.open(path, device=device), **kwargs)

    def select(self, component: int) -> None:
        self.browser.select(component)

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
        self.export_status.value = "wrote " + ", ".join(
            f"{report.escape(what)} <code>{report.escape(path)}</code>" for what, path in written.items())
        return written

    def _selected(self, change) -> None:
        component = change["new"]
        self.perturbation.set_component(component)
        if component is None:
            self.details.value = ""
            return
        row = self.explorer.table.loc[[component]]
        self.details.value = report.fragment(report.table_html(row, bars=report.bar_columns(row)))
        try:
            self.examples.show(component)
        except Exception:  # noqa: BLE001 - shown in the example viewer
            pass

    def _header_html(self) -> str:
        run = self.explorer.run
        figures = run.record.get("figures", {})
        facts = [f"{self.explorer.n_components} components", f"{len(self.explorer.examples)} examples",
                 f"status {run.record.get('status')}"]
        facts += [f"{k} {v:.3g}" for k, v in figures.items() if isinstance(v, (int, float))][:4]
        return (f"<b>NPEFF workbench</b> · run <code>{report.escape(run.path)}</code> · "
                + " · ".join(report.escape(f) for f in facts))

    # -- static display ----------------------------------------------------------------

    def static_html(self) -> str:
        parts = [f"<div>{self._header_html()}</div>", "<h3>Components</h3>", self.browser.static_html()]
        if self.browser.current.n_matching > len(self.browser.current.rows):
            parts.append('<div class="caption">Only this page of the table is shown here; '
                         "workbench.report.export_html writes every component.</div>")
        parts += ["<h3>Selected component</h3>", self.details.value, self.examples.static_html(),
                  "<h3>Perturbation</h3>", self.perturbation.static_html()]
        return report.fragment("".join(parts))

    def static_text(self) -> str:
        return "\n\n".join([f"NPEFF workbench of {self.explorer.run.path}", self.browser.static_text(),
                            self.examples.static_text(), self.perturbation.static_text()])

"""The component dashboard: one component at a glance, as ``RunExplorer.dashboard`` computes it."""

from __future__ import annotations


import ipywidgets as w

from workbench import report
from workbench.app.explore import RunExplorer, check_explorer
from workbench.app.results import ComponentDashboard as Dashboard

from .chart import display_data, fluid, fluid_layout
from .examples import component_title
from .static import StaticFallback, error_fragment, on_click_shown

#: ε of the sweep the "sweep ε" button adds (a sweep costs a perturbation check per ε).
SWEEP = (0.01, 0.1, 1.0)
DASHBOARD_CHART_WIDTH = 620  # the charts stack, each this wide at most


class ComponentDashboard(StaticFallback, w.VBox):
    """Coefficient histogram, where the component lives, the class its direction pushes toward, its top
    tokens and nearest components; *sweep ε* adds the perturbation sweep. The charts are plotly figures
    shown through JupyterLab's plotly renderer (and as HTML where a notebook is read without it).

    ``ComponentDashboard(explorer)`` takes a :class:`~workbench.app.explore.RunExplorer` and starts empty;
    ``show(j)`` fills it with component j and returns its :class:`~workbench.app.results.ComponentDashboard`."""

    def __init__(self, explorer: RunExplorer):
        self.explorer = check_explorer(explorer, "ComponentDashboard(RunExplorer.open(path))")
        self.component: int | None = None
        self.current: Dashboard | None = None
        self.figures: list = []  # the plotly figures shown
        self.title = w.HTML("<b>Dashboard</b>: select a component first.")
        self.sweep_button = w.Button(description="sweep ε", icon="line-chart", disabled=True,
                                     tooltip=f"add the perturbation sweep at ε = {', '.join(map(str, SWEEP))}",
                                     layout=w.Layout(width="auto"))
        self.sweep_button.on_click(on_click_shown(lambda: self.show(self.component, sweep=SWEEP)))
        self.status = w.HTML()
        self.numbers = w.HTML()
        self.charts = w.Output(layout=fluid_layout(DASHBOARD_CHART_WIDTH))
        self.charts.add_class("npeff")  # the page's colours: dark where JupyterLab's theme is (report.css)
        self.tables = w.HTML()
        super().__init__([w.HBox([self.title, self.sweep_button, self.status], layout=w.Layout(align_items="center")),
                          self.numbers, self.charts, self.tables])
        self.add_class("npeff-dashboard")

    def show(self, component: int | None, *, sweep=None) -> Dashboard | None:
        """Compute and show ``component``'s dashboard (``sweep``: the ε of a perturbation sweep, or None)."""
        self.component = component
        self.sweep_button.disabled = component is None
        if component is None:
            return None
        self.status.value = "<i>computing…</i>"
        try:
            result = self.explorer.dashboard(component, sweep=sweep)
        except Exception as error:  # shown in the panel
            self.status.value = ""
            self.numbers.value = error_fragment(error)
            raise
        self.current = result
        self.title.value = component_title(self.explorer, component, "Dashboard of component")
        self.numbers.value = report.fragment(report.dashboard_numbers_html(result))
        self.tables.value = report.fragment(report.dashboard_tables_html(result))
        self.figures = [fluid(f) for f in report.dashboard_figures(result)]
        self.charts.outputs = tuple(display_data(f) for f in self.figures)
        self.status.value = ""
        return result

    def static_html(self) -> str:
        if self.current is None and self.component is not None:  # read as "none selected" under a selected one
            return report.fragment(f"<i>Still filling in for component {int(self.component)} when this view was kept.</i>")
        if self.current is None:
            return report.fragment("<i>No component selected.</i>")
        return report.fragment(f"<div>{self.title.value}</div>" + report.dashboard_html(self.current))

    def static_text(self) -> str:
        return "No component selected." if self.current is None else repr(self.current)

"""The trace panel: how much each layer's hidden states move, per token, along a component."""

from __future__ import annotations

import time

import ipywidgets as w

from workbench import report
from workbench.app.explore import RunExplorer, check_explorer

from .examples import component_title
from .chart import Chart
from .perturbation import CHART_WIDTH
from .static import StaticFallback, error_fragment, on_click_shown
from .steps import epsilon_slider, set_epsilon


class TracePanel(StaticFallback, w.VBox):
    """ε (log slider) and *trace*: ``RunExplorer.trace`` of the selected component, then its layer
    profile (top vs baseline) and the layer × token heatmap of the example chosen in the list.

    ``TracePanel(explorer, component=None)`` takes a :class:`~workbench.app.explore.RunExplorer` and the
    component to trace (``set_component(j)`` changes it); *trace* computes it."""

    def __init__(self, explorer: RunExplorer, component: int | None = None):
        self.explorer = check_explorer(explorer, "TracePanel(RunExplorer.open(path))")
        self.component = None
        self.result = None
        self.error: str | None = None
        self.title = w.HTML("<b>Perturbation trace</b>: select a component first.")
        self.epsilon = epsilon_slider()
        self.run_button = w.Button(description="trace", button_style="primary", icon="play",
                                   disabled=component is None)
        self.run_button.on_click(on_click_shown(self.run))
        self.example = w.Dropdown(options=[], description="example", layout=w.Layout(display="none"))
        self.status = w.HTML()
        self.profile_chart = Chart(report.trace_profile_figure(), width=CHART_WIDTH)
        self.heatmap = Chart(report.trace_heatmap_figure(), width=CHART_WIDTH)
        self.example.observe(lambda _: self._show_heatmap(), names="value")
        # Hidden until a trace has run: empty axes before it, or after a refusal, read as a result of nothing.
        self.charts = w.HBox([self.profile_chart, self.heatmap], layout=w.Layout(flex_flow="row wrap", display="none"))
        super().__init__([self.title, w.HBox([self.epsilon, self.run_button, self.status],
                                                  layout=w.Layout(align_items="center", flex_flow="row wrap")),
                          self.example, self.charts])
        self.add_class("npeff-trace-panel")
        self.set_component(component)

    def set_component(self, component: int | None) -> None:
        """Point the panel at ``component``; another component's trace is cleared, not left on show."""
        if component is not None:
            self.explorer.component(component)  # a clear error now, not when the trace is run
        if component != self.component or component is None:
            self._clear()
        self.component = component
        self.run_button.disabled = component is None
        if component is not None:
            self.title.value = component_title(self.explorer, component, "Perturbation trace of component")

    def _clear(self) -> None:
        self.result, self.error = None, None
        self.status.value = ""
        self.example.options = []
        self.example.layout.display = self.charts.layout.display = "none"
        self.profile_chart.show(report.trace_profile_figure())
        self.heatmap.show(report.trace_heatmap_figure())

    def run(self, *, epsilon: float | None = None):
        """Trace the selected component (``epsilon`` overrides the slider); errors are shown, then raised."""
        try:
            if epsilon is not None:
                set_epsilon(self.epsilon, epsilon)
            if self.component is None:
                raise ValueError("no component selected: call set_component(j) or select one in the browser")
            component, started = self.component, time.perf_counter()
            self.status.value = "<i>tracing…</i>"
            result = self.explorer.trace(component, epsilon=float(self.epsilon.value))
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            self.example.layout.display = self.charts.layout.display = "none"
            self.status.value = error_fragment(error)
            raise
        if component != self.component:  # another component was selected meanwhile: its panel stays clear
            return result
        self.result, self.error = result, None
        self.status.value = f"done in {time.perf_counter() - started:.1f} s"
        trace = self.result
        self.example.options = [(f"{s} · example {e}", k) for k, (s, e) in enumerate(zip(trace.sets, trace.examples))]
        self.example.layout.display, self.charts.layout.display = "", "flex"
        self.profile_chart.show(report.trace_profile_figure(trace))
        if self.example.value == 0:
            self._show_heatmap()
        else:
            self.example.value = 0  # the first top example; its observer draws the heatmap
        return trace

    def _show_heatmap(self) -> None:
        if self.result is not None and self.example.value is not None:
            self.heatmap.show(report.trace_heatmap_figure(self.result, self.example.value))

    def static_html(self) -> str:
        if self.error:
            return report.fragment(report.error_html(self.error))
        if self.result is None:
            return report.fragment("<i>No trace run yet.</i>")
        return report.fragment(report.trace_html(self.result))

    def static_text(self) -> str:
        if self.error:
            return f"Trace failed: {self.error}"
        return "No trace run yet." if self.result is None else repr(self.result)

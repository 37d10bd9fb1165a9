"""The over-training panel: per component, coefficient mass and KL ratio against the training step."""

from __future__ import annotations

import ipywidgets as w

from workbench import report
from workbench.report.strategies import component_name

from .chart import Chart
from .perturbation import CHART_WIDTH
from .static import StaticFallback


class OverTrainingPanel(StaticFallback, w.VBox):
    """Renders a ``workbench.analysis.over_training.OverTraining`` result: lines of the chosen value
    (mass, KL ratio, or |cos| of the matched fit) per component, chosen components only, beside the
    accuracy per strategy at each checkpoint. The result is computed by the library:
    ``OverTrainingPanel(result)`` takes the ``OverTraining`` that ``over_training(...)`` returns."""

    def __init__(self, result):
        if not all(hasattr(result, name) for name in ("components", "reference", "steps")):
            raise TypeError(f"OverTrainingPanel shows an OverTraining result, got {type(result).__name__}; make one "
                            "with workbench.analysis.over_training.over_training(...)")
        self.result = result
        strategies = sorted(result.components["strategy"].unique())
        self.strategy = w.Dropdown(options=strategies, value="transform" if "transform" in strategies else strategies[0],
                                   description="components")
        self.value = w.Dropdown(options=result.values_of(self.strategy.value), description="value")
        names = [(component_name(result.reference, j), j) for j in result.reference.index]
        self.components = w.SelectMultiple(options=names, value=[j for _, j in names], description="show", rows=6)
        self.chart = Chart(report.over_training_figure(), width=CHART_WIDTH)
        self.accuracy_chart = Chart(report.accuracy_over_training_figure(result), width=CHART_WIDTH)
        for control in (self.strategy, self.value, self.components):
            control.observe(lambda _: self.refresh(), names="value")
        header = w.HTML(f"<b>Components over training</b>: {len(result.steps)} checkpoints, steps "
                        f"{result.steps[0]}-{result.steps[-1]}")
        super().__init__([header, w.HBox([self.strategy, self.value]), self.components,
                          w.HBox([self.chart, self.accuracy_chart], layout=w.Layout(flex_flow="row wrap"))])
        self.add_class("npeff-over-training-panel")
        self.refresh()

    def refresh(self) -> None:
        """Redraw the lines with the chosen value and components."""
        values = self.result.values_of(self.strategy.value)
        if list(self.value.options) != values:
            self.value.options = values  # resets the value, which calls refresh again
            return
        figure = report.over_training_figure(self.result, self.value.value, self.strategy.value,
                                             components=list(self.components.value))
        self.chart.show(figure)

    def static_html(self) -> str:
        return report.fragment(report.over_training_html(self.result, strategy=self.strategy.value))

    def static_text(self) -> str:
        return repr(self.result)

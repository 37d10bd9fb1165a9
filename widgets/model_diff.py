"""The model-diff panel: strategies gained, lost and kept between two models, with the evidence."""

from __future__ import annotations

import ipywidgets as w

from workbench import report

from .chart import Chart
from .static import StaticFallback

STATUSES = ("all", "gained", "lost", "changed", "kept")


class ModelDiffPanel(StaticFallback, w.VBox):
    """Renders a ``workbench.analysis.model_diff.ModelDiff``: the strategy table, the masses of the
    components on both models (coloured by status), and the component evidence filtered by status.
    ``ModelDiffPanel(diff)`` takes the ``ModelDiff`` that ``model_diff(...)`` returns."""

    def __init__(self, diff):
        if not all(hasattr(diff, name) for name in ("strategies", "components", "names")):
            raise TypeError(f"ModelDiffPanel shows a ModelDiff, got {type(diff).__name__}; make one with "
                            "workbench.analysis.model_diff.model_diff(...)")
        self.diff = diff
        self.status = w.ToggleButtons(options=STATUSES, value="all", description="components")
        self.strategies = w.HTML(report.fragment(report.table_html(diff.strategies, label="strategies")))
        self.chart = Chart(report.model_diff_figure(), width=900)
        self.evidence = w.HTML()
        self.status.observe(lambda _: self.refresh(), names="value")
        a, b = diff.names
        header = w.HTML(f"<b>What changed from {report.escape(a)} to {report.escape(b)}</b>")
        super().__init__([header, self.strategies, self.status, self.chart, self.evidence])
        self.add_class("npeff-model-diff-panel")
        self.refresh()

    def rows(self):
        """The rows of ``diff.components`` the status filter keeps (a DataFrame)."""
        rows = self.diff.components
        return rows if self.status.value == "all" else rows[rows["status"] == self.status.value]

    def refresh(self) -> None:
        """Redraw the chart, and the evidence with the status filter's current value."""
        self.chart.show(report.model_diff_figure(self.diff))
        self.evidence.value = report.fragment(report.table_html(self.rows(), label="components and their evidence"))

    def static_html(self) -> str:
        return report.fragment(report.model_diff_html(self.diff))

    def static_text(self) -> str:
        return f"{self.diff!r}\n{self.diff.strategies.to_string()}"

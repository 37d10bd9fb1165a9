"""The perturbation panel: move the model along a component's direction and chart what changes."""

from __future__ import annotations

import time

import ipywidgets as w
import numpy as np

from workbench import report
from workbench.analysis.draws import BASELINE_DRAWS, DRAW_MENU
from workbench.app.explore import RunExplorer, check_explorer

from .chart import Chart
from .static import StaticFallback, error_fragment, on_click_shown
from .steps import epsilon_slider, set_epsilon

#: A sweep runs the check at these multiples of the slider's ε.
SWEEP_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
DIRECTIONS = {"both": ("+", "-"), "+": ("+",), "-": ("-",)}


#: Chart width in the panel, so the KL and accuracy charts sit side by side.
CHART_WIDTH = 520


class PerturbationPanel(StaticFallback, w.VBox):
    """ε (log slider), direction (±, + or −), semi-orthogonal option with its max_sim, a sweep
    option; *run* shows a progress bar, then charts of the KL on the top vs the baseline examples
    and of the accuracies. Errors are shown in the panel.

    ``PerturbationPanel(explorer)`` takes a :class:`~workbench.app.explore.RunExplorer`; ``set_component(j)``
    chooses the component its *run* checks, and ``run()`` runs the check as the button does."""

    def __init__(self, explorer: RunExplorer):
        self.explorer = check_explorer(explorer, "PerturbationPanel(RunExplorer.open(path))")
        self.component: int | None = None
        self.result = None  # the last PerturbationResult
        self.sweep_frame = None  # the last sweep, a long DataFrame
        self.error: str | None = None

        self.title = w.HTML("<b>Perturbation check</b>: select a component first.")
        self.epsilon = epsilon_slider()
        self.direction = w.ToggleButtons(options=[("±", "both"), ("+", "+"), ("−", "-")], value="both",
                                         description="direction", style={"button_width": "40px"})
        self.semi_orthogonal = w.Checkbox(False, description="semi-orthogonal", indent=False,
                                          layout=w.Layout(width="140px"))
        self.max_sim = w.FloatSlider(0.3, min=0.05, max=0.95, step=0.05, description="max_sim", disabled=True,
                                     continuous_update=False)
        self.semi_orthogonal.observe(lambda change: setattr(self.max_sim, "disabled", not change["new"]),
                                     names="value")
        self.baseline = w.Dropdown(options=[(DRAW_MENU.get(draw, draw), draw) for draw in BASELINE_DRAWS],
                                   value="random", description="baseline", layout=w.Layout(width="300px", max_width="100%"),
                                   tooltip="compare with examples drawn at random, or drawn with the top set's mix of "
                                           "predicted classes: the ratio then shows selectivity beyond the class")
        self.sweep = w.Checkbox(False, description=f"sweep ε × {', '.join(f'{f:g}' for f in SWEEP_FACTORS)}",
                                indent=False, layout=w.Layout(width="260px"))
        self.run_button = w.Button(description="run check", button_style="primary", icon="play", disabled=True)
        self.run_button.on_click(on_click_shown(self.run))
        self.progress = w.IntProgress(0, min=0, max=1, description="", layout=w.Layout(width="200px"))
        self.status = w.HTML()
        self.summary = w.HTML()
        self.kl_chart = Chart(report.kl_figure(), width=CHART_WIDTH)
        self.accuracy_chart = Chart(report.accuracy_figure(), width=CHART_WIDTH)
        self.sweep_chart = Chart(report.sweep_figure(_empty_sweep()), width=CHART_WIDTH)
        self.sweep_box = w.Box([self.sweep_chart], layout=w.Layout(display="none"))
        self.direction.observe(lambda _: self._show_result(), names="value")

        controls = w.VBox([
            w.HBox([self.epsilon, self.direction], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.semi_orthogonal, self.max_sim, self.sweep], layout=w.Layout(flex_flow="row wrap")),
            self.baseline,
            w.HBox([self.run_button, self.progress, self.status], layout=w.Layout(align_items="center", flex_flow="row wrap")),
        ])
        # Hidden until a check has run: empty axes before it would read as a result of nothing.
        charts = w.HBox([self.kl_chart, self.accuracy_chart], layout=w.Layout(flex_flow="row wrap", display="none"))
        self.charts = charts
        super().__init__([self.title, controls, self.summary, charts, self.sweep_box])
        self.add_class("npeff-perturbation-panel")

    def set_component(self, component: int | None) -> None:
        """The component the next *run* checks (None: none); a result of another component is cleared."""
        if component is not None:
            self.explorer.component(component)  # a clear error now, not when the check is run
        if component != self.component:  # another component's check is not left on show under this title
            self.result, self.sweep_frame, self.error = None, None, None
            self.summary.value = self.status.value = ""
            self.progress.value, self.progress.bar_style = 0, ""
            self.charts.layout.display = self.sweep_box.layout.display = "none"
        self.component = component
        self.run_button.disabled = component is None
        if component is not None:
            self.title.value = f"<b>Perturbation check of component {int(component)}</b>"

    def run(self, *, epsilon: float | None = None):
        """Run the check with the panel's settings (``epsilon`` overrides the slider); returns the
        PerturbationResult (the one at the slider's ε for a sweep). Errors are shown, then raised."""
        if epsilon is not None:
            try:
                set_epsilon(self.epsilon, epsilon)
            except (TypeError, ValueError) as error:
                self._show_error(f"{type(error).__name__}: {error}")
                raise
        if self.component is None:
            self._show_error("Select a component first.")
            raise ValueError("no component selected: call set_component(j) or select one in the browser")
        component, epsilon, baseline = self.component, float(self.epsilon.value), self.baseline.value
        max_sim = float(self.max_sim.value) if self.semi_orthogonal.value else None
        epsilons = [epsilon * f for f in SWEEP_FACTORS] if self.sweep.value else [epsilon]
        self.error = None
        self.run_button.disabled = True
        self.progress.max, self.progress.value, self.progress.bar_style = len(epsilons) + 1, 1, "info"
        self.status.value = f"<i>running component {int(component)} at ε = {epsilon:.3g}…</i>"
        started = time.perf_counter()
        try:
            if self.sweep.value:
                results = {}

                def step(result, done, total):
                    results[result.epsilon] = result
                    if component != self.component:  # another component's panel now: its progress is not this one
                        return
                    self.progress.value = done + 1
                    self.status.value = f"<i>ε {done} of {total} done…</i>"

                sweep_frame = self.explorer.sweep(component, epsilons, max_sim=max_sim, baseline=baseline, on_result=step)
                result = results[epsilons[SWEEP_FACTORS.index(1.0)]]
            else:
                sweep_frame, result = None, self.explorer.perturb(component, epsilon=epsilon, max_sim=max_sim,
                                                                  baseline=baseline)
        except Exception as error:
            self._show_error(f"{type(error).__name__}: {error}", error)
            raise
        finally:
            self.run_button.disabled = self.component is None
        if component != self.component:  # another component was selected meanwhile: its panel stays clear
            return result
        self.result, self.sweep_frame = result, sweep_frame
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        self.status.value = f"done in {time.perf_counter() - started:.1f} s"
        self._show_result()
        return self.result

    def _show_error(self, message: str, error: Exception | None = None) -> None:
        self.error = message
        self.progress.bar_style = "danger"
        self.status.value = ""
        self.summary.value = error_fragment(error) if error else report.fragment(report.error_html(message))

    def _show_result(self) -> None:
        result = self.result
        if result is None:
            return
        signs = DIRECTIONS[self.direction.value]
        ratio = f"{result.ratio(signs):.3g}"  # of the signs shown, as the chart's title
        interval = result.interval_text(signs) if hasattr(result, "interval_text") else ""
        semi = f", semi-orthogonal (max_sim {result.max_sim:g})" if result.max_sim is not None else ""
        self.summary.value = (
            f'<div class="npeff-perturbation-summary">Component {result.component} at ε = {result.epsilon:.3g}{semi}: '
            f'KL ratio top/baseline = <b class="npeff-kl-ratio">{ratio}</b>{interval} · baseline{getattr(result, "baseline_words", "")} · KL top '
            + ", ".join(f"{s} {result.kl_top[s]:.3g}" for s in signs) + " · KL baseline "
            + ", ".join(f"{s} {result.kl_baseline[s]:.3g}" for s in signs) + "</div>"
        )
        self.charts.layout.display = "flex"
        self.kl_chart.show(report.kl_figure(result, signs))
        self.accuracy_chart.show(report.accuracy_figure(result, signs))
        if self.sweep_frame is not None:
            frame = self.sweep_frame[self.sweep_frame["sign"].isin(signs)]
            self.sweep_chart.show(report.sweep_figure(frame))
            self.sweep_box.layout.display = "flex"
        else:
            self.sweep_box.layout.display = "none"

    # -- static display ----------------------------------------------------------------

    def static_html(self) -> str:
        if self.error:
            return report.fragment(report.error_html(self.error))
        if self.result is None:
            return report.fragment("<i>No perturbation check run yet.</i>")
        body = report.perturbation_html(self.result, signs=DIRECTIONS[self.direction.value])
        if self.sweep_frame is not None:
            body += report.figure_html(report.sweep_figure(self.sweep_frame))
        return report.fragment(body)

    def static_text(self) -> str:
        if self.error:
            return f"Perturbation check failed: {self.error}"
        return "No perturbation check run yet." if self.result is None else repr(self.result)


def _empty_sweep():
    import pandas as pd

    return pd.DataFrame({"set": [], "sign": [], "epsilon": np.array([], dtype=float), "kl": np.array([], dtype=float)})

"""The over-training, model-diff and trace panels, driven from Python, and their static bundles."""

import numpy as np
import pandas as pd

from widgets import ModelDiffPanel, OverTrainingPanel, TracePanel
from workbench.analysis.model_diff import ModelDiff
from workbench.analysis.over_training import OverTraining
from workbench.analysis.trace import PerturbationTrace
from workbench.app.explore import RunExplorer

HOSTILE = "<script>window.__npeffInjected = 1</script>"
SHOWN = "&lt;script&gt;window.__npeffInjected = 1&lt;/script&gt;"  # as plotly shows it, not drawn as its markup


def _history() -> OverTraining:
    rows = [{"step": s, "component": j, "strategy": "transform", "mass": m, "kl_ratio": 1 + s / 100 * (j + 1),
             "purity": 0.5, "cos": 1.0, "partner": j}
            for s, masses in ((0, (0.5, 0.5)), (100, (0.2, 0.8)), (200, (0.1, 0.9))) for j, m in enumerate(masses)]
    accuracy = [{"step": s, "group": g, "accuracy": a, "source": "analysed"}
                for s in (0, 100, 200) for g, a in (("marker", min(1.0, 0.5 + s / 100)), (HOSTILE, 0.5))]
    reference = pd.DataFrame({"strategy": ["marker", HOSTILE], "strategy_purity": [1.0, 0.6]},
                             index=pd.Index([0, 1], name="component"))
    return OverTraining(pd.DataFrame(rows), pd.DataFrame(accuracy), reference, [0, 100, 200])


def test_over_training_panel_draws_the_chosen_value_per_component():
    panel = OverTrainingPanel(_history())
    assert [t.name for t in panel.chart.figure.data] == ["0: marker", f"1: {SHOWN}"]
    assert list(panel.chart.figure.data[1].y) == [0.5, 0.8, 0.9]
    panel.value.value = "kl_ratio"
    assert list(panel.chart.figure.data[0].y) == [1.0, 2.0, 3.0] and panel.chart.figure.layout.yaxis.type == "log"
    panel.components.value = (1,)
    assert len(panel.chart.figure.data) == 1
    accuracy = {t.name: list(t.y) for t in panel.accuracy_chart.figure.data}
    assert accuracy == {"marker": [0.5, 1.0, 1.0], SHOWN: [0.5, 0.5, 0.5]}
    bundle = panel._repr_mimebundle_()
    assert "Components over training" in bundle["text/html"] and HOSTILE not in bundle["text/html"]
    assert "&lt;script&gt;" in bundle["text/html"]


def test_model_diff_panel_filters_the_evidence_by_status():
    components = pd.DataFrame([
        {"status": "kept", "component_a": 0, "component_b": 1, "cos": 0.9, "mass_a": 0.5, "mass_b": 0.4,
         "strategy_a": "lexical", "strategy_b": "lexical", "purity_a": 1.0, "purity_b": 1.0, "kl_ratio_a": 3.0,
         "kl_ratio_b": 2.0},
        {"status": "gained", "component_a": -1, "component_b": 0, "cos": 0.1, "mass_a": 0.01, "mass_b": 0.3,
         "strategy_a": "contrast", "strategy_b": "marker", "purity_a": 0.3, "purity_b": 1.0, "kl_ratio_a": 1.0,
         "kl_ratio_b": 9.0},
    ])
    strategies = pd.DataFrame({"named_a": [True, False], "named_b": [True, True], "status": ["kept", "gained"]},
                              index=pd.Index(["lexical", "marker"], name="strategy"))
    diff = ModelDiff(components, strategies, {"n_matched": 1, "n_unmatched_a": 0, "n_unmatched_b": 1,
                                              "mean_cos": 0.9, "min_cos": 0.9}, ("before", HOSTILE))
    panel = ModelDiffPanel(diff)
    assert len(panel.chart.figure.data) == 2 and list(panel.chart.figure.data[1].y) == [0.4, 0.3]
    panel.status.value = "gained"
    assert len(panel.rows()) == 1 and "marker" in panel.evidence.value and "lexical" not in panel.evidence.value
    html = panel._repr_mimebundle_()["text/html"]
    assert "gained" in html and HOSTILE not in html


def test_trace_panel_runs_the_explorer_and_shows_heatmaps(embedded_run):
    panel = TracePanel(RunExplorer.open(embedded_run.path), component=0)
    assert "No trace run yet" in panel._repr_mimebundle_()["text/plain"]
    trace = panel.run(epsilon=0.5)
    assert isinstance(trace, PerturbationTrace)
    assert len(panel.example.options) == len(trace.examples)
    assert [t.name.split(" ")[0] for t in panel.profile_chart.figure.data] == ["top", "baseline"]
    heat = panel.heatmap.figure.data[0]
    assert np.allclose(np.asarray(heat.z), trace.heatmaps[0]) and list(heat.y) == trace.layers
    panel.example.value = len(trace.examples) - 1
    assert np.allclose(np.asarray(panel.heatmap.figure.data[0].z), trace.heatmaps[-1])
    assert "Perturbation trace of component 0" in panel._repr_mimebundle_()["text/html"]


def test_the_trace_panel_shows_no_axes_before_a_trace_and_no_traceback_under_a_refusal(embedded_run, monkeypatch):
    """Empty axes before a trace (or after a refused one) read as a trace of nothing; a traceback
    under a refusal that names the problem and the fix read as the panel failing. A fault keeps it."""
    import pytest

    explorer = RunExplorer.open(embedded_run.path)
    panel = TracePanel(explorer, component=0)
    assert panel.charts.layout.display == "none" and panel.example.layout.display == "none"
    panel.run(epsilon=0.5)
    assert panel.charts.layout.display == "flex" and panel.example.layout.display == ""

    def refuse(*_, **__):
        raise ValueError("epsilon too large: choose a smaller epsilon")

    monkeypatch.setattr(explorer, "trace", refuse)
    with pytest.raises(ValueError):
        panel.run()
    assert "epsilon too large" in panel.status.value and "<details>" not in panel.status.value
    assert panel.charts.layout.display == "none"

    def fault(*_, **__):
        raise RuntimeError("CUDA error")

    monkeypatch.setattr(explorer, "trace", fault)
    with pytest.raises(RuntimeError):
        panel.run()
    assert "CUDA error" in panel.status.value and "<details>" in panel.status.value and "Traceback" in panel.status.value

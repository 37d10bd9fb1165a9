"""The panels, driven from Python as a front end would drive them (clicks, values), and their static bundles."""

import json
import re

import ipywidgets
import numpy as np
import pandas as pd
import pytest
import torch

from widgets import ComponentBrowser, PerturbationPanel, Workbench
from workbench import report
from workbench.app.explore import RunExplorer

from .synthetic import synthetic_run

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_every_panel_says_how_to_make_it_and_what_it_takes():
    """The dashboard, viewer and perturbation panel made on their own said 'select a component first', and
    their docstrings named neither what they take nor the call that selects one."""
    import inspect

    import widgets

    for name in widgets.__all__:
        panel = getattr(widgets, name)
        doc = inspect.getdoc(panel)
        assert f"``{name}(" in doc, f"{name}'s docstring shows no call that makes it"
        taken = [p for p in inspect.signature(panel).parameters if p not in ("background",)]
        assert all(p in doc for p in taken), f"{name}'s docstring leaves out {[p for p in taken if p not in doc]}"
        not_methods = {name, "on_select", "model_diff", "over_training"}  # itself, a callback, the library's functions
        for method in set(re.findall(r"``(\w+)\(", doc)) - not_methods:  # the calls it names exist
            assert hasattr(panel, method), f"{name}'s docstring names {method}(), which it lacks"


def test_every_public_method_of_the_panels_and_the_library_s_records_says_what_it_does():
    """Run.pefs(), Run.decomposition(), PefStore.read_chunk(), the panels' select(j) and static_html() had no
    docstring: help() in a notebook showed their names alone."""
    import inspect

    import widgets
    import workbench
    from workbench.app.results import ComponentPage, HighlightedExample, Lookup, TopExamplesPage
    from workbench.analysis.perturb import PerturbationResult
    from workbench.npeff.base import NpeffBase

    classes = [getattr(widgets, name) for name in widgets.__all__] + [
        getattr(workbench, name) for name in ("LrmPefs", "DPefs", "ParameterLayout", "PefConfig", "PefStore", "Run",
                                              "LrmNpeff", "DNpeff")
    ] + [NpeffBase, ComponentPage, HighlightedExample, Lookup, TopExamplesPage, PerturbationResult]
    undocumented = [f"{cls.__name__}.{name}" for cls in classes for name, member in vars(cls).items()
                    if not name.startswith("_") and (callable(member) or isinstance(member, (property, classmethod)))
                    and not inspect.getdoc(getattr(cls, name) if not isinstance(member, property) else member)]
    assert undocumented == []


@pytest.fixture(scope="module")
def workbench(embedded_run):
    return Workbench.from_run(embedded_run.path, page_size=10)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """250 components without a model."""
    return RunExplorer.open(synthetic_run(tmp_path_factory.mktemp("runs") / "many", n_components=250,
                                          n_examples=2000, density=0.05))


def test_workbench_opens_on_the_largest_component(workbench):
    largest = int(workbench.explorer.table["mass"].idxmax())
    assert workbench.browser.selected == largest
    assert workbench.examples.current.component == largest
    assert workbench.perturbation.component == largest and not workbench.perturbation.run_button.disabled


def test_workbench_sends_the_browser_kilobytes_not_plotly_js(workbench):
    """Everything a display of the workbench sends to the front end (all its widgets' states, as a
    notebook saved with widget state keeps them): plotly's FigureWidget put its 5 MB plotly.js bundle
    into each chart's state, 25 MB in all; charts are now the figure's JSON alone."""
    states = {}

    def walk(widget):
        if widget.model_id not in states:
            states[widget.model_id] = widget.get_state()
            for name in widget.keys:
                value = getattr(widget, name)
                for child in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(child, ipywidgets.Widget):
                        walk(child)

    walk(workbench)
    assert not any("_esm" in state for state in states.values())
    assert len(json.dumps(states, default=str)) < 2_000_000
    assert len(states) > 100  # the walk reached the panels' widgets


def test_clicking_a_component_shows_its_examples(workbench):
    button = workbench.browser.row_buttons[2]
    button.click()
    j = int(button.description)
    assert workbench.browser.selected == j and button.button_style == "info"
    assert f"Component {j}" in workbench.examples.title.value
    assert workbench.examples.body.value.count('class="example"') == 5
    assert f'<td data-sort="{float(j)!r}">{j}</td>' in workbench.details.value
    workbench.examples.next.click()
    assert workbench.examples.current.page == 1 and "examples 6-10" in workbench.examples.body.value


def test_browser_pages_sorts_and_filters(many):
    browser = ComponentBrowser(many, page_size=20)
    assert "page 1 of 13" in browser.caption.value and browser.previous.disabled
    browser.next.click()
    shown = [int(b.description) for b in browser.row_buttons]
    assert shown == list(many.filter_components().index[20:40])
    browser.headers[browser.columns.index("label_purity")].click()  # sort by it, largest first
    assert browser.headers[browser.columns.index("label_purity")].description == "label_purity ▼"
    assert browser.page_number == 0
    browser.headers[browser.columns.index("label_purity")].click()  # reversed
    values = [float(c[browser.columns.index("label_purity") - 1].value) for c in browser.cells]
    assert values == sorted(values)
    browser.search.value = "zorp"
    expected = many.filter_components(search="zorp", sort_by="label_purity", descending=False)
    assert f"of {len(expected)} matching" in browser.caption.value
    browser.min_purity.value = 1.0  # only components whose top set is all one label
    visible = [b for b in browser.row_buttons if b.layout.visibility == "visible"]
    assert len(visible) == min(20, len(many.filter_components(search="zorp", min_purity=1.0)))


def test_perturbation_panel_runs_and_charts_the_result(workbench):
    panel = workbench.perturbation
    workbench.select(4)
    result = panel.run(epsilon=0.1)
    assert result.component == 4 and result.epsilon == pytest.approx(0.1)
    assert f"{result.kl_ratio:.3g}" in panel.summary.value
    assert list(panel.kl_chart.figure.data[0].y) == [result.kl_top["+"], result.kl_top["-"]]
    assert panel.progress.bar_style == "success" and panel.progress.value == panel.progress.max
    panel.direction.value = "-"
    assert list(panel.kl_chart.figure.data[1].y) == [result.kl_baseline["-"]]
    panel.sweep.value = True
    panel.run()
    assert len(panel.sweep_frame) == 20 and len(panel.sweep_chart.figure.data) == 2  # (top, baseline) for "-"
    assert panel.sweep_box.layout.display == "flex"
    panel.sweep.value, panel.direction.value = False, "both"


def test_another_component_s_check_is_never_shown_under_this_one_s_title(workbench):
    """Selecting component 12 after a check of component 0 left the check's summary, charts and export
    under the title of component 12."""
    panel = workbench.perturbation
    workbench.select(1)
    panel.run(epsilon=0.1)
    assert panel.result.component == 1 and panel.charts.layout.display == "flex"
    workbench.select(2)
    assert panel.result is None and panel.summary.value == "" and panel.charts.layout.display == "none"
    assert "No perturbation check run yet" in panel.static_html()
    with pytest.raises(ValueError, match="epsilon"):
        panel.run(epsilon=-1.0)  # shown in the panel too, as a click's errors are
    assert "epsilon" in panel.summary.value and panel.progress.bar_style == "danger"
    with pytest.raises(ValueError, match="epsilon"):
        workbench.trace.run(epsilon=float("nan"))
    assert "epsilon" in workbench.trace.status.value


def test_a_background_fill_never_replaces_the_page_the_user_turned_to(workbench):
    """The first component's fill, on its thread, showed page 1 again (highlighted, the checkbox off)
    seconds after the user had turned to page 2."""
    viewer = workbench.examples
    component = workbench.browser.selected
    seen = viewer.requests
    viewer.next.click()  # the user turns the page while the fill scores tokens
    assert viewer.current.page == 1
    assert viewer.show(component, unless_shown_since=seen) is None and viewer.current.page == 1
    assert viewer.show(component, unless_shown_since=viewer.requests).page == 0  # nothing since: it shows


def test_the_deletion_check_shows_what_each_example_s_coefficient_needs(workbench, many):
    from widgets import ExampleViewer

    viewer = workbench.examples
    workbench.select(0)
    viewer.show(0)
    assert not viewer.deletion_button.disabled
    viewer.deletion_button.click()
    assert len(viewer.deletions) == len(viewer.current.examples)
    example, strongest, effects = viewer.deletions[0]
    assert effects.equals(workbench.explorer.deletion_effects(0, example))
    assert "Deletion check" in viewer.body.value and f"{effects['drop'].iloc[0]:.0%}" in viewer.body.value
    assert "Deletion check" in viewer.static_html()
    viewer.next.click()  # another page: its check is not the one shown
    assert viewer.deletions is None and "Deletion check" not in viewer.body.value
    bare = ExampleViewer(many)
    bare.show(0)
    assert bare.deletion_button.disabled  # no model/: nothing to fit again


def test_readings_wait_for_a_perturbation_that_moves_the_weights(workbench):
    """The trace and the label scores ran outside the model lock, and every reading undid the
    weights of a perturbation in flight on another thread: a check clicked during the first
    component's trace showed KLs of half-moved weights, and left the weights moved for the session."""
    import threading

    explorer = workbench.explorer
    model, _ = explorer.model_and_tokenizer()
    before = [p.detach().clone() for p in model.parameters()]
    done = []
    readings = [lambda: explorer.trace(0, n_top=2, n_baseline=2), lambda: explorer.model_and_tokenizer(),
                lambda: explorer.label_components(n_examples=1)]
    with explorer.model_lock:  # as a perturbation holds it while the weights are moved
        threads = [threading.Thread(target=lambda r=r: done.append(r()), daemon=True) for r in readings]
        for t in threads:
            t.start()
        for t in threads:
            t.join(1.0)
        assert done == []  # every reading waits
    for t in threads:
        t.join(60)
    assert len(done) == 3
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_perturbation_errors_are_shown_in_the_panel(many):
    panel = PerturbationPanel(many)
    with pytest.raises(ValueError, match="no component selected"):
        panel.run()
    panel.set_component(0)
    panel.run_button.click()  # a click does not raise: the panel shows the error
    assert "has no model/ folder" in panel.summary.value and panel.progress.bar_style == "danger"
    assert "FileNotFoundError" in panel._repr_mimebundle_()["text/plain"]


def test_panels_display_static_snapshots_beside_the_widget(workbench):
    bundle = workbench._repr_mimebundle_()
    assert set(bundle) == {WIDGET_VIEW, "text/html", "text/plain"}
    assert 'class="npeff-table"' in bundle["text/html"] and 'class="tok ' in bundle["text/html"]
    assert "components 1-10 of 16" in bundle["text/plain"]
    for panel in (workbench.browser, workbench.examples, workbench.perturbation):
        parts = panel._repr_mimebundle_()
        assert parts["text/html"] and parts["text/plain"] and WIDGET_VIEW in parts


@pytest.mark.parametrize("epsilon, message", [(1000, r"epsilon=1000 is outside the panel's slider \(0\.001 to 100\)"),
                                             (-1, r"epsilon must be a positive, finite step"),
                                             ("0.5", r"epsilon must be a positive, finite step"),
                                             (True, r"epsilon must be a positive, finite step")])
def test_a_step_the_slider_cannot_hold_is_refused_not_clamped(workbench, epsilon, message):
    """run(epsilon=1000) ran at 100 and run(epsilon=-1) at 0.001: the slider clamps what it is given."""
    workbench.select(0)
    for panel in (workbench.perturbation, workbench.trace):
        before = panel.epsilon.value
        with pytest.raises(ValueError, match=message):
            panel.run(epsilon=epsilon)
        assert panel.epsilon.value == before


def test_export_writes_tidy_files_of_what_the_panels_show(workbench, tmp_path):
    from safetensors.numpy import load_file

    explorer = workbench.explorer
    workbench.select(2)
    result = workbench.perturbation.run(epsilon=0.1)
    written = workbench.export(tmp_path / "exports")
    assert set(written) == {"components", "coefficients", "component vectors", "perturbations"}
    components = pd.read_parquet(written["components"])
    assert components["component"].tolist() == list(explorer.table.index)
    assert np.allclose(components["mass"], explorer.table["mass"])
    coefficients = pd.read_parquet(written["coefficients"])
    W = explorer.W
    assert len(coefficients) == np.count_nonzero(W)
    assert np.allclose(coefficients["coefficient"], W[coefficients["example"], coefficients["component"]])
    perturbations = pd.read_parquet(written["perturbations"])
    assert np.allclose(perturbations["kl"], result.to_frame()["kl"]) and set(perturbations["component"]) == {2}
    vectors = load_file(written["component vectors"])
    assert all(v.shape[0] == explorer.n_components for v in vectors.values())
    assert "coefficients" in workbench.export_status.value and str(tmp_path) in workbench.export_status.value

    workbench.export_format.value = "csv"
    assert pd.read_csv(workbench.export(tmp_path / "csv")["components"]).shape == components.shape
    workbench.export_format.value = "parquet"


def test_export_errors_are_shown_in_the_panel(workbench, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(FileExistsError):
        workbench.export(tmp_path / "taken")
    assert "FileExistsError" in workbench.export_status.value


def test_workbench_traces_the_selected_component(workbench):
    """Issue 21 item 3 in the workbench: selecting a component traces it (the run has a model) and the
    panel draws that trace's layer profile and its top example's heatmap."""
    workbench.wait()
    panel = workbench.trace
    first = workbench.browser.selected
    assert panel.result is not None and panel.result.component == first  # the first fill traced it too
    j = next(int(b.description) for b in workbench.browser.row_buttons if int(b.description) != first)
    workbench.select(j)
    trace = panel.result
    assert panel.component == j and trace.component == j and trace.sets[0] == "top"
    expected = workbench.explorer.trace(j)
    assert trace.examples == expected.examples and np.allclose(trace.heatmaps[0], expected.heatmaps[0])
    assert np.allclose(np.asarray(panel.heatmap.figure.data[0].z), expected.heatmaps[0])
    assert [t.name.split(" ")[0] for t in panel.profile_chart.figure.data] == ["top", "baseline"]
    assert np.allclose(np.asarray(panel.profile_chart.figure.data[0].y), expected.profile["top"])
    html = workbench._repr_mimebundle_()["text/html"]
    assert f"Perturbation trace of component {j}" in html and "Trace through the layers" in html
    assert f"Perturbation trace of component {first}" not in html


def test_titles_show_the_component_label(workbench):
    """Issue 21 item 4: the label (the table's ``name``) in the example viewer's, dashboard's and trace's titles,
    isolated (<bdi>): a right-to-left label moved the title's number to its other side."""
    j = workbench.browser.selected
    name = workbench.explorer.component_name(j)
    assert name and name == workbench.explorer.table.loc[j, "name"]
    for title in (workbench.examples.title, workbench.dashboard.title, workbench.trace.title):
        assert f"{j}</b> · <bdi>{report.escape(name)}</bdi>" in title.value
    html = workbench._repr_mimebundle_()["text/html"]
    assert f"<b>Component {j}</b> · <bdi>{report.escape(name)}</bdi>: top examples" in html
    assert f"<b>Dashboard of component {j}</b> · <bdi>{report.escape(name)}</bdi>" in html


def test_titles_escape_the_label_and_a_new_component_clears_the_trace(tmp_path):
    """A label is text (a labels.csv can hold anything); a trace shown is never another component's."""
    from widgets import ExampleViewer, TracePanel

    path = synthetic_run(tmp_path / "run", n_components=3, n_examples=300, density=0.1)
    hostile = '<img src=x onerror="alert(1)"> & co'
    pd.DataFrame({"component": [0, 1, 2], "name": [hostile, "plain", None]}).to_csv(path / "labels.csv", index=False)
    explorer = RunExplorer.open(path)
    viewer = ExampleViewer(explorer)
    viewer.show(0, highlight=False)
    assert "<img" not in viewer.title.value and report.escape(hostile) in viewer.title.value
    assert "<img" not in viewer._repr_mimebundle_()["text/html"].split('class="caption"')[0]
    viewer.show(2, highlight=False)
    assert viewer.title.value == "<b>Component 2</b>: top examples"  # no label, no dangling separator
    panel = TracePanel(explorer, component=0)
    assert "<img" not in panel.title.value
    panel.result = "stale"  # as if component 0 had been traced
    panel.example.options = [("top · example 1", 0)]
    panel.set_component(0)
    assert panel.result == "stale"  # the same component: kept
    panel.set_component(1)
    assert panel.result is None and panel.example.options == () and not panel.heatmap.figure.data
    assert "plain" in panel.title.value and "No trace run yet" in panel._repr_mimebundle_()["text/html"]


def test_panels_refuse_a_path_a_bad_count_and_a_component_that_is_not_there(many):
    """A path used to fail with an AttributeError, examples_per_page=0 on the first page, TracePanel(ex, 99)
    when traced."""
    from widgets import ExampleViewer, LookupPanel, TracePanel

    with pytest.raises(TypeError, match=r"got str; to open the run folder 'runs/x', use Workbench\.from_run\(path\)"):
        Workbench("runs/x")
    with pytest.raises(TypeError, match=r"use TracePanel\(RunExplorer\.open\(path\)\)"):
        TracePanel("runs/x")
    with pytest.raises(ValueError, match=r"examples_per_page must be an integer of at least 1"):
        Workbench(many, examples_per_page=0)
    with pytest.raises(ValueError, match=r"page_size must be an integer of at least 1"):
        ExampleViewer(many, page_size=0)
    with pytest.raises(TypeError, match=r"n must be an integer"):
        LookupPanel(many, n=None)
    with pytest.raises(ValueError, match=r"component must be from 0 to 249, got 999"):
        TracePanel(many, 999)
    panel = PerturbationPanel(many)
    with pytest.raises(TypeError, match=r"component must be an integer"):
        panel.set_component(True)
    assert panel.component is None
    from widgets import ModelDiffPanel, OverTrainingPanel

    with pytest.raises(TypeError, match=r"ModelDiffPanel shows a ModelDiff, got RunExplorer; make one with"):
        ModelDiffPanel(many)
    with pytest.raises(TypeError, match=r"OverTrainingPanel shows an OverTraining result, got NoneType"):
        OverTrainingPanel(None)
    with pytest.raises(TypeError, match="background must be True or False"):
        Workbench(many, background="no")


def test_the_perturbation_panel_checks_against_the_baseline_it_is_set_to(workbench):
    workbench.select(2)
    panel = workbench.perturbation
    panel.baseline.value = "same classes"
    try:
        result = panel.run(epsilon=0.1)
    finally:
        panel.baseline.value = "random"
    assert result.baseline_draw == "same classes"
    assert "mix of predicted classes" in panel.summary.value and "mix of predicted classes" in panel.static_html()


def test_a_snapshot_kept_while_the_first_fill_runs_says_so(embedded_run, monkeypatch):
    """The snapshot of `wb` displayed at once read "Selected component 15" over "Dashboard: No component
    selected." and unshaded examples: the fill had not ended within the snapshot's wait."""
    import threading

    import widgets.workbench as workbench_module

    release = threading.Event()
    fill = Workbench._fill
    monkeypatch.setattr(Workbench, "_fill", lambda self, *args: (release.wait(30), fill(self, *args)))
    monkeypatch.setattr(workbench_module, "SNAPSHOT_WAIT_S", 0.05)
    wb = Workbench.from_run(embedded_run.path, page_size=5, background=True)
    try:
        page, text = wb.static_html(), wb.static_text()
    finally:
        release.set()
        wb.wait()
    assert "still filling in when this view was kept" in page and "wb.wait()" in page
    assert page.count(f"Still filling in for component {wb.browser.selected}") == 2  # the dashboard and the trace
    assert "No component selected" not in page and "No trace run yet" not in page
    assert f"Still filling in for component {wb.browser.selected}" in text and "No component selected" not in text
    assert "still filling in" not in wb.static_html().lower()


def test_the_workbench_snapshot_names_a_run_in_the_home_folder_from_tilde(tmp_path, monkeypatch):
    """The snapshot is kept in the notebook and its HTML, which are shared: its header named /home/<name>/..."""
    monkeypatch.setenv("HOME", str(tmp_path / "someone"))
    path = synthetic_run(tmp_path / "someone" / "runs" / "x", n_components=3, n_examples=300, density=0.1)
    bundle = Workbench(RunExplorer.open(path), background=False)._repr_mimebundle_()
    assert "someone" not in bundle["text/html"] and "~/runs/x" in bundle["text/html"]
    assert "someone" not in bundle["text/plain"]


def test_a_browser_makes_no_more_rows_than_components_and_outlives_a_bad_sort(many):
    """page_size=10**7 made ten million row buttons (the kernel ran out of memory); sort_by of a column the
    table lacks was kept before it was checked, and every page, sort and filter after it failed."""
    browser = ComponentBrowser(many, page_size=1000)
    assert len(browser.row_buttons) == len(browser.cells) == many.n_components == 250
    with pytest.raises(ValueError, match="cannot sort by 'bogus'"):
        browser.sort_by("bogus")
    assert "cannot sort by" in browser.message.value and browser.filter.sort_by == "mass"
    browser.sort_by("label_purity")
    assert browser.message.value == "" and browser.filter.sort_by == "label_purity"
    assert [int(b.description) for b in browser.row_buttons[:3]] == list(many.filter_components(sort_by="label_purity").index[:3])

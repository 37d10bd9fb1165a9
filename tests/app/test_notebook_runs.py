"""Headless notebook runs: parameters checked up front, run folders that record themselves, HTML that shows everywhere."""

import json
import os
import re

import nbformat
import pytest

from tests.conftest import QUICKSTART, QUICKSTART_SMALL
from workbench.app.cli import main
from workbench.app.notebook import (
    NotebookError,
    NotebookParameter,
    check_parameters,
    notebook_parameters,
    parse_value,
    run_notebook,
)
from workbench.app.run_folder import Run, compare_runs

ANALYSIS = QUICKSTART.with_name("analysis.ipynb")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_parameters_are_declared_with_types_in_the_parameters_cell():
    declared = notebook_parameters(QUICKSTART)
    assert list(declared) == ["model_path", "n_examples", "n_components", "n_iters_g_only", "n_iters_joint", "seed",
                              "device", "output_folder", "epsilon"]
    assert declared["n_components"] == NotebookParameter("n_components", (int,), 16, "NPEFF components (at least 1)")
    assert declared["n_components"].bound == ("at least", 1) and declared["epsilon"].bound == ("more than", 0)
    assert declared["model_path"].types == (str, type(None)) and declared["model_path"].default is None
    assert set(notebook_parameters(ANALYSIS)) >= {"run_folder", "component", "epsilon", "device", "output_folder"}


def test_wrong_or_unknown_parameters_are_refused_before_anything_is_written(tmp_path, caplog):
    with pytest.raises(TypeError, match=r"'n_components' must be int, got '16' \(str\); it is: NPEFF components"):
        run_notebook(QUICKSTART, tmp_path / "x", {"n_components": "16"})
    with pytest.raises(TypeError, match="'epsilon' must be float, got True"):
        run_notebook(QUICKSTART, tmp_path / "x", {"epsilon": True})
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['n_comps'\]; its parameters are \['model_path'"):
        run_notebook(QUICKSTART, tmp_path / "x", {"n_comps": 4})
    # a wrong type or name exited 1, a value out of range 2: both are bad input, and exit 2
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path / "x"), "-p", "seed", "zero"]) == 2
    assert "TypeError: notebook parameter 'seed' must be int, got 'zero'" in caplog.text
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path / "x"), "-p", "n_comps", "4"]) == 2
    assert "has no parameter 'n_comps'; its parameters are ['model_path'" in caplog.text
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path / "x"), "-p", "n_components", "0"]) == 2
    assert not (tmp_path / "x").exists()


def test_command_line_values_take_the_declared_type():
    declared = notebook_parameters(QUICKSTART)
    assert parse_value(declared["n_components"], "32") == 32
    assert parse_value(declared["epsilon"], "0.5") == 0.5
    assert parse_value(declared["device"], "none") is None and parse_value(declared["device"], "cpu") == "cpu"
    assert parse_value(NotebookParameter("flag", (bool,), False), "yes") is True


def test_check_parameters_reads_the_namespace_annotations():
    namespace = {"__annotations__": {"n": int, "path": str | None, "eps": float}, "n": 3, "path": None, "eps": 1}
    check_parameters(namespace)
    namespace["path"] = 3
    with pytest.raises(TypeError, match="'path' must be str or None, got 3"):
        check_parameters(namespace)


def test_a_value_papermill_injects_with_the_wrong_type_stops_the_notebook(tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError, match="'n_components' must be int, got 'many'"):
        papermill.execute_notebook(str(QUICKSTART), str(tmp_path / "out.ipynb"), parameters={"n_components": "many"},
                                   progress_bar=False)


@pytest.fixture(scope="module")
def second_run(tmp_path_factory):
    """The quickstart again with other parameters."""
    return run_notebook(QUICKSTART, tmp_path_factory.mktemp("runs") / "second",
                        dict(QUICKSTART_SMALL, n_components=4, seed=1), progress=False)


def test_two_runs_with_different_parameters_give_different_correct_folders(quickstart_run, second_run):
    for notebook_run, n_components, seed in ((quickstart_run, 6, 0), (second_run, 4, 1)):
        run = Run.open(notebook_run.folder)
        assert run.record["status"] == "complete"
        assert run.decomposition().W_.shape == (QUICKSTART_SMALL["n_examples"], n_components)
        assert list(run.components().index) == list(range(n_components))
        assert run.params["seed"] == seed and run.params["out"] == str(notebook_run.folder)
        entry = run.record["notebooks"]["quickstart"]
        assert entry["status"] == "complete" and entry["parameters"]["n_components"] == n_components
        assert set(entry["injected"]) == set(QUICKSTART_SMALL) | {"output_folder"} | ({"seed"} if seed else set())
        assert (notebook_run.folder / "report" / "index.html").exists()
    differences = compare_runs(quickstart_run.folder, second_run.folder)
    assert differences.loc["params.n_components"].tolist() == [6, 4]
    assert differences.loc["notebooks.quickstart.parameters.seed"].tolist() == [0, 1]
    assert "params.n_examples" not in differences.index  # the same in both
    assert not any(k.endswith("seconds") or k.endswith("started") for k in differences.index)
    assert "stages.fit.seconds" in compare_runs(quickstart_run.folder, second_run.folder, include_timings=True).index


def test_executed_notebook_keeps_static_panels_and_no_dead_widgets(quickstart_run):
    notebook = nbformat.read(quickstart_run.notebook, as_version=4)
    assert "widgets" not in notebook.metadata
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if WIDGET_VIEW in o.get("data", {})]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert 'class="npeff-table"' in html and 'class="tok ' in html and "KL ratio top/baseline" in html
    # The showcased component: chosen by a stated criterion, its number explained, also in the report.
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "shown because it has the highest KL ratio among the components whose top examples" in text
    assert "times as much" in text and "Shown because it has the highest KL ratio" in html
    report = (quickstart_run.folder / "report" / "index.html").read_text()
    assert "Shown because it has the highest KL ratio" in report and "times as much" in report
    # and checked against examples of its top set's classes, beside the random baseline
    assert "drawn with the top set&#x27;s mix of predicted classes" in text.replace("'", "&#x27;")
    assert "against examples of the top set's classes</h3>" in report


def test_the_workbench_snapshot_shows_the_showcased_component(quickstart_run):
    """The workbench is displayed after the showcase is selected, so its saved snapshot (the HTML beside
    the widget view) is of that component, not the largest one it opened on."""
    notebook = nbformat.read(quickstart_run.notebook, as_version=4)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    printed = "".join(o.get("text", "") for c in cells for o in c.outputs if o.output_type == "stream")
    showcased = int(re.search(r"^component (\d+): ", printed, re.M).group(1))
    snapshots = [o["data"]["text/html"] for c in cells for o in c.outputs
                 if "NPEFF workbench" in o.get("data", {}).get("text/html", "")]
    assert len(snapshots) == 1
    snapshot = snapshots[0]
    assert f"<b>Component {showcased}</b>" in snapshot  # the example viewer's title
    assert f"<b>Dashboard of component {showcased}</b>" in snapshot
    assert f"component {showcased}: examples 1-" in snapshot and 'class="tok ' in snapshot
    assert f"Perturbation trace of component {showcased}" in snapshot  # traced with the dashboard
    others = set(range(QUICKSTART_SMALL["n_components"])) - {showcased}
    assert not any(f"<b>Component {j}</b>" in snapshot for j in others)


def test_html_rendering_is_offline_and_starts_with_the_run_record(quickstart_run):
    html = quickstart_run.html.read_text()
    assert not re.search(r'<script[^>]*src="https?://', html)  # nothing to fetch
    assert "plotly.js v" in html  # the charts' library, inline
    assert html.index("This run") < html.index("NPEFF quickstart")
    assert "n_components*</b> 6" in html  # injected by papermill, and marked so
    assert 'class="npeff-table"' in html and 'class="tok ' in html
    assert "<title>quickstart · NPEFF workbench</title>" in html  # nbconvert's default was "Notebook" for every page
    # the page's first heading is the notebook's h1: the run's facts above it were an h2, out of order
    assert re.findall(r"<h(\d)", html)[0] == "1" and "This run" in html


def test_nbconvert_without_widget_state_shows_the_panels(quickstart_run, embedded_run):
    """Plain nbconvert, no help from the runner: the executed quickstart, and a notebook whose output
    still holds a live widget view but no widget state (as JupyterLab saves it by default)."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_filename(str(quickstart_run.notebook))
    assert 'class="npeff-table"' in html and 'class="tok ' in html

    from widgets import Workbench

    bundle = Workbench.from_run(embedded_run.path)._repr_mimebundle_()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("wb", outputs=[nbformat.v4.new_output("display_data", data=bundle)])]
    html, _ = HTMLExporter().from_notebook_node(notebook)
    assert 'class="npeff-table"' in html and 'class="tok ' in html
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {bundle[WIDGET_VIEW]["model_id"]: {}}, "version_major": 2, "version_minor": 0}}
    html, _ = HTMLExporter().from_notebook_node(notebook)
    assert 'class="npeff-table"' not in html  # with widget state nbconvert shows the widget instead


def test_analysis_notebook_opens_an_existing_run(quickstart_run, tmp_path):
    result = run_notebook(ANALYSIS, tmp_path / "analysis", {"run_folder": str(quickstart_run.folder), "component": 2},
                          progress=False)
    record = json.loads((tmp_path / "analysis" / "run.json").read_text())
    assert record["notebooks"]["analysis"]["parameters"]["component"] == 2
    html = result.html.read_text()
    assert "component 2: examples 1-10" in html and "Perturbation of component 2" in html
    assert (tmp_path / "analysis" / "report" / "index.html").exists()
    assert "KL against" in html  # the sweep's chart
    # The workbench's snapshot shows the component analysed, with its check (issue 20, item 12).
    snapshot = html.split("The workbench on this component")[1]
    assert "component 2: examples 1-5" in snapshot and "Perturbation of component 2" in snapshot
    assert "No perturbation check run yet" not in html and "Where the component lives" in snapshot


CHECKPOINTS = QUICKSTART.with_name("checkpoints.ipynb")


@pytest.mark.slow
def test_checkpoints_notebook_charts_components_over_training(tmp_path):
    declared = notebook_parameters(CHECKPOINTS)
    assert {"checkpoint_every", "max_checkpoints", "strategy", "output_folder"} <= set(declared)
    result = run_notebook(CHECKPOINTS, tmp_path / "checkpoints", {"max_checkpoints": 3, "n_examples": 200,
                                                                  "n_components": 8}, progress=False)
    record = json.loads((tmp_path / "checkpoints" / "run.json").read_text())
    assert record["notebooks"]["checkpoints"]["status"] == "complete"
    notebook = nbformat.read(result.notebook, as_version=4)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = result.html.read_text()
    assert "Components over training" in html and "accuracy per strategy" in html
    report = (tmp_path / "checkpoints" / "report" / "index.html").read_text()  # report.export_sections
    assert "plotly.js v" in report and "Reference components" in report


def small_notebook(path, source: str = "print(seed)"):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("seed: int = 0", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell(source)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_an_out_folder_with_braces_is_used_as_written(tmp_path):
    """Papermill fills ``{name}`` in paths from the parameters: the folder asked for is the one written."""
    notebook = small_notebook(tmp_path / "small.ipynb")
    result = run_notebook(notebook, tmp_path / "x{seed}", {"seed": 3}, progress=False)
    assert result.notebook == tmp_path / "x{seed}" / "small.ipynb" and result.notebook.exists()
    assert not (tmp_path / "x3").exists()


def test_a_notebook_papermill_cannot_start_leaves_a_failed_record(tmp_path, monkeypatch):
    import papermill

    def kernel_died(*args, **kwargs):
        raise RuntimeError("Kernel died before replying to kernel_info")

    notebook = small_notebook(tmp_path / "small.ipynb")
    monkeypatch.setattr(papermill, "execute_notebook", kernel_died)
    with pytest.raises(RuntimeError, match="Kernel died"):
        run_notebook(notebook, tmp_path / "out", {"seed": 1}, progress=False)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    entry = record["notebooks"]["small"]
    assert entry["status"] == "failed" and "Kernel died" in entry["error"] and record["status"] == "failed"


def test_a_kernel_the_system_killed_is_named_with_what_to_do(tmp_path, monkeypatch):
    """nbclient's DeadKernelError reached the user raw."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    def died(*args, **kwargs):
        raise DeadKernelError("Kernel died")

    notebook = small_notebook(tmp_path / "small.ipynb")
    monkeypatch.setattr(papermill, "execute_notebook", died)
    with pytest.raises(NotebookError, match=r"the kernel running small\.ipynb died \(Kernel died\): the system killed "
                                            r"it, often for lack of memory.*Run the same command again"):
        run_notebook(notebook, tmp_path / "out", {"seed": 1}, progress=False)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["notebooks"]["small"]["status"] == "failed"


def test_a_run_killed_before_its_page_leaves_no_page_of_the_run_before(tmp_path, monkeypatch):
    """A rerun with other parameters, killed while the notebook ran, left the earlier run's HTML, whose header
    read "This run complete, n_components 4" beside a folder of the 5-component run."""
    import papermill

    notebook = small_notebook(tmp_path / "small.ipynb")
    first = run_notebook(notebook, tmp_path / "out", {"seed": 1}, progress=False)
    assert first.html.exists()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", killed)
    with pytest.raises(KeyboardInterrupt):
        run_notebook(notebook, tmp_path / "out", {"seed": 2}, progress=False)
    assert not first.html.exists()
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["notebooks"]["small"]["status"] == "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_notebook(notebook, tmp_path / "fresh", {"seed": 2}, progress=False)
    # the folder's own record, which the notebook started, said "failed" beside an interrupted notebook
    assert json.loads((tmp_path / "fresh" / "run.json").read_text())["status"] == "interrupted"


def test_a_run_killed_while_its_notebook_is_saved_leaves_the_last_whole_save(tmp_path, monkeypatch):
    """papermill saves the executed notebook at every cell by emptying the file, then writing it: a run killed in
    between (here, the third save) left it empty, which JupyterLab cannot open, also over an earlier run's."""
    import builtins

    notebook = small_notebook(tmp_path / "small.ipynb")
    executed = tmp_path / "out" / "small.ipynb"
    real_open, saves = builtins.open, []

    def killed_mid_save(file, mode="r", *args, **kwargs):
        if str(file) == str(executed) and "w" in mode:
            saves.append(file)
            if len(saves) >= 3:  # emptied, as papermill's open(path, "w") does, and then the process is gone
                real_open(file, mode, *args, **kwargs).close()
                return real_open(os.devnull, mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", killed_mid_save)
    run_notebook(notebook, tmp_path / "out", {"seed": 1}, progress=False)
    monkeypatch.undo()
    nbformat.read(executed, as_version=4)  # whole JSON: the last save, or the finished notebook


def test_an_unknown_kernel_or_an_out_that_is_a_file_is_refused_before_anything_is_written(tmp_path):
    notebook = small_notebook(tmp_path / "small.ipynb")
    with pytest.raises(ValueError, match=r"no Jupyter kernel is named 'no-such-kernel'; the kernels installed are \[.*'python3'"):
        run_notebook(notebook, tmp_path / "out", {"seed": 1}, kernel_name="no-such-kernel", progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="notes.txt is a file, not a folder"):
        run_notebook(notebook, tmp_path / "notes.txt", {"seed": 1}, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "small.ipynb"]


@pytest.mark.parametrize("notebook, parameters, message", [
    (QUICKSTART, {"epsilon": -1.0}, r"'epsilon' must be more than 0, got -1\.0; it is: perturbation size"),
    (QUICKSTART, {"n_components": 0}, r"'n_components' must be at least 1, got 0"),
    # 20 passed the check and failed minutes later, at the perturbation checks, with a fix the notebook cannot take
    (QUICKSTART, {"n_examples": 20}, r"'n_examples' must be at least 21, got 20; it is: examples to analyse, of which the 20 top"),
    (ANALYSIS, {"n_examples": 0}, r"'n_examples' must be at least 1, got 0; it is: top examples to show"),
    (ANALYSIS, {"epsilon": float("inf")}, r"'epsilon' must be a finite number, got inf"),
    (QUICKSTART.with_name("checkpoints.ipynb"), {"strategy": "matching"},
     r"'strategy' must be one of \['transform', 'match', 'both'\], got 'matching'"),
    # a folder that is not there was found in the notebook's cells, after its record was written
    (ANALYSIS, {"run_folder": "no/such/run"}, r"'run_folder' must be an existing folder, got 'no/such/run', which does "
                                              r"not exist \(relative to .*\); it is: the run to open"),
    (ANALYSIS, {}, r"'run_folder' must be an existing folder, got 'runs/demo'.*; pass -p run_folder FOLDER"),
    (QUICKSTART, {"model_path": "no/model"}, r"'model_path' must be an existing folder"),
    # found in the fourth cell, 20 s in, after the run folder was written, naming no parameter
    (QUICKSTART, {"device": "5"}, r"notebook parameter 'device': '5' is not a device name.*Pass -p device cpu"),
    (QUICKSTART, {"device": "tpu"}, r"notebook parameter 'device': .*Pass -p device cpu"),
])
def test_values_out_of_the_declared_bounds_are_refused_before_anything_is_written(notebook, parameters, message,
                                                                                  tmp_path, monkeypatch):
    """-p epsilon -1 was refused in the notebook's last cells, after the whole PEF run and fit had written a run
    folder; -p n_examples 0 of the analysis notebook named page_size, an argument the user never set."""
    monkeypatch.chdir(tmp_path)  # relative folders (the analysis notebook's default runs/demo) are read from here
    with pytest.raises(ValueError, match=message):
        run_notebook(notebook, tmp_path / "out", parameters, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_folder_of_the_user_s_files_or_a_second_output_folder_is_refused(tmp_path):
    """run --out thesis/ wrote a whole run beside thesis.tex (demo --out refused that folder), and
    -p output_folder elsewhere sent the run there while the record and the page stayed in --out."""
    notebook = QUICKSTART
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files and is not a run folder"):
        run_notebook(notebook, tmp_path / "thesis", QUICKSTART_SMALL, progress=False)
    assert [p.name for p in (tmp_path / "thesis").iterdir()] == ["thesis.tex"]
    with pytest.raises(ValueError, match=r"the notebook's output_folder is its out folder .*--out .*elsewhere"):
        run_notebook(notebook, tmp_path / "out", dict(QUICKSTART_SMALL, output_folder=str(tmp_path / "elsewhere")),
                     progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("notebook", sorted(QUICKSTART.parent.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_number_a_shipped_notebook_takes_states_its_bound(notebook):
    """A bound the help text states is checked before the notebook runs; a count without one (the checkpoint
    notebook's iterations) let -1 through to a late cell."""
    numbers = [p for p in notebook_parameters(notebook).values() if {int, float} & set(p.types)]
    assert numbers and [p.name for p in numbers if p.bound is None] == []

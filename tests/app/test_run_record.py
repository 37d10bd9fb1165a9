"""A run's record vouches only for files that are whole (issue 19): a stage or notebook is "done"
or "complete" only after its files are written, atomically; opening a run that stopped says what
is missing and how to finish it."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.widgets.synthetic import synthetic_run
from workbench.app import notebook as notebook_module
from workbench.app.explore import RunExplorer
from workbench.app.notebook import run_notebook
from workbench.app.pipeline import check_new_run_folder, run_embedded
from workbench.app.run_folder import COMPONENTS, DECOMPOSITION, RUN_RECORD, IncompleteRunError, Run, RunRecorder
from workbench.store.files import StoreError
from workbench.store.lock import LOCK, FolderBusyError, exclusive


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return synthetic_run(tmp_path_factory.mktemp("runs") / "done", n_components=4, n_examples=200)


def _copy(finished, tmp_path, **record):
    folder = shutil.copytree(finished, tmp_path / "run")
    data = json.loads((folder / RUN_RECORD).read_text())
    data.update(record)
    (folder / RUN_RECORD).write_text(json.dumps(data))
    return folder


def test_a_finished_run_opens(finished):
    assert RunExplorer.open(finished).n_components == 4


def test_a_run_killed_in_a_stage_names_what_is_missing_and_how_to_finish(finished, tmp_path):
    # killed while the component table was written: the stage says "running", the file may be partial
    folder = _copy(finished, tmp_path, status="running",
                   stages={"pefs": {"status": "done"}, "fit": {"status": "done"}, "analysis": {"status": "running"}})
    (folder / COMPONENTS).write_text("component,mass\n0,")  # half-written
    with pytest.raises(IncompleteRunError, match=r"is incomplete: its record says 'running', stages not done: "
                                                 r"analysis \(running\); missing: components\.csv\. Its run was stopped.*"
                                                 r"running the same command again"):
        RunExplorer.open(folder)
    assert Run(folder).missing() == [COMPONENTS]  # Run(path) still reads what is there


def test_a_run_that_failed_before_its_fit_names_the_missing_files(finished, tmp_path):
    folder = _copy(finished, tmp_path, status="failed", stages={"pefs": {"status": "done"}, "fit": {"status": "failed"}})
    (folder / DECOMPOSITION).unlink()
    (folder / COMPONENTS).unlink()
    with pytest.raises(IncompleteRunError, match=r"'failed', stages not done: fit \(failed\); missing: "
                                                 r"decomposition\.safetensors, components\.csv"):
        Run.open(folder)



def test_a_stage_stopped_by_ctrl_c_says_interrupted_not_failed(tmp_path):
    recorder = RunRecorder(tmp_path / "run", {"n_examples": 2})
    with pytest.raises(KeyboardInterrupt), recorder.stage("pefs"):
        raise KeyboardInterrupt
    record = json.loads((tmp_path / "run" / RUN_RECORD).read_text())
    assert record["status"] == "interrupted" and record["stages"]["pefs"]["status"] == "interrupted"
    with pytest.raises(ValueError), recorder.stage("fit"):
        raise ValueError("a fault")
    assert json.loads((tmp_path / "run" / RUN_RECORD).read_text())["stages"]["fit"]["status"] == "failed"
    with pytest.raises(IncompleteRunError, match="'failed'"):
        Run.open(tmp_path / "run")


NOTEBOOK = nbformat.v4.new_notebook(cells=[
    nbformat.v4.new_code_cell("x: int = 1  # a number", metadata={"tags": ["parameters"]}),
    nbformat.v4.new_code_cell("print(x * 2)"),
], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def test_a_notebook_run_killed_while_its_html_is_written_leaves_a_record_that_says_running(tmp_path, monkeypatch):
    source = tmp_path / "tiny.ipynb"
    nbformat.write(NOTEBOOK, source)
    real_write_text = notebook_module.Path.write_text

    def killed_half_way(self, text, *args, **kwargs):
        if self.name == "tiny.html" and ".tmp-" in self.parent.name:  # atomic_path's temporary
            real_write_text(self, text[: len(text) // 2], *args, **kwargs)
            raise KeyboardInterrupt
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(notebook_module.Path, "write_text", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        run_notebook(source, tmp_path / "out", {"x": 3}, progress=False)
    record = json.loads((tmp_path / "out" / RUN_RECORD).read_text())
    assert record["notebooks"]["tiny"]["status"] == "running" and record["status"] == "running"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lock", RUN_RECORD, "tiny.ipynb"], "no half-written page"

    monkeypatch.undo()
    done = run_notebook(source, tmp_path / "out", {"x": 3}, progress=False)
    record = json.loads((tmp_path / "out" / RUN_RECORD).read_text())
    assert record["notebooks"]["tiny"]["status"] == "complete" and record["status"] == "complete"
    assert done.html.read_text().rstrip().endswith("</html>")


def test_a_run_folder_that_is_a_file_is_refused_before_anything_is_written(tmp_path):
    from workbench.app.run_folder import RunRecorder
    from workbench.store import StoreError

    (tmp_path / "run").write_text("mine")
    with pytest.raises(StoreError, match=r"run is a file, not a folder; choose a new or empty folder for the run"):
        RunRecorder(tmp_path / "run", {})
    assert (tmp_path / "run").read_text() == "mine"


def test_a_pipeline_run_by_a_notebook_keeps_the_notebook_s_entry_until_the_notebook_ends(tmp_path, monkeypatch):
    """The notebook writes its entry ("running") first; the pipeline it runs writes the record
    again and must keep it, and its own end leaves the record running until the notebook ends:
    a notebook killed after its pipeline never leaves a record that says complete."""
    from workbench.app.run_folder import RunRecorder
    from workbench.store.lock import HELD_FOR_CHILDREN_ENV

    folder = tmp_path / "run"
    folder.mkdir()
    monkeypatch.setenv(HELD_FOR_CHILDREN_ENV, f"1:{folder.resolve()}")  # as the notebook run sets it for its kernel
    entry = {"status": "running", "source": "quickstart.ipynb"}
    (folder / RUN_RECORD).write_text(json.dumps({"format": "npeff-run", "status": "running", "notebooks": {"quickstart": entry}}))
    recorder = RunRecorder(folder, {"seed": 0})
    with recorder.stage("pefs"):
        pass
    recorder.finish()
    record = json.loads((folder / RUN_RECORD).read_text())
    assert record["notebooks"] == {"quickstart": entry} and record["status"] == "running"
    finished = notebook_module._with_notebook(folder, "quickstart", dict(entry, status="complete"), {}, finished=True)
    assert finished["status"] == "complete"


def test_a_run_killed_just_after_its_first_record_is_not_taken_for_finished(finished, tmp_path):
    # a rerun with new parameters writes its record (no stages yet) over a finished folder's files, and is killed
    folder = _copy(finished, tmp_path, status="running", stages={}, params={"n_components": 9})
    with pytest.raises(IncompleteRunError, match=r"missing: examples\.parquet, decomposition\.safetensors, components\.csv"):
        Run.open(folder)


def _decomposition_of(folder, tmp_path, **run) -> None:
    shutil.copy(synthetic_run(tmp_path / "other", **run) / DECOMPOSITION, folder / DECOMPOSITION)


def _rewritten_table(folder, change) -> None:
    change(Run(folder).components()).to_csv(folder / COMPONENTS)


@pytest.mark.parametrize("mix, message", [
    (lambda folder, tmp: _decomposition_of(folder, tmp, n_components=4, n_examples=120),
     r"mixes files of different runs: examples\.parquet has 200 examples, decomposition\.safetensors has 120"),
    (lambda folder, tmp: _rewritten_table(folder, lambda table: table.iloc[:2]),
     r"components\.csv has 2 components and decomposition\.safetensors 4"),
    # another fit of the same examples and components (the counts agree), an edited table
    (lambda folder, tmp: _decomposition_of(folder, tmp, n_components=4, n_examples=200, seed=1),
     r"decomposition\.safetensors is not the file this run wrote: it is damaged or incomplete .*, or another run's"),
    (lambda folder, tmp: _rewritten_table(folder, lambda table: table.assign(mass=table["mass"][::-1].to_numpy())),
     r"components\.csv is not the file this run wrote"),
], ids=["other examples", "other components", "another fit", "an edited table"])
def test_a_folder_holding_files_of_two_runs_is_refused(finished, tmp_path, mix, message):
    folder = _copy(finished, tmp_path)
    mix(folder, tmp_path)
    with pytest.raises(StoreError, match=message):
        Run.open(folder)


@pytest.mark.parametrize("cut", ["within a row", "at a row's end"])
def test_a_component_table_cut_short_is_named_damaged_not_another_run_s(finished, tmp_path, cut):
    """A components.csv cut short (a full disk, an interrupted copy) was "mixes files of different runs": it
    is damaged or incomplete, with what to do."""
    folder = _copy(finished, tmp_path)
    data = (folder / COMPONENTS).read_bytes()
    end = len(data) - 3 if cut == "within a row" else data.rindex(b"\n", 0, len(data) - 1) + 1
    (folder / COMPONENTS).write_bytes(data[:end])
    for opener in (Run.open, RunExplorer.open):
        with pytest.raises(StoreError, match=r"components\.csv is damaged or incomplete\b.*; copy the run folder again "
                                             r"whole, or run the run again into a new folder") as error:
            opener(folder)
        assert "mixes" not in str(error.value)


def test_damaged_tables_and_records_of_a_later_version_are_named(finished, tmp_path):
    folder = _copy(finished, tmp_path)
    (folder / "examples.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(StoreError, match=r"examples\.parquet cannot be read \(damaged"):
        Run.open(folder)
    folder = _copy(finished, tmp_path / "json")
    (folder / RUN_RECORD).write_bytes((folder / RUN_RECORD).read_bytes()[:100])  # said "not valid JSON", no fix
    with pytest.raises(StoreError, match=r"run\.json is not valid JSON \(truncated.*\); run the command that made the "
                                         r"folder again$"):
        Run.open(folder)
    folder = _copy(finished, tmp_path / "b", format_version=99)
    with pytest.raises(StoreError, match=r"format version 99; this package .* reads version 1"):
        Run.open(folder)
    folder = _copy(finished, tmp_path / "c", format_version="1")  # read "has format version 1; ... reads version 1"
    with pytest.raises(StoreError, match=r"run\.json is damaged: its format_version is '1', not a version number"):
        Run.open(folder)
    for key in ("stages", "params"):  # edited by hand into lists: raw AttributeErrors from Run.open and the explorer
        folder = _copy(finished, tmp_path / key, **{key: [1, 2]})
        with pytest.raises(StoreError, match=rf"run\.json is damaged: '{key}' should be an object"):
            Run.open(folder)
    # one stage, or one notebook's entry, edited into a string: "AttributeError: 'str' object has no attribute 'get'"
    for key in ("stages", "notebooks"):
        folder = _copy(finished, tmp_path / f"{key}-entry", **{key: {"fit": "done"}})
        with pytest.raises(StoreError, match=rf"run\.json is damaged: {key}\['fit'\] should be an object"):
            Run.open(folder)


@pytest.mark.parametrize("name, value, should", [
    ("n_top", "20", "a whole number of at least 1"), ("max_length", "abc", "a whole number of at least 2, or null"),
    ("kind", "bogus", "'lrm' or 'd'"), ("n_values", [8192], "a whole number of at least 1, or null"),
])
def test_a_parameter_of_the_record_edited_into_another_type_is_named_damaged(finished, tmp_path, name, value, should):
    """"n_top": "20" in run.json was refused as 'pass n_top=10', as if the user had passed it; max_length "abc" was
    int()'s 'invalid literal', kind "bogus" 'kind must be ...': the record's entry is named damaged, with what to do."""
    folder = _copy(finished, tmp_path)
    data = json.loads((folder / RUN_RECORD).read_text())
    data["params"][name] = value
    (folder / RUN_RECORD).write_text(json.dumps(data))
    explorer = None if name == "n_top" else RunExplorer.open(folder)
    with pytest.raises(StoreError, match=rf"run\.json is damaged: params\['{name}'\] should be {re.escape(should)}, "
                                         rf"found {re.escape(repr(value))} .*; run the command that made the folder again"):
        RunExplorer.open(folder) if explorer is None else (explorer.max_length, explorer._text_pefs, explorer.decomposition)


def test_a_folder_another_process_writes_is_refused_and_a_killed_writer_frees_it(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from workbench.store.lock import exclusive\n"
                               f"with exclusive({str(folder)!r}, 'a run'):\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=rf"another process \(pid {holder.pid}\) is writing a run into"):
            run_embedded(folder, n_examples=8, n_components=2, progress=False)
        assert sorted(p.name for p in folder.iterdir()) == [LOCK]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    with exclusive(folder, "a run"):  # the lock died with its process
        pass
    check_new_run_folder(folder)  # a folder holding only a lock is still a new run's


def test_an_unfinished_run_names_the_command_that_made_it(finished, tmp_path):
    folder = _copy(finished, tmp_path, made_by="run_model", status="running", stages={"pefs": {"status": "running"}})
    with pytest.raises(IncompleteRunError, match=r"run_model\('.*run', \.\.\.\)"):
        Run.open(folder)
    folder = _copy(finished, tmp_path / "b", status="running", stages={"pefs": {"status": "running"}},
                   notebooks={"quickstart": {"source": "notebooks/quickstart.ipynb", "status": "running"}})
    with pytest.raises(IncompleteRunError, match=r"python -m workbench run notebooks/quickstart\.ipynb --out "):
        Run.open(folder)
    # a folder with spaces is quoted, so that the command can be pasted
    folder = _copy(finished, tmp_path / "my runs", status="running", stages={"pefs": {"status": "running"}})
    assert Run(folder).command().startswith(f"python -m workbench demo --out '{folder}' ")


def test_a_path_that_is_no_run_folder_says_what_it_is(tmp_path):
    (tmp_path / "file").write_text("x")
    for path, what in ((tmp_path / "missing", "it does not exist"), (tmp_path / "file", "it is a file"),
                       (tmp_path, "it has no run.json")):
        with pytest.raises(StoreError, match=rf"is not a run folder.*{what}.*run_embedded, run_model"):
            RunExplorer.open(path)
    with pytest.raises(TypeError, match=r"a run folder is a path \(str or pathlib\.Path\), got int"):
        RunExplorer.open(42)


def test_a_run_with_other_parameters_removes_the_readings_of_the_earlier_one(tmp_path):
    """Labels, exports and a report are made from one decomposition: after a rerun with other settings
    the labels named the new components with the old ones' names, without a word."""
    from workbench.app.run_folder import EXPORTS, LABELS, REPORT, RunRecorder

    def readings():
        (tmp_path / LABELS).write_text("component,name\n0,old\n")
        for folder in (EXPORTS, REPORT):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / "index.html").write_text("old")

    RunRecorder(tmp_path, {"n_components": 4, "out": Path("x")}).finish()
    readings()
    RunRecorder(tmp_path, {"n_components": 4, "out": Path("x")})  # the same run again: its readings still hold
    assert (tmp_path / LABELS).exists() and (tmp_path / EXPORTS).is_dir() and (tmp_path / REPORT).is_dir()
    RunRecorder(tmp_path, {"n_components": 8, "out": Path("x")})
    assert not any((tmp_path / name).exists() for name in (LABELS, EXPORTS, REPORT))
    assert (tmp_path / "run.json").exists()


def test_a_run_that_writes_another_decomposition_removes_the_readings_of_the_earlier_one(tmp_path):
    """With the same parameters a run can still make another decomposition (a model saved again in place, other texts
    of the same count to run_model): the earlier labels named the new components, components 0 and 2 each other's."""
    from workbench.app.run_folder import EXPORTS, LABELS, REPORT, RunRecorder

    def run(decomposition: bytes) -> RunRecorder:
        recorder = RunRecorder(tmp_path, {"n_components": 4, "out": Path("x")})
        (tmp_path / DECOMPOSITION).write_bytes(decomposition)
        recorder.wrote(DECOMPOSITION)
        recorder.finish()
        return recorder

    def readings():
        (tmp_path / LABELS).write_text("component,name\n0,old\n")
        (tmp_path / EXPORTS).mkdir(exist_ok=True)
        (tmp_path / REPORT).mkdir(exist_ok=True)

    run(b"the first fit")
    readings()
    run(b"the first fit")  # the same decomposition again: its readings still hold
    assert all((tmp_path / name).exists() for name in (LABELS, EXPORTS, REPORT))
    run(b"another fit")
    assert not any((tmp_path / name).exists() for name in (LABELS, EXPORTS, REPORT))


def test_an_explorer_opened_before_a_rerun_writes_no_readings_into_the_new_run(tmp_path):
    """A Workbench left open on a folder that was then run again wrote the earlier decomposition's labels,
    exports and report into it, shown from then on as the new run's own."""
    from workbench.report import export_html

    folder = synthetic_run(tmp_path / "run", n_components=4, n_examples=200)
    stale = RunExplorer.open(folder)
    stale.export()  # the folder as it was opened: fine
    synthetic_run(folder, n_components=4, n_examples=200, seed=1)  # run again, another decomposition
    for write in (stale.export, lambda: export_html(stale, folder / "report", highlight=False, progress=False)):
        with pytest.raises(StoreError, match=r"was run again since it was opened.*open it again \(RunExplorer\.open"):
            write()
    RunExplorer.open(folder).export()  # a fresh explorer may


def test_another_run_s_examples_of_the_same_count_are_refused(embedded_run, tmp_path):
    """examples.parquet was not among the files a run records: another run's, of as many rows, passed Run.open and
    the explorer, every text another (26 of 64 labels disagreed with the PEF store)."""
    import pandas as pd

    folder = shutil.copytree(embedded_run.path, tmp_path / "run")
    assert "examples.parquet" in Run.open(folder).record["files"]
    examples = pd.read_parquet(folder / "examples.parquet")
    examples.iloc[::-1].reset_index(drop=True).to_parquet(folder / "examples.parquet")
    with pytest.raises(StoreError, match=r"examples\.parquet is not the file this run wrote"):
        Run.open(folder)


@pytest.mark.parametrize("held", [True, False], ids=["run by a notebook", "a killed notebook's entry"])
def test_a_run_drops_the_pages_of_notebooks_it_no_longer_speaks_for(tmp_path, monkeypatch, held):
    """A demo with another seed into a quickstart's folder kept the quickstart's page of seed 0 and its "complete"
    entry beside the new decomposition; a killed notebook's "running" entry kept the folder "running" for ever.
    The entry of the notebook running this pipeline (which holds the folder for it) stays."""
    from workbench.store.lock import HELD_FOR_CHILDREN_ENV

    folder = tmp_path / "run"
    first = RunRecorder(folder, {"seed": 0})
    first.record["notebooks"] = {
        "quickstart": {"status": "complete", "executed": "quickstart.ipynb", "html": "quickstart.html"},
        "running": {"status": "running", "executed": "running.ipynb", "html": "running.html"},
        "odd": {"status": "complete", "executed": "../outside.ipynb", "html": 3},
    }
    first._save()
    for name in ("quickstart.ipynb", "quickstart.html", "running.ipynb"):
        (folder / name).write_text("page")
    (tmp_path / "outside.ipynb").write_text("not the run's")
    if held:
        monkeypatch.setenv(HELD_FOR_CHILDREN_ENV, f"1:{folder.resolve()}")
    same = RunRecorder(folder, {"seed": 0})  # the same parameters: the same decomposition, its pages hold
    assert (folder / "quickstart.html").exists() and ("running" in same.record["notebooks"]) == held
    second = RunRecorder(folder, {"seed": 1})
    assert list(second.record.get("notebooks", {})) == (["running"] if held else [])
    pages = sorted(p.name for p in folder.iterdir() if p.suffix in (".ipynb", ".html"))
    assert pages == (["running.ipynb"] if held else [])
    assert (tmp_path / "outside.ipynb").exists()


def test_a_column_of_the_user_s_own_leaves_the_examples_the_run_s(embedded_run, tmp_path):
    """The identity of examples.parquet is of its texts and labels: an attribute column added for purity passes."""
    import pandas as pd

    folder = shutil.copytree(embedded_run.path, tmp_path / "run")
    examples = pd.read_parquet(folder / "examples.parquet")
    examples.assign(topic="films").to_parquet(folder / "examples.parquet")
    assert Run.open(folder).examples["topic"].eq("films").all()


def test_the_component_table_reads_back_labels_as_class_indices(finished, tmp_path):
    """A component whose top set has no known label has an empty label cell: the column came back float, its
    labels "1.0", and filtering by label 1 found none of its components."""
    import pandas as pd

    from workbench.app.run_folder import file_identity

    folder = _copy(finished, tmp_path)
    table = pd.read_csv(folder / COMPONENTS, index_col="component")
    table["label"] = [1, None, 0, 1]
    table.to_csv(folder / COMPONENTS)
    data = json.loads((folder / RUN_RECORD).read_text())
    data["files"][COMPONENTS] = file_identity(folder / COMPONENTS)
    (folder / RUN_RECORD).write_text(json.dumps(data))
    back = Run(folder).components()
    assert [str(v) for v in back["label"].dropna()] == ["1", "0", "1"] and back["label"].isna().tolist()[1]
    assert list(RunExplorer.open(folder).components(label=1).rows.index) == [0, 3]


def test_the_component_table_reads_back_attribute_values_as_their_text(finished, tmp_path):
    """Read with pandas' defaults, "NA" (North America) came back missing, naming a component "nan 1.00", and
    "007" came back 7."""
    import pandas as pd

    from workbench.app.run_folder import file_identity

    folder = _copy(finished, tmp_path)
    table = pd.read_csv(folder / COMPONENTS, index_col="component")
    table["region"], table["region_purity"] = ["NA", "EU", "NA", None], [1.0, 0.9, 0.8, 0.1]
    table["code"], table["code_purity"] = ["007", "042", "null", "None"], 1.0
    table.to_csv(folder / COMPONENTS)
    data = json.loads((folder / RUN_RECORD).read_text())
    data["files"][COMPONENTS] = file_identity(folder / COMPONENTS)
    (folder / RUN_RECORD).write_text(json.dumps(data))
    back = Run(folder).components()
    assert back["region"].tolist()[:3] == ["NA", "EU", "NA"] and pd.isna(back["region"].iloc[3])
    assert back["code"].tolist() == ["007", "042", "null", "None"]
    assert back["region_purity"].dtype == float and back["mass"].dtype == float
    assert not any("nan" in name for name in RunExplorer.open(folder).table["name"])


def test_a_run_moved_and_run_again_with_the_same_arguments_keeps_its_readings(tmp_path):
    """The run's folder is in its parameters (out): run again after mv runs/a runs/b, the same arguments were
    other parameters, and the labels, exports and report of the same decomposition were deleted."""
    from workbench.app.run_folder import EXPORTS, LABELS, REPORT, RunRecorder

    RunRecorder(tmp_path / "a", {"n_components": 4, "out": str(tmp_path / "a")}).finish()
    (tmp_path / "a" / LABELS).write_text("component,name\n0,old\n")
    (tmp_path / "a" / EXPORTS).mkdir()
    (tmp_path / "a" / REPORT).mkdir()
    (tmp_path / "a").rename(tmp_path / "b")
    RunRecorder(tmp_path / "b", {"n_components": 4, "out": str(tmp_path / "b")})
    assert all((tmp_path / "b" / name).exists() for name in (LABELS, EXPORTS, REPORT))


def test_a_report_whose_run_was_run_again_while_it_was_made_is_not_put_in_place(tmp_path, monkeypatch):
    """export_html checked the run only before making its pages: a rerun that wrote another decomposition meanwhile
    got the earlier decomposition's report in its folder, shown from then on as its own."""
    from workbench.report import export_html, pages

    folder = synthetic_run(tmp_path / "run", n_components=4, n_examples=200)
    explorer = RunExplorer.open(folder)
    make_section = pages._component_section

    def rerun_meanwhile(*args, **kwargs):
        if not (folder / "rerun-done").exists():
            synthetic_run(folder, n_components=4, n_examples=200, seed=1)
            (folder / "rerun-done").write_text("")
        return make_section(*args, **kwargs)

    monkeypatch.setattr(pages, "_component_section", rerun_meanwhile)
    with pytest.raises(StoreError, match=r"was run again since it was opened"):
        export_html(explorer, folder / "report", highlight=False, progress=False)
    assert not (folder / "report").exists() and not list(folder.glob(".report*"))


def test_an_explorer_opened_before_a_rerun_reads_nothing_of_the_new_run_beside_the_old(tmp_path):
    """An explorer reads its files as they are asked for: after a rerun its W was the first run's and its table and
    examples the second's, warned of as 'components.csv has 6 rows for 4 components; recomputing it' and refused
    as 'labels has 300 rows but W has 200: pass the examples the decomposition was fitted on'."""
    folder = synthetic_run(tmp_path / "run", n_components=4, n_examples=200)
    explorer = RunExplorer.open(folder)
    assert explorer.W.shape == (200, 4)
    synthetic_run(folder, n_components=6, n_examples=300, seed=1)
    with pytest.raises(StoreError, match=r"was run again since it was opened \(or is running now\): its "
                                         r"components\.csv, read now, is not of the run opened.*open it again"):
        explorer.table
    assert RunExplorer.open(folder).table.shape[0] == 6

    moved = RunExplorer.open(folder)
    folder.rename(tmp_path / "moved")
    with pytest.raises(StoreError, match=r"cannot read examples\.parquet: the run folder .*run was moved or deleted "
                                         r"since it was opened; open it again where it is now"):
        moved.examples

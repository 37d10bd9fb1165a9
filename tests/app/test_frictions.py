"""Frictions a new user met (issue 20): the PEF bar's estimate (item 2), file modes (item 4), the model
loading quietly (item 7) and the demo's --help (item 10)."""

import os
import stat

import pytest

from workbench.app.cli import main
from workbench.runner.estimate import PefEstimate
from workbench.store.files import write_json


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_written_with_the_mode_the_umask_allows(tmp_path, embedded_run):
    """Item 4: run.json, the decomposition and exports were 0600 (temporary files renamed into place)."""
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        assert _mode(tmp_path / "a.json") == 0o644
        os.umask(0o027)
        write_json(tmp_path / "b.json", {"b": 1})
        assert _mode(tmp_path / "b.json") == 0o640
        os.umask(0o022)
        from workbench.app.explore import RunExplorer

        written = RunExplorer.open(embedded_run.path).export(tmp_path / "exports", format="csv")
        assert {_mode(p) for p in written.values()} == {0o644}
    finally:
        os.umask(previous)
    for name in ("run.json", "decomposition.safetensors"):
        assert _mode(embedded_run.path / name) == 0o666 & ~previous


def test_the_time_left_counts_down_with_the_run():
    """Item 2: the bar's estimate came from the probe and stayed; it now follows the examples left."""
    estimate = PefEstimate.__new__(PefEstimate)
    estimate.path, estimate.peak_memory_bytes, estimate.seconds_per_example = None, 2**30, 0.5
    estimate.seconds_left = 240.0
    assert estimate.postfix().endswith("est. 4 min left")
    assert estimate.postfix(60).endswith("est. 30 s left")
    assert estimate.postfix(0).endswith("est. 0 s left")


def test_progress_bar_ends_at_zero_left(tmp_path, bert3, bert_inputs, capsys):
    from workbench import write_pefs

    write_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=300, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert err.rstrip().endswith("est. 0 s left]") or "est. 0 s left]" in err.splitlines()[-1]


def test_loading_a_saved_model_prints_nothing(embedded_run, capfd):
    """Item 7: transformers' 'Loading weights' bar stood above every workbench."""
    from workbench.models.embedded import load_default_model

    capfd.readouterr()
    load_default_model(embedded_run.path / "model")
    out, err = capfd.readouterr()
    assert "Loading weights" not in err + out


def test_demo_help_describes_every_option_with_its_default(capsys):
    """Item 10."""
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    options = text.split("options:")[1]
    for option in ("--out", "--n-examples", "--n-components", "--n-values", "--n-iters-g-only", "--n-iters-joint",
                   "--seed", "--base", "--device"):
        line = options.split(f" {option} ", 1)[1].split(" --")[0]  # its entry in the options list
        words, default = line.split("(default: ")
        assert len(words.split()) >= 3, option  # a line of help beside the metavar
        assert default.strip(" )"), option


@pytest.mark.parametrize("argv, message", [
    (["pefs", "--out", "x", "--n-examples", "-5"], "--n-examples: must be at least 1, got -5"),
    (["fit", "s", "--out", "o", "--n-iters-joint", "-1"], "--n-iters-joint: must be at least 0, got -1"),
    (["fit", "s", "--out", "o", "--seed", str(2**70)], f"--seed: must be at least 0 and at most {2**63 - 1}, got {2**70}"),
    (["fit", "s", "--out", "o", "--timeout-minutes", "-1"], "--timeout-minutes: must be a finite number more than 0, got -1"),
    (["fit", "s", "--out", "o", "--timeout-minutes", "inf"], "--timeout-minutes: must be a finite number more than 0, got inf"),
    # a device that does not exist named the flag nowhere: "'5' is not a device name"
    (["demo", "--out", "o", "--device", "5"], "--device 5: '5' is not a device name; use 'cpu', 'cuda' or 'cuda:N' "
                                              "(cuda:5 for the GPU numbered 5)"),
    (["pefs", "--out", "o", "--device", "tpu"], "--device tpu: 'tpu' is not a device name"),
    (["transform", "d", "s", "--out", "o", "--device", "cuda:99"], "--device cuda:99: device 'cuda:99'"),
])
def test_counts_are_checked_by_the_command_line(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["pefs", "--out", "{tmp}/s", "--model-path", "{tmp}/no/such/dir"], "--model-path {tmp}/no/such/dir is not a saved "
                                                                         "model folder (it does not exist)"),
    (["pefs", "--out", "{tmp}/s", "--model-path", "{tmp}", "--base", "minilm"], "pass one of them"),
    (["run", "{tmp}/missing.ipynb", "--out", "{tmp}/o"], "missing.ipynb is not a notebook file (.ipynb)"),
])
def test_bad_paths_are_named_before_any_work(argv, message, tmp_path, caplog):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert message.format(tmp=tmp_path) in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_store_inside_the_model_folder_is_refused(tmp_path, caplog):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert main(["pefs", "--out", str(tmp_path / "model" / "pefs"), "--model-path", str(tmp_path / "model")]) == 2
    assert "is inside the --model-path folder" in caplog.text and not (tmp_path / "model" / "pefs").exists()


@pytest.mark.parametrize("module, argv, message", [
    ("bench", ["--repeats", "0"], "--repeats: must be at least 1, got 0"),
    ("bench", ["--threads", "-2"], "--threads: must be at least 1, got -2"),
    ("bench", ["--device", "tpu"], "--device tpu: 'tpu' is not a device name"),
    ("bench", ["--only", ","], "--only names no section"),
    ("bench", ["--json", "{tmp}/no/such/x.json"], "--json {tmp}/no/such/x.json: the folder {tmp}/no/such does not exist"),
    ("bench.architectures", ["--out", "{tmp}/no/such/a.md"], "the folder {tmp}/no/such does not exist"),
    ("evaluate", ["--out", "{tmp}"], "--out {tmp} is a folder; give the file to write, e.g. {tmp}/evaluation.md"),
    ("evaluate", ["--n-examples", "0"], "--n-examples: must be at least 20, got 0"),
    ("evaluate", ["--seeds", "-1"], "--seeds: must be at least 0, got -1"),
])
def test_benchmarks_and_evaluations_check_their_options_before_measuring(module, argv, message, tmp_path, capsys):
    """A typo in an output path was found after the whole benchmark (minutes), as a raw traceback."""
    import importlib

    main_of = importlib.import_module(f"workbench.{module}").main
    with pytest.raises(SystemExit) as exit:
        main_of([a.format(tmp=tmp_path) for a in argv])
    assert exit.value.code == 2 and message.format(tmp=tmp_path) in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_fit_and_transform_refuse_to_write_over_their_inputs(embedded_run, tmp_path, caplog):
    """Checked before any work: a fit written into its own store would make the store unusable."""
    store = embedded_run.path / "pefs"
    before = sorted(p.name for p in store.iterdir())
    assert main(["fit", str(store), "--out", str(store / "manifest.json"), "--device", "cpu"]) == 2
    assert "would overwrite the input" in caplog.text
    decomposition = embedded_run.path / "decomposition.safetensors"
    assert main(["transform", str(decomposition), str(store), "--out", str(decomposition), "--device", "cpu"]) == 2
    assert sorted(p.name for p in store.iterdir()) == before
    assert main(["fit", str(store), "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert "is a folder" in caplog.text


def test_a_run_the_disk_or_memory_cannot_hold_ends_with_its_message_not_a_traceback(monkeypatch, tmp_path, caplog):
    """InsufficientResourcesError (and a fit's NpeffDivergenceError) are RuntimeErrors, which the command line let
    through as a traceback that buried "…; nothing was written" and the numbers."""
    import workbench.app.pipeline as pipeline
    from workbench.npeff.base import NpeffDivergenceError
    from workbench.runner.estimate import InsufficientResourcesError

    for error in (InsufficientResourcesError("the store needs 9.1 MB and the disk has 5.8 MB free"),
                  NpeffDivergenceError("the loss became nan at iteration 3")):
        def refuse(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(pipeline, "run_embedded", refuse)
        caplog.clear()
        assert main(["demo", "--out", str(tmp_path / "demo")]) == 1
        assert f"{type(error).__name__}: {error}" in caplog.text


def test_an_interrupted_fit_is_told_what_the_same_command_does(tmp_path, monkeypatch, caplog):
    """Ctrl-C in the command line's fit read "the same command resumes a PEF store where it stopped": no store was
    being written, and without --checkpoint the fit starts over."""
    import workbench.distributed as distributed
    from workbench.npeff.planted import planted_lrm
    from workbench.store import save_pefs

    store = tmp_path / "pefs"
    save_pefs(planted_lrm(n_examples=12, n_parameters=40, n_components=2, seed=0).pefs, store)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "fit_distributed", interrupted)
    fit = ["fit", str(store), "--out", str(tmp_path / "fit.safetensors"), "--n-components", "2", "--device", "cpu"]
    assert main(fit) == 130
    assert "the same command fits again from the start (with --checkpoint FILE" in caplog.text
    caplog.clear()
    assert main([*fit, "--checkpoint", str(tmp_path / "fit.ckpt")]) == 130
    assert f"the same command resumes the fit from its checkpoint {tmp_path / 'fit.ckpt'}" in caplog.text
    assert "PEF store" not in caplog.text

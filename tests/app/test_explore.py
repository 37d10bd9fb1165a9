"""RunExplorer: the component table's filters and pages, example pages with token scores, perturbations."""

import os
import re

import numpy as np
import pandas as pd
import pytest

from workbench import analysis
from workbench.app.explore import ComponentFilter, RunExplorer
from workbench.analysis.perturb import baseline_examples, perturbation_check

from tests.widgets.synthetic import synthetic_run


@pytest.fixture(scope="module")
def explorer(embedded_run):
    return RunExplorer.open(embedded_run.path)


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory):
    return RunExplorer.open(synthetic_run(tmp_path_factory.mktemp("runs") / "synthetic", n_components=60,
                                          n_examples=3000, density=0.05))


def test_components_pages_sorted_by_mass(explorer):
    first = explorer.components(page_size=5)
    assert (first.n_matching, first.n_components, first.n_pages) == (16, 16, 4)
    masses = np.concatenate([explorer.components(page=p, page_size=5).rows["mass"].to_numpy() for p in range(4)])
    np.testing.assert_array_equal(masses, np.sort(explorer.table["mass"].to_numpy())[::-1])
    assert explorer.components(page=99, page_size=5).page == 3  # clamped to the last page
    assert "components 1-5 of 16" in repr(first)


def test_components_filters(explorer):
    table = explorer.table
    pure = explorer.filter_components(min_purity=0.9, purity="strategy_purity")
    assert set(pure.index) == set(table.index[table["strategy_purity"] >= 0.9])
    label = explorer.filter_components(label=1)
    assert set(label.index) == set(table.index[table["label"] == 1]) and len(label) > 0
    heavy = explorer.filter_components(min_mass=0.05)
    assert (heavy["mass"] >= 0.05).all() and len(heavy) < len(table)
    ascending = explorer.filter_components(ComponentFilter(sort_by="label_purity", descending=False))
    assert ascending["label_purity"].is_monotonic_increasing


def test_search_matches_exactly_the_components_with_the_text_in_their_top_examples(explorer):
    texts = explorer.examples["text"].to_numpy()
    expected = {j for j in range(explorer.n_components)
                if any("zorp" in texts[i] for i in analysis.top_examples(explorer.W, j, explorer.n_top))}
    found = set(explorer.filter_components(search="ZORP").index)
    assert found == expected and 0 < len(found) < explorer.n_components


def test_top_sets_equal_analysis_top_examples(small_synthetic):
    W = small_synthetic.W
    for j in range(small_synthetic.n_components):
        row = small_synthetic.top_sets[j]
        np.testing.assert_array_equal(row[row >= 0], analysis.top_examples(W, j, small_synthetic.n_top))


def test_a_filter_name_mistyped_is_named_with_the_filters_there_are():
    from workbench.app.results import checked_filter

    with pytest.raises(TypeError, match=r"'min_purty' is not a filter of the component table \(did you mean "
                                        r"'min_purity'\?\); the filters are min_purity, purity, min_mass, label"):
        checked_filter(None, {"min_purty": 0.5})
    assert checked_filter(None, {"min_purity": 0.5}).min_purity == 0.5


def test_one_example_of_a_page_shows_itself_in_a_line_and_as_its_card():
    """A card taken from page.examples printed every array of its scores, spans and words, and had no HTML."""
    from workbench.app.results import HighlightedExample

    card = HighlightedExample(example=7, rank=2, text="<b>blick</b> was fine", label=1, prediction=0, coefficient=0.51234,
                              tokens=["[CLS]", "<b>blick</b>", "was", "fine", "[SEP]"],
                              scores=np.array([0.1, 0.5, 0.1, 0.1, 0.0]), special=[True, False, False, False, True],
                              spans=[(0, 0), (0, 12), (13, 16), (17, 21), (0, 0)],
                              visible=np.array([0.0, 0.7, 0.15, 0.15, 0.0]), visible_share=0.7, special_share=0.1,
                              head_share=0.2, words=[None, 0, 1, 2, None])
    assert repr(card) == ("HighlightedExample(#3, example 7, label 1, prediction 0, coefficient 0.5123; strongest word "
                          "'<b>blick</b>' (+70% of the words' share)): <b>blick</b> was fine")
    html = card._repr_mimebundle_()["text/html"]
    assert "&lt;b&gt;blick" in html and "<b>blick" not in html and "example 7" in html


def test_a_model_folder_s_path_as_model_says_what_model_is_for(tmp_path):
    from workbench.app.explore_checks import check_model_and_tokenizer

    with pytest.raises(TypeError, match=r"got str; leave model= out to use the run's own model/ folder, or pass the "
                                        r"model loaded, with its tokenizer \(model, tokenizer = load_classifier\(path\)"):
        check_model_and_tokenizer(str(tmp_path), None)


def test_bad_requests_name_the_problem(explorer):
    with pytest.raises(ValueError, match="cannot sort by 'nope'"):
        explorer.components(sort_by="nope")
    with pytest.raises(ValueError, match="no purity column 'size_purity'"):
        explorer.components(min_purity=0.5, purity="size_purity")
    with pytest.raises(IndexError, match="from 0 to 15"):
        explorer.top_examples(16)
    for epsilon in (float("nan"), float("inf"), 0.0, -0.1):
        with pytest.raises(ValueError, match="epsilon must be a positive, finite step"):
            explorer.perturb(0, epsilon=epsilon)
    with pytest.raises(ValueError, match=r"max_sim is a \|cos\| between components, in \(0, 1\]"):
        explorer.perturb(0, max_sim=5)
    with pytest.raises(ValueError, match="epsilons must be a non-empty list of step sizes"):
        explorer.sweep(0, [])
    with pytest.raises(ValueError, match="epsilons must be a non-empty list"):
        explorer.sweep(0, 0.1)
    with pytest.raises(ValueError, match="epsilon must be a positive, finite step"):
        explorer.sweep(0, [0.1, -1.0])  # refused before the first step runs
    with pytest.raises(TypeError, match="on_result must be a function"):
        explorer.sweep(0, [0.1], on_result=3)
    with pytest.raises(ValueError, match="epsilon must be a positive, finite step"):
        explorer.dashboard(0, epsilon=-1)
    with pytest.raises(ValueError, match="epsilon must be a positive, finite step"):
        explorer.dashboard(0, sweep=[-1.0])  # before the token scores and the logit change run
    with pytest.raises(ValueError, match="seed must be an integer of at least 0"):
        explorer.perturb(0, seed=-1)
    for changes, error, message in [({"page": "a"}, TypeError, "page must be an integer"),
                                    ({"page": -1}, ValueError, "page must be an integer of at least 0"),
                                    ({"search": None}, TypeError, "search must be a text"),
                                    ({"descending": "no"}, TypeError, "descending must be True or False"),
                                    ({"filter": {"min_purity": 0.5}}, TypeError, "filter must be a ComponentFilter")]:
        with pytest.raises(error, match=message):
            explorer.components(**changes)
    with pytest.raises(ValueError, match="n_top must be an integer of at least 1"):
        explorer.trace(0, n_top=0)


def test_top_examples_pages_follow_the_coefficients_with_exact_token_shares(explorer):
    j = 3
    ranking = analysis.top_examples(explorer.W, j, n_top=len(explorer.examples))
    first, second = explorer.top_examples(j, page_size=4), explorer.top_examples(j, page=1, page_size=4)
    assert [e.example for e in first.examples + second.examples] == list(ranking[:8])
    assert [e.rank for e in second.examples] == [4, 5, 6, 7]
    for e in first.examples:
        assert e.coefficient == pytest.approx(float(explorer.W[e.example, j]))
        assert e.label == explorer.examples["label"].iloc[e.example]
        assert e.scores.sum() + e.head_share == pytest.approx(1.0, abs=1e-6)  # shares of the whole mass
        words = [e.text[a:b] for (a, b), special in zip(e.spans, e.special) if not special]
        assert words == e.text.split(" ")  # the spans are the words, in order
    assert "component 3: examples 1-4" in repr(first)


def test_a_page_says_how_much_of_the_component_its_highlights_leave_out(explorer, monkeypatch):
    """Where layers that cannot be read per token hold part of the component (XLNet's time-major
    attention), the page says so: its 'head' share would otherwise read as the component's head."""
    from workbench.analysis import highlights

    assert explorer.top_examples(3, page_size=2).note == ""
    scored = highlights.token_scores

    def some_left_out(*args, **kwargs):
        scores = scored(*args, **kwargs)
        for s in scores:
            s.left_out_share, s.left_out = 0.42, tuple(f"model.decoder.embed_positions.w{i}" for i in range(5))
        return scores

    monkeypatch.setattr(highlights, "token_scores", some_left_out)
    note = explorer.top_examples(3, page_size=2).note
    # named: it blamed XLNet's time-major layers and a mixture's experts for BART's decoder positions
    assert ("42% of the component's ‖g‖² lies in parameters that cannot be read per token (model.decoder.embed_positions"
            ".w0, model.decoder.embed_positions.w1, model.decoder.embed_positions.w2 and 2 more: ") in note


def test_perturb_equals_the_library_check_on_all_inputs(explorer, embedded):
    _, model, _, examples, inputs, decomposition = embedded
    j = 5
    result = explorer.perturb(j, epsilon=0.1, n_baseline=50, seed=3)
    top = analysis.top_examples(decomposition.W_, j, explorer.n_top)
    baseline = baseline_examples(len(examples), top, 50, seed=3)
    direct = perturbation_check(model, decomposition, j, inputs, examples["label"], top, baseline, epsilon=0.1)
    assert (result.n_top, result.n_baseline) == (len(top), 50)
    for sign in "+-":
        assert result.kl_top[sign] == pytest.approx(direct.kl_top[sign], rel=1e-5)
        assert result.kl_baseline[sign] == pytest.approx(direct.kl_baseline[sign], rel=1e-5)
    assert result.accuracy_top == direct.accuracy_top


def test_sweep_reports_each_epsilon(explorer):
    seen = []
    frame = explorer.sweep(2, [0.01, 0.1], n_baseline=20, on_result=lambda r, done, total: seen.append((r.epsilon, done, total)))
    assert seen == [(0.01, 1, 2), (0.1, 2, 2)]
    assert len(frame) == 8 and set(frame["epsilon"]) == {0.01, 0.1}
    kl = frame[(frame["set"] == "top") & (frame["sign"] == "+")].sort_values("epsilon")["kl"].to_numpy()
    assert kl[1] > kl[0] > 0


def test_a_run_without_model_shows_examples_and_explains_the_rest(small_synthetic):
    page = small_synthetic.top_examples(0, page_size=3)
    assert len(page.examples) == 3 and page.examples[0].scores is None
    assert "no model/" in page.note
    with pytest.raises(FileNotFoundError, match="has no model/ folder"):
        small_synthetic.perturb(0)


def test_an_unknown_word_is_a_word_of_the_text_not_a_special_token(hostile_run):
    """The tokenizer's [UNK] stands for a word of the text (here the markup of the hostile texts):
    it is shaded and counted with the words, never with [CLS] and [SEP]."""
    explorer = RunExplorer.open(hostile_run.path)
    j = 0
    top = int(explorer.W[:, j].argmax())
    e = next(e for e in explorer.top_examples(j, page_size=3).examples if e.example == top)
    unknown = [k for k, t in enumerate(e.tokens) if t == "[UNK]"]
    assert unknown and not any(e.special[k] for k in unknown)
    assert [t for t, special in zip(e.tokens, e.special) if special] == ["[CLS]", "[SEP]"]
    assert e.text[slice(*e.spans[unknown[0]])].startswith("<")  # the markup, shaded as the word it is


def test_component_indices_and_counts_are_refused_by_name_before_any_work(small_synthetic):
    """-1 and 99 used to give None or the last component, True a numpy broadcast error, page_size=0 a
    ZeroDivisionError; counts are checked before the model loads (this run has none)."""
    ex = small_synthetic
    for method in (ex.component_name, ex.component, ex.ranking, ex.top_examples, ex.dashboard):
        with pytest.raises(ValueError, match=r"component must be from 0 to 59, got 99"):
            method(99)
        with pytest.raises(IndexError, match=r"component must be from 0 to 59, got -1"):
            method(-1)
        for bad in (True, np.bool_(True), 1.5, "1"):
            with pytest.raises(TypeError, match=r"component must be an integer.*pass an int from 0 to 59"):
                method(bad)
    assert ex.component_name(np.int64(0)) == ex.component_name(0)
    with pytest.raises(ValueError, match=r"page_size must be an integer of at least 1"):
        ex.top_examples(0, page_size=0)
    with pytest.raises(TypeError, match=r"page_size must be an integer"):
        ex.components(page_size="5")
    with pytest.raises(TypeError, match=r"min_purity must be a number from 0 to 1"):
        ex.components(min_purity="a")
    with pytest.raises(ValueError, match=r"min_purity must be a number from 0 to 1"):
        ex.filter_components(min_purity=1.5)
    with pytest.raises(ValueError, match=r"min_mass must be a number from 0 to 1"):
        ex.components(min_mass=-1)
    for n_baseline in (0, -1):
        with pytest.raises(ValueError, match=r"n_baseline must be an integer of at least 1"):
            ex.perturb(0, n_baseline=n_baseline)
        with pytest.raises(ValueError, match=r"n_baseline must be an integer of at least 1"):
            ex.trace(0, n_baseline=n_baseline)
    with pytest.raises(ValueError, match=r"batch_size must be an integer of at least 1"):
        ex.perturb(0, batch_size=0)
    with pytest.raises(ValueError, match=r"components=\[\] lists no component"):  # was pandas' KeyError
        ex.selectivity([])
    with pytest.raises(TypeError, match=r"n_top must be an integer"):
        ex.trace(0, n_top=2.5)
    with pytest.raises(ValueError, match=r"n must be an integer of at least 1"):
        ex.lookup(0, n=0)
    with pytest.raises(ValueError, match=r"n must be an integer of at least 1"):
        ex.lookup("a new text", n=-1)  # refused before its PEF is computed
    with pytest.raises(ValueError, match=r"example must be from 0 to 2999, got -1"):
        ex.lookup(-1)
    with pytest.raises(ValueError, match=r"n_top must be an integer of at least 1"):
        RunExplorer(ex.run, n_top=0)


def test_a_path_where_an_explorer_belongs_names_run_explorer_open():
    from workbench.app.explore import check_explorer

    with pytest.raises(TypeError, match=r"explorer must be a RunExplorer, got str; .*'runs/x', use RunExplorer\.open"):
        check_explorer("runs/x")


def test_export_checks_everything_before_it_writes(small_synthetic, tmp_path):
    """A bad perturbation used to be found after three files were written; a file where the folder
    belongs gave a bare FileExistsError."""
    with pytest.raises(TypeError, match=r"perturbations must hold results of RunExplorer\.perturb"):
        small_synthetic.export(tmp_path / "out", perturbations=["x"])
    assert not (tmp_path / "out").exists()
    (tmp_path / "taken").write_text("a file")
    for folder in (tmp_path / "taken", tmp_path / "taken" / "inside"):
        with pytest.raises(FileExistsError, match=r"taken is a file, not a folder; choose another folder"):
            small_synthetic.export(folder)
    (tmp_path / "clash" / "components.csv").mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match=r"components\.csv is a folder where the export writes a file"):
        small_synthetic.export(tmp_path / "clash", format="csv")
    assert [p.name for p in (tmp_path / "clash").iterdir()] == ["components.csv"]


def test_an_export_replaces_every_file_of_the_earlier_one(small_synthetic, tmp_path, monkeypatch):
    """A re-export without perturbations kept the earlier perturbations file beside the new tables; an
    export killed half-way left new files beside old ones, then part of a new one beside nothing that said
    so: it is written aside and moved in whole, so a killed one leaves the earlier export as it was."""
    from workbench.analysis import export

    folder = tmp_path / "out"
    small_synthetic.export(folder, perturbations=[pd.DataFrame({"component": [0], "kl_ratio": [4.0]})])
    assert (folder / "perturbations.parquet").exists()
    small_synthetic.export(folder)
    assert sorted(p.name for p in folder.iterdir()) == [export.EXPORT_RECORD, "coefficients.parquet",
                                                       "components.parquet", "components.safetensors"]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    earlier = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(export, "export_coefficients", killed)
    with pytest.raises(KeyboardInterrupt):
        small_synthetic.export(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == earlier  # and no staging folder left
    monkeypatch.undo()
    # killed while the new files are moved in: each file is the earlier export's or the new one's, none gone
    # (the earlier files were deleted first, which left an empty folder)
    moves = []

    real_replace = os.replace

    def replace(source, target):
        if os.path.dirname(target) == str(folder):  # a move into the export folder, not a staged write
            if moves:
                raise KeyboardInterrupt
            moves.append(target)
        real_replace(source, target)

    monkeypatch.setattr(export.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        small_synthetic.export(folder)
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == sorted(earlier)


def test_an_export_onto_a_full_disk_names_the_folder_asked_for(small_synthetic, tmp_path, monkeypatch):
    """RunExplorer.export on a full disk named its hidden temporary file (out/.export.tmp-…/components.csv), and
    spoke of PEF runs resuming: it names the folder asked for and what to do, and leaves the earlier export whole."""
    import errno

    from workbench.analysis import export
    from workbench.store.files import StoreWriteError

    folder = tmp_path / "out"
    small_synthetic.export(folder, format="csv")
    earlier = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    for module, name in ((pd.DataFrame, "to_csv"), (export, "save_file"), (export.os, "replace")):
        with monkeypatch.context() as patch:
            patch.setattr(module, name, full)
            with pytest.raises(StoreWriteError, match=rf"could not export into {re.escape(str(folder))}: No space left "
                                                      r"on device\. Free space on that disk, .* or choose another folder, "
                                                      r"then call again") as raised:
                small_synthetic.export(folder, format="csv")
        assert ".tmp" not in str(raised.value) and "PEF" not in str(raised.value)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == earlier  # and no staging folder left


def test_an_export_never_replaces_or_deletes_a_file_it_did_not_write(small_synthetic, tmp_path):
    """An export into a folder of the user's deleted their perturbations.parquet and replaced their
    components.parquet, silently; a file an export wrote and the user then changed is theirs too."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("perturbations.parquet", "components.parquet"):
        (folder / name).write_text("my own results")
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        with pytest.raises(FileExistsError, match=rf"{name} is not a file an earlier export wrote there.*choose another "
                                                  r"folder, such as .*mine/export, or move the file away"):
            small_synthetic.export(folder)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
        (folder / name).unlink()
    small_synthetic.export(folder)
    (folder / "coefficients.parquet").write_bytes(b"edited by hand")
    with pytest.raises(FileExistsError, match=r"coefficients\.parquet is not a file an earlier export wrote"):
        small_synthetic.export(folder)


def test_a_model_given_with_other_weights_is_refused_before_it_reads_anything(embedded_run, embedded):
    """Given a model, the explorer scored tokens, perturbed and traced with it whatever its weights:
    numbers of a model the PEFs never saw. Only lookup refused it."""
    import copy

    import torch

    from workbench.store import StoreError

    _, model, tokenizer, *_ = embedded
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    explorer = RunExplorer.open(embedded_run.path, model=other, tokenizer=tokenizer)
    for read in (lambda: explorer.top_examples(0), lambda: explorer.perturb(0), lambda: explorer.trace(0)):
        with pytest.raises(StoreError, match="computed from another model"):
            read()
    assert RunExplorer.open(embedded_run.path, model=model, tokenizer=tokenizer).top_examples(0, page_size=2).examples
    # the run's model cast after the fit: named by its dtype, not as another model
    explorer = RunExplorer.open(embedded_run.path, model=copy.deepcopy(model).double(), tokenizer=tokenizer)
    with pytest.raises(StoreError, match=r"in float32, and its weights are float64 now .*model\.to\(torch\.float32\)"):
        explorer.top_examples(0)


def test_a_run_folder_whose_model_was_swapped_is_refused(embedded_run, tmp_path):
    """The run's own model/ was never checked: another model's weights there read a KL ratio of 9.7 for 7542."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from workbench.store import StoreError

    copy = shutil.copytree(embedded_run.path, tmp_path / "run")
    weights = next((copy / "model").glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(n for n, t in tensors.items() if t.is_floating_point())
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, weights, metadata={"format": "pt"})
    explorer = RunExplorer.open(copy)
    with pytest.raises(StoreError, match=r"\(its decomposition\) was computed from another model"):
        explorer.perturb(0)
    assert torch.is_tensor(next(iter(tensors.values())))


def test_a_trace_reads_as_many_top_examples_as_asked(explorer):
    """n_top above the explorer's (20) was cut to it without a word."""
    trace = explorer.trace(0, n_top=explorer.n_top + 5, n_baseline=2)
    assert trace.sets.count("top") == explorer.n_top + 5


def test_highlight_that_is_no_bool_is_refused(small_synthetic, tmp_path):
    """highlight='no' highlighted the tokens: a non-empty string is true."""
    from workbench import report

    with pytest.raises(TypeError, match="highlight must be True or False, got 'no'"):
        small_synthetic.top_examples(0, highlight="no")
    with pytest.raises(TypeError, match="highlight must be True or False, got 'no'"):
        report.export_html(small_synthetic, tmp_path / "report", highlight="no", progress=False)
    assert not (tmp_path / "report").exists()


def test_perturb_against_examples_of_the_top_set_s_predicted_classes(explorer):
    """The class of the top set explains part of a ratio against random examples: the baseline of the same
    classes is drawn with the top set's mix of predictions, and the result says so."""
    j = 5
    top = explorer._top_set(j)
    predictions = explorer.predictions
    result = explorer.perturb(j, epsilon=0.1, n_baseline=40, seed=3, baseline="same classes")
    drawn = baseline_examples(len(explorer.examples), top, 40, seed=3, classes=predictions)
    top_mix = pd.Series(predictions[top]).value_counts(normalize=True)
    baseline_mix = pd.Series(predictions[drawn]).value_counts(normalize=True)
    assert (baseline_mix.reindex(top_mix.index) - top_mix).abs().max() <= 1 / len(drawn) + 1e-9
    assert result.n_baseline == len(drawn) and result.baseline_draw == "same classes"
    assert "mix of predicted classes" in result.explanation
    assert set(result.to_frame()["baseline_draw"]) == {"same classes"}
    swept = explorer.sweep(j, [0.1], n_baseline=40, seed=3, baseline="same classes")
    assert swept.loc[swept["set"] == "baseline", "kl"].tolist() == [result.kl_baseline["+"], result.kl_baseline["-"]]
    with pytest.raises(ValueError, match=r"baseline must be one of \('random', 'same classes'\), got 'same class'"):
        explorer.perturb(j, baseline="same class")
    table = explorer.selectivity([j, 2])
    assert list(table.index) == [j, 2]
    assert set(table["reading"]) <= {"beyond its class", "its class", "not selective", "not beyond its class", "undecided"}
    same = explorer.perturb(j, baseline="same classes")  # the same-classes ratio of the random check's sign
    assert table.loc[j, "kl_ratio_same_classes"] == pytest.approx(same.ratio((table.loc[j, "sign"],)))
    with pytest.raises(ValueError, match=r"components must be from 0 to"):
        explorer.selectivity([99])


def test_transformers_placeholder_class_names_are_no_names(embedded_run, tmp_path):
    """A config without id2label gets LABEL_0, LABEL_1 from transformers once loaded: pages read "label 1 (LABEL_1)"
    or "label 1" by which panel had loaded the model first."""
    import json
    import shutil

    folder = shutil.copytree(embedded_run.path, tmp_path / "run")
    config = folder / "model" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "id2label": {"0": "LABEL_0", "1": "LABEL_1"}}))
    assert RunExplorer.open(folder).label_names == {}
    loaded = RunExplorer.open(folder)
    loaded.model_and_tokenizer()
    assert loaded.label_names == {}
    config.write_text(json.dumps({**json.loads(config.read_text()), "id2label": {"0": "negative", "1": "LABEL_1"}}))
    assert RunExplorer.open(folder).label_names == {"0": "negative"}


def test_a_model_that_is_no_model_is_refused_when_the_explorer_opens(embedded_run):
    """model=3 was taken, and the error came later as "a model was given without its tokenizer"."""
    with pytest.raises(TypeError, match=r"model must be the run's model \(a torch\.nn\.Module\), got int"):
        RunExplorer.open(embedded_run.path, model=3)


def test_a_tokenizer_without_its_model_is_refused_when_the_explorer_opens(tmp_path):
    """RunExplorer.open(path, tokenizer=x) read the run's model/ folder with its own tokenizer, and dropped x unsaid."""
    from workbench.app.run_folder import Run, RunRecorder

    RunRecorder(tmp_path / "run", {})
    with pytest.raises(ValueError, match="tokenizer= was given without model=: .*pass model= with it"):
        RunExplorer(Run(tmp_path / "run"), tokenizer=object())


def test_a_fast_tokenizer_s_word_ids_reach_each_highlighted_example(explorer):
    """The pages read words whole only if the run's tokenizer gives its word ids to the examples."""
    for e in explorer.top_examples(0, page_size=3).examples:
        assert e.words is not None and len(e.words) == len(e.tokens)
        assert all(w is None for w, s in zip(e.words, e.special) if s)

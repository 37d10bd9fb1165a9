"""RunExplorer's dashboard, reverse lookup, definitions and highlight hit rate on the main job's run."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from workbench.analysis.moves import perturbation_direction, perturbed
from workbench.app.explore import RunExplorer
from workbench.models.embedded import tokenize

from tests.widgets.synthetic import synthetic_run


@pytest.fixture(scope="module")
def explorer(embedded_run):
    return RunExplorer.open(embedded_run.path)


def test_dashboard_numbers_are_the_runs(explorer):
    j = int(explorer.table["mass"].idxmax())
    d = explorer.dashboard(j, sweep=(0.1,))
    column = explorer.W[:, j]
    assert d.n_zero == int(np.sum(column <= 0)) and d.histogram["count"].sum() == int(np.sum(column > 0))
    G = explorer.decomposition.components_.astype(np.float64)
    k = int(d.nearest.index[0])
    assert d.nearest["cos"].iloc[0] == pytest.approx(abs(G[j] @ G[k]) / np.linalg.norm(G[j]) / np.linalg.norm(G[k]))
    assert d.location.to_numpy().sum() == pytest.approx(1.0)
    assert d.top_tokens["count"].max() <= explorer.n_top and len(d.top_tokens) > 0
    assert set(d.sweep["epsilon"]) == {0.1} and "kl_ratio" in d.sweep
    assert d.pushes_toward is not None and "component" in d.definitions
    html = d._repr_mimebundle_()["text/html"]
    assert "Top tokens" in html and "Where the component lives" in html and "pushes toward" in html


def test_logit_change_is_the_perturbed_models(explorer):
    """The dashboard's class push against a direct forward pass at θ + εĝ; the weights come back."""
    j = 0
    model, tokenizer = explorer.model_and_tokenizer()
    top = explorer.ranking(j)[: explorer.n_top]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = explorer.dashboard(j, sweep=None, epsilon=0.3)
    inputs = tokenize(tokenizer, list(explorer.examples["text"].to_numpy()[top]))
    import torch

    with torch.no_grad():
        original = torch.log_softmax(model(**inputs).logits.double(), dim=-1)
        direction = perturbation_direction(explorer.decomposition, j)
        with perturbed(model, explorer.decomposition.layout_, 0.3 * direction):
            moved = torch.log_softmax(model(**inputs).logits.double(), dim=-1)
    np.testing.assert_allclose(d.logit_change["+"].to_numpy(), (moved - original).mean(dim=0).numpy(), atol=1e-9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_lookup_of_an_example_is_its_row_of_W(explorer):
    lookup = explorer.lookup(7, n=None)
    w = explorer.W[7]
    assert sorted(lookup.loadings.index) == sorted(np.flatnonzero(w > 0))
    np.testing.assert_allclose(lookup.loadings["coefficient"], w[lookup.loadings.index])
    assert lookup.loadings["share"].sum() == pytest.approx(1.0)
    assert lookup.text == explorer.examples["text"].iloc[7] and lookup.seconds is None


def test_lookup_of_a_run_example_by_its_text_is_its_row_of_W(explorer):
    """transform's coefficients are not the fit's (the fit's W comes out of the joint steps): a run example typed in
    had another top component than the panels showed for it."""
    text = str(explorer.examples["text"].iloc[7])
    by_text, by_number = explorer.lookup(text, n=None), explorer.lookup(7, n=None)
    assert by_text.example == 7 and by_text.seconds is None
    pd.testing.assert_frame_equal(by_text.loadings, by_number.loadings)


def test_lookup_of_a_new_text_is_the_transform_of_its_pef(explorer, embedded_run):
    """A text typed in gets the PEF the run stored for the same text (same parameters, kind and n_values,
    no label needed), and the coefficients the decomposition's transform gives that PEF."""
    from workbench.analysis.lookup import pefs_of_texts

    i = 11
    text = str(explorer.examples["text"].iloc[i])
    model, tokenizer = explorer.model_and_tokenizer()
    new = pefs_of_texts(model, tokenizer, explorer.decomposition, [text], n_values=embedded_run.params["n_values"])
    stored = embedded_run.pefs()[i : i + 1]
    rows = stored.matrix.toarray()
    np.testing.assert_allclose(new.matrix.toarray(), rows, rtol=1e-4, atol=1e-6 * np.abs(rows).max())
    np.testing.assert_allclose(new.frobenius_norms, stored.frobenius_norms, rtol=1e-4)
    lookup = explorer.lookup(text + " ", n=None)  # not the run's text, though the tokenizer reads it so
    expected = explorer.decomposition.transform(new)[0]
    np.testing.assert_allclose(lookup.loadings.sort_index()["coefficient"], expected[expected > 0], rtol=1e-5)
    assert lookup.seconds > 0 and "new text" in repr(lookup) and f"{lookup.seconds:.2f} s" in repr(lookup)


def test_lookup_of_a_text_longer_than_the_run_reads_marks_what_was_cut(explorer):
    """A new text of 150 words was shown whole over its loadings, though the model read its first 62 tokens: the
    lookup marks where the model stopped reading, in its text view and its HTML, as the cards do."""
    text = " ".join(["the plot was dull ."] * 30)
    with pytest.warns(UserWarning, match="longer than max_length=64"):
        lookup = explorer.lookup(text)
    assert "[the model read no further:" in repr(lookup) and text not in repr(lookup)
    assert "✂ the model read no further" in lookup._repr_mimebundle_()["text/html"]
    short = explorer.lookup("the plot was dull .")
    assert "not read" not in repr(short) and "✂" not in short._repr_mimebundle_()["text/html"]


def test_the_deletion_check_of_a_cut_text_warns_of_the_text_not_of_its_deletions(explorer):
    """The deletion check of a 70-word text cut at 64 tokens warned '71 of 71 texts are longer than max_length=64
    (first: [0, 1, 2, 3, 4])', counting and numbering the texts it made by deleting each word: it warns of the
    text given, once."""
    import warnings

    from workbench.models.text import TruncationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explorer.deletion_effects(0, " ".join(["the plot was dull ."] * 14))
    cut = [str(w.message) for w in caught if issubclass(w.category, TruncationWarning)]
    assert len(cut) == 1 and cut[0].startswith("1 of 1 texts are longer than max_length=64"), cut


def test_the_deletion_check_says_which_words_the_model_never_read_and_refits_none_of_them(explorer, monkeypatch):
    """A word past the cut at max_length was deleted, refitted (a PEF each) and shown at a drop of 0, read as 'the
    coefficient does not need it', where the model never read it."""
    import warnings

    from workbench.analysis import lookup

    fitted = []
    real = lookup.coefficients_of_texts
    monkeypatch.setattr(lookup, "coefficients_of_texts",
                        lambda model, tokenizer, decomposition, texts, **kw: (fitted.append(len(texts)), real(
                            model, tokenizer, decomposition, texts, **kw))[1])
    text = " ".join(["the plot was dull ."] * 14)  # 70 words, 72 tokens with [CLS] and [SEP]: 8 past the cut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        effects = explorer.deletion_effects(0, text)
    assert list(effects.columns) == ["word", "start", "stop", "coefficient", "drop", "read"]
    unread = effects[~effects["read"]]
    assert len(unread) == 8 and unread["start"].min() > effects.loc[effects["read"], "start"].max()
    assert unread["drop"].isna().all() and unread["coefficient"].isna().all()
    assert effects.loc[effects["read"], "drop"].notna().all() and fitted == [1 + 62]  # the text, and the words read
    short = explorer.deletion_effects(0, "the plot was dull .")
    assert short["read"].all() and short["drop"].notna().all()


def test_a_new_text_s_lookup_covers_the_run_s_parameters_of_a_model_given_with_some_frozen(explorer, embedded_run):
    """A model given to the explorer with layers frozen after the run (requires_grad=False) left them out of a new
    text's PEF: lookup and deletion_effects failed, its PEFs 'computed over other parameters than the decomposition',
    under a warning that listed every one of the run's parameters as a pattern."""
    import warnings

    from workbench.models.embedded import load_default_model

    model, tokenizer = load_default_model(embedded_run.model_path)
    *frozen, _ = model.parameters()
    for p in frozen:
        p.requires_grad_(False)
    given = RunExplorer.open(embedded_run.path, model=model, tokenizer=tokenizer)
    text = "a new text the run has not seen"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lookup = given.lookup(text, n=None)
    pd.testing.assert_frame_equal(lookup.loadings, explorer.lookup(text, n=None).loadings)
    pd.testing.assert_frame_equal(given.deletion_effects(0, text), explorer.deletion_effects(0, text))
    assert not any(p.requires_grad for p in frozen)


def test_lookup_refuses_what_it_cannot_read(explorer):
    with pytest.raises(IndexError, match="example must be from 0"):
        explorer.lookup(10**6)
    with pytest.raises(ValueError, match="example number or a non-empty text"):
        explorer.lookup("  ")
    with pytest.raises(TypeError, match="example number or a non-empty text"):
        explorer.lookup(2.5)


def test_definitions_cover_every_column_of_the_table(explorer):
    definitions = explorer.definitions()
    missing = [c for c in ["component", *explorer.table.columns] if c not in definitions.index]
    assert not missing
    assert "special share" in definitions.index and "head share" in definitions.index


def test_highlight_hit_rate_of_the_default_run(explorer):
    """Measured on the default run (top 10 of each component): 0.82, against 0.18 for a visible token
    drawn at random (docs/reading.md)."""
    hits = explorer.highlight_hit_rate(n_top=10)
    assert len(hits) == 10 * explorer.n_components
    assert hits["hit"].mean() >= 0.75 and hits["hit"].mean() >= 3 * hits["chance"].mean()


def test_a_hit_is_judged_on_the_strongest_word_the_row_names(explorer):
    """A hit was judged on the largest signed share, over special tokens too: rows named a deciding word
    as the strongest (a share of -81%) and said it missed, having judged a +3% word or [CLS]."""
    from workbench.models.embedded import deciding_token_positions

    hits = explorer.highlight_hit_rate(n_top=60)
    _, tokenizer = explorer.model_and_tokenizer()
    for j in range(explorer.n_components):
        for e in explorer.top_examples(j, page_size=60).examples:
            row = hits[(hits["component"] == j) & (hits["example"] == e.example)].iloc[0]
            word_ids = tokenizer(e.text, truncation=True, max_length=explorer.max_length).word_ids()
            deciding = deciding_token_positions(explorer.examples.iloc[e.example], word_ids)
            assert row["strongest_token"] == e.strongest_token and bool(row["hit"]) == bool(set(e.strongest_positions) & set(deciding))


def test_deleting_the_strongest_word_costs_the_coefficient_more_than_the_other_words(explorer):
    """The shading says where the Fisher mass flows; deletion says what the coefficient needs. On the embedded
    task the highlighted word is the one the coefficient depends on (an audit: 146 of 160 top examples)."""
    strongest, others = [], []
    for j in range(4):
        for e in explorer.top_examples(j, page_size=3).examples:
            effects = explorer.deletion_effects(j, e.example)
            text = explorer.examples["text"].iloc[e.example]
            assert len(effects) == len(text.split()) and effects["drop"].is_monotonic_decreasing
            assert effects.attrs["coefficient"] == pytest.approx(explorer.W[e.example, j], rel=0.05)
            assert all(text[a:b] == w for w, a, b in zip(effects["word"], effects["start"], effects["stop"]))
            named = effects[effects["word"].str.contains(e.strongest_token.strip(), regex=False, case=False)]
            strongest.append(named["drop"].max())
            others.append(effects["drop"].drop(named.index).mean())
    assert np.mean(strongest) > np.mean(others) + 0.3 and np.mean(np.array(strongest) > np.array(others)) >= 0.75
    with pytest.raises(ValueError, match="is one word"):
        explorer.deletion_effects(0, "wonderful")


def test_a_run_without_a_model_gets_the_model_free_dashboard(tmp_path):
    explorer = RunExplorer.open(synthetic_run(tmp_path / "run", n_components=12, n_examples=400, density=0.1))
    d = explorer.dashboard(3)
    assert d.logit_change is None and d.top_tokens is None and d.sweep is None
    assert "no model/" in d.notes[0] and isinstance(d.location, pd.DataFrame)


def test_an_export_after_the_run_folder_moved_does_not_make_the_old_folder_anew(tmp_path):
    """The export re-created the moved folder's old path, holding only exports/."""
    explorer = RunExplorer.open(synthetic_run(tmp_path / "run", n_components=3, n_examples=50, density=0.2))
    explorer.table, explorer.W, explorer.decomposition  # read, as an open panel has them
    (tmp_path / "run").rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=r"was moved or deleted since it was opened; open it again"):
        explorer.export(format="csv")
    assert not (tmp_path / "run").exists()
    assert set(explorer.export(tmp_path / "elsewhere", format="csv")) == {"components", "coefficients",
                                                                          "component vectors"}


def test_an_export_into_a_run_folder_this_user_may_not_write_says_to_export_elsewhere(tmp_path, monkeypatch):
    """A read-only run (or another user's) was refused as 'Free space on that disk, make the folder writable, or
    choose another folder': the export button's folder is the run's, and no word said how to choose another."""
    from workbench.app import run_folder

    explorer = RunExplorer.open(synthetic_run(tmp_path / "run", n_components=3, n_examples=50, density=0.2))
    monkeypatch.setattr(run_folder, "cannot_write_in", lambda folder: "Permission denied")  # root writes everywhere
    with pytest.raises(PermissionError, match=r"cannot save an export \(exports/\) into the run folder .*run: this "
                                              r"user may not write there \(Permission denied\); copy the run .*, or "
                                              r"export elsewhere: export\(folder='my-exports'\)"):
        explorer.export(format="csv")
    assert not (tmp_path / "run" / "exports").exists()
    assert set(explorer.export(tmp_path / "elsewhere", format="csv")) == {"components", "coefficients",
                                                                          "component vectors"}


def test_export_explains_a_placeholder_in_perturbations(explorer, tmp_path):
    with pytest.raises(TypeError, match=r"perturbations=\[ex.perturb\(3\)\]"):
        explorer.export(tmp_path / "x", format="csv", perturbations=[...])


def test_the_dashboard_says_what_its_counts_and_shares_are_of(explorer):
    """"566 of 600 examples load on it" counted coefficients down to 1e-43; "θ + εĝ pushes toward class 1, θ − εĝ
    toward 1" read beside "the classes the component separates"; the top tokens' shares are of the words' part of
    the mass, which special tokens dwarfed (78-96% on MiniLM) without a word; counts read "× 20.0"."""
    from workbench import report

    d = explorer.dashboard(0, sweep=None)
    numbers = report.dashboard_numbers_html(d)
    assert f"{d.n_examples - d.n_zero} of {d.n_examples} examples have a positive coefficient" in numbers
    same = d.logit_change.assign(**{"-": d.logit_change["+"]})  # both signs toward one class
    both = dataclasses.replace(d, logit_change=same).direction_text
    assert both.endswith("and so does θ − εĝ (moving either way favours it)")
    assert f"{d.words_share:.0%} of it on average" in report.dashboard_tables_html(d)
    assert "× 20.0" not in repr(d) and f"words' part of the mass, {d.words_share:.0%}" in repr(d)

"""Component tables: purity, entropy, mass shares and top examples, on exact small cases and the embedded run."""

import os

import numpy as np
import pandas as pd
import pytest

from workbench.analysis import (
    chance_purity,
    component_table,
    entropy,
    purity,
    scaled_coefficients,
    top_examples,
    top_examples_table,
    value_shares,
)


def test_purity_counts_each_value_of_multi_valued_cells():
    cells = [("contrast", "negation"), "contrast", ("contrast",), "lexical"]
    assert purity(cells) == ("contrast", 0.75)
    assert purity([("contrast", "negation"), ("contrast", "negation")]) == ("negation", 1.0)  # tie: decided by name
    assert purity([("a", "a"), "b"]) == ("b", 0.5)  # a repeated value counts once per cell
    value, share = purity([])
    assert value is None and np.isnan(share)


def test_entropy_in_bits_splits_multi_valued_cells():
    assert entropy(["a", "a", "a"]) == 0.0
    assert entropy(["a", "b", "c", "d"]) == pytest.approx(2.0)
    assert entropy([("a", "b")]) == pytest.approx(1.0)
    assert entropy([("a", "b"), "a"]) == pytest.approx(-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25)))
    assert np.isnan(entropy([]))


def test_entropy_and_value_shares_do_not_depend_on_the_order_of_values():
    """components.csv's strategy_entropy differed in its last digit between two runs of the same settings
    (1.55887184844536, 1.5588718484453603): a float sum in the order of a set of strings, which
    PYTHONHASHSEED decides. The figure is the same to the bit whatever that order, here or in a process of
    another hash seed, and so is the order of value_shares' ties."""
    import subprocess
    import sys

    cells = [("hedge", "intensifier"), ("contrast", "negation"), ("hedge",), ("negation", "hedge"),
             ("intensifier", "contrast", "negation"), ("contrast", "hedge", "negation"), ("hedge", "intensifier"), ("hedge",),
             ("intensifier",), ("hedge", "intensifier", "contrast"), ("negation",), ("negation",),
             ("negation", "hedge", "intensifier"), ("intensifier", "negation", "hedge"), ("contrast", "negation", "hedge"),
             ("negation", "hedge", "contrast"), ("intensifier", "hedge"), ("negation", "intensifier", "hedge"),
             ("intensifier", "negation"), ("contrast", "intensifier")]
    rng = np.random.default_rng(0)
    orders = [[cells[i] for i in rng.permutation(len(cells))] for _ in range(30)]
    assert {entropy(order) for order in orders} == {entropy(cells)}
    assert len({tuple(value_shares(order).index) for order in orders}) == 1
    script = (f"from workbench.analysis import entropy, value_shares; c = {cells!r}; "
              "print(repr(entropy(c)), list(value_shares(c).index))")
    seen = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(6)}
    assert seen == {f"{entropy(cells)!r} {list(value_shares(cells).index)}\n"}


def test_chance_purity_is_the_expected_purity_of_random_sets():
    # Two a's and two b's, pairs drawn at random: 2 of the 6 pairs are pure (purity 1), the rest 0.5.
    assert chance_purity(["a", "a", "b", "b"], 2, n_draws=4000) == pytest.approx(4 / 6, abs=0.015)
    assert chance_purity(["a", "a", "b", "b"], 10) == 0.5  # the whole set, every draw


def test_top_examples_are_largest_first_and_exclude_zero_coefficients():
    W = np.array([[0.0, 1], [3, 1], [0, 1], [1, 1], [2, 1]])
    np.testing.assert_array_equal(top_examples(W, 0, 10), [1, 4, 3])
    np.testing.assert_array_equal(top_examples(W, 0, 2), [1, 4])
    np.testing.assert_array_equal(top_examples(W, 1, 3), [0, 1, 2])  # ties keep example order
    assert len(top_examples(np.zeros((4, 1)), 0, 3)) == 0


def test_mass_shares_sum_to_one_and_weight_by_component_norms():
    rng = np.random.default_rng(0)
    W, G = rng.random((30, 4)), rng.normal(size=(4, 50))
    table = component_table(W, G, n_top=5)
    assert table["mass"].sum() == pytest.approx(1.0)
    by_hand = (W * (np.linalg.norm(G, axis=1) ** 2)).sum(axis=0)
    np.testing.assert_allclose(table["mass"], by_hand / by_hand.sum())
    np.testing.assert_allclose(scaled_coefficients(W, G, "d"), W * np.linalg.norm(G, axis=1))
    d_mass = component_table(W, np.abs(G), kind="d")["mass"]
    np.testing.assert_allclose(d_mass, (W * np.linalg.norm(G, axis=1)).sum(0) / (W * np.linalg.norm(G, axis=1)).sum())
    assert (table["n_top"] == 5).all()


def test_table_accuracy_ignores_unknown_labels():
    W = np.array([[3.0], [2], [1], [0]])
    table = component_table(W, np.ones((1, 2)), labels=np.array([1, -1, 0, 1]), predictions=np.array([1, 0, 1, 1]), n_top=3)
    assert table.loc[0, "accuracy"] == 0.5  # example 1's label is unknown; 0 right, 2 wrong
    assert table.loc[0, "prediction"] == 1 and table.loc[0, "prediction_purity"] == pytest.approx(2 / 3)


def test_an_unknown_label_is_never_a_component_s_label():
    """-1 marks an unknown label: a top set of two unlabelled examples and one labelled 1 read "label -1" at purity
    2/3, and a run without labels named every component "label -1" at purity 1."""
    from workbench.analysis.labels import component_labels

    W = np.array([[3.0], [2], [1], [0]])
    table = component_table(W, np.ones((1, 2)), labels=np.array([-1, -1, 1, 0]), predictions=np.array([1, 0, 1, 1]), n_top=3)
    assert table.loc[0, "label"] == 1 and table.loc[0, "label_purity"] == pytest.approx(1 / 3)
    unlabelled = component_table(W, np.ones((1, 2)), labels=np.full(4, -1), predictions=np.array([1, 0, 1, 1]), n_top=3)
    assert pd.isna(unlabelled.loc[0, "label"]) and unlabelled.loc[0, "label_purity"] == 0
    assert "label" not in component_labels(unlabelled)[0]


def test_rows_that_do_not_match_w_are_refused():
    W = np.ones((4, 2))
    with pytest.raises(ValueError, match="labels has 3 rows but W has 4"):
        component_table(W, np.ones((2, 3)), labels=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="attributes has 5 rows"):
        component_table(W, np.ones((2, 3)), attributes=pd.DataFrame({"tag": list("abcde")}))
    with pytest.raises(ValueError, match="examples has 2 rows"):
        top_examples_table(W, 0, pd.DataFrame({"text": ["x", "y"]}))


def test_component_table_on_the_embedded_run(embedded):
    run, _, _, examples, _, decomposition = embedded
    pefs = run.pefs()
    attributes = pd.DataFrame({"strategy": examples["strategies"].map(tuple)})
    table = component_table(
        decomposition.W_, decomposition.components_, labels=pefs.labels, predictions=pefs.predictions,
        attributes=attributes, n_top=20,
    )
    assert list(table.columns) == [
        "n_top", "g_norm", "mass", "label", "label_purity", "prediction", "prediction_purity", "accuracy",
        "strategy", "strategy_purity", "strategy_entropy",
    ]
    assert len(table) == decomposition.n_components and (table["n_top"] == 20).all()
    assert table["mass"].sum() == pytest.approx(1.0)
    saved = run.components()  # what the main job wrote
    np.testing.assert_allclose(table["strategy_purity"], saved["strategy_purity"])
    assert list(table["strategy"]) == list(saved["strategy"])

    j = 3
    top = top_examples(decomposition.W_, j, 20)
    assert table.loc[j, "accuracy"] == np.mean(pefs.labels[top] == pefs.predictions[top])
    assert table.loc[j, "g_norm"] == pytest.approx(np.linalg.norm(decomposition.G_[j]))
    assert ((table["strategy_entropy"] >= 0) & (table["strategy_entropy"] <= np.log2(4))).all()
    # Measured on the default run: mean strategy purity 0.83 against 0.42 for random sets of 20.
    chance = chance_purity(attributes["strategy"].tolist(), 20)
    assert table["strategy_purity"].mean() >= 0.75 > chance + 0.25
    # Purity and entropy agree where every top example has one strategy (entropy 0 exactly when
    # the set is pure); multi-factor examples keep a pure set's entropy above 0 (docs/reading.md).
    for j in range(decomposition.n_components):
        cells = attributes["strategy"].to_numpy()[top_examples(decomposition.W_, j, 20)]
        if all(len(cell) == 1 for cell in cells):
            assert (table.loc[j, "strategy_entropy"] == 0) == (table.loc[j, "strategy_purity"] == 1)
        elif table.loc[j, "strategy_purity"] == 1:
            assert 0 < table.loc[j, "strategy_entropy"] <= 1  # a pure set: at most one second value per example


def test_top_examples_table_lists_text_label_prediction_coefficient(embedded):
    run, _, _, examples, _, decomposition = embedded
    pefs = run.pefs()
    table = top_examples_table(decomposition.W_, 2, examples[["text", "strategy"]], labels=pefs.labels,
                               predictions=pefs.predictions, n_top=7)
    top = top_examples(decomposition.W_, 2, 7)
    assert list(table["example"]) == list(top)
    assert list(table["text"]) == list(examples["text"].iloc[top])
    assert list(table.columns) == ["example", "text", "strategy", "label", "prediction", "coefficient"]
    assert table["coefficient"].is_monotonic_decreasing and (table["coefficient"] > 0).all()


def test_top_examples_refuse_indices_and_counts_that_would_be_misread():
    """-1 used to read the last component, n_top=-1 all examples but one; bools and floats indexed numpy."""
    from workbench.analysis.lookup import loadings

    W = np.array([[1.0, 0.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match=r"component must be from 0 to 1, got -1"):
        top_examples(W, -1)
    with pytest.raises(IndexError, match=r"component must be from 0 to 1, got 2"):
        top_examples_table(W, 2, pd.DataFrame({"text": ["a", "b"]}))
    for bad in (True, 1.0, "1"):
        with pytest.raises(TypeError, match=r"component must be an integer.*from 0 to 1"):
            top_examples(W, bad)
    for n_top in (0, -1):
        with pytest.raises(ValueError, match=r"n_top must be an integer of at least 1"):
            top_examples(W, 0, n_top=n_top)
    with pytest.raises(ValueError, match=r"n must be an integer of at least 1"):
        loadings(W[1], np.ones((2, 3)), n=0)
    with pytest.raises(TypeError, match=r"n must be an integer"):
        loadings(W[1], np.ones((2, 3)), n=2.5)
    assert list(loadings(W[1], np.ones((2, 3)), n=1).index) == [1]


def test_tables_and_matching_name_what_they_cannot_read():
    """component_table gave negative or NaN masses, top_examples failed inside numpy on a 1-D W, and
    match_components with min_cos above 1 matched nothing without a word, or compared G with H."""
    from workbench.analysis.matching import match_components
    from workbench.npeff import DNpeff, LrmNpeff
    from workbench.npeff.planted import planted_d, planted_lrm

    W, G = np.abs(np.random.default_rng(0).normal(size=(12, 3))), np.ones((3, 5))
    for bad in (-W, np.where(W > 1, np.nan, W)):
        with pytest.raises(ValueError, match="finite and non-negative"):
            component_table(bad, G)
    with pytest.raises(ValueError, match="one row per column of W"):
        component_table(W, np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"W must be the \(n_examples, n_components\) coefficients"):
        top_examples(W[:, 0], 0)
    assert list(top_examples(pd.DataFrame(W), 0, 3)) == list(np.argsort(-W[:, 0])[:3])
    with pytest.raises(ValueError, match="min_cos must be"):
        match_components(G, G, min_cos=5)
    lrm = LrmNpeff(n_components=2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(planted_lrm(20, 30, 2).pefs)
    d = DNpeff(n_components=2, n_iters=3, progress=False).fit(planted_d(20, 30, 2).pefs)
    with pytest.raises(ValueError, match="a is a lrm decomposition and b a d one"):
        match_components(lrm, d)


@pytest.mark.parametrize("name", ["mass", "label", "topic_purity", "name"])
def test_an_attribute_named_as_a_column_of_the_table_is_refused(name):
    """An attribute "mass" replaced the components' mass shares by its own values, without a word; one called
    "name" stood in the labels' column, and the labels never showed."""
    W, G = np.abs(np.random.default_rng(0).normal(size=(6, 2))), np.ones((2, 3))
    with pytest.raises(ValueError, match=rf"attributes column '{name}' would stand for a column"):
        component_table(W, G, labels=np.zeros(6, dtype=int), attributes=pd.DataFrame({name: list("aabbcc")}), n_top=3)


def test_a_missing_attribute_value_is_no_value():
    """Three unlabelled top examples of five made None the majority "value" at purity 0.6; as a float column each
    NaN counted as a value of its own (entropy 1.92). A missing value is never the majority and holds no share:
    the purity stays the share of the whole top set (2 of 5), and the entropy is that of the known values."""
    W = np.array([[1.0], [0.9], [0.8], [0.7], [0.6]])
    for attribute in (["sports", None, None, None, "sports"], [1.0, np.nan, np.nan, np.float32("nan"), 1.0],
                      pd.to_datetime(["2026-01-01", None, None, None, "2026-01-01"])):
        table = component_table(W, np.ones((1, 3)), attributes=pd.DataFrame({"topic": attribute}), n_top=5)
        assert (table.loc[0, "topic"], table.loc[0, "topic_purity"], table.loc[0, "topic_entropy"]) == (attribute[0], 0.4, 0.0)
    assert purity([("a", None), (None,), "b", "a"]) == ("a", 0.5)
    assert purity([None, np.nan]) == (None, 0.0)
    assert chance_purity(["a", None, None, None], 3) > 0  # a draw of missing values alone read NaN for all
    assert value_shares(["a", None, "b", "a", pd.NA]).to_dict() == {"a": 0.4, "b": 0.2}


def test_the_top_examples_table_does_not_take_over_the_user_s_columns():
    """A column named "example" raised pandas' "cannot insert example, already exists", and a "label" column
    of label names was overwritten by labels=."""
    W = np.array([[1.0], [0.5], [0.2]])
    with pytest.raises(ValueError, match=r"examples has column\(s\) \['example'\], which the table adds"):
        top_examples_table(W, 0, pd.DataFrame({"example": ["a", "b", "c"]}))
    names = pd.DataFrame({"text": ["a", "b", "c"], "label": ["negative", "positive", "negative"]})
    with pytest.raises(ValueError, match=r"\['label'\].*leave out labels=/predictions="):
        top_examples_table(W, 0, names, labels=np.array([0, 1, 0]))
    assert top_examples_table(W, 0, names)["label"].tolist() == ["negative", "positive", "negative"]


def test_top_sets_take_tied_coefficients_by_example_index_as_top_examples_does():
    """The explorer's search and labels read top sets from a partial sort that kept an arbitrary few of the tied
    coefficients (examples 53, 54, 55, 60, 61, 62 where the pages showed 50, 53, 54, 55, 57, 58)."""
    from workbench.analysis.tables import top_sets

    rng = np.random.default_rng(0)
    W = rng.choice([0.0, 0.5, 1.0, 2.0], size=(400, 6), p=[0.5, 0.3, 0.15, 0.05])
    W[:, 5] = 0.0
    W[7, 5] = 1.0  # one example of positive coefficient
    for n_top in (1, 10, 60, 400, 500):
        sets = top_sets(W, n_top)
        assert sets.shape == (6, min(n_top, 400))  # no column past the examples
        for j in range(6):
            truth = [i for i in sorted(range(400), key=lambda i: (-W[i, j], i)) if W[i, j] > 0][:n_top]
            assert sets[j][sets[j] >= 0].tolist() == truth == top_examples(W, j, n_top).tolist()
            assert (sets[j][len(truth):] == -1).all()


def test_top_sets_hold_no_more_columns_than_examples():
    """An explorer opened with n_top=10**12 allocated (n_components, 10**12): numpy's MemoryError of 21.8 TiB."""
    from workbench.analysis.tables import top_sets

    sets = top_sets(np.arange(1.0, 11.0).reshape(5, 2), 10**12)
    assert sets.shape == (2, 5) and sorted(sets[0]) == [0, 1, 2, 3, 4]


def test_component_lists_and_indices_of_the_readings_are_checked_by_name(tmp_path):
    """nearest_components(G, -1) read the last component and n=-1 all but one, without a word; components=[] of a
    selectivity table failed in pandas ("None of ['component'] are in the columns"), an export of a generator's
    components recorded none of them, and coefficient_histogram's n_bins=0 numpy's "`bins` must be positive"."""
    from workbench.analysis import coefficient_histogram, nearest_components
    from workbench.analysis.export import export_components_safetensors
    from workbench.npeff import LrmNpeff
    from workbench.npeff.planted import planted_lrm

    fit = LrmNpeff(n_components=3, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(planted_lrm(20, 30, 3).pefs)
    with pytest.raises(IndexError, match=r"component must be from 0 to 2, got -1"):
        nearest_components(fit.G_, -1)
    with pytest.raises(ValueError, match=r"n must be an integer of at least 1, got -1"):
        nearest_components(fit.G_, 0, -1)
    assert nearest_components(fit.G_, np.int64(0), np.int64(2)).equals(nearest_components(fit.G_, 0, 2))
    with pytest.raises(ValueError, match=r"n_bins must be an integer of at least 1, got 0"):
        coefficient_histogram(fit.W_[:, 0], 0)
    with pytest.raises(TypeError, match=r"n_bins must be an integer, got 3\.0"):
        coefficient_histogram(fit.W_[:, 0], 3.0)
    with pytest.raises(ValueError, match=r"components=\[\] lists no component; pass some, or None for every component"):
        export_components_safetensors(fit, tmp_path / "none.safetensors", components=[])
    assert not (tmp_path / "none.safetensors").exists()
    path = export_components_safetensors(fit, tmp_path / "two.safetensors", components=(j for j in (2, 0)))
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        assert f.metadata()["components"] == "[2, 0]"

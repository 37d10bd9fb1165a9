"""A strategy is named by the share of a top set that holds it, also where examples hold two."""

import pandas as pd

from workbench.analysis.model_diff import DEFAULT_MIN_PURITY, _strategy_status


def test_a_top_set_of_single_and_two_strategy_examples_names_the_strategy_they_share():
    groups = [("contrast",), ("contrast", "negation"), ("contrast", "negation"), ("contrast",), ("lexical",), ("negation",)]
    # model A: one top set of contrast examples only; model B: contrast and contrast+negation mixed
    ev_a = pd.DataFrame({"top_own": [[0, 3], [4]]})
    ev_b = pd.DataFrame({"top_own": [[0, 1, 2, 3], [5, 4]]})
    table = _strategy_status(ev_a, ev_b, groups, DEFAULT_MIN_PURITY)
    assert table.loc["contrast", "status"] == "kept"
    assert table.loc["contrast", "components_b"] == [0] and table.loc["contrast", "best_purity_b"] == 1.0
    assert table.loc["negation", "status"] == "not named"  # half of B's first top set, half of its second
    assert table.loc["lexical", "status"] == "lost"  # A's second top set is all lexical; B's is half


def test_the_settings_of_a_model_diff_are_checked_before_its_pefs_and_fits():
    """min_cos=5 and min_purity=-1 gave meaningless tables; epsilon and n_top were found after the
    two models' PEFs and fits (minutes)."""
    import pytest

    from workbench.analysis.model_diff import model_diff

    for settings, message in [(dict(min_cos=5), "min_cos"), (dict(min_purity=-1), "min_purity"),
                              (dict(epsilon=0), "epsilon must be a positive"), (dict(n_top=0), "n_top must be")]:
        with pytest.raises(ValueError, match=message):
            model_diff(None, None, {}, [0, 1], ["a", "b"], **settings)


def test_other_layouts_missing_labels_and_fit_settings_are_refused_before_any_pefs(monkeypatch):
    """A 3-class model against a 2-class one was refused after both models' PEFs and fits; labels=None was
    a raw TypeError; zero iterations failed after model A's PEFs."""
    import pytest

    import workbench.runner as runner
    from tests.conftest import tiny_bert, tiny_bert_inputs
    from workbench.analysis.model_diff import model_diff

    monkeypatch.setattr(runner, "compute_pefs", lambda *args, **kwargs: pytest.fail("PEFs computed before the checks"))
    inputs, labels, groups = tiny_bert_inputs(6), [0, 1] * 3, ["a", "b"] * 3
    with pytest.raises(ValueError, match=r"different parameter layouts \(\d+ and \d+ parameters selected\)"):
        model_diff(tiny_bert(2), tiny_bert(3), inputs, labels, groups, n_components=2)
    with pytest.raises(ValueError, match="needs the examples' labels"):
        model_diff(tiny_bert(2), tiny_bert(2), inputs, None, groups, n_components=2)
    with pytest.raises(ValueError, match="needs at least one iteration"):
        model_diff(tiny_bert(2), tiny_bert(2), inputs, labels, groups, n_components=2, n_iters_g_only=0, n_iters_joint=0)
    with pytest.raises(ValueError, match="n_components=9 is more than the 6 examples"):
        model_diff(tiny_bert(2), tiny_bert(2), inputs, labels, groups, n_components=9)

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

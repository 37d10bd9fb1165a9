"""What the input checks accept (the refusals are the bad-input table, tests/test_bad_input.py)."""

import re

import numpy as np
import pytest
import torch

from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench import compute_pefs
from workbench.core.validation import as_labels, name_filter, name_predicate


def test_compiled_patterns_select_the_same_parameters_and_are_recorded_as_text():
    model, inputs = tiny_bert(3), tiny_bert_inputs(4)
    by_text = compute_pefs(model, inputs, n_values=50, include=r"encoder\.layer\.0\.", progress=False)
    by_pattern = compute_pefs(model, inputs, n_values=50, include=[re.compile(r"ENCODER\.layer\.0\.", re.I)],
                              progress=False)
    assert by_pattern.layout == by_text.layout
    assert by_pattern.info["include"] == [r"(?i)ENCODER\.layer\.0\."]
    assert (by_pattern.X != by_text.X).nnz == 0


def test_name_filters_keep_predicates_and_lists():
    assert name_filter(None, "include") is None
    assert name_filter(r"a\.", "include") == r"a\."
    assert name_filter((r"a", re.compile("b")), "exclude") == ["a", "b"]
    test = name_predicate(lambda name: name.endswith("bias"), "include", True)
    assert test("x.bias") and not test("x.weight")


@pytest.mark.parametrize("labels", [[0, 2, -1], np.array([0.0, 2.0, -1.0]), torch.tensor([0, 2, -1]), (0, 2, -1)])
def test_integer_labels_in_any_container_and_whole_floats_are_accepted(labels):
    out = as_labels(labels, 3)
    assert out.dtype == torch.long and out.tolist() == [0, 2, -1]


def test_labels_that_are_not_one_per_example_are_refused():
    with pytest.raises(ValueError, match=r"shape \(3, 2\); expected \(3,\).*argmax"):
        as_labels(np.eye(3, 2), 3)
    with pytest.raises(ValueError, match=r"NaN or infinite; use -1"):
        as_labels([0.0, np.nan, 1.0], 3)
    with pytest.raises(ValueError, match=r"label -2 of example 1 is negative"):
        as_labels([0, -2, 1], 3)
    with pytest.raises(TypeError, match="integer class indices, got bool"):
        as_labels([True, False, True], 3)

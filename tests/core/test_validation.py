"""What the input checks accept (the refusals are the bad-input table, tests/test_bad_input.py)."""

import re

import numpy as np
import pytest
import torch

from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench import compute_pefs
from workbench.core.arguments import OutOfRangeError, component_index, fraction, positive_int
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


# -- indices and counts: one checker for every component index and count a user passes ----------

@pytest.mark.parametrize("value", [True, np.bool_(False), 1.0, 1.5, "1", None])
def test_a_component_index_that_is_not_an_integer_is_a_type_error_naming_the_range(value):
    with pytest.raises(TypeError, match=r"component must be an integer, got .*; pass an int from 0 to 3"):
        component_index(value, 4)


@pytest.mark.parametrize("value", [-1, 4, np.int64(-4)])
def test_a_component_index_out_of_range_is_refused_and_negatives_do_not_count_from_the_end(value):
    with pytest.raises(ValueError, match=r"j must be from 0 to 3, got .*4 components.*does not count from the end"):
        component_index(value, 4, "j")
    with pytest.raises(IndexError):  # also what Python's own indexing raises
        component_index(value, 4, "j")
    assert issubclass(OutOfRangeError, IndexError) and issubclass(OutOfRangeError, ValueError)


def test_component_indices_and_counts_come_back_as_ints():
    assert component_index(np.int64(3), 4) == 3 and type(component_index(np.int64(3), 4)) is int
    assert positive_int(np.int32(5), "n_top") == 5 and positive_int(0, "n_iters", minimum=0) == 0
    assert fraction(1, "min_purity") == 1.0


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError), (True, TypeError), (2.5, TypeError),
                                          ("3", TypeError)])
def test_counts_below_the_minimum_or_not_integers_are_refused_by_name(value, error):
    with pytest.raises(error, match=r"batch_size must be an integer.*batch_size=10"):
        positive_int(value, "batch_size")


@pytest.mark.parametrize("value, error", [("a", TypeError), (True, TypeError), (-0.1, ValueError),
                                          (1.5, ValueError), (float("nan"), ValueError)])
def test_fractions_are_numbers_from_0_to_1(value, error):
    with pytest.raises(error, match=r"min_purity must be a number from 0 to 1.*min_purity=0\.5"):
        fraction(value, "min_purity")


def test_an_input_the_model_would_ignore_is_named():
    """Hugging Face forwards take **kwargs: a misspelt mask would run unread, padding and all."""
    inputs = dict(tiny_bert_inputs(4))
    inputs["attention_masks"] = inputs.pop("attention_mask")
    with pytest.warns(UserWarning, match=r"inputs \['attention_masks'\] are not arguments of "
                                         r"BertForSequenceClassification\.forward, which would ignore them"):
        compute_pefs(tiny_bert(3), inputs, progress=False)


def test_a_wrapper_that_passes_everything_on_is_not_warned_about(recwarn):
    from workbench.core.validation import warn_ignored_inputs

    class Wrapper(torch.nn.Module):  # as peft's PeftModel: forward(*args, **kwargs)
        def forward(self, *args, **kwargs):
            return kwargs

    class PassesOn(torch.nn.Module):  # forward(**inputs): our tokenization keeps every input for it, too
        def forward(self, **inputs):
            return inputs

    for wrapper in (Wrapper(), PassesOn()):
        warn_ignored_inputs(wrapper, {"input_ids": torch.zeros(1, 2), "attention_mask": torch.ones(1, 2)})
    assert not [w for w in recwarn if "not arguments" in str(w.message)]


def test_labels_from_a_generator_are_read_as_their_values():
    assert as_labels((i % 3 for i in range(4)), 4).tolist() == [0, 1, 2, 0]


def test_a_forward_that_returns_a_dict_of_logits_is_read():
    """{"logits": ...} from a forward of one's own was refused as 'got dict'."""
    class AsDict(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_bert(3)

        def forward(self, **inputs):
            return {"logits": self.inner(**inputs).logits}

    model, inputs = AsDict(), tiny_bert_inputs(4)
    wrapped = compute_pefs(model, inputs, n_values=None, progress=False).dense()
    plain = compute_pefs(model.inner, inputs, n_values=None, progress=False).dense()
    np.testing.assert_allclose(wrapped, plain, atol=1e-6 * np.abs(plain).max())


def test_more_top_classes_than_the_model_has_is_said():
    """top_k_classes=4 of a 3-class model was clamped to 3 without a word."""
    with pytest.warns(UserWarning, match=r"top_k_classes=4 is more than the model's 3 classes: every class is kept"):
        pefs = compute_pefs(tiny_bert(3), tiny_bert_inputs(4), n_values=50, top_k_classes=4, progress=False)
    assert pefs.n_slots == 3 and pefs.info["top_k_classes"] is None  # recorded as what it is: every class


@pytest.mark.parametrize("entry", ["compute_pefs", "write_pefs"])
def test_the_run_s_warnings_about_the_model_name_the_caller_s_line(entry, tmp_path):
    """The model checks warned at stacklevels fixed for one call path: a multi-label model was named at
    workbench/runner/compute.py, an input the model ignores at workbench/runner/run.py, outputs that look
    like probabilities one line above the caller's, so a filter on the user's module missed them."""
    from workbench import write_pefs

    class Probabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_bert(3)

        def forward(self, input_ids, attention_mask=None, **kwargs):
            return torch.softmax(self.inner(input_ids=input_ids, attention_mask=attention_mask).logits, dim=-1)

    model = Probabilities()
    model.inner.config.problem_type = "multi_label_classification"
    model.config = model.inner.config
    inputs = dict(tiny_bert_inputs(4), attention_masks=torch.ones(4, 10, dtype=torch.long))
    run = {"compute_pefs": lambda: compute_pefs(model, inputs, n_values=50, top_k_classes=4, progress=False),
           "write_pefs": lambda: write_pefs(tmp_path / "pefs", model, inputs, n_values=50, top_k_classes=4,
                                            progress=False)}[entry]
    with pytest.warns(UserWarning) as caught:
        run()
    shown = {re.split(r"[:(]", str(w.message))[0][:40]: w.filename for w in caught}
    assert len(shown) >= 4, shown  # multi-label, an ignored input, probabilities, top_k_classes
    assert set(shown.values()) == {__file__}, shown


class _AutocastInside(torch.nn.Module):
    """A float32 classifier whose forward runs under its own bfloat16 autocast."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_bert(3)

    def forward(self, **inputs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner(**inputs).logits


def test_a_forward_that_computes_in_half_precision_is_warned_about(recwarn):
    """Float32 parameters under an autocast inside the forward gave PEFs 0.4% off the float32 model's
    without a word (HalfPrecisionError sees the parameters only); a caller's autocast is no such case:
    the run turns it off."""
    with pytest.warns(UserWarning, match=r"logits are bfloat16 though its parameters are float32.*autocast inside it"):
        compute_pefs(_AutocastInside(), tiny_bert_inputs(4), n_values=50, progress=False)
    recwarn.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        compute_pefs(tiny_bert(3), tiny_bert_inputs(4), n_values=50, progress=False)
    assert not [w for w in recwarn if "half precision" in str(w.message)]


def test_a_datasets_label_column_is_read_as_the_labels(recwarn):
    """A datasets batch names its labels "label": they ran as an input the model ignores (a warning), and
    the examples were stored as unlabelled."""
    inputs = tiny_bert_inputs(4)
    pefs = compute_pefs(tiny_bert(3), dict(inputs, label=torch.tensor([2, 0, 1, 2])), n_values=50, progress=False)
    assert pefs.labels.tolist() == [2, 0, 1, 2]
    assert not [w for w in recwarn if "not arguments" in str(w.message)]
    with pytest.raises(ValueError, match=r"labels are given twice, as labels= and as inputs\['label'\]"):
        compute_pefs(tiny_bert(3), dict(inputs, label=torch.tensor([2, 0, 1, 2])), [0, 0, 0, 0], progress=False)


@pytest.mark.parametrize("shape, match", [
    ("rows", r"a list of 4 examples' dicts: collate them .*tokenizer\.pad\(examples, return_tensors='pt'\)"),
    ("ragged", r"inputs\['input_ids'\] is a list of rows of 7 to 10 values, not a tensor: pad them.*padding=True"),
    ("text", r"inputs\['text'\] holds text, which no model takes: leave it out"),
])
def test_inputs_as_a_dataset_gives_them_are_refused_with_the_fix(shape, match):
    """Rows as dicts, a tokenizer's output without padding and a datasets text column were refused as 'got
    list' or with 'pass torch.as_tensor(...)', which fails on rows of several lengths."""
    inputs = tiny_bert_inputs(4)
    ids = [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
    given = {"rows": [{"input_ids": row} for row in ids],
             "ragged": {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]},
             "text": dict(text=["a", "b", "c", "d"], **inputs)}[shape]
    with pytest.raises(TypeError, match=match):
        compute_pefs(tiny_bert(3), given, progress=False)


class _CastsItsOwnHead(torch.nn.Module):
    """A float32 encoder under a float64 head that casts between them itself."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_bert(3)
        self.head = torch.nn.Linear(3, 3, dtype=torch.float64)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.inner(input_ids=input_ids, attention_mask=attention_mask).logits.double()).float()


def test_a_model_of_mixed_dtypes_that_casts_them_itself_runs():
    """Mixed dtypes are named only where torch refused them inside the forward, never for the dtypes alone."""
    pefs = compute_pefs(_CastsItsOwnHead(), tiny_bert_inputs(4), [0, 1, 2, 0], n_values=50, progress=False)
    assert pefs.n_examples == 4 and np.isfinite(pefs.frobenius_norms).all()


def test_a_parameter_layout_made_by_hand_is_checked_and_compares_as_read_back():
    """A layout of lists was unequal to itself read back from a file (a transform of such PEFs was refused as
    'computed over other parameters'), and a name without its shape was kept, split() dropping what followed."""
    from workbench import ParameterLayout

    layout = ParameterLayout(["w", "b"], [[2, 3], [3]])
    assert layout == ParameterLayout.from_dict(layout.to_dict()) and layout.n_parameters == 9
    with pytest.raises(ValueError, match=r"one name per shape: got 1 names for 2 shapes"):
        ParameterLayout(("w",), ((2, 3), (3,)))
    with pytest.raises(ValueError, match=r"shapes are tuples of sizes \(integers of at least 0\), got \(\(2\.5,\),\)"):
        ParameterLayout(("w",), ((2.5,),))
    with pytest.raises(ValueError, match=r"names are the parameters' names \(str\), got \(1,\)"):
        ParameterLayout((1,), ((2,),))


def test_a_pef_set_prints_as_one_line_of_its_sizes():
    """`pefs` in a notebook printed the dataclass: every norm, logit and class slot, 268 lines for 120 examples."""
    from workbench import DPefs, LrmPefs

    lrm = LrmPefs.from_dense(np.ones((50, 2, 7)), info={"model": "models/mine"})
    assert repr(lrm) == "LrmPefs(50 examples, 2 class slots each, 7 parameters, 700 values kept, model 'models/mine')"
    assert repr(DPefs.from_dense(np.ones((3, 4)))) == "DPefs(3 examples, 4 parameters, 12 values kept)"
    sketched = LrmPefs.from_dense(np.ones((5, 2, 8)), info={"sketch": {"method": "count", "d": 8, "seed": 0}})
    assert repr(sketched) == "LrmPefs(5 examples, 2 class slots each, 8 sketch coordinates, 80 values kept)"

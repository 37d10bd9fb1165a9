"""The bad-input table (README, Troubleshooting): every case raises an error that names the
problem and the fix, and leaves no file behind."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

from tests.conftest import tiny_bert, tiny_bert_inputs
from workbench import compute_pefs, write_pefs
from workbench.app.pipeline import run_embedded
from workbench.fisher import NotClassLogitsError
from workbench.models.loading import ModelNotAvailableOfflineError, load_classifier
from workbench.npeff import LrmNpeff
from workbench.npeff.planted import planted_lrm
from workbench.runner import InsufficientResourcesError, estimate
from workbench.store import StoreError, load_pefs, save_pefs


def _fit_hand_made(kind, value):
    """PEFs built as a record (not by from_dense, which checks its array) with ``value`` in example 3's values:
    a negative D-PEF failed in the fit as 'math domain error'."""
    import dataclasses

    import scipy.sparse as sp

    from workbench import DNpeff, DPefs, LrmPefs

    rng = np.random.default_rng(0)
    if kind == "d":
        pefs = DPefs.from_dense(np.abs(rng.normal(size=(6, 10))))
        F = pefs.F.toarray()
        F[3, 2] = value
        return DNpeff(n_components=2, n_iters=3, progress=False).fit(dataclasses.replace(pefs, F=sp.csr_matrix(F)))
    pefs = LrmPefs.from_dense(rng.normal(size=(6, 2, 10)))
    X = pefs.X.toarray()
    X[7, 2] = value
    LrmNpeff(n_components=2, progress=False).fit(dataclasses.replace(pefs, X=sp.csr_matrix(X)))


@dataclass
class Case:
    name: str
    error: type
    match: str  # the problem ... and the fix
    run: Callable[[Path], None]  # raises; may prepare files first (returned by prepare)
    prepare: Callable[[Path], None] = lambda tmp: None


def _inputs(n=9):
    return tiny_bert_inputs(n)


def _empty(tmp):
    empty = {k: v[:0] for k, v in _inputs().items()}
    write_pefs(tmp / "pefs", tiny_bert(3), empty, progress=False)


def _labels_out_of_range(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), labels=[0, 1, 2, 5, 0, 1, 2, 0, 1], progress=False)


class _Regressor(torch.nn.Module):
    """A model whose output is one number per example, not class logits."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_bert(3)
        self.head = torch.nn.Linear(3, 1)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.inner(input_ids=input_ids, attention_mask=attention_mask).logits)


def _not_logits(tmp):
    write_pefs(tmp / "pefs", _Regressor(), _inputs(), progress=False)


class _Grid(torch.nn.Module):
    """A model whose output is no (batch, classes) table: a 2×3 grid per example."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(100, 6)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return self.embedding(input_ids).mean(dim=1).reshape(-1, 2, 3)


def _not_two_dimensional(tmp):
    write_pefs(tmp / "pefs", _Grid(), _inputs(), progress=False)


def _filter_matches_nothing(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), include=r"decoder\.", progress=False)


def _too_many_components(tmp):
    LrmNpeff(20, progress=False).fit(planted_lrm(9, 30, 2).pefs, checkpoint=tmp / "fit.safetensors")


def _all_zero_pefs(tmp):
    model = tiny_bert(3)
    with torch.no_grad():
        model.classifier.weight.zero_()  # the encoder no longer changes the output: its PEFs are zero
    pefs = compute_pefs(model, _inputs(), include=r"encoder\.", progress=False)
    LrmNpeff(2, progress=False).fit(pefs, checkpoint=tmp / "fit.safetensors")


def _nan_weights(tmp):
    model = tiny_bert(3)
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.self.query.weight[0, 0] = float("nan")
    write_pefs(tmp / "pefs", model, _inputs(), progress=False)


def _missing_store(tmp):
    load_pefs(tmp / "pefs")


def _make_store(tmp):
    save_pefs(planted_lrm(20, 30, 2).pefs, tmp / "pefs", examples_per_chunk=10)


def _truncate_chunk(tmp):
    _make_store(tmp)
    chunk = tmp / "pefs" / "chunks" / "000001.safetensors"
    chunk.write_bytes(chunk.read_bytes()[:100])


def _truncate_manifest(tmp):
    _make_store(tmp)
    manifest = tmp / "pefs" / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:50])


def _make_decomposition(tmp):
    model = tiny_bert(3, seed=0)
    pefs = compute_pefs(model, _inputs(), n_values=200, progress=False)
    LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(pefs).save(tmp / "decomposition.safetensors")


def _decomposition_of_another_model(tmp):
    LrmNpeff.load(tmp / "decomposition.safetensors", model=tiny_bert(3, seed=1))


def _decomposition_of_other_architecture(tmp):
    LrmNpeff.load(tmp / "decomposition.safetensors", model=tiny_bert(2, seed=0))


def _decomposition_loaded_as_the_other_kind(tmp):
    from workbench.npeff import DNpeff

    DNpeff.load(tmp / "decomposition.safetensors")


def _transform_of_the_other_kind(tmp):
    model = tiny_bert(3, seed=0)
    fit = LrmNpeff.load(tmp / "decomposition.safetensors", model=model)
    fit.transform(compute_pefs(model, _inputs(), kind="d", n_values=200, progress=False))


def _fit_of_a_dense_array(tmp):
    LrmNpeff(2, progress=False).fit(np.ones((9, 2, 40), dtype=np.float32))


def _notebook_parameter_type(tmp):
    run_embedded(tmp / "run", n_examples="600", progress=False)


def _notebook_parameter_kind(tmp):
    run_embedded(tmp / "run", kind="diagonal", progress=False)


def _device_missing(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), device=f"cuda:{torch.cuda.device_count() + 7}", progress=False)


def _device_unknown(tmp):
    run_embedded(tmp / "run", device="tpu", progress=False)


def _other_arguments(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), n_values=200, progress=False)


def _store_with_other_arguments(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), n_values=100, progress=False)


def _disk_full(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), progress=False)


def _memory_short(tmp):
    compute_pefs(tiny_bert(3), _inputs(), progress=False)


def _hub_name_offline(tmp):
    load_classifier("someone/model-that-is-not-here")


def _make_checkpoint(tmp):
    LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(planted_lrm(20, 30, 2, seed=0).pefs,
                                                                        checkpoint=tmp / "fit.safetensors")


def _checkpoint_of_other_data(tmp):
    LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(planted_lrm(20, 30, 2, seed=1).pefs,
                                                                        checkpoint=tmp / "fit.safetensors")


def _pefs_of_another_model(tmp):
    decomposition = LrmNpeff.load(tmp / "decomposition.safetensors")
    decomposition.transform(compute_pefs(tiny_bert(3, seed=1), _inputs(), n_values=200, progress=False))


def _string_labels(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), labels=["pos", "neg"] * 4 + ["pos"], progress=False)


def _fractional_labels(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), labels=[1.6, 0.6, 1, 0, 2, 1, 0, 1, 2], progress=False)


def _no_examples(tmp):
    compute_pefs(tiny_bert(3), [], progress=False)


def _empty_sequence(tmp):
    inputs = _inputs()
    inputs["attention_mask"][4] = 0
    write_pefs(tmp / "pefs", tiny_bert(3), inputs, progress=False)


def _too_long(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), tiny_bert_inputs(9, length=30), progress=False)


def _bad_regex(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), include="encoder.(layer", progress=False)


def _filter_of_wrong_type(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), exclude=3, progress=False)


def _meta_model(tmp):
    with torch.device("meta"):
        model = tiny_bert(3)
    write_pefs(tmp / "pefs", model, _inputs(), progress=False)


def _a_float64_head(tmp):
    model = tiny_bert(3)
    model.classifier.double()  # a head cast apart from its float32 encoder
    write_pefs(tmp / "pefs", model, _inputs(), progress=False)


def _a_float16_encoder_under_its_head_alone(tmp):
    model = tiny_bert(3)
    model.bert.half()  # the float32 head is all the PEFs select, so HalfPrecisionError has no say
    write_pefs(tmp / "pefs", model, _inputs(), include="classifier", progress=False)


class _Float64Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3, dtype=torch.float64)

    def forward(self, features):
        return self.linear(features)


def _a_float64_model_given_float32_features(tmp):
    write_pefs(tmp / "pefs", _Float64Linear(), torch.randn(6, 4), progress=False)


def _a_reading_of_a_float64_head(tmp):
    from workbench.analysis import perturbation_check

    model = tiny_bert(3, seed=0)
    model.classifier.double()
    decomposition = LrmNpeff.load(tmp / "decomposition.safetensors")
    perturbation_check(model, decomposition, 0, _inputs(), [0, 1, 2] * 3, [0, 1], [2, 3])


def _meta_model_read(reading):
    def run(tmp):
        from workbench.analysis import logit_change, token_scores

        with torch.device("meta"):
            model = tiny_bert(3)
        decomposition = LrmNpeff.load(tmp / "decomposition.safetensors")
        {"token_scores": token_scores, "logit_change": logit_change}[reading](model, decomposition, 0, _inputs())
    return run


def _token_scores_of_no_class(tmp):
    from workbench.analysis import token_scores

    token_scores(tiny_bert(3, seed=0), LrmNpeff.load(tmp / "decomposition.safetensors"), 0, _inputs(), top_k_classes=0)


def _more_components_than_parameters(tmp):
    import numpy as np

    from workbench import DPefs
    from workbench.npeff import DNpeff

    pefs = DPefs.from_dense(np.random.default_rng(0).uniform(0.1, 1.0, (30, 2)))  # 30 examples over 2 parameters
    DNpeff(4, progress=False).fit(pefs, checkpoint=tmp / "fit.safetensors")


def _broken_link(tmp):
    (tmp / "pefs").symlink_to(tmp / "nowhere")


def _file_as_parent(tmp):
    (tmp / "notes.txt").write_text("mine")


def _ids_outside_vocabulary(tmp):
    inputs = _inputs()
    inputs["input_ids"][7, 2] = 10_000
    write_pefs(tmp / "pefs", tiny_bert(3), inputs, batch_size=3, progress=False)


def _export_of_a_component_the_fit_lacks(tmp):
    from workbench.analysis.export import export_components_safetensors

    export_components_safetensors(LrmNpeff.load(tmp / "decomposition.safetensors"), tmp / "c.safetensors", components=[9])


def _export_of_perturbations_that_are_none(tmp):
    from workbench.analysis.export import export_perturbations

    export_perturbations(["x"], tmp / "p.csv")


def _token_types_outside_the_model_s(tmp):
    inputs = _inputs()
    write_pefs(tmp / "pefs", tiny_bert(3), dict(inputs, token_type_ids=torch.full_like(inputs["input_ids"], 5)),
               progress=False)


class _IdsOnly(torch.nn.Module):
    """A model of one's own whose forward takes the ids alone."""

    def __init__(self):
        super().__init__()
        self.bert = tiny_bert(3)

    def forward(self, input_ids):
        return self.bert(input_ids=input_ids).logits


class _UnderNoGrad(_IdsOnly):
    def forward(self, input_ids, attention_mask=None):
        with torch.no_grad():
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits


def _bare_float_tensor(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs()["input_ids"].float(), progress=False)


def _one_example_without_its_batch_axis(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), {"input_ids": _inputs()["input_ids"][0]}, progress=False)


def _decoder_without_a_padding_token(tmp):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(vocab_size=40, n_positions=16, n_embd=8, n_layer=1, n_head=2,
                                                     num_labels=3, pad_token_id=None))  # as GPT-2 ships
    write_pefs(tmp / "pefs", model, {"input_ids": _inputs()["input_ids"]}, batch_size=1, progress=False)


def _sketch_wider_than_the_model(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), sketch=10**9, progress=False)


def _float_ids(tmp):
    inputs = _inputs()
    write_pefs(tmp / "pefs", tiny_bert(3), dict(inputs, input_ids=inputs["input_ids"].float()), progress=False)


def _mask_of_other_length(tmp):
    inputs = _inputs()
    write_pefs(tmp / "pefs", tiny_bert(3), dict(inputs, attention_mask=inputs["attention_mask"][:, :5]), progress=False)


def _label_out_of_range_in_a_later_batch(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), labels=[0, 1, 2, 0, 1, 2, 0, 1, 7], batch_size=3, progress=False)


def _users_folder(tmp):
    (tmp / "pefs").mkdir()
    (tmp / "pefs" / "thesis.tex").write_text("months of work")


def _save_over_a_store(tmp):
    save_pefs(planted_lrm(20, 30, 2).pefs, tmp / "pefs", examples_per_chunk=10)


def _nan_pefs(tmp):
    import numpy as np

    from workbench import LrmPefs

    dense = np.ones((4, 2, 6), dtype=np.float32)
    dense[1, 0, 3] = np.nan
    save_pefs(LrmPefs.from_dense(dense), tmp / "pefs")


def _dense_labels_out_of_range(tmp):
    import numpy as np

    from workbench import LrmPefs

    LrmPefs.from_dense(np.ones((2, 3, 4)), labels=[0, 5], logits=np.zeros((2, 3)))


def _folder_of_the_user_s(tmp):
    (tmp / "mine" / "model").mkdir(parents=True)  # a run would replace model/
    (tmp / "mine" / "model" / "weights.bin").write_text("months of training")


def _no_such_component(tmp):
    LrmNpeff.load(tmp / "decomposition.safetensors").component(5)


def _all_frozen(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3).requires_grad_(False), _inputs(), progress=False)


def _compiled_model(tmp):
    write_pefs(tmp / "pefs", torch.compile(tiny_bert(3)), _inputs(), progress=False)


def _offloaded_model(tmp):
    model = tiny_bert(3)
    model.classifier.to("meta")
    model.classifier._hf_hook = object()  # as accelerate's dispatch_model leaves an offloaded layer
    write_pefs(tmp / "pefs", model, _inputs(), progress=False)


def _embeddings_too_long(tmp):
    embeds = torch.randn(3, 30, 16)  # 30 positions, the model has 24
    write_pefs(tmp / "pefs", tiny_bert(3), {"inputs_embeds": embeds, "attention_mask": torch.ones(3, 30, dtype=torch.long)},
               progress=False)


def _include_of_frozen_parameters(tmp):
    model = tiny_bert(3)
    model.bert.embeddings.requires_grad_(False)
    write_pefs(tmp / "pefs", model, _inputs(), include="embeddings", progress=False)


def _half_precision_head(tmp):
    model = tiny_bert(3)
    model.classifier.to(torch.bfloat16)
    write_pefs(tmp / "pefs", model, _inputs(), progress=False)


def _inputs_on_meta(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), {k: v.to("meta") for k, v in _inputs().items()}, progress=False)


def _one_example_without_its_batch_axis_and_its_label(tmp):
    write_pefs(tmp / "pefs", tiny_bert(3), _inputs()["input_ids"][0], [1], progress=False)


def _set_cells(tmp):
    from workbench.analysis import component_table

    component_table(np.ones((4, 2)), np.ones((2, 3)), attributes=pd.DataFrame({"s": [{"a", "b"}] * 4}))


def _explorer_of_a_path(tmp):
    from workbench.app.explore import RunExplorer

    RunExplorer(str(tmp / "run"))


def _lookup_of_a_matrix(tmp):
    from workbench.analysis.lookup import loadings

    loadings(np.ones((2, 3)), np.ones((3, 4)))


def _match_with_an_unfitted_fit(tmp):
    from workbench.analysis import match_components

    match_components(LrmNpeff(2, n_iters_g_only=1, n_iters_joint=1, progress=False).fit(planted_lrm(10, 30, 2).pefs),
                     LrmNpeff(2))


def _h5_of_the_other_kind(tmp):
    from workbench import DPefs
    from workbench.npeff.interop import write_lrm_pefs_h5

    write_lrm_pefs_h5(DPefs.from_dense(np.ones((3, 5), dtype=np.float32)), tmp / "pefs.h5")


def _small_synthetic_run(tmp):
    from tests.widgets.synthetic import synthetic_run

    synthetic_run(tmp / "run", n_components=3, n_examples=40, density=0.5)


def _selectivity_of_one_component(tmp):
    from workbench.app.explore import RunExplorer

    RunExplorer.open(tmp / "run").selectivity(1)


CASES = [
    Case("run folder whose name is not UTF-8", ValueError, r"is not a valid UTF-8 path: the run's model could be written "
         r"there but never read back.*choose a folder whose name is UTF-8",
         lambda tmp: run_embedded(tmp / "caf\udce9", n_examples=40, progress=False)),
    Case("run folder that cannot be made", StoreError, r"cannot make the folder /proc/npeff-run for a run \(No such file "
         r"or directory\); choose a folder this user may write",
         lambda tmp: run_embedded("/proc/npeff-run", n_examples=40, progress=False)),
    Case("more examples than the memory holds", InsufficientResourcesError, r"n_examples=1000000000000 examples need at "
         r"least .* of memory for their texts and tokens alone.*ask for fewer examples",
         lambda tmp: run_embedded(tmp / "run", n_examples=10**12, progress=False)),
    Case("one component where a list of them belongs", TypeError, r"components must be a list of component indices, got 1 "
         r"\(int\); for one component pass \[1\]", _selectivity_of_one_component, _small_synthetic_run),
    Case("save_pefs of a plain array", TypeError, r"save_pefs writes LrmPefs or DPefs, got ndarray.*LrmPefs\.from_dense",
         lambda tmp: save_pefs(np.ones((3, 4)), tmp / "pefs")),
    Case("PEFs of the other kind to an h5 writer", TypeError, r"write_lrm_pefs_h5 writes LrmPefs, got DPefs; write those "
         r"with write_d_pefs_h5", _h5_of_the_other_kind),
    Case("a model with every parameter frozen", ValueError,
         r"none of the model's parameters is trainable.*model\.requires_grad_\(True\)", _all_frozen),
    Case("a compiled model", TypeError, r"the model is compiled \(torch\.compile\).*pass the model before compiling: "
         r"model\._orig_mod", _compiled_model),
    Case("a model offloaded by accelerate", ValueError, r"parameters are offloaded \(accelerate's hooks.*load the model on "
         r"one device.*remove_hook_from_module", _offloaded_model),
    Case("input embeddings longer than the model's positions", ValueError,
         r"3 examples are longer than the model's 24 positions .*cut the input embeddings \(and the mask\) to 24 "
         r"positions", _embeddings_too_long),
    Case("include of frozen parameters alone", ValueError, r"matches 5 of the model's parameters, all frozen "
         r"\(requires_grad=False; e\.g\. bert\.embeddings\..*unfreeze them", _include_of_frozen_parameters),
    Case("a half-precision head", TypeError, r"2 selected parameters are in half precision \(e\.g\. classifier\.weight "
         r"\(bfloat16\).*model\.float\(\)(?!.*exclude)", _half_precision_head),
    Case("a seed beyond torch's range", ValueError, r"seed must be an integer from 0 to 2\*\*63 - 1, got 18446744073709551616",
         lambda tmp: run_embedded(tmp / "run", n_examples=40, seed=2**64, progress=False)),
    Case("a fit's seed beyond torch's range", ValueError, r"'seed' parameter of LrmNpeff must be an int in the range "
         r"\[0, 9223372036854775807\]", lambda tmp: LrmNpeff(2, seed=2**64 - 1).fit(planted_lrm(10, 30, 2).pefs)),
    Case("save over a file of the user's", StoreError, r"notes\.txt exists and is not a decomposition or other "
         r"safetensors file written by this package; choose a new file, or delete it first",
         lambda tmp: LrmNpeff(2, n_iters_g_only=1, n_iters_joint=1, progress=False).fit(planted_lrm(10, 30, 2).pefs)
         .save(tmp / "notes.txt"), lambda tmp: (tmp / "notes.txt").write_text("mine")),
    Case("inputs on the meta device", ValueError, r"inputs\['input_ids'\] is on the meta device: it has a shape but no "
         r"values", _inputs_on_meta),
    Case("one example's ids without the batch axis, with its label", ValueError, r"labels has shape \(1,\); expected "
         r"\(10,\).*one axis of 10 values, read as 10 examples.*ids\.unsqueeze\(0\)",
         _one_example_without_its_batch_axis_and_its_label),
    Case("attribute cells that are sets", TypeError, r"attributes column 's' holds a set .* a list of values", _set_cells),
    Case("an explorer of a path", TypeError, r"RunExplorer takes an opened Run, got str; .*RunExplorer\.open\(",
         _explorer_of_a_path),
    Case("loadings of several examples", ValueError, r"coefficients are one example's row of W \(n_components,\), got "
         r"shape \(2, 3\)", _lookup_of_a_matrix),
    Case("growing from an unfitted decomposition", NotFittedError, r"init is an unfitted LrmNpeff: fit it first",
         lambda tmp: LrmNpeff(3, progress=False).fit(planted_lrm(n_examples=30, n_parameters=40, n_components=2).pefs,
                                                     init=LrmNpeff(2))),
    Case("matching an unfitted decomposition", NotFittedError, r"b is an unfitted LrmNpeff; fit it first",
         _match_with_an_unfitted_fit),
    Case("labels given twice, differently", ValueError, r"labels are given twice, as labels= and as inputs\['labels'\], "
         r"and they differ", lambda tmp: write_pefs(tmp / "pefs", tiny_bert(3), {**_inputs(), "labels": torch.zeros(9,
         dtype=torch.long)}, np.ones(9, dtype=int), progress=False)),
    Case("a multiple-choice batch", ValueError, r"input_ids have shape \(3, 2, 10\), three axes, as a multiple-choice "
         r"model takes them.*wrap the model", lambda tmp: write_pefs(tmp / "pefs", tiny_bert(3), {k: v[:6].reshape(3, 2, 10)
         for k, v in _inputs().items()}, progress=False)),
    Case("token ids outside the vocabulary", ValueError,
         r"1 examples hold token ids outside the model's vocabulary of 40 \(first: example 7, id 10000\).*own tokenizer",
         _ids_outside_vocabulary),
    Case("token ids that are floats", TypeError, r"input_ids are torch\.float32: token ids must be integers", _float_ids),
    Case("a sketch wider than the parameters", ValueError, r"sketch=1000000000 is not smaller than the \d+ parameters.*"
         r"pass n_values=None \(exact\)", _sketch_wider_than_the_model),
    Case("a sketch seed without a sketch", ValueError, r"sketch_seed=3 chooses a count sketch, but sketch is None: pass "
         r"sketch=d", lambda tmp: write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), sketch_seed=3, progress=False)),
    Case("n_values beside a sketch", ValueError, r"n_values=100 selects each example's top entries, which a sketched PEF "
         r"does not do.*leave n_values out with sketch=d", lambda tmp: write_pefs(tmp / "pefs", tiny_bert(3), _inputs(),
         sketch=32, n_values=100, progress=False)),
    Case("a decoder classifier without a padding token", ValueError, r"the model's config has no pad_token_id.*set "
         r"model\.config\.pad_token_id = tokenizer\.pad_token_id", _decoder_without_a_padding_token),
    Case("a bare tensor of floats", TypeError, r"input_ids are torch\.float32: token ids must be integers",
         _bare_float_tensor),
    Case("one example without its batch axis", ValueError, r"input_ids have shape \(\d+,\); a batch of token ids is "
         r"\(n_examples, n_tokens\): for one example add the batch axis", _one_example_without_its_batch_axis),
    Case("a mask of another length than the ids", ValueError, r"per-token inputs have different lengths.*in one call",
         _mask_of_other_length),
    Case("a label out of range in a later batch", ValueError, r"label 7 of example 8 is out of range for a model with 3 classes",
         _label_out_of_range_in_a_later_batch),
    Case("save_pefs into a folder of the user's", StoreError, r"pefs exists and is not a PEF store; choose an empty or new folder",
         lambda tmp: save_pefs(planted_lrm(20, 30, 2).pefs, tmp / "pefs"), _users_folder),
    Case("save_pefs over a store", StoreError, r"already holds a PEF store; pass overwrite=True \(--overwrite on the command line\) to replace it",
         lambda tmp: save_pefs(planted_lrm(10, 30, 2).pefs, tmp / "pefs"), _save_over_a_store),
    Case("PEFs from a dense array with NaN", ValueError, r"A holds NaN or infinite values.*compute them again", _nan_pefs),
    Case("PEFs from a dense array with labels out of range", ValueError, r"label 5 of example 1 is out of range: labels must be in 0\.\.2",
         _dense_labels_out_of_range),
    Case("save_pefs with chunks of no examples", ValueError, r"examples_per_chunk must be a positive integer, got 0",
         lambda tmp: save_pefs(planted_lrm(10, 30, 2).pefs, tmp / "pefs", examples_per_chunk=0)),
    Case("a run into a folder that is not a run's", ValueError, r"mine holds files and is not a run folder.*new or empty folder",
         lambda tmp: run_embedded(tmp / "mine", n_examples=40, progress=False), _folder_of_the_user_s),
    Case("a component that does not exist", IndexError, r"component must be from 0 to 1, got 5: there are 2 components",
         _no_such_component, _make_decomposition),
    Case("labels that are text", TypeError, r"labels must be integer class indices, got <U3 values \('pos'.*pandas\.factorize",
         _string_labels),
    Case("labels that are fractions", ValueError, r"label 1\.6 of example 0 is not a whole number.*never rounded", _fractional_labels),
    Case("no examples", ValueError, r"data set is empty.*pass at least one example", _no_examples),
    Case("an example of length 0", ValueError, r"1 examples have length 0 \(no tokens; first: \[4\]\).*Drop them", _empty_sequence),
    Case("examples longer than the model's positions", ValueError,
         r"9 examples are longer than the model's 24 positions .*truncation=True, max_length=24", _too_long),
    Case("include that is not a regular expression", ValueError,
         r"include='encoder\.\(layer' is not a valid regular expression.*re\.escape", _bad_regex),
    Case("exclude of the wrong type", TypeError, r"exclude must be a regular expression .* got int", _filter_of_wrong_type),
    Case("a model without weights (meta)", ValueError, r"parameters are on the meta device .*load the model with its weights",
         _meta_model),
    # torch's "mat1 and mat2 must have the same dtype, but got Float and Double" from inside the model's forward
    Case("a float64 head on a float32 model", TypeError, r"the model's forward failed on tensors of different dtypes "
         r"\(torch: mat1 and mat2 must have the same dtype.*float32 \(39 tensors, e\.g\. bert\.embeddings.*float64 "
         r"\(2 tensors, e\.g\. classifier\.weight\)\. Cast the whole model to one dtype first, model\.float\(\)",
         _a_float64_head),
    Case("a float16 encoder under a float32 head the PEFs select", TypeError, r"different dtypes.*float16 \(39 tensors.*"
         r"float32 \(2 tensors.*model\.float\(\)", _a_float16_encoder_under_its_head_alone),
    Case("a float64 model given float32 features", TypeError, r"different dtypes.*parameters are float64; "
         r"inputs\['inputs'\] is float32\. Cast the whole model to one dtype first, model\.float\(\)",
         _a_float64_model_given_float32_features),
    Case("a reading of a model with a float64 head", TypeError, r"different dtypes.*model\.float\(\)",
         _a_reading_of_a_float64_head, _make_decomposition),
    # torch's "Cannot copy out of meta tensor; no data!" (the model's fingerprint) and "Tensor.item() cannot be called
    # on meta tensors"
    *[Case(f"{reading} of a model without weights (meta)", ValueError, r"parameters are on the meta device .*load the "
           r"model with its weights", _meta_model_read(reading), _make_decomposition)
      for reading in ("token_scores", "logit_change")],
    Case("token scores of no class slot", ValueError, r"top_k_classes must be an integer of at least 1, got 0",
         _token_scores_of_no_class, _make_decomposition),  # was AttributeError: 'NoneType' object has no attribute 'shape'
    Case("more components than the parameters hold", ValueError,
         r"n_components=4 is more than the data can tell apart: the PEFs keep 2 parameters.*use n_components <= 2",
         _more_components_than_parameters),
    Case("store folder that is a broken link", StoreError, r"pefs is a symbolic link to .*nowhere, which does not exist",
         lambda tmp: write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), progress=False), _broken_link),
    Case("store folder inside a file", StoreError, r"notes\.txt is a file, so .* cannot be a folder",
         lambda tmp: write_pefs(tmp / "notes.txt" / "pefs", tiny_bert(3), _inputs(), progress=False), _file_as_parent),
    # a run's folder was made (the lock's) before it was checked: the file system's errno, after the model was loaded
    Case("run folder inside a file", StoreError, r"notes\.txt is a file, so .* cannot be a folder; choose another path for the run",
         lambda tmp: run_embedded(tmp / "notes.txt" / "run", n_examples=40, progress=False), _file_as_parent),
    Case("run folder that is a broken link", StoreError, r"pefs is a symbolic link to .*nowhere, which does not exist; create",
         lambda tmp: run_embedded(tmp / "pefs", n_examples=40, progress=False), _broken_link),
    Case("export of a component the fit lacks", IndexError, r"components must be from 0 to 1, got 9",
         _export_of_a_component_the_fit_lacks, _make_decomposition),
    Case("export of perturbations that are none", TypeError, r"perturbations must hold results of RunExplorer\.perturb",
         _export_of_perturbations_that_are_none),
    # these reached torch's own errors, which name no fix
    Case("token types outside the model's", ValueError, r"token_type_ids hold 5, but the model has 2 token types \(0 to 1\): "
         r"tokenize with this model's own tokenizer, or leave token_type_ids out", _token_types_outside_the_model_s),
    Case("an input the model's forward does not take", TypeError, r"inputs \['attention_mask'\] are not arguments of "
         r"_IdsOnly\.forward\(self, input_ids\)|inputs \['attention_mask'\] are not arguments of _IdsOnly\.forward\(input_ids\): "
         r"pass only the inputs it takes", lambda tmp: write_pefs(tmp / "pefs", _IdsOnly(), _inputs(), progress=False)),
    Case("a forward under torch.no_grad", NotClassLogitsError, r"logits do not depend on its parameters through autograd.*"
         r"torch\.no_grad\(\)", lambda tmp: write_pefs(tmp / "pefs", _UnderNoGrad(), _inputs(), progress=False)),
    Case("empty data set", ValueError, r"data set is empty.*pass at least one example", _empty),
    Case("labels out of range", ValueError, r"label 5 of example 3 is out of range for a model with 3 classes.*labels must be in 0\.\.2",
         _labels_out_of_range),
    Case("output is one value per example", NotClassLogitsError, r"one output per example, shape \(\d+, 1\): a regression head.*"
         r"use a classifier, or for a one-logit binary head wrap the model", _not_logits),
    Case("output is not class logits", NotClassLogitsError, r"should be class logits of shape \(batch=\d+, n_classes>=2\), "
         r"got \(\d+, 2, 3\).*Wrap the model", _not_two_dimensional),
    Case("parameter filter matches nothing", ValueError, r"matches none of the model's .* parameters.*pass a regular expression",
         _filter_matches_nothing),
    Case("n_components > number of examples", ValueError, r"n_components=20 is larger than the number of examples \(9\).*at most",
         _too_many_components),
    Case("all-zero PEFs", ValueError, r"9 examples have all-zero PEFs.*parameter filter selects nothing.*Drop them",
         _all_zero_pefs),
    Case("NaN weights", ValueError, r"1 of the model's parameters hold NaN or infinite values \(e\.g\. "
         r"bert\.encoder\.layer\.0\.attention\.self\.query\.weight\): the model diverged.*checkpoint", _nan_weights),
    Case("missing store", StoreError, r"no PEF store at .*does not exist.*compute the PEFs with write_pefs", _missing_store),
    Case("truncated chunk file", StoreError, r"000001\.safetensors cannot be read.*truncated.*Delete this chunk file and run the command that wrote the store "
         r"again",
         lambda tmp: load_pefs(tmp / "pefs"), _truncate_chunk),
    Case("truncated manifest", StoreError, r"manifest\.json is not valid JSON \(truncated.*overwrite=True",
         lambda tmp: load_pefs(tmp / "pefs"), _truncate_manifest),
    # written into: "not valid JSON (truncated ...)" and nothing of what to do
    Case("write into a truncated manifest", StoreError, r"manifest\.json is not valid JSON \(truncated.*\); compute the "
         r"store again with overwrite=True \(--overwrite on the command line\), or choose another folder",
         lambda tmp: write_pefs(tmp / "pefs", tiny_bert(3), _inputs(), progress=False), _truncate_manifest),
    # the other kind named from the wrong side, without a fix
    Case("decomposition loaded as the other kind", StoreError, r"decomposition\.safetensors holds npeff-workbench/lrm-npeff, "
         r"not npeff-workbench/d-npeff: it is a fitted LrmNpeff \(save/load\), read with LrmNpeff\.load\(path\)",
         _decomposition_loaded_as_the_other_kind, _make_decomposition),
    Case("transform of PEFs of the other kind", TypeError, r"LrmNpeff takes 'lrm' PEFs \(LrmPefs\), got DPefs: compute "
         r"'lrm' PEFs \(kind='lrm'\), or use DNpeff", _transform_of_the_other_kind, _make_decomposition),
    Case("fit of a dense array", TypeError, r"LrmNpeff takes 'lrm' PEFs \(LrmPefs\), got ndarray: wrap a dense array with "
         r"LrmPefs\.from_dense", _fit_of_a_dense_array),
    Case("decomposition of another model", StoreError, r"computed from another model .* use the model it was made from",
         _decomposition_of_another_model, _make_decomposition),
    Case("decomposition of another architecture", StoreError, r"over parameters this model does not have.*load that model",
         _decomposition_of_other_architecture, _make_decomposition),
    Case("PEFs of another model for transform", StoreError, r"these PEFs come from another model .*compute them with the decomposition's model",
         _pefs_of_another_model, _make_decomposition),
    Case("fit checkpoint of other data", StoreError, r"checkpoint .* was made by a fit of other data.*delete it",
         _checkpoint_of_other_data, _make_checkpoint),
    Case("notebook parameter of the wrong type", TypeError, r"n_examples must be an integer, got '600' \(str\).*n_examples = 600, without quotes",
         _notebook_parameter_type),
    Case("notebook parameter of the wrong value", ValueError, r"kind='diagonal' is not one of \('lrm', 'd'\)", _notebook_parameter_kind),
    Case("device that does not exist", ValueError, r"device 'cuda:\d+' .*(no usable CUDA GPU|does not exist)", _device_missing),
    Case("device name unknown", ValueError, r"'tpu' is not (a device name|supported); use 'cpu'", _device_unknown),
    Case("store made with other arguments", StoreError, r"other arguments \(differs: .*n_values.*overwrite=True",
         _other_arguments, _store_with_other_arguments),
    # "Nothing was written" beside a run's model and record, written before its store
    Case("disk too small", InsufficientResourcesError, r"needs about .* only 1 KB is free\. Lower n_values.*The store was "
                                                       r"left as it was\.$", _disk_full),
    Case("memory too small", InsufficientResourcesError, r"needs about .* only 1 KB is available\. Lower batch_size", _memory_short),
    Case("Hub name while offline", ModelNotAvailableOfflineError, r"neither a local folder nor in the Hugging Face cache.*load_classifier\('minilm'\)",
         _hub_name_offline),
    Case("a hand-made D-PEF record with a negative value", ValueError, r"the PEFs hold 1 negative values \(first in "
         r"examples \[3\]\); a diagonal Fisher is a sum of squares: .*DPefs\.from_dense\(f\), which checks them",
         lambda tmp: _fit_hand_made("d", -1.0)),
    Case("a hand-made LRM-PEF record with a NaN", ValueError, r"the PEFs hold 1 NaN or infinite values \(first in "
         r"examples \[3\]\); check the model", lambda tmp: _fit_hand_made("lrm", np.nan)),
    Case("write_pefs with the model and the store folder swapped", TypeError, r"write_pefs takes the store folder "
         r"first and the model second, and the model \(a BertForSequenceClassification\) came first: "
         r"write_pefs\('.*pefs', model, inputs, labels\)",
         lambda tmp: write_pefs(tiny_bert(3), str(tmp / "pefs"), _inputs(), progress=False)),
    Case("a model folder's path where the loaded model belongs", TypeError, r"model must be a loaded torch\.nn\.Module, "
         r"got the path '.*mine'; load the model first, e\.g\. .*load_classifier\('.*mine'\)",
         lambda tmp: compute_pefs(str(tmp / "mine"), _inputs(), progress=False)),
    Case("a run folder's path where the loaded model belongs", TypeError, r"got the path '.*run'; it is a run folder: load "
         r"its model with RunExplorer\.open\('.*run'\)\.model_and_tokenizer\(\)",
         lambda tmp: write_pefs(tmp / "pefs", tmp / "run", _inputs(), progress=False),
         lambda tmp: (tmp / "run").mkdir() or (tmp / "run" / "run.json").write_text("{}")),
]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_names_problem_and_fix_and_leaves_nothing(case, tmp_path, monkeypatch):
    monkeypatch.setattr(estimate, "free_disk", lambda path: 1000 if case.name == "disk too small" else 10**15)
    if case.name == "memory too small":
        monkeypatch.setattr(estimate, "available_memory", lambda device=None: 1000)
    case.prepare(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(case.error, match=case.match):
        case.run(tmp_path)
    assert _files(tmp_path) == before, "the failed call left files behind or changed them"


def test_a_quoted_home_folder_is_the_home_folder(tmp_path, monkeypatch):
    """"~/runs" reaches Python as written when quoted (or from a notebook): the files go to the home
    folder, as a shell would put them, not into a folder named "~" in the working directory."""
    from workbench.app.explore import RunExplorer
    from workbench.store import PefStore

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    pefs = planted_lrm(n_examples=12, n_parameters=40, n_components=2, seed=0).pefs
    save_pefs(pefs, "~/store")
    assert PefStore("~/store").n_examples == 12 and load_pefs("~/store").n_examples == 12
    fit = LrmNpeff(n_components=2, n_iters_g_only=2, n_iters_joint=2).fit(pefs)
    fit.save("~/fit.safetensors")
    assert LrmNpeff.load("~/fit.safetensors").n_components == 2
    with pytest.raises(StoreError, match=str(home / "no-run")):
        RunExplorer.open("~/no-run")
    assert not (work / "~").exists() and {p.name for p in home.iterdir()} == {"store", "fit.safetensors"}


@pytest.mark.parametrize("value", ["no", "yes", 1, None])
def test_a_flag_that_is_no_bool_is_refused(value, tmp_path):
    """Python reads any non-empty string as true: overwrite="no" replaced the store."""
    pefs = planted_lrm(n_examples=12, n_parameters=40, n_components=2, seed=0).pefs
    save_pefs(pefs, tmp_path / "store")
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        save_pefs(pefs, tmp_path / "store", overwrite=value)


def test_a_default_model_seed_below_zero_and_provenance_that_is_no_json_are_refused(tmp_path):
    from workbench.models.embedded import default_model

    with pytest.raises(ValueError, match="seed must be an integer of at least 0"):
        default_model(tmp_path / "cache", seed=-1)
    with pytest.raises(TypeError, match="provenance must be a dict of JSON-able facts"):
        write_pefs(tmp_path / "pefs", tiny_bert(3), _inputs(), provenance={"x": object()}, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_command_line_transform_names_the_store_of_the_other_kind(tmp_path, caplog):
    """It took the estimator from the store's kind and blamed the valid decomposition: "holds
    npeff-workbench/lrm-npeff, not npeff-workbench/d-npeff"."""
    from workbench.app.cli import main

    _make_decomposition(tmp_path)
    write_pefs(tmp_path / "d-store", tiny_bert(3, seed=0), _inputs(), kind="d", n_values=200, progress=False)
    assert main(["transform", str(tmp_path / "decomposition.safetensors"), str(tmp_path / "d-store"), "--out",
                 str(tmp_path / "w.safetensors")]) == 2
    assert re.search(r"d-store holds 'd' PEFs, but .*decomposition\.safetensors is a fitted LrmNpeff, fitted to "
                     r"'lrm' PEFs: transform needs PEFs of its kind \(compute them with --kind lrm\)", caplog.text)
    assert not (tmp_path / "w.safetensors").exists()


def test_a_model_that_returns_probabilities_is_warned_about():
    """Probabilities passed for logits gave PEFs of softmax(p), not of the model's distribution, without a word."""

    class Probabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = tiny_bert(3)

        def forward(self, input_ids, attention_mask=None):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits.softmax(dim=-1)

    with pytest.warns(UserWarning, match=r"outputs look like class probabilities .* return the logits"):
        compute_pefs(Probabilities(), _inputs(), n_values=50, progress=False)


def test_an_exclude_that_matches_nothing_is_warned_of_once():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compute_pefs(tiny_bert(3), _inputs(), n_values=50, exclude="zzz", progress=False)
    assert sum("matches none of the model's" in str(w.message) for w in caught) == 1


def test_labels_given_as_a_column_name_or_as_objects_and_nan_logits():
    """A column's name read "labels has shape ()"; a pandas object column of ints was refused as if it held text;
    NaN logits given with dense PEFs read as predictions of class 0 in every table."""
    from workbench import LrmPefs

    with pytest.raises(TypeError, match=r"labels must be one class index per example, got str 'label' \(a column's "
                                        r"name\? pass the column itself"):
        compute_pefs(tiny_bert(3), _inputs(), "label", n_values=50, progress=False)
    as_objects = np.array([0, 1, 2] * 3, dtype=object)
    pefs = compute_pefs(tiny_bert(3), _inputs(), as_objects, n_values=50, progress=False)
    np.testing.assert_array_equal(pefs.labels, [0, 1, 2] * 3)
    with pytest.raises(ValueError, match=r"logits of examples \[0, 1\] are NaN or infinite \(2 rows\)"):
        LrmPefs.from_dense(np.ones((2, 2, 5), dtype=np.float32), logits=np.full((2, 3), np.nan))

"""run_embedded checks its arguments before writing anything, and resumes its PEF store."""

import pytest

from workbench.app import pipeline, stages
from workbench.store import PefStore


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_components": 16.0}, TypeError, r"n_components must be an integer, got 16\.0 \(float\)"),
    ({"batch_size": "32"}, TypeError, r"batch_size must be an integer or None, got '32'"),
    ({"n_values": True}, TypeError, r"n_values must be an integer or None, got True"),
    ({"progress": "yes"}, TypeError, r"progress must be True or False"),
    ({"n_components": 700}, ValueError, r"n_components=700 is larger than n_examples=600"),
    ({"n_iters_joint": -1}, ValueError, r"n_iters_joint must be at least 0"),
    ({"base": "gpt2"}, ValueError, r"base='gpt2' is not one of \('tiny', 'minilm'\)"),
    ({"model_path": "no/such/folder"}, ValueError, r"is not a saved model folder \(it does not exist\)"),
    ({"device": 0}, TypeError, r"device must be a string such as 'cpu'"),
])
def test_run_embedded_checks_arguments_first(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        pipeline.run_embedded(tmp_path / "run", **{"progress": False, **kwargs})
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("inside", ["model/run", "model/deeper/run"])
def test_every_entry_point_refuses_a_run_folder_inside_its_model_folder(tmp_path, inside):
    """run_embedded copied the model folder into a run folder inside it, into itself until the path was too long:
    a RecursionError, and 82 MB of model/run/model/... left among the user's model files."""
    from workbench.app.cli import main
    from workbench.app.model_run import run_model

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / inside
    with pytest.raises(ValueError, match=r"is inside the run_embedded: model_path folder .*: choose a folder outside it"):
        pipeline.run_embedded(out, model_path=model, progress=False)
    with pytest.raises(ValueError, match=r"the run folder .* is inside the model_path folder"):
        run_model(out, model, ["a text"], labels=[0], progress=False)
    assert main(["pefs", "--out", str(out), "--model-path", str(model)]) == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["model", "model/config.json"]


def test_pipeline_store_resumes_or_replaces(tmp_path, bert3, bert_inputs):
    first = stages.write_or_resume_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, progress=False)
    again = stages.write_or_resume_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=100, progress=False)
    assert again.store_id == first.store_id
    other = stages.write_or_resume_pefs(tmp_path / "pefs", bert3, bert_inputs, n_values=150, progress=False)
    assert PefStore(tmp_path / "pefs").info["n_values"] == 150 and other.complete


def test_a_model_of_one_s_own_that_cannot_load_is_refused_before_the_run_folder_is_made(tmp_path):
    """run_embedded loaded model_path in its model stage: damaged weights left a run folder whose record said the
    stage failed, where run_model refuses them before touching its folder."""
    import shutil

    from workbench.models.embedded import default_model

    folder = shutil.copytree(default_model(), tmp_path / "damaged")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(OSError, match=r"the model saved in .*damaged cannot be loaded"):
        pipeline.run_embedded(tmp_path / "run", model_path=folder, n_examples=20, n_components=2, progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("heads, match", [
    (dict(num_labels=1, problem_type="regression"), r"with 1 output \(problem_type 'regression'\)"),
    (dict(num_labels=2, problem_type="multi_label_classification"), r"holds a multi-label classifier"),
    (dict(num_labels=2, problem_type="regression"), r"holds a regression model"),
])
def test_a_model_of_one_s_own_that_is_no_classifier_is_refused_before_the_run_folder_is_made(tmp_path, heads, match):
    """A one-output regression wrote a run folder whose record said its PEF stage failed; a regression or multi-label
    head of two outputs ran, warned of from inside the PEF stage, and its readings were of a softmax it never takes."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from workbench.models.embedded import default_model

    tokenizer = AutoTokenizer.from_pretrained(default_model())
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, **heads)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match=match):
        pipeline.run_embedded(tmp_path / "run", model_path=tmp_path / "model", n_examples=20, n_components=2,
                              progress=False)
    assert not (tmp_path / "run").exists()

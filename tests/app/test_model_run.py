"""run_model: a model and texts of one's own into a run folder the workbench opens."""

import pandas as pd
import pytest

from workbench import RunExplorer, run_model
from workbench.models.embedded import default_model, make_examples


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    examples = make_examples(80, seed=7)
    attributes = pd.DataFrame({"strategy": examples["strategies"].map(lambda s: s[0])})
    return run_model(tmp_path_factory.mktemp("runs") / "own", default_model(), list(examples["text"]),
                     examples["label"].to_numpy(), attributes=attributes, n_components=4, n_iters_g_only=10,
                     n_iters_joint=20, n_top=10, max_length=48, exclude="classifier|pooler", progress=False)


def test_the_run_opens_with_its_attributes_and_the_model_s_own_length(own_run):
    explorer = RunExplorer.open(own_run.path)
    table = explorer.components().rows
    assert len(explorer.table) == 4 and {"strategy", "strategy_purity", "label_purity"} <= set(explorer.table.columns)
    assert len(table) == 4 and explorer.max_length == 48
    page = explorer.top_examples(int(table.index[0]), page_size=3)
    assert page.examples and all(e.tokens for e in page.examples)
    assert own_run.record["status"] == "complete" and own_run.params["exclude"] == "classifier|pooler"


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="not a saved model folder"):
        run_model(tmp_path / "a", tmp_path, ["a text"])
    with pytest.raises(TypeError, match="texts must be strings; example 1"):
        run_model(tmp_path / "a", default_model(), ["a text", 3])
    with pytest.raises(ValueError, match="attributes has 1 rows for 2 texts"):
        run_model(tmp_path / "a", default_model(), ["a", "b"], attributes=pd.DataFrame({"x": [1]}))
    assert not (tmp_path / "a").exists()

"""The main job end to end on the embedded default, checked against the known strategies."""

import json

import numpy as np
import pytest

from workbench.app.cli import main
from workbench.npeff import LrmNpeff
from workbench.app.pipeline import summary_text
from workbench.app.run_folder import Run


@pytest.fixture
def demo_run(embedded_run):
    return embedded_run


def test_components_follow_the_known_strategies(demo_run):
    """Measured with these defaults: mean purity 0.82-0.89 over fit seeds 0-3 (chance 0.42),
    all four strategies the majority of some component."""
    figures = demo_run.record["figures"]
    assert figures["strategies_covered"] == ["contrast", "lexical", "marker", "negation"]
    assert figures["mean_strategy_purity"] >= 0.75
    assert figures["mean_strategy_purity"] >= figures["chance_strategy_purity"] + 0.3
    assert figures["analysis_accuracy"] >= 0.95


def test_run_folder_holds_everything(demo_run):
    path = demo_run.path
    record = json.loads((path / "run.json").read_text())
    assert record["status"] == "complete"
    assert set(record["stages"]) == {"model", "examples", "pefs", "fit", "analysis"}
    assert all(stage["status"] == "done" for stage in record["stages"].values())
    run = Run.open(path)
    pefs = run.pefs()
    decomposition = run.decomposition()
    assert isinstance(decomposition, LrmNpeff)
    assert decomposition.W_.shape == (600, 16)
    assert pefs.n_examples == len(run.examples) == 600
    np.testing.assert_array_equal(run.examples["prediction"].to_numpy(), pefs.predictions)
    assert list(run.components().index) == list(range(16))
    losses = decomposition.loss_history_["joint"][:, 1]
    assert losses[-1] < losses[0]


def test_analysed_examples_are_held_out_from_training_and_validation(demo_run):
    """By text: the generator's small sentence space made seeds 0 and 2000 share 130 of
    600 analysis texts with the training set (issue 17)."""
    from workbench.models.embedded.model import N_VALIDATION, VALIDATION_SEED_OFFSET
    from workbench.models.embedded.task import make_examples

    training = json.loads((demo_run.model_path / "training.json").read_text())
    seed = training["seed"]
    seen = set(make_examples(training["n_train"], seed=seed)["text"])
    seen |= set(make_examples(N_VALIDATION, seed=seed + VALIDATION_SEED_OFFSET)["text"])
    analysed = set(demo_run.examples["text"])
    assert len(analysed) > 500 and not analysed & seen
    assert demo_run.params["scope"] == "no-head"


def test_summary_names_every_component(demo_run):
    text = summary_text(demo_run)
    assert "Strategies that are the majority of at least one component: 4 of 4" in text
    assert text.count("\n") > 16


def test_summary_of_a_run_of_fewer_examples_than_a_top_set_names_the_sets_it_has(tmp_path):
    """Five examples: the summary read 'Mean strategy purity of the top 20 examples', where each top set held five."""
    from workbench.app.pipeline import run_embedded

    run = run_embedded(tmp_path / "few", n_examples=5, n_components=2, n_iters_g_only=2, n_iters_joint=3, progress=False)
    text = summary_text(run)
    assert "Mean strategy purity of the top 5 examples" in text and "top 20" not in text


def test_command_line_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "cli"), "--n-examples", "120", "--n-components", "4",
                 "--n-iters-g-only", "5", "--n-iters-joint", "10"]) == 0
    out = capsys.readouterr().out
    assert "Mean strategy purity" in out
    assert Run.open(tmp_path / "cli").record["params"]["n_components"] == 4

"""A causal language model read through a prompt, from run_model to every reading of the workbench."""

import numpy as np
import pytest
from transformers import GPT2LMHeadModel

from tests.models.lm.conftest import LABEL_WORDS, TEMPLATE, prompt_tokenizer, trained_lm_path
from workbench import RunExplorer, run_model
from workbench.models.embedded import make_examples
from workbench.models.lm import ZeroShotClassifier


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """The tiny GPT-2 trained on the embedded task in prompt form ("<review> sentiment :" → bad / good)."""
    folder = tmp_path_factory.mktemp("models") / "prompt-gpt2"
    GPT2LMHeadModel.from_pretrained(trained_lm_path(), local_files_only=True).save_pretrained(folder)
    prompt_tokenizer().save_pretrained(folder)
    examples = make_examples(80, seed=11)
    return run_model(tmp_path_factory.mktemp("runs") / "lm", folder, list(examples["text"]), examples["label"].to_numpy(),
                     template=TEMPLATE, label_words=LABEL_WORDS, n_components=4, n_iters_g_only=10, n_iters_joint=30,
                     n_top=8, max_length=40, progress=False)


@pytest.fixture(scope="module")
def explorer(lm_run):
    return RunExplorer.open(lm_run.path)


def test_the_run_reads_the_model_through_its_prompt(lm_run, explorer):
    model, _ = explorer.model_and_tokenizer()
    assert isinstance(model, ZeroShotClassifier) and model.template == TEMPLATE and model.label_words == LABEL_WORDS
    assert explorer.label_names == {"0": "bad", "1": "good"}
    assert lm_run.record["figures"]["analysis_accuracy"] > 0.9  # the model reads the task as trained
    assert lm_run.params["template"] == TEMPLATE


def test_top_examples_show_the_text_and_count_the_template_apart(explorer):
    """The words of the text are the visible tokens, each at its characters; the prompt's own words
    ("sentiment :") are not the example's: they count with the special tokens."""
    j = int(explorer.components().rows.index[0])
    for e in explorer.top_examples(j, page_size=3).examples:
        words = [t for t, special in zip(e.tokens, e.special) if not special]
        assert words == e.text.split()
        assert e.tokens[-2:] == ["sentiment", ":"] and e.special[-2:] == [True, True]
        assert all(e.text[a:b] == t for t, (a, b), s in zip(e.tokens, e.spans, e.special) if not s)
        assert e.visible_share + e.special_share + e.head_share == pytest.approx(1.0, abs=1e-6)


def test_perturbation_trace_dashboard_lookup_and_labels_run(explorer):
    j = int(explorer.components().rows.index[0])
    check = explorer.perturb(j, epsilon=0.1)
    assert np.isfinite(check.kl_top["+"]) and check.kl_top["+"] > 0
    trace = explorer.trace(j, n_top=3, n_baseline=3)
    assert trace.spelled[0][-2:] == ["sentiment", ":"] and trace.heatmaps[0].shape[1] == len(trace.tokens[0])
    dashboard = explorer.dashboard(j, sweep=None)
    assert list(dashboard.logit_change.index) == ["0 (bad)", "1 (good)"]
    lookup = explorer.lookup("the plot was great .")
    assert lookup.loadings is not None and lookup.seconds > 0
    names = explorer.label_components()
    assert len(names) == explorer.n_components and not any("sentiment" in str(n) for n in names)


def test_the_workbench_opens_on_it(lm_run):
    from widgets import Workbench

    wb = Workbench.from_run(lm_run.path, background=False)
    assert wb.examples.current.examples and wb.trace.result is not None


"""A synthetic run folder of any size, for browsing at scale (no model: nothing to score or perturb)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workbench import analysis
from workbench.models.embedded import make_examples
from workbench.npeff import LrmNpeff
from workbench.core.params import ParameterLayout
from workbench.app.run_folder import COMPONENTS, DECOMPOSITION, EXAMPLES, RunRecorder


def synthetic_run(path, *, n_components: int = 2000, n_examples: int = 50_000, n_kept: int = 64,
                  density: float = 0.01, n_top: int = 20, seed: int = 0) -> Path:
    """A run folder like ``run_embedded``'s: examples from the embedded task, a decomposition whose
    W (n_examples, n_components) has ``density`` of its entries positive, and its component table."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    recorder = RunRecorder(path, {"kind": "lrm", "n_components": n_components, "n_examples": n_examples,
                                  "n_top": n_top, "synthetic": True}, seeds={"synthetic": seed})
    examples = make_examples(n_examples, seed=seed)
    examples["prediction"] = np.where(rng.random(n_examples) < 0.95, examples["label"], 1 - examples["label"])
    examples.to_parquet(path / EXAMPLES)

    W = rng.exponential(1.0, (n_examples, n_components)).astype(np.float32)
    W *= rng.random((n_examples, n_components), dtype=np.float32) < density
    decomposition = LrmNpeff(n_components)
    decomposition.W_ = W
    decomposition.G_ = rng.standard_normal((n_components, n_kept)).astype(np.float32)
    decomposition.kept_columns_ = np.arange(n_kept, dtype=np.int64)
    decomposition.n_parameters_ = n_kept
    decomposition.n_slots_ = 2
    decomposition.layout_ = ParameterLayout(("synthetic.weight",), ((n_kept,),))
    decomposition.pef_info_ = {}
    decomposition.loss_history_ = {"joint": np.zeros((1, 2))}
    decomposition.save(path / DECOMPOSITION)

    attributes = pd.DataFrame({"strategy": examples["strategies"].map(tuple)})
    table = analysis.component_table(W, decomposition.G_, labels=examples["label"].to_numpy(),
                                     predictions=examples["prediction"].to_numpy(), attributes=attributes, n_top=n_top)
    table.to_csv(path / COMPONENTS)
    recorder.wrote(DECOMPOSITION, COMPONENTS)  # as a run records them
    recorder.finish()
    return path

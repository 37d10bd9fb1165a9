"""Reading a decomposition: what each component fires on, and whether its direction matters.

- :mod:`.tables`: the component table, top examples, purity (plain arrays in, DataFrames out);
- :mod:`.highlights`: each token's exact share of an example's Fisher mass along a component;
- :mod:`.perturb`: perturbation checks, moving the model's parameters along a component;
- :mod:`.baselines`: k-means on gradients and dictionary learning on activations, scored
  with NPEFF by the same rules;
- :mod:`.export`: tidy tables (Parquet, CSV) and components as safetensors.

The names below are imported when first used: the tables need no torch.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    **dict.fromkeys(["chance_purity", "component_norms", "component_table", "entropy", "purity", "scaled_coefficients",
                     "top_examples", "top_examples_table"], ".tables"),
    **dict.fromkeys(["TokenScores", "token_scores"], ".highlights"),
    **dict.fromkeys(["PerturbationResult", "baseline_examples", "epsilon_sweep", "perturbation_check",
                     "perturbation_direction", "perturbation_table", "perturbed"], ".perturb"),
    **dict.fromkeys(["baseline_comparison", "baseline_coefficients", "score_components"], ".baselines"),
})

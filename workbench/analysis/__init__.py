"""Reading a decomposition: what each component fires on, and whether its direction matters.

- :mod:`.tables`: the component table, top examples, purity (plain arrays in, DataFrames out);
- :mod:`.highlights`: each token's exact share of an example's Fisher mass along a component;
- :mod:`.perturb`: perturbation checks, moving the model's parameters along a component;
- :mod:`.baselines`: k-means on gradients and dictionary learning on activations, scored
  with NPEFF by the same rules;
- :mod:`.export`: tidy tables (Parquet, CSV) and components as safetensors;
- :mod:`.labels`: short offline labels per component (attribute purity, top token, label);
- :mod:`.matching`: components of two fits paired by |cos| (Hungarian method);
- :mod:`.over_training`: components over a series of training checkpoints;
- :mod:`.model_diff`: strategies gained, lost and kept between two models;
- :mod:`.trace`: per layer and token, how hidden states move along a component;
- :mod:`.unsketch`: a fit of sketched PEFs mapped back to the parameters;
- :mod:`.token_shares`: token scores as read: normalised over the visible tokens, special and head shares apart;
- :mod:`.location`: where a component lives: its mass by layer and module kind;
- :mod:`.dashboard`: a component's coefficient histogram, logit change, top tokens, nearest components;
- :mod:`.lookup`: the components an example, or a new text, loads on;
- :mod:`.definitions`: what every column and number shown means.

The names below are imported when first used: the tables need no torch.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    **dict.fromkeys(["accuracy_by_group", "chance_purity", "coefficient_mass", "component_norms", "component_table", "entropy", "purity", "scaled_coefficients",
                     "top_examples", "top_examples_table", "value_shares"], ".tables"),
    **dict.fromkeys(["TokenScores", "token_scores"], ".highlights"),
    "BASELINE_DRAWS": ".draws",
    **dict.fromkeys(["PerturbationResult", "baseline_examples", "epsilon_sweep", "perturbation_check",
                     "perturbation_direction", "perturbation_table", "perturbed", "showcase_component",
                     "SHOWCASE_CRITERION", "SELECTIVE"], ".perturb"),
    **dict.fromkeys(["selectivity_table"], ".selectivity"),
    **dict.fromkeys(["NAME_COLUMN", "aggregate_tokens", "component_labels", "top_tokens"], ".labels"),
    **dict.fromkeys(["cosine_matrix", "full_components", "match_components", "match_quality"], ".matching"),
    **dict.fromkeys(["OverTraining", "checkpoint_series", "over_training"], ".over_training"),
    **dict.fromkeys(["ModelDiff", "model_diff"], ".model_diff"),
    **dict.fromkeys(["PerturbationTrace", "perturbation_trace"], ".trace"),
    **dict.fromkeys(["baseline_comparison", "baseline_coefficients", "score_components"], ".baselines"),
    "unsketch": ".unsketch",
    **dict.fromkeys(["TokenShares", "token_shares"], ".token_shares"),
    **dict.fromkeys(["MODULE_KINDS", "layer_of", "location_frame", "location_summary", "mass_by_location",
                     "mass_by_parameter", "module_kind"], ".location"),
    **dict.fromkeys(["coefficient_histogram", "logit_change", "nearest_components", "token_table"], ".dashboard"),
    **dict.fromkeys(["coefficients_of_texts", "loadings", "pefs_of_texts"], ".lookup"),
    **dict.fromkeys(["DEFINITIONS", "definition", "definitions_frame"], ".definitions"),
})

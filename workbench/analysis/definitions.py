"""What every column and number the workbench shows means, in one table.

The panels put these in column tooltips, the report and the static HTML in a legend, and
``docs/reading.md`` lists them; they are written once, here, so the three never disagree.
Attribute columns (``<attribute>``, ``<attribute>_purity``, ``<attribute>_entropy``) are
defined for any attribute name.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

#: Column or number → one-line definition.
DEFINITIONS: dict[str, str] = {
    "component": "The component's number j (its row of G and column of W).",
    "name": "A short label built offline (analysis.labels): the majority attribute value with its purity when the "
            "top set is pure enough (else 'mixed'), the token carrying most of its top examples' mass with its share, "
            "and the majority label.",
    "n_top": "Size of the component's top set: its examples with the largest positive coefficients (at most the run's n_top).",
    "g_norm": "‖g_j‖, the Euclidean norm of the component's direction in parameter space (‖h_j‖ for D-NPEFF); "
              "coefficients scale with it, so compare coefficients across components with mass, not W.",
    "mass": "The component's share of the reconstruction's total Fisher mass, Σ_i W_ij ‖g_j‖² over Σ_ij of the same; "
            "the components' masses sum to 1.",
    "label": "The most common true label among the top set.",
    "label_purity": "Share of the top set whose label is the majority label (1: all the same; 1/number of labels: chance).",
    "prediction": "The most common model prediction among the top set.",
    "prediction_purity": "Share of the top set whose prediction is the majority prediction.",
    "accuracy": "The model's accuracy on the top set (examples of unknown label left out).",
    "coefficient": "W_ij: how strongly example i loads on component j (non-negative; 0: not at all).",
    "scaled": "W_ij ‖g_j‖² (W_ij ‖h_j‖ for D): the coefficient as if every component had unit norm, comparable across components.",
    "share": "The component's share of the example's summed scaled coefficients.",
    "cos": "|cos| between two components' directions g: 1 the same direction (up to sign), 0 orthogonal.",
    "token share": "A visible token's share of the example's Fisher mass along the component, normalised over the "
                   "visible tokens (Σ |share| = 1 over them); orange a positive share, blue a negative one (its term "
                   "points against the rest). Where the mass flows, not what deleting the word would do.",
    "special share": "Share of the example's Fisher mass along the component that flows through special tokens "
                     "([CLS], [SEP], padding markers) and, for a language model read through a prompt, the "
                     "template's tokens; not shaded, as no word of the text carries it.",
    "read-out": "The word where the model reads its class, found by asking the model (the positions its logits' "
                "gradient reaches in its last hidden states): a decoder classifier's (GPT-2, Llama) last token; an "
                "encoder's [CLS] is a special token. That word's share holds the read-out of the whole text as well as "
                "its own part, as [CLS]'s special share does in an encoder: a card whose strongest word is the read-out "
                "says so.",
    "head share": "Share of the example's Fisher mass along the component that flows through parameters with no "
                  "token axis (the pooler and classifier of BERT models): no token can be credited with it.",
    "mean share": "A token's mean visible-token share over the component's top examples that contain it.",
    "count": "How many of the component's top examples contain the token.",
    "logit change": "Mean change of each class's log-probability on the top set when the parameters move by ±ε ĝ "
                    "(ĝ the unit direction): the class the direction pushes toward. NPEFF fits g gᵀ, so the sign of g "
                    "is arbitrary: read + and − together. Where they push toward different classes, the component "
                    "separates them; where both push toward one, moving either way favours that class.",
    "kl_ratio": "Mean KL(p_θ ‖ p_θ±εĝ) on the top set over the same on other examples (the baseline: random ones, "
                "or with the top set's mix of predicted classes), for the sign(s) shown; well above 1: the direction "
                "changes the model selectively on its own examples. Beside it, a 95% bootstrap interval over the "
                "top and baseline examples drawn; a verdict is given only where the interval is on one side of 3.",
    "kl_top": "Mean KL divergence between the model's original and perturbed predictions on the top set.",
    "kl_baseline": "The same on the baseline: examples outside the top set, drawn at random or with the top set's "
                   "mix of predicted classes (baseline_draw says which).",
    "baseline_draw": "How a perturbation check's baseline was drawn: 'random' other examples, or 'same classes' "
                     "(the top set's mix of predicted classes, so that a direction moving a whole class reads about 1).",
    "kl_ratio_same_classes": "The KL ratio against examples drawn with the top set's mix of predicted classes, of "
                             "the sign the random check reads: is the component selective beyond its class?",
    "reading": "What a component's two KL ratios say, on their 95% intervals against 3: 'beyond its class', "
               "'its class' (selective against random examples only), 'not selective', 'not beyond its class' "
               "(the random baseline's interval crosses 3), or 'undecided' (the same-classes interval crosses 3).",
    "sign": "The direction, θ + εĝ or θ − εĝ, whose KL ratio is read (the larger of the two).",
    "drop": "How much of the example's coefficient goes when the word is deleted and the coefficient fitted anew "
            "(1: all of it); what the coefficient needs, unlike a token share.",
    "hit": "Whether the example's strongest word is one of its deciding words (the embedded task's truth).",
    "chance": "The hit rate of a visible word drawn at random from the example (a word of the text, however many tokens it is cut into).",
    "layer": "Transformer layer a parameter belongs to (embeddings and head outside any layer).",
    "module kind": "Kind of module a parameter belongs to: embeddings, attention q/k/v/o, MLP in/out, LayerNorm, pooler, classifier.",
    "location mass": "Share of the component's squared norm ‖g_j‖² that lies in the parameters of this layer or module kind.",
}

#: Suffixes of attribute columns, defined for any attribute.
_SUFFIXES = {
    "_purity": "Share of the top set that holds the majority value of {attribute} (an example with two values holds both).",
    "_entropy": "Shannon entropy (bits) of {attribute} over the top set: 0 when every example has one value, "
                "higher when mixed. Purity and entropy answer different questions: a purity of 1 beside an entropy "
                "near 1 means every top example holds the majority value, but many hold a second value too "
                "(multi-factor examples).",
}


def definition(column: str) -> str | None:
    """The definition of ``column`` (an attribute column of any name too), or None when unknown."""
    if column in DEFINITIONS:
        return DEFINITIONS[column]
    for suffix, text in _SUFFIXES.items():
        if column.endswith(suffix):
            return text.format(attribute=column[: -len(suffix)])
    return None


def definitions_frame(columns: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per column (all known ones by default) with its definition; unknown columns are left out."""
    columns = list(DEFINITIONS) if columns is None else list(columns)
    rows = [(c, definition(c)) for c in columns]
    return pd.DataFrame([r for r in rows if r[1] is not None], columns=["column", "definition"]).set_index("column")


def table_definitions(table: pd.DataFrame) -> pd.DataFrame:
    """What every column of a component table and every number of the panels means (one row each): an
    attribute's majority column (``strategy`` beside ``strategy_purity``) gets one too, whatever its name."""
    frame = definitions_frame(["component", *table.columns, *DEFINITIONS])
    frame = frame[~frame.index.duplicated()]
    attributes = [c[: -len("_purity")] for c in table.columns if c.endswith("_purity")]
    extra = {a: f"The most common value of {a} among the top set." for a in attributes
             if a in table.columns and definition(a) is None}
    return pd.concat([frame, pd.DataFrame({"definition": extra}, dtype=object)]) if extra else frame

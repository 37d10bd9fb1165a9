"""The evaluation's markdown file: one table per question, numbers as measured."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from ..store.files import atomic_path
from .measure import BASELINES

MODEL_NAMES = {"tiny": "tiny BERT", "minilm": "MiniLM"}
SCOPE_NAMES = {"all": "all", "no-head": "no head (all but classifier, pooler)", "encoder": "encoder layers only"}
METHOD_SHORT = {"NPEFF": "NPEFF", BASELINES[0]: "k-means on gradients", BASELINES[1]: "dictionary learning"}


def _cell(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    if not len(frame):
        return "(not measured yet)"
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _multi_kinds(frame: pd.DataFrame) -> list[str]:
    return sorted(c[: -len("_both_found")] for c in frame.columns if c.endswith("_both_found") and c != "multi_factor_both_found")


def _scored(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    if not len(frame):
        return frame
    frame["model"] = frame["base"].map(MODEL_NAMES)
    frame["method"] = frame["method"].map(METHOD_SHORT)
    frame["covered"] = frame["strategies_covered"].astype(int).astype(str) + "/" + frame["n_strategies"].astype(int).astype(str)
    if "kl_median" in frame:
        frame["kl"] = [f"{m:.2f} ({a:.2f}-{b:.2f})" if isinstance(m, float) and not math.isnan(m) else ""
                       for m, a, b in zip(frame["kl_median"], frame.get("kl_q25", frame["kl_median"]), frame.get("kl_q75", frame["kl_median"]))]
    return frame


def _scope_section(frame: pd.DataFrame) -> str:
    frame = _scored(frame)
    frame["scope"] = frame["scope"].map(SCOPE_NAMES)
    columns = {"model": "model", "scope": "scope", "method": "method", "mean_strategy_purity": "purity",
               "covered": "strategies", "multi_factor_one_found": "one found", "multi_factor_both_found": "both found"}
    columns |= {f"{k}_both_found": f"both: {k}" for k in _multi_kinds(frame)}
    columns |= {"kl": "KL ratio median (IQR)", "hit_rate": "hit rate"}
    return _table(frame, columns)


def _seeds_section(scope: pd.DataFrame, seeds: pd.DataFrame) -> str:
    rows = scope[(scope["method"] == "NPEFF") & (scope["scope"] == scope["default_scope"])]
    frame = _scored(pd.concat([rows, seeds], ignore_index=True).sort_values(["base", "seed"]))
    columns = {"model": "model", "scope": "scope", "seed": "seed", "kl": "KL ratio median (IQR)",
               "mean_strategy_purity": "purity", "multi_factor_both_found": "both found"}
    return _table(frame, columns)


def _multi_section(scope: pd.DataFrame, multi: pd.DataFrame) -> str:
    reference = scope[scope["scope"] == scope["default_scope"]].assign(label="default")
    frame = _scored(pd.concat([reference, multi], ignore_index=True))
    # A baseline row is shown once per number of components: the others repeat it.
    frame = frame[(frame["method"] == "NPEFF") | ~frame.duplicated(["base", "method", "n_components"])]
    frame.loc[frame["method"] != "NPEFF", "label"] = frame["n_components"].astype(str) + " components"
    columns = {"model": "model", "label": "setting", "method": "method", "mean_strategy_purity": "purity",
               "covered": "strategies", "multi_factor_one_found": "one found", "multi_factor_both_found": "both found"}
    for kind in _multi_kinds(frame):
        columns |= {f"{kind}_one_found": f"one: {kind}", f"{kind}_both_found": f"both: {kind}"}
    return _table(frame.sort_values(["base", "method"], kind="stable"), columns)


def _cross_section(crosses: dict[str, pd.DataFrame]) -> str:
    parts = []
    for base, table in crosses.items():
        frame = table.reset_index().rename(columns={"index": "component perturbed"})
        parts.append(f"**{MODEL_NAMES[base]}**\n\n" + _table(frame, {c: c for c in frame.columns}))
    return "\n\n".join(parts)


def _showcase_section(scope: pd.DataFrame) -> str:
    rows = scope[(scope["method"] == "NPEFF") & (scope["scope"] == scope["default_scope"])]
    lines = []
    for _, row in rows.iterrows():
        show = row["showcase"]
        lines.append(f"- {MODEL_NAMES[row['base']]} (scope {row['scope']}, seed {row['seed']}): component "
                     f"{show['component']}, KL ratio {show['kl_ratio']:.2f}, majority strategy {show['strategy']} "
                     f"(purity {show['strategy_purity']:.2f}).")
    return "\n".join(lines)


def write_report(path: Path, results: dict[str, pd.DataFrame], crosses: dict[str, pd.DataFrame],
                 overlaps: dict[tuple[str, int], int], context: dict) -> Path:
    from ..app.pipeline import DEFAULT_SCOPE

    for frame in results.values():
        if len(frame):
            frame["default_scope"] = frame["base"].map(DEFAULT_SCOPE)
    empty = pd.DataFrame(columns=["base", "seed", "scope", "method", "default_scope", "label", "n_components"])
    scope, seeds, multi = (results[k] if len(results[k]) else empty for k in ("scope", "seeds", "multi"))
    if len(scope):
        order = {name: i for i, name in enumerate(SCOPE_NAMES)}
        scope = scope.sort_values(["base", "scope"], key=lambda c: c.map(order) if c.name == "scope" else c, kind="stable")
    held_out = ", ".join(f"{MODEL_NAMES[b]} seed {s}: {n}" for (b, s), n in overlaps.items())
    load = lambda triple: "/".join(f"{x:.1f}" for x in triple)  # noqa: E731
    text = f"""# Evaluation on the embedded task

Written by `{context['command']}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
in {context['seconds'] / 60:.1f} minutes (load average {load(context['load_before'])} before,
{load(context['load_after'])} after, on the machine that ran it){' — QUICK settings, not for reading' if context['quick'] else ''}.
{'' if context['complete'] else 'INCOMPLETE: written while the run was going; the tables hold the settings measured so far. '}{context['n_examples']} analysed examples per model and seed, held out from training and validation;
ε = 0.1 for every perturbation; 20 top examples per component. What the figures mean and the
defaults chosen from them: docs/readings.md.

## Held out

Analysed texts also in the model's training or validation set: {held_out}.

## Parameter scope

Purity: mean over components of the majority strategy's share of the top 20 examples.
Strategies: single strategies that are some component's majority. One / both found: share
of the multi-factor examples whose two largest coefficients belong to components naming one
/ both of their strategies. KL ratio: per component, mean KL on its top examples over the
mean KL on 100 others when the parameters move by ε along it (max over ±); median and
quartiles over components. Hit rate: share of (component, top-10 example) pairs whose
highest-scored word is one of the example's deciding words.

{_scope_section(scope)}

## Selectivity over seeds (default scope)

{_seeds_section(scope, seeds)}

## Multi-factor examples: fit settings

The default scope of each model; baselines with as many components.

{_multi_section(scope, multi)}

## Does the model use both strategies?

The purest component of each strategy (default scope, first seed) perturbed by ±ε:
mean KL on 30 examples of each kind divided by the mean over all of them (the sign with
the larger ratio). A contrast component that moves contrast+negation and contrast+marker
examples as much as contrast examples says the model runs its contrast processing there too.

{_cross_section(crosses)}

## Showcased component

Criterion: the highest KL ratio among the components whose top 20 examples are at least
90% one strategy.

{_showcase_section(scope)}
"""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path

"""The stages of a run, in its folder: model → examples → pefs → fit → analysis.

:func:`run_stages` is the one account of them; :func:`~workbench.app.pipeline.run_embedded` (the
embedded task) and :func:`~workbench.app.model_run.run_model` (a classifier of one's own) check
their arguments, then hand it what is theirs: how the model is made, which examples it reads,
its component table and figures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..analysis.tables import accuracy_of
from ..models.loading import adapter_base, is_adapter_folder
from ..npeff import estimator_for
from ..runner import write_pefs
from ..store.files import StoreError, atomic_path
from ..store.lock import exclusive
from .fit_memory import check_fit_memory
from .run_folder import (COMPONENTS, DECOMPOSITION, EXAMPLES, FIT_CHECKPOINT, FIT_CHECKPOINT_EVERY, PEFS, Run,
                         RunRecorder)

logger = logging.getLogger(__name__)


def run_stages(
    out: Path,
    params: dict,
    *,
    seeds: dict,
    device,
    progress: bool,
    model_stage: Callable[[RunRecorder], tuple],
    examples_stage: Callable[..., tuple[pd.DataFrame, dict]],
    pef_filters: dict,
    provenance: dict,
    table_of: Callable[..., pd.DataFrame],
    figures_of: Callable[..., dict] | None = None,
    made_by: str | None = None,
) -> Run:
    """Run every stage into the run folder ``out`` and return it opened; the caller has checked every argument.

    The settings of the PEFs and the fit (``kind``, ``n_values``, ``batch_size``, ``n_components``,
    ``n_iters_g_only``, ``n_iters_joint``, ``seed``, ``n_top``) are read from ``params``, the
    arguments the record keeps, so that run.json says what ran. What is each caller's own:

    - ``model_stage(recorder)`` writes the run's ``model/`` and returns ``(model, tokenizer, source)``,
      ``source`` the folder the model came from;
    - ``examples_stage(model, tokenizer, source)`` returns ``(examples, inputs)``: the examples'
      frame (a ``label`` column, -1 where there is none) and their encoded inputs;
    - ``pef_filters`` (``include``/``exclude`` of ``write_pefs``) and ``provenance`` (beside the
      model's folder) go to the PEF store;
    - ``table_of(estimator, pefs, examples, n_top)`` makes components.csv, whose ``figures_of(table,
      examples, n_top)`` are recorded.

    Running it again with the same arguments resumes the PEF store (:func:`write_or_resume_pefs`),
    and the fit from its last checkpoint (:func:`fit_stage`).
    """
    with exclusive(out, "a run"):  # two runs in one folder would leave it mixed, yet marked complete
        recorder = RunRecorder(out, params, device=device, seeds=seeds, made_by=made_by)

        with recorder.stage("model"):
            model, tokenizer, source = model_stage(recorder)
            if is_adapter_folder(source):  # the record names what the adapters were merged onto, as model/ holds it
                recorder.note("model", adapter_base=adapter_base(source))

        with recorder.stage("examples"):
            examples, inputs = examples_stage(model, tokenizer, source)

        with recorder.stage("pefs"):
            store = write_or_resume_pefs(
                out / PEFS, model, inputs, examples["label"].to_numpy(), kind=params["kind"],
                n_values=params["n_values"], batch_size=params["batch_size"], device=device, progress=progress,
                **pef_filters, provenance={"model_path": str(source), **provenance},
            )
            # the fit loads the whole store: a fit the memory cannot hold is refused before it, the store kept
            check_fit_memory(store, params["n_components"], device=device, resume=(
                "the same run again with the same arguments on a machine with more memory finds its PEFs complete "
                "and goes on to the fit"))
            pefs = store.load()
            examples["prediction"] = pefs.predictions
            with atomic_path(out / EXAMPLES) as tmp:
                examples.to_parquet(tmp)
            recorder.wrote(EXAMPLES)  # another run's examples, of the same count, passed for these
            if (pefs.labels >= 0).any():  # examples without labels have no accuracy
                recorder.figure("analysis_accuracy", accuracy_of(pefs.labels, pefs.predictions))

        estimator = fit_stage(recorder, out, pefs, params["kind"], params["n_components"], params["n_iters_g_only"],
                              params["n_iters_joint"], seed=params["seed"], device=device, progress=progress)

        with recorder.stage("analysis"):
            table = table_of(estimator, pefs, examples, params["n_top"])
            with atomic_path(out / COMPONENTS) as tmp:
                table.to_csv(tmp)
            recorder.wrote(COMPONENTS)
            if figures_of is not None:
                for name, value in figures_of(table, examples, params["n_top"]).items():
                    recorder.figure(name, value)

        recorder.finish()
        return Run(out)


def fit_estimator(kind: str, n_components: int, n_iters_g_only: int, n_iters_joint: int, *, seed: int, device=None,
                  progress: bool = False):
    """The estimator of a run's fit stage, its settings checked (``check_params``): a run checks them
    before its folder is touched, not at the fit, after its PEFs (both iteration counts 0 passed every
    argument check and failed there)."""
    estimator = estimator_for(kind).for_iterations(n_components, n_iters_g_only, n_iters_joint, seed=seed,
                                                    device=device, progress=progress)
    estimator.check_params()
    return estimator


def fit_stage(recorder: RunRecorder, out: Path, pefs, kind: str, n_components: int, n_iters_g_only: int,
              n_iters_joint: int, *, seed: int, device, progress: bool):
    """A run's fit stage: the decomposition of ``pefs``, saved in the run folder, its final loss recorded.

    The fit saves its state to the run folder's checkpoint every :data:`FIT_CHECKPOINT_EVERY` steps, so the
    same run again resumes it from the last save (the record's fit stage says after which step); a checkpoint
    of an earlier run with other fit settings or other PEFs (or a damaged one) is replaced, as
    :func:`write_or_resume_pefs` replaces such a PEF store."""
    from ..store.checkpoint import UnusableCheckpointError

    checkpoint = out / FIT_CHECKPOINT

    def fit():
        return fit_estimator(kind, n_components, n_iters_g_only, n_iters_joint, seed=seed, device=device,
                             progress=progress).fit(pefs, checkpoint=checkpoint, checkpoint_every=FIT_CHECKPOINT_EVERY)

    with recorder.stage("fit"):
        saved_step = _saved_step(checkpoint)
        try:
            estimator = fit()
        except UnusableCheckpointError as err:
            logger.info("replacing the run folder's fit checkpoint, which this fit cannot resume (an earlier run's "
                        "with other arguments, or damaged): %s", err)
            checkpoint.unlink(missing_ok=True)  # the unusable save may be the previous one beside it
            checkpoint.with_name(checkpoint.name + ".previous").unlink(missing_ok=True)
            saved_step = None
            estimator = fit()
        if saved_step is not None:  # the checkpoint there was this fit's: the record says the fit was resumed
            recorder.note("fit", resumed_after_step=saved_step)
        estimator.save(out / DECOMPOSITION)
        recorder.wrote(DECOMPOSITION)
        recorder.figure("final_loss", estimator.final_loss_)
    return estimator


def _saved_step(checkpoint: Path) -> int | None:
    """The step a checkpoint was saved after, None where there is none (or it is unreadable: the fit replaces it)."""
    from ..store.files import read_header
    from ..store.formats import FIT_CHECKPOINT as FORMAT

    try:
        step = read_header(checkpoint, FORMAT).get("step") if checkpoint.exists() else None
    except StoreError:
        return None
    return step if isinstance(step, int) else None


def write_or_resume_pefs(path: Path, *args, **kwargs):
    """The same run again resumes its PEF store (a killed run loses nothing); a store made
    with other arguments is replaced, since the run folder belongs to this run."""
    try:
        return write_pefs(path, *args, **kwargs)
    except StoreError as err:
        if "made with other arguments" not in str(err):
            raise
        logger.info("replacing the PEF store of an earlier run with other arguments: %s", err)
        return write_pefs(path, *args, overwrite=True, **kwargs)

"""Indices and counts a user passes in: a component, an example, ``n_top``, ``page_size``,
``batch_size``... Python's ``True`` is the integer 1 and ``-1`` indexes the last row, so
without these checks a slip reads the wrong component or fails deep inside numpy or torch.
Light (numpy only): the panels check their arguments with them without loading torch.
"""

from __future__ import annotations

import numpy as np


class OutOfRangeError(IndexError, ValueError):
    """An index outside its range: an IndexError, as Python's own, and a ValueError, as the
    other checks' refusals, so code that catches either keeps working."""


def _integer(value, argument: str, fix: str) -> int:
    # bool is a subclass of int (True == 1): a flag passed where a number belongs is a slip, not a 1
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{argument} must be an integer, got {value!r} ({type(value).__name__}); {fix}")
    return int(value)


def item_index(value, size: int, argument: str, what: str) -> int:
    """``value`` as an index of one of ``size`` things (``what``: their plural, for the message)."""
    fix = f"pass an int from 0 to {size - 1}" if size else f"there are no {what}"
    i = _integer(value, argument, fix)
    if not 0 <= i < size:
        raise OutOfRangeError(f"{argument} must be from 0 to {size - 1}, got {value!r}: there are {size} {what} "
                              "(a negative index does not count from the end); use an index in that range")
    return i


def component_index(value, n_components: int, argument: str = "component") -> int:
    """``value`` as the index of one of ``n_components`` components."""
    return item_index(value, n_components, argument, "components")


def component_indices(values, n_components: int, argument: str = "components") -> list[int]:
    """``values`` as a non-empty list of component indices (one component alone is refused with the fix: ``[j]``;
    none at all too, whose empty table named no column pandas could find)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{argument} must be a list of component indices, got {values!r} ({type(values).__name__}); "
                        f"for one component pass [{values!r}], for all of them None")
    indices = [component_index(j, n_components, argument) for j in values]
    if not indices:
        raise ValueError(f"{argument}=[] lists no component; pass some, or None for every component"
                         + (" (a generator is read once: pass list(...))" if iter(values) is values else ""))
    return indices


def positive_int(value, argument: str, minimum: int = 1) -> int:
    """``value`` as a count of at least ``minimum`` (a number of examples, a page or batch size)."""
    n = _integer(value, argument, f"pass a whole number of at least {minimum}, e.g. {argument}={max(minimum, 10)}")
    if n < minimum:
        raise ValueError(f"{argument} must be an integer of at least {minimum}, got {value!r}; "
                         f"pass e.g. {argument}={max(minimum, 10)}")
    return n


#: The largest seed: torch's generators take no larger (2**64 - 1 overflowed in torch.manual_seed with its
#: own "Overflow when unpacking long long").
MAX_SEED = 2**63 - 1


def seed_value(value, argument: str = "seed") -> int:
    """``value`` as a random seed: a whole number from 0 to :data:`MAX_SEED`."""
    n = positive_int(value, argument, 0)
    if n > MAX_SEED:
        raise ValueError(f"{argument} must be an integer from 0 to 2**63 - 1, got {value!r}")
    return n


def fraction(value, argument: str) -> float:
    """``value`` as a number from 0 to 1 (a share or purity threshold)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument} must be a number from 0 to 1, got {value!r} ({type(value).__name__}); "
                        f"e.g. {argument}=0.5")
    if not 0 <= value <= 1:  # NaN fails this too
        raise ValueError(f"{argument} must be a number from 0 to 1, got {value!r}; e.g. {argument}=0.5")
    return float(value)


def flag(value, argument: str) -> bool:
    """``value`` as a yes or no: Python reads any non-empty string as true, so ``overwrite="no"``
    would overwrite."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def user_path(value, argument: str = "path"):
    """A path a user gave, ``~`` expanded as a shell would (a quoted "~/runs" reaches Python as is,
    and became a folder named ``~`` in the working directory)."""
    import os
    from pathlib import Path

    try:
        return Path(os.fspath(value)).expanduser()
    except TypeError:
        raise TypeError(f"{argument} must be a path (a str or pathlib.Path), got {type(value).__name__}") from None


def is_within(path, folder) -> bool:
    """Whether ``path`` is ``folder`` or inside it (both as the user wrote them, resolved)."""
    folder, path = user_path(folder).resolve(), user_path(path).resolve()
    return folder == path or folder in path.parents


def check_model_folder(folder, argument: str, *, out=None, out_argument: str = "the run folder"):
    """``folder`` (a Path) checked as a saved model folder (its config.json, or a PEFT adapter's
    adapter_config.json), and ``out`` as a folder outside it.

    A run copies its model into its own folder: one inside the model's folder copied the model into itself
    until the path was too long, and left 82 MB of model/run/model/... among the user's model files."""
    from pathlib import Path

    folder = user_path(folder, argument)
    if not (Path(folder) / "config.json").is_file() and not (Path(folder) / "adapter_config.json").is_file():
        where = "it does not exist" if not Path(folder).exists() else "no config.json there"
        # run_model(model_path, out) with the two swapped: the model folder sat where the run folder belongs
        swapped = (out is not None and not Path(folder).exists() and (user_path(out) / "config.json").is_file()
                   and not (user_path(out) / RUN_RECORD).is_file())
        fix = (f"{out_argument} {out} is one: were the two swapped? Give the model's folder as {argument} and a new "
               "folder for the run" if swapped else run_part(folder, "model")
               or "pass a folder written by model.save_pretrained(folder) and tokenizer.save_pretrained(folder)")
        raise ValueError(f"{argument} {folder} is not a saved model folder ({where}): {fix}")
    if out is not None and is_within(out, folder):
        raise ValueError(f"{out_argument} {out} is inside the {argument} folder {folder}, where the run would write "
                         "among the model's files (and copy the model into itself): choose a folder outside it")
    return folder


def at_least(minimum: int, maximum: int | None = None):
    """An argparse type: an integer of at least ``minimum`` (and at most ``maximum``)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be at least {minimum}" + (f" and at most {maximum}" if maximum
                                             is not None else "") + f", got {value}")
        return value
    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number above 0 (a time, a step)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1e9:  # NaN and infinity too: no clock counts to them
        raise argparse.ArgumentTypeError(f"must be a finite number more than 0, got {text}")
    return value


def check_output_file(out, option: str = "--out", example: str = "result.json"):
    """An output file checked before the work that fills it (a benchmark, an evaluation): a file in a
    folder that exists and this user may write, not a folder. Found after an hour's work, a typo
    was an hour lost."""
    import os

    path = user_path(out, option)
    if path.is_dir():
        raise ValueError(f"{option} {out} is a folder; give the file to write, e.g. {path / example}")
    if not path.parent.is_dir():
        raise ValueError(f"{option} {out}: the folder {path.parent} does not exist; create it first")
    reason = cannot_write_in(path.parent)
    if reason is None and path.exists() and not os.access(path, os.W_OK):
        reason = "the file is read-only"
    if reason:
        raise ValueError(f"{option} {out}: this user may not write there ({reason}); choose another path")
    return path


def cannot_write_in(folder) -> str | None:
    """Why no file can be made in ``folder`` (or, where it does not exist yet, in the nearest folder above it that
    does), or None: a throwaway file made and removed there. os.access says yes to root everywhere, /proc and
    read-only disks included, and the output failed after the work that filled it."""
    import os
    import tempfile

    folder = user_path(folder).absolute()
    folder = next((f for f in (folder, *folder.parents) if f.exists()), folder)
    try:
        handle, name = tempfile.mkstemp(prefix=".npeff-write-check-", dir=folder)
    except OSError as err:
        return err.strerror or str(err)
    os.close(handle)
    os.unlink(name)
    return None


#: A run folder's record (workbench.app.run_folder): the folder that holds one is a run's.
RUN_RECORD = "run.json"
#: A run folder's decomposition (workbench.app.run_folder), the file that transform and the explorer read.
DECOMPOSITION = "decomposition.safetensors"
#: The run folders this process records (a RunRecorder made them): the one writer their files may have.
RUNS_RECORDED_HERE: set = set()


def enclosing_run(path):
    """The run folder that ``path`` is or lies in (the nearest folder holding a run record), or None."""
    path = user_path(path).resolve()
    return next((folder for folder in (path, *path.parents) if (folder / RUN_RECORD).is_file()), None)


def check_outside_run(path, argument: str, what: str, *, example: str = "out", rerun: str | None = None) -> None:
    """Refuse ``path`` inside a run folder that another process made: a decomposition or a PEF store written there
    replaced the run's own (or sat among them), and the run then opened as one that "mixes files of different runs".
    ``rerun``: how to make that part of the run again (the run's command), where the caller knows it."""
    run = enclosing_run(path)
    if run is None or run in RUNS_RECORDED_HERE:
        return
    inside = user_path(path).resolve().relative_to(run).parts
    outside = run.parent / "-".join((run.name, *(inside or (example,))))
    again = rerun or "run it again as it was made (run_embedded, run_model or its notebook: see its run.json)"
    raise ValueError(f"{argument} {path} is inside the run folder {run}: {what} written there would replace or mix with "
                     f"the run's own files, and the run would no longer open ('mixes files of different runs'). Write "
                     f"it outside the run, e.g. {outside}; to make the run's own again with other parameters, {again}")


def run_part(folder, part: str) -> str:
    """Where ``folder`` is a run folder given in place of one of its parts (its ``pefs``, its ``model``), the fix
    that names the part; else "". `fit RUN` was told that RUN is not a PEF store, and to compute one."""
    folder = user_path(folder)
    if not (folder / RUN_RECORD).is_file():
        return ""
    return f"{folder} is a run folder; pass its {part}, {folder / part}" + ("" if (folder / part).exists() else
                                                                           " (which this run does not have)")


def not_a_model(model) -> TypeError:
    """The refusal of ``model`` where a loaded torch model belongs, with the way to load one: a folder's path was
    refused as 'got str', which named neither the run folder's model nor how to load it."""
    import os

    if isinstance(model, (str, os.PathLike)):
        path = user_path(model)
        if (path / RUN_RECORD).is_file():
            fix = f"it is a run folder: load its model with RunExplorer.open({str(path)!r}).model_and_tokenizer()"
        else:
            fix = (f"load the model first, e.g. model, tokenizer = workbench.models.loading.load_classifier({str(path)!r}) "
                   "or AutoModelForSequenceClassification.from_pretrained(path)")
        return TypeError(f"model must be a loaded torch.nn.Module, got the path {str(path)!r}; {fix}")
    return TypeError(f"model must be a torch.nn.Module (the classifier whose PEFs are computed), got "
                     f"{type(model).__name__}; pass the model itself")

"""Run folders: everything one analysis produced, and a record of how it was produced.

A run folder holds::

    run.json                    parameters, versions, device, seeds, stage timings, figures
    model/                      the model (save_pretrained), when the run trained or copied one
    examples.parquet            one row per example: text (a pair's second: text_pair), label and any attributes
    pefs/                       the PEF store (workbench.store)
    decomposition.safetensors   the fitted NPEFF decomposition
    components.csv              the component table (workbench.analysis)
    fit.ckpt.safetensors        while the fit stage runs: its state every FIT_CHECKPOINT_EVERY steps, from
                                which the same run again resumes the fit; removed when the run completes

:class:`RunRecorder` writes ``run.json`` as the run goes (atomically, after every stage),
so a run that died says how far it got: a stage is "done" only once the block that writes
its files has returned, so the record never vouches for a file still being written.
:meth:`Run.open` opens a finished folder for reading, and says what is missing from one
whose run stopped (:class:`IncompleteRunError`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import platform
import shlex
import shutil
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
from safetensors import safe_open

from ..core.arguments import DECOMPOSITION, RUN_RECORD, RUNS_RECORDED_HERE, cannot_write_in, positive_int, user_path
from ..core.kinds import choices as kind_choices, kind as kind_named
from ..core.staging import plain_modes
from ..models.text import TEXT_PAIR_COLUMN
from .. import report
from ..store.files import (CHECKSUM, StoreError, check_folder, check_format, file_checksum, is_temporary, json_default,
                           read_header, read_json, write_json, writing)
from ..store.formats import RUN_RECORD as RUN_FORMAT
from ..store.lock import LOCK, held_by_a_notebook_run
from ..store.pef_store import PefStore, load_pefs

MODEL = "model"
EXAMPLES = "examples.parquet"
PEFS = "pefs"
COMPONENTS = "components.csv"
#: The fit stage's checkpoint (workbench.store.checkpoint), and the steps between its saves: a save of the demo's
#: fit (600 examples, 16 components, 3 MB) took 3-7 ms and its 500 steps about 5 s on one CPU core, so its 11
#: saves cost about 1% of the fit, and a kill loses at most 50 steps (0.5 s)
FIT_CHECKPOINT, FIT_CHECKPOINT_EVERY = "fit.ckpt.safetensors", 50
#: what a finished run's reader needs, and the stage of a run (workbench.app.stages) that writes it
REQUIRED = {EXAMPLES: "pefs", DECOMPOSITION: "fit", COMPONENTS: "analysis"}
#: What readings write into the run folder, made from its decomposition: component labels
#: (RunExplorer.label_components), exports (RunExplorer.export) and the HTML report of a notebook.
LABELS, EXPORTS, REPORT = "labels.csv", "exports", "report"


#: What to do about a file of the run folder that is not the one the run wrote.
_WRITE_AGAIN = "copy the run folder again whole, or run the run again into a new folder"
#: Why it may not be: a full disk or a copy cut it short (this was "mixes files of different runs"), or it is another's.
_NOT_WRITTEN = ("is damaged or incomplete (cut short by a full disk or an interrupted copy, or edited), or another "
                f"run's; {_WRITE_AGAIN}")


#: The parameters readers take from a run's record: what each should be, and its check. One edited into another
#: type ("n_top": "20") was refused as if the user had passed it ("pass n_top=10").
_READ_PARAMS = {
    "n_top": ("a whole number of at least 1", lambda v: positive_int(v, "n_top")),
    "max_length": ("a whole number of at least 2, or null",
                   lambda v: v if v is None else positive_int(v, "max_length", 2)),
    "n_values": ("a whole number of at least 1, or null", lambda v: v if v is None else positive_int(v, "n_values")),
    "kind": (kind_choices(), lambda v: kind_named(v).name),
}


class IncompleteRunError(StoreError):
    """A run folder whose run stopped before it wrote what a reader needs."""

_LIBRARIES = ("npeff-workbench", "torch", "transformers", "numpy", "scipy", "pandas", "h5py", "safetensors",
              "plotly", "ipywidgets", "papermill", "scikit-learn")


def now() -> str:
    """The time, as run records write it (UTC, seconds)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def environment(device=None) -> dict:
    """Versions and machine, so two runs' differences can be traced to their cause."""
    import torch

    versions = {}
    for name in _LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
        "device": str(device) if device is not None else None,
    }
    if device is not None and torch.device(device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def copy_model(source: Path, out: Path, model=None, tokenizer=None) -> None:
    """The model folder copied into the run's ``model/``, over an earlier run's; nothing to copy when ``source``
    is that folder (a run made again in place with its own model: removing the copy first deleted the model).
    A PEFT adapter folder's ``model`` (its base with the adapters merged) is saved there instead, so that the
    run opens without the adapter's base."""
    from ..models.loading import is_adapter_folder

    if (out / MODEL).resolve() == Path(source).resolve():
        return
    shutil.rmtree(out / MODEL, ignore_errors=True)
    if is_adapter_folder(source) and model is not None:
        model.save_pretrained(out / MODEL)  # as copytree, not atomic: the run redoes a stage it did not finish
        tokenizer.save_pretrained(out / MODEL)
    else:
        shutil.copytree(source, out / MODEL)
    plain_modes(out / MODEL)  # a model saved before this version (the cached embedded one) came 0600


def check_new_run_folder(out: Path) -> None:
    """A run writes its model, PEFs and results into ``out``, replacing what is there: a folder
    with files and no run record might be the user's, and is refused; so is a path that is a file,
    lies under one or is a broken link, before the model is loaded."""
    check_folder(out, "the run")
    try:  # the model's files in it are read by safetensors, which takes UTF-8 paths alone
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{out!r} is not a valid UTF-8 path: the run's model could be written there but never read "
                         "back (safetensors opens UTF-8 paths only); choose a folder whose name is UTF-8") from None
    for name in (FIT_CHECKPOINT, FIT_CHECKPOINT + ".previous"):  # the fit would fail after the PEFs, unable to save
        if (out / name).is_dir():
            raise ValueError(f"{out / name} is a folder, where the run saves its fit's checkpoint (a file): move or "
                             "remove that folder, or choose another run folder")
    # a run killed before its first record leaves its lock, and that record's temporary where killed writing it
    if out.is_dir() and not (out / RUN_RECORD).exists() and any(out.iterdir()) and not _killed_before_its_record(out):
        raise ValueError(f"{out} holds files and is not a run folder (it has no {RUN_RECORD}): a run writes its "
                         f"model, PEFs and results into its folder, replacing what is there; choose a new or empty "
                         f"folder, such as {out / 'run'}")


def _settings(params) -> dict | None:
    """A run's parameters as JSON holds them, less its own folder: a run moved or copied (mv runs/a runs/b) and run
    again there with the same arguments had other parameters, and lost its labels, exports and report."""
    if not isinstance(params, dict):
        return params
    return {k: v for k, v in json.loads(json.dumps(params, default=json_default)).items() if k != "out"}


class RunRecorder:
    """Writes a run's record as it goes: ``with recorder.stage("pefs"): ...``."""

    def __init__(self, path: str | os.PathLike, params: dict, *, device=None, seeds: dict | None = None,
                 made_by: str | None = None):
        self.path = check_folder(path, "the run")
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        RUNS_RECORDED_HERE.add(self.path.resolve())  # its stages write their files through the public writers
        self.record = {
            **RUN_FORMAT.header(),
            "started": now(),
            "status": "running",
            **({"made_by": made_by} if made_by else {}),
            "params": dict(params),
            "seeds": dict(seeds or {}),
            "environment": environment(device),
            "stages": {},
            "figures": {},
        }
        # the decomposition there now: the labels, exports and report there are of it, or of none
        self._decomposition_before = None
        with contextlib.suppress(Exception):
            self._decomposition_before = file_identity(self.path / DECOMPOSITION)
        earlier = self._earlier_record()
        notebooks = earlier.get("notebooks")
        changed = earlier and _settings(earlier.get("params")) != _settings(self.record["params"])
        if changed:
            self._remove_readings()
        notebooks = self._live_notebooks(notebooks if isinstance(notebooks, dict) else {}, keep_finished=not changed)
        if notebooks:  # the notebook running this pipeline wrote its entry first, and completes the record when it ends
            self.record["notebooks"] = notebooks
        self._save()

    def _earlier_record(self) -> dict:
        with contextlib.suppress(Exception):  # no record, or one no longer readable: nothing to keep
            return read_json(self.path / RUN_RECORD)
        return {}

    def _remove_readings(self) -> None:
        """The labels, exports and report of an earlier decomposition would name this one's components
        wrongly: removed before anything else where the parameters changed, and where the run writes a
        decomposition other than the one that was there (the same parameters over a model saved again,
        or other texts of the same count)."""
        for name in (LABELS, EXPORTS, REPORT):
            path = self.path / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

    def _live_notebooks(self, notebooks: dict, *, keep_finished: bool) -> dict:
        """The entries of the notebooks this record still speaks for, the pages of the others removed: a notebook
        run that holds the folder for this process (the one running this pipeline), and finished ones while the
        parameters are the same. A demo with another seed kept the quickstart's page of seed 0 and its "complete"
        entry beside the new decomposition; a killed notebook's "running" entry kept the folder running for ever."""
        held = held_by_a_notebook_run(self.path)
        live = {}
        for name, entry in notebooks.items():
            running = isinstance(entry, dict) and entry.get("status") == "running"
            if (running and held) or (not running and keep_finished and isinstance(entry, dict)):
                live[name] = entry
                continue
            for page in (entry.get("executed"), entry.get("html")) if isinstance(entry, dict) else ():
                if isinstance(page, str) and Path(page).name == page and page.endswith((".ipynb", ".html")):
                    (self.path / page).unlink(missing_ok=True)  # a name in this folder, never a path elsewhere
        return live

    def _save(self) -> None:
        write_json(self.path / RUN_RECORD, self.record)

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        self.record["stages"][name] = {"status": "running", "started": now()}
        self._save()
        try:
            yield
        except BaseException as error:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"  # a Ctrl-C is not a fault
            self.record["stages"][name].update(status=status, seconds=round(time.perf_counter() - start, 3))
            self.record["status"] = status
            self._save()
            raise
        self.record["stages"][name].update(status="done", seconds=round(time.perf_counter() - start, 3))
        self._save()

    def note(self, stage: str, **entries) -> None:
        """Add ``entries`` to a running stage's record (saved with it when it ends)."""
        self.record["stages"][stage].update(entries)

    def figure(self, name: str, value) -> None:
        self.record["figures"][name] = value
        self._save()

    def wrote(self, *names: str) -> None:
        """Record what the files ``names`` of the run folder hold (:func:`file_identity`): a reader
        then knows them from another run's copied in, whose counts match."""
        identities = {name: file_identity(self.path / name) for name in names}
        if identities.get(DECOMPOSITION, self._decomposition_before) != self._decomposition_before:
            self._remove_readings()
            self._decomposition_before = identities[DECOMPOSITION]
        self.record.setdefault("files", {}).update(identities)
        self._save()

    def finish(self) -> None:
        # a notebook still running (the one that runs this pipeline) has the last word, when it ends
        running = any(n.get("status") == "running" for n in self.record.get("notebooks", {}).values())
        # kept until now, not removed at the end of the fit: a run killed after its fit resumes a finished fit at once
        (self.path / FIT_CHECKPOINT).unlink(missing_ok=True)
        self.record.update(status="running" if running else "complete", finished=now())
        self._save()


#: The columns of examples.parquet its identity is of: a column the user adds (an attribute of their own)
#: leaves it the run's file, another run's texts or labels do not.
EXAMPLE_IDENTITY_COLUMNS = ("text", TEXT_PAIR_COLUMN, "label")


def file_identity(path: Path) -> str:
    """The checksum of a file's contents: for a safetensors file of ours, the one written in it
    with its arrays (read without the arrays); for the examples, of their texts and labels; else
    the file's SHA-256."""
    if path.name == EXAMPLES:
        import hashlib

        with contextlib.suppress(Exception):  # not a table of texts and labels: its bytes, as any file's
            import pyarrow.parquet as pq

            # a pair's second text is of its identity; a run of single texts is checked as it always was
            names = pq.read_schema(path).names
            columns = [c for c in EXAMPLE_IDENTITY_COLUMNS if c in names or c != TEXT_PAIR_COLUMN]
            examples = pd.read_parquet(path, columns=columns)
            rows = pd.util.hash_pandas_object(examples, index=False).to_numpy()
            return "texts and labels:" + hashlib.sha256(rows.tobytes()).hexdigest()
    if path.suffix == ".safetensors":
        with contextlib.suppress(StoreError):
            written = read_header(path, checksum=True).get(CHECKSUM)
            if written:
                return written
    return file_checksum(path)


def write_run_record(path: str | os.PathLike, record: dict) -> dict:
    """Replace a run's record (atomically) with ``record``, and return it."""
    write_json(Path(path) / RUN_RECORD, record)
    return record


def read_run_record(path: str | os.PathLike) -> dict:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"a run folder is a path (str or pathlib.Path), got {type(path).__name__}")
    where = user_path(path)
    if not where.is_dir():
        raise StoreError(f"{where} is not a run folder: {'it is a file' if where.exists() else 'it does not exist'}; "
                         "give the folder that run_embedded, run_model or python -m workbench demo/run wrote")
    if not (where / RUN_RECORD).exists():
        if _killed_before_its_record(where):
            raise IncompleteRunError(
                f"the run folder {where} is incomplete: a run started into it was stopped (killed) before it wrote its "
                f"{RUN_RECORD}, so it holds nothing of the run yet. Finish it by running the same command again with the "
                "same folder (python -m workbench demo/run --out, run_embedded or run_model)")
        raise StoreError(f"{where} is not a run folder (it has no {RUN_RECORD}); give the folder that run_embedded, "
                         "run_model or python -m workbench demo/run wrote")
    record = read_json(where / RUN_RECORD, fix="run the command that made the folder again")
    if record.get("format") != RUN_FORMAT.name:
        raise StoreError(f"{where} is not a run folder of this package (no {RUN_RECORD} of format {RUN_FORMAT.name})")
    check_format(record, RUN_FORMAT, where / RUN_RECORD)
    for key in ("params", "stages", "notebooks", "figures", "seeds", "files"):  # a hand-edited list raised AttributeError
        if not isinstance(record.get(key, {}), dict):
            raise StoreError(f"{where / RUN_RECORD} is damaged: {key!r} should be an object ({{...}}), found "
                             f"{type(record[key]).__name__}; run the command that made the folder again")
    for key in ("stages", "notebooks"):  # an entry edited to a string raised AttributeError: 'str' object has no attribute 'get'
        for name, entry in record.get(key, {}).items():
            if not isinstance(entry, dict):
                raise StoreError(f"{where / RUN_RECORD} is damaged: {key}[{name!r}] should be an object ({{...}}), "
                                 f"found {type(entry).__name__}; run the command that made the folder again")
    return record


def _killed_before_its_record(folder: Path) -> bool:
    """Whether ``folder`` holds what a run killed before its first record leaves: its lock, and the temporary
    of that record's write; a folder with no lock (one the user made, or emptied) is no run's."""
    names = {p.name for p in folder.iterdir()}
    return LOCK in names and all(name == LOCK or is_temporary(name) for name in names)


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def compare_runs(a: str | os.PathLike, b: str | os.PathLike, *, include_timings: bool = False) -> pd.DataFrame:
    """What differs between two runs' records: one row per differing entry, columns a and b.

    Timestamps are left out; timings (entries named ``seconds``: stages, notebook runs) only
    with ``include_timings``.
    """
    ra, rb = (_flatten(read_run_record(p)) for p in (a, b))

    def noise(key: str) -> bool:
        last = key.rsplit(".", 1)[-1]
        return last in ("started", "finished") or (last.endswith("seconds") and not include_timings)

    keys = sorted(k for k in set(ra) | set(rb) if not noise(k) and ra.get(k) != rb.get(k))
    return pd.DataFrame({"a": [ra.get(k) for k in keys], "b": [rb.get(k) for k in keys]}, index=pd.Index(keys, name="entry"))


class Run:
    """A finished run folder, opened for reading. Loads lazily: nothing big is read until asked for."""

    def __init__(self, path: str | os.PathLike):
        self.record = read_run_record(path)
        self.path = user_path(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Run":
        """The run folder at ``path``, refused (:class:`IncompleteRunError`) when its run stopped
        before writing what a reader needs: the error names what is missing and how to finish it."""
        run = cls(path)
        missing = run.missing()
        if missing:
            status = run.record.get("status")
            unfinished = [f"{name} ({stage.get('status')})" for name, stage in run.record.get("stages", {}).items()
                          if stage.get("status") != "done"]
            raise IncompleteRunError(
                f"the run folder {run.path} is incomplete: its record says {status!r}"
                + (f", stages not done: {', '.join(unfinished)}" if unfinished else "")
                + f"; missing: {', '.join(missing)}. "
                + ("Its run was stopped (killed, or it is still running). " if status in ("running", "interrupted") else "")
                + f"Finish it by running the same command again with the same parameters ({run.command()}): the PEF "
                "store resumes where it stopped. Run(path) reads what is there."
            )
        run.check_consistent()
        return run

    def command(self) -> str:
        """The command that made this folder, as one would type it again (its arguments elided)."""
        notebooks = self.record.get("notebooks") or {}
        out = shlex.quote(str(self.path))  # a folder with spaces, pasted unquoted, was two arguments
        if notebooks:
            source = next(iter(notebooks.values())).get("source", "NOTEBOOK.ipynb")
            return f"python -m workbench run {shlex.quote(str(source))} --out {out} -p ..."
        if self.record.get("made_by") == "run_model":
            return f"run_model({str(self.path)!r}, ...)"
        return f"python -m workbench demo --out {out} ..., or run_embedded({str(self.path)!r}, ...)"

    def missing(self) -> list[str]:
        """The files a reader needs that this folder lacks, or holds from a stage its record
        does not say is done (the stage may have been killed while writing them)."""
        stages = self.record.get("stages", {})
        # A record without stages vouches for its files only once complete (a folder put together
        # by hand, then recorded); a run killed just after writing its first record has none either.
        vouched = "done" if not stages and self.record.get("status") == "complete" else None
        return [name for name, stage in REQUIRED.items()
                if not (self.path / name).is_file() or stages.get(stage, {}).get("status", vouched) != "done"]

    def check_consistent(self) -> None:
        """Refuse (StoreError) a folder whose files are of different runs: two runs written into
        one folder at once, or files copied in from another run. Reads only headers and counts."""
        import pyarrow.parquet as pq

        counts = {}
        with self._reading(EXAMPLES):
            counts[EXAMPLES] = pq.read_metadata(self.path / EXAMPLES).num_rows
        with self._reading(DECOMPOSITION), safe_open(str(self.path / DECOMPOSITION), framework="np") as f:
            counts[DECOMPOSITION], n_components = f.get_slice("W").get_shape()
        with contextlib.suppress(StoreError):  # readers need no PEF store: one deleted or damaged is no mix-up
            counts[PEFS] = PefStore(self.path / PEFS).n_examples
        if len(set(counts.values())) > 1:
            raise StoreError(
                f"the run folder {self.path} mixes files of different runs: "
                + ", ".join(f"{name} has {n} examples" for name, n in counts.items())
                + ". Two runs wrote into it at once, or files were copied in from another run; run it again into a "
                "new folder")
        table = self.components()
        # a table cut short at a row's end reads as a smaller one: damage, or another run's (the others say damaged)
        if len(table) != n_components:
            raise StoreError(f"the run folder {self.path}: {COMPONENTS} has {len(table)} components and {DECOMPOSITION} "
                             f"{n_components}: {COMPONENTS} {_NOT_WRITTEN}")
        for name, written in self.record.get("files", {}).items():  # counts match; contents may not
            if (self.path / name).is_file() and file_identity(self.path / name) != written:
                raise StoreError(f"the run folder {self.path}: {name} is not the file this run wrote: it {_NOT_WRITTEN}")

    def check_unchanged(self, *, reading: str | None = None) -> None:
        """Refuse (StoreError) to write readings (labels, exports, a report) into this folder when it was
        run again since it was opened: they would describe the earlier decomposition beside the new one.
        ``reading``: the file just read, refused as read from the other run rather than written from this one."""
        def decomposition(record: dict):
            return record.get("files", {}).get(DECOMPOSITION) or record.get("started")

        with contextlib.suppress(Exception):
            if decomposition(read_run_record(self.path)) == decomposition(self.record):
                return
        what = ("what would be written from here describes its earlier decomposition" if reading is None else
                f"its {reading}, read now, is not of the run opened, whose files were read before")
        raise StoreError(f"the run folder {self.path} was run again since it was opened (or is running now): {what}; "
                         "open it again (RunExplorer.open(path), or Workbench.from_run(path)) once the run is complete")

    def check_writable(self, what: str, elsewhere: str = "") -> None:
        """Refuse before the work, not after it, to save ``what`` into this folder when it was moved or deleted since
        it was opened (FileNotFoundError: a write would make the old folder anew, holding that file alone), or when
        this user may not write there (PermissionError: read-only, on a read-only disk, or another user's). Each says
        what to do; ``elsewhere``, where ``what`` may be written to another folder, says how."""
        if not self.path.is_dir():
            raise FileNotFoundError(errno.ENOENT, f"cannot save {what}: the run folder {self.path} was moved or deleted "
                                    f"since it was opened; open it again where it is now (RunExplorer.open(path)){elsewhere}")
        reason = cannot_write_in(self.path)
        if reason:
            raise PermissionError(errno.EACCES, f"cannot save {what} into the run folder {self.path}: this user may not "
                                  f"write there ({reason}); copy the run folder somewhere you may write (cp -r "
                                  f"{self.path} COPY) and open the copy, RunExplorer.open(COPY){elsewhere}")

    @contextlib.contextmanager
    def _reading(self, name: str):
        """What pandas, pyarrow or safetensors raise on a damaged file, as a StoreError naming it; a file of a run
        made again in the folder since this one was opened (an explorer's lazy reads: its W of the first run, its
        examples of the second) is refused as such, not read beside the earlier run's files."""
        try:
            yield
        except StoreError:
            raise
        except Exception as err:
            if not self.path.is_dir():
                raise StoreError(f"cannot read {name}: the run folder {self.path} was moved or deleted since it was "
                                 "opened; open it again where it is now (RunExplorer.open(path))") from err
            self._check_read(name)
            raise StoreError(f"{self.path / name} cannot be read (damaged, or not written by this package: {err}); "
                             "run the run again into a new folder") from err
        self._check_read(name)

    def _check_read(self, name: str) -> None:
        """After a read (a run made again starts by rewriting run.json): the file read was of this run."""
        if DECOMPOSITION in self.record.get("files", {}):  # a run read as it goes (Run(path)) changes as it goes
            self.check_unchanged(reading=name)

    @property
    def params(self) -> dict:
        """The arguments the run was made with, as its run.json records them."""
        return self.record["params"]

    def param(self, name: str, default=None):
        """The run's parameter ``name`` (``default`` where it has none), checked as its readers take it: a
        StoreError naming the record's entry where it was edited into another type or value."""
        value = self.params.get(name, default)
        what, check = _READ_PARAMS[name]
        try:
            return check(value)
        except (TypeError, ValueError):
            raise StoreError(f"{self.path / RUN_RECORD} is damaged: params[{name!r}] should be {what}, found {value!r} "
                             f"({type(value).__name__}); run the command that made the folder again") from None

    @property
    def examples(self) -> pd.DataFrame:
        """The run's examples (examples.parquet), read on each access: text, label, prediction, attributes."""
        with self._reading(EXAMPLES):
            return pd.read_parquet(self.path / EXAMPLES)

    def pefs(self):
        """The run's PEFs (its ``pefs/`` store) read into memory: LrmPefs or DPefs."""
        return load_pefs(self.path / PEFS)

    def decomposition(self):
        """The run's fitted decomposition (LrmNpeff or DNpeff) read from decomposition.safetensors."""
        from ..npeff import estimator_for  # on use: reading a run's record and tables needs no torch

        decomposition = estimator_for(self.param("kind", "lrm")).load(self.path / DECOMPOSITION)
        self._check_read(DECOMPOSITION)
        return decomposition

    def components(self) -> pd.DataFrame:
        """The component table as the run wrote it: attribute values as their text ("NA" read as missing, and
        the name "nan 1.00"; "007" as 7), only empty cells as missing."""
        with self._reading(COMPONENTS):
            with open(self.path / COMPONENTS, "rb") as file:  # its last row, cut short, read as a whole one
                if file.seek(0, os.SEEK_END) and (file.seek(-1, os.SEEK_END), file.read(1))[1] != b"\n":
                    raise StoreError(f"{self.path / COMPONENTS} is damaged or incomplete: it ends within a row (cut "
                                     f"short by a full disk or an interrupted copy); {_WRITE_AGAIN}")
            columns = pd.read_csv(self.path / COMPONENTS, nrows=0).columns
            values = [c for c in columns if f"{c}_purity" in columns and c not in ("label", "prediction")]
            # labels and predictions are class indices: a component whose top set has no known label (an empty
            # cell) made the column float, and its labels "1.0", which a filter by label 1 did not match
            classes = dict.fromkeys([c for c in ("label", "prediction") if c in columns], "Int64")
            return pd.read_csv(self.path / COMPONENTS, index_col="component", keep_default_na=False,
                               na_values={c: [""] for c in columns}, dtype=dict.fromkeys(values, str) | classes)

    @property
    def model_path(self) -> Path:
        """The run's ``model/`` folder; RunExplorer.open(run.path).model_and_tokenizer() loads it as the run read it."""
        return self.path / MODEL

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.record.get('status')!r})"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": f"{self!r}\n{report.run_section_text(self.record)}",
                "text/html": report.run_section_html(self.record)}

"""Files written whole or not at all, and read back with a clear error when they are not ours.

Every file is written to a temporary name and renamed into place, so a killed process
leaves either the old state or the new one, never half a file; the data is ``fsync``ed
before the rename, so a power cut cannot leave an empty file under the real name. Data is
safetensors (no pickle) with a JSON header as its metadata, or JSON; a file that is
missing, truncated or not written by this package is a :class:`StoreError` that names it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from ..core.arguments import DECOMPOSITION, enclosing_run, run_part, user_path
from ..core.disk import naming_disk_errors
from ..core.staging import process_umask, remove_dead_staging, staging_path, writer_ended
from .. import __version__
from .formats import FORMATS, MANIFEST, FileFormat


class StoreError(ValueError):
    """A store is missing, incomplete, truncated, of another format, or mixed with an incompatible one."""


class StoreWriteError(StoreError):
    """A file could not be written (disk full, no permission, a file where a folder should be):
    the files written before it are whole, and the same call again resumes from them."""


#: What a file of the store not written leaves, and what the same call again does
KEPT = ("the files written before are whole and kept (a PEF run or a fit with a checkpoint resumes from them), and no "
        "half-written file is left")


def writing(path: str | os.PathLike):
    """Turns what the operating system (or safetensors) raises while ``path`` is written into a
    :class:`StoreWriteError` that names the file and what to do; one an inner ``writing`` raised
    names its own file (the chunk a run resumes after), and passes as it is."""
    return naming_disk_errors(path, KEPT, raising=StoreWriteError, errnos=None, also=(SafetensorError,),
                              renames=False)


def check_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a folder to write into: refused (StoreError) when it is a file or a broken
    symbolic link; a link to a folder is followed, so that replacing the folder's content
    replaces the target's and keeps the link."""
    path = user_path(path)
    if path.is_symlink() and not path.exists():
        raise StoreError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; create that folder, "
                         f"or remove the link, to write {what} there")
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a folder; choose a new or empty folder for {what}")
    for parent in path.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise StoreError(f"{parent} is a file, so {path} cannot be a folder; choose another path for {what}")
    return path.resolve() if path.is_symlink() else path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path beside ``path``; renames it into place only on success. Errors of
    the file system are :class:`StoreWriteError`, and leave no temporary file behind."""
    path = user_path(path)
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a file name; give the file's name, e.g. {path / 'name.safetensors'}")
    with writing(path):
        check_folder(path.parent, str(path.name))
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_staging(path)  # of earlier writes that were killed
        # The temporary file is in a folder of its own, named with this process's id: a writer that makes
        # temporaries of its own (safetensors writes ".tmpXXXXXX" beside the path it is given) leaves them
        # there, and a killed write leaves one folder the next write of the name removes.
        folder = staging_path(path)
        folder.mkdir()
    tmp = folder / path.name
    try:
        with writing(path):
            yield tmp
            # safetensors' temporary file is 0600 whatever the umask: give the file the mode a plain open()
            # would, so a store shared with the group stays readable to it
            os.chmod(tmp, 0o666 & ~process_umask())
            _fsync(tmp)  # the data reaches the disk before the name does, so a power cut cannot leave an empty file
            os.replace(tmp, path)
        for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # of versions that wrote files there
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Names of temporaries: atomic_path's folders (".NAME.tmp-PID-RANDOM", core.staging), the files of
# earlier versions (".NAME.XXXX.tmp"), and safetensors' own, which writes through Rust's tempfile crate
# (".tmp" + 6 random characters) before it renames.
_TEMPORARY_NAME = re.compile(r"\..+\.tmp|\.tmp[A-Za-z0-9]{6}|\..+\.tmp-\d+-[0-9a-f]{8}")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file a killed writer can leave behind."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (not recursive); returns how many."""
    removed = 0
    for leftover in Path(folder).iterdir():
        if not is_temporary(leftover.name):
            continue
        if leftover.is_dir():  # atomic_path's folder: its writer may still be at work
            if writer_ended(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
                removed += 1
            continue
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed


def file_checksum(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=json_default))


def json_default(obj):
    if isinstance(obj, (np.integer, np.floating, np.bool_)):  # a numpy bool read "cannot write bool as JSON"
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__module__}.{type(obj).__name__} as JSON")


def read_json(path: str | os.PathLike, fix: str | None = None) -> dict:
    """A JSON object written by :func:`write_json`; StoreError if missing, damaged or not an object, saying ``fix``
    where the caller does not (what writes it again: a truncated run.json said "not valid JSON" and nothing more)."""
    path = user_path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    try:
        obj = json.loads(path.read_bytes())
    except OSError as err:  # a folder of that name, no permission, a failing disk
        raise StoreError(f"{path} cannot be read ({err.strerror or err}); check that it is a file this user may read") from err
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise StoreError(f"{path} is not valid JSON (truncated or not written by this package: {err})"
                         + (f"; {fix}" if fix else "")) from err
    if not isinstance(obj, dict):
        raise StoreError(f"{path} holds a JSON {type(obj).__name__}, not the object this package writes; "
                         f"{fix or 're-create it'}")
    return obj


#: The header entry of a file of :func:`write_arrays` that holds its arrays' checksum.
CHECKSUM = "arrays_sha256"


def write_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], header: dict) -> None:
    """One safetensors file of numpy arrays, with ``header`` (JSON) and the arrays' checksum as its metadata."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    # in our own header, not a metadata key of its own: safetensors writes its metadata in a hash map's
    # order, which changes from process to process, and a resumed store would not be the same bytes
    header = {**header, CHECKSUM: arrays_checksum(arrays)}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"header": json.dumps(header, default=json_default)})


def check_replaceable(path: str | os.PathLike, what: str = "file") -> None:
    """Refuse to write over a file that is not one of :func:`write_arrays` (a decomposition, coefficients,
    a checkpoint): save("notes.txt") replaced the user's text without a word."""
    path = user_path(path)
    if not path.exists() or path.is_dir():
        return  # nothing to lose here; a folder is the writer's own error
    try:
        read_header(path)
    except StoreError:
        raise StoreError(f"{path} exists and is not a {what} written by this package; choose a new file, or delete "
                         "it first") from None


def read_arrays(path: str | os.PathLike, expected_format: FileFormat | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and header written by :func:`write_arrays`, checked for format and version, and
    against the checksum written with them: a changed byte of a decomposition (a W of 0.027 read
    0.107) or of a fit checkpoint (a resumed fit that was not the interrupted one's) was read as is."""
    with _reading_safetensors(path) as path:
        arrays = load_file(str(path))
    header = read_header(path, expected_format, checksum=True)
    written = header.pop(CHECKSUM, None)
    if written is not None and written != arrays_checksum(arrays):  # files from before the checksum: none to check
        raise StoreError(f"{path} is damaged: its arrays differ from those written (their checksum does not match); "
                         "make it again with the command that wrote it (in a run folder, the run's own command; a fit "
                         "checkpoint: delete it, and the fit starts afresh)")
    return arrays, header


def arrays_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def read_header(path: str | os.PathLike, expected_format: FileFormat | None = None, *, checksum: bool = False) -> dict:
    """Only the JSON header of a file written by :func:`write_arrays` (cheap: no array is read);
    with ``checksum``, the arrays' checksum written in it too (under :data:`CHECKSUM`)."""
    with _reading_safetensors(path) as path, safe_open(str(path), framework="np") as f:
        metadata = f.metadata() or {}
    header = _parse_header(metadata.get("header", "{}"), path)
    if expected_format is not None:
        check_format(header, expected_format, path)
    if not checksum:
        header.pop(CHECKSUM, None)
    return header


@contextlib.contextmanager
def _reading_safetensors(path: str | os.PathLike):
    """Turns whatever safetensors raises on a missing or damaged file into a StoreError that names it."""
    path = user_path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist")
    if path.is_dir():
        # a run folder for its decomposition (transform RUN STORE), as fit RUN is pointed to RUN/pefs
        raise StoreError(_folder_given_for_a_file(path))
    try:
        yield path
    except Exception as err:  # safetensors raises several types for damaged files; all mean the same here
        raise StoreError(
            f"{path} cannot be read as a safetensors file (truncated, or not written by this package): {err}"
        ) from err
    except BaseException as err:  # a Rust panic inside safetensors (pyo3's PanicException) on hostile bytes
        if type(err).__name__ != "PanicException":
            raise
        raise StoreError(f"{path} is damaged: safetensors could not parse it ({err})") from err


def _folder_given_for_a_file(path: Path) -> str:
    """What to pass instead of the folder ``path`` given for a file (a decomposition, as transform and load read):
    a PEF store was told to 'give the .safetensors file inside it', which is one of its chunks."""
    if not (path / MANIFEST).is_file():
        return f"{path} is a folder, not a file: " + (run_part(path, DECOMPOSITION)
                                                      or "give the .safetensors file inside it that you mean")
    run = enclosing_run(path)
    fitted = run / DECOMPOSITION if run is not None else None
    fix = (f"pass the decomposition fitted to it, {fitted}" if fitted is not None and fitted.is_file() else
           f"fit one with python -m workbench fit {path} --out FILE.safetensors (LrmNpeff(...).fit(load_pefs(store))"
           ".save(FILE) in Python) and pass that FILE")
    return (f"{path} is a PEF store (the folder of PEFs that python -m workbench pefs and write_pefs write), not a "
            f"decomposition file: {fix}; the store goes after it (transform DECOMPOSITION STORE --out W.safetensors)")


def _parse_header(text: str, path) -> dict:
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise StoreError(f"{path} has a damaged header: {err}") from err
    if not isinstance(header, dict):
        raise StoreError(f"{path} has a damaged header: a JSON {type(header).__name__}, not an object")
    return header


def check_format(header: dict, expected: FileFormat, path) -> None:
    """Refuse (StoreError) a header of another format, or of a version this package does not read."""
    found = header.get("format") if isinstance(header, dict) else None
    if found != expected.name:
        known = FORMATS.get(found) if isinstance(found, str) else None
        raise StoreError(f"{path} holds {found or 'an unknown format'!s}, not {expected.name}"
                         + (f": it is {known.what}, read with {known.read_with}" if known and known.read_with else ""))
    version = header.get("format_version")
    if version not in expected.readable:
        if not isinstance(version, (int, float)) or isinstance(version, bool):  # "1" read 'version 1 ... reads version 1'
            raise StoreError(f"{path} is damaged: its format_version is {version!r}, not a version number (a file "
                             "edited by hand?); re-create it with the command that wrote it")
        versions = " or ".join(str(v) for v in expected.readable)
        raise StoreError(
            f"{path} has format version {version}; this package (version {__version__}) reads version "
            f"{versions}. Re-create it with this version of the package."
        )


def producer() -> dict:
    """What wrote a file: this package and torch, by version."""
    import torch  # the versions of what computed it; a file written without torch loaded still names it

    return {"package": "npeff-workbench", "package_version": __version__, "torch": torch.__version__}



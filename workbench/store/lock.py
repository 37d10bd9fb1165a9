"""One writer per folder: a second process writing into a folder another one is writing is
refused at once, instead of both finishing with a folder that mixes their files.

The lock is ``fcntl.flock`` on a ``.lock`` file in the folder: the operating system drops it
when its process ends, however it ends, so a killed run never leaves a folder locked. Where
``fcntl`` does not exist (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import os

from ..core.environment import environment_variable
from ..core.arguments import user_path
from .files import StoreError, check_folder, writing

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK = ".lock"
#: "pid:folder" of a lock a process holds for the processes it starts (a notebook run, for its kernel's pipeline)
HELD_FOR_CHILDREN_ENV = "NPEFF_WORKBENCH_LOCK_HELD_BY"


class FolderBusyError(StoreError):
    """Another process is writing into this folder."""


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, what: str):
    """Hold ``folder``'s lock while the block runs; FolderBusyError when another process holds it, and
    StoreError when ``folder`` is a file, lies under one or is a broken link (not the file system's errno)."""
    folder = check_folder(folder, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # the file system's errno named neither the folder's purpose nor a fix
        raise StoreError(f"cannot make the folder {folder} for {what} ({err.strerror}); choose a folder this user may "
                         "write") from None
    if fcntl is None:
        yield
        return
    with writing(folder / LOCK):  # a full disk or a read-only folder: named, with the fix (a bare errno before)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with writing(folder / LOCK):
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            if os.environ.get(HELD_FOR_CHILDREN_ENV) != _hand_over(holder, folder):  # not held for this process
                raise FolderBusyError(
                    f"another process (pid {holder}) is writing {what} into {folder}: two runs in one folder would "
                    "mix their files. Wait for it to end, or choose another folder") from None
        yield
    finally:
        os.close(fd)  # releases the lock, where this process took it


def _hand_over(holder, folder: str | os.PathLike) -> str:
    """The value of HELD_FOR_CHILDREN_ENV for a lock that process ``holder`` holds on ``folder``."""
    return f"{holder}:{user_path(folder).resolve()}"


def held_by_a_notebook_run(folder: str | os.PathLike) -> bool:
    """Whether a notebook run holds ``folder``'s lock for this process (its kernel, or itself)."""
    held = os.environ.get(HELD_FOR_CHILDREN_ENV, "")
    return held.partition(":")[2] == str(user_path(folder).resolve())


@contextlib.contextmanager
def exclusive_with_children(folder: str | os.PathLike, what: str):
    """:func:`exclusive`, shared with the processes this one starts while the block runs (a notebook run's
    kernel, whose pipeline writes into the folder): a notebook run held no lock of its own, so a demo started
    into its folder mid-run was not refused, and both left a record that contradicted the files."""
    with exclusive(folder, what), environment_variable(HELD_FOR_CHILDREN_ENV, _hand_over(os.getpid(), folder)):
        yield

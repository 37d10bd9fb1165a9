"""One writer per folder: a second process writing into a folder another one is writing is
refused at once, instead of both finishing with a folder that mixes their files.

The lock is ``fcntl.flock`` on a ``.lock`` file in the folder: the operating system drops it
when its process ends, however it ends, so a killed run never leaves a folder locked. Where
``fcntl`` does not exist (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import os

from ..core.arguments import user_path
from .files import StoreError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK = ".lock"


class FolderBusyError(StoreError):
    """Another process is writing into this folder."""


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, what: str):
    """Hold ``folder``'s lock while the block runs; FolderBusyError when another process holds it."""
    folder = user_path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise FolderBusyError(
                f"another process (pid {holder}) is writing {what} into {folder}: two runs in one folder would mix "
                "their files. Wait for it to end, or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # releases the lock

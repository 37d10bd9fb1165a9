"""Folders written under a temporary name beside their final one and renamed into place when
whole (a trained model, a report). The temporary name carries the writer's process id, so
the folders a killed writer left (``kill -9`` runs no clean-up) are told from those of a
writer still at work, and removed by the next one.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from pathlib import Path


def staging_path(final: Path, tag: str = "tmp") -> Path:
    """A hidden sibling of ``final`` for this process to write: ``.NAME.TAG-PID-RANDOM``."""
    return final.with_name(f".{final.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def dead_staging(final: Path, tag: str = "tmp") -> list[Path]:
    """The siblings :func:`staging_path` made for ``final`` whose process has ended, oldest first."""
    dead = [path for path in final.parent.glob(f".{glob.escape(final.name)}.{tag}-*-*") if writer_ended(path, tag)]
    return sorted(dead, key=lambda p: p.stat().st_mtime)


def writer_ended(path: Path, tag: str = "tmp") -> bool:
    """Whether ``path``, a name :func:`staging_path` made, belongs to a process that has ended."""
    pid = path.name.rsplit(f".{tag}-", 1)[-1].split("-")[0]
    return pid.isdigit() and not _alive(int(pid))


def remove_dead_staging(final: Path, tag: str = "tmp") -> int:
    """Delete the staging folders (or files) of ``final`` that killed writers left; returns how many."""
    dead = dead_staging(final, tag)
    for path in dead:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def process_umask() -> int:
    """This process's umask, read without changing it (os.umask sets it to read it, which
    races with the threads that write chunks)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no /proc (macOS): read it the only other way, and put it back
    os.umask(mask)
    return mask


def plain_modes(folder: str | os.PathLike) -> None:
    """Give the weights that ``save_pretrained`` wrote into ``folder`` the mode a plain ``open()`` would.

    safetensors writes a temporary file (0600 whatever the umask) and renames it: a model saved
    so, and every run folder it was copied into, was unreadable to the group and to other users
    (a run shared with them opened, and its model then failed as "No such file or directory").
    Only .safetensors files at exactly 0600 are changed: that is safetensors' mark, not a choice."""
    mode = 0o666 & ~process_umask()
    for path in Path(folder).rglob("*.safetensors"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 == 0o600 and mode != 0o600:
            os.chmod(path, mode)

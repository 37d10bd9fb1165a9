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

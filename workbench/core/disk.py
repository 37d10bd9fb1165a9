"""A file that cannot be written (a full disk, a folder that may not be written) named with the fix.

The operating system's '[Errno 28] No space left on device' names neither the file nor what
to do; every writer of the package (the store, the reports, the exports) says it the same way
through :func:`naming_disk_errors`, each with what its own reader keeps.
"""

from __future__ import annotations

import contextlib
import errno
import os

#: What the file system says when a file cannot be written: a full disk or quota, a file too large, a folder that may
#: not be written, a failing disk
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


@contextlib.contextmanager
def naming_disk_errors(path: str | os.PathLike, kept: str, *, raising: type[Exception] = OSError,
                       doing: str = "write", choose: str = "path", errnos: frozenset[int] | None = DISK_ERRORS,
                       also: tuple[type[Exception], ...] = (), renames: bool = True):
    """Raise a disk error met in the block as ``raising`` with the message 'could not DOING PATH: REASON. Free space
    on that disk, make the folder writable, or choose another CHOOSE, then call again: KEPT'.

    A disk error is an OSError whose errno is in ``errnos`` (None: any OSError, such as a file where a folder should
    be) or an instance of ``also`` (an error of a library that carries no errno); any other error passes as it is.
    ``raising`` an OSError keeps the errno. An error an inner block already named is named again as ``path`` with
    its first reason (the folder asked for, not the hidden file written in it), unless ``renames`` is False and it
    is already a ``raising`` (the inner file is the one to name, e.g. the chunk a run resumes after)."""
    try:
        yield
    except Exception as error:
        original = getattr(error, "disk_error", None)
        if original is None and (isinstance(error, also) or isinstance(error, OSError) and (
                errnos is None or error.errno in errnos)):
            original = error
        elif original is None or (not renames and isinstance(error, raising)):
            raise
        raise _named(original, path, kept, raising, doing, choose) from error


def _named(original: BaseException, path, kept: str, raising: type[Exception], doing: str, choose: str) -> Exception:
    reason = getattr(original, "strerror", None) or str(original)
    message = (f"could not {doing} {path}: {reason}. Free space on that disk, make the folder writable, or choose "
               f"another {choose}, then call again: {kept}")
    code = getattr(original, "errno", None)
    named = raising(code, message) if issubclass(raising, OSError) and code is not None else raising(message)
    named.disk_error = original  # for an outer block to name it again, with the reason the system gave
    return named

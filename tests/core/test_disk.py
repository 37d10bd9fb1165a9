"""One way for every writer to name a file the disk cannot hold (workbench.core.disk)."""

import errno
import os

import pytest

from workbench.core.disk import naming_disk_errors


class WriteError(ValueError):
    pass


def full(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_disk_error_names_the_path_the_fix_and_what_is_kept_and_keeps_its_errno():
    with pytest.raises(OSError, match=r"could not write out/page\.html: No space left on device\. Free space on that "
                                      r"disk, make the folder writable, or choose another path, then call again: "
                                      r"the old page is kept$") as raised:
        with naming_disk_errors("out/page.html", "the old page is kept"):
            full()
    assert raised.value.errno == errno.ENOSPC


def test_other_errors_pass_as_they_are_unless_every_os_error_is_asked_for():
    with pytest.raises(FileNotFoundError, match=r"^\[Errno 2\] gone$"):
        with naming_disk_errors("out", "kept"):
            raise FileNotFoundError(errno.ENOENT, "gone")
    with pytest.raises(KeyError):
        with naming_disk_errors("out", "kept", errnos=None):
            raise KeyError("not the disk's")
    with pytest.raises(WriteError, match="could not write out: gone"):
        with naming_disk_errors("out", "kept", raising=WriteError, errnos=None):
            raise FileNotFoundError(errno.ENOENT, "gone")


def test_an_inner_error_is_named_again_as_the_outer_path_unless_the_inner_file_is_the_one_to_name():
    with pytest.raises(WriteError, match=r"^could not export into exp: No space left on device\. .*another folder, "
                                         r"then call again: the earlier export is whole$") as raised:
        with naming_disk_errors("exp", "the earlier export is whole", raising=WriteError, doing="export into",
                                choose="folder"):
            with naming_disk_errors("exp/.tmp/a.csv", "chunks resume", raising=WriteError, errnos=None):
                full()
    assert "tmp" not in str(raised.value) and "resume" not in str(raised.value)
    with pytest.raises(WriteError, match=r"^could not write run/chunks/2\.safetensors: No space"):
        with naming_disk_errors("run", "chunks resume", raising=WriteError, errnos=None, renames=False):
            with naming_disk_errors("run/chunks/2.safetensors", "chunks resume", raising=WriteError, errnos=None,
                                    renames=False):
                full()

"""Writes the golden files of tests/store/test_golden.py: ``python -m tests.store.golden.make_golden FOLDER``.

The committed files were written by commit f41fb30, the flat layout before the restructure
of issue 16 (``PYTHONPATH=<a checkout of f41fb30>``; the imports fall back to its module
paths), so the tests check that files of that version still load and that this version
writes the same. Small on purpose: the tiny BERT of tests/conftest.py, six examples, the
classifier's 51 parameters, every non-zero kept.
"""

import sys
from pathlib import Path

import torch

from tests.conftest import tiny_bert, tiny_bert_inputs

try:  # the layout of issue 16
    from workbench import DNpeff, LrmNpeff, write_pefs
except ImportError:  # f41fb30
    from workbench.npeff import DNpeff, LrmNpeff
    from workbench.store import write_pefs

N_EXAMPLES = 6
PEF_ARGS = dict(n_values=None, include=r"^classifier\.", batch_size=4, progress=False)
LRM_SETTINGS = dict(n_components=2, n_iters_g_only=3, n_iters_joint=3, log_every=2, solver="primal", progress=False)
D_SETTINGS = dict(n_components=2, n_iters=6, log_every=2, progress=False)


def inputs():
    return tiny_bert_inputs(n=N_EXAMPLES), torch.arange(N_EXAMPLES) % 3


def write(folder: Path) -> None:
    torch.set_num_threads(1)
    x, y = inputs()
    lrm = write_pefs(folder / "lrm-store", tiny_bert(3), x, y, **PEF_ARGS).load()
    d = write_pefs(folder / "d-store", tiny_bert(3), x, y, kind="d", **PEF_ARGS).load()
    LrmNpeff(**LRM_SETTINGS).fit(lrm, checkpoint=folder / "lrm-checkpoint.safetensors").save(folder / "lrm.safetensors")
    DNpeff(**D_SETTINGS).fit(d, checkpoint=folder / "d-checkpoint.safetensors").save(folder / "d.safetensors")


if __name__ == "__main__":
    write(Path(sys.argv[1]))

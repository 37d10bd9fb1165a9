"""The registry of kinds and the table of file formats: one place each, and every user reads them."""

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from workbench.core.kinds import KINDS, kind
from workbench.core.pefs import DPefs, LrmPefs
from workbench.npeff import ESTIMATORS
from workbench.store.formats import FORMATS

ROOT = Path(__file__).resolve().parents[2]


def test_every_kind_has_its_record_and_its_estimator():
    assert set(KINDS) == {"lrm", "d"} == set(ESTIMATORS)
    for name, k in KINDS.items():
        assert k.pefs_type.kind == name and ESTIMATORS[name].kind == name
    assert kind("lrm").pefs_type is LrmPefs and kind("d").pefs_type is DPefs
    assert (kind("lrm").rows_per_example(3), kind("d").rows_per_example(3)) == (3, 1)
    with pytest.raises(ValueError, match="kind must be 'lrm' or 'd', got 'x'"):
        kind("x")


def test_records_give_their_matrix_whatever_the_kind():
    lrm = LrmPefs.from_dense(np.ones((2, 3, 4)))
    d = DPefs.from_dense(np.ones((2, 4)))
    assert lrm.matrix is lrm.X and d.matrix is d.F
    assert lrm.slot_classes.shape == (2, 3) and d.slot_classes.shape == (2, 0)


def test_no_module_compares_kind_names_outside_the_registry():
    """Dispatch on the kind reads workbench.core.kinds; how an LRM-PEF and a D-PEF are computed
    from the gradients (workbench.fisher.sparsify) is the method, not dispatch."""
    allowed = {"workbench/core/kinds.py", "workbench/core/pefs.py"}
    computing = ("workbench/fisher/sparsify.py",)
    found = []
    for path in sorted((ROOT / "workbench").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name in allowed or name.startswith(computing):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"""==\s*["'](lrm|d)["']|["'](lrm|d)["']\s*(==|if)|\(["']lrm["'],\s*["']d["']\)""", line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_every_format_has_one_name_and_the_versions_it_reads():
    assert len(FORMATS) == len({f.name for f in FORMATS.values()})
    for f in FORMATS.values():
        assert f.version in f.readable and f.header() == {"format": f.name, "format_version": f.version}
    assert FORMATS["npeff-workbench/lrm-npeff"].readable == (1, 2)


def test_format_names_are_written_in_one_place():
    found = []
    for path in sorted((ROOT / "workbench").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name != "workbench/store/formats.py" and re.search(r'"npeff-workbench/', path.read_text()):
            found.append(name)
    assert not found, f"format names outside workbench/store/formats.py: {found}"


@pytest.mark.parametrize("call, error, message", [
    (lambda: LrmPefs.from_dense(np.ones((2, 3, 4)), n_values=0), ValueError, "n_values must be an integer of at least 1"),
    (lambda: LrmPefs.from_dense(np.ones((2, 3, 4)), n_values=2.5), TypeError, "n_values must be an integer"),
    (lambda: LrmPefs.from_dense(np.full((2, 3, 4), "x")), TypeError, "A must hold real numbers"),
    (lambda: LrmPefs.from_dense(np.ones((2, 3, 4)) * 1j), TypeError, "A must hold real numbers"),
    (lambda: DPefs.from_dense(scipy.sparse.csr_matrix(np.ones((2, 4)))), TypeError, r"pass f\.toarray\(\)"),
    (lambda: DPefs.from_dense(np.ones((2, 4)), layout="x"), TypeError, "layout must be a ParameterLayout"),
    (lambda: DPefs.from_dense(np.ones((2, 4)), info=["x"]), TypeError, "info must be a dict"),
])
def test_from_dense_names_the_argument_it_cannot_take(call, error, message):
    with pytest.raises(error, match=message):
        call()

"""``import workbench``, ``import widgets`` and ``import workbench.report`` stay light: no torch.

The package root exports its names lazily (PEP 562), and opening a run folder, its table
and its HTML needs none of the model-running layers. Checked in a fresh interpreter,
since this one has imported everything already.
"""

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "numba", "sklearn", "workbench.fisher", "workbench.npeff")


def _imported_after(code: str) -> list[str]:
    script = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_package_widgets_and_report_import_without_torch():
    assert _imported_after("import workbench, workbench.report") == []
    assert _imported_after("import widgets") == []
    assert _imported_after("from workbench.app import RunExplorer, Run; from workbench import analysis; analysis.component_table") == []


def test_the_root_exports_load_on_first_use():
    code = ("import workbench\nassert 'torch' not in sys.modules\n"
            "from workbench import compute_pefs, write_pefs, LrmNpeff, DNpeff, LrmPefs, DPefs, RunExplorer\n"
            "assert compute_pefs.__module__ == 'workbench.runner.compute' and LrmNpeff.__module__ == 'workbench.npeff.lrm'\n"
            "assert set(workbench.__all__) <= set(dir(workbench))")
    assert "torch" in _imported_after(code)

"""Every Python block of README.md runs as written, on the embedded default, so the README cannot rot.

The blocks run in order in one namespace (as in a notebook), in a fresh folder holding
``runs/demo``: a copy of the main job's run folder, which the README's later blocks open.
"""

import re
import runpy
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_readme_has_python_blocks_and_no_placeholders():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3
    for block in blocks:
        assert "..." not in block and "…" not in block, f"a placeholder in:\n{block}"


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(embedded_run, tmp_path, monkeypatch):
    shutil.copytree(embedded_run.path, tmp_path / "runs" / "demo")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for number, block in enumerate(python_blocks(README.read_text()), start=1):
        script = tmp_path / f"readme_block_{number}.py"  # tracebacks name the block and its line
        script.write_text(block)
        try:
            namespace = runpy.run_path(str(script), init_globals=namespace)
        except Exception as err:
            raise AssertionError(f"README.md's Python block {number} fails: {err!r}\n{block}") from err
    assert (tmp_path / "runs" / "mine" / "pefs" / "manifest.json").exists()
    assert namespace["new_W"].shape == (40, 16)
    assert (tmp_path / "runs" / "demo" / "report" / "index.html").exists()

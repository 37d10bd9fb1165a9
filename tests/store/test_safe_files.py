"""No pickle anywhere: a repository-wide scan for unsafe ways of reading or writing files."""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()

# pattern, why it is unsafe
UNSAFE = [
    (r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib|shelve|marshal)\b", "a pickle-based module (runs code on load)"),
    (r"\bpickle\.(loads?|dumps?|Unpickler)\b", "pickle"),
    (r"allow_pickle\s*=\s*True", "np.load with pickles enabled"),
    (r"\bread_pickle\s*\(|\.to_pickle\s*\(", "pandas pickle files"),
    (r"\btorch\.load\s*\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True (unpickles arbitrary objects)"),
    (r"\bnp\.load\s*\((?![^)]*allow_pickle\s*=\s*False)", "np.load without allow_pickle=False"),
    (r"\bescape\s*=\s*False", "HTML rendered without escaping"),
    (r"(?<![\w.])(eval|exec)\s*\(", "eval/exec of text"),
    (r"yaml\.load\s*\((?![^)]*Loader\s*=\s*yaml\.SafeLoader)", "yaml.load without SafeLoader"),
]


def _sources():
    for folder in ("workbench", "widgets", "tests", "notebooks", "scripts", "benchmarks", "docs"):
        base = ROOT / folder
        if base.exists():
            yield from (p for p in base.rglob("*") if p.suffix in (".py", ".ipynb") and p.resolve() != THIS)


def test_no_unsafe_file_handling_anywhere():
    found = []
    for path in _sources():
        text = path.read_text(errors="replace")
        for pattern, why in UNSAFE:
            for match in re.finditer(pattern, text, flags=re.MULTILINE):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {why}: {match.group(0).strip()!r}")
    assert not found, "unsafe patterns:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet, unsafe", [
    ("import pickle", True),
    ("from joblib import dump", True),
    ("torch.load(path)", True),
    ("torch.load(path, weights_only=True)", False),
    ("np.load(path)", True),
    ("np.load(path, allow_pickle=False)", False),
    ("np.load(path, allow_pickle=True)", True),
    ("frame.to_html(escape=False)", True),
    ("frame.to_html(escape=True)", False),
    ("df.to_pickle('x')", True),
    ("model.eval()", False),
    ("eval(text)", True),
])
def test_scanner_catches_what_it_should(snippet, unsafe):
    assert any(re.search(p, snippet, flags=re.MULTILINE) for p, _ in UNSAFE) == unsafe


def test_a_write_removes_what_killed_writes_of_the_same_file_left(tmp_path):
    from workbench.store.files import write_arrays

    target = tmp_path / "fit.safetensors"
    leftover = tmp_path / ".fit.safetensors.k1ll3d.tmp"  # a fit killed while saving, a day before
    leftover.write_bytes(b"\0" * 1000)
    other = tmp_path / ".other.safetensors.k1ll3d.tmp"  # another file's: not this write's business
    other.write_bytes(b"\0")
    write_arrays(target, {"W": np.zeros((2, 2), dtype=np.float32)}, {"format": "test"})
    assert target.exists() and not leftover.exists() and other.exists()


KILLED_WRITE = """
import os, sys
import numpy as np
from safetensors.numpy import save_file
from workbench.store.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    save_file({"W": np.zeros((64, 64), dtype=np.float32)}, str(tmp))  # as write_arrays does
    os.kill(os.getpid(), 9)  # killed before the rename
"""


def test_a_killed_write_leaves_one_folder_that_the_next_write_removes(tmp_path):
    """safetensors writes a temporary file of its own (".tmpXXXXXX") beside the path it is given: a fit
    killed while saving left one the size of the file, which nothing removed. Every temporary of a
    write is now in a folder named with the writer's process id, removed by the next write."""
    import subprocess
    import sys

    from workbench.store.files import remove_temporaries, write_arrays

    target = tmp_path / "fit.safetensors"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(target)], cwd=Path(__file__).parents[2])
    assert done.returncode == -9
    (left,) = tmp_path.iterdir()
    assert left.is_dir() and left.name.startswith(".fit.safetensors.tmp-")  # everything it wrote is in there
    write_arrays(target, {"W": np.zeros((2, 2), dtype=np.float32)}, {"format": "test"})
    assert [p.name for p in tmp_path.iterdir()] == ["fit.safetensors"]
    # a PEF store's resume removes such folders too, once their writer has ended
    subprocess.run([sys.executable, "-c", KILLED_WRITE, str(tmp_path / "chunk.safetensors")],
                   cwd=Path(__file__).parents[2])
    assert remove_temporaries(tmp_path) == 1 and [p.name for p in tmp_path.iterdir()] == ["fit.safetensors"]

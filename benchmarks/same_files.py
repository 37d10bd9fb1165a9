"""Proof that a change left the files unchanged: write every kind of file, then compare two runs.

    PYTHONPATH=/tmp/before python benchmarks/same_files.py write /tmp/files-before   # a checkout of the old code
    python benchmarks/same_files.py write /tmp/files-after                         # this checkout
    python benchmarks/same_files.py compare /tmp/files-before /tmp/files-after

``write`` computes, on the embedded default model (200 examples, n_values 8192, batches of
32): an LRM and a D PEF store (``write_pefs``), the same LRM PEFs in memory saved as a store
(``compute_pefs`` + ``save_pefs``), a one-process sharded store (``write_pefs_sharded``),
LRM decompositions by both solvers and a D decomposition (``save``), their fit checkpoints,
the coefficients of ``transform``, the components exported as safetensors, and the LRM PEFs
and decomposition in the original implementation's HDF5 layout. ``compare`` checks every
file byte for byte; where the bytes differ it compares the arrays and headers exactly and
prints what differs, so a legitimate difference (a renamed header key) is visible as such.

It runs against the layout of issue 16 or, through the fallback imports, against the flat
layout before it (commit f41fb30), so one script writes both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NPEFF_WORKBENCH_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "models"))

N_EXAMPLES, N_VALUES, BATCH_SIZE = 200, 8192, 32


def _api():
    """The functions used, from the layout of issue 16, else from the flat layout before it."""
    try:
        from workbench import DNpeff, LrmNpeff, compute_pefs, save_pefs, write_pefs
        from workbench.analysis.export import export_components_safetensors
        from workbench.distributed import write_pefs_sharded
        from workbench.models.embedded import default_model, load_default_model, make_examples, tokenize
        from workbench.npeff import interop
    except ImportError:
        from workbench import compute_pefs
        from workbench import interop
        from workbench.distributed import write_pefs_sharded
        from workbench.embedded import default_model, load_default_model, make_examples, tokenize
        from workbench.export import export_components_safetensors
        from workbench.npeff import DNpeff, LrmNpeff
        from workbench.store import save_pefs, write_pefs
    return locals()


def write(out: Path) -> None:
    from safetensors.numpy import save_file

    api = _api()
    out.mkdir(parents=True, exist_ok=False)
    model, tokenizer = api["load_default_model"](api["default_model"](progress=False))
    examples = api["make_examples"](N_EXAMPLES, seed=2000)
    inputs = api["tokenize"](tokenizer, list(examples["text"]))
    labels = examples["label"].to_numpy()
    common = dict(n_values=N_VALUES, batch_size=BATCH_SIZE, progress=False)
    lrm = api["write_pefs"](out / "pefs-lrm", model, inputs, labels, **common).load()
    d = api["write_pefs"](out / "pefs-d", model, inputs, labels, kind="d", **common).load()
    api["save_pefs"](api["compute_pefs"](model, inputs, labels, **common), out / "pefs-lrm-in-memory")
    api["write_pefs_sharded"](out / "pefs-lrm-sharded", model, inputs, labels, **common)
    fits = {
        "lrm-primal": (api["LrmNpeff"](8, n_iters_g_only=20, n_iters_joint=40, solver="primal", progress=False), lrm),
        "lrm-auto": (api["LrmNpeff"](8, n_iters_g_only=20, n_iters_joint=40, progress=False), lrm),
        "d": (api["DNpeff"](8, n_iters=60, progress=False), d),
    }
    for name, (estimator, pefs) in fits.items():
        estimator.fit(pefs, checkpoint=out / f"checkpoint-{name}.safetensors", checkpoint_every=25)
        estimator.save(out / f"decomposition-{name}.safetensors")
        save_file({"W": estimator.transform(pefs[:50])}, str(out / f"transform-{name}.safetensors"))
        api["export_components_safetensors"](estimator, out / f"components-{name}.safetensors")
    api["interop"].write_lrm_pefs_h5(lrm, out / "pefs-lrm.h5")
    api["interop"].write_lrm_decomposition_h5(fits["lrm-auto"][0], out / "decomposition-lrm.h5")
    print(f"wrote {sum(1 for p in out.rglob('*') if p.is_file())} files to {out}")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _arrays_and_header(path: Path) -> tuple[dict, dict]:
    """The arrays and JSON metadata of a safetensors, JSON or HDF5 file."""
    if path.suffix == ".json":
        return {}, json.loads(path.read_text())
    if path.suffix == ".h5":
        import h5py

        arrays, attrs = {}, {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
            f.visititems(lambda name, obj: attrs.update({f"{name}@{k}": v for k, v in obj.attrs.items()}))
        return arrays, {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in attrs.items()}
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata() or {}
    return load_file(str(path)), {k: json.loads(v) if v[:1] in "{[" else v for k, v in metadata.items()}


def _differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}.{k}")]
    return [] if a == b else [f"{where}: {a!r} -> {b!r}"]


def compare(before: Path, after: Path) -> int:
    import numpy as np

    names = _files(before)
    if names != _files(after):
        print("the folders hold different files:", sorted(set(names) ^ set(_files(after))))
        return 1
    same, differ = 0, 0
    for name in names:
        a, b = (before / name).read_bytes(), (after / name).read_bytes()
        if a == b:
            same += 1
            continue
        differ += 1
        arrays_a, header_a = _arrays_and_header(before / name)
        arrays_b, header_b = _arrays_and_header(after / name)
        unequal = [k for k in sorted(set(arrays_a) | set(arrays_b))
                   if k not in arrays_a or k not in arrays_b or arrays_a[k].dtype != arrays_b[k].dtype
                   or not np.array_equal(arrays_a[k], arrays_b[k])]
        print(f"DIFFERS {name} (sha256 {hashlib.sha256(a).hexdigest()[:12]} -> {hashlib.sha256(b).hexdigest()[:12]}): "
              f"{len(arrays_a)} arrays, {'all equal' if not unequal else f'unequal: {unequal}'}; header:")
        for line in _differences(header_a, header_b) or ["  (equal: the bytes differ in layout only)"]:
            print("   ", line)
    print(f"{same} of {len(names)} files byte-identical, {differ} differ")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)

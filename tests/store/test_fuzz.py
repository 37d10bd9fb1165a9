"""Property-based fuzzing (hypothesis) of the store readers and the decomposition's inputs.

The property everywhere: no crash other than the documented, clear errors. Store readers
either return data or raise StoreError; fitting either returns finite, non-negative
coefficients or raises one of the documented errors with its message.

Examples per test: 30 in the normal suite; ``NPEFF_FUZZ_EXAMPLES=2000`` for a longer run.
``pytest tests/store/test_fuzz.py --hypothesis-show-statistics`` prints how many were tried.
"""

import json
import os
import re
import shutil
import uuid
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from workbench.core.pefs import DPefs, LrmPefs
from workbench.npeff import DNpeff, LrmNpeff, NpeffDivergenceError
from workbench.npeff.planted import planted_lrm
from workbench.store import MANIFEST, PefStore, StoreError, load_pefs, read_arrays, read_header, read_json, save_pefs
from workbench.store.formats import FIT_CHECKPOINT

FUZZ = settings(
    max_examples=int(os.environ.get("NPEFF_FUZZ_EXAMPLES", 30)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize="NPEFF_FUZZ_EXAMPLES" not in os.environ,  # the normal suite sees the same examples every run
)

# what fitting may raise, by the start of its message: all name the problem and the fix
DOCUMENTED_FIT_ERRORS = [
    (ValueError, r"\d+ examples have NaN or infinite PEFs .*Check the model"),
    (ValueError, r"\d+ examples have all-zero PEFs .*Drop them"),
    (ValueError, r"n_components=\d+ is larger than the number of examples .*use at most"),
    (ValueError, r"n_components=\d+ is more than the data can tell apart: the PEFs keep \d+ parameters.*use n_components <="),
    (ValueError, r"no parameter is non-zero in at least min_nonzero_per_col.*lower min_nonzero_per_col"),
    (NpeffDivergenceError, r"(the G gradient is not finite|the loss is not finite|the D-NPEFF loss became|the fit diverged).*"
                           r"(check pefs|lower it)"),
]


def _documented(err: Exception) -> bool:
    return any(isinstance(err, kind) and re.search(pattern, str(err), re.S) for kind, pattern in DOCUMENTED_FIT_ERRORS)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _fresh(workdir):
    path = workdir / uuid.uuid4().hex
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def valid_store(workdir):
    path = workdir / "valid"
    save_pefs(planted_lrm(12, 20, 2, seed=0).pefs, path, examples_per_chunk=5)
    return path


@pytest.fixture(scope="module")
def valid_decomposition(workdir):
    path = workdir / "decomposition.safetensors"
    LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(planted_lrm(12, 20, 2).pefs).save(path)
    return path


# ---------------------------------------------------------------------------------------
# Store readers
# ---------------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=3000))
def test_fuzz_read_arrays_random_bytes(workdir, data):
    path = _fresh(workdir) / "x.safetensors"
    path.write_bytes(data)
    try:
        arrays, header = read_arrays(path)
    except StoreError:
        event("StoreError")
        return
    event("read")
    assert isinstance(arrays, dict) and isinstance(header, dict)


@FUZZ
@given(data=st.binary(max_size=500))
def test_fuzz_read_json_random_bytes(workdir, data):
    path = _fresh(workdir) / "x.json"
    path.write_bytes(data)
    try:
        assert isinstance(read_json(path), dict)
    except StoreError:
        pass


def _mutations():
    cut = st.tuples(st.just("truncate"), st.floats(0, 1))
    flip = st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=8))
    header = st.tuples(st.just("header"), st.binary(min_size=1, max_size=64))
    length = st.tuples(st.just("length"), st.integers(0, 2**64 - 1))
    return st.one_of(cut, flip, header, length)


def _mutate(data: bytes, mutation) -> bytes:
    kind, arg = mutation
    data = bytearray(data)
    if kind == "truncate":
        return bytes(data[: int(arg * len(data))])
    if kind == "flip":
        for where, mask in arg:
            data[min(int(where * len(data)), len(data) - 1)] ^= mask
        return bytes(data)
    if kind == "header":  # overwrite part of the JSON header (right after the 8-byte length)
        return bytes(data[:8] + arg + data[8 + len(arg) :])
    return arg.to_bytes(8, "little") + bytes(data[8:])  # a wrong header length


@FUZZ
@given(mutation=_mutations(), which=st.integers(0, 2))
def test_fuzz_damaged_chunk_file(workdir, valid_store, mutation, which):
    store = _fresh(workdir) / "pefs"
    shutil.copytree(valid_store, store)
    chunk = store / "chunks" / f"{which:06d}.safetensors"
    chunk.write_bytes(_mutate(chunk.read_bytes(), mutation))
    try:
        pefs = load_pefs(store)
    except StoreError:
        event("StoreError")
        return
    event("accepted")
    # a mutation the reader accepted left a consistent, finite PEF set
    assert pefs.n_examples == 12 and np.isfinite(pefs.X.data).all() and np.isfinite(pefs.frobenius_norms).all()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["format", "format_version", "kind", "info", "layout", "n_examples",
                                                "n_chunks", "fingerprints", "complete", "producer"]),
                               json_values | st.just("<delete>"), min_size=1, max_size=3),
       layout_change=st.none() | st.tuples(st.sampled_from(["names", "shapes"]), json_values))
def test_fuzz_damaged_manifest(workdir, valid_store, changes, layout_change):
    store = _fresh(workdir) / "pefs"
    shutil.copytree(valid_store, store)
    manifest = json.loads((store / MANIFEST).read_text())
    for key, value in changes.items():
        if value == "<delete>":
            manifest.pop(key, None)
        else:
            manifest[key] = value
    if layout_change is not None and isinstance(manifest.get("layout"), dict):
        manifest["layout"][layout_change[0]] = layout_change[1]
    (store / MANIFEST).write_text(json.dumps(manifest))
    try:
        pefs = PefStore(store).load()
    except StoreError:
        event("StoreError")
        return
    event("accepted")
    assert pefs.n_examples == 12


_dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.uint8, np.float16])


@FUZZ
@given(
    arrays=st.dictionaries(
        st.sampled_from(["values", "indices", "row_offsets", "classes", "frobenius_norms", "labels", "logits"]),
        hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)),
        max_size=7,
    ),
    keep=st.sets(st.sampled_from(["values", "indices", "row_offsets", "classes", "frobenius_norms", "labels", "logits"])),
)
def test_fuzz_chunk_with_wrong_arrays(workdir, valid_store, arrays, keep):
    """Chunks holding arrays of wrong dtypes, shapes and values (others kept from a valid chunk)."""
    from safetensors.numpy import load_file


    store = _fresh(workdir) / "pefs"
    shutil.copytree(valid_store, store)
    chunk = store / "chunks" / "000001.safetensors"
    original = load_file(str(chunk))
    header = read_header(chunk)
    mixed = {k: v for k, v in original.items() if k in keep}
    mixed.update({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    assume(mixed)
    save_file(mixed, str(chunk), metadata={"header": json.dumps(header)})
    try:
        pefs = load_pefs(store)
    except StoreError:
        event("StoreError")
        return
    event("accepted")
    assert pefs.n_examples == 12 and np.isfinite(pefs.X.data).all()


@FUZZ
@given(
    changes=st.dictionaries(st.sampled_from(["params", "n_parameters", "n_slots", "layout", "pef_info", "format_version"]),
                            json_values, min_size=1, max_size=2),
    param_changes=st.dictionaries(st.sampled_from(["n_components", "seed", "tol", "learning_rate", "n_iters_joint", "device", "bogus"]),
                                  json_values, max_size=2),
    drop=st.sets(st.sampled_from(["W", "G", "kept_columns"]), max_size=1),
    W=st.none() | hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)),
)
def test_fuzz_damaged_decomposition_file(workdir, valid_decomposition, changes, param_changes, drop, W):
    from safetensors.numpy import load_file


    header = read_header(valid_decomposition)
    header.update(changes)
    if isinstance(header.get("params"), dict):
        header["params"] = dict(header["params"], **param_changes)
    arrays = {k: v for k, v in load_file(str(valid_decomposition)).items() if k not in drop}
    if W is not None:
        arrays["W"] = np.ascontiguousarray(W)
    path = _fresh(workdir) / "d.safetensors"
    save_file(arrays, str(path), metadata={"header": json.dumps(header)})
    try:
        loaded = LrmNpeff.load(path)
    except StoreError:
        event("StoreError")
        return
    event("accepted")
    assert loaded.W_.shape[1] == loaded.G_.shape[0] == loaded.n_components


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["step", "done", "scalars", "history", "settings", "estimator", "data"]),
                               json_values, min_size=1, max_size=2))
def test_fuzz_damaged_checkpoint(workdir, changes):
    pefs = planted_lrm(10, 12, 2, seed=1).pefs
    path = _fresh(workdir) / "fit.safetensors"
    LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(pefs, checkpoint=path, checkpoint_every=1)
    from safetensors.numpy import load_file


    header = dict(read_header(path, FIT_CHECKPOINT), **changes)
    save_file(load_file(str(path)), str(path), metadata={"header": json.dumps(header)})
    try:
        fit = LrmNpeff(2, n_iters_g_only=2, n_iters_joint=2, progress=False).fit(pefs, checkpoint=path)
    except StoreError:
        event("StoreError")
        return
    event("accepted")
    assert np.isfinite(fit.W_).all()


# ---------------------------------------------------------------------------------------
# The decomposition's inputs
# ---------------------------------------------------------------------------------------

_ordinary = st.floats(0.015625, 100, width=32) | st.floats(-100, -0.015625, width=32)
_extreme = st.one_of(  # ordinary values three times as often as extreme ones
    _ordinary,
    _ordinary,
    _ordinary,
    st.floats(-1e3, 1e3, width=32) | st.sampled_from([0.0, 1e-30, -1e-30, 1e-20, 1e20, -1e20, 3e38, np.nan, np.inf, -np.inf, 1e-45]),
)


@st.composite
def dense_lrm(draw):
    n, c, m = draw(st.integers(1, 7)), draw(st.integers(1, 3)), draw(st.integers(1, 10))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32]))
    values = draw(hnp.arrays(np.float64, (n, c, m), elements=_extreme))
    mask = draw(hnp.arrays(np.bool_, (n, c, m)))  # sparsity, including empty rows and examples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        A = np.where(mask, values, 0.0)
        if np.issubdtype(dtype, np.integer):
            A = np.nan_to_num(A, nan=0, posinf=1e6, neginf=-1e6).clip(-1e6, 1e6)
        return A.astype(dtype)


def _check_fit(make_estimator, pefs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = make_estimator().fit(pefs)
        except (ValueError, NpeffDivergenceError) as err:
            assert _documented(err), f"undocumented error: {type(err).__name__}: {err}"
            event(f"{type(err).__name__}: {' '.join(str(err).split()[2:5])}")
            return None
    event("fitted")
    assert np.isfinite(est.W_).all() and (est.W_ >= 0).all()
    assert np.isfinite(est.components_).all()
    for history in est.loss_history_.values():
        assert np.isfinite(history).all()
    return est


def _drop_zero_examples(pefs, drop: bool):
    """The fix the all-zero error names: keep the examples with non-zero PEFs (when some are)."""
    keep = pefs.frobenius_norms > 0
    return pefs[keep] if drop and keep.any() and not keep.all() else pefs


def _from_dense_or_refused(kind, dense, n_values, drop_zero):
    """The PEF set of ``dense``, or None where it holds NaN or infinite values, which ``from_dense``
    refuses with the documented error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return _drop_zero_examples(kind.from_dense(dense, n_values=n_values), drop_zero)
        except ValueError as err:
            assert not np.isfinite(np.asarray(dense, dtype=np.float32)).all() and "NaN or infinite" in str(err)
            event("refused: NaN or infinite values")
            return None


@FUZZ
@given(A=dense_lrm(), r=st.integers(1, 4), n_values=st.none() | st.integers(1, 12), min_nonzero=st.integers(1, 3),
       drop_zero=st.booleans())
def test_fuzz_lrm_fit_inputs(A, r, n_values, min_nonzero, drop_zero):
    pefs = _from_dense_or_refused(LrmPefs, A, n_values, drop_zero)
    if pefs is None:
        return
    est = _check_fit(lambda: LrmNpeff(r, n_iters_g_only=3, n_iters_joint=4, min_nonzero_per_col=min_nonzero,
                                      progress=False, n_iters_transform=5), pefs)
    if est is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            W = est.transform(pefs)
        assert W.shape == (pefs.n_examples, r) and np.isfinite(W).all() and (W >= 0).all()


@FUZZ
@given(A=dense_lrm(), r=st.integers(1, 4), n_values=st.none() | st.integers(1, 12), drop_zero=st.booleans())
def test_fuzz_d_fit_inputs(A, r, n_values, drop_zero):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        f = np.abs(A.astype(np.float64)).sum(axis=1)  # (n, m), non-negative like a D-PEF
    pefs = _from_dense_or_refused(DPefs, f, n_values, drop_zero)
    if pefs is None:
        return
    est = _check_fit(lambda: DNpeff(r, n_iters=6, progress=False, n_iters_transform=5), pefs)
    if est is not None:
        assert np.isfinite(est.transform(pefs)).all()


@FUZZ
@given(f=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), elements=_extreme))
def test_fuzz_d_pefs_from_dense_shapes(f):
    """Any shape or sign: a D-PEF set, or a ValueError that says what shape or sign is needed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            pefs = DPefs.from_dense(f)
        except ValueError as err:
            assert re.search(r"f must have shape \(n_examples, n_parameters\)|D-PEFs are non-negative|needs at least one example"
                             r"|holds NaN or infinite values; PEFs must be finite", str(err))
            return
    assert pefs.F.shape == f.shape
    _check_fit(lambda: DNpeff(1, n_iters=3, progress=False), pefs)

"""Everything on disk: files written atomically, their formats, PEF stores, fit checkpoints.

- :mod:`.files`: atomic writes, JSON and safetensors files with a header, :class:`StoreError`;
- :mod:`.formats`: the table of file formats and their versions;
- :mod:`.fingerprints`: hashes of models, data and PEFs, and the checks built on them;
- :mod:`.pef_store`: reading a PEF store (:class:`PefStore`, :func:`load_pefs`);
- :mod:`.writer`: writing one (:class:`PefStoreWriter`, :func:`save_pefs`);
- :mod:`.checkpoint`: a fit's state every N steps (:class:`FitCheckpoint`, :class:`UnusableCheckpointError`).

Data is safetensors (no pickle) with JSON beside it; every file records its format,
version and what produced it, and a reader refuses a file of another format or version
with a message that says so. This layer computes nothing: it never runs a model or a fit.
"""

from ..core.lazy import lazy_exports

# Imported on first use: reading JSON files (run records) needs neither torch nor the PEF store.
__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    **dict.fromkeys(["StoreError", "StoreWriteError", "atomic_path", "is_temporary", "producer", "read_arrays", "read_header", "read_json",
                     "remove_temporaries", "write_arrays", "write_json"], ".files"),
    **dict.fromkeys(["CHUNKS", "MANIFEST", "PefStore", "load_pefs"], ".pef_store"),
    **dict.fromkeys(["PefStoreWriter", "save_pefs"], ".writer"),
    **dict.fromkeys(["FitCheckpoint", "UnusableCheckpointError"], ".checkpoint"),
})

"""Every file format this package writes, with its version: the one table readers check against.

A file records ``format`` and ``format_version`` in its header (safetensors metadata or
JSON); :func:`workbench.store.files.check_format` refuses another format, or a version
this package cannot read, with a message that says so. A format's ``version`` is what is
written; ``reads`` lists the versions still read (older files keep loading).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileFormat:
    name: str  # recorded as "format"
    version: int  # recorded as "format_version" by this package
    reads: tuple[int, ...] = ()  # versions read besides ``version``
    what: str = ""
    read_with: str = ""  # how a user reads such a file, named where another format was expected

    @property
    def readable(self) -> tuple[int, ...]:
        return tuple(sorted({self.version, *self.reads}))

    def header(self) -> dict:
        """The keys every file of this format starts its header with."""
        return {"format": self.name, "format_version": self.version}


# the file in a PEF store's folder that records it (a folder holding one is a store)
MANIFEST = "manifest.json"

# version 2 adds "checksums": the sha256 of every chunk file, recorded when the store is complete
PEF_STORE = FileFormat("npeff-workbench/pefs", 2, reads=(1,), what="a PEF store's manifest.json",
                       read_with="load_pefs(its folder)")
PEF_CHUNK = FileFormat("npeff-workbench/pefs/chunk", 1, what="one batch's PEFs, chunks/NNNNNN.safetensors",
                       read_with="load_pefs(the store's folder)")
# version 2 records the rows per example of X as "n_slots" (version 1 called it "n_classes")
LRM_DECOMPOSITION = FileFormat("npeff-workbench/lrm-npeff", 2, reads=(1,), what="a fitted LrmNpeff (save/load)",
                               read_with="LrmNpeff.load(path)")
D_DECOMPOSITION = FileFormat("npeff-workbench/d-npeff", 1, what="a fitted DNpeff (save/load)",
                             read_with="DNpeff.load(path)")
FIT_CHECKPOINT = FileFormat("npeff-workbench/fit-checkpoint", 1, what="a fit's state every N steps",
                            read_with="fit(pefs, checkpoint=path), which resumes from it")
COMPONENTS = FileFormat("npeff-workbench/components", 1, what="components keyed by parameter name (export)",
                        read_with="safetensors.numpy.load_file(path)")
COEFFICIENTS = FileFormat("npeff-workbench/coefficients", 1, what="W of `python -m workbench transform`",
                          read_with="safetensors.numpy.load_file(path)")
RUN_RECORD = FileFormat("npeff-workbench/run", 1, what="a run folder's run.json", read_with="Run.open(its folder)")

FORMATS: dict[str, FileFormat] = {f.name: f for f in (
    PEF_STORE, PEF_CHUNK, LRM_DECOMPOSITION, D_DECOMPOSITION, FIT_CHECKPOINT, COMPONENTS, COEFFICIENTS, RUN_RECORD,
)}

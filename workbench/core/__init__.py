"""The lowest layer: the records every other layer passes around, and the few choices they share.

- :mod:`.params`: which parameters count and where each sits on the flat parameter axis
  (:class:`ParameterLayout`);
- :mod:`.pefs`: PEFs in memory (:class:`LrmPefs`, :class:`DPefs`);
- :mod:`.chunks`: one batch's PEFs (:class:`PefChunk`) and their concatenation;
- :mod:`.kinds`: the registry of the two kinds of PEF;
- :mod:`.sketch`: the count sketch of the parameter axis (sketched PEFs);
- :mod:`.device`: choosing the device;
- :mod:`.compiled`: whether the numba kernels run, and their threads;
- :mod:`.lazy`: package exports imported on first use (PEP 562);
- :mod:`.provenance`: how a model is named in records and messages;
- :mod:`.disk`: a file the disk cannot hold (full, read-only) named with the fix, by every writer alike.

Nothing here runs a model, reads a file or imports another layer of the package.
"""

"""The settings a run takes unless told, in one place: the CLI, ``run_embedded``, ``run_model``, the
analyses and ``LrmNpeff`` read them (changing one meant editing seven files).

The figures behind them are in docs/evaluation.md and docs/readings.md.
"""

#: PEF entries kept per example.
N_VALUES = 8192
#: LRM-NPEFF's G steps with W fixed at its start, then its alternating W and G steps.
N_ITERS_G_ONLY = 100
N_ITERS_JOINT = 400

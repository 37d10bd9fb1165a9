"""The two kinds of PEF (method notes, section 1), in the one table every dispatch site reads.

- ``"lrm"``, low-rank: example i's Fisher is A_i A_iᵀ; its slots' columns A_i[:, s] are
  rows of the sparse matrix ``X`` of :class:`~workbench.core.pefs.LrmPefs`, one row per
  (example, slot); :class:`~workbench.npeff.LrmNpeff` factors them.
- ``"d"``, diagonal: f_i = Σ_s A_i[:, s]², one row per example of the non-negative ``F``
  of :class:`~workbench.core.pefs.DPefs`; :class:`~workbench.npeff.DNpeff` factors them.

Code that must choose between the kinds asks :func:`kind` for the record instead of
comparing names; the estimators are found by kind with :func:`workbench.npeff.estimator_for`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pefs import DPefs, LrmPefs


@dataclass(frozen=True)
class Kind:
    name: str  # as recorded in stores, decompositions and run folders
    pefs_type: type  # the in-memory record
    one_row_per_slot: bool  # LRM: a row of the PEF matrix per (example, class slot); D: one per example
    non_negative: bool  # D-PEFs are sums of squares
    mass_power: int  # example i's Fisher mass on component j is W_ij ‖component_j‖ ** mass_power

    def rows_per_example(self, n_slots: int) -> int:
        return n_slots if self.one_row_per_slot else 1


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("lrm", LrmPefs, one_row_per_slot=True, non_negative=False, mass_power=2),
        Kind("d", DPefs, one_row_per_slot=False, non_negative=True, mass_power=1),
    )
}


def choices() -> str:
    """The kinds' names as a message lists them: "'lrm' or 'd'"."""
    return " or ".join(repr(name) for name in KINDS)


def kind(name: str) -> Kind:
    """The kind called ``name``; ValueError naming the choices for any other value."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be {choices()}, got {name!r}") from None

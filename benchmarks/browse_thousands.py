"""How the component browser scales: 2,000 components over 50,000 examples (a synthetic run).

    PYTHONPATH=. python benchmarks/browse_thousands.py [--components 2000] [--examples 50000]

Prints the kernel-side times (open the run, build the workbench, turn a page, search, sort).
The same run in a real browser (JupyterLab + Chromium, time until the table shows and per
page turn) is measured by tests/browser/test_workbench_in_browser.py, which writes
test-artifacts/browser-timings.json. No limits are asserted: these are figures to read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def timed(action, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--components", type=int, default=2000)
    parser.add_argument("--examples", type=int, default=50_000)
    args = parser.parse_args()

    from tests.widgets.synthetic import synthetic_run
    from widgets import Workbench
    from workbench.app.explore import RunExplorer

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = synthetic_run(Path(folder) / "run", n_components=args.components, n_examples=args.examples)
        print(f"synthetic run: {args.components} components, {args.examples} examples, "
              f"built in {time.perf_counter() - started:.1f} s (load: {os.getloadavg()[0]:.1f})")
        explorer = RunExplorer.open(path)
        figures = {
            "open run + first page": timed(lambda: explorer.components(page_size=20)),
            "build the Workbench widgets": timed(lambda: Workbench(RunExplorer.open(path))),
        }
        browser = Workbench(explorer).browser
        figures["turn a page (median of 10)"] = timed(lambda: browser.next.click(), repeat=10)
        figures["first text search (builds the index)"] = timed(lambda: explorer.components(search="zorp"))
        figures["text search, index built (median of 5)"] = timed(lambda: explorer.components(search="blick"), 5)
        figures["sort by purity (median of 5)"] = timed(lambda: explorer.components(sort_by="label_purity"), 5)
        figures["a component's example page"] = timed(lambda: explorer.top_examples(7, highlight=False))
        for name, seconds in figures.items():
            print(f"{name:42s} {seconds * 1000:9.1f} ms")


if __name__ == "__main__":
    main()

"""Each component's KL ratio against a random baseline and against one of the top set's predicted classes.

    python benchmarks/same_class_baseline.py runs/demo [epsilon]

How much of a ratio the class of the top set explains: a component whose ratio falls to about 1 moves
its class, not its examples.
"""

import sys

import numpy as np

from workbench.app.explore import RunExplorer


def main(folder: str, epsilon: float = 0.1) -> None:
    explorer = RunExplorer.open(folder)
    ratios = []
    for j in range(explorer.n_components):
        random = explorer.perturb(j, epsilon=epsilon)
        same = explorer.perturb(j, epsilon=epsilon, baseline="same classes")
        low, high = same.ratio_interval()
        print(f"component {j:2d}: random {random.kl_ratio:7.3g}  same classes {same.kl_ratio:7.3g} "
              f"(95% interval {low:.3g} to {high:.3g}, {same.n_baseline} baseline examples)", flush=True)
        ratios.append((random.kl_ratio, same.kl_ratio))
    median = np.median(np.array(ratios), axis=0)
    print(f"median KL ratio: random baseline {median[0]:.3g}, same classes {median[1]:.3g}")


if __name__ == "__main__":
    main(sys.argv[1], *(float(a) for a in sys.argv[2:3]))

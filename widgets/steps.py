"""The ε slider of the perturbation and trace panels, and the check of a step given to them in code."""

from __future__ import annotations

import ipywidgets as w


def epsilon_slider() -> w.FloatLogSlider:
    """ε from 0.001 to 100 on a log scale, 0.1 to start with."""
    return w.FloatLogSlider(0.1, base=10, min=-3, max=2, step=0.1, description="ε", readout_format=".3g",
                            continuous_update=False)


def set_epsilon(slider: w.FloatLogSlider, epsilon) -> None:
    """Put ``epsilon`` on the slider, refused where the slider cannot hold it: a slider clamps what it
    is given, and run(epsilon=1000) ran at 100, run(epsilon=-1) at 0.001, without a word."""
    from workbench.analysis.perturb import check_step  # on use: torch, which `import widgets` does without

    check_step(epsilon, None)
    low, high = slider.base ** slider.min, slider.base ** slider.max
    if not low <= epsilon <= high:
        raise ValueError(f"epsilon={epsilon!r} is outside the panel's slider ({low:g} to {high:g}); for another step "
                         "use the explorer: RunExplorer.perturb(j, epsilon=...) or .trace(j, epsilon=...)")
    slider.value = float(epsilon)

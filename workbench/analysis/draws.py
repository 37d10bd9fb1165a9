"""How a perturbation check's baseline examples are drawn: the names, and the words each is shown with.

One place for them, read by the checks (:mod:`.perturb`), the explorer and the perturbation panel's
menu, without torch.
"""

from __future__ import annotations

#: How a baseline set is drawn: at random from the other examples, or with the top set's mix of classes.
BASELINE_DRAWS = ("random", "same classes")

#: Each draw as words to follow "examples" ("given": indices the caller chose).
DRAW_WORDS = {"random": " drawn at random", "same classes": " drawn with the top set's mix of predicted classes",
              "given": " (a set given)"}

#: Each draw as the perturbation panel's menu shows it.
DRAW_MENU = {"random": "random", "same classes": "same classes as the top"}

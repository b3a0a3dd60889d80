"""What the attack battery already computed, for the work that follows it.

The validity checks and the clinical targeted attacks ask questions the battery has partly
answered: which samples PGD broke at each eps, which ones FGSM broke, which ones any
white-box attack broke. Recomputing those answers cost as much as half of a default audit
(issue 20), so this module reads them back from the audit's own records instead:

* :func:`step_outcomes` reconstructs, for every attack x eps step, which samples the step
  attacked and which it broke. ``results.json`` records the broken ones; the attacked ones
  follow from the schedule (every clean-correct sample with ``--independent``; in the
  cascade, the clean-correct samples no earlier step broke). A reconstruction that does not
  match the step's recorded ``n_attacked`` is dropped, never guessed.
* :class:`SharedTrajectories` holds the clinical targeted PGD's per-sample results. On a
  two-class model, targeted PGD towards the other class from the clean image ascends
  log(1 - p(y)) while untargeted PGD ascends -log p(y): both gradients point along -grad p(y),
  so their sign steps, and with no random start their whole trajectories, are the same. The
  checks then read "does the audit's PGD break this sample at this eps" from the trajectory
  the clinical attack already ran, instead of running it again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WHITE_BOX = "white-box"


def step_outcomes(results: dict[str, Any], correct: np.ndarray) -> dict[tuple[str, float], dict[str, np.ndarray]]:
    """``{(attack, eps_255): {"attacked": bool[n], "broken": bool[n]}}`` for every recorded
    step whose attacked set can be reconstructed exactly (see the module docstring)."""
    n = len(correct)
    independent = (results.get("config") or {}).get("mode") == "independent"
    broken_so_far = np.zeros(n, dtype=bool)
    out: dict[tuple[str, float], dict[str, np.ndarray]] = {}
    # results["attacks"] is in the order the steps ran: eps ascending, cheap to costly
    for entry in results.get("attacks") or []:
        broken = np.zeros(n, dtype=bool)
        broken[np.asarray(entry["samples"]["broken"], dtype=np.int64)] = True
        attacked = correct.copy() if independent else correct & ~broken_so_far
        broken_so_far |= broken
        if int(attacked.sum()) != int(entry.get("n_attacked", -1)) or (broken & ~attacked).any():
            continue  # the schedule was not the plain one (a resume, a stop): do not guess
        out[(entry["attack"], float(entry["eps_255"]))] = {"attacked": attacked, "broken": broken}
    return out


def broken_up_to(results: dict[str, Any], n: int, eps_255: float, threat_model: str | None = None) -> np.ndarray:
    """Samples any audit attack (of ``threat_model`` when given) broke at any eps <= ``eps_255``."""
    broken = np.zeros(n, dtype=bool)
    for entry in results.get("attacks") or []:
        if entry["eps_255"] <= eps_255 and (threat_model is None or entry.get("threat_model") == threat_model):
            broken[np.asarray(entry["samples"]["broken"], dtype=np.int64)] = True
    return broken


class SharedTrajectories:
    """The clinical targeted PGD's per-sample outcome at each eps, for the checks to reuse.

    ``params`` are the targeted run's; it stands in for the audit's PGD only when it is the
    same attack: two classes, every sample aimed at the class it is not, cross-entropy, the
    same steps and step size, and no random start (with restarts the draws differ)."""

    def __init__(self, n: int, labels: np.ndarray, num_classes: int, params: dict[str, Any]) -> None:
        self.n = n
        self.labels = np.asarray(labels)
        self.binary = num_classes == 2
        self.params = dict(params)
        self.final_hit: dict[float, np.ndarray] = {}  # eps_255 -> bool[n]; valid where `covered`
        self.covered: dict[float, np.ndarray] = {}

    def record(self, eps_255: float, indices: np.ndarray, targets: np.ndarray, final_hit: np.ndarray) -> None:
        hit = self.final_hit.setdefault(float(eps_255), np.zeros(self.n, dtype=bool))
        covered = self.covered.setdefault(float(eps_255), np.zeros(self.n, dtype=bool))
        # only samples aimed at "the other class" follow the untargeted trajectory
        other = np.asarray(targets) != self.labels[indices]
        hit[indices[other]] = np.asarray(final_hit, dtype=bool)[other]
        covered[indices[other]] = True

    def stands_in_for(self, pgd_params: dict[str, Any] | None) -> bool:
        if not self.binary or not pgd_params:
            return False
        same = ("steps", "step_size_eps_fraction", "step_size_255")
        return (all(pgd_params.get(k) == self.params.get(k) for k in same)
                and int(pgd_params.get("restarts") or 0) == 0 and int(self.params.get("restarts") or 0) == 0
                and pgd_params.get("loss", "ce") == "ce" and not pgd_params.get("targeted"))

    def pgd_fooled(self, eps_255: float, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(known, fooled) over ``indices``: whether PGD's final iterate misclassifies them."""
        covered = self.covered.get(float(eps_255))
        if covered is None:
            return np.zeros(len(indices), dtype=bool), np.zeros(len(indices), dtype=bool)
        return covered[indices], self.final_hit[float(eps_255)][indices]

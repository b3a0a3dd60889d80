"""ART used directly on FGSM, PGD and Square, as its documentation shows (issue 20's peer).

A ``PyTorchClassifier`` around the very module medaudit audits, each attack's ``generate``
at each eps on every image, and the worst case per image taken afterwards (a sample counts
as broken at eps e when any attack broke it at any eps <= e, medaudit's rule). The attack
parameters are read from medaudit's own ``results.json`` (``config.attacks[].params``), so
both run the same budget: FGSM one step of eps; PGD the same steps and step size, no random
start; Square the same p_init and as many iterations as medaudit's Square has queries (ART
spends one query per iteration on each image still correctly classified, plus one for its
initial stripes, so its budget is one query larger). ART's Square uses its default loss
(the margin of the logits), as medaudit's does.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from auditor.accounting import CountingModel, PassCounter
from auditor.numerics import step_size


def attack_params(results: dict[str, Any], name: str) -> dict[str, Any]:
    for attack in results["config"]["attacks"]:
        if attack["name"] == name:
            return dict(attack["params"])
    raise KeyError(name)


def run_art(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, results: dict[str, Any],
            batch_size: int, seed: int, log=print) -> dict[str, Any]:
    """Wall and CPU time, passes and worst-case robust accuracy per eps of ART on ``x``."""
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent, SquareAttack
    from art.estimators.classification import PyTorchClassifier

    counter = PassCounter()
    counted = CountingModel(model, counter).eval()
    classifier = PyTorchClassifier(model=counted, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=int(model(x[:1]).shape[1]), clip_values=(0.0, 1.0), device_type="cpu")
    eps_list = [float(e) for e in results["config"]["eps_255"]]
    pgd, square = attack_params(results, "pgd"), attack_params(results, "square")
    xs, ys = x.numpy(), y.numpy()
    t0, c0 = time.perf_counter(), time.process_time()
    correct = classifier.predict(xs, batch_size=batch_size).argmax(1) == ys
    broken: dict[float, np.ndarray] = {}
    seconds: dict[str, float] = {}
    makers = {
        "fgsm": lambda e: FastGradientMethod(classifier, norm=np.inf, eps=e, batch_size=batch_size),
        "pgd": lambda e: ProjectedGradientDescent(
            classifier, norm=np.inf, eps=e, eps_step=step_size(pgd, e), max_iter=int(pgd["steps"]),
            num_random_init=int(pgd.get("restarts") or 0), batch_size=batch_size, verbose=False),
        "square": lambda e: SquareAttack(classifier, norm=np.inf, eps=e, max_iter=int(square["queries"]),
                                         p_init=float(square.get("p_init", 0.8)), nb_restarts=1,
                                         batch_size=batch_size, verbose=False),
    }
    for name, make in makers.items():
        for eps_255 in eps_list:
            t1 = time.perf_counter()
            np.random.seed(seed)
            x_adv = make(eps_255 / 255.0).generate(x=xs, y=ys)
            fooled = classifier.predict(x_adv, batch_size=batch_size).argmax(1) != ys
            broken[eps_255] = broken.get(eps_255, np.zeros(len(ys), dtype=bool)) | fooled
            seconds[f"{name} eps={eps_255:g}"] = time.perf_counter() - t1
            log(f"ART {name} eps={eps_255:g}: {seconds[f'{name} eps={eps_255:g}']:.1f} s")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    worst, so_far = {}, np.zeros(len(ys), dtype=bool)
    for eps_255 in eps_list:
        so_far = so_far | broken[eps_255]
        worst[eps_255] = float((correct & ~so_far).mean())
    return {"wall_s": wall, "cpu_s": cpu, "steps_s": seconds, "worst_case": worst, "clean_accuracy": float(correct.mean()),
            "passes": counter.snapshot(), "square_queries": int(square["queries"]), "pgd": pgd}

"""Benchmark: medaudit's audit against ART and torchattacks used directly (issue 8).

One process measures, side by side, on the same ISIC 2017 images and the same model
(ResNet-18 adapted to 64x64, trained briefly; see ``benchmarks/workload.py``):

(a) medaudit default: cascade, default backends, through the engine API (``run_audit``);
(b) medaudit ``--independent``: every attack at every eps on every clean-correct sample;
(c) ART used directly as its documentation shows: a ``PyTorchClassifier``, each attack's
    ``generate`` at each eps on all images, worst case per sample taken afterwards;
(d) torchattacks for the attacks it has (FGSM, PGD, CW (L2), Square, AutoAttack).

Battery: FGSM, PGD-20, CW-Linf, AutoAttack, Square (1,000 queries), ZOO (same budget), at
eps 2,4,6,8 /255 (``--budget standard``, the reference workload). Every peer talks to the
model through medaudit's ``CountingModel``, so the model passes are counted the same way.

On 2 CPU cores (c), (d) and (b) would take hours on all images, so each runs on a stated,
nested, seeded subsample, stratified by how hard (a) found each image (misclassified,
broken at eps k, robust), and its wall time and passes are extrapolated per image to the
whole set (``--n-art``, ``--n-art-slow``, ``--n-independent``, ``--n-ta``, ``--n-ta-slow``).
Worst-case robust accuracies are compared on the same images: each peer's subsample, with
(a)'s per-sample results restricted to it.

Run from the repository root (needs ``../shared/data/isic2017``)::

    python benchmarks/bench_attacks.py --n 200            # the reference workload
    python benchmarks/bench_attacks.py --n 24 --quick     # a smoke run in a few minutes
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.accounting import CountingModel, PassCounter  # noqa: E402
from benchmarks import workload  # noqa: E402

ATTACKS = ("fgsm", "pgd", "cw", "autoattack", "square", "zoo")
GRADIENT_ATTACKS = ("fgsm", "pgd", "cw", "autoattack")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Peer:
    """One way of running the battery: measured wall time and passes, and per-eps worst case."""

    name: str
    n_total: int  # images the extrapolation is for
    parts: list[dict[str, Any]] = field(default_factory=list)  # {label, n, seconds, forward, backward}
    robust: dict[float, np.ndarray] = field(default_factory=dict)  # eps -> bool over `indices`
    indices: np.ndarray | None = None  # images the worst case is computed on
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, n: int, seconds: float, passes: dict[str, int]) -> None:
        self.parts.append({"label": label, "n": n, "seconds": seconds,
                           "forward": passes["forward_samples"], "backward": passes["backward_samples"]})

    def extrapolated(self, key: str) -> float:
        return sum(p[key] * self.n_total / p["n"] for p in self.parts if p["n"])

    @property
    def measured_seconds(self) -> float:
        return sum(p["seconds"] for p in self.parts)


# ----------------------------------------------------------------------------- helpers
def subset(order: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of a seeded order: subsamples are nested, smaller inside larger."""
    return np.sort(order[: min(k, len(order))])


def stratified_order(strata: np.ndarray, seed: int) -> np.ndarray:
    """An order whose every prefix holds each stratum in proportion (up to one image), so
    a small subsample is not all easy or all hard images by chance."""
    rng = np.random.default_rng(seed)
    key = np.empty(len(strata))
    for value in np.unique(strata):
        idx = np.flatnonzero(strata == value)
        rng.shuffle(idx)
        key[idx] = (np.arange(len(idx)) + rng.random()) / len(idx)
    return np.argsort(key, kind="stable")


def break_level(results: dict[str, Any], eps_list: list[float]) -> np.ndarray:
    """Per image, from (a): -1 misclassified, k = broken first at eps_list[k], len = robust."""
    n = results["clean"]["n"]
    level = np.full(n, len(eps_list))
    level[np.asarray(results["samples"]["clean_pred"]) != np.asarray(results["samples"]["labels"])] = -1
    for entry in results["attacks"]:
        k = eps_list.index(entry["eps_255"])
        for i in entry["samples"]["broken"]:
            if level[i] != -1:
                level[i] = min(level[i], k)
    return level


def worst_case(clean_correct: np.ndarray, fooled: list[tuple[float, np.ndarray]], eps_list: list[float]) -> dict[float, np.ndarray]:
    """Robust at eps e: clean-correct and fooled by no attack at any eps <= e."""
    out = {}
    for e in eps_list:
        broken = np.zeros_like(clean_correct)
        for e2, mask in fooled:
            if e2 <= e:
                broken |= mask
        out[e] = clean_correct & ~broken
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, bs: int) -> torch.Tensor:
    return torch.cat([model(x[i : i + bs]).argmax(1) for i in range(0, len(x), bs)])


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)


# ---------------------------------------------------------------------- (a) and (b)
def run_medaudit(folder: Path, manifest: Path, weights: Path, args: argparse.Namespace, independent: bool,
                 out: Path) -> tuple[dict[str, Any], float]:
    from auditor.audit import run_audit
    from auditor.config import AuditConfig
    from auditor.progress import Progress
    from auditor.registry import get_registry

    config = AuditConfig(
        model=weights, data=manifest, out=out, arch=workload.ARCH, data_format="csv", input_size=workload.SIZE,
        channels=3, modality="dermoscopy", eps_255=list(args.eps), attacks=list(ATTACKS), budget=args.budget,
        seed=args.seed, device=args.device, batch_size=args.batch_size,
        mode="independent" if independent else "cascade", formats=[],
    )
    if hasattr(config, "checks"):
        # The validity checks (auditor.evaluation.checks) are part of `medaudit run` but not of the
        # attack battery the peers run: leave them out of the comparison.
        config.checks = False
    t0 = time.perf_counter()
    results = run_audit(config, get_registry(), progress=Progress(), command="bench_attacks.py")
    return results, time.perf_counter() - t0


def medaudit_peer(name: str, results: dict[str, Any], seconds: float, n_total: int, eps_list: list[float],
                  positions: np.ndarray) -> Peer:
    """``positions``: where the audited images sit in the benchmark's full set."""
    n = results["clean"]["n"]
    peer = Peer(name, n_total, indices=positions)
    forward = n + sum(a["passes"]["forward_samples"] for a in results["attacks"])
    backward = sum(a["passes"]["backward_samples"] for a in results["attacks"])
    peer.add("whole audit", n, seconds, {"forward_samples": forward, "backward_samples": backward})
    correct = np.asarray(results["samples"]["clean_pred"]) == np.asarray(results["samples"]["labels"])
    fooled = []
    for entry in results["attacks"]:
        mask = np.zeros(n, dtype=bool)
        mask[entry["samples"]["broken"]] = True
        fooled.append((entry["eps_255"], mask))
    peer.robust = worst_case(correct, fooled, eps_list)
    return peer


def restrict(peer: Peer, positions: np.ndarray) -> dict[float, float]:
    """Worst-case robust accuracy of ``peer`` on the images at ``positions``."""
    where = np.searchsorted(peer.indices, positions)
    assert np.array_equal(peer.indices[where], positions)
    return {e: float(r[where].mean()) for e, r in peer.robust.items()}


def overheads(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for entry in results["attacks"]:
        o = out.setdefault(entry["attack"], {"time_s": 0.0, "ideal_s": 0.0, "step_time_s": 0.0, "step_ideal_s": 0.0,
                                             "backend": entry["backend"], "n_attacked": 0, "forward": 0, "backward": 0})
        overhead = entry.get("overhead") or {}
        o["time_s"] += entry.get("attack_time_s", entry["time_s"])
        o["ideal_s"] += overhead.get("ideal_s") or 0.0
        o["step_time_s"] += entry["time_s"]
        o["step_ideal_s"] += overhead.get("step_ideal_s") or 0.0
        o["n_attacked"] += entry["n_attacked"]
        o["forward"] += entry["passes"]["forward_samples"]
        o["backward"] += entry["passes"]["backward_samples"]
    for o in out.values():
        o["ratio"] = o["time_s"] / o["ideal_s"] if o["ideal_s"] else None
        o["step_ratio"] = o["step_time_s"] / o["step_ideal_s"] if o["step_ideal_s"] else None
    return out


# ------------------------------------------------------------------------------ (c) ART
def art_peer(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, order: np.ndarray, args: argparse.Namespace) -> Peer:
    from art.attacks.evasion import (AutoAttack, AutoProjectedGradientDescent, CarliniLInfMethod, DeepFool,
                                     FastGradientMethod, ProjectedGradientDescent, SquareAttack, ZooAttack)
    from art.estimators.classification import PyTorchClassifier

    budget = BUDGETS[args.budget]
    eps_list = list(args.eps)
    main = subset(order, args.n_art)
    slow = subset(order, args.n_art_slow)
    counter = PassCounter()
    counted = CountingModel(model, counter).eval()
    classifier = PyTorchClassifier(model=counted, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                   nb_classes=2, clip_values=(0.0, 1.0),
                                   device_type="gpu" if args.device.startswith("cuda") else "cpu")
    peer = Peer("(c) ART directly", len(x), indices=main)
    bs = args.batch_size

    t0, before = time.perf_counter(), counter.snapshot()
    clean_pred = classifier.predict(x[main].numpy(), batch_size=bs).argmax(1)
    peer.add("clean predictions", len(main), time.perf_counter() - t0, counter.since(before))
    correct = clean_pred == y[main].numpy()
    fooled: list[tuple[float, np.ndarray]] = []

    def per_eps(label: str, idx: np.ndarray, make: Callable[[float], Any]) -> None:
        """One ``generate`` per eps on the images ``idx`` (all of them, as ART's docs do)."""
        xs, ys = x[idx].numpy(), y[idx].numpy()
        for eps_255 in eps_list:
            t0, before = time.perf_counter(), counter.snapshot()
            np.random.seed(args.seed)
            x_adv = make(eps_255 / 255.0).generate(x=xs, y=ys)
            pred = classifier.predict(x_adv, batch_size=bs).argmax(1)
            peer.add(f"{label} eps={eps_255:g}", len(idx), time.perf_counter() - t0, counter.since(before))
            fooled.append((eps_255, _scatter(main, idx, pred != ys)))
            log(f"(c) {label} eps={eps_255:g}: {peer.parts[-1]['seconds']:.1f}s on {len(idx)} images")

    def no_eps(label: str, idx: np.ndarray, attack: Any) -> None:
        """ART's CW-Linf and ZOO have no eps: one ``generate``, projected onto each ball."""
        xs, ys = x[idx].numpy(), y[idx].numpy()
        t0, before = time.perf_counter(), counter.snapshot()
        np.random.seed(args.seed)
        x_adv = torch.from_numpy(attack.generate(x=xs, y=ys))
        for eps_255 in eps_list:
            pred = classifier.predict(project(x_adv, x[idx], eps_255 / 255.0).numpy(), batch_size=bs).argmax(1)
            fooled.append((eps_255, _scatter(main, idx, pred != ys)))
        peer.add(label, len(idx), time.perf_counter() - t0, counter.since(before))
        log(f"(c) {label}: {peer.parts[-1]['seconds']:.1f}s on {len(idx)} images")

    per_eps("FGSM", main, lambda e: FastGradientMethod(classifier, norm=np.inf, eps=e, batch_size=bs))
    per_eps("PGD", main, lambda e: ProjectedGradientDescent(
        classifier, norm=np.inf, eps=e, eps_step=1 / 255, max_iter=budget["pgd_steps"], batch_size=bs, verbose=False))
    no_eps("CW-Linf", slow, CarliniLInfMethod(classifier, max_iter=budget["cw_steps"], learning_rate=0.01,
                                              batch_size=bs, verbose=False))
    per_eps("Square", main, lambda e: SquareAttack(classifier, norm=np.inf, eps=e, max_iter=budget["queries"],
                                                   p_init=0.8, nb_restarts=1, batch_size=bs, verbose=False))

    def autoattack(e: float) -> Any:
        # ART's default list minus APGD-DLR, which fails on two-class models.
        attacks = [
            AutoProjectedGradientDescent(classifier, norm=np.inf, eps=e, eps_step=2 * e, max_iter=budget["apgd_steps"],
                                         nb_random_init=5, batch_size=bs, loss_type="cross_entropy", verbose=False),
            DeepFool(classifier, max_iter=100, epsilon=1e-3, nb_grads=10, batch_size=bs, verbose=False),
            SquareAttack(classifier, norm=np.inf, eps=e, max_iter=budget["aa_square_queries"], p_init=0.8,
                         nb_restarts=5, batch_size=bs, verbose=False),
        ]
        try:
            import multiprocess  # noqa: F401  (ART's AutoAttack imports it even when not parallel)
        except ImportError:
            return SequentialAutoAttack(classifier, attacks, e)
        return AutoAttack(classifier, norm=np.inf, eps=e, eps_step=2 * e, batch_size=bs, attacks=attacks)

    per_eps("AutoAttack", slow, autoattack)
    nb_parallel = 64
    no_eps("ZOO", slow, ZooAttack(
        classifier, confidence=0.0, targeted=False, learning_rate=0.01, max_iter=max(budget["queries"] // (2 * nb_parallel), 1),
        binary_search_steps=1, initial_const=1.0, abort_early=True, use_resize=False, use_importance=False,
        nb_parallel=nb_parallel, batch_size=1, variable_h=1e-4, verbose=False))
    peer.robust = worst_case(correct, fooled, eps_list)
    peer.notes.append(f"FGSM, PGD, Square on {len(main)} images; CW-Linf, AutoAttack, ZOO on {len(slow)} of them "
                      "(extrapolated per image; the worst case uses the attacks that ran on each image)")
    peer.notes.append("ART's CW-Linf and ZOO take no eps: run once per image, projected onto each eps ball")
    peer.notes.append("ART AutoAttack: its default list (APGD-CE x5 restarts, DeepFool, Square x5) without APGD-DLR, "
                      "which fails on two classes")
    return peer


class SequentialAutoAttack:
    """What ART's ``AutoAttack.generate`` does without a pool: each attack in turn on the
    samples still classified correctly. Used only when ART's optional ``multiprocess``
    import is missing."""

    def __init__(self, classifier: Any, attacks: list[Any], eps: float) -> None:
        self.classifier, self.attacks, self.eps = classifier, attacks, eps

    def generate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x_adv = x.copy()
        robust = self.classifier.predict(x).argmax(1) == y
        for attack in self.attacks:
            if not robust.any():
                break
            cand = attack.generate(x=x_adv[robust], y=y[robust])
            cand = np.clip(np.clip(cand, x[robust] - self.eps, x[robust] + self.eps), 0.0, 1.0)
            fooled = self.classifier.predict(cand).argmax(1) != y[robust]
            where = np.flatnonzero(robust)[fooled]
            x_adv[where] = cand[fooled]
            robust[where] = False
        return x_adv


def _scatter(main: np.ndarray, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(main), dtype=bool)
    out[np.searchsorted(main, idx)] = values
    return out


# ---------------------------------------------------------------------- (d) torchattacks
def torchattacks_peer(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, order: np.ndarray,
                      args: argparse.Namespace) -> tuple[Peer, dict[str, Any]]:
    import torchattacks

    budget = BUDGETS[args.budget]
    eps_list = list(args.eps)
    main = subset(order, args.n_ta)
    slow = subset(order, args.n_ta_slow)
    counter = PassCounter()
    counted = CountingModel(model, counter).eval()
    device = torch.device(args.device)
    peer = Peer("(d) torchattacks", len(x), indices=main)
    bs = args.batch_size
    cw_info: dict[str, Any] = {}
    cw_fooled: list[tuple[float, np.ndarray]] = []

    t0, before = time.perf_counter(), counter.snapshot()
    correct = (predict(counted, x[main].to(device), bs).cpu() == y[main]).numpy()
    peer.add("clean predictions", len(main), time.perf_counter() - t0, counter.since(before))
    fooled: list[tuple[float, np.ndarray]] = []

    def run(label: str, idx: np.ndarray, attack: Any, eps_255: float | None) -> None:
        t0, before = time.perf_counter(), counter.snapshot()
        torch.manual_seed(args.seed)
        advs = []
        for i in range(0, len(idx), bs):
            xb, yb = x[idx[i : i + bs]].to(device), y[idx[i : i + bs]].to(device)
            advs.append(attack(xb, yb).detach())
        x_adv = torch.cat(advs)
        xs = x[idx].to(device)
        for e in ([eps_255] if eps_255 is not None else eps_list):
            pred = predict(counted, project(x_adv, xs, e / 255.0), bs).cpu()
            mask = _scatter(main, idx, (pred != y[idx]).numpy())
            fooled.append((e, mask))
            if label == "CW-L2":
                cw_fooled.append((e, mask))
        peer.add(label, len(idx), time.perf_counter() - t0, counter.since(before))
        log(f"(d) {label}: {peer.parts[-1]['seconds']:.1f}s on {len(idx)} images")

    for e in eps_list:
        eps = e / 255.0
        run(f"FGSM eps={e:g}", main, torchattacks.FGSM(counted, eps=eps), e)
        run(f"PGD eps={e:g}", main, torchattacks.PGD(counted, eps=eps, alpha=1 / 255, steps=budget["pgd_steps"],
                                                     random_start=False), e)
    # torchattacks' CW is L2 (no eps): one run per image, projected onto each eps ball.
    run("CW-L2", main, torchattacks.CW(counted, c=1, kappa=0, steps=budget["cw_steps"], lr=0.01), None)
    cw_part = peer.parts[-1]
    cw_info = {"torchattacks_s_per_image": cw_part["seconds"] / cw_part["n"], "n": cw_part["n"],
               "steps": budget["cw_steps"], "eps_255": max(eps_list)}
    cw_info.update(native_cw(model, x[main], y[main], max(eps_list), args))
    for e in eps_list:
        run(f"Square eps={e:g}", main, torchattacks.Square(counted, norm="Linf", eps=e / 255.0, n_queries=budget["queries"],
                                                           n_restarts=1, p_init=0.8, loss="margin", seed=args.seed), e)
    for e in eps_list:
        autoattack = torchattacks.AutoAttack(counted, norm="Linf", eps=e / 255.0, version="standard", n_classes=2,
                                             seed=args.seed)
        # APGD-T's targeted DLR loss needs >= 4 classes (IndexError on two): drop it, as
        # medaudit and the ART peer drop APGD-DLR.
        subs = autoattack._autoattack.attacks  # noqa: SLF001 - torchattacks has no setter
        subs[:] = [a for a in subs if type(a).__name__ != "APGDT"]  # the ISIC model has two classes
        if args.budget == "quick":  # the standard version's sub-attacks, at the quick budget
            for sub in subs:
                if hasattr(sub, "steps"):
                    sub.steps = budget["apgd_steps"]
                if hasattr(sub, "n_queries"):
                    sub.n_queries = budget["aa_square_queries"]
        run(f"AutoAttack eps={e:g}", slow, autoattack, e)
    peer.robust = worst_case(correct, fooled, eps_list)
    peer.notes.append(f"FGSM, PGD, CW-L2, Square on {len(main)} images; AutoAttack (version standard: APGD-CE, "
                      f"FAB-T, Square; APGD-T dropped: it needs >= 4 classes; {budget['apgd_steps']} steps, {budget['aa_square_queries']} queries) on "
                      f"{len(slow)} of them; torchattacks has no ZOO")
    peer.notes.append("torchattacks' CW is L2 and takes no eps: one run, projected onto each eps ball")
    cw_at = {e: m for e, m in cw_fooled}[max(eps_list)]
    cw_info["torchattacks_robust"] = float((correct & ~cw_at).mean())
    return peer, cw_info


def native_cw(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps_255: float,
              args: argparse.Namespace) -> dict[str, Any]:
    """medaudit's native CW-Linf through ``Attack.run`` (as the engine calls it) on the
    same images and with the same number of steps as torchattacks' CW."""
    from auditor.registry import get_registry
    from auditor.interfaces import AttackContext

    counter = PassCounter()
    counted = CountingModel(model, counter).eval()
    device = torch.device(args.device)
    attack = get_registry().get("attacks", "cw")
    ctx = AttackContext(model=counted, device=device, num_classes=2, input_shape=tuple(x.shape[1:]),
                        task="classification", seed=args.seed, batch_size=args.batch_size, counter=counter)
    params = {**attack.parameters(args.budget, ctx), "backend": "native", "seed": args.seed}
    bs = args.batch_size
    with torch.no_grad():
        correct = predict(counted, x.to(device), bs).cpu() == y
    t0 = time.perf_counter()
    advs = [attack.run(ctx, x[i : i + bs].to(device), y[i : i + bs].to(device), eps_255 / 255.0, params).x_adv
            for i in range(0, len(x), bs)]
    seconds = time.perf_counter() - t0
    pred = predict(counted, torch.cat(advs), bs).cpu()
    log(f"native CW eps={eps_255:g}: {seconds:.1f}s on {len(x)} images")
    return {"native_s_per_image": seconds / len(x), "native_robust": float((correct & (pred == y)).float().mean()),
            "native_steps": params["steps"]}


BUDGETS = {
    "quick": {"pgd_steps": 10, "cw_steps": 10, "queries": 500, "apgd_steps": 10, "aa_square_queries": 100},
    "standard": {"pgd_steps": 20, "cw_steps": 30, "queries": 1000, "apgd_steps": 100, "aa_square_queries": 5000},
}


# ------------------------------------------------------------------------------- report
def fmt_ra(values: dict[float, float]) -> str:
    return " ".join(f"{e:g}:{v:.3f}" for e, v in sorted(values.items()))


def announce(peer: Peer) -> None:
    """One line per finished peer on stdout, so a run cut short still says something."""
    own = {e: float(r.mean()) for e, r in peer.robust.items()}
    print(f"done {peer.name}: measured {peer.measured_seconds:.1f}s on {sorted({p['n'] for p in peer.parts})} images, "
          f"extrapolated to {peer.n_total}: {peer.extrapolated('seconds'):.1f}s, "
          f"{peer.extrapolated('forward'):,.0f} fwd / {peer.extrapolated('backward'):,.0f} bwd passes; "
          f"worst case {fmt_ra(own)}", flush=True)


def report(peers: dict[str, Peer], res: dict[str, dict[str, Any]], cw_info: dict[str, Any] | None,
           args: argparse.Namespace, facts: dict[str, Any], clean_accuracy: float) -> dict[str, Any]:
    out: dict[str, Any] = {"n": args.n, "budget": args.budget, "eps_255": list(args.eps), "device": args.device,
                           "threads": torch.get_num_threads(), "model": facts, "clean_accuracy": clean_accuracy}
    print()
    print(f"medaudit attack benchmark: ResNet-18 64x64 on ISIC 2017, {args.n} images, eps {','.join(f'{e:g}' for e in args.eps)}/255, "
          f"budget {args.budget}, device {args.device}, {torch.get_num_threads()} threads")
    print(f"model: {facts.get('epochs')} epochs on {facts.get('train_images')} train images; "
          f"val accuracy {facts.get('val_accuracy', float('nan')):.3f}, val balanced accuracy "
          f"{facts.get('val_balanced_accuracy', float('nan')):.3f}; clean accuracy on the {args.n} audit images "
          f"{clean_accuracy:.3f}")
    print()
    print(f"{'peer':28s} {'measured on':>11s} {'wall s (meas.)':>14s} {'wall s (all n)':>14s} "
          f"{'fwd passes':>12s} {'bwd passes':>12s}")
    rows = {}
    for key, peer in peers.items():
        sizes = sorted({p["n"] for p in peer.parts})
        measured = "/".join(str(s) for s in sizes)
        total = peer.extrapolated("seconds")
        rows[key] = {"seconds": total, "measured_seconds": peer.measured_seconds,
                     "forward": peer.extrapolated("forward"), "backward": peer.extrapolated("backward"),
                     "measured_on": sizes, "notes": peer.notes}
        print(f"{peer.name:28s} {measured:>11s} {peer.measured_seconds:14.1f} {total:14.1f} "
              f"{rows[key]['forward']:12,.0f} {rows[key]['backward']:12,.0f}")
    out["peers"] = rows
    print()
    a, b = rows.get("a"), rows.get("b")
    ratios = {}
    for key in ("c", "d"):
        if key in rows and a:
            ratios[f"{key}/a"] = rows[key]["seconds"] / a["seconds"]
        if key in rows and b:
            ratios[f"{key}/b"] = rows[key]["seconds"] / b["seconds"]
    if a and b:
        ratios["b/a"] = b["seconds"] / a["seconds"]
    for name, value in ratios.items():
        target = {"c/a": " (target >= 5)", "c/b": " (target >= 2)"}.get(name, "")
        print(f"time ratio {name}: {value:.1f}{target}")
    out["ratios"] = ratios
    print()
    print("worst-case robust accuracy (eps/255: accuracy), each peer on its own images, and (a) on the same images:")
    out["worst_case"] = {}
    for key, peer in peers.items():
        own = {e: float(r.mean()) for e, r in peer.robust.items()}
        line = f"  {peer.name:26s} n={len(peer.indices):3d}  {fmt_ra(own)}"
        entry = {"n": int(len(peer.indices)), "robust_accuracy": own}
        if key != "a" and "a" in peers:
            same = restrict(peers["a"], peer.indices)
            entry["a_on_same_images"] = same
            worse = [e for e in same if same[e] > own[e] + 1e-9]
            line += f"   | (a) on these: {fmt_ra(same)}" + (f"  (a) HIGHER at {worse}" if worse else "  (a) <= this peer")
        print(line)
        out["worst_case"][key] = entry
    print()
    print("overhead ratio per attack = the attack's wall time / its counted passes priced at one pass of each "
          "call's batch size; target <= 1.2 for gradient attacks. In brackets: the whole step (data loading, the "
          "engine's check of each result, bookkeeping) over the same passes plus the check's forward pass:")
    out["overhead"] = {}
    for key in ("a", "b"):
        if key not in res:
            continue
        table = overheads(res[key])
        out["overhead"][key] = table
        cells = [f"{k}[{v['backend']}]={v['ratio']:.2f} ({v['step_ratio']:.2f})" if v["ratio"] and v["step_ratio"]
                 else f"{k}[{v['backend']}]=n/a" for k, v in table.items()]
        print(f"  {peers[key].name:26s} " + "  ".join(cells))
    if cw_info:
        ratio = cw_info["native_s_per_image"] / cw_info["torchattacks_s_per_image"]
        print()
        print(f"CW on the same {cw_info['n']} images: medaudit native CW-Linf {cw_info['native_s_per_image']:.2f} s/image "
              f"({cw_info['native_steps']} steps, one eps) vs torchattacks CW-L2 {cw_info['torchattacks_s_per_image']:.2f} "
              f"s/image ({cw_info['steps']} steps): {ratio:.2f}x (target <= 1.5)")
        print(f"    robust accuracy at {cw_info['eps_255']:g}/255: native {cw_info['native_robust']:.3f}, "
              f"torchattacks (projected onto the ball) {cw_info['torchattacks_robust']:.3f}")
        out["cw"] = {**cw_info, "ratio": ratio}
    print()
    for key, peer in peers.items():
        for note in peer.notes:
            print(f"note {peer.name}: {note}")
    return out


# --------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="images audited by (a); the set all peers extrapolate to")
    parser.add_argument("--quick", action="store_true", help="quick budget and small subsamples: a smoke run")
    parser.add_argument("--eps", type=lambda s: [float(v) for v in s.split(",")], default=[2.0, 4.0, 6.0, 8.0])
    parser.add_argument("--n-independent", type=int, default=None, help="images for (b) (default 12; quick 8)")
    parser.add_argument("--n-art", type=int, default=None, help="images for ART FGSM/PGD/Square (default 40; quick 8)")
    parser.add_argument("--n-art-slow", type=int, default=None, help="images for ART CW/AutoAttack/ZOO (default 3; quick 2)")
    parser.add_argument("--n-ta", type=int, default=None, help="images for torchattacks (default 40; quick 8)")
    parser.add_argument("--n-ta-slow", type=int, default=None, help="images for torchattacks AutoAttack (default 6; quick 2)")
    parser.add_argument("--peers", default="a,c,b,d", help="which peers to run, in this order")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of the cached model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own, one per core)")
    parser.add_argument("--data", type=Path, default=workload.DEFAULT_DATA)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    quick = args.quick
    args.budget = "quick" if quick else "standard"
    defaults = {"n_independent": (8, 12), "n_art": (8, 40), "n_art_slow": (2, 3), "n_ta": (8, 40), "n_ta_slow": (2, 6)}
    for name, (q, s) in defaults.items():
        value = getattr(args, name)
        setattr(args, name, min(value if value is not None else (q if quick else s), args.n))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ready = workload.model_for(args, log=log)
    if ready is None:
        return 2
    model, facts = ready
    log(f"model ready: {json.dumps({k: v for k, v in facts.items() if k != 'held_out_train'})}")
    peers: dict[str, Peer] = {}
    res: dict[str, dict[str, Any]] = {}
    cw_info = None
    with tempfile.TemporaryDirectory(prefix="medaudit-bench-") as tmp:
        folder = Path(tmp)
        manifest = workload.write_audit_set(args.data, facts, args.n, args.seed, folder / "data")
        weights = workload.save_weights_copy(model, folder)
        from plugins.data.csv_manifest import CsvSource
        from auditor.interfaces import DataOptions

        dataset = CsvSource().open(manifest, DataOptions(channels=3, input_size=workload.SIZE))
        batch = dataset.load(range(len(dataset)))
        x, y = batch.images, batch.targets
        n = len(x)
        order = np.random.default_rng(args.seed).permutation(n)
        from auditor.models import open_model
        from auditor.registry import get_registry

        # The very module medaudit loads, so every peer attacks the same network.
        loaded = open_model(get_registry(), weights, arch=workload.ARCH, device=args.device).module
        clean_accuracy = float((predict(loaded, x.to(args.device), args.batch_size).cpu() == y).float().mean())
        log(f"{n} audit images, clean accuracy {clean_accuracy:.3f}; subsamples: (b) {args.n_independent}, "
            f"(c) {args.n_art}/{args.n_art_slow}, (d) {args.n_ta}/{args.n_ta_slow}")
        eps_list = list(args.eps)
        for key in args.peers.split(","):
            try:
                if key == "a":
                    log("(a) medaudit default (cascade) ...")
                    res["a"], seconds = run_medaudit(folder, manifest, weights, args, False, folder / "out-a")
                    peers["a"] = medaudit_peer("(a) medaudit cascade", res["a"], seconds, n, eps_list, np.arange(n))
                    announce(peers["a"])
                    # Subsamples of the other peers: stratified by how hard (a) found each
                    # image (misclassified / broken at eps k / robust), so per-image
                    # extrapolation from a few images is not skewed to easy or hard ones.
                    order = stratified_order(break_level(res["a"], eps_list), args.seed)
                if key == "b":
                    positions = subset(order, args.n_independent)
                    rows = manifest.read_text().splitlines()
                    sub_manifest = manifest.parent / "labels_independent.csv"
                    sub_manifest.write_text("\n".join([rows[0]] + [rows[1 + i] for i in positions]) + "\n")
                    log(f"(b) medaudit --independent on {len(positions)} images ...")
                    res["b"], seconds = run_medaudit(folder, sub_manifest, weights, args, True, folder / "out-b")
                    peers["b"] = medaudit_peer("(b) medaudit --independent", res["b"], seconds, n, eps_list, positions)
                    announce(peers["b"])
                if key == "c":
                    log("(c) ART directly ...")
                    peers["c"] = art_peer(loaded, x, y, order, args)
                    announce(peers["c"])
                if key == "d":
                    try:
                        import torchattacks  # noqa: F401
                    except ImportError:
                        log("(d) skipped: torchattacks is not installed (pip install --no-deps torchattacks)")
                    else:
                        log("(d) torchattacks ...")
                        peers["d"], cw_info = torchattacks_peer(loaded, x, y, order, args)
                        announce(peers["d"])
            except Exception as exc:  # noqa: BLE001 - one failing peer must not lose the others' numbers
                log(f"peer ({key}) failed: {type(exc).__name__}: {exc}")
        numbers = report(peers, res, cw_info, args, facts, clean_accuracy)
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1, default=_jsonable))
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())

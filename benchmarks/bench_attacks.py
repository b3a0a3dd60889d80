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
nested, seeded subsample and its wall time and passes are extrapolated per image to the
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
        o = out.setdefault(entry["attack"], {"time_s": 0.0, "ideal_s": 0.0, "backend": entry["backend"],
                                             "n_attacked": 0, "forward": 0, "backward": 0})
        o["time_s"] += entry["time_s"]
        o["ideal_s"] += (entry.get("overhead") or {}).get("ideal_s") or 0.0
        o["n_attacked"] += entry["n_attacked"]
        o["forward"] += entry["passes"]["forward_samples"]
        o["backward"] += entry["passes"]["backward_samples"]
    for o in out.values():
        o["ratio"] = o["time_s"] / o["ideal_s"] if o["ideal_s"] else None
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
        return AutoAttack(classifier, norm=np.inf, eps=e, eps_step=2 * e, batch_size=bs, attacks=[
            AutoProjectedGradientDescent(classifier, norm=np.inf, eps=e, eps_step=2 * e, max_iter=budget["apgd_steps"],
                                         nb_random_init=5, batch_size=bs, loss_type="cross_entropy", verbose=False),
            DeepFool(classifier, max_iter=100, epsilon=1e-3, nb_grads=10, batch_size=bs, verbose=False),
            SquareAttack(classifier, norm=np.inf, eps=e, max_iter=budget["aa_square_queries"], p_init=0.8,
                         nb_restarts=5, batch_size=bs, verbose=False),
        ])

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
    cw_info = {"seconds_per_image": cw_part["seconds"] / cw_part["n"], "n": cw_part["n"],
               "steps": budget["cw_steps"]}
    for e in eps_list:
        run(f"Square eps={e:g}", main, torchattacks.Square(counted, norm="Linf", eps=e / 255.0, n_queries=budget["queries"],
                                                           n_restarts=1, p_init=0.8, loss="margin", seed=args.seed), e)
    for e in eps_list:
        run(f"AutoAttack eps={e:g}", slow, torchattacks.AutoAttack(counted, norm="Linf", eps=e / 255.0, version="standard",
                                                                    n_classes=2, seed=args.seed), e)
    peer.robust = worst_case(correct, fooled, eps_list)
    peer.notes.append(f"FGSM, PGD, CW-L2, Square on {len(main)} images; AutoAttack (standard: APGD-CE, APGD-T, "
                      f"FAB-T, Square 5000) on {len(slow)} of them; torchattacks has no ZOO")
    peer.notes.append("torchattacks' CW is L2 and takes no eps: one run, projected onto each eps ball")
    cw_info["robust"] = {e: float((correct & ~m).mean()) for e, m in cw_fooled}
    cw_info["indices"] = main
    return peer, cw_info


BUDGETS = {
    "quick": {"pgd_steps": 10, "cw_steps": 10, "queries": 500, "apgd_steps": 10, "aa_square_queries": 100},
    "standard": {"pgd_steps": 20, "cw_steps": 30, "queries": 1000, "apgd_steps": 100, "aa_square_queries": 5000},
}


# ------------------------------------------------------------------------------- report
def fmt_ra(values: dict[float, float]) -> str:
    return " ".join(f"{e:g}:{v:.3f}" for e, v in sorted(values.items()))


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
    print("overhead ratio per attack = wall / (passes x one-pass time at the audit's batch size); target <= 1.2 "
          "for gradient attacks:")
    out["overhead"] = {}
    for key in ("a", "b"):
        if key not in res:
            continue
        table = overheads(res[key])
        out["overhead"][key] = table
        cells = [f"{k}[{v['backend']}]={v['ratio']:.2f}" if v["ratio"] else f"{k}[{v['backend']}]=n/a"
                 for k, v in table.items()]
        print(f"  {peers[key].name:26s} " + "  ".join(cells))
    if cw_info and "b" in res:
        cw = overheads(res["b"]).get("cw")
        if cw and cw["n_attacked"]:
            native = cw["time_s"] / cw["n_attacked"]
            ratio = native / cw_info["seconds_per_image"]
            peer_b = peers["b"]
            cw_entries = [e for e in res["b"]["attacks"] if e["attack"] == "cw"]
            own_cw = {}
            correct = np.asarray(res["b"]["samples"]["clean_pred"]) == np.asarray(res["b"]["samples"]["labels"])
            for e in cw_entries:
                mask = np.zeros(len(correct), dtype=bool)
                mask[e["samples"]["broken"]] = True
                own_cw[e["eps_255"]] = float((correct & ~mask).mean())
            print()
            print(f"CW: medaudit native CW-Linf {native:.2f} s per image per eps ({cw['n_attacked']} image-runs, "
                  f"{BUDGETS[args.budget]['cw_steps']} steps) vs torchattacks CW-L2 {cw_info['seconds_per_image']:.2f} s "
                  f"per image ({cw_info['n']} images, {cw_info['steps']} steps): {ratio:.2f}x (target <= 1.5)")
            print(f"    robust accuracy, CW alone: native (n={len(peer_b.indices)}) {fmt_ra(own_cw)}; "
                  f"torchattacks (n={cw_info['n']}) {fmt_ra(cw_info['robust'])}")
            out["cw"] = {"native_s_per_image": native, "torchattacks_s_per_image": cw_info["seconds_per_image"],
                         "ratio": ratio, "native_robust": own_cw, "torchattacks_robust": cw_info["robust"]}
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
    parser.add_argument("--peers", default="a,b,c,d", help="which peers to run (a,b,c,d)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the cached model")
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
    if args.threads:
        torch.set_num_threads(args.threads)
    peers_wanted = set(args.peers.split(","))
    if not (args.data / "labels.csv").is_file():
        print(f"no ISIC data at {args.data}: give --data PATH/isic2017", file=sys.stderr)
        return 2
    model, facts = workload.train_or_load(args.data, args.epochs, args.seed, log=log)
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
        if "a" in peers_wanted:
            log("(a) medaudit default (cascade) ...")
            res["a"], seconds = run_medaudit(folder, manifest, weights, args, False, folder / "out-a")
            peers["a"] = medaudit_peer("(a) medaudit cascade", res["a"], seconds, n, eps_list, np.arange(n))
            log(f"(a) done in {seconds:.1f}s")
        if "b" in peers_wanted:
            positions = subset(order, args.n_independent)
            rows = manifest.read_text().splitlines()
            sub_manifest = manifest.parent / "labels_independent.csv"
            sub_manifest.write_text("\n".join([rows[0]] + [rows[1 + i] for i in positions]) + "\n")
            log(f"(b) medaudit --independent on {len(positions)} images ...")
            res["b"], seconds = run_medaudit(folder, sub_manifest, weights, args, True, folder / "out-b")
            peers["b"] = medaudit_peer("(b) medaudit --independent", res["b"], seconds, n, eps_list, positions)
            log(f"(b) done in {seconds:.1f}s")
        if "c" in peers_wanted:
            log("(c) ART directly ...")
            peers["c"] = art_peer(loaded, x, y, order, args)
        if "d" in peers_wanted:
            try:
                import torchattacks  # noqa: F401
            except ImportError:
                log("(d) skipped: torchattacks is not installed (pip install --no-deps torchattacks)")
            else:
                log("(d) torchattacks ...")
                peers["d"], cw_info = torchattacks_peer(loaded, x, y, order, args)
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

"""Evaluation validity checks: is this robustness evaluation one a reviewer would trust?

Each check answers pass / warn / fail with one line and the numbers behind it. They follow
Carlini et al., "On Evaluating Adversarial Robustness" (2019, arXiv:1902.06705) and the
checks AutoAttack runs on itself (``autoattack/checks.py``, Croce and Hein 2020):

1. logits        the model outputs logits, not probabilities
2. gradients     input gradients are not zero, NaN or infinite
3. determinism   repeated forward passes agree (randomised models need EoT)
4. monotone      robust accuracy never increases with eps
5. iterative     PGD is at least as strong as FGSM at every eps
6. black-box     Square / ZOO are not clearly stronger than PGD (masked gradients)
7. large-eps     PGD at 64/255 drives accuracy to about zero
8. convergence   PGD with twice the steps and restarts does not find much more
9. noise         uniform noise of the same L-inf size is much weaker than the attack
10. class-count  DLR and targeted losses are not used with too few classes

Checks that need the model run on a seeded subsample of the clean-correct samples
(``--check-samples``, 48 by default) through the audit's counting model, so their cost is
counted and reported (``results["checks"]["cost"]``). Attacks come from the registry with
the audit's own budget parameters. In cascade mode the audit's per-attack numbers are
cumulative, so checks 4, 5 and 8 run PGD and FGSM *independently* on the subsample (with
``--independent`` check 5 uses the audit's own per-attack table instead).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from plugins.attacks._common import margin_loss, project

REFERENCES = (
    "Carlini et al., On Evaluating Adversarial Robustness, arXiv:1902.06705 (2019)",
    "Croce & Hein, AutoAttack checks.py (ICML 2020)",
    "Athalye et al., Obfuscated Gradients Give a False Sense of Security, ICML 2018",
)
DEFAULT_SAMPLES = 48
GRADIENT_FAIL_FRACTION = 0.10  # check 2: more samples than this with zero/non-finite gradients fails
DETERMINISM_REPEATS = 3
DETERMINISM_RTOL = 1e-4  # check 3: logit differences below 1e-4 * max(1, |logit|) are float noise
LARGE_EPS_255 = 64.0
LARGE_EPS_STEPS = 20
LARGE_EPS_PASS, LARGE_EPS_FAIL = 0.05, 0.20  # check 7: robust accuracy at 64/255
CONVERGENCE_RESTARTS = 3
NOISE_DRAWS = 8
NOISE_RATIO = 0.5  # check 9: noise must break at most half as many samples as the attack
STATUSES = ("pass", "warn", "fail", "skipped")


def check_result(check_id: int, key: str, name: str, status: str, message: str,
                 numbers: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    assert status in STATUSES, status
    return {"id": check_id, "key": key, "name": name, "status": status, "message": message,
            "numbers": numbers or {}, **extra}


def tolerance_samples(n: int, fraction: float, minimum: int) -> int:
    """The larger of ``minimum`` samples and ``fraction`` of ``n``: small subsamples are noisy."""
    return max(minimum, int(np.floor(fraction * n)))


def _acc(fooled: np.ndarray) -> float | None:
    return float(1 - fooled.mean()) if fooled.size else None


# ----------------------------------------------------------------- pure checks
def check_class_count(attacks: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    """Check 10, from the recorded attack parameters alone.

    DLR (Croce and Hein 2020) divides by z_pi1 - z_pi3: it needs 3 classes; its targeted
    form uses z_pi3 and z_pi4 and needs 4. A targeted attack needs another class to aim at,
    and ``n_target_classes`` may not exceed K - 1."""
    problems, seen = [], {}
    for attack in attacks:
        params = attack.get("params") or {}
        name = attack.get("name", "?")
        subs = [str(s).lower() for s in params.get("sub_attacks") or []]
        loss = str(params.get("loss") or "").lower()
        uses_dlr = "dlr" in loss or any("dlr" in s for s in subs)
        targeted_dlr = ("dlr" in loss and (params.get("targeted") or "targeted" in loss)) or any(
            s in ("apgd-t", "apgd-dlr-t") for s in subs)
        targeted = bool(params.get("targeted")) or any(s.endswith("-t") for s in subs)
        seen[name] = {"loss": loss or None, "sub_attacks": subs or None, "targeted": targeted}
        if targeted_dlr and num_classes < 4:
            problems.append(f"{name} uses the targeted DLR loss, which needs at least 4 classes")
        elif uses_dlr and num_classes < 3:
            problems.append(f"{name} uses the DLR loss, which needs at least 3 classes")
        if targeted and num_classes < 2:
            problems.append(f"{name} is targeted but the model has a single class")
        n_target = params.get("n_target_classes")
        if targeted and n_target is not None and int(n_target) > num_classes - 1:
            problems.append(f"{name} aims at {n_target} target classes but only {num_classes - 1} exist")
    numbers = {"num_classes": num_classes, "attacks": seen}
    threshold = "DLR needs >= 3 classes, targeted DLR >= 4, n_target_classes <= K - 1"
    if problems:
        return check_result(10, "class-count", "Losses suit the number of classes", "fail",
                            "; ".join(problems) + ": those sub-attacks are meaningless or crash", numbers,
                            threshold=threshold)
    return check_result(10, "class-count", "Losses suit the number of classes", "pass",
                        f"no DLR or targeted loss is used beyond what {num_classes} classes allow", numbers,
                        threshold=threshold)


def check_monotone_sequences(sequences: dict[str, list[tuple[float, int, int]]], judged: set[str],
                             fraction: float = 0.02, minimum: int = 1) -> dict[str, Any]:
    """Check 4: each sequence is (eps_255, n_robust, n) ascending in eps; a judged sequence
    whose robust count rises by more than the tolerance fails."""
    rises, numbers = [], {}
    for name, seq in sequences.items():
        numbers[name] = [{"eps_255": e, "robust_accuracy": (k / n if n else None), "n": n} for e, k, n in seq]
        for (e0, k0, n0), (e1, k1, _) in zip(seq, seq[1:]):
            tol = tolerance_samples(n0, fraction, minimum)
            if k1 > k0:
                rises.append((name, e0, e1, k1 - k0, tol, name in judged))
    bad = [r for r in rises if r[5] and r[3] > r[4]]
    numbers["rises"] = [{"sequence": r[0], "from_eps_255": r[1], "to_eps_255": r[2], "samples": r[3],
                         "tolerance_samples": r[4], "judged": r[5]} for r in rises]
    threshold = f"a rise of more than max({minimum} sample, {fraction:.0%}) between consecutive eps fails"
    name = "Robust accuracy never increases with eps"
    if bad:
        r = bad[0]
        return check_result(4, "monotone", name, "fail",
                            f"{r[0]} robust accuracy rises by {r[3]} samples from eps {r[1]:g} to {r[2]:g}/255: "
                            "a larger budget must not help the model; the attack is not converging", numbers,
                            tolerance=threshold)
    small = [r for r in rises if r[5]]
    note = f" ({len(small)} rise(s) within tolerance)" if small else ""
    return check_result(4, "monotone", name, "pass",
                        f"robust accuracy does not increase with eps in {len(judged)} sequence(s){note}", numbers,
                        tolerance=threshold)


# --------------------------------------------------------------- model checks
class ValidityChecks:
    """Runs the ten checks on a finished :class:`auditor.engine.ClassificationAudit`.

    Uses from the audit: ``prep`` (config, params, eps grid, probe, registry), ``ctx`` (the
    counting model), ``counter``, ``labels``, ``correct``, ``clean_pred`` and ``_batch``."""

    def __init__(self, audit: Any, results: dict[str, Any], samples: int = DEFAULT_SAMPLES) -> None:
        self.audit = audit
        self.results = results
        self.prep = audit.prep
        self.config = audit.prep.config
        self.ctx = audit.ctx
        self.model = audit.ctx.model
        self.registry = getattr(self.prep, "registry", None)
        if self.registry is None:
            from auditor.registry import get_registry

            self.registry = get_registry()
        correct = np.nonzero(audit.correct)[0]
        rng = np.random.default_rng(self.config.seed + 7919)
        take = min(len(correct), max(int(samples), 0))
        self.sub = np.sort(rng.choice(correct, size=take, replace=False)) if take else np.zeros(0, dtype=np.int64)
        self.eps_255 = list(self.prep.eps_255)
        self.eps_max = max(self.eps_255)
        self._fooled: dict[tuple[str, float], np.ndarray] = {}

    # -------------------------------------------------------------- helpers
    def _data(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = self.audit._batch(indices)
        return x, y

    def _chunks(self, indices: np.ndarray) -> list[np.ndarray]:
        bs = max(int(self.config.batch_size), 1)
        return [indices[i : i + bs] for i in range(0, len(indices), bs)]

    def _seed(self, tag: str, eps_255: float, chunk: int) -> int:
        from auditor.engine import step_seed

        return step_seed(self.config.seed, f"check:{tag}", eps_255, chunk)

    def attack_params(self, name: str) -> dict[str, Any]:
        """The audit's parameters for ``name`` when it was in the battery, else its own for the budget."""
        if name in self.prep.params:
            return dict(self.prep.params[name])
        attack = self.registry.get("attacks", name)
        return {**attack.parameters(self.config.budget, self.ctx), "backend": attack.default_backend}

    def run_attack(self, name: str, eps_255: float, params: dict[str, Any] | None = None,
                   tag: str | None = None, indices: np.ndarray | None = None) -> np.ndarray:
        """Which samples of ``indices`` (default: the subsample) the attack fools, with the
        engine's rules: seeded per chunk, result projected onto the eps ball and [0, 1]."""
        cacheable = params is None and indices is None
        indices = self.sub if indices is None else indices
        key = (tag or name, float(eps_255))
        if cacheable and key in self._fooled:
            return self._fooled[key]
        attack = self.registry.get("attacks", name)
        params = dict(params or self.attack_params(name))
        eps = eps_255 / 255.0
        fooled = np.zeros(len(indices), dtype=bool)
        offset = 0
        for chunk_no, chunk in enumerate(self._chunks(indices)):
            x, y = self._data(chunk)
            params["seed"] = self._seed(tag or name, eps_255, chunk_no)
            torch.manual_seed(params["seed"])
            np.random.seed(params["seed"] % 2**32)
            x_adv = attack.run(self.ctx, x, y, eps, params).x_adv.detach().to(x.dtype)
            x_adv = project(x_adv, x, eps)
            with torch.no_grad():
                fooled[offset : offset + len(chunk)] = (self.model(x_adv).argmax(1) != y).cpu().numpy()
            offset += len(chunk)
        if cacheable:
            self._fooled[key] = fooled
        return fooled

    def _audit_broken(self, eps_255: float) -> list[int]:
        """Samples any audit attack broke at any eps <= ``eps_255`` (the worst case's rule)."""
        broken: set[int] = set()
        for entry in self.results["attacks"]:
            if entry["eps_255"] <= eps_255:
                broken.update(entry["samples"]["broken"])
        return sorted(broken)

    def _timed(self, check_id: int, key: str, func: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        before = self.audit.counter.snapshot()
        t0 = time.perf_counter()
        try:
            result = func()
        except Exception as exc:  # noqa: BLE001 - a check that breaks must not sink the audit
            first = (str(exc).splitlines() or [""])[0]
            result = check_result(check_id, key, key, "skipped", f"could not run: {type(exc).__name__}: {first}")
        passes = self.audit.counter.since(before)
        result["cost"] = {"time_s": time.perf_counter() - t0, "forward_samples": passes["forward_samples"],
                          "backward_samples": passes["backward_samples"]}
        return result

    def _skip_if_empty(self, check_id: int, key: str, name: str) -> dict[str, Any] | None:
        if len(self.sub):
            return None
        return check_result(check_id, key, name, "skipped", "no clean-correct samples to attack")

    # --------------------------------------------------------------- checks
    def check_logits(self) -> dict[str, Any]:
        name = "Model outputs logits, not probabilities"
        probe = self.prep.probe
        indices = self.sub if len(self.sub) else np.arange(min(self.audit.n, DEFAULT_SAMPLES))
        with torch.no_grad():
            out = torch.cat([self.model(self._data(c)[0]).double() for c in self._chunks(indices)])
        in_unit = bool(((out >= 0) & (out <= 1)).all())
        sums = out.sum(1)
        softmax_like = in_unit and out.shape[1] > 1 and bool(((sums - 1).abs() <= 1e-3).all())
        sigmoid_like = in_unit and not softmax_like
        log_probs = bool((out <= 1e-6).all()) and bool((torch.logsumexp(out, 1).abs() <= 1e-3).all())
        data_kind = "softmax" if softmax_like else "sigmoid" if sigmoid_like else "log-softmax" if log_probs else None
        numbers = {"probe_kind": getattr(probe, "probability_kind", None), "data_kind": data_kind,
                   "output_min": float(out.min()), "output_max": float(out.max()),
                   "row_sum_mean": float(sums.mean()), "n": len(indices),
                   "allow_probabilities": bool(self.config.allow_probabilities)}
        if data_kind in ("softmax", "sigmoid") or getattr(probe, "looks_like_probabilities", False):
            kind = data_kind or numbers["probe_kind"]
            return check_result(1, "logits", name, "fail",
                                f"outputs are {kind} probabilities (all in [0, 1]"
                                f"{', rows sum to 1' if kind == 'softmax' else ''}): saturated probabilities give "
                                "attacks vanishing gradients, so robustness is overstated; audit the model without "
                                "its final layer", numbers, threshold="outputs all in [0, 1] (and rows summing to 1)")
        note = " (log-probabilities, fine for gradients)" if data_kind == "log-softmax" else ""
        return check_result(1, "logits", name, "pass",
                            f"outputs range {numbers['output_min']:.3g} to {numbers['output_max']:.3g}: logits{note}",
                            numbers, threshold="outputs all in [0, 1] (and rows summing to 1)")

    def check_gradients(self) -> dict[str, Any]:
        name = "Input gradients are informative"
        skipped = self._skip_if_empty(2, "gradients", name)
        if skipped:
            return skipped
        zero_ce = zero_margin = nonfinite = 0
        norms = []
        for chunk in self._chunks(self.sub):
            x, y = self._data(chunk)
            for loss in ("ce", "margin"):
                xg = x.detach().clone().requires_grad_(True)
                logits = self.model(xg)
                value = F.cross_entropy(logits, y, reduction="sum") if loss == "ce" else margin_loss(logits, y).sum()
                (grad,) = torch.autograd.grad(value, xg)
                flat = grad.flatten(1)
                finite = torch.isfinite(flat).all(1)
                zero = finite & (flat.abs().amax(1) == 0)
                if loss == "ce":
                    zero_ce += int(zero.sum())
                    nonfinite += int((~finite).sum())
                    norms.extend(flat[finite].abs().mean(1).double().cpu().tolist())
                else:
                    zero_margin += int(zero.sum())
                    nonfinite += int((~finite).sum())
        n = len(self.sub)
        numbers = {"n": n, "zero_ce": zero_ce, "zero_margin": zero_margin, "nonfinite": nonfinite,
                   "zero_ce_fraction": zero_ce / n, "zero_margin_fraction": zero_margin / n,
                   "mean_abs_gradient_median": float(np.median(norms)) if norms else None}
        threshold = (f"fail when any gradient is NaN/Inf or more than {GRADIENT_FAIL_FRACTION:.0%} of samples have a "
                     "zero gradient; warn on any zero gradient")
        worst = max(zero_ce, zero_margin)
        if nonfinite or worst > GRADIENT_FAIL_FRACTION * n:
            what = f"{nonfinite} NaN/Inf" if nonfinite else f"{worst} of {n} zero"
            return check_result(2, "gradients", name, "fail",
                                f"{what} input gradients (cross-entropy {zero_ce}, margin {zero_margin}): gradients "
                                "are masked (e.g. quantisation or a non-differentiable step), so gradient attacks "
                                "cannot find adversarial examples that exist", numbers, threshold=threshold)
        if worst:
            return check_result(2, "gradients", name, "warn",
                                f"{worst} of {n} samples have a zero input gradient (cross-entropy {zero_ce}, "
                                f"margin {zero_margin}): saturated or masked there; margin-loss attacks help", numbers,
                                threshold=threshold)
        return check_result(2, "gradients", name, "pass",
                            f"all {n} samples have finite, non-zero gradients of the cross-entropy and margin losses",
                            numbers, threshold=threshold)

    def check_determinism(self) -> dict[str, Any]:
        name = "Repeated forward passes agree"
        indices = self.sub if len(self.sub) else np.arange(min(self.audit.n, DEFAULT_SAMPLES))
        outs = []
        with torch.no_grad():
            for _ in range(DETERMINISM_REPEATS):
                outs.append(torch.cat([self.model(self._data(c)[0]).double() for c in self._chunks(indices)]))
        stack = torch.stack(outs)
        diff = float((stack - stack[0]).abs().max())
        scale = max(1.0, float(stack.abs().max()))
        preds = stack.argmax(2)
        changed = int((preds != preds[0]).any(0).sum())
        vs_clean = int((preds[0].cpu().numpy() != self.audit.clean_pred[indices]).sum())
        training = sorted({type(m).__name__ for m in self.model.modules()
                           if m.training and isinstance(m, (torch.nn.Dropout, torch.nn.modules.batchnorm._BatchNorm))})
        tol = DETERMINISM_RTOL * scale
        numbers = {"n": len(indices), "repeats": DETERMINISM_REPEATS, "max_abs_logit_diff": diff,
                   "tolerance": tol, "predictions_changed": changed, "differ_from_clean_pass": vs_clean,
                   "modules_in_training_mode": training}
        threshold = f"logits agree within {DETERMINISM_RTOL:g} x max(1, |logit|) and no prediction changes"
        if changed or vs_clean or diff > tol:
            return check_result(3, "determinism", name, "fail",
                                f"the model is randomised: logits differ by up to {diff:.3g} and "
                                f"{changed + vs_clean} of "
                                f"{len(indices)} predictions change between identical passes; gradient attacks need "
                                "EoT (averaging over the randomness, Athalye et al. 2018), which medaudit does not do, "
                                "so robustness is overstated", numbers, threshold=threshold)
        return check_result(3, "determinism", name, "pass",
                            f"{DETERMINISM_REPEATS} passes over {len(indices)} samples agree (max logit difference "
                            f"{diff:.2g})", numbers, threshold=threshold)

    def check_monotone(self) -> dict[str, Any]:
        sequences: dict[str, list[tuple[float, int, int]]] = {}
        judged: set[str] = set()
        worst = self.results.get("worst_case") or []
        sequences["worst_case (audit, by construction)"] = [(w["eps_255"], w["n_robust"], w["n"]) for w in worst]
        if self.results["config"]["mode"] == "independent":
            by_attack: dict[str, list[tuple[float, int, int]]] = {}
            for entry in self.results["attacks"]:
                k = int(round(entry["robust_accuracy"] * entry["n"]))
                by_attack.setdefault(entry["attack"], []).append((entry["eps_255"], k, entry["n"]))
            for attack, seq in by_attack.items():
                label = f"{attack} (audit, independent)"
                sequences[label] = sorted(seq)
                if attack != "fgsm":  # one fixed step of size eps may overshoot: reported, not judged
                    judged.add(label)
        if len(self.sub):
            seq = [(e, int((~self.run_attack("pgd", e)).sum()), len(self.sub)) for e in self.eps_255]
            sequences["pgd (check subsample, independent)"] = seq
            judged.add("pgd (check subsample, independent)")
        judged.add("worst_case (audit, by construction)")
        return check_monotone_sequences(sequences, judged)

    def check_iterative(self) -> dict[str, Any]:
        name = "PGD is at least as strong as FGSM"
        attacks = {(a["attack"], a["eps_255"]): a for a in self.results["attacks"]}
        rows = []
        if self.results["config"]["mode"] == "independent" and all(
                (a, e) in attacks for a in ("pgd", "fgsm") for e in self.eps_255):
            source = "audit (independent mode, every clean-correct sample)"
            for e in self.eps_255:
                n = attacks[("pgd", e)]["n"]
                rows.append((e, int(round(attacks[("pgd", e)]["robust_accuracy"] * n)),
                             int(round(attacks[("fgsm", e)]["robust_accuracy"] * n)), n))
        else:
            skipped = self._skip_if_empty(5, "iterative", name)
            if skipped:
                return skipped
            source = (f"check subsample of {len(self.sub)} clean-correct samples, PGD and FGSM run independently "
                      "(the audit's cascade numbers are cumulative)")
            for e in self.eps_255:
                rows.append((e, int((~self.run_attack("pgd", e)).sum()), int((~self.run_attack("fgsm", e)).sum()),
                             len(self.sub)))
        tol = tolerance_samples(rows[0][3], 0.02, 1)
        numbers = {"source": source, "tolerance_samples": tol, "per_eps": [
            {"eps_255": e, "pgd_robust_accuracy": kp / n, "fgsm_robust_accuracy": kf / n, "n": n}
            for e, kp, kf, n in rows]}
        threshold = f"PGD robust count <= FGSM's + max(1 sample, 2%) at every eps"
        bad = [(e, kp, kf, n) for e, kp, kf, n in rows if kp > kf + tol]
        if bad:
            e, kp, kf, n = bad[0]
            return check_result(5, "iterative", name, "fail",
                                f"at eps {e:g}/255 PGD leaves {kp} of {n} robust but one FGSM step only {kf}: the "
                                "iterative attack is not working (step size, loss or masked gradients)", numbers,
                                tolerance=threshold)
        return check_result(5, "iterative", name, "pass",
                            "PGD robust accuracy <= FGSM's at every eps ("
                            + ", ".join(f"{e:g}: {kp / n:.2f} vs {kf / n:.2f}" for e, kp, kf, n in rows) + ")",
                            numbers, tolerance=threshold)

    def check_black_box(self) -> dict[str, Any]:
        name = "Black-box attacks do not beat white-box"
        attacks = self.results["attacks"]
        mode = self.results["config"]["mode"]
        black = [a for a in self.prep.attacks if a.threat_model == "black-box"]
        n_all = self.audit.n
        rows = []
        threshold = ("fails when black-box attacks break more than max(2 samples, 2%) of the samples that PGD / "
                     "the white-box attacks left robust")
        if black and mode == "cascade" and all(
                self.prep.attacks.index(b) > max((i for i, a in enumerate(self.prep.attacks)
                                                  if a.threat_model != "black-box"), default=-1) for b in black):
            # AutoAttack's own check: in a cascade the black-box attacks only see samples every
            # white-box attack failed on, so anything they break is extra.
            source = "audit cascade: samples the black-box attacks broke after every white-box attack failed"
            for e in self.eps_255:
                extra = sum(a["n_broken"] for a in attacks if a["eps_255"] == e and a["threat_model"] == "black-box")
                extra += sum(int((a.get("details") or {}).get("broken_by", {}).get("square", 0))
                             for a in attacks if a["eps_255"] == e and a["attack"] == "autoattack")
                rows.append({"eps_255": e, "extra_broken": extra, "n": n_all})
            tol = tolerance_samples(n_all, 0.02, 2)
        elif black and mode == "independent" and any(a["attack"] == "pgd" for a in attacks):
            source = "audit (independent mode): samples a black-box attack broke and PGD did not, every sample"
            for e in self.eps_255:
                pgd = next((a for a in attacks if a["attack"] == "pgd" and a["eps_255"] == e), None)
                bbs = [a for a in attacks if a["eps_255"] == e and a["threat_model"] == "black-box"]
                if pgd is None or not bbs:
                    continue
                extra = set().union(*(a["samples"]["broken"] for a in bbs)) - set(pgd["samples"]["broken"])
                rows.append({"eps_255": e, "extra_broken": len(extra), "n": n_all})
            tol = tolerance_samples(n_all, 0.02, 2)
        else:
            skipped = self._skip_if_empty(6, "black-box", name)
            if skipped:
                return skipped
            params = self.attack_params("square")
            params["queries"] = min(int(params.get("queries", 1000)), 1000)
            pgd = self.run_attack("pgd", self.eps_max)
            survivors = self.sub[~pgd]
            square = (self.run_attack("square", self.eps_max, params, tag="square", indices=survivors)
                      if len(survivors) else np.zeros(0, dtype=bool))
            source = (f"Square ({params['queries']} queries) on the check-subsample samples PGD left robust at eps "
                      f"{self.eps_max:g}/255 (no usable black-box attack in the audit)")
            rows.append({"eps_255": self.eps_max, "extra_broken": int(square.sum()), "n": len(self.sub),
                         "pgd_robust_accuracy": _acc(pgd), "square_attacked": int(len(survivors))})
            tol = tolerance_samples(len(self.sub), 0.02, 2)
        numbers = {"source": source, "tolerance_samples": tol, "per_eps": rows}
        bad = [r for r in rows if r["extra_broken"] > tol]
        if bad:
            r = bad[0]
            return check_result(6, "black-box", name, "fail",
                                f"at eps {r['eps_255']:g}/255 black-box attacks break {r['extra_broken']} of {r['n']} "
                                "samples more than the gradient attacks: gradients are probably masked, so the "
                                "white-box numbers overstate robustness", numbers, tolerance=threshold)
        most = max((r["extra_broken"] for r in rows), default=0)
        return check_result(6, "black-box", name, "pass",
                            f"black-box attacks break at most {max(most, 0)} samples beyond the gradient attacks "
                            f"(tolerance {tol})", numbers, tolerance=threshold)

    def check_large_eps(self) -> dict[str, Any]:
        name = "A very large budget breaks (almost) everything"
        skipped = self._skip_if_empty(7, "large-eps", name)
        if skipped:
            return skipped
        eps_255 = min(255.0, max(LARGE_EPS_255, 4 * self.eps_max))
        params = {**self.attack_params("pgd"), "steps": LARGE_EPS_STEPS, "step_size_eps_fraction": 0.125,
                  "step_size_255": None, "restarts": 0}
        fooled = self.run_attack("pgd", eps_255, params, tag="pgd-large")
        acc = _acc(fooled)
        n = len(self.sub)
        numbers = {"eps_255": eps_255, "steps": LARGE_EPS_STEPS, "step_size": "eps/8", "n": n,
                   "robust_accuracy": acc, "n_robust": int((~fooled).sum())}
        threshold = (f"pass when robust accuracy <= max(1 sample, {LARGE_EPS_PASS:.0%}), "
                     f"fail above {LARGE_EPS_FAIL:.0%}")
        if acc > LARGE_EPS_FAIL:
            status = "fail"
            message = (f"PGD at eps {eps_255:g}/255 leaves {acc:.0%} of {n} samples correct: at this budget the image "
                       "can be replaced almost entirely, so the attack or its gradients are broken")
        elif (~fooled).sum() > max(1, LARGE_EPS_PASS * n):
            status = "warn"
            message = f"PGD at eps {eps_255:g}/255 still leaves {acc:.0%} of {n} samples correct; expected about 0"
        else:
            status = "pass"
            message = f"PGD at eps {eps_255:g}/255 drives accuracy on {n} samples to {acc:.0%}"
        return check_result(7, "large-eps", name, status, message, numbers, threshold=threshold)

    def check_convergence(self) -> dict[str, Any]:
        name = "PGD has converged"
        skipped = self._skip_if_empty(8, "convergence", name)
        if skipped:
            return skipped
        # what the audit reports: its worst case (every attack, every eps <= e) plus the
        # subsample's own audit-budget PGD
        base = {e: self.run_attack("pgd", e) | np.isin(self.sub, self._audit_broken(e)) for e in self.eps_255}
        left = [e for e in self.eps_255 if (~base[e]).any()]
        n = len(self.sub)
        margin = tolerance_samples(n, 0.05, 3)
        threshold = f"stronger PGD may break at most max(3 samples, 5%) that the audit left robust: {margin} of {n}"
        if not left:
            return check_result(8, "convergence", name, "pass",
                                f"the audit already breaks all {n} subsample points at every eps", {"n": n},
                                tolerance=threshold)
        eps = max(left)  # the largest eps at which the audit leaves survivors says most about the budget
        params = self.attack_params("pgd")
        strong = {**params, "steps": 2 * int(params.get("steps", 10)),
                  "restarts": max(CONVERGENCE_RESTARTS, int(params.get("restarts", 0)))}
        # only the survivors: what the stronger attack adds is all this check asks
        survivors = self.sub[~base[eps]]
        extra = int(self.run_attack("pgd", eps, strong, tag="pgd-strong", indices=survivors).sum())
        numbers = {"eps_255": eps, "n": n, "audit": {"pgd_steps": params.get("steps"),
                                                     "pgd_restarts": params.get("restarts"),
                                                     "robust_accuracy": _acc(base[eps])},
                   "strong_pgd": {"steps": strong["steps"], "restarts": strong["restarts"],
                                  "attacked": int(len(survivors)),
                                  "robust_accuracy": (int((~base[eps]).sum()) - extra) / n},
                   "extra_broken": extra, "margin_samples": margin}
        if extra > margin:
            return check_result(8, "convergence", name, "fail",
                                f"PGD with {strong['steps']} steps and {strong['restarts']} restarts breaks {extra} of "
                                f"{n} samples the audit (PGD {params.get('steps')} steps) missed at eps {eps:g}/255: "
                                "the attack budget is too small; rerun with --budget thorough", numbers,
                                tolerance=threshold)
        return check_result(8, "convergence", name, "pass",
                            f"twice the steps and {strong['restarts']} restarts break {extra} more of {n} at eps "
                            f"{eps:g}/255 (margin {margin})", numbers, tolerance=threshold)

    def check_noise(self) -> dict[str, Any]:
        name = "Random noise is much weaker than the attack"
        skipped = self._skip_if_empty(9, "noise", name)
        if skipped:
            return skipped
        eps_255 = self.eps_max
        eps = eps_255 / 255.0
        noise_fooled = np.zeros(len(self.sub), dtype=bool)
        offset = 0
        for chunk_no, chunk in enumerate(self._chunks(self.sub)):
            x, y = self._data(chunk)
            gen = torch.Generator(device=x.device).manual_seed(self._seed("noise", eps_255, chunk_no))
            with torch.no_grad():
                for _ in range(NOISE_DRAWS):
                    noise = (torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1) * eps
                    pred = self.model(project(x + noise, x, eps)).argmax(1)
                    noise_fooled[offset : offset + len(chunk)] |= (pred != y).cpu().numpy()
            offset += len(chunk)
        attack_fooled = np.isin(self.sub, self._audit_broken(eps_255)) | self.run_attack("pgd", eps_255)
        n = len(self.sub)
        k_noise, k_attack = int(noise_fooled.sum()), int(attack_fooled.sum())
        numbers = {"eps_255": eps_255, "n": n, "draws": NOISE_DRAWS, "noise_broken": k_noise,
                   "attack_broken": k_attack, "noise_success": k_noise / n, "attack_success": k_attack / n,
                   "attack": "audit worst case plus the check's own PGD"}
        threshold = (f"fail when noise breaks at least as many samples as the attack; warn when more than "
                     f"{NOISE_RATIO:.0%} as many")
        if k_noise and k_noise >= k_attack:
            return check_result(9, "noise", name, "fail",
                                f"uniform noise of L-inf {eps_255:g}/255 ({NOISE_DRAWS} draws) breaks {k_noise} of {n} "
                                f"samples, the attacks only {k_attack}: the attacks are not following useful "
                                "gradients", numbers, threshold=threshold)
        if k_noise > NOISE_RATIO * k_attack:
            return check_result(9, "noise", name, "warn",
                                f"uniform noise breaks {k_noise} of {n} samples, not much fewer than the attacks' "
                                f"{k_attack}", numbers, threshold=threshold)
        return check_result(9, "noise", name, "pass",
                            f"uniform noise of L-inf {eps_255:g}/255 breaks {k_noise} of {n} samples, the attacks "
                            f"{k_attack}", numbers, threshold=threshold)

    def check_class_count(self) -> dict[str, Any]:
        return check_class_count(self.results["config"]["attacks"], self.prep.num_classes)

    # ------------------------------------------------------------------ run
    def run(self, progress: Any = None) -> dict[str, Any]:
        checks = [("logits", self.check_logits), ("gradients", self.check_gradients),
                  ("determinism", self.check_determinism), ("monotone", self.check_monotone),
                  ("iterative", self.check_iterative), ("black-box", self.check_black_box),
                  ("large-eps", self.check_large_eps), ("convergence", self.check_convergence),
                  ("noise", self.check_noise), ("class-count", self.check_class_count)]
        before = self.audit.counter.snapshot()
        t0 = time.perf_counter()
        items = []
        for i, (key, check) in enumerate(checks, 1):
            items.append(self._timed(i, key, check))
            if progress is not None:
                progress.advance(1)
        passes = self.audit.counter.since(before)
        return summarise_checks(items, {
            "time_s": time.perf_counter() - t0, "forward_samples": passes["forward_samples"],
            "backward_samples": passes["backward_samples"],
        }, subsample={"n": int(len(self.sub)), "of_clean_correct": int(self.audit.correct.sum()),
                      "indices": [int(i) for i in self.sub], "seed": self.config.seed})


def summarise_checks(items: list[dict[str, Any]], cost: dict[str, Any] | None = None,
                     subsample: dict[str, Any] | None = None) -> dict[str, Any]:
    counts = {s: sum(1 for it in items if it["status"] == s) for s in STATUSES}
    verdict = "fail" if counts["fail"] else "warn" if counts["warn"] else "pass"
    return {"verdict": verdict, "summary": counts, "items": items, "subsample": subsample,
            "cost": cost, "references": list(REFERENCES)}


def skipped_checks(reason: str) -> dict[str, Any]:
    """``results["checks"]`` when the user turned the checks off."""
    out = summarise_checks([])
    out.update({"verdict": "skipped", "reason": reason})
    return out


def run_checks(audit: Any, results: dict[str, Any], samples: int = DEFAULT_SAMPLES,
               progress: Any = None) -> dict[str, Any]:
    """Run every validity check on a finished classification audit."""
    return ValidityChecks(audit, results, samples).run(progress)

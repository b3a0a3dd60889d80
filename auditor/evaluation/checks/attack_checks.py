"""Checks of the attacks: 4 monotone, 5 iterative, 6 black-box, 7 large eps, 8 convergence,
9 noise, 10 class count (from the recorded parameters)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditor.evaluation.checks.base import (CONVERGENCE_RESTARTS, LARGE_EPS_255, LARGE_EPS_FAIL, LARGE_EPS_PASS,
                                           LARGE_EPS_STEPS, NOISE_DRAWS, NOISE_RATIO, CheckBase, acc_of,
                                           check_result, tolerance_samples)
from auditor.evaluation.battery import WHITE_BOX, broken_up_to
from auditor.evaluation.checks.pure import check_class_count, check_monotone_sequences
from auditor.numerics import project


class AttackChecks(CheckBase):
    """Checks 4 to 10; mixed into :class:`auditor.evaluation.checks.ValidityChecks`."""

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
            tol = tolerance_samples(len(self.sub), 0.02, 2)
            # with no more survivors than the tolerance Square cannot fail the check: not run
            square = (self.run_attack("square", self.eps_max, params, tag="square", indices=survivors)
                      if len(survivors) > tol else np.zeros(0, dtype=bool))
            source = (f"Square ({params['queries']} queries) on the check-subsample samples PGD left robust at eps "
                      f"{self.eps_max:g}/255 (no usable black-box attack in the audit)")
            rows.append({"eps_255": self.eps_max, "extra_broken": int(square.sum()), "n": len(self.sub),
                         "pgd_robust_accuracy": acc_of(pgd), "square_attacked": int(len(square)),
                         "pgd_survivors": int(len(survivors))})
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
        # A sample a white-box audit attack broke inside a smaller ball is broken in this one
        # (the worst case's rule); only the others can show that gradients fail at 64/255.
        by_audit = broken_up_to(self.results, self.audit.n, self.eps_max, WHITE_BOX)[self.sub]
        fooled = by_audit.copy()
        if (~by_audit).any():
            fooled[~by_audit] = self.run_attack("pgd", eps_255, params, tag="pgd-large", indices=self.sub[~by_audit])
        acc = acc_of(fooled)
        n = len(self.sub)
        numbers = {"eps_255": eps_255, "steps": LARGE_EPS_STEPS, "step_size": "eps/8", "n": n,
                   "robust_accuracy": acc, "n_robust": int((~fooled).sum()),
                   "broken_by_audit_white_box": int(by_audit.sum()), "attacked": int((~by_audit).sum())}
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
        if len(survivors) <= margin:  # breaking every one of them stays within the margin: the verdict is fixed
            return check_result(8, "convergence", name, "pass",
                                f"the audit leaves {len(survivors)} of {n} robust at eps {eps:g}/255, no more than the "
                                f"margin ({margin}): no stronger PGD can fail this check, so none was run",
                                {"eps_255": eps, "n": n, "survivors": int(len(survivors)), "margin_samples": margin,
                                 "strong_pgd": {"steps": strong["steps"], "restarts": strong["restarts"],
                                                "attacked": 0}}, tolerance=threshold)
        extra = int(self.run_attack("pgd", eps, strong, tag="pgd-strong", indices=survivors).sum())
        numbers = {"eps_255": eps, "n": n, "audit": {"pgd_steps": params.get("steps"),
                                                     "pgd_restarts": params.get("restarts"),
                                                     "robust_accuracy": acc_of(base[eps])},
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
        for chunk in self._chunks(self.sub):
            x, y = self._data(chunk)
            streams = self._streams("noise", eps_255, chunk, x.device)
            with torch.no_grad():
                for _ in range(NOISE_DRAWS):
                    noise = (streams.rand(x.shape[1:]).to(x.dtype) * 2 - 1) * eps
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

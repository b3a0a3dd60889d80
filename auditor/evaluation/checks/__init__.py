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
11. degenerate   the clean model classifies at all: not one class for nearly everything,
                 not at chance, not unsure everywhere (from the clean pass; no model calls)

Checks that need the model run on a seeded subsample of the clean-correct samples
(``--check-samples``, 48 by default) through the audit's counting model, so their cost is
counted and reported (``results["checks"]["cost"]``). Attacks come from the registry with
the audit's own budget parameters. In cascade mode the audit's per-attack numbers are
cumulative, so checks 4, 5 and 8 run PGD and FGSM *independently* on the subsample (with
``--independent`` check 5 uses the audit's own per-attack table instead).

Nothing is computed twice (issue 20; ``auditor.evaluation.battery``): where the audit's own
step already attacked a subsample sample with the same attack and parameters at an eps, the
checks take its answer; on two-class models PGD's answer comes from the clinical targeted
PGD's trajectory (the same sign steps); check 7 attacks only the samples no white-box audit
attack broke at a smaller eps, and check 8 only the samples the audit left robust.
``results["checks"]["subsample"]["reuse"]`` counts the sample x eps answers read back and
the ones attacked here.
"""

from __future__ import annotations

from typing import Any

from auditor.evaluation.checks.attack_checks import AttackChecks
from auditor.evaluation.checks.base import DEFAULT_SAMPLES, REFERENCES, STATUSES, check_result, skipped_checks, summarise_checks
from auditor.evaluation.checks.model_checks import ModelChecks
from auditor.evaluation.checks.pure import check_class_count, check_degenerate, check_monotone_sequences
from auditor.query_target import QueryTarget, query_target

__all__ = ["DEFAULT_SAMPLES", "REFERENCES", "STATUSES", "ValidityChecks", "check_class_count",
           "check_degenerate", "check_monotone_sequences", "check_result", "run_checks", "skipped_checks", "summarise_checks"]


class ValidityChecks(ModelChecks, AttackChecks):
    """Runs the eleven checks on a finished classification audit (see the module docstring)."""

    def run(self, progress: Any = None) -> dict[str, Any]:
        checks = [("logits", self.check_logits), ("gradients", self.check_gradients),
                  ("determinism", self.check_determinism), ("monotone", self.check_monotone),
                  ("iterative", self.check_iterative), ("black-box", self.check_black_box),
                  ("large-eps", self.check_large_eps), ("convergence", self.check_convergence),
                  ("noise", self.check_noise), ("class-count", self.check_class_count),
                  ("degenerate", self.check_degenerate)]
        target = query_target(self.prep.model.module)
        if target is not None:  # the others run PGD/FGSM or read gradients: skipped, saying why
            checks = [(key, check if key in QUERY_ONLY_CHECKS else _skipped_for(target, i, key))
                      for i, (key, check) in enumerate(checks, 1)]
        out = self.run_items([(i, key, check) for i, (key, check) in enumerate(checks, 1)], progress,
                             {"n": int(len(self.sub)), "of_clean_correct": int(self.audit.correct.sum()),
                              "indices": [int(i) for i in self.sub], "seed": self.config.seed})
        out["subsample"]["reuse"] = dict(self.reuse)  # sample x eps answers read back, not recomputed
        return out


QUERY_ONLY_CHECKS = frozenset({"logits", "determinism", "class-count", "degenerate"})


def _skipped_for(target: QueryTarget, check_id: int, key: str) -> Any:
    def skipped() -> dict[str, Any]:
        return check_result(check_id, key, key, "skipped", f"needs input gradients (it runs white-box PGD/FGSM or reads "
                                                    f"gradients); the {target.kind} answers queries only")
    return skipped


def run_checks(audit: Any, results: dict[str, Any], samples: int = DEFAULT_SAMPLES,
               progress: Any = None) -> dict[str, Any]:
    """Run every validity check on a finished classification audit."""
    return ValidityChecks(audit, results, samples).run(progress)

"""The checks and the clinical targeted attacks reuse what the battery computed (issue 20)
without losing what they detect: the reused answers are the ones a fresh run would give,
and a gradient-masked model still fails its checks."""

from __future__ import annotations

import numpy as np
import torch

from auditor.accounting import PassCounter
from auditor.architectures import SmallCNN
from auditor.evaluation.battery import step_outcomes
from auditor.interfaces import AttackContext
from plugins.attacks.pgd import pgd_native
from plugins.attacks.targeted_pgd import TargetedPGD
from tests.checks.conftest import status_of


def test_targeted_pgd_towards_the_other_class_is_untargeted_pgd_on_two_classes():
    """What lets the checks read PGD's answer from the clinical trajectory: same sign steps."""
    torch.manual_seed(0)
    model = SmallCNN(3, 2, width=8).eval()
    x = torch.rand(12, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(1)  # clean-correct by construction
    eps, alpha, steps = 8 / 255, 2 / 255, 10
    x_pgd = pgd_native(model, x, y, eps, alpha, steps, 0, "ce", seed=0)
    with torch.no_grad():
        fooled = (model(x_pgd).argmax(1) != y).numpy()
    ctx = AttackContext(model=model, device=torch.device("cpu"), num_classes=2, input_shape=(3, 32, 32),
                        task="classification", seed=0, batch_size=12, counter=PassCounter())
    params = {"steps": steps, "restarts": 0, "step_size_eps_fraction": 0.25, "step_size_255": None, "seed": 0}
    result = TargetedPGD().run(ctx, x, 1 - y, eps, params)
    assert np.array_equal(result.outputs["final_hit"].numpy(), fooled)
    assert fooled.any() and result.outputs["hit"].numpy()[fooled].all()


def test_every_step_of_an_audit_is_reconstructed_exactly(audited):
    results = audited("honest")
    correct = np.asarray(results["samples"]["labels"]) == np.asarray(results["samples"]["clean_pred"])
    outcomes = step_outcomes(results, correct)
    assert set(outcomes) == {(a["attack"], float(a["eps_255"])) for a in results["attacks"]}
    for entry in results["attacks"]:
        outcome = outcomes[(entry["attack"], float(entry["eps_255"]))]
        assert int(outcome["attacked"].sum()) == entry["n_attacked"]
        assert sorted(np.nonzero(outcome["broken"])[0].tolist()) == sorted(entry["samples"]["broken"])


def test_a_shuffled_schedule_is_not_reused():
    """A record whose attacked set does not follow from the schedule is dropped, not guessed."""
    correct = np.array([True, True, True, False])
    results = {"config": {"mode": "cascade"}, "attacks": [
        {"attack": "fgsm", "eps_255": 2.0, "n_attacked": 3, "samples": {"broken": [0]}},
        {"attack": "pgd", "eps_255": 2.0, "n_attacked": 3, "samples": {"broken": [1]}}]}  # cascade: 2, not 3
    assert set(step_outcomes(results, correct)) == {("fgsm", 2.0)}


def test_masked_model_still_fails_when_the_checks_reuse_the_battery(audited):
    """round(x*8)/8 after the optimisation: PGD answers come from the battery and the clinical
    trajectories, check 7 attacks every sample (no white-box audit attack broke one), and the
    gradient, large-eps, black-box and noise checks still fail."""
    results = audited("quantised")
    reuse = results["checks"]["subsample"]["reuse"]
    assert reuse["from_battery"] + reuse["from_targeted"] > 0
    items = {i["key"]: i for i in results["checks"]["items"]}
    large = items["large-eps"]["numbers"]
    assert large["broken_by_audit_white_box"] == 0 and large["attacked"] == large["n"]
    status = status_of(results)
    assert [status[k] for k in ("gradients", "large-eps", "black-box", "noise")] == ["fail"] * 4


def test_honest_audit_reads_pgd_back_instead_of_rerunning_it(audited):
    results = audited("honest")
    reuse = results["checks"]["subsample"]["reuse"]
    n, eps_count = results["checks"]["subsample"]["n"], len(results["config"]["eps_255"])
    # two classes and a positive class: every PGD answer at every eps is read back
    assert reuse["from_battery"] + reuse["from_targeted"] >= n * eps_count
    assert results["targeted"]["passes"]["backward_samples"] > 0


def _three_class_audit(broken: list[int], adv_pred: list[int]):
    """A finished three-class audit of a tiny seeded CNN on 9 images it classifies correctly
    by construction, whose battery broke ``broken`` into ``adv_pred`` at eps 8/255."""
    from types import SimpleNamespace

    from auditor.accounting import CountingModel
    from auditor.registry import get_registry
    from plugins.attacks.pgd import BUDGET

    torch.manual_seed(1)
    model = SmallCNN(3, 3, width=8).eval()
    x = torch.rand(9, 3, 32, 32)
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)
    labels = probs.argmax(1).numpy()
    counter = PassCounter()
    ctx = AttackContext(model=CountingModel(model, counter).eval(), device=torch.device("cpu"), num_classes=3,
                        input_shape=(3, 32, 32), task="classification", seed=0, batch_size=4, counter=counter)
    config = SimpleNamespace(seed=0, batch_size=4, budget="quick")
    prep = SimpleNamespace(config=config, num_classes=3, registry=get_registry(), eps_255=[8.0],
                           class_names=["a", "b", "c"], params={"pgd": {**BUDGET["quick"], "backend": "native"}})
    audit = SimpleNamespace(prep=prep, ctx=ctx, counter=counter, n=9, labels=labels, correct=np.ones(9, dtype=bool),
                            clean_probs=probs.numpy(), _batch=lambda idx: (x[idx], torch.as_tensor(labels[idx]), None))
    results = {"attacks": [{"attack": "pgd", "eps_255": 8.0,
                            "samples": {"broken": broken, "adv_pred": adv_pred, "adv_confidence": [0.9] * len(broken)}}]}
    return audit, results, labels


def test_more_classes_do_not_attack_again_what_the_battery_pushed_into_the_target():
    from auditor.evaluation.clinical import run_targeted

    audit, results, labels = _three_class_audit([], [])
    positive = {"index": int(labels[0]), "name": "x"}
    fresh, _ = run_targeted(audit, positive, results)
    # sample 1 broken by the battery into its target (the positive class, or for a positive
    # its likeliest other class): a hit without a targeted run
    others = audit.clean_probs.copy()
    others[:, positive["index"]] = -1
    target = int(others[1].argmax()) if labels[1] == positive["index"] else positive["index"]
    audit2, results2, _ = _three_class_audit([1], [target])
    reused, _ = run_targeted(audit2, positive, results2)
    steps = int(audit.prep.params["pgd"]["steps"])
    assert fresh["passes"]["forward_samples"] - reused["passes"]["forward_samples"] == steps + 1
    key = "positive_to_negative" if labels[1] == positive["index"] else "negative_to_positive"
    assert reused["per_eps"][0][key]["k"] >= max(1, fresh["per_eps"][0][key]["k"])


def test_settled_in_ranking_is_strict() -> None:
    from auditor.evaluation.clinical import settled_in_ranking

    scores = np.array([0.05, 0.30, 0.20, 0.20, 0.90, 0.10])
    positive = np.array([True, True, False, False, False, True])
    # negatives' lowest score is 0.20: positives 0.05 and 0.10 are below it; 0.30 is not.
    # Positives' highest is 0.30: only the negative at 0.90 is above it; a tie is never settled.
    assert settled_in_ranking(scores, positive).tolist() == [True, False, False, False, True, True]
    assert not settled_in_ranking(scores, np.ones(6, dtype=bool)).any()  # one class: no ranking


def test_settled_samples_are_not_attacked_again_and_nothing_moves(check_workdir, monkeypatch, tmp_path) -> None:
    """Skipping samples whose rank is final, and stopping those that reach it during the
    attack, changes no AUROC, interval, targeted rate or check, and spends fewer passes than
    attacking every sample at every eps to the last step."""
    import warnings

    import auditor.evaluation.clinical as clinical
    from auditor.audit import run_audit
    from auditor.registry import get_registry
    from tests.checks.conftest import audit_config, one_thread

    def audit(out: str) -> dict:
        config = audit_config(check_workdir, "honest", tmp_path / out, check_samples=4, eps_255=[2.0, 4.0, 8.0])
        with warnings.catch_warnings(), one_thread():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return run_audit(config, get_registry())

    skipping = audit("skip")
    monkeypatch.setattr(clinical, "settled_in_ranking", lambda adverse, is_positive: np.zeros(len(adverse), bool))
    monkeypatch.setattr(clinical, "settle_target_prob", lambda adverse, is_positive, needed: None)
    everything = audit("all")
    for a, b in zip(skipping["clinical"]["worst_case"], everything["clinical"]["worst_case"]):
        assert a["auroc"] == b["auroc"]
    assert skipping["targeted"]["per_eps"][0]["attacked"] == everything["targeted"]["per_eps"][0]["attacked"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "attacked"} for r in rows]  # noqa: E731
    assert strip(skipping["targeted"]["per_eps"]) == strip(everything["targeted"]["per_eps"])
    keep = ("key", "status", "numbers")
    assert ([{k: i.get(k) for k in keep} for i in skipping["checks"]["items"]]
            == [{k: i.get(k) for k in keep} for i in everything["checks"]["items"]])
    assert skipping["checks"]["subsample"]["reuse"] == everything["checks"]["subsample"]["reuse"]
    attacked = [r["attacked"] for r in skipping["targeted"]["per_eps"]]
    assert sum(attacked) < sum(r["attacked"] for r in everything["targeted"]["per_eps"]), attacked
    assert skipping["targeted"]["passes"]["backward_samples"] < everything["targeted"]["passes"]["backward_samples"]
    # and some attacked samples stopped before the last step, once their rank was final
    steps = skipping["targeted"]["params"]["steps"]
    assert skipping["targeted"]["passes"]["backward_samples"] < sum(attacked) * steps


def test_a_targeted_sample_stops_at_its_settle_probability_and_the_others_do_not_move():
    torch.manual_seed(0)
    model = SmallCNN(3, 2, width=8).eval()
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        target = 1 - model(x).argmax(1)
    ctx = AttackContext(model=model, device=torch.device("cpu"), num_classes=2, input_shape=(3, 32, 32),
                        task="classification", seed=0, batch_size=8, counter=PassCounter())
    params = {"steps": 10, "restarts": 0, "step_size_eps_fraction": 0.25, "step_size_255": None, "seed": 0}
    free = TargetedPGD().run(ctx, x, target, 8 / 255, params).outputs
    # the first four stop at their first hit; the last four never stop
    cut = TargetedPGD().run(ctx, x, target, 8 / 255,
                            {**params, "settle_target_prob": [0.0] * 4 + [float("inf")] * 4}).outputs
    assert free["hit"][:4].any(), "the attack reaches the target for some of the first four"
    assert torch.equal(cut["stopped"][:4], free["hit"][:4]) and torch.equal(cut["hit"], free["hit"])
    assert not cut["stopped"][4:].any()
    for key in ("best_target_prob", "final_hit"):
        assert torch.equal(cut[key][4:], free[key][4:])
    assert (cut["best_target_prob"][:4] <= free["best_target_prob"][:4]).all()

"""auditor.stats: paired tests, bootstrap, Wilson sample sizes, checked against hand
computations and direct searches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from auditor.stats import (auroc, bootstrap_difference, mcnemar_exact, paired_difference_ci, proportion_ci,
                           unpaired_proportion_test, wilson_half_width, wilson_n_for_half_width)


def test_mcnemar_exact_against_a_hand_computed_binomial():
    # 20 images: 12 both right, 1 only A right, 7 only B right, 0 both wrong.
    a = [True] * 12 + [True] + [False] * 7
    b = [True] * 12 + [False] + [True] * 7
    got = mcnemar_exact(a, b)
    # 8 discordant pairs, X ~ Binomial(8, 1/2): P(X <= 1) = (C(8,0) + C(8,1)) / 2^8 = 9/256
    assert (got["only_a"], got["only_b"], got["n"]) == (1, 7, 20)
    assert got["p_value"] == pytest.approx(2 * 9 / 256)
    assert mcnemar_exact(b, a)["p_value"] == got["p_value"]  # symmetric
    assert mcnemar_exact(a, a)["p_value"] == 1.0  # no discordant pair: no evidence
    # 4 vs 4 discordant: the two-sided tail exceeds 1 before capping
    assert mcnemar_exact([1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1])["p_value"] == 1.0


def test_paired_difference_ci_contains_the_difference_and_narrows_with_agreement():
    rng = np.random.default_rng(1)
    a = rng.random(200) < 0.7
    b = a.copy()
    b[:15] = False  # B loses 15 of A's images (some were already wrong)
    delta = b.mean() - a.mean()
    low, high = paired_difference_ci(a, b)
    assert low < delta < high < 0  # a consistent loss: the interval excludes 0
    # the same marginal counts without pairing give a wider interval
    unpaired = unpaired_proportion_test(int(a.sum()), 200, int(b.sum()), 200)["ci95"]
    assert unpaired[1] - unpaired[0] > high - low


def test_unpaired_proportion_test_against_the_z_formula():
    got = unpaired_proportion_test(80, 100, 70, 100)
    pooled = 150 / 200
    z = 0.1 / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert got["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert got["ci95"][0] < -0.1 < got["ci95"][1]


def test_bootstrap_is_deterministic_under_its_seed_and_paired_beats_unpaired():
    rng = np.random.default_rng(0)
    a = rng.random(150)
    b = a - 0.02 + rng.normal(0, 0.01, 150)  # B a little worse on every image
    mean_a, mean_b = (lambda i: float(a[i].mean())), (lambda i: float(b[i].mean()))
    first = bootstrap_difference(mean_a, mean_b, 150, seed=7)
    assert first == bootstrap_difference(mean_a, mean_b, 150, seed=7)
    assert first != bootstrap_difference(mean_a, mean_b, 150, seed=8)
    assert first["delta"] == pytest.approx(b.mean() - a.mean())
    assert first["ci95"][0] < first["delta"] < first["ci95"][1] < 0
    assert first["p_value"] == pytest.approx(2 / 2001)  # no resample crosses 0
    unpaired = bootstrap_difference(mean_a, mean_b, 150, 150, seed=7, paired=False)
    assert unpaired["p_value"] > 0.05  # the image-to-image spread hides a 2-point shift without pairing
    same = bootstrap_difference(mean_a, mean_a, 150, seed=7)
    assert same["p_value"] == 1.0 and same["ci95"] == [0.0, 0.0]


def test_bootstrap_drops_resamples_where_the_statistic_is_undefined():
    labels = np.array([1] + [0] * 9)
    scores = np.linspace(0, 1, 10)
    stat = lambda i: auroc(scores[i], labels[i] == 1)  # noqa: E731
    got = bootstrap_difference(stat, stat, 10, resamples=200, seed=0)
    assert 0 < got["valid_resamples"] < 200  # resamples without the one positive are dropped


def test_auroc_counts_ties_half():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert math.isnan(auroc([0.1, 0.2], [0, 0]))


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.5, 0.62, 0.9, 1.0])
def test_wilson_n_for_half_width_matches_a_direct_search(p):
    n = 1
    while True:
        low, high = proportion_ci(p * n, n)
        if (high - low) / 2 <= 0.05:
            break
        n += 1
    assert wilson_n_for_half_width(p, 0.05) == n
    assert wilson_half_width(p, n) == pytest.approx((high - low) / 2)
    # the normal approximation z^2 p (1-p) / w^2 says 0 at p = 0 or 1; Wilson does not
    assert n >= 35

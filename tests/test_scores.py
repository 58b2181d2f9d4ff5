"""Metrics on features against independent references: torch-fidelity, prdc, scipy."""
import numpy as np
import prdc
import pytest
import scipy.linalg
import torch

from ganforge.metrics import scores
from ganforge.metrics.scores import (
    density_coverage,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kid,
    precision_recall,
)


def features(n=600, d=32, shift=0.0, seed=0):
    mix = np.random.default_rng(12345).normal(size=(d, d)) / np.sqrt(d)  # one distribution for every seed
    return (np.random.default_rng(seed).normal(size=(n, d)) @ mix + shift).astype(np.float32)


def scipy_fid(real, fake):
    mu1, s1 = (t.numpy() for t in feature_stats(real))
    mu2, s2 = (t.numpy() for t in feature_stats(fake))
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)


def test_fid_matches_torch_fidelity_and_scipy_sqrtm():
    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    real, fake = features(seed=0), features(shift=0.3, seed=1)
    ours = frechet_distance(real, fake)
    theirs = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(fake)),
                                      fid_features_to_statistics(torch.from_numpy(real)), verbose=False)
    assert ours == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)

    assert ours == pytest.approx(scipy_fid(real, fake), rel=1e-9)
    assert frechet_distance_from_stats(*feature_stats(real), *feature_stats(fake)) == pytest.approx(ours, rel=1e-12)


def test_covariance_equals_numpy_cov():
    x = features(n=3000, d=16, shift=2.0).astype(np.float64)
    mu, cov = feature_stats(x)
    assert torch.allclose(mu, torch.from_numpy(x.mean(0)), rtol=0, atol=1e-12)
    assert torch.allclose(cov, torch.from_numpy(np.cov(x, rowvar=False)), rtol=1e-12, atol=1e-12)
    assert torch.equal(cov, cov.T)


def test_covariance_of_a_mean_that_dwarfs_the_spread_is_taken_from_centred_blocks(monkeypatch):
    # Mean 1e5, spread 1: X^T X - N mu mu^T would keep only ~6 digits, so the centred route runs,
    # here over three blocks of 4,000, 4,000 and 1,000 rows.
    monkeypatch.setattr(scores, "COV_BLOCK", 4000)
    x = features(n=9000, d=16).astype(np.float64) + 1e5
    mu, cov = feature_stats(x)
    reference = np.cov(x, rowvar=False)
    assert torch.allclose(cov, torch.from_numpy(reference), rtol=1e-9, atol=1e-9)
    assert torch.equal(cov, cov.T)
    n = len(x)
    uncentred = (x.T @ x - n * np.outer(mu.numpy(), mu.numpy())) / (n - 1)
    assert not np.allclose(uncentred, reference, rtol=1e-9, atol=1e-9)  # what the guard avoids


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # scipy's own sqrtm of a singular product
@pytest.mark.parametrize("case", ["fewer samples than dimensions", "a feature that never varies",
                                  "only the first set singular"])
def test_fid_of_singular_covariances_matches_scipy_sqrtm(case):
    # No Cholesky factor of S2 exists in the first two cases: the distance takes its
    # eigendecomposition route. A singular S1 alone keeps the generalised eigensolver's.
    if case == "fewer samples than dimensions":
        real, fake = features(n=20), features(n=24, shift=0.3, seed=1)
    elif case == "only the first set singular":
        real, fake = features(n=20), features(shift=0.3, seed=1)
    else:
        real, fake = features(), features(shift=0.3, seed=1)
        real[:, 5] = fake[:, 5] = 0.0
    assert torch.linalg.cholesky_ex(feature_stats(real)[1]).info > 0
    assert frechet_distance(real, fake) == pytest.approx(scipy_fid(real, fake), rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_the_gap():
    real = features(n=2000)
    assert abs(frechet_distance(real, real)) < 1e-8
    halves = [frechet_distance(*np.split(features(n=2000, seed=s), 2)) for s in range(3)]
    noise = np.random.default_rng(5).uniform(-3, 3, size=real.shape)
    far = frechet_distance(real, noise)
    assert max(halves) < 0.5 and np.std(halves) < 0.1     # two halves of one distribution: small, stable
    assert far > 20 * max(halves)                           # noise: large


def test_fid_of_shifted_gaussians_is_the_squared_shift():
    # Same covariance: the trace terms cancel exactly and FID = ||mu1 - mu2||^2.
    s = np.diag(np.linspace(0.5, 2.0, 8))
    assert frechet_distance_from_stats(np.zeros(8), s, np.full(8, 0.5), s) == pytest.approx(8 * 0.25, abs=1e-10)


def test_kid_matches_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = features(seed=0), features(shift=0.2, seed=1)
    mean, std = kid(real, fake, subsets=20, subset_size=200, seed=7)
    theirs = kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=20,
                                    kid_subset_size=200, kid_degree=3, kid_gamma=None, kid_coef0=1,
                                    kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
                                    kid_kernel_poly_coef0=1, rng_seed=7, verbose=False)
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-4)


def test_kid_is_unbiased_so_it_can_be_negative():
    # Pairs of sets from one distribution: the unbiased estimate scatters around 0, unclipped.
    null = [kid(features(n=300, seed=2 * s), features(n=300, seed=2 * s + 1), subsets=1)[0] for s in range(8)]
    shifted = kid(features(n=300, seed=0), features(n=300, shift=0.3, seed=1), subsets=1)[0]
    assert min(null) < 0 < max(null)
    assert shifted > 5 * max(abs(v) for v in null)


def test_precision_recall_match_torch_fidelity():
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    real, fake = features(seed=0), features(shift=0.5, seed=1) * 1.3
    ours = precision_recall(real, fake, k=3)
    # torch-fidelity's first input is the generated set
    theirs = calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), neighborhood=3)
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert 0 < ours[0] < 1 and 0 < ours[1] < 1


def test_precision_recall_density_coverage_match_prdc():
    real, fake = features(seed=0), features(shift=0.4, seed=1) * 0.8
    reference = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    density, coverage = density_coverage(real, fake, k=5)
    precision, recall = precision_recall(real, fake, k=5)
    assert density == pytest.approx(reference["density"], rel=1e-4)
    assert coverage == pytest.approx(reference["coverage"], rel=1e-4)
    assert precision == pytest.approx(reference["precision"], rel=1e-4)
    assert recall == pytest.approx(reference["recall"], rel=1e-4)


def test_mode_dropping_lowers_recall_and_coverage_not_precision():
    real = np.concatenate([features(n=500, seed=0), features(n=500, shift=20.0, seed=1)])  # two modes
    one_mode = features(n=500, seed=2)                                                    # drops one
    precision, recall = precision_recall(real, one_mode)
    density, coverage = density_coverage(real, one_mode)
    assert precision > 0.75 and 0.3 < recall < 0.5   # in 32-D, k=3 balls hold ~0.8 of a matching set
    assert 0.3 < coverage < 0.5


def test_inception_score_matches_torch_fidelity_and_its_bounds():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.from_numpy(features(n=500, d=10, seed=2)) * 4
    ours = inception_score(logits, splits=5, seed=3)
    theirs = isc_features_to_metric(logits, splits=5, shuffle=True, rng_seed=3)
    assert ours == pytest.approx((theirs["inception_score_mean"], theirs["inception_score_std"]), rel=1e-6)
    confident = torch.eye(10).repeat(50, 1) * 50            # every class, each predicted with certainty
    assert inception_score(confident, splits=1)[0] == pytest.approx(10, rel=1e-6)
    assert inception_score(torch.zeros(100, 10), splits=5)[0] == pytest.approx(1, rel=1e-9)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


def test_fid_of_non_finite_features_says_so():
    good = torch.randn(50, 4, dtype=torch.float64)
    bad = good.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        frechet_distance(good, bad)

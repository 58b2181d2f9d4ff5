"""Sample-quality metrics on features: FID, KID, precision/recall, density/coverage, Inception Score.

Every function takes `real` and `fake` features as [N, D] arrays or tensors from the same feature
extractor (Inception, the digit classifier, or any module) and returns plain floats. Heavy
arithmetic runs in float64; pairwise distances are computed in row blocks of at most 256 MiB, so
memory stays bounded however many samples there are.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from scipy.linalg import blas

BLOCK_FLOATS = 2**25  # pairwise distances are computed in row blocks of at most this many (256 MiB)
COV_BLOCK = 16384  # rows per block of a centred covariance: one centred copy of COV_BLOCK x D floats at a time
# X^T X / N = mu mu^T + covariance: when a feature's squared mean is over this many times its
# variance, subtracting mu mu^T would leave fewer than ~10 of float64's 16 digits.
CANCELLATION = 1e6


def as_features(x) -> torch.Tensor:
    """[N, D] array or tensor -> float64 CPU tensor."""
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().cpu().to(torch.float64)
    if x.dim() != 2:
        raise ValueError(f"features must be a 2-D [N, D] array, got shape {tuple(x.shape)}")
    return x


def feature_stats(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of [N, D] features, in float64.

    The covariance is (X^T X - N mu mu^T) / (N - 1): one symmetric rank-k update (BLAS syrk, half
    the arithmetic of a general matrix product) straight on the rows, starting from the rank-1
    term, so there is no centred copy. That subtraction loses digits when a feature's mean dwarfs
    its spread; where it would lose more than CANCELLATION allows, the covariance is taken again
    from centred rows, COV_BLOCK at a time."""
    x = as_features(features)
    if len(x) < 2:
        raise ValueError("a covariance needs at least 2 samples")
    n, mu = len(x), x.mean(0)
    start = np.outer(mu, mu * (-n / (n - 1))).T  # a Fortran-ordered view; syrk reads its upper triangle only
    # Fortran reads the C-ordered (N, D) rows as their (D, N) transpose, so trans=0 gives X^T X.
    upper = blas.dsyrk(1.0 / (n - 1), x.numpy().T, beta=1.0, c=start, trans=0, overwrite_c=1)
    cov = _symmetric(torch.from_numpy(upper))
    if (mu.square() > CANCELLATION * cov.diagonal()).any():
        cov = _centred_covariance(x, mu)
    return mu, cov


def _centred_covariance(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    upper = np.zeros((x.shape[1], x.shape[1]), order="F")
    for block in x.split(COV_BLOCK):
        centred = (block - mu).numpy()
        upper = blas.dsyrk(1.0 / (len(x) - 1), centred.T, beta=1.0, c=upper, trans=0, overwrite_c=1)
    return _symmetric(torch.from_numpy(upper))


def _symmetric(upper: torch.Tensor) -> torch.Tensor:
    """The full matrix from the upper triangle that syrk fills."""
    return upper.triu() + upper.triu(1).T


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) (Heusel et al. 2017).

    tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1 S2. LAPACK's
    generalised symmetric eigensolver finds those eigenvalues alone (its problem type 2,
    A B x = lambda x: a Cholesky factor S2 = L L^T, then the symmetric L^T S1 L), in place of
    scipy.linalg.sqrtm's general matrix square root. A singular S2 (fewer samples than dimensions,
    a feature that never varies) has no Cholesky factor; then the eigenvalues come from
    S1^(1/2) S2 S1^(1/2), by one more, full eigendecomposition."""
    mu1, mu2, s1, s2 = (torch.as_tensor(t, dtype=torch.float64).cpu().numpy() for t in (mu1, mu2, sigma1, sigma2))
    if not all(np.isfinite(t).all() for t in (mu1, mu2, s1, s2)):
        raise ValueError("features hold NaN or inf (a diverged generator?): FID needs finite features")
    try:
        eigenvalues = scipy.linalg.eigh(s1, s2, type=2, eigvals_only=True, driver="gv")
    except np.linalg.LinAlgError:
        eigval, eigvec = np.linalg.eigh(s1)
        root1 = (eigvec * np.sqrt(eigval.clip(min=0))) @ eigvec.T   # S1^(1/2)
        eigenvalues = np.linalg.eigvalsh(root1 @ s2 @ root1)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eigenvalues.clip(min=0)).sum())


def frechet_distance(real, fake) -> float:
    """FID-style distance between two feature sets ([N, D] each)."""
    return frechet_distance_from_stats(*feature_stats(real), *feature_stats(fake))


def kid(real, fake, subsets: int = 100, subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): the unbiased MMD^2 with the kernel
    k(x, y) = (x.y / D + 1)^3, averaged over random subsets. Returns (mean, std over subsets);
    never clipped at 0, so a perfect generator scores around 0 with either sign.

    Subsets are drawn as torch-fidelity draws them (numpy RandomState(seed), real then fake,
    without replacement), so the same seed gives the same number there."""
    x, y = as_features(real), as_features(fake)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.RandomState(seed)
    d = x.shape[1]
    mmds = []
    for _ in range(subsets):
        a = x[torch.from_numpy(rng.choice(len(x), m, replace=False))]
        b = y[torch.from_numpy(rng.choice(len(y), m, replace=False))]
        k_aa, k_bb, k_ab = ((p @ q.T / d + 1) ** 3 for p, q in ((a, a), (b, b), (a, b)))
        within = (k_aa.sum() - k_aa.diagonal().sum() + k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
        mmds.append(float(within - 2 * k_ab.sum() / (m * m)))
    return float(np.mean(mmds)), float(np.std(mmds))


def _row_blocks(x: torch.Tensor, against: torch.Tensor):
    """x in blocks of rows whose distances to every row of `against` fit in BLOCK_FLOATS."""
    return x.split(max(1, BLOCK_FLOATS // max(1, len(against))))


def kth_neighbour_distances(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row (itself excluded)."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} samples in each set, got {len(x)}")
    return torch.cat([torch.cdist(block, x).kthvalue(k + 1, dim=1).values for block in _row_blocks(x, x)])


def nearest(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of a: the distance to its nearest row of b, and that row's index."""
    found = [torch.cdist(block, b).min(1) for block in _row_blocks(a, b)]
    return torch.cat([f.values for f in found]), torch.cat([f.indices for f in found])


def _ball_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, strict: bool) -> torch.Tensor:
    """For each point, how many balls (centre_i, radius_i) contain it."""
    counts = []
    for block in _row_blocks(points, centres):
        dist = torch.cdist(block, centres)
        inside = dist < radii if strict else dist <= radii
        counts.append(inside.sum(1))
    return torch.cat(counts)


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019). Each set's manifold is the union
    of balls around its points reaching their k-th nearest neighbour. Precision: the share of fake
    samples inside the real manifold (fidelity); recall: the share of real samples inside the fake
    manifold (diversity). Balls are closed (<=), as in torch-fidelity."""
    x, y = as_features(real), as_features(fake)
    precision = (_ball_counts(y, x, kth_neighbour_distances(x, k), strict=False) > 0).double().mean()
    recall = (_ball_counts(x, y, kth_neighbour_distances(y, k), strict=False) > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), on balls around real samples only (reaching the
    k-th nearest real neighbour; open balls, as in the `prdc` package). Density: the mean number of
    real balls holding each fake sample, divided by k (about 1 when the sets match; above 1 when
    fakes crowd dense regions). Coverage: the share of real balls holding at least one fake."""
    x, y = as_features(real), as_features(fake)
    radii = kth_neighbour_distances(x, k)
    density = _ball_counts(y, x, radii, strict=True).double().mean() / k
    coverage = (nearest(x, y)[0] < radii).double().mean()
    return float(density), float(coverage)


def inception_score(logits, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) from a classifier's
    logits [N, classes], on `splits` shuffled parts. Returns (mean, std over parts); it ranges
    from 1 to the number of classes. Shuffled as torch-fidelity does (RandomState(seed))."""
    x = as_features(logits)
    if len(x) < splits:
        raise ValueError(f"the Inception Score needs at least {splits} samples (one per split), got {len(x)}")
    x = x[torch.from_numpy(np.random.RandomState(seed).permutation(len(x)))]
    log_p = x.log_softmax(1)
    scores = []
    for i in range(splits):
        part = log_p[i * len(x) // splits:(i + 1) * len(x) // splits]
        log_marginal = part.exp().mean(0).log()
        scores.append(float((part.exp() * (part - log_marginal)).sum(1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))

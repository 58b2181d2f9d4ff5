"""Mode coverage: samples of a Gaussian mixture (ring8, grid25), the VEEGAN / PacGAN protocol; and
Stacked MNIST's 1,000 digit triples (stacked_mnist_report, at the end).

Srivastava et al., "VEEGAN", NeurIPS 2017; Lin et al., "PacGAN", NeurIPS 2018. Each sample is
assigned to its nearest mode centre (Euclidean distance). It is *high quality* when that distance
is at most 3 sigma, sigma being the mixture's per-coordinate standard deviation. For real data in
2-D, P(|x - mu| <= 3 sigma) = 1 - exp(-4.5) ~ 0.989, so a perfect generator scores ~0.99.
"""
from __future__ import annotations

import torch


def mode_report(
    samples: torch.Tensor, modes: torch.Tensor, sigma: float, min_count: int = 1
) -> dict:
    """Mode coverage, sample quality and reverse KL of `samples` against a mixture's modes.

    samples: (N, D) float; modes: (K, D) float, the mixture centres; sigma: their std.

    n:                    N.
    high_quality:         share of samples within 3 sigma of their nearest mode.
    per_mode_counts:      K ints: high-quality samples per mode (each sample counted at its nearest mode).
    modes_covered:        modes with at least `min_count` high-quality samples. min_count=1 is the
                          PacGAN / VEEGAN count ("a mode is captured if it receives a high-quality
                          sample"); some later papers ask for more, pass min_count to match them.
    per_mode_assigned:    K ints: ALL samples per nearest mode, high quality or not.
    reverse_kl:           KL(p_model || p_true) in nats, PacGAN's "reverse KL": p_model is
                          per_mode_assigned / N (every sample goes to its nearest mode, however far),
                          p_true is uniform 1/K. So reverse_kl = sum_k p_k log(p_k K), with
                          0 log 0 = 0; 0 when the samples spread evenly, log K when all go to one mode.
    """
    if samples.ndim != 2 or modes.ndim != 2 or samples.shape[1] != modes.shape[1]:
        raise ValueError(
            f"samples must be (N, D) and modes (K, D) with the same D; "
            f"got {tuple(samples.shape)} and {tuple(modes.shape)}"
        )
    if samples.shape[0] == 0 or modes.shape[0] == 0:
        raise ValueError("mode_report needs at least one sample and one mode")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive; got {sigma}")

    n, k = samples.shape[0], modes.shape[0]
    # Direct differences, not the matmul shortcut, so a sample at exactly 3 sigma is judged exactly.
    dist = torch.cdist(samples.double().cpu(), modes.double().cpu(),
                       compute_mode="donot_use_mm_for_euclid_dist")  # (N, K)
    nearest_dist, nearest = dist.min(dim=1)  # (N,), (N,)
    good = nearest_dist <= 3 * sigma  # (N,)

    per_mode_counts = torch.bincount(nearest[good], minlength=k)  # (K,)
    per_mode_assigned = torch.bincount(nearest, minlength=k)  # (K,)
    reverse_kl = _kl_to_uniform(per_mode_assigned.double() / n)

    return {
        "n": n,
        "modes_covered": int((per_mode_counts >= min_count).sum()),
        "high_quality": good.double().mean().item(),
        "per_mode_counts": per_mode_counts.tolist(),
        "per_mode_assigned": per_mode_assigned.tolist(),
        "reverse_kl": max(reverse_kl, 0.0),  # rounding can give -1e-17 for a perfect spread
    }


def stacked_mnist_report(img: torch.Tensor, classifier=None) -> dict:
    """Modes of Stacked MNIST samples (N, 3, H, W): each channel classified by the shipped digit
    classifier, the triple is the mode (0-999). `modes` is the number of modes with at least one
    sample; `kl` is KL(sample histogram || uniform over 1,000) in nats. The protocol counts 26,000
    samples; even a perfect generator then has KL ~0.019 from sampling noise. `channel_kl` holds,
    per channel, KL(digit shares || uniform over 10): the part of `kl` that comes from G drawing
    some digits more often than others, as opposed to tying the channels together. `recognised`
    holds, per channel, the share of digits named with confidence >= 0.9: a run whose samples are
    not digits at all has few, where a collapsed one may have many."""
    from ganforge.metrics.digits import RECOGNISED_CONFIDENCE, classify_digits

    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"stacked MNIST samples are (N, 3, H, W); got shape {tuple(img.shape)}")
    preds, confidences = zip(*(classify_digits(img[:, c:c + 1], classifier=classifier) for c in range(3)))
    mode = preds[0] * 100 + preds[1] * 10 + preds[2]
    p = torch.bincount(mode, minlength=1000).double() / len(mode)
    return {"n": len(mode), "modes": int((p > 0).sum()), "kl": _kl_to_uniform(p),
            "channel_kl": [_kl_to_uniform(torch.bincount(digit, minlength=10).double() / len(digit)) for digit in preds],
            "recognised": [float((conf >= RECOGNISED_CONFIDENCE).double().mean()) for conf in confidences]}


def _kl_to_uniform(p: torch.Tensor) -> float:
    """KL(p || uniform) in nats of a histogram p that sums to 1, with 0 log 0 = 0."""
    k = len(p)
    p = p[p > 0]
    return float((p * (p * k).log()).sum())

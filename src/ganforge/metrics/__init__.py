"""Metrics for generated samples: FID, KID, precision/recall, density/coverage and Inception Score on
features; digit recognition (MNIST-like images); mode coverage (2-D mixtures)."""
from ganforge.metrics.digits import (
    classify_digits,
    digit_classifier_info,
    digit_report,
    load_digit_classifier,
    mnist_split,
)
from ganforge.metrics.modes import mode_report, stacked_mnist_report
from ganforge.metrics.scores import (
    density_coverage,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kid,
    precision_recall,
)

__all__ = [
    "classify_digits",
    "density_coverage",
    "feature_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_score",
    "kid",
    "precision_recall",
    "digit_classifier_info",
    "digit_report",
    "load_digit_classifier",
    "mnist_split",
    "mode_report",
    "stacked_mnist_report",
]

"""Metrics for generated samples: digit recognition (MNIST-like images) and mode coverage (2-D mixtures)."""
from ganforge.metrics.digits import (
    classify_digits,
    digit_classifier_info,
    digit_report,
    load_digit_classifier,
    mnist_split,
)
from ganforge.metrics.modes import mode_report

__all__ = [
    "classify_digits",
    "digit_classifier_info",
    "digit_report",
    "load_digit_classifier",
    "mnist_split",
    "mode_report",
]

"""The in-memory data set every source produces, and the batches the training loop draws from it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch


@dataclass(frozen=True)
class Dataset:
    """Decoded once, held as tensors; no per-step decoding.

    images:  `data` is uint8 (N, C, H, W), C in {1, 3}, H == W == the chosen resolution.
    vectors: `data` is float32 (N, D).
    `labels` is int64 (N,) when the source has classes, else None. `labels_are_modes`: the labels
    name the modes a benchmark counts (stacked-mnist), so training is not told them by default.
    `modes` (vector mixtures only) is float32 (K, D): the mixture's centres, with `sigma` their
    standard deviation; used to count covered modes.
    """

    name: str
    kind: Literal["image", "vector"]
    data: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()
    labels_are_modes: bool = False
    modes: torch.Tensor | None = None
    sigma: float | None = None
    info: dict = field(default_factory=dict)  # plain values worth recording in the run folder

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one item: (C, H, W) for images, (D,) for vectors."""
        return tuple(self.data.shape[1:])


def to_model_space(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float in [-1, 1]; float vectors pass through unchanged."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255] (values outside are clipped)."""
    return img.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)

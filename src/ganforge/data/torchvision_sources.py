"""torchvision's classic image data sets (train split), read from a local folder or downloaded once.

The whole split is converted to one uint8 tensor from the data set's own arrays; no per-item PIL.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ganforge.data.dataset import Dataset
from ganforge.data.images import resize_crop, to_channels
from ganforge.errors import UserError

_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _tvd():
    """torchvision.datasets, imported on first use: it takes seconds, and most runs never need it."""
    import torchvision.datasets

    return torchvision.datasets


@dataclass(frozen=True)
class TorchvisionSource:
    description: str
    make: Callable[[str, bool], object]  # (root, download) -> torchvision data set, train split
    folder: str  # where under root the files go
    files: tuple[str, ...]  # what to put there by hand when offline
    site: str


TORCHVISION_SOURCES: dict[str, TorchvisionSource] = {
    "mnist": TorchvisionSource(
        "MNIST handwritten digits, 60,000 28x28 grey, 10 classes (torchvision)",
        lambda root, download: _tvd().MNIST(root, train=True, download=download),
        "MNIST/raw", _MNIST_FILES, "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": TorchvisionSource(
        "Fashion-MNIST clothing, 60,000 28x28 grey, 10 classes (torchvision)",
        lambda root, download: _tvd().FashionMNIST(root, train=True, download=download),
        "FashionMNIST/raw", _MNIST_FILES, "https://github.com/zalandoresearch/fashion-mnist"),
    "kmnist": TorchvisionSource(
        "Kuzushiji-MNIST cursive Japanese, 60,000 28x28 grey, 10 classes (torchvision)",
        lambda root, download: _tvd().KMNIST(root, train=True, download=download),
        "KMNIST/raw", _MNIST_FILES, "https://github.com/rois-codh/kmnist"),
    "cifar10": TorchvisionSource(
        "CIFAR-10 objects, 50,000 32x32 colour, 10 classes (torchvision)",
        lambda root, download: _tvd().CIFAR10(root, train=True, download=download),
        ".", ("cifar-10-python.tar.gz",), "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "cifar100": TorchvisionSource(
        "CIFAR-100 objects, 50,000 32x32 colour, 100 classes (torchvision)",
        lambda root, download: _tvd().CIFAR100(root, train=True, download=download),
        ".", ("cifar-100-python.tar.gz",), "https://www.cs.toronto.edu/~kriz/cifar.html"),
    "svhn": TorchvisionSource(
        "SVHN house numbers, 73,257 32x32 colour, 10 classes (torchvision)",
        lambda root, download: _tvd().SVHN(root, split="train", download=download),
        ".", ("train_32x32.mat",), "http://ufldl.stanford.edu/housenumbers/"),
}


def load_torchvision(name: str, root: Path, resolution: int, channels: int | None) -> Dataset:
    """The train split of TORCHVISION_SOURCES[name] from `root`, downloading it there if absent."""
    source = TORCHVISION_SOURCES[name]
    try:
        ds = source.make(str(root), False)
    except RuntimeError:  # torchvision's "Dataset not found"
        try:
            ds = source.make(str(root), True)
        except Exception as e:  # noqa: BLE001 - offline, blocked, corrupt: all end in the same advice
            where = root / source.folder
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            raise UserError(
                f"{name} is not in {where} and could not be downloaded ({reason}; offline?): put "
                f"{', '.join(source.files)} (from {source.site}) into {where}/, or pass --data-root") from e

    img = torch.as_tensor(ds.data)
    if img.ndim == 3:  # MNIST family: (N, H, W)
        img = img[:, None]
    elif img.shape[1] != 3:  # CIFAR: (N, H, W, 3); SVHN is already (N, 3, H, W)
        img = img.permute(0, 3, 1, 2)
    original_size = img.shape[-1]
    img = resize_crop(to_channels(img, channels), resolution)

    targets = ds.targets if hasattr(ds, "targets") else ds.labels  # SVHN names them labels
    labels = torch.as_tensor(targets, dtype=torch.int64)
    class_names = tuple(str(c) for c in getattr(ds, "classes", ()))
    if not class_names:  # SVHN: digit k is label k
        class_names = tuple(str(k) for k in range(int(labels.max()) + 1))
    return Dataset(name=name, kind="image", data=img, labels=labels, class_names=class_names,
                   info={"source": name, "count": len(img), "skipped": 0, "original_size": original_size,
                         "root": str(root)})

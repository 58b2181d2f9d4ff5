"""Evaluate generated images against real ones: one call from inputs to a report.

Inputs (`real`, `fake`): a run folder or checkpoint (its EMA generator is sampled), a folder of
images, a `.npy` file or any data source name. The real side defaults to the run's training data.
Features of the real side are cached per (content hash, extractor weights hash, resolution,
count), never per name, in `cache_dir`, written atomically.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ganforge import __version__
from ganforge.checkpoint import atomic_write
from ganforge.data import load_source, to_uint8
from ganforge.errors import UserError
from ganforge.metrics.extractors import Extractor, get_extractor
from ganforge.metrics.scores import (
    density_coverage,
    frechet_distance,
    inception_score,
    kid,
    kth_neighbour_distances,
    nearest,
    precision_recall,
)
from ganforge.viz import image_grid, save_png, side_by_side, stack, text_panel

log = logging.getLogger(__name__)

METRICS = ("fid", "kid", "pr", "dc", "is")
NEAR_COPY_QUANTILE = 0.01  # a near-copy is closer to a training image than 99% of real images are to each other


@dataclass
class ImageSet:
    """Images to evaluate, made on demand by index: a generator's samples are drawn, embedded and
    dropped chunk by chunk, so memory holds features, not 50,000 images."""

    count: int
    shape: tuple[int, int, int]                    # (C, H, W)
    make: Callable[[torch.Tensor | slice], torch.Tensor]   # indices (B,) or a slice -> uint8 (B, C, H, W)
    info: dict

    def batches(self, size: int = 500):
        for start in range(0, self.count, size):
            yield self.make(torch.arange(start, min(start + size, self.count)))


def load_images(spec: str | Path, n: int | None, seed: int, resolution: int | None = None,
                channels: int | None = None, data_root: str = "data") -> ImageSet:
    """A run/checkpoint (n samples from `seed`, the same as `ganforge sample`) or a data source
    (n of its images drawn with `seed`, all when n is None)."""
    if _is_run(spec):
        from ganforge.sample import draws, load_generator

        gen = load_generator(spec)
        if gen.kind != "image":
            raise UserError(f"{spec} generates vectors; image metrics need an image run "
                            "(2-D mixtures are judged with benchmarks/check_samples.py)")
        count = n or 10_000
        # Sample i has its z and class whichever indices are asked for, so that nearest.png remakes
        # the very samples the metrics measured.
        z, classes = draws(count, gen.G, seed)

        def make(idx):
            return to_uint8(gen.generate(z[idx], None if classes is None else classes[idx]))

        c, r = gen.model["G"].get("channels", 1), gen.config["resolution"]
        return ImageSet(count, (c, r, r), make, dict(kind="generator", path=str(gen.path), step=gen.step,
                        n=count, seed=seed, data=gen.config["data"], resolution=r))
    ds = load_source(str(spec), resolution or 32, channels, data_root)
    if ds.kind != "image":
        raise UserError(f"'{spec}' holds vectors, not images")
    img = ds.data
    if n is not None and n < len(img):
        img = img[torch.randperm(len(img), generator=torch.Generator().manual_seed(seed))[:n]]
    return ImageSet(len(img), tuple(img.shape[1:]), img.__getitem__,
                    dict(kind="data", source=str(spec), n=len(img), of=len(ds), seed=seed, resolution=img.shape[-1]))


def embed(images: ImageSet, extractor: Extractor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits) of every image, chunk by chunk."""
    parts = [extractor(batch) for batch in images.batches()]
    logits = [lg for _, lg in parts if lg is not None]
    return torch.cat([f for f, _ in parts]), (torch.cat(logits) if logits else None)


def default_extractor(shape: tuple[int, ...]) -> str:
    """`mnist` for grayscale images (C, H, W) up to 64 px (digit-like data), `inception` otherwise."""
    return "mnist" if shape[-3] == 1 and shape[-1] <= 64 else "inception"


def _is_run(spec) -> bool:
    from ganforge.export import is_export

    path = Path(spec)
    return path.suffix == ".safetensors" or (path.is_dir() and (path / "checkpoints").is_dir()) or is_export(path)


def cached_features(img: torch.Tensor, extractor: Extractor, cache_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features of `img`, from the cache when this exact content was embedded before."""
    if cache_dir is None:
        return extractor(img)
    digest = hashlib.sha256()
    for chunk in img.split(1000):  # a memory-mapped source is read a chunk at a time, never held whole
        digest.update(chunk.contiguous().numpy().tobytes())
    key = digest.hexdigest()[:24]
    path = Path(cache_dir) / f"{extractor.name}-{extractor.weights_sha256[:12]}-{img.shape[-1]}px-{len(img)}-{key}.safetensors"
    if path.is_file():
        tensors = load_tensors(path.read_bytes())
        return tensors["features"], tensors.get("logits")
    features, logits = extractor(img)
    tensors = {"features": features} | ({"logits": logits} if logits is not None else {})
    atomic_write(path, save_tensors(tensors))
    return features, logits


def evaluate(fake, real=None, metrics=("fid", "kid", "pr", "dc"), extractor: str | Extractor = "auto",
             n: int | None = 5000, seed: int = 0, weights=None, device: str = "cpu",
             cache_dir: str | Path | None = None, memorisation: bool = True) -> dict:
    """Compare `fake` with `real` (default: the run's training data). Returns every number and
    the settings that produced it; `report["nearest"]` holds images for `nearest.png`."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric '{unknown[0]}': choose from {', '.join(METRICS)}")
    fakes = load_images(fake, n, seed)
    fake_info = fakes.info
    defaulted = real is None
    if defaulted:
        if fake_info["kind"] != "generator":
            raise UserError("name the real images with --real when --fake is not a run")
        real = fake_info["data"]
    try:
        reals = load_images(real, None, seed, resolution=fakes.shape[-1], channels=fakes.shape[0])
    except UserError as err:
        if not defaulted:
            raise
        raise UserError(f"the real side defaults to the training data, '{real}', which is not readable here "
                        f"({err}): name the real images with --real") from None
    real_img, real_info = reals.make(slice(None)), reals.info   # a data set: a view of what is in memory
    if isinstance(extractor, str):
        extractor = get_extractor(default_extractor(fakes.shape) if extractor == "auto" else extractor, device, weights)
    real_f, _ = cached_features(real_img, extractor, Path(cache_dir) if cache_dir else None)
    fake_f, fake_logits = embed(fakes, extractor)
    dim = fake_f.shape[1]
    report = dict(version=__version__, extractor=extractor.name, extractor_sha256=extractor.weights_sha256,
                  feature_dim=dim, fake=fake_info, real=real_info, seed=seed, metrics={}, warnings=[])

    def warn(text):
        report["warnings"].append(text)
        log.warning(text)

    if "fid" in metrics:
        if min(len(real_f), len(fake_f)) < dim:
            warn(f"FID from fewer samples ({min(len(real_f), len(fake_f))}) than feature dimensions ({dim}): "
                 "the covariance is singular and FID is biased upwards; use more samples")
        report["metrics"]["fid"] = frechet_distance(real_f, fake_f)
    if "kid" in metrics:
        size = min(1000, len(real_f), len(fake_f))
        mean, std = kid(real_f, fake_f, subsets=100, subset_size=size, seed=seed)
        report["metrics"].update(kid_mean=mean, kid_std=std, kid_subset_size=size)
    if "pr" in metrics:
        report["metrics"]["precision"], report["metrics"]["recall"] = precision_recall(real_f, fake_f, k=3)
    if "dc" in metrics:
        report["metrics"]["density"], report["metrics"]["coverage"] = density_coverage(real_f, fake_f, k=5)
    if "is" in metrics:
        if fake_logits is None:
            raise UserError(f"the Inception Score needs class logits, which extractor '{extractor.name}' does not give")
        report["metrics"]["is_mean"], report["metrics"]["is_std"] = inception_score(fake_logits, seed=seed)
    shown = torch.randperm(len(real_img), generator=torch.Generator().manual_seed(seed))[:64]
    report["grids"] = (real_img[shown], fakes.make(torch.arange(min(64, fakes.count))))  # sources may be sorted
    if memorisation:
        report["memorisation"], nearest = memorisation_check(real_f, fake_f)
        report["nearest"] = (fakes.make(nearest["fake"]), real_img[nearest["real"]])
    return report


def memorisation_check(train_f: torch.Tensor, fake_f: torch.Tensor, shown: int = 32) -> tuple[dict, dict]:
    """Each fake's distance to its nearest training image, against each training image's distance
    to its nearest *other* training image (what a new real image from the same source looks like).
    A near-copy is a fake closer than the 1% quantile of the real distances."""
    fake_d, fake_idx = nearest(fake_f, train_f)
    real_d = kth_neighbour_distances(train_f, 1)
    threshold = float(torch.quantile(real_d, NEAR_COPY_QUANTILE))
    quantiles = (0.01, 0.1, 0.5, 0.9)
    closest = fake_d.argsort()[:shown]
    result = dict(
        fake_to_train=dict(zip(map(str, quantiles), torch.quantile(fake_d, torch.tensor(quantiles, dtype=fake_d.dtype)).tolist())),
        real_to_train=dict(zip(map(str, quantiles), torch.quantile(real_d, torch.tensor(quantiles, dtype=real_d.dtype)).tolist())),
        near_copy_threshold=threshold,
        near_copy_share=float((fake_d < threshold).double().mean()),
    )
    return result, dict(fake=closest, real=fake_idx[closest])


PICTURES = ("grids", "nearest")  # report entries holding images, not numbers


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """In out_dir: eval.json (every number and setting), nearest.png (the closest samples beside
    their nearest training images) and eval.png (one page: real and generated grids, nearest
    neighbours, the metric table). Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "eval.json"
    atomic_write(json_path, json.dumps(numbers(report), indent=2).encode())
    page = side_by_side(image_grid(report["grids"][0], nrow=8), image_grid(report["grids"][1], nrow=8))
    written = [json_path]
    if "nearest" in report:
        fake, real = report["nearest"]
        nearest = side_by_side(image_grid(fake, nrow=4), image_grid(real, nrow=4),
                               captions=("closest samples", "nearest training images"))
        save_png(nearest, out_dir / "nearest.png")
        written.append(out_dir / "nearest.png")
        page = stack(page, nearest)
    save_png(stack(page, text_panel(format_table(report).splitlines(), page.width)), out_dir / "eval.png")
    return [*written, out_dir / "eval.png"]


def numbers(report: dict) -> dict:
    """The report without its pictures: what eval.json holds."""
    return {k: v for k, v in report.items() if k not in PICTURES}


def format_table(report: dict) -> str:
    lines = [f"extractor {report['extractor']} ({report['feature_dim']}-d, sha256 {report['extractor_sha256'][:12]}), "
             f"{report['fake']['n']} fake vs {report['real']['n']} real, seed {report['seed']}"]
    lines += [f"  {k:<16} {v:.6g}" if isinstance(v, float) else f"  {k:<16} {v}" for k, v in report["metrics"].items()]
    if "memorisation" in report:
        m = report["memorisation"]
        lines.append(f"  near-copy share  {m['near_copy_share']:.4f} (fake closer to a training image than "
                     f"{100 * (1 - NEAR_COPY_QUANTILE):.0f}% of real images are to each other)")
        lines.append(f"  median distance  fake->train {m['fake_to_train']['0.5']:.4g}, real->other real "
                     f"{m['real_to_train']['0.5']:.4g}")
    lines += [f"  warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)


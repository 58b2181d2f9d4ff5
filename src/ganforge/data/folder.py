"""A folder of images, decoded once with PIL into one uint8 tensor.

Files: .png, .jpg, .jpeg, .webp, .bmp (any case), found recursively in sorted order; hidden files
and folders (names starting with ".") are left out. Each first-level sub-folder is a class when
there are at least two of them and no images sit at the top level.

Decoding: EXIF orientation applied; palette, CMYK, 16-bit and other modes converted to "L" or
"RGB"; transparency composited on white. Files that PIL cannot read (empty, truncated, not an
image, over PIL's decompression-bomb limit) are skipped, and one warning on the "ganforge"
logger names how many and which.
"""
from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from ganforge.data.dataset import Dataset
from ganforge.data.images import crop_box, scaled_size
from ganforge.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_LOOKED_FOR = ", ".join(IMAGE_EXTENSIONS) + " recursively"
_INT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # one channel, possibly beyond 0..255
_GREY_MODES = ("1", "L", "LA", "La")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_PROGRESS_ABOVE = 1000  # files; smaller folders load in seconds
_NAMED_SKIPS = 5  # skipped files named in the warning

log = logging.getLogger(__name__)


def load_folder(folder: Path, resolution: int, channels: int | None) -> Dataset:
    """Every readable image under `folder` as uint8 (N, C, R, R); see the module docstring."""
    paths = find_images(folder)
    names = [p.relative_to(folder).as_posix() for p in paths]
    return decode_images(folder, names, paths, resolution, channels)


def decode_images(source: Path, names: list[str], files: list, resolution: int, channels: int | None,
                  rejected: list[str] = (), classes: tuple[str, ...] | None = None) -> Dataset:
    """Decode `files` (paths, or file objects of in-memory bytes) named by `names` (relative,
    "/"-separated) into a Dataset; unreadable ones are skipped and counted with `rejected` (names
    with the reason, already left out by the caller). `classes`: the class names when the caller
    knows them (a chunk of a larger set), () for none, None to find them from the names."""
    if not files:
        found = (f"all {len(rejected)} such files were refused, e.g. {rejected[0]}" if rejected
                 else "it holds no such files")
        raise UserError(f"no readable images in {source} (looked for {_LOOKED_FOR}); {found}: "
                        "pass a folder or archive of images")
    class_of = classes_of(source, names) if classes is None else ([n.split("/")[0] for n in names] if classes else None)
    # Grey images are written into every channel, so that a source found to be all grey keeps channel 0.
    out = torch.empty((len(files), channels or 3, resolution, resolution), dtype=torch.uint8)
    kept = torch.zeros(len(files), dtype=torch.bool)
    all_grey = True
    skipped: list[str] = list(rejected)
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        # Between PIL's warning and error limits, a decompression bomb only warns: make that a skip too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # e.g. odd EXIF, per file
        decoded = zip(names, pool.map(lambda f: decode_image(f, resolution, channels), files))
        progress = tqdm(decoded, total=len(files), desc=f"decoding {source}", unit="img",
                        disable=len(files) <= _PROGRESS_ABOVE)
        for i, (name, (img, error)) in enumerate(progress):
            if img is None:
                skipped.append(f"{name} ({error})")
                continue
            out[i] = torch.from_numpy(img)  # (c, R, R) broadcasts over out's channels
            kept[i] = True
            all_grey &= img.shape[0] == 1

    count = int(kept.sum())
    total = len(files) + len(rejected)
    if count == 0:
        raise UserError(f"no readable images in {source} (looked for {_LOOKED_FOR}); all {total} such "
                        f"files failed to decode, e.g. {skipped[0]}: check the files or pass another source")
    if skipped:
        named = ", ".join(skipped[:_NAMED_SKIPS]) + (" ..." if len(skipped) > _NAMED_SKIPS else "")
        log.warning("skipped %d of %d files that are not readable images: %s", len(skipped), total, named)
    if count < len(files):
        out = out[kept]
    if channels is None and all_grey:
        out = out[:, :1].clone()

    labels, class_names = None, ()
    if class_of is not None:
        class_names = classes or tuple(sorted(set(class_of)))
        index = {name: k for k, name in enumerate(class_names)}
        labels = torch.tensor([index[name] for name in class_of], dtype=torch.int64)[kept]
    return Dataset(name=source.stem or str(source), kind="image", data=out, labels=labels,
                   class_names=class_names,
                   info={"source": str(source), "count": count, "skipped": len(skipped)})


def is_image_name(name: str) -> bool:
    """An image file name ganforge reads: a known extension, not hidden, in no hidden folder."""
    parts = name.split("/")
    return name.lower().endswith(IMAGE_EXTENSIONS) and not any(part.startswith(".") for part in parts)


def find_images(folder: Path) -> list[Path]:
    """Sorted image paths under `folder`, symlinked folders not followed (no loops)."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        paths += [Path(dirpath) / f for f in sorted(filenames) if is_image_name(f)]
    return paths


def classes_of(source: Path, names: list[str]) -> list[str] | None:
    """Per name its class (first-level sub-folder), or None when the images have no classes."""
    top = [name.split("/") for name in names]
    classes = {parts[0] for parts in top if len(parts) > 1}
    has_top_level = any(len(parts) == 1 for parts in top)
    if len(classes) < 2 or has_top_level:
        if len(classes) >= 2:
            log.warning("%s has images both at the top level and in sub-folders: loading all of them "
                        "without class labels; move the top-level images into a sub-folder to get labels",
                        source)
        return None
    return [parts[0] for parts in top]


def decode_image(file, resolution: int, channels: int | None) -> tuple[np.ndarray | None, str]:
    """(uint8 (C, R, R) array, "") with C = channels or the image's own 1 or 3; (None, why) if unreadable.
    `file` is a path or a file object."""
    try:
        with Image.open(file) as img:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.width * img.height > limit:
                raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels")
            img.draft(img.mode, (resolution, resolution))  # JPEG only: decode at a reduced scale
            img = ImageOps.exif_transpose(img)
            img = _to_grey_or_rgb(img)
    except Exception as e:  # noqa: BLE001 - any decoder failure means "not a readable image"
        detail = str(e) if "cannot identify" not in str(e) else ""  # that message only repeats the name
        return None, f"{type(e).__name__}: {detail[:60]}" if detail else type(e).__name__
    if channels == 1 and img.mode == "RGB":
        img = img.convert("L")
    elif channels == 3 and img.mode == "L":
        img = img.convert("RGB")
    h, w = scaled_size(img.height, img.width, resolution)
    top, left = crop_box(h, w, resolution)
    img = img.resize((w, h), Image.Resampling.BILINEAR).crop((left, top, left + resolution, top + resolution))
    arr = np.array(img, dtype=np.uint8)  # a writable copy, for torch.from_numpy
    return (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)), ""


def _to_grey_or_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> "L" or "RGB"; loads the pixels."""
    img.load()
    if img.mode in _INT_MODES:
        # convert("L") would clip at 255; values beyond it are taken as 16-bit and scaled down.
        arr = np.asarray(img).astype(np.float64)
        if arr.max(initial=0) > 255:
            arr = arr / 257.0
        return Image.fromarray(np.clip(arr.round(), 0, 255).astype(np.uint8))
    grey = img.mode in _GREY_MODES
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if grey:
        return img.convert("L")
    return img.convert("RGB")

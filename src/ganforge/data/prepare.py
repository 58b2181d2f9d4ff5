"""`ganforge prepare`: any image source, decoded once into a uint8 .npy file that training memory-maps.

The file is a plain NumPy array, uint8 [N, H, W, C] (the layout every .npy image source uses),
beside `<name>.json` (source, resolution, class names) and, for labelled data, `<name>.labels.npy`
(int64 [N]). `--data <name>.npy` then trains straight from the mapped file: only the batches a
step draws are read, so a data set larger than RAM trains without decoding an image per step.

A folder is decoded in chunks of CHUNK images, written as they come, so preparing it needs memory
for one chunk, not for the whole set. Without `channels`, the first chunk decides: all grey gives
1 channel, else 3. Every file is written atomically.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ganforge.checkpoint import atomic_write
from ganforge.data.folder import classes_of, decode_images, find_images
from ganforge.data.sources import load_source
from ganforge.errors import UserError

CHUNK = 4096  # images decoded at a time
log = logging.getLogger(__name__)


def prepare(spec: str, out: str | Path, resolution: int = 32, channels: int | None = None) -> Path:
    """Decode the source `spec` at `resolution` into `out` (.npy); returns the .npy path."""
    out = Path(out)
    if out.suffix.lower() != ".npy":
        raise UserError(f"--out {out}: name the prepared file FILE.npy")
    source = Path(str(spec)).expanduser()
    if source.is_dir():
        count, channels, class_names, labels = _prepare_folder(source, out, resolution, channels)
    else:
        ds = load_source(str(spec), resolution, channels)
        if ds.kind != "image":
            raise UserError(f"{spec} holds vectors; prepare is for images (vectors train from a .npy as they are)")
        _write_npy(out, ds.data.permute(0, 2, 3, 1).numpy())
        count, channels, class_names, labels = len(ds), ds.data.shape[1], ds.class_names, ds.labels
    labels_path = out.with_suffix(".labels.npy")
    if labels is not None:
        _write_npy(labels_path, labels.numpy())
    else:
        labels_path.unlink(missing_ok=True)
    meta = {"source": str(spec), "count": count, "resolution": resolution, "channels": channels,
            "class_names": list(class_names), "layout": "uint8 [N, H, W, C]"}
    atomic_write(out.with_suffix(".json"), json.dumps(meta, indent=2).encode())
    return out


def _prepare_folder(folder: Path, out: Path, resolution: int, channels: int | None):
    """Decode a folder chunk by chunk into a raw temporary file, then write the .npy."""
    paths = find_images(folder)
    names = [p.relative_to(folder).as_posix() for p in paths]
    if not paths:
        raise UserError(f"no images in {folder}: pass a folder of images")
    classes = classes_of(folder, names)
    class_names = tuple(sorted(set(classes))) if classes else ()
    raw = out.with_name(f".{out.name}.raw-{os.getpid()}")
    labels, count, skipped = [], 0, 0
    try:
        with open(raw, "wb") as f:
            for start in range(0, len(paths), CHUNK):
                try:
                    ds = decode_images(folder, names[start:start + CHUNK], paths[start:start + CHUNK],
                                       resolution, channels, classes=class_names)
                except UserError:  # a chunk with no readable image
                    skipped += len(paths[start:start + CHUNK])
                    continue
                channels = channels or ds.data.shape[1]
                f.write(ds.data.permute(0, 2, 3, 1).contiguous().numpy().tobytes())
                count, skipped = count + len(ds), skipped + ds.info["skipped"]
                if ds.labels is not None:
                    labels.append(ds.labels)
        if count == 0:
            raise UserError(f"no readable images in {folder}: check the files or pass another folder")
        shape = (count, resolution, resolution, channels)
        _write_npy(out, np.memmap(raw, dtype=np.uint8, mode="r", shape=shape))
    finally:
        raw.unlink(missing_ok=True)
    log.info("prepared %d images from %s (%d skipped)", count, folder, skipped)
    return count, channels, class_names, torch.cat(labels) if labels else None


def _write_npy(path: Path, array: np.ndarray) -> None:
    """Atomically write `array` (possibly memory-mapped) as .npy, streaming it in slices."""
    def write(f) -> None:
        np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
        step = max(1, (64 * 2**20) // max(1, array[:1].nbytes))
        for i in range(0, len(array), step):
            f.write(np.ascontiguousarray(array[i:i + step]).tobytes())

    atomic_write(path, write)

"""Provenance: what made an image, written into the image file itself.

Every PNG ganforge writes carries an iTXt chunk `ganforge` holding JSON: the ganforge version and,
for generated images, the SHA-256 of the generator's weights, the checkpoint step, and the seed,
class and truncation that made it; plus the standard `Software` key. GIFs carry the same JSON as
their comment, MP4s as the container's `comment` tag. `ganforge provenance FILE` reads it back.

This is a label, not a watermark: anyone can strip metadata from a file (re-encoding, a
screenshot). It tells honest users and tools what an image is; it cannot prove that an image
without it is real.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from ganforge import __version__, checkpoint
from ganforge.errors import UserError

KEY = "ganforge"  # the PNG text key, and the top-level marker in the JSON


def model_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a model's state dict: every tensor's name, dtype, shape and bytes, in name order
    (checkpoint.digest with no record). The same weights give the same hash in a run's
    checkpoint, an exported folder and memory."""
    return checkpoint.digest("", module.state_dict())


def record(what: str, **fields) -> dict:
    """The JSON written into a file: what it is ('generated', 'repaired', 'training samples', ...),
    the ganforge version and the given fields (None values left out)."""
    return {KEY: __version__, "what": what, **{k: v for k, v in fields.items() if v is not None}}


def png_bytes(picture: Image.Image, meta: dict | None = None) -> bytes:
    """A PNG of `picture` with `meta` (default: just the version) in its `ganforge` iTXt chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"ganforge {__version__}")
    info.add_itxt(KEY, json.dumps(meta or record("image")))
    buf = io.BytesIO()
    picture.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def comment(meta: dict) -> str:
    """The JSON for formats whose only text field is a comment (GIF, MP4)."""
    return json.dumps(meta)


def read(path: str | Path) -> dict | None:
    """The ganforge record of a PNG, GIF or MP4 file, or None when it carries none."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if path.suffix.lower() == ".mp4":
        return _read_mp4(path)
    try:
        with Image.open(path) as img:
            img.load()
            text = img.info.get(KEY) or img.info.get("comment")
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} as an image ({err})") from None
    return _parse(text)


def _read_mp4(path: Path) -> dict | None:
    try:
        import av
    except ImportError:
        raise UserError("reading an MP4's metadata needs PyAV: pip install av") from None
    try:
        with av.open(str(path)) as container:
            return _parse(container.metadata.get("comment"))
    except av.FFmpegError as err:
        raise UserError(f"cannot read {path} as a video ({err})") from None


def _parse(text) -> dict | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        meta = json.loads(text) if text else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and KEY in meta else None


def describe(meta: dict | None) -> str:
    """One line for a record: what made the file, or that nothing says so."""
    if meta is None:
        return "no ganforge metadata (not written by ganforge, or the metadata was stripped)"
    details = ", ".join(f"{k} {v}" for k, v in meta.items() if k not in (KEY, "what"))
    return f"{meta.get('what', 'image')}, written by ganforge {meta[KEY]}" + (f" ({details})" if details else "")


def verify(path: str | Path, meta: dict, gen) -> str:
    """Check a file's record against a loaded generator (ganforge.sample.LoadedGenerator): the
    model hash, and for a single image drawn from a seed, that the generator redraws it pixel
    for pixel. Returns one line; raises UserError when the file does not match."""
    from ganforge.data.dataset import to_uint8

    if meta.get("model_sha256") != gen.sha256:
        raise UserError(f"{path} was not made by {gen.path}: its model hash {meta.get('model_sha256', 'is missing')}, "
                        f"the model's is {gen.sha256}")
    if gen.kind != "image" or meta.get("what") != "generated" or "seed" not in meta or "n" in meta:
        return "made by this model (model hash matches)"
    redrawn = to_uint8(gen.sample_seeds([meta["seed"]], meta.get("truncation", 1.0), meta.get("class")))[0]
    with Image.open(path) as img:
        pixels = torch.from_numpy(np.array(img))
    pixels = pixels[None] if pixels.dim() == 2 else pixels.permute(2, 0, 1)
    if not torch.equal(pixels, redrawn):
        raise UserError(f"{path} claims seed {meta['seed']} of this model, but its pixels differ from what the "
                        "model draws for that seed: the image was edited after it was generated")
    return f"made by this model: seed {meta['seed']} redrawn, every pixel identical"

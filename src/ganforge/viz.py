"""Pictures of samples: image grids, scatter plots of 2-D points, real-beside-generated."""
from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from ganforge.checkpoint import atomic_write
from ganforge.data.dataset import to_uint8
from ganforge.provenance import png_bytes


def image_grid(img: torch.Tensor, nrow: int | None = None) -> Image.Image:
    """img (N, C, H, W) float in [-1, 1] or uint8 -> one PIL image, near-square by default."""
    if img.dtype != torch.uint8:
        img = to_uint8(img)
    nrow = nrow or math.ceil(math.sqrt(img.shape[0]))
    grid = make_grid(img.cpu(), nrow=nrow, padding=2, pad_value=128)  # (3, H', W') uint8
    return to_pil(grid[:1] if img.shape[1] == 1 else grid)


def to_pil(img: torch.Tensor) -> Image.Image:
    """One uint8 image (C, H, W), C in {1, 3} -> PIL, grayscale or RGB."""
    return Image.fromarray(img.cpu().permute(1, 2, 0).squeeze(-1).numpy())


def save_png(picture: Image.Image, path: str | Path, meta: dict | None = None) -> None:
    """Write a PNG atomically, with its provenance record (see ganforge.provenance)."""
    atomic_write(Path(path), png_bytes(picture, meta))


def scatter(fake: torch.Tensor, real: torch.Tensor | None = None, title: str = "") -> Image.Image:
    """Generated points (orange) over real ones (grey); the first two dimensions of each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if real is not None:
        ax.scatter(*real[:, :2].cpu().T.numpy(), s=2, c="0.6", label="real")
    ax.scatter(*fake[:, :2].cpu().T.numpy(), s=2, c="tab:orange", alpha=0.6, label="generated")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=2, markerscale=4, frameon=False)
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return Image.open(buf)


def side_by_side(left: Image.Image, right: Image.Image, captions=("real", "generated")) -> Image.Image:
    """Two pictures next to each other, each captioned above."""
    pad, top = 8, 18
    h = max(left.height, right.height)
    out = Image.new("RGB", (left.width + right.width + 3 * pad, h + top + pad), "white")
    draw = ImageDraw.Draw(out)
    x = pad
    for pic, caption in zip((left, right), captions):
        out.paste(pic.convert("RGB"), (x, top))
        draw.text((x, 3), caption, fill="black")
        x += pic.width + pad
    return out


def text_panel(lines: list[str], width: int) -> Image.Image:
    """Lines of text on white, one per 14 px."""
    out = Image.new("RGB", (width, 14 * len(lines) + 16), "white")
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((8, 8 + 14 * i), line, fill="black")
    return out


def stack(top: Image.Image, bottom: Image.Image) -> Image.Image:
    """One picture above the other, left-aligned."""
    out = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    out.paste(top.convert("RGB"), (0, 0))
    out.paste(bottom.convert("RGB"), (0, top.height))
    return out

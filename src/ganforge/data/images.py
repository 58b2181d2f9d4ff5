"""Channel matching, resizing and centre-cropping of uint8 image batches, shared by the image sources.

Every image source ends in the same two steps: `to_channels` (1 or 3 channels, alpha composited on
white) then `resize_crop` (shorter side to the resolution, antialiased bilinear, centre crop).
Both work in chunks so that a large array is never held as float all at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_CHUNK = 1024  # images converted to float at a time
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")


def scaled_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(height, width) with the shorter side at `resolution` and the aspect ratio kept."""
    if height <= width:
        return resolution, max(resolution, int(width * resolution / height))
    return max(resolution, int(height * resolution / width)), resolution


def crop_box(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(top, left) of the centred resolution x resolution square inside a height x width image."""
    return (height - resolution) // 2, (width - resolution) // 2


def to_channels(img: torch.Tensor, channels: int | None) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in {1, 3, 4} -> uint8 (N, C', H, W).

    C' is `channels`, or for None: 1 if C == 1 else 3. A fourth channel is alpha and is composited
    on white. 3 -> 1 uses PIL's luminance weights; 1 -> 3 repeats the grey channel.
    """
    c = img.shape[1]
    assert c in (1, 3, 4), img.shape
    target = channels if channels is not None else (1 if c == 1 else 3)
    if c == target:
        return img
    if c == 1:
        return img.expand(-1, 3, -1, -1).contiguous()
    out = torch.empty((img.shape[0], target, *img.shape[2:]), dtype=torch.uint8)
    for i in range(0, img.shape[0], _CHUNK):
        x = img[i : i + _CHUNK].float()
        if c == 4:
            alpha = x[:, 3:] / 255.0
            x = x[:, :3] * alpha + 255.0 * (1.0 - alpha)
        if target == 1:
            weights = torch.tensor(_LUMA).view(1, 3, 1, 1)
            x = (x * weights).sum(dim=1, keepdim=True)
        out[i : i + _CHUNK] = x.round_().clamp_(0, 255)
    return out


def resize_crop(img: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, R, R): shorter side resized to R, then centre-cropped."""
    n, c, h, w = img.shape
    if h == w == resolution:
        return img.contiguous()
    out_h, out_w = scaled_size(h, w, resolution)
    top, left = crop_box(out_h, out_w, resolution)
    out = torch.empty((n, c, resolution, resolution), dtype=torch.uint8)
    for i in range(0, n, _CHUNK):
        x = img[i : i + _CHUNK].float()
        if (out_h, out_w) != (h, w):
            # antialias=True matches PIL's bilinear filter when shrinking.
            x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)
        out[i : i + _CHUNK] = x[..., top : top + resolution, left : left + resolution].round_().clamp_(0, 255)
    return out

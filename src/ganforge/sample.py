"""Load a trained generator from a run folder or checkpoint, draw samples, write them out."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganforge import checkpoint
from ganforge.checkpoint import atomic_write, unprefixed
from ganforge.data.dataset import to_uint8
from ganforge.errors import UserError
from ganforge.models import FAMILIES, build_generator
from ganforge.viz import image_grid, save_png, scatter, to_pil


def pick_device(name: str = "auto") -> torch.device:
    """'auto' takes cuda, then mps, then cpu; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but PyTorch sees no CUDA GPU: use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' asked for, but it is not available here: use --device cpu")
    return torch.device(name)


def latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The z for a seed: drawn on the CPU, so a seed gives the same z on every device."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@dataclass
class LoadedGenerator:
    """G_ema of a checkpoint, in eval mode, with what is needed to use it."""

    G: nn.Module
    kind: str        # "image" | "vector"
    config: dict     # the run's resolved training config
    model: dict      # {"arch": ..., "G": kwargs, "D": kwargs}
    step: int
    path: Path       # the checkpoint it came from
    device: torch.device

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
        """n samples on the CPU: images (n, C, H, W) in [-1, 1], vectors (n, D)."""
        z = latents(n, self.G.z_dim, seed)
        return torch.cat([self.G(chunk.to(self.device)).float().cpu() for chunk in z.split(batch_size)])


def load_generator(run_or_checkpoint: str | Path, device: str = "auto") -> LoadedGenerator:
    path, tensors, record = checkpoint.load_newest(run_or_checkpoint)
    dev = pick_device(device)
    G = build_generator(record["model"])
    G.load_state_dict(unprefixed("G_ema", tensors))
    G.to(dev).eval().requires_grad_(False)
    return LoadedGenerator(G, FAMILIES[record["model"]["arch"]].kind, record["config"],
                           record["model"], record["step"], path, dev)


def write_samples(samples: torch.Tensor, kind: str, out: str | Path) -> list[Path]:
    """`.png`: a grid (scatter plot for vectors); `.npy`: the raw array; otherwise a folder with one
    PNG per image. Returns the files written."""
    out = Path(out)
    if out.suffix.lower() == ".npy":
        buf = io.BytesIO()
        np.save(buf, samples.numpy())
        atomic_write(out, buf.getvalue())
        return [out]
    if out.suffix.lower() == ".png":
        picture = image_grid(samples) if kind == "image" else scatter(samples, title=f"{len(samples)} samples")
        save_png(picture, out)
        return [out]
    if out.suffix:
        raise UserError(f"--out {out}: end it in .png (a grid), .npy (raw array) or name a folder")
    if kind != "image":
        raise UserError("vector samples have no per-item pictures: use --out FILE.png or FILE.npy")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, img in enumerate(to_uint8(samples)):
        files.append(out / f"{i:06d}.png")
        save_png(to_pil(img), files[-1])
    return files

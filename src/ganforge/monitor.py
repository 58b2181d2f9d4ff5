"""What a training run shows of itself as it goes: G_ema's samples on fixed z (a PNG in samples/
and a TensorBoard image), real items beside generated ones when it ends, and the FID judge that
`eval_every` calls to keep the best checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganforge import provenance
from ganforge.config import TrainConfig
from ganforge.data import Dataset
from ganforge.logs import RunLog
from ganforge.sample import latents
from ganforge.state import State
from ganforge.viz import image_grid, save_png, scatter, side_by_side

GRID_SIZE = 64        # samples in each progress grid, from fixed z
SCATTER_SIZE = 2500   # points in each scatter plot of vector data


@torch.no_grad()
def save_samples(G_ema, z: torch.Tensor, data: Dataset, path: Path, state: State, cfg: TrainConfig,
                 logs: RunLog) -> torch.Tensor:
    """G_ema on the fixed z: a PNG in samples/ (with its provenance) and a TensorBoard image.
    Returns the samples."""
    fake = G_ema(z).float().cpu()
    title = f"{path.stem}: {len(fake)} samples"
    picture = image_grid(fake) if data.kind == "image" else scatter(fake, data.data[:SCATTER_SIZE], title)
    save_png(picture, path, provenance.record("training samples", model_sha256=provenance.model_sha256(G_ema),
                                              step=state.step, seed=cfg.seed))
    logs.samples(state.step, torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1))
    return fake


@torch.no_grad()
def save_compare(G_ema, z: torch.Tensor, data: Dataset, path: Path, seed: int) -> None:
    """Real items beside generated ones (images), or generated points over real ones (vectors)."""
    fake = G_ema(z).float().cpu()
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:len(fake)]
    real = data.data[pick]
    if data.kind == "image":
        picture = side_by_side(image_grid(real), image_grid(fake))
    else:
        picture = scatter(fake, real, f"{len(fake)} generated over {len(real)} real points")
    save_png(picture, path, provenance.record("real beside generated", model_sha256=provenance.model_sha256(G_ema),
                                              seed=seed))


def fid_judge(cfg: TrainConfig, data: Dataset, device: torch.device):
    """G_ema -> FID of `eval_n` samples (fixed z) against the training data, on the extractor
    `ganforge eval` picks for this data."""
    from ganforge.metrics import frechet_distance
    from ganforge.metrics.evaluate import default_extractor
    from ganforge.metrics.extractors import get_extractor

    extractor = get_extractor(default_extractor(data.sample_shape), device)
    real_features, _ = extractor(data.data)
    z = latents(cfg.eval_n, cfg.z_dim, cfg.seed + 3)

    @torch.no_grad()
    def judge(G_ema) -> float:
        fake = torch.cat([G_ema(chunk.to(device)).float() for chunk in z.split(250)])
        if not fake.isfinite().all():
            return float("nan")  # a diverged G_ema: logged as NaN, never kept as the best
        return frechet_distance(real_features, extractor(fake)[0])

    return judge

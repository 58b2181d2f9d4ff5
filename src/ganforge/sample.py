"""Load a trained generator from a run folder or checkpoint, draw samples, write them out."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ganforge import checkpoint, provenance
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


MAX_SEED = 2**32 - 1


def parse_seeds(text: str, limit: int | None = None) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]; each seed within 0 to MAX_SEED. With a limit, the seeds are
    counted before a range is expanded, so that 0-999999999 is refused instead of filling the memory."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise UserError(f"seeds '{text[:40]}': write seeds as 0-15 or 1,5,9") from None
        if not 0 <= lo <= hi <= MAX_SEED:
            raise UserError(f"seeds '{text[:40]}': each range goes up, within 0 to {MAX_SEED}")
        if limit is not None and len(seeds) + hi - lo + 1 > limit:
            raise UserError(f"seeds '{text[:40]}' names more than {limit} seeds: ask for fewer")
        seeds += range(lo, hi + 1)
    return seeds


def latents(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The z for a seed: drawn on the CPU, so a seed gives the same z on every device."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def draws(n: int, G: nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What a seed's n samples are made from: z (n, z_dim), as `latents` draws it, and the classes
    (n,) or None. A class-conditional G's sample i is of class i mod K; a G with a class prior
    (self-conditioned: ganforge.clusters) has each sample's class drawn from the prior, by the same
    generator after z, so that its samples are independent draws of its distribution."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=generator)
    prior = getattr(G, "class_prior", None)
    if prior is not None:
        return z, torch.multinomial(prior.float().cpu(), n, replacement=True, generator=generator)
    return z, cycled_classes(n, getattr(G, "num_classes", 0))


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
    sha256: str      # of G's weights: the `model_sha256` in the provenance of every image it makes

    def provenance(self, what: str = "generated", class_: int | None = None, **fields) -> dict:
        """The record written into an image this generator made (see ganforge.provenance):
        this model's hash and step, plus the given fields (seed or seeds, truncation, ...)."""
        return provenance.record(what, model_sha256=self.sha256, arch=self.model["arch"], step=self.step,
                                 **{"class": class_}, **fields)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, truncation: float = 1.0, class_: int | None = None,
               batch_size: int = 256) -> torch.Tensor:
        """n samples on the CPU: images (n, C, H, W) in [-1, 1], vectors (n, D). `truncation` < 1
        scales z towards the prior's mean (fewer odd samples, less variety). Without `class_`, a
        class-conditional generator draws sample i from class i mod K, a self-conditioned one from
        its prior (see `draws`)."""
        z, classes = draws(n, self.G, seed)
        return self.generate(z * _truncation(truncation), classes if class_ is None else class_, batch_size)

    def sample_seeds(self, seeds: list[int], truncation: float = 1.0, class_: int | None = None) -> torch.Tensor:
        """One sample per seed, each from its own z: seed s gives the same image in any batch.
        Without `class_`, a class-conditional generator draws seed s from class s mod K, a
        self-conditioned one from its prior (see `draws`)."""
        z, classes = seed_draws(self.G, seeds)
        return self.generate(z * _truncation(truncation), classes if class_ is None else class_)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, class_: int | torch.Tensor | None = None, batch_size: int = 256) -> torch.Tensor:
        """G_ema of given latents (N, z_dim), on the CPU; `class_`: one class for all, or one per latent (N,)."""
        c = self._classes(class_, len(z))
        out = []
        for start in range(0, len(z), batch_size):
            chunk = z[start:start + batch_size].to(self.device)
            out.append(self.G(chunk, *(() if c is None else (c[start:start + batch_size].to(self.device),))).float().cpu())
        return torch.cat(out)

    def interpolate(self, seeds: list[int], frames: int = 24, loop: bool = True) -> torch.Tensor:
        """Images along spherical paths between the seeds' latents, `frames` per leg; with `loop`,
        the walk returns to the first seed. (len(legs) * frames, C, H, W)."""
        from ganforge.inversion import slerp

        if len(seeds) < 2 or frames < 1:
            raise UserError("interpolate needs at least two seeds and one frame per leg")
        z = [latents(1, self.G.z_dim, s)[0] for s in seeds] + ([latents(1, self.G.z_dim, seeds[0])[0]] if loop else [])
        path = [slerp(a, b, i / frames) for a, b in zip(z, z[1:]) for i in range(frames)]
        return self.generate(torch.stack(path + ([] if loop else [z[-1]])))

    def invert(self, img: torch.Tensor, known: torch.Tensor | None = None, **search):
        """Inversion (z, image, class_): the latents (and, class-conditional, the classes) whose images
        are closest to img (N, C, H, W) in [-1, 1] on its known pixels; see ganforge.inversion."""
        from ganforge.inversion import invert

        self._classes(search.get("class_"), 1)
        return invert(self.G, self._images(img), known, **search)

    def repair(self, img: torch.Tensor, fill: torch.Tensor, **search) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] with the pixels where `fill` (N, 1, H, W) is True
        replaced by G's best match to the rest."""
        from ganforge.inversion import repair

        self._classes(search.get("class_"), 1)
        return repair(self.G, self._images(img), fill, **search)

    def _classes(self, class_: int | torch.Tensor | None, n: int) -> torch.Tensor | None:
        """class_ (one for all, or one per item) as (n,) int64, checked against G's classes. Without
        class_, a class-conditional G's item i is of class i mod K, however the items are batched."""
        classes = getattr(self.G, "num_classes", 0)
        if class_ is None:
            return cycled_classes(n, classes)
        if not classes:
            raise UserError(f"{self.path} is not class-conditional: leave out the class")
        c = torch.as_tensor(class_).expand(n)
        if not (0 <= c.min() and c.max() < classes):
            raise UserError(f"class {class_} does not exist: this generator has classes 0 to {classes - 1}")
        return c

    def _images(self, img: torch.Tensor) -> torch.Tensor:
        if self.kind != "image":
            raise UserError("inversion works on image generators only")
        expected = (self.model["G"]["channels"], self.config["resolution"], self.config["resolution"])
        if img.dim() != 4 or tuple(img.shape[1:]) != expected:
            raise UserError(f"images must be (N, {', '.join(map(str, expected))}) for this generator, got {tuple(img.shape)}")
        return img.float()


def seed_draws(G: nn.Module, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`draws` of one sample per seed: z (N, z_dim) and the classes (N,) or None. A class-conditional
    G's seed s is of class s mod K, so that a seed gives the same image in any list of seeds."""
    z, classes = zip(*(draws(1, G, s) for s in seeds))
    if getattr(G, "class_prior", None) is not None:
        return torch.cat(z), torch.cat(classes)
    k = getattr(G, "num_classes", 0)
    return torch.cat(z), torch.tensor(seeds) % k if k else None


def _truncation(psi: float) -> float:
    if not 0 < psi <= 1:
        raise UserError(f"truncation must be in (0, 1], got {psi}")
    return psi


def cycled_classes(n: int, num_classes: int) -> torch.Tensor | None:
    """Item i's class, i mod K, for n items of a class-conditional G with K classes; None for K = 0."""
    return torch.arange(n) % num_classes if num_classes else None


def load_generator(run_or_checkpoint: str | Path, device: str = "auto") -> LoadedGenerator:
    """G_ema of a run folder (newest checkpoint), a checkpoint, or a folder written by `ganforge export`."""
    from ganforge import export  # it imports this module

    if export.is_export(run_or_checkpoint):
        path, G, record = export.read(run_or_checkpoint)  # checks the weights against config.json
    else:
        path, tensors, record = checkpoint.load_newest(run_or_checkpoint)
        G = build_generator(record["model"])
        G.load_state_dict(unprefixed("G_ema", tensors))
    dev = pick_device(device)
    G.to(dev).eval().requires_grad_(False)
    return LoadedGenerator(G, FAMILIES[record["model"]["arch"]].kind, record["config"],
                           record["model"], record["step"], path, dev, provenance.model_sha256(G))


def write_samples(samples: torch.Tensor, kind: str, out: str | Path, names: list[str] | None = None,
                  meta: dict | list[dict] | None = None) -> list[Path]:
    """`.png`: a grid (scatter plot for vectors; one image is written as it is); `.npy`: the raw
    array; otherwise a folder with one PNG per image, named `names` or by index. Each PNG carries
    its provenance `meta`: one record, or one per image. Returns the files."""
    per_image = meta if isinstance(meta, list) else [meta] * len(samples)
    out = Path(out)
    if out.suffix.lower() == ".npy":
        buf = io.BytesIO()
        np.save(buf, samples.numpy())
        atomic_write(out, buf.getvalue())
        return [out]
    if out.suffix.lower() == ".png":
        if kind == "image":
            picture = to_pil(to_uint8(samples)[0]) if len(samples) == 1 else image_grid(samples)
        else:
            picture = scatter(samples, title=f"{len(samples)} samples")
        save_png(picture, out, per_image[0] if len(samples) == 1 else _merged(per_image))
        return [out]
    if out.suffix:
        raise UserError(f"--out {out}: end it in .png (a grid), .npy (raw array) or name a folder")
    if kind != "image":
        raise UserError("vector samples have no per-item pictures: use --out FILE.png or FILE.npy")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, img in enumerate(to_uint8(samples)):
        files.append(out / (names[i] if names else f"{i:06d}.png"))
        save_png(to_pil(img), files[-1], per_image[i])
    return files


def _merged(metas: list[dict | None]) -> dict | None:
    """One record for a grid: the fields all images share, and the seeds in grid order."""
    if metas[0] is None:
        return None
    shared = {k: v for k, v in metas[0].items() if all(m.get(k) == v for m in metas)}
    seeds = [m["seed"] for m in metas if "seed" in m]
    return {**shared, "seeds": seeds} if len(seeds) == len(metas) > 1 else shared


def write_animation(frames: torch.Tensor, out: str | Path, fps: float, scale: int = 4, meta: dict | None = None) -> None:
    """Image frames (N, C, H, W) in [-1, 1] as a looping GIF, an MP4 (with PyAV) or a grid PNG,
    with the provenance `meta` (a PNG chunk, the GIF comment, the MP4 comment tag)."""
    out = Path(out)
    suffix = out.suffix.lower()
    meta = meta or provenance.record("image")
    if suffix == ".png":
        save_png(image_grid(frames, nrow=int(len(frames) ** 0.5 + 0.999)), out, meta)
        return
    pictures = [to_pil(img).resize((img.shape[-1] * scale, img.shape[-2] * scale), Image.Resampling.NEAREST)
                for img in to_uint8(frames)]
    if suffix == ".gif":
        buf = io.BytesIO()
        pictures[0].save(buf, format="GIF", save_all=True, append_images=pictures[1:], duration=1000 / fps, loop=0,
                         comment=provenance.comment(meta))
        atomic_write(out, buf.getvalue())
    elif suffix == ".mp4":
        _write_mp4(pictures, out, fps, meta)
    else:
        raise UserError(f"--out {out}: end it in .gif, .mp4 or .png (a grid of the frames)")


def _write_mp4(pictures: list[Image.Image], out: Path, fps: float, meta: dict) -> None:
    """Frames as an H.264 (or, where PyAV's FFmpeg lacks it, MPEG-4) video, written atomically."""
    try:
        import av
    except ImportError:
        raise UserError("writing MP4 needs PyAV: pip install av (or use --out walk.gif)") from None
    from fractions import Fraction

    def write(f) -> None:
        with av.open(f, mode="w", format="mp4") as container:
            container.metadata["comment"] = provenance.comment(meta)
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = pictures[0].width, pictures[0].height, "yuv420p"
            for picture in pictures:
                frame = av.VideoFrame.from_ndarray(np.array(picture.convert("RGB")), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())  # flush

    atomic_write(out, write)


def read_image(path: str | Path, gen: LoadedGenerator) -> torch.Tensor:
    """An image file at the generator's size and channels: (C, R, R) in [-1, 1]."""
    from ganforge.data.folder import decode_image

    r, c = gen.config["resolution"], gen.model["G"]["channels"]
    arr, why = decode_image(Path(path), r, c)
    if arr is None:
        raise UserError(f"cannot read {path} as an image ({why})")
    return torch.from_numpy(arr).float() / 127.5 - 1


def read_mask(path: str | Path | None, box: str | None, gen: LoadedGenerator) -> torch.Tensor:
    """What to fill, (1, R, R) bool: a mask image's non-zero pixels (resized like the image), or a box."""
    r = gen.config["resolution"]
    if (path is None) == (box is None):
        raise UserError("give what to fill: --mask MASK.png or --mask-box X,Y,W,H (one of them)")
    if box is not None:
        try:
            x, y, w, h = (int(v) for v in box.split(","))
            if w < 1 or h < 1:
                raise ValueError
        except ValueError:
            raise UserError(f"--mask-box '{box}': write X,Y,W,H in pixels of the {r}x{r} model, with W and H >= 1, "
                            f"e.g. 0,0,{r},{r // 2}") from None
        fill = torch.zeros(1, r, r, dtype=torch.bool)
        fill[:, max(0, y):max(0, y + h), max(0, x):max(0, x + w)] = True
    else:
        try:
            with Image.open(path) as img:
                mask = img.convert("L").resize((r, r), Image.Resampling.NEAREST)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read the mask {path} ({err})") from None
        fill = torch.from_numpy(np.array(mask) > 0)[None]
    if not fill.any():
        raise UserError("the mask marks no pixel to fill")
    return fill

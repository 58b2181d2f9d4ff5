"""Training configuration: defaults -> family preset -> user overrides -> the data -> one frozen TrainConfig.

The resolved config is printed, written to the run folder and stored in every checkpoint.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, replace

from ganforge.errors import UserError
from ganforge.losses import LOSSES

if typing.TYPE_CHECKING:
    from ganforge.data import Dataset


def setting(default, text: str):
    """A config field with its one-line help (shown by `ganforge train --help`)."""
    return dataclasses.field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class TrainConfig:
    data: str = setting("mnist5k", "a source name, a folder of images or a .npy file")
    data_root: str = setting("data", "where torchvision data sets live (and are downloaded to)")
    resolution: int = setting(32, "image side in pixels (images only)")
    channels: int | None = setting(None, "1 or 3; None: from the data")
    arch: str | None = setting(None, "model family; None: chosen from the data")
    loss: str | None = setting(None, "nonsaturating | minimax | hinge | wgan | lsgan | rpgan (ganforge.losses); "
                               "None: rpgan when G draws without a class, nonsaturating when it is told one")
    z_dim: int | None = setting(100, "latent size (mlp: twice the data's dimension unless set)")
    g_width: int = setting(64, "DCGAN: ngf; ResNet: channels at full size, x2 per halving (to 8x); MLP: hidden units")
    d_width: int = setting(64, "DCGAN: ndf; ResNet: as g_width; MLP: hidden units")
    depth: int = setting(3, "MLP hidden layers")
    batch_size: int = setting(64, "items per step")
    steps: int = setting(2000, "training steps, one D and one G update each")
    lr_g: float = setting(2e-4, "G's Adam learning rate")
    lr_d: float = setting(2e-4, "D's Adam learning rate")
    beta1: float = setting(0.5, "Adam's first-moment decay")
    beta2: float = setting(0.999, "Adam's second-moment decay")
    lr_decay: str = setting("none", "none | linear (to 0 at the last step)")
    lr_decay_start: float = setting(0.0, "share of the steps after which the linear decay begins")
    r1_gamma: float = setting(0.0, "weight of the R1 penalty on D's gradient at real data; 0 = off")
    r1_every: int = setting(1, "apply R1 and R2 every N steps, weighted by N (lazy regularisation)")
    r2_gamma: float | None = setting(None, "weight of the R2 penalty on D's gradient at generated data; 0 = off; "
                                     "None: r1_gamma with loss=rpgan (R3GAN's objective), else 0")
    gp_lambda: float = setting(0.0, "weight of WGAN-GP's gradient penalty (10 with loss=wgan); 0 = off")
    augment: str = setting("none", "images D sees: none | diffaug (DiffAugment: colour, translation, cutout, "
                           "every image) | ada (the same, with a probability adapted to D's overfitting)")
    spectral_norm: bool = setting(False, "DCGAN: spectral normalisation of every layer of D (and no batch norm in D)")
    d_batchnorm: bool = setting(True, "DCGAN: batch norm between D's layers (real and fake batches each normalised "
                                "by their own statistics); 0: none, each image judged on its own")
    mbstd: bool = setting(False, "D's minibatch standard deviation (ProGAN): its last layer sees how varied the batch "
                          "is (dcgan, resnet)")
    pack: int = setting(1, "PacGAN (Lin et al. 2018): D judges N images at once, stacked along the channels, all "
                        "real or all fake, so it can see how often G draws each kind (dcgan, resnet; unconditional)")
    clusters: int = setting(0, "self-conditioning (Liu et al. 2020): the images, clustered in D's features into N "
                            "groups, train G and D as classes, and G draws each by its size (dcgan, resnet; "
                            "unlabelled or conditional=0); 0 = off")
    recluster_every: int = setting(4000, "steps between clusterings of self-conditioning, as D's features improve")
    conditional: bool | None = setting(None, "class-conditional G and D (dcgan, resnet); sample with --class K. "
                                       "None: on for images labelled with 2 or more classes")
    ema_kimg: float = setting(10.0, "half-life of G_ema's weights, in thousands of images")
    ema_rampup: float = setting(0.05, "early on, the half-life is at most this share of images seen")
    seed: int = setting(0, "the same seed and settings give the same weights on the CPU")
    device: str = setting("auto", "auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    log_every: int = setting(50, "steps between lines of log.jsonl")
    sample_every: int = setting(500, "steps between sample grids in samples/")
    checkpoint_every: int = setting(500, "steps between checkpoints (and always at the end)")
    keep: int = setting(3, "checkpoints kept in the run folder")
    tensorboard: bool = setting(True, "TensorBoard curves and sample grids in RUN/tensorboard "
                                "(tensorboard --logdir RUN)")
    eval_every: int = setting(0, "steps between FID checks of G_ema (images; 0 = off); the best is kept "
                              "as checkpoints/best.safetensors")
    eval_n: int = setting(1000, "samples per FID check")
    nan_patience: int = setting(10, "non-finite steps in a row (each skipped) before the run goes back to "
                                "its last checkpoint with halved learning rates")
    diagnostics: bool = setting(True, "warn, with the setting to change, when D wins outright, samples collapse "
                                "or losses diverge (terminal, log.jsonl, TensorBoard; ganforge.diagnostics)")
    precision: str = setting("fp32", "fp32 | bf16 | fp16: autocast of the forward passes (fp16 adds a grad scaler)")
    channels_last: bool = setting(False, "image models and batches in NHWC memory layout")
    compile: bool = setting(False, "torch.compile G and D (needs a C++ compiler on the CPU, Triton on GPUs)")
    tf32: bool = setting(True, "TF32 matmuls and convolutions on NVIDIA GPUs")
    out: str = setting("runs", "parent folder of run folders")
    name: str | None = setting(None, "run folder name; None: <data>-<date>-<time>")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Settings that differ by model family, applied before the user's overrides.
PRESETS: dict[str, dict] = {
    # Measured on mnist5k (BENCHMARKS.md): the classic recipe (Adam 2e-4, betas 0.5/0.999, batch
    # 64) makes about 55% recognisable digits in the default budget. R1 with StyleGAN2's Adam
    # (beta1 0) at 1e-3, batch 32 and a learning rate that falls to 0 over the second half
    # reaches 85% recognised; lazy R1 and a narrower G make room for more images in 10 minutes.
    # The loss (and with it R2) is left to the data: with_data_defaults.
    "dcgan": dict(g_width=32, batch_size=32, steps=6000, lr_g=1e-3, lr_d=1e-3, beta1=0.0, beta2=0.99,
                  lr_decay="linear", lr_decay_start=0.5, r1_gamma=2.0, r1_every=4,
                  sample_every=1000, checkpoint_every=1000),
    # Measured on ring8 and grid25 (BENCHMARKS.md): without R1 a plain GAN collapses to a blob that
    # wanders between modes; R1 holds every mode and the large, decaying learning rate makes
    # the modes sharp. The relativistic loss with R1 and R2 (R3GAN's objective), lazily every 4
    # steps. Adam with beta1 = 0 and gammas of 0.03 (not 0.1) let D resolve where the modes sit.
    # 16,000 steps take 2-2.5 minutes on 2 CPU cores (20,000 ran past 3 on a slow day). A small
    # latent leaves fewer samples on the paths between modes: on 2-D data z of 4 and 2 beat 8, 16
    # and 64, so z_dim=None asks for twice the data's dimension (4 there). A G_ema half-life of
    # 100k points (not 20k) averages out more of G's jitter about each mode, at no cost: 0.988 of
    # ring8's and 0.978 of grid25's samples lie within 3 sigma over seeds 0-4 (20k: 0.985, 0.975).
    "mlp": dict(z_dim=None, g_width=128, d_width=128, batch_size=512, steps=16000, loss="rpgan",
                lr_g=2e-3, lr_d=2e-3, beta1=0.0, beta2=0.99, lr_decay="linear", r1_gamma=0.03, r2_gamma=0.03,
                r1_every=4, ema_kimg=100.0,
                log_every=100, sample_every=2000, checkpoint_every=4000),
    # SNGAN's sizes (z 128; at 32 px G's widest layer 256 channels, D's 128) with the hinge loss and
    # the recipe for one D step per G step of SAGAN (Zhang et al. 2019): Adam with betas 0/0.9 and
    # learning rates 1e-4 for G, 4e-4 for D. On mnist5k (five seeds, BENCHMARKS.md): 0.99 of its
    # digits recognised but recall 0.36-0.48 (DCGAN preset: 0.85), in 18-19 minutes on 2 CPU cores.
    "resnet": dict(z_dim=128, g_width=32, d_width=16, loss="hinge", lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.9),
}

FIELDS: dict[str, type] = typing.get_type_hints(TrainConfig)
HELP: dict[str, str] = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}
# Fields a resumed run may change; the rest define the run and must stay as they were.
RESUMABLE = frozenset({"steps", "device", "log_every", "sample_every", "checkpoint_every", "keep",
                       "eval_every", "eval_n", "nan_patience", "precision", "channels_last", "compile", "tf32",
                       "tensorboard", "diagnostics"})


_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def parse_value(key: str, text: str):
    """Turn the text of `key=value` into the field's type, or say what the field accepts."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UserError(f"unknown setting '{key}': {hint}settings are {', '.join(FIELDS)}")
    kind = FIELDS[key]
    if text.lower() in ("none", "auto") and type(None) in typing.get_args(kind):
        return None
    if kind is bool or bool in typing.get_args(kind):
        if text.lower() not in _BOOLEANS:
            raise UserError(f"setting '{key}' needs true or false (also 1/0, yes/no, on/off), got '{text}'")
        return _BOOLEANS[text.lower()]
    base = next((t for t in (int, float, str) if t is kind or t in typing.get_args(kind)), str)
    try:
        return base(text)
    except ValueError:
        raise UserError(f"setting '{key}' needs {base.__name__}, got '{text}'") from None


def parse_overrides(items: list[str]) -> dict:
    """['steps=100', 'lr_g=1e-4'] -> {'steps': 100, 'lr_g': 0.0001}."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"'{item}' is not key=value: write settings as e.g. steps=500")
        out[key.strip()] = parse_value(key.strip(), text.strip())
    return out


def resolve(user: dict, arch: str) -> TrainConfig:
    """Defaults, then the family's preset, then the user's settings; validated and frozen."""
    unknown = set(user) - set(FIELDS)
    if unknown:
        parse_value(sorted(unknown)[0], "")  # raises with the list of settings
    cfg = TrainConfig(**{**PRESETS.get(arch, {}), **user, "arch": arch})  # an unknown arch: validate says so
    validate(cfg)
    return cfg


def with_data_defaults(cfg: TrainConfig, data: Dataset) -> TrainConfig:
    """The settings left to the data (BENCHMARKS.md for each). conditional=None becomes on for images
    labelled with 2 or more classes, off otherwise: told the class, G makes far clearer images of
    each. z_dim=None (the mlp preset) becomes twice the vectors' dimension: on 2-D mixtures latents
    of 4 and 2 left fewer samples between the modes than 8, 16 or 64. loss=None (the dcgan preset)
    becomes the relativistic pairing when G draws without a class, where it covered Stacked MNIST's
    1,000 modes more evenly (and unlabelled digits as well), and the non-saturating loss when G is
    told one, where it gave the better FID. r2_gamma=None becomes R3GAN's objective with rpgan (R2 as
    strong as R1), 0 otherwise."""
    from ganforge.models import CONDITIONAL_FAMILIES  # late import: models do not depend on config

    if cfg.conditional is None:
        labelled = data.labels is not None and len(data.class_names) > 1 and not data.labels_are_modes
        cfg = replace(cfg, conditional=labelled and cfg.arch in CONDITIONAL_FAMILIES and not cfg.clusters)
    if cfg.z_dim is None:
        cfg = replace(cfg, z_dim=2 * data.data.shape[1])  # only the mlp preset, for vectors, leaves it open
    if cfg.loss is None:  # only the dcgan preset leaves it open
        cfg = replace(cfg, loss="nonsaturating" if cfg.conditional or cfg.clusters else "rpgan")
    if cfg.r2_gamma is None:
        cfg = replace(cfg, r2_gamma=cfg.r1_gamma if cfg.loss == "rpgan" else 0.0)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Raise UserError naming the first bad field and the values it allows."""
    from ganforge.models import FAMILIES  # late import: models do not depend on config
    from ganforge.runtime import DTYPES

    positive = ["z_dim", "g_width", "d_width", "depth", "batch_size", "steps", "r1_every", "log_every",
                "sample_every", "checkpoint_every", "keep", "nan_patience", "pack", "recluster_every"]
    for key in positive:
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:  # z_dim None: set from the data
            raise UserError(f"{key} must be a whole number >= 1, got {getattr(cfg, key)}")
    if cfg.eval_every < 0 or cfg.eval_n < 2:
        raise UserError(f"eval_every must be >= 0 (0 = off) and eval_n >= 2, got {cfg.eval_every} and {cfg.eval_n}")
    for key in ("lr_g", "lr_d"):
        if not getattr(cfg, key) > 0:
            raise UserError(f"{key} must be > 0, got {getattr(cfg, key)}")
    for key in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, key) < 1:
            raise UserError(f"{key} must be in [0, 1), got {getattr(cfg, key)}")
    if cfg.lr_decay not in ("none", "linear"):
        raise UserError(f"lr_decay must be none or linear, got '{cfg.lr_decay}'")
    if not 0 <= cfg.lr_decay_start < 1:
        raise UserError(f"lr_decay_start must be in [0, 1), got {cfg.lr_decay_start}")
    if cfg.r1_gamma < 0:
        raise UserError(f"r1_gamma must be >= 0 (0 turns R1 off), got {cfg.r1_gamma}")
    if cfg.ema_kimg < 0 or cfg.ema_rampup < 0:
        raise UserError("ema_kimg and ema_rampup must be >= 0 (ema_kimg=0 turns the average off)")
    if cfg.loss is not None and cfg.loss not in LOSSES:  # None: chosen from the data
        raise UserError(f"loss must be one of {', '.join(LOSSES)}, got '{cfg.loss}'")
    if cfg.augment not in ("none", "diffaug", "ada"):
        raise UserError(f"augment must be none, diffaug or ada, got '{cfg.augment}'")
    if cfg.arch not in FAMILIES:
        raise UserError(f"arch must be one of {', '.join(FAMILIES)}, got '{cfg.arch}'")
    images = FAMILIES[cfg.arch].kind == "image"
    if cfg.augment != "none" and not images:
        raise UserError("augment is for images (dcgan, resnet): drop it for vector data")
    if cfg.spectral_norm and cfg.arch != "dcgan":
        raise UserError("spectral_norm=1 is for the dcgan family (resnet's D always has it): drop it")
    if not cfg.d_batchnorm and cfg.arch != "dcgan":
        raise UserError("d_batchnorm=0 is for the dcgan family (resnet's and mlp's D have no batch norm): drop it")
    if cfg.mbstd and not images:
        raise UserError("mbstd=1 is for images (dcgan, resnet): drop it for vector data")
    if (cfg.r2_gamma or 0) < 0 or cfg.gp_lambda < 0:
        raise UserError("r2_gamma and gp_lambda must be >= 0 (0 turns them off)")
    if cfg.pack > 1 and not images:
        raise UserError("pack is for images (dcgan, resnet): drop it for vector data")
    if cfg.pack > 1 and cfg.gp_lambda > 0:
        raise UserError("pack does not work with gp_lambda (WGAN-GP mixes single images): use r1_gamma, or pack=1")
    if cfg.clusters < 0 or cfg.clusters == 1:
        raise UserError(f"clusters must be 0 (off) or at least 2, got {cfg.clusters}")
    if cfg.clusters and not images:
        raise UserError("clusters is for images (dcgan, resnet): drop it for vector data")
    if cfg.clusters and cfg.conditional:
        raise UserError("clusters makes its own classes: drop conditional=1 (or clusters, to train on the labels)")
    if cfg.clusters and cfg.pack > 1:
        raise UserError("clusters does not work with pack (a pack mixes clusters): use one of them")
    if cfg.batch_size % cfg.pack:
        raise UserError(f"batch_size {cfg.batch_size} must be a multiple of pack {cfg.pack}")
    if cfg.precision not in DTYPES:
        raise UserError(f"precision must be fp32, bf16 or fp16, got '{cfg.precision}'")
    if cfg.channels not in (None, 1, 3):
        raise UserError(f"channels must be 1, 3 or auto, got {cfg.channels}")
    r = cfg.resolution
    if FAMILIES[cfg.arch].kind == "image" and (r < 16 or r > 256 or r & (r - 1)):
        raise UserError(f"resolution must be a power of two from 16 to 256 (16, 32, 64, 128, 256), got {r}")
    if cfg.arch == "resnet" and r not in (32, 64, 128):
        raise UserError(f"arch=resnet is built for 32, 64 or 128 px, got resolution {r}: pick one, or arch=dcgan")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise UserError(f"device must be auto, cpu, cuda, cuda:N or mps, got '{cfg.device}'")
    if cfg.name is not None and not re.fullmatch(r"[\w.+-]+", cfg.name):
        raise UserError(f"name '{cfg.name}' must be a plain folder name (letters, digits, . _ + -)")

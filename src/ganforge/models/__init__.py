"""Model families: a registry of callables, never class names looked up as strings.

Each family says what data it models and how to derive its G and D constructor arguments from the
training config and the data. Those arguments are plain values, stored in every checkpoint, so a
generator can be rebuilt from a checkpoint alone.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ganforge.models import dcgan, mlp, resnet


@dataclass(frozen=True)
class Family:
    kind: str  # the data it models: "image" | "vector"
    Generator: Callable[..., nn.Module]
    Discriminator: Callable[..., nn.Module]
    model_args: Callable[..., tuple[dict, dict]]  # (cfg, data) -> (G kwargs, D kwargs)


def _classes(cfg, data) -> tuple[dict, dict]:
    """The class arguments of G and D: the data's labels (conditional), or the clusters of
    self-conditioning, which G draws in proportion to their sizes (its `prior`)."""
    if cfg.clusters:
        return {"num_classes": cfg.clusters, "prior": True}, {"num_classes": cfg.clusters}
    classes = {"num_classes": len(data.class_names)} if cfg.conditional else {}
    return classes, classes


def _dcgan_args(cfg, data) -> tuple[dict, dict]:
    channels, resolution = data.sample_shape[0], data.sample_shape[1]
    g_classes, classes = _classes(cfg, data)
    return (dict(z_dim=cfg.z_dim, resolution=resolution, channels=channels, width=cfg.g_width, **g_classes),
            dict(resolution=resolution, channels=channels * cfg.pack, width=cfg.d_width, **classes,
                 **({"spectral_norm": True} if cfg.spectral_norm else {}), **({"mbstd": True} if cfg.mbstd else {}),
                 **({} if cfg.d_batchnorm else {"batchnorm": False})))


def _resnet_args(cfg, data) -> tuple[dict, dict]:
    channels, resolution = data.sample_shape[0], data.sample_shape[1]
    g_classes, classes = _classes(cfg, data)
    return (dict(z_dim=cfg.z_dim, resolution=resolution, channels=channels, width=cfg.g_width, **g_classes),
            dict(resolution=resolution, channels=channels * cfg.pack, width=cfg.d_width, mbstd=cfg.mbstd, **classes))


def _mlp_args(cfg, data) -> tuple[dict, dict]:
    x = data.data.double()
    stats = dict(dim=x.shape[1], mean=x.mean(0).tolist(), std=x.std(0).clamp_min(1e-8).tolist())
    return (dict(z_dim=cfg.z_dim, width=cfg.g_width, depth=cfg.depth, **stats),
            dict(width=cfg.d_width, depth=cfg.depth, **stats))


FAMILIES: dict[str, Family] = {
    "dcgan": Family("image", dcgan.Generator, dcgan.Discriminator, _dcgan_args),
    "mlp": Family("vector", mlp.Generator, mlp.Discriminator, _mlp_args),
    "resnet": Family("image", resnet.Generator, resnet.Discriminator, _resnet_args),
}


# Families whose G and D take class labels (conditional=1).
CONDITIONAL_FAMILIES = ("dcgan", "resnet")


def default_family(kind: str) -> str:
    """The family used for data of this kind when the user names none."""
    return {"image": "dcgan", "vector": "mlp"}[kind]


def build_generator(model: dict) -> nn.Module:
    """Rebuild G from the `model` record of a checkpoint: {"arch": ..., "G": {...}, "D": {...}}."""
    return FAMILIES[model["arch"]].Generator(**model["G"])


def build_discriminator(model: dict) -> nn.Module:
    """Rebuild D likewise. A packed D (pack=N, PacGAN) reads N images stacked along the channels, so
    its `channels` is N times the images': see ganforge.train.pack_images."""
    return FAMILIES[model["arch"]].Discriminator(**model["D"])

"""Feature extractors for the metrics: images in, [N, D] features (and class logits) out.

- `inception`: torch-fidelity's TF-compatible Inception-v3, the network published FIDs use
  (2048-d pool features, 1008 logits). Its weights are read from `--weights PATH`, else from
  torch's hub cache, else downloaded there once; offline with neither, the error names the file.
- `mnist`: ganforge's shipped digit classifier (metrics/digits.py): 128-d features before its last
  layer, 10 logits. Offline, for MNIST-like data (the "Frechet LeNet distance" practice).
- any torch module a caller passes: `Extractor.from_module(name, module)`.

Images go in as uint8 (N, C, H, W) or float in [-1, 1], in batches, so memory stays bounded.
"""
from __future__ import annotations

import hashlib
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ganforge.data import to_model_space, to_uint8
from ganforge.errors import UserError
from ganforge.metrics import digits

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]


@dataclass
class Extractor:
    """A named feature extractor. `embed(img)` maps a batch of images (uint8 or [-1, 1]) to
    (features (B, D), logits (B, K) or None), both float on the CPU."""

    name: str
    embed: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
    weights_sha256: str
    device: torch.device

    @torch.no_grad()
    def __call__(self, img: torch.Tensor, batch_size: int = 200) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats, logits = [], []
        for chunk in img.split(batch_size):
            f, lg = self.embed(chunk.to(self.device))
            feats.append(f.double().cpu())
            if lg is not None:
                logits.append(lg.double().cpu())
        return torch.cat(feats), (torch.cat(logits) if logits else None)

    @classmethod
    def from_module(cls, name: str, module: nn.Module, device: str | torch.device = "cpu") -> Extractor:
        """Any module mapping float images in [-1, 1] to (B, D) features (no logits)."""
        module = module.to(device).eval()

        def embed(img):
            return module(to_model_space(img).float()).flatten(1), None

        return cls(name, embed, _state_hash(module.state_dict()), torch.device(device))


def mnist_extractor(device: str | torch.device = "cpu") -> Extractor:
    classifier = digits.load_digit_classifier(device)
    body, last = classifier.head[:-1], classifier.head[-1]   # features: fc 128 after ReLU

    def embed(img):
        if img.shape[1] == 3:
            img = to_model_space(img).float().mean(1, keepdim=True)
        features = body(classifier.features(digits.prepare_digits(img)))
        return features, last(features)

    return Extractor("mnist", embed, _file_hash(digits.WEIGHTS_PATH), torch.device(device))


def inception_extractor(device: str | torch.device = "cpu", weights: str | Path | None = None) -> Extractor:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = inception_weights(weights)
    # torch-fidelity reads the file with a full unpickler; reading it first with weights_only=True
    # refuses any file that holds code, so only plain tensors ever reach that unpickler.
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling error: the file is not a plain state dict
        raise UserError(f"{path} is not a plain Inception state dict ({type(err).__name__}); "
                        f"download {INCEPTION_URL} again") from None
    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(path)).to(device)

    def embed(img):
        if img.dtype != torch.uint8:
            img = to_uint8(img)
        if img.shape[1] == 1:
            img = img.expand(-1, 3, -1, -1)
        features, logits = net(img)
        return features, logits

    return Extractor("inception", embed, _file_hash(path), torch.device(device))


def inception_weights(weights: str | Path | None = None) -> Path:
    """The Inception weights file: `weights` if given, else torch's hub cache, downloading it there
    when a network is reachable. Offline, a UserError says which file to put where."""
    if weights is not None:
        if not Path(weights).is_file():
            raise UserError(f"Inception weights not found at {weights}: download {INCEPTION_URL}")
        return Path(weights)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), progress=True)
    except (urllib.error.URLError, OSError) as err:
        raise UserError(f"cannot download the Inception weights ({err}); download {INCEPTION_URL} "
                        f"on a machine with a network and put it at {cached}, or pass --weights PATH") from None
    return cached


EXTRACTORS = ("inception", "mnist")


def get_extractor(name: str, device: str | torch.device = "cpu", weights: str | Path | None = None) -> Extractor:
    """An extractor by name; `weights` applies to `inception` only."""
    if name == "inception":
        return inception_extractor(device, weights)
    if name == "mnist":
        return mnist_extractor(device)
    raise UserError(f"unknown extractor '{name}': choose one of {', '.join(EXTRACTORS)}")


def _file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_hash(state: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


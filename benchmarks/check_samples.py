"""Judge a trained ganforge run by its samples.

    python benchmarks/check_samples.py runs/mnist                 # 1,000 images
    python benchmarks/check_samples.py runs/ring8 --seed 1        # 2,500 vectors
    python benchmarks/check_samples.py runs/mine --modes grid25   # a .npy source has no modes: name them

Image runs (1 channel, MNIST-like): the shipped digit classifier (ganforge.metrics.digits) gives the
share of samples recognised with confidence >= 0.9, the share predicted as each digit, and the
smallest of those shares (0 = a digit never drawn). Vector runs: modes covered, share of
high-quality samples and reverse KL against the mixture's modes (ganforge.metrics.modes).

Prints a readable summary, then one line of JSON with every number.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from ganforge.data import load_source
from ganforge.errors import UserError
from ganforge.metrics import (
    digit_classifier_info,
    digit_report,
    load_digit_classifier,
    mode_report,
)
from ganforge.sample import load_generator

MIXTURES = ("ring8", "grid25")
DEFAULT_N = {"image": 1000, "vector": 2500}


def check_images(gen, n: int, seed: int, classifier_path: str | None = None) -> dict:
    img = gen.sample(n, seed=seed)  # (N, C, H, W) in [-1, 1]
    if img.shape[1] != 1:
        raise UserError(f"the digit classifier judges grayscale MNIST-like images; this run makes "
                        f"{img.shape[1]}-channel images, so there is nothing to check here")
    classifier = load_digit_classifier(path=classifier_path) if classifier_path else None
    report = digit_report(img, classifier=classifier)
    real = "" if classifier_path else f"   [real held-out MNIST: {digit_classifier_info()['heldout_recognised']:.3f}]"
    print(f"recognised (confidence >= 0.9): {report['recognised']:.3f}{real}")
    print("predicted digit shares: " + "  ".join(f"{d}: {s:.3f}" for d, s in enumerate(report["class_shares"])))
    rarest = min(range(10), key=lambda d: report["class_shares"][d])
    print(f"min class share: {report['min_class_share']:.3f} (digit {rarest}; 0.100 = all digits equally often)")
    return report


def mixture_modes(data: str, modes: str | None):
    """(name, modes (K, D), sigma) of the mixture named by --modes, else of the run's data source."""
    if modes is not None:
        ds = load_source(modes)
        return modes, ds.modes, ds.sigma
    hint = f"name the mixture the samples should cover with --modes {'|'.join(MIXTURES)}"
    try:
        ds = load_source(data)
    except UserError as e:
        raise UserError(f"cannot read the run's data source to find its modes ({e}); {hint}") from e
    if ds.modes is None or ds.sigma is None:
        raise UserError(f"data source '{data}' has no known mode centres: {hint}")
    return data, ds.modes, ds.sigma


def check_vectors(gen, n: int, seed: int, modes: str | None) -> dict:
    name, centres, sigma = mixture_modes(str(gen.config["data"]), modes)
    samples = gen.sample(n, seed=seed)  # (N, D)
    report = mode_report(samples, centres, sigma)
    k = len(centres)
    print(f"modes of {name}: {k}, sigma {sigma}")
    print(f"modes covered (>= 1 sample within 3 sigma): {report['modes_covered']} / {k}")
    real = "   [real 2-D data: ~0.989]" if centres.shape[1] == 2 else ""
    print(f"high quality (within 3 sigma of the nearest mode): {report['high_quality']:.3f}{real}")
    print(f"reverse KL (nearest-mode histogram || uniform): {report['reverse_kl']:.4f} nats "
          f"[0 = even spread; all in one mode = log {k} = {math.log(k):.3f}]")
    print("high-quality samples per mode: " + " ".join(str(c) for c in report["per_mode_counts"]))
    return {"modes_source": name, "num_modes": k, "sigma": sigma, **report}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder or a checkpoint file")
    parser.add_argument("--n", type=int, default=None,
                        help=f"samples to draw (default {DEFAULT_N['image']} images, {DEFAULT_N['vector']} vectors)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--classifier", default=None,
                        help="digit classifier weights (default: the shipped ones; e.g. from train_digit_classifier.py --plain)")
    parser.add_argument("--modes", choices=MIXTURES, default=None,
                        help="mixture whose modes vector samples should cover (default: the run's data source)")
    args = parser.parse_args(argv)
    if args.n is not None and args.n < 1:
        parser.error("--n must be at least 1")

    gen = load_generator(args.run, device="cpu")
    n = args.n if args.n is not None else DEFAULT_N[gen.kind]
    data = str(gen.config["data"])
    print(f"run {args.run}: {gen.kind} samples of '{data}', n={n}, seed={args.seed}")
    if gen.kind == "image":
        if "mnist" not in data.lower():
            print(f"note: the classifier knows MNIST digits; on '{data}' its numbers may mean little")
        report = check_images(gen, n, args.seed, args.classifier)
    else:
        report = check_vectors(gen, n, args.seed, args.modes)
    result = {"run": str(args.run), "kind": gen.kind, "data": data, "seed": args.seed, **report}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

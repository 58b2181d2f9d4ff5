"""`ganforge` command line: parse, then call the library. A user's mistake prints one line."""
from __future__ import annotations

import argparse
import logging
import sys

from ganforge.config import HELP, PRESETS, TrainConfig, parse_overrides
from ganforge.errors import UserError


def _preset_defaults(key: str) -> str:
    """Each preset's value of a setting, e.g. 'dcgan 6000, mlp 16000, resnet 2000' (from PRESETS,
    so the help cannot drift from them)."""
    default = getattr(TrainConfig(), key)
    return ", ".join(f"{arch} {preset.get(key, default)}" for arch, preset in PRESETS.items())


# Flags of `train` that are shorthands for settings (the rest are given as key=value).
TRAIN_FLAGS = {
    "data": "data source: a name from `ganforge datasets`, a folder of images or a .npy file (default mnist5k)",
    "out": "parent folder of run folders (default runs)",
    "name": "run folder name (default <data>-<date>-<time>)",
    "steps": f"training steps, each one D and one G update (default by preset: {_preset_defaults('steps')})",
    "seed": "random seed; the same seed and settings give the same weights on CPU at the same thread count (default 0)",
    "batch_size": f"images (or points) per step (default by preset: {_preset_defaults('batch_size')})",
    "resolution": "image side in pixels, a power of two from 16 to 256 (default 32)",
    "arch": "model family: dcgan or resnet (images), mlp (vectors); default: chosen from the data",
    "device": "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default auto)",
    "eval_every": "steps between FID checks of G_ema, logged; the best checkpoint is kept (default 0 = off)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganforge", description="Train GANs, sample from them, compare with real data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    settings = "\n".join(f"  {key:<17} {text} ({_defaults(key)})" for key, text in HELP.items())
    train = sub.add_parser("train", help="train a GAN (default: DCGAN on 5,000 real MNIST digits)",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Train a GAN. Settings are given as flags (below) or as key=value.",
                           epilog="settings (key=value):\n" + settings)
    for key, text in TRAIN_FLAGS.items():
        train.add_argument("--" + key.replace("_", "-"), dest=key, metavar=key.upper(), help=text)
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its newest checkpoint "
                       "(--steps, --device and intervals may change)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="any setting, e.g. lr_g=1e-4 loss=minimax")

    sample = sub.add_parser("sample", help="draw samples from a trained run",
                            description="Draw samples from a run's EMA generator (newest checkpoint).")
    sample.add_argument("run", metavar="RUN", help="a run folder or a checkpoint .safetensors file")
    sample.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--seed", type=int, default=0, help="the same seed gives the same samples (default 0)")
    sample.add_argument("--out", required=True, metavar="PATH",
                        help="FILE.png: a grid (scatter plot for vectors); FILE.npy: the raw array "
                        "(images [N,C,H,W] in [-1,1], vectors [N,D]); a folder: one PNG per image")
    sample.add_argument("--seeds", metavar="LIST", help="one sample per seed, e.g. 0-99 or 1,5,9 (instead of --n/--seed); "
                        "each seed gives the same image in any call; a folder --out gets seedNNNN.png files")
    sample.add_argument("--truncation", type=float, default=1.0, help="scale z towards its mean, in (0, 1] (default 1)")
    sample.add_argument("--class", dest="class_", type=int, metavar="K", help="class K (class-conditional runs)")
    sample.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")

    walk = sub.add_parser("interpolate", help="walk the latent space between seeds (GIF, MP4 or a grid PNG)",
                          description="Spherical interpolation between the seeds' latents, returning to the first.")
    walk.add_argument("run", metavar="RUN", help="a run folder or checkpoint")
    walk.add_argument("--seeds", default="0-3", metavar="LIST", help="the seeds to visit, e.g. 0-3 or 4,8 (default 0-3)")
    walk.add_argument("--frames", type=int, default=16, help="frames between two seeds (default 16)")
    walk.add_argument("--fps", type=float, default=12, help="frames per second of a GIF or MP4 (default 12)")
    walk.add_argument("--no-loop", action="store_true", help="stop at the last seed instead of returning")
    walk.add_argument("--scale", type=int, default=4, help="pixel magnification of GIF/MP4 frames (default 4)")
    walk.add_argument("--out", required=True, metavar="FILE", help="walk.gif, walk.mp4 (needs PyAV) or walk.png (a grid)")
    walk.add_argument("--device", default="auto")

    for name, text in (("repair", "fill masked pixels of an image by GAN inversion (inpainting); --denoise: project a noisy image"),
                       ("invert", "find the latent whose image is closest to an image")):
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("run", metavar="RUN", help="a run folder or checkpoint")
        cmd.add_argument("--image", required=True, metavar="IN.png", help="the image, resized and cropped to the model's size")
        if name == "repair":
            cmd.add_argument("--mask", metavar="MASK.png", help="non-zero pixels mark what to fill")
            cmd.add_argument("--mask-box", metavar="X,Y,W,H", help="a box to fill, in the model's pixels")
            cmd.add_argument("--denoise", action="store_true", help="no mask: replace the image by G's closest image")
        else:
            cmd.add_argument("--latent-out", metavar="Z.npy", help="also write the latent (z_dim,) as .npy "
                             "(the class of a class-conditional run is printed)")
        cmd.add_argument("--out", required=True, metavar="OUT.png")
        cmd.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
        cmd.add_argument("--restarts", type=int, default=8, help="random starts searched at once (default 8); "
                         "a class-conditional run searches every class, ceil(restarts / classes) starts each")
        cmd.add_argument("--class", dest="class_", type=int, metavar="K", help="search class K only (class-conditional runs)")
        cmd.add_argument("--perceptual", type=float, default=0.0, metavar="W",
                         help="weight of a feature-space term (the eval extractor's features) (default 0: off)")
        cmd.add_argument("--seed", type=int, default=0)
        cmd.add_argument("--device", default="auto")

    ev = sub.add_parser("eval", help="compare generated images with real ones (FID, KID, precision/recall, ...)",
                        description="Compare generated images with real ones on the features of an extractor. "
                        "RUN (or --fake) is a run folder, a checkpoint, a folder of images, a .npy file or "
                        "a data source; --real defaults to the run's training data.")
    ev.add_argument("run", nargs="?", metavar="RUN", help="the generated side: a run folder or checkpoint")
    ev.add_argument("--fake", help="the generated side, when it is not a run (a folder, .npy or source)")
    ev.add_argument("--real", help="the real side (default: the run's training data)")
    ev.add_argument("--metrics", default="fid,kid,pr,dc", help="comma-separated: fid, kid, pr, dc, is (default fid,kid,pr,dc)")
    ev.add_argument("--extractor", default="auto", help="inception, mnist or auto: mnist for grayscale images "
                    "up to 64 px, inception otherwise (default auto)")
    ev.add_argument("--weights", metavar="PATH", help="the Inception weights file, for offline use")
    ev.add_argument("--n", type=int, default=5000, help="generated samples (the real side uses all its images) (default 5000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the samples and of KID's subsets (default 0)")
    ev.add_argument("--out", metavar="DIR", help="where eval.json, eval.png and nearest.png go "
                    "(default: the run folder, else .)")
    ev.add_argument("--cache", metavar="DIR", default=None, help="feature cache of the real side "
                    "(default ~/.cache/ganforge/features; 'none' turns it off)")
    ev.add_argument("--json", action="store_true", help="print eval.json on stdout instead of the table")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")

    prep = sub.add_parser("prepare", help="decode an image source once into a .npy file that training memory-maps",
                          description="Decode an image source (a folder, an archive, a built-in or torchvision "
                          "data set) once into FILE.npy (uint8 [N, H, W, C]) with FILE.json and, for labelled "
                          "data, FILE.labels.npy. `ganforge train --data FILE.npy` then reads batches from the "
                          "mapped file, so a data set larger than RAM trains without decoding per step.")
    prep.add_argument("source", metavar="SRC", help="what --data would take: a folder, an archive, a source name")
    prep.add_argument("--out", required=True, metavar="FILE.npy", help="the prepared file")
    prep.add_argument("--resolution", type=int, default=32, help="image side in pixels (default 32)")
    prep.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 or 3 (default: from the data)")

    prov = sub.add_parser("provenance", help="read what made an image: ganforge's metadata in a PNG, GIF or MP4",
                          description="Print the provenance record that ganforge writes into every image: "
                          "version, model hash, step, seed, class, truncation. With --model, check the record "
                          "against a model and redraw a seeded image pixel for pixel. Exit 1 when a file carries "
                          "no record or does not match.")
    prov.add_argument("files", nargs="+", metavar="FILE")
    prov.add_argument("--model", metavar="RUN", help="a run folder, checkpoint or exported folder to check against")
    prov.add_argument("--json", action="store_true", help="print the records as JSON")
    prov.add_argument("--device", default="auto")

    web = sub.add_parser("serve", help="a local web page: sample by seed and class, walk the latent space, repair images",
                         description="Serve a web page for a run's EMA generator (newest checkpoint) until Ctrl-C.")
    web.add_argument("run", metavar="RUN", help="a run folder or checkpoint")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    web.add_argument("--port", type=int, default=8000, help="port; 0 takes any free one (default 8000)")
    web.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")

    rep = sub.add_parser("report", help="a run's report: curves, samples over time, evaluation, config (HTML and PNG)",
                         description="Write report.html (one self-contained page) and report.png (one picture) "
                         "for a run folder: training curves, sample grids over time, real beside generated, "
                         "eval.json's numbers and the config.")
    rep.add_argument("run", metavar="RUN", help="a run folder")
    rep.add_argument("--out", metavar="DIR", help="where report.html and report.png go (default: the run folder)")

    exp = sub.add_parser("export", help="write a trained generator as a folder to publish (Hugging Face style) or ONNX",
                         description="Write a run's EMA generator to DIR: model.safetensors (G_ema's weights), "
                         "config.json, README.md (a model card with the run's eval.json numbers) and samples.png. "
                         "--format onnx adds generator.onnx, checked against PyTorch with onnxruntime. "
                         "ganforge.load(DIR) and every command that takes a RUN read DIR.")
    exp.add_argument("run", metavar="RUN", help="a run folder (newest checkpoint), a checkpoint or an exported folder")
    exp.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder; a previous export there is replaced")
    exp.add_argument("--format", choices=("hf", "onnx"), default="hf",
                     help="hf: the folder; onnx: the folder and generator.onnx (needs pip install 'ganforge[onnx]') (default hf)")
    exp.add_argument("--device", default="auto", help="where samples.png is drawn: auto, cpu, cuda, cuda:N or mps (default auto)")

    sub.add_parser("datasets", help="list the built-in data sources")
    return parser


def _defaults(key: str) -> str:
    """'default X', plus the value of each family preset that differs."""
    presets = "".join(f", {arch} {'from the data' if p[key] is None else p[key]}"
                      for arch, p in PRESETS.items() if key in p)
    return f"default {getattr(TrainConfig, key)}{presets}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value settings may come before, between or after the flags; argparse alone takes only
    # one run of positionals, so the rest arrive here as unknown arguments.
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if args.command != "train" or "=" not in item or item.startswith("-")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if args.command == "train":
        args.overrides += extra
    logging.basicConfig(format="ganforge: %(levelname)s: %(message)s", level=logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except UserError as err:
        print(f"ganforge: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder: the last checkpoint stays intact
        print(f"ganforge: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ganforge: interrupted", file=sys.stderr)
        return 130


def _train(args) -> int:
    from ganforge.train import train

    user = {key: getattr(args, key) for key in TRAIN_FLAGS if getattr(args, key) is not None}
    user = parse_overrides([f"{k}={v}" for k, v in user.items()] + args.overrides)
    train(user, resume=args.resume, progress=not args.no_progress)
    return 0


def _eval(args) -> int:
    import json
    from pathlib import Path

    from ganforge.metrics.evaluate import evaluate, format_table, numbers, write_report
    from ganforge.sample import pick_device

    fake = args.run or args.fake
    if fake is None or (args.run and args.fake):
        raise UserError("name the generated side once: ganforge eval RUN, or ganforge eval --fake PATH --real PATH")
    if args.n < 2:
        raise UserError(f"--n must be >= 2, got {args.n}")
    cache = None if args.cache == "none" else Path(args.cache or Path.home() / ".cache" / "ganforge" / "features")
    report = evaluate(fake, args.real, metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
                      extractor=args.extractor, n=args.n, seed=args.seed, weights=args.weights,
                      device=pick_device(args.device), cache_dir=cache)
    # a run or exported folder keeps its own report; a checkpoint's goes to its run folder
    run_dir = Path(".") if report["fake"]["kind"] != "generator" else (
        Path(fake) if Path(fake).is_dir() else Path(report["fake"]["path"]).parent.parent)
    written = write_report(report, Path(args.out) if args.out else run_dir)
    if args.json:
        print(json.dumps(numbers(report), indent=2))
    else:
        print(format_table(report))
        print("wrote " + ", ".join(map(str, written)))
    return 0


def _sample(args) -> int:
    from ganforge.sample import load_generator, parse_seeds, write_samples

    if args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    seeds = parse_seeds(args.seeds) if args.seeds else None
    gen = load_generator(args.run, args.device)
    if seeds:
        samples = gen.sample_seeds(seeds, args.truncation, args.class_)
        names = [f"seed{s:04d}.png" for s in seeds]
        meta = [gen.provenance(class_=args.class_, seed=s, truncation=args.truncation) for s in seeds]
    else:
        samples, names = gen.sample(args.n, args.seed, args.truncation, args.class_), None
        meta = gen.provenance(class_=args.class_, seed=args.seed, n=args.n, truncation=args.truncation)
    files = write_samples(samples, gen.kind, args.out, names, meta)
    what = f"seeds {args.seeds}" if seeds else f"seed {args.seed}"
    print(f"wrote {len(samples)} samples (step {gen.step}, {what}) to {args.out}"
          + (f" ({len(files)} files)" if len(files) > 1 else ""))
    return 0


def _interpolate(args) -> int:
    from ganforge.sample import load_generator, parse_seeds, write_animation

    seeds = parse_seeds(args.seeds)
    gen = load_generator(args.run, args.device)
    frames = gen.interpolate(seeds, args.frames, loop=not args.no_loop)
    write_animation(frames, args.out, args.fps, args.scale, gen.provenance("latent walk", seeds=seeds))
    print(f"wrote {len(frames)} frames to {args.out}")
    return 0


def _invert_or_repair(args) -> int:
    from pathlib import Path

    import numpy as np

    from ganforge.sample import load_generator, read_image, read_mask, write_samples

    gen = load_generator(args.run, args.device)
    img = read_image(args.image, gen)[None]
    search = dict(steps=args.steps, restarts=args.restarts, seed=args.seed, perceptual=args.perceptual,
                  class_=args.class_)
    if args.command == "invert":
        z, out, class_ = gen.invert(img, **search)
        if args.latent_out:
            np.save(args.latent_out, z[0].numpy())
        if class_ is not None:
            print(f"class {int(class_[0])}")
        what = "inverted"
    elif args.denoise:
        if args.mask or args.mask_box:
            raise UserError("--denoise replaces the whole image: leave out --mask and --mask-box")
        out = gen.invert(img, **search).image
        what = "denoised"
    else:
        out = gen.repair(img, read_mask(args.mask, args.mask_box, gen)[None], **search)
        what = "repaired"
    write_samples(out, "image", args.out, meta=gen.provenance(what, source=Path(args.image).name, seed=args.seed))
    print(f"wrote {args.out}")
    return 0


def _prepare(args) -> int:
    import numpy as np

    from ganforge.data.prepare import prepare

    out = prepare(args.source, args.out, args.resolution, args.channels)
    arr = np.load(out, mmap_mode="r")
    print(f"wrote {out}: {arr.shape[0]} images of {arr.shape[1]}x{arr.shape[2]}x{arr.shape[3]} "
          f"({arr.nbytes / 2**20:.1f} MiB); train with --data {out} --resolution {arr.shape[1]}")
    return 0


def _provenance(args) -> int:
    import json

    from ganforge import provenance
    from ganforge.sample import load_generator

    gen = load_generator(args.model, args.device) if args.model else None
    failed = 0
    for path in args.files:
        meta = provenance.read(path)
        line = json.dumps(meta) if args.json else provenance.describe(meta)
        if meta is not None and gen is not None:
            try:
                line += "; " + provenance.verify(path, meta, gen)
            except UserError as err:
                line, failed = f"{line}; DOES NOT MATCH: {err}", failed + 1
        failed += meta is None
        print(f"{path}: {line}")
    return 1 if failed else 0


def _serve(args) -> int:
    from ganforge.serve import serve

    serve(args.run, args.host, args.port, args.device)
    return 0


def _report(args) -> int:
    from ganforge.report import write_report

    print("wrote " + ", ".join(map(str, write_report(args.run, args.out))))
    return 0


def _export(args) -> int:
    from ganforge.export import export

    out = export(args.run, args.out, args.format, args.device)
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def _datasets(args) -> int:
    from ganforge.data import list_sources

    for name, text in list_sources():
        print(f"{name:<16} {text}")
    return 0


COMMANDS = {"train": _train, "sample": _sample, "interpolate": _interpolate, "repair": _invert_or_repair,
            "invert": _invert_or_repair, "eval": _eval, "prepare": _prepare, "datasets": _datasets,
            "provenance": _provenance, "serve": _serve, "report": _report, "export": _export}

"""`ganforge export`: a trained generator as a folder to publish (Hugging Face style), or as ONNX.

The folder holds G_ema's weights alone (`model.safetensors`, with their SHA-256 in its metadata),
what rebuilds the network (`config.json`), a model card (`README.md`) and a grid of samples
(`samples.png`). `--format onnx` adds `generator.onnx`, checked against PyTorch with onnxruntime
before it is kept. `ganforge.load(DIR)` and every command that takes a RUN read the folder back,
after checking its weights against the SHA-256 that config.json records.

A folder is built beside its destination and renamed into place, so a crash leaves the old export
or the new one, never half of one.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import shlex
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from ganforge import __version__, provenance
from ganforge.checkpoint import CHECKPOINT_DIR, atomic_write
from ganforge.errors import UserError
from ganforge.models import build_generator
from ganforge.sample import LoadedGenerator, load_generator, seed_draws
from ganforge.viz import image_grid, save_png, scatter

WEIGHTS, CONFIG, CARD, SAMPLES, ONNX = "model.safetensors", "config.json", "README.md", "samples.png", "generator.onnx"
FORMATS = ("hf", "onnx")
LIBRARY = "ganforge"     # config.json's `library_name`: what marks a folder as an export
SAMPLE_SEEDS = range(16)
VECTOR_POINTS = 1000     # a scatter plot of 16 points shows nothing: vectors get 1,000 from seed 0
ONNX_SEEDS, ONNX_LIMIT, ONNX_OPSET = 64, 1e-4, 17
EVAL_FLAGS = {"fid": "fid", "kid_mean": "kid", "precision": "pr", "density": "dc", "is_mean": "is"}  # eval.json key -> --metrics


def is_export(path: str | Path) -> bool:
    """Whether `path` is a folder written by `export` (or its model.safetensors)."""
    folder = _folder(path)
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def read(path: str | Path) -> tuple[Path, nn.Module, dict]:
    """(weights file, G with its weights, config.json) of an exported folder. Weights that do not
    hash to config.json's `model_sha256` raise UserError naming the file."""
    folder = _folder(path)
    weights = folder / WEIGHTS
    try:
        record = json.loads((folder / CONFIG).read_text())
        G = build_generator(record["model"])
        G.load_state_dict(load_tensors(weights.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        reason = " ".join(str(err).split())  # load_state_dict's message spans lines
        raise UserError(f"{folder} is not a readable ganforge export ({reason}); export it again") from None
    found, expected = provenance.model_sha256(G), record.get("model_sha256")
    if found != expected:
        raise UserError(f"{weights} has been altered or damaged: its weights hash to {found[:12]}, "
                        f"{folder / CONFIG} records {str(expected)[:12]}; export it again")
    return weights, G, record


def _folder(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.name == WEIGHTS else path


def export(run_or_checkpoint: str | Path, out_dir: str | Path, format: str = "hf", device: str = "auto") -> Path:
    """Write the EMA generator of a run folder (newest checkpoint), a checkpoint or an export to
    `out_dir`: hf: model.safetensors, config.json, README.md, samples.png; onnx: the same plus
    generator.onnx, kept only when onnxruntime matches PyTorch within 1e-4 on 64 seeds. A
    non-empty `out_dir` is refused unless it holds a previous export, which is replaced."""
    if format not in FORMATS:
        raise UserError(f"unknown export format '{format}': choose from {', '.join(FORMATS)}")
    out = Path(out_dir).resolve()
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and _json(out / CONFIG).get("library_name") != LIBRARY):
        raise UserError(f"{out} exists and is not a ganforge export: name a new or empty folder with --out")
    if format == "onnx":
        _onnx_modules()  # before any work: say what to install
    gen = load_generator(run_or_checkpoint, device)
    source = Path(run_or_checkpoint).resolve()  # the run (or export) folder: its config.json and eval.json
    if not source.is_dir():
        source = source.parent.parent if source.parent.name == CHECKPOINT_DIR else source.parent
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        config = _config(gen, source)
        weights = {k: v.detach().cpu().contiguous() for k, v in gen.G.state_dict().items()}
        atomic_write(tmp / WEIGHTS, save_tensors(weights, metadata={"format": "pt", "library": LIBRARY,
                                                                    "model_sha256": gen.sha256}))
        samples = _write_samples(gen, tmp / SAMPLES)
        if format == "onnx":
            config["onnx"] = _write_onnx(gen, tmp / ONNX)
        atomic_write(tmp / CONFIG, json.dumps(config, indent=2).encode())
        atomic_write(tmp / CARD, card(gen, config, out.name, samples, _json(source / "eval.json")).encode())
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to `out`, moving a previous export aside first and deleting it
    after: a crash in between leaves it as the hidden .NAME.old-PID, never a half-written `out`."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _json(path: Path) -> dict:
    """A JSON file's object, or {} when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _config(gen: LoadedGenerator, source: Path) -> dict:
    """config.json: what rebuilds G (`model`), how it was trained, and its weights' SHA-256."""
    config = dict(library_name=LIBRARY, ganforge_version=__version__, model=gen.model, config=gen.config,
                  step=gen.step, model_sha256=gen.sha256,
                  source=dict(run=source.name, checkpoint=gen.path.name))
    data = _json(source / CONFIG).get("data")
    return config | ({"data": data} if data else {})


def _write_samples(gen: LoadedGenerator, path: Path) -> tuple[str, str]:
    """samples.png with its provenance; returns the `ganforge sample` flags that draw the same
    samples, and how the picture differs from what they write."""
    if gen.kind == "image":
        seeds = list(SAMPLE_SEEDS)
        grid = image_grid(gen.sample_seeds(seeds))
        scale = max(1, 256 // grid.width)  # small images enlarged, pixel for pixel
        save_png(grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST), path,
                 gen.provenance("generated", seeds=seeds))
        return f"--seeds {seeds[0]}-{seeds[-1]}", f", enlarged {scale}x" if scale > 1 else ""
    save_png(scatter(gen.sample(VECTOR_POINTS, seed=0), title=f"{VECTOR_POINTS} samples, seed 0"), path,
             gen.provenance("generated", seed=0, n=VECTOR_POINTS))
    return f"--n {VECTOR_POINTS} --seed 0", ""


def _onnx_modules():
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime
    except ImportError:
        raise UserError("ONNX export needs onnx and onnxruntime: pip install 'ganforge[onnx]'") from None
    return onnxruntime


def _onnx_inputs(gen: LoadedGenerator, seeds: list[int]) -> dict[str, torch.Tensor]:
    """The ONNX model's inputs for these seeds as `gen.sample_seeds(seeds)` makes them: z (N, z_dim)
    and, for a class-conditional G, class (N,) (see ganforge.sample.seed_draws)."""
    z, classes = seed_draws(gen.G, seeds)
    return {"z": z} | ({} if classes is None else {"class": classes})


def _write_onnx(gen: LoadedGenerator, path: Path) -> dict:
    """generator.onnx, then onnxruntime against PyTorch on ONNX_SEEDS seeds; the record of it."""
    onnxruntime = _onnx_modules()
    # onnxruntime runs on the CPU, so PyTorch is compared there too (a GPU's TF32 convolutions alone
    # differ by ~1e-3). G_ema is in eval mode: batch norm uses its running statistics, as `sample` does.
    cpu = dataclasses.replace(gen, G=copy.deepcopy(gen.G).cpu(), device=torch.device("cpu"))
    seeds = list(range(ONNX_SEEDS))
    inputs = _onnx_inputs(cpu, seeds)
    output = "img" if gen.kind == "image" else "x"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) warns that it is deprecated since torch 2.9; it
        # needs no onnxscript and writes one self-contained file. Switch when torch drops it.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(cpu.G, tuple(inputs.values()), buf, input_names=list(inputs), output_names=[output],
                          dynamic_axes={name: {0: "N"} for name in [*inputs, output]},
                          opset_version=ONNX_OPSET, dynamo=False)
    atomic_write(path, buf.getvalue())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: t.numpy() for name, t in inputs.items()})[0]
    diff = float(np.abs(got - cpu.sample_seeds(seeds).numpy()).max())
    print(f"onnx check: {ONNX_SEEDS} seeds, max abs difference {diff:.1e} (limit {ONNX_LIMIT:.0e})")
    if not diff <= ONNX_LIMIT:  # NaN fails too
        path.unlink()
        raise UserError(f"the ONNX model differs from PyTorch by {diff:.1e} (over {ONNX_LIMIT:.0e}) on "
                        f"{ONNX_SEEDS} seeds: nothing was written; --format hf still works")
    shapes = {name: [-1, *t.shape[1:]] for name, t in inputs.items()}  # -1: any batch size
    return dict(file=ONNX, opset=ONNX_OPSET, inputs=shapes, output={output: [-1, *got.shape[1:]]},
                check=dict(seeds=ONNX_SEEDS, max_abs_difference=diff, limit=ONNX_LIMIT,
                           onnxruntime=onnxruntime.__version__))


def card(gen: LoadedGenerator, config: dict, name: str, samples: tuple[str, str], evaluation: dict) -> str:
    """README.md: YAML front matter for the Hugging Face Hub, then what the model is, how it was
    trained and measured, and how to use and publish it. `name`: the folder's name in commands;
    `samples`: what `_write_samples` returned."""
    parts = [_front_matter(gen), _about(gen, name, samples), _training(gen, config.get("data", {})),
             "## Evaluation\n\n" + _evaluation(gen, name, evaluation), _use(gen, name, samples[0])]
    if "onnx" in config:
        parts.append(_onnx_usage(gen, config["onnx"], name))
    return "\n\n".join(parts + [_publish(name), _provenance(name, "onnx" in config)]) + "\n"


def _front_matter(gen: LoadedGenerator) -> str:
    tags = ["gan", LIBRARY]
    if gen.kind == "image":
        conditional = gen.model["G"].get("num_classes", 0) > 0
        tags.append(f"{'class-conditional' if conditional else 'unconditional'}-image-generation")
    lines = ["---", f"library_name: {LIBRARY}", "tags:", *(f"- {tag}" for tag in tags)]
    if "unconditional-image-generation" in tags:  # the Hub has no pipeline for class-conditional generation
        lines.append("pipeline_tag: unconditional-image-generation")
    return "\n".join(lines + ["---"])


def _about(gen: LoadedGenerator, name: str, samples: tuple[str, str]) -> str:
    G, r = gen.model["G"], gen.config.get("resolution")
    classes = G.get("num_classes", 0)
    if gen.kind == "image":
        network = {"resnet": "ResNet generator (SNGAN, Miyato et al. 2018)"}.get(gen.model["arch"],
                                                                                "DCGAN generator (Radford et al. 2016)")
        what = (f"A {network}: z ({G['z_dim']} standard normal numbers)"
                + (f" and a class (0 to {classes - 1})" if classes else "") + f" -> a {G['channels']}x{r}x{r} image in [-1, 1].")
    else:
        what = f"An MLP generator: z ({G['z_dim']} standard normal numbers) -> a point in {G['dim']} dimensions, in data units."
    params = sum(p.numel() for p in gen.G.parameters())
    flags, note = samples
    return f"""# {name}

{what}

These are the weights of the moving average of G (`G_ema`, the generator ganforge samples from)
at training step {gen.step}: {params:,} parameters, SHA-256 `{gen.sha256}` (also in `config.json`
and in the metadata of `model.safetensors`).

![samples](samples.png)

*`ganforge sample {name} {flags}`{note}{f'; seed s shows class s mod {classes}' if classes else ''}*"""


def _training(gen: LoadedGenerator, data: dict) -> str:
    keys = ["data", "resolution", "conditional", "steps", "batch_size", "loss", "lr_g", "lr_d", "beta1", "beta2",
            "lr_decay", "r1_gamma", "r1_every", "ema_kimg", "precision", "seed"]
    if gen.kind != "image":
        keys = [k for k in keys if k not in ("resolution", "conditional")]
    count = f" ({data['count']:,} {'images' if gen.kind == 'image' else 'points'})" if "count" in data else ""
    rows = "\n".join(f"| `{k}` | `{gen.config[k]}`{count if k == 'data' else ''} |" for k in keys if k in gen.config)
    return f"""## Training

| setting | value |
|---|---|
{rows}

`config.json` holds every setting (`config`) and the network's arguments (`model`)."""


def _evaluation(gen: LoadedGenerator, name: str, evaluation: dict) -> str:
    """The numbers of the run's eval.json when they were measured on this very checkpoint, with
    the command that reproduces them; otherwise the command that measures them."""
    if gen.kind != "image":
        return "Image metrics do not apply to a vector generator (ganforge judges 2-D mixtures with benchmarks/check_samples.py)."
    measure = f"```bash\nganforge eval {name} --n 5000 --seed 0    # against the training data\n```"
    fake = evaluation.get("fake", {})
    if not evaluation:
        return f"The run had no `eval.json` (written by `ganforge eval RUN`) when this was exported: no numbers yet. Measure them:\n\n{measure}"
    if fake.get("kind") != "generator" or fake.get("step") != gen.step or Path(fake.get("path", "")).name != gen.path.name:
        return (f"The run's `eval.json` measured {Path(fake.get('path', '?')).name} (step {fake.get('step', '?')}), "
                f"not this checkpoint, so its numbers are left out. Measure this one:\n\n{measure}")
    m, real, seed = evaluation["metrics"], evaluation["real"], evaluation["seed"]
    rows = {"FID": m.get("fid"), "KID": _mean_std(m, "kid"), "precision (k=3)": m.get("precision"),
            "recall (k=3)": m.get("recall"), "density (k=5)": m.get("density"), "coverage (k=5)": m.get("coverage"),
            "Inception Score": _mean_std(m, "is"),
            "near-copy share": evaluation.get("memorisation", {}).get("near_copy_share")}
    table = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                      for k, v in rows.items() if v is not None)
    flags = ",".join(flag for key, flag in EVAL_FLAGS.items() if key in m)
    kid = f" KID: mean ± std over 100 subsets of {m['kid_subset_size']}." if "kid_subset_size" in m else ""
    warned = "".join(f"\n\nWarning from the evaluation: {w}" for w in evaluation.get("warnings", []))
    return f"""| metric | value |
|---|---|
{table}

Measured by `ganforge eval` (ganforge {evaluation.get('version')}) at step {gen.step}: {fake['n']:,} samples
drawn with seed {fake['seed']} (`ganforge sample {name} --n {fake['n']} --seed {fake['seed']}`) against all
{real['n']:,} images of `{real['source']}`, on the features of the `{evaluation['extractor']}` extractor
({evaluation['feature_dim']}-d, weights SHA-256 `{evaluation['extractor_sha256'][:16]}...`).{kid} This folder
samples exactly the images of the checkpoint it came from, so this command gives the same numbers:

```bash
ganforge eval {name} --real {shlex.quote(real['source'])} --extractor {evaluation['extractor']} --metrics {flags} --n {fake['n']} --seed {seed}
```{warned}"""


def _mean_std(metrics: dict, key: str) -> str | None:
    if f"{key}_mean" not in metrics:
        return None
    return f"{metrics[f'{key}_mean']:.4g} ± {metrics[f'{key}_std']:.2g}"


def _use(gen: LoadedGenerator, name: str, flags: str) -> str:
    shape = "(16, C, H, W) in [-1, 1]" if gen.kind == "image" else "(16, D)"
    classes = gen.model["G"].get("num_classes", 0)
    one_class = f"\nganforge sample {name} --seeds 0-15 --class 7 --out 7.png    # one class of 0 to {classes - 1}" if classes else ""
    return f"""## Use

```bash
pip install ganforge
ganforge sample {name} {flags} --out samples.png    # the same samples on every call{one_class}
```

```python
import ganforge
gen = ganforge.load("{name}")           # checks the weights against config.json's SHA-256
x = gen.sample_seeds(list(range(16)))   # {shape}
```

Loading reads safetensors and JSON only: it runs no code from this folder. Every ganforge command
that takes a run (`sample`, `interpolate`, `repair`, `invert`, `eval`) takes this folder, offline."""


def _onnx_usage(gen: LoadedGenerator, onnx: dict, name: str) -> str:
    z_dim, conditional = gen.G.z_dim, "class" in onnx["inputs"]
    (output, shape), = onnx["output"].items()
    feed = f'{{"z": z, "class": np.arange(16, dtype=np.int64) % {gen.G.num_classes}}}' if conditional else '{"z": z}'
    check = onnx["check"]
    return f"""## ONNX

`generator.onnx` (opset {onnx['opset']}) takes `z` float32 [N, {z_dim}]{' and `class` int64 [N]' if conditional else ''} and gives
`{output}` float32 [N, {', '.join(map(str, shape[1:]))}]{' in [-1, 1]' if gen.kind == 'image' else ''}. On the z of seeds 0-{check['seeds'] - 1}, onnxruntime
{check['onnxruntime']} and PyTorch differ by at most {check['max_abs_difference']:.1e}.

```python
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession("{name}/generator.onnx")
z = np.random.default_rng(0).standard_normal((16, {z_dim}), dtype=np.float32)
{output} = session.run(None, {feed})[0]
```

NumPy's z are not ganforge's: the z of ganforge's seed s is `ganforge.sample.latents(1, {z_dim}, s)`."""


def _publish(name: str) -> str:
    return f"""## Publish

```bash
huggingface-cli upload USER/{name} {name}
huggingface-cli download USER/{name} --local-dir {name}    # elsewhere; then use it as above
```

`config.json` keeps the training config as it was, local paths (`data`, `out`) included."""


def _provenance(name: str, onnx: bool) -> str:
    return f"""## Provenance

Images that ganforge writes with this model carry a record in their metadata (the PNG text key
`ganforge`; a GIF's or MP4's comment): the ganforge version, this model's SHA-256, the step and
the seed, class and truncation that made each. `ganforge provenance IMAGE --model {name}` reads it
and, for an image drawn from a seed, draws it again to compare. It is a label, not a watermark:
re-encoding or a screenshot removes it, and images made by other code{' (generator.onnx included)' if onnx else ''} carry none."""

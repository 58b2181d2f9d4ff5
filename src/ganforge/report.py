"""A run's report (`ganforge report RUN`): training curves, sample grids over time, real beside
generated, the evaluation and the config, as one self-contained HTML page and one PNG.

The report reads only what the run folder holds, so it works on a finished run, a running one and
one killed early; whatever is missing is named with the command that makes it.
"""
from __future__ import annotations

import io
import json
import re
import shlex
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ganforge import __version__, checkpoint
from ganforge.checkpoint import atomic_write
from ganforge.errors import UserError
from ganforge.logs import read_log
from ganforge.provenance import record
from ganforge.report_html import eval_numbers, page
from ganforge.viz import save_png, stack

STRIP = 8      # sample grids shown, evenly spaced over training
WIDTH = 1600   # report.png's width in pixels
PAD = 12
CURVES = ("loss_D", "loss_G", "D_real", "D_fake", "img_per_s")  # what makes a log line one of training numbers
_STEP = re.compile(r"step-(\d+)\.(?:png|safetensors)")


@dataclass
class RunFacts:
    """What a run folder holds, read once."""

    run_dir: Path
    saved: dict                       # config.json: config, model, data, version
    train: list[dict]                 # log lines of losses, oldest first
    fid: list[dict]                   # {step, nimg, fid}
    rollbacks: list[dict]             # {step, event, diverged_at, why, lr_scale}
    unreadable: int                   # log lines that are not JSON (a kill mid-write)
    samples: list[tuple[int, Path]]   # up to STRIP grids, evenly spaced, oldest first
    n_samples: int
    compare: Path | None
    evaluation: dict | None           # eval.json
    checkpoint_step: int | None       # the newest checkpoint's
    missing: list[str]                # what the report lacks, and the command that makes it
    warnings: list[dict]              # {step, event, kind, message}: training diagnostics (ganforge.diagnostics)

    @property
    def cfg(self) -> dict:
        return self.saved.get("config", {})


def write_report(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write report.html (one self-contained page) and report.png (one picture) for a run folder,
    into `out` (default: the run folder). Returns the files written."""
    facts = read_run(Path(run_dir))
    out = Path(out) if out is not None else facts.run_dir
    curves = _curves(facts)
    html_path, png_path = out / "report.html", out / "report.png"
    atomic_write(html_path, page(facts, _png_bytes(curves), key_numbers(facts), _evenly(facts.train, 12)).encode())
    save_png(_page(facts, curves), png_path, record("run report", run=str(run_dir)))
    return [html_path, png_path]


def read_run(run_dir: Path) -> RunFacts:
    """Everything the report shows, from the run folder's files; a missing file is noted, not fatal."""
    if not run_dir.exists():
        raise UserError(f"no such run folder: {run_dir}: give the folder `ganforge train` printed")
    if run_dir.is_file():
        raise UserError(f"{run_dir} is a file: give its run folder (the one holding config.json)")
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir} is not a ganforge run folder (no config.json): give the folder "
                        "`ganforge train` printed, e.g. runs/<data>-<date>-<time>") from None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {run_dir / 'config.json'} ({err}): it is damaged") from None
    if not isinstance(saved, dict):
        raise UserError(f"{run_dir / 'config.json'} is not a ganforge config")
    run, cfg, missing = shlex.quote(str(run_dir)), saved.get("config", {}), []

    entries, unreadable = read_log(run_dir / "log.jsonl")
    train = [e for e in entries if all(isinstance(e.get(k), (int, float)) for k in CURVES)]
    fid = [e for e in entries if isinstance(e.get("fid"), (int, float))]
    rollbacks = [e for e in entries if e.get("event") == "rollback"]
    warnings = [e for e in entries if e.get("event") == "warning"]
    if unreadable:
        missing.append(f"{unreadable} unreadable line(s) of log.jsonl skipped (cut short when the run was killed)")
    if not train:
        missing.append(f"no training numbers in log.jsonl yet: the first line comes at step {cfg.get('log_every', '?')}")
    steps, last = cfg.get("steps"), max((e["step"] for e in train + fid), default=0)
    if steps and last < steps:
        missing.append(f"the log stops at step {last} of {steps}: the run is still going or was stopped; "
                       f"`ganforge train --resume {run}` continues it")

    grids = sorted((int(m.group(1)), p) for p in (run_dir / "samples").glob("step-*.png")
                   if (m := _STEP.fullmatch(p.name)))
    if not grids:
        missing.append("no sample grids yet (samples/step-*.png, one every sample_every steps)")

    compare = run_dir / "compare.png"
    if not compare.is_file():
        compare = None
        missing.append(f"no compare.png: it is written when training ends (`ganforge train --resume {run}` "
                       "finishes the run)")

    kept = checkpoint.checkpoints(run_dir)
    checkpoint_step = int(_STEP.fullmatch(kept[-1].name).group(1)) if kept else None
    if not kept:
        missing.append(f"no checkpoint yet: one comes every checkpoint_every steps and at the end; "
                       f"`ganforge train --resume {run}` starts again from step 0")

    evaluation = None
    try:
        evaluation = json.loads((run_dir / "eval.json").read_text())
        step = evaluation.get("fake", {}).get("step")
        if checkpoint_step is not None and step is not None and step != checkpoint_step:
            missing.append(f"eval.json judges step {step}, the newest checkpoint is step {checkpoint_step}: "
                           f"`ganforge eval {run}` evaluates it")
    except FileNotFoundError:
        missing.append(f"not evaluated yet: `ganforge eval {run}` writes eval.json, eval.png and nearest.png")
    except (OSError, ValueError, AttributeError):
        evaluation = None
        missing.append(f"eval.json is unreadable: `ganforge eval {run}` writes it again")
    return RunFacts(run_dir, saved, train, fid, rollbacks, unreadable, _evenly(grids, STRIP), len(grids),
                    compare, evaluation, checkpoint_step, missing, warnings)


def _evenly(items: list, k: int) -> list:
    """At most k items, evenly spaced, with the first and the last."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in sorted({round(j * (len(items) - 1) / (k - 1)) for j in range(k)})]


def key_numbers(facts: RunFacts) -> list[tuple[str, str]]:
    """The run in a dozen (label, value) lines: what report.png's text panel and the page's summary show."""
    cfg, data, model = facts.cfg, facts.saved.get("data", {}), facts.saved.get("model", {})
    last = facts.train[-1] if facts.train else None
    step = max([e["step"] for e in facts.train + facts.fid] + [facts.checkpoint_step or 0])
    size = f"{cfg.get('resolution')} px" if model.get("arch", cfg.get("arch")) != "mlp" else "vectors"
    rows = [("run", str(facts.run_dir)),
            ("data", f"{data.get('source', cfg.get('data'))}: {data.get('count', '?')} items, {size}"),
            ("model", (f"{cfg.get('arch')}, G width {cfg.get('g_width')}, D width {cfg.get('d_width')}, "
                       f"loss {cfg.get('loss')}, batch {cfg.get('batch_size')}")),
            ("progress", f"step {step} of {cfg.get('steps')}" + (f" ({last['nimg'] / 1000:g}k images)" if last else "")),
            ("newest checkpoint", f"step {facts.checkpoint_step}" if facts.checkpoint_step is not None else "none")]
    if last:
        speeds = sorted(e["img_per_s"] for e in facts.train)
        rows += [(f"at step {last['step']}", (f"loss D {last['loss_D']:.4g}, loss G {last['loss_G']:.4g}, "
                                             f"D(x) {last['D_real']:.3f}, D(G(z)) {last['D_fake']:.3f}")),
                 ("speed", (f"median {speeds[len(speeds) // 2]:.0f} img/s (last {last['img_per_s']:.0f}), "
                            f"{100 * last.get('data_share', 0):.1f}% of step time fetching data"))]
    if facts.fid:
        best = min(facts.fid, key=lambda e: e["fid"])
        text = (f"{facts.fid[-1]['fid']:.4g} at step {facts.fid[-1]['step']}, best {best['fid']:.4g} at step "
                f"{best['step']} ({cfg.get('eval_n')} samples)")
        rows.append(("FID in training", text))
    skipped = last.get("skipped", 0) if last else 0
    rows.append(("divergence guard", f"{skipped} non-finite steps skipped, {len(facts.rollbacks)} rollbacks"))
    if facts.warnings:
        more = f" and {len(facts.warnings) - 8} more" if len(facts.warnings) > 8 else ""
        rows.append(("warnings", ", ".join(f"{w.get('kind')} at step {w['step']}" for w in facts.warnings[:8]) + more))
    if facts.evaluation:
        ev, metrics = facts.evaluation, facts.evaluation.get("metrics", {})
        shown = ", ".join(f"{name} {text}" for name, text in eval_numbers(metrics))
        rows.append(("eval.json", shown or "no metrics"))
        fake, real = ev.get("fake", {}), ev.get("real", {})
        text = (f"{ev.get('extractor')} features, {fake.get('n')} generated (step {fake.get('step')}) vs "
                f"{real.get('n')} real, seed {ev.get('seed')}")
        rows.append(("evaluated with", text))
    rows.append(("ganforge", f"{facts.saved.get('version', '?')} (trained), {__version__} (report)"))
    if "torch" in facts.saved:  # runs before ganforge recorded them have neither
        rows.append(("trained with", f"PyTorch {facts.saved['torch']}, {facts.saved['cpu_threads']} CPU threads"))
    return rows


def _curves(facts: RunFacts) -> Image.Image:
    """Losses, mean D outputs, FID, throughput and (if any) skipped steps over training; rollbacks
    as red dashed lines."""
    # Figure, not pyplot: no global figure state, no backend to pick.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    train, fid, cfg = facts.train, facts.fid, facts.cfg
    skipped = any(e.get("skipped") for e in train)
    fig = Figure(figsize=(WIDTH / 100, 6.6), dpi=100, layout="constrained")
    axes = list(fig.subplots(2, 3 if skipped else 2).ravel())
    batch = f" (1 step = {cfg['batch_size']} images)" if "batch_size" in cfg else ""
    fig.suptitle("training curves" + batch, fontsize=13)
    last = max([e["step"] for e in train + fid] + [1])

    def panel(ax, title, ylabel, series, empty="no log lines yet"):
        ax.set(title=title, xlabel="step", ylabel=ylabel, xlim=(0, last * 1.03))  # one x range: events line up
        ax.title.set_fontsize(11)
        for key, label, entries in series:
            if entries:
                ax.plot([e["step"] for e in entries], [e.get(key, 0) for e in entries], label=label,
                        marker="o" if len(entries) < 4 else None, ms=4)
        if not ax.lines:
            ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_yticks([])
        for i, event in enumerate(facts.rollbacks):
            ax.axvline(event["step"], color="tab:red", ls="--", lw=1, label="rollback" if i == 0 else None)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9, loc="best")

    panel(axes[0], f"losses ({cfg.get('loss', '?')} G loss)", "loss", [("loss_D", "D", train), ("loss_G", "G", train)])
    panel(axes[1], "mean D output (probability of real)", "mean D output",
          [("D_real", "D(x), real", train), ("D_fake", "D(G(z)), generated", train)])
    if train:
        axes[1].set_ylim(0, 1)
        axes[1].axhline(0.5, color="0.7", lw=0.8, ls=":")
    panel(axes[2], "FID of G_ema during training (lower is better)", "FID",
          [("fid", f"{cfg.get('eval_n', '?')} samples", fid)],
          "no FID for vector data" if cfg.get("arch") == "mlp" else
          f"no FID check yet (one every {cfg['eval_every']} steps)" if cfg.get("eval_every") else
          "no FID checks in the log: train with eval_every=N")
    if fid:  # FID falls by orders of magnitude early on: a log axis, labelled in plain numbers
        axes[2].set_yscale("log")
        axes[2].yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        axes[2].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[2].yaxis.set_minor_formatter(NullFormatter())
        best = min(fid, key=lambda e: e["fid"])
        axes[2].set_ylim(best["fid"] / 1.6, max(e["fid"] for e in fid) * 1.3)  # room for the label below the best
        axes[2].annotate(f"best {best['fid']:.3g}", (best["step"], best["fid"]), textcoords="offset points",
                         xytext=(-8, -4), ha="right", va="top", fontsize=9)
    panel(axes[3], "throughput", "images / s", [("img_per_s", "images/s", train)])
    if train:
        axes[3].set_ylim(bottom=0)
    if skipped:
        panel(axes[4], "non-finite steps skipped (total)", "steps", [("skipped", "skipped", train)])
        axes[5].set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Image.open(buf).convert("RGB")


def _page(facts: RunFacts, curves: Image.Image) -> Image.Image:
    """report.png: a title, the curves, the sample grids over time, then compare.png beside the key numbers."""
    compare = _open(facts.compare) if facts.compare else None
    if compare is not None:
        what = "generated points over real ones" if facts.cfg.get("arch") == "mlp" else "real (left) beside generated (right)"
        compare = _captioned(_fit(compare, WIDTH // 2, 420, 2), f"{what}: compare.png")
    rows = key_numbers(facts) + [("missing", m.replace("`", "")) for m in facts.missing]
    panel = stack(_text(["key numbers"], WIDTH - (compare.width if compare else 0), 16),
                  _table_panel(rows, WIDTH - (compare.width if compare else 0), 15))
    bottom = Image.new("RGB", (WIDTH, max(panel.height, compare.height if compare else 0)), "white")
    if compare is not None:
        bottom.paste(compare, (0, 0))
    bottom.paste(panel, (bottom.width - panel.width, 0))
    return reduce(stack, [_text([f"ganforge run report: {facts.run_dir.name}"], WIDTH, 26), curves, _strip(facts), bottom])


def _strip(facts: RunFacts) -> Image.Image:
    """The chosen sample grids in a row, each captioned with its step. Image grids may be enlarged
    (sharp pixels), scatter plots are only shrunk."""
    if not facts.samples:
        return _text(["samples: none yet"], WIDTH, 16)
    width = (WIDTH - PAD) // len(facts.samples)
    enlarge = 2 if facts.saved.get("model", {}).get("arch", facts.cfg.get("arch")) != "mlp" else 1
    tiles = [_captioned(_fit(pic, width - 2 * PAD, 320, enlarge), f"step {step}")
             for step, path in facts.samples if (pic := _open(path)) is not None]
    shown = f"{len(tiles)} of {facts.n_samples}" if facts.n_samples > len(tiles) else f"all {len(tiles)}"
    row = Image.new("RGB", (WIDTH, max((t.height for t in tiles), default=0)), "white")
    for i, tile in enumerate(tiles):
        row.paste(tile, (i * width, 0))
    return stack(_text([f"samples of G_ema from fixed z over training ({shown} grids)"], WIDTH, 16), row)


def _captioned(pic: Image.Image, caption: str) -> Image.Image:
    """A caption above a picture, with a margin around it."""
    pic = ImageOps.expand(pic, border=(PAD, 0, PAD, PAD), fill="white")
    return stack(_text([caption], pic.width, 15), pic)


def _table_panel(rows: list[tuple[str, str]], width: int, size: int) -> Image.Image:
    """(label, value) rows as two columns of text, grey labels, values wrapped to the width."""
    font, step = _font(size), round(size * 1.4)
    indent = PAD + round(max(font.getlength(label) for label, _ in rows)) + 2 * PAD
    lines = [(label if i == 0 else "", part) for label, value in rows
             for i, part in enumerate(_wrap(value, font, width - indent - PAD))]
    out = Image.new("RGB", (width, step * len(lines) + 2 * PAD), "white")
    draw = ImageDraw.Draw(out)
    for i, (label, value) in enumerate(lines):
        y = PAD + step * i
        draw.text((PAD, y), label, fill=(200, 90, 0) if label == "missing" else (110, 110, 110), font=font)
        draw.text((indent, y), value, fill="black", font=font)
    return out


def _text(lines: list[str], width: int, size: int) -> Image.Image:
    """Lines of text on white at `size` px."""
    font, step = _font(size), round(size * 1.35)
    out = Image.new("RGB", (width, step * len(lines) + PAD), "white")
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((PAD, PAD // 2 + step * i), line, fill="black", font=font)
    return out


def _wrap(line: str, font, width: int) -> list[str]:
    words, out = line.split(" "), [""]
    for word in words:
        trial = f"{out[-1]} {word}" if out[-1] else word
        if font.getlength(trial) <= width or not out[-1]:
            out[-1] = trial
        else:
            out.append(word)
    return out


def _font(size: int):
    return ImageFont.load_default(size=size)


def _fit(pic: Image.Image, width: int, height: int, enlarge: float) -> Image.Image:
    """Scaled to fit the box, at most `enlarge` times; sharp pixels when enlarged, smooth when shrunk."""
    scale = min(width / pic.width, height / pic.height, enlarge)
    size = (max(1, round(pic.width * scale)), max(1, round(pic.height * scale)))
    return pic.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)


def _open(path: Path) -> Image.Image | None:
    """An image file as RGB, or None when it cannot be read."""
    try:
        with Image.open(path) as pic:
            return pic.convert("RGB")
    except (OSError, ValueError):
        return None


def _png_bytes(picture: Image.Image) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()

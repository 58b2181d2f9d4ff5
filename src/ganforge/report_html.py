"""The HTML page of a run's report (`ganforge report`): one self-contained file, every picture
inside as a data URI, no script, nothing fetched."""
from __future__ import annotations

import base64
import html
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from ganforge import __version__, checkpoint
from ganforge.errors import UserError

if TYPE_CHECKING:
    from ganforge.report import RunFacts

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { padding: 2px 10px; border-bottom: 1px solid #eee;
       text-align: left; vertical-align: top; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } img.px { image-rendering: pixelated; }
.grids { display: flex; flex-wrap: wrap; gap: 12px; } .grids img { width: 272px; }
figure { margin: 0; } figcaption { color: #555; }
.missing { background: #fff6e5; border-left: 4px solid #e0a030; padding: 0.5em 1em; }
.tables { display: flex; flex-wrap: wrap; gap: 2em; } code { background: #f4f4f4; padding: 0 3px; }
.changed { font-weight: bold; } .meta { color: #555; }
"""


def page(facts: RunFacts, curves_png: bytes, summary: list[tuple[str, str]], log_rows: list[dict]) -> str:
    """The whole page; `summary` is report.key_numbers(facts), `log_rows` the log lines to list."""
    e, run = html.escape, shlex.quote(str(facts.run_dir))
    cfg = facts.cfg
    head = f"<meta charset=utf-8><meta name=generator content='ganforge {e(__version__)}'>"
    parts = [f"<!DOCTYPE html><html lang=en><head>{head}<title>ganforge report: {e(facts.run_dir.name)}</title>",
             f"<style>{CSS}</style></head><body><h1>ganforge run report: {e(facts.run_dir.name)}</h1>",
             f"<p class=meta>{e(str(facts.run_dir.resolve()))}</p><h2>Summary</h2>", _table(summary)]
    if facts.missing:
        items = "".join(f"<li>{_code(m)}</li>" for m in facts.missing)
        parts.append(f"<div class=missing><b>Missing or out of date</b><ul>{items}</ul></div>")

    parts += ["<h2>Training curves</h2>", _img(curves_png, "training curves")]
    if facts.train:
        keys = ("step", "nimg", "loss_D", "loss_G", "D_real", "D_fake", "img_per_s", "data_share", "skipped")
        rows = log_rows
        if len(rows) < len(facts.train):
            parts.append(f"<p>{len(rows)} of {len(facts.train)} log lines, evenly spaced, with the last:</p>")
        parts.append(_table([[r.get(k) for k in keys] for r in rows], head=keys))
    if facts.fid:
        best = min(e_["fid"] for e_ in facts.fid)
        parts.append(f"<h3>FID checks ({cfg.get('eval_n', '?')} samples of G_ema; the best is kept as "
                     "checkpoints/best.safetensors)</h3>")
        parts.append(_table([[r["step"], r.get("nimg", ""), _fmt(r["fid"]) + (" (best)" if r["fid"] == best else "")]
                             for r in facts.fid], head=("step", "nimg", "FID")))
    if facts.rollbacks:
        parts.append("<h3>Rollbacks (non-finite numbers: back to the newest checkpoint, learning rates halved)</h3>")
        parts.append(_table([[r["step"], r.get("diverged_at", ""), r.get("why", ""), r.get("lr_scale", "")]
                             for r in facts.rollbacks], head=("back to step", "diverged at", "why", "lr scale")))
    if facts.warnings:
        parts.append("<h3>Warnings (training diagnostics, each when it started)</h3>")
        parts.append(_table([[r["step"], r.get("kind", ""), r.get("message", "")] for r in facts.warnings],
                            head=("step", "kind", "warning and fix")))

    parts.append("<h2>Samples over training</h2>")
    if facts.samples:
        parts.append(f"<p>G_ema on the same fixed z at each step ({len(facts.samples)} of {facts.n_samples} grids).</p>"
                     "<div class=grids>" + "".join(
                         f"<figure>{_img(_read(p), f'step {s}', 'px')}<figcaption>step {s}</figcaption></figure>"
                         for s, p in facts.samples) + "</div>")
    else:
        parts.append("<p>None yet: the first grid comes at step sample_every.</p>")

    parts.append("<h2>Real beside generated</h2>")
    parts.append(_img(_read(facts.compare), "real beside generated", "px") if facts.compare else
                 f"<p>No compare.png: it is written when training ends (<code>ganforge train --resume {e(run)}</code>).</p>")

    parts.append("<h2>Evaluation</h2>" + _evaluation(facts))

    parts.append("<h2>Config</h2><p>From config.json; settings that differ from the "
                 f"{e(str(cfg.get('arch')))} preset are <span class=changed>bold</span>.</p><div class=tables>")
    changed = _changed(cfg)
    items = list(cfg.items())
    third = -(-len(items) // 3) or 1
    for i in range(0, len(items), third):
        parts.append(_table([[f"<span class=changed>{e(k)}</span>" if k in changed else e(k), e(_fmt(v))]
                             for k, v in items[i:i + third]], head=("setting", "value"), raw=True))
    parts.append("</div><div class=tables>")
    model = facts.saved.get("model", {})
    for net in ("G", "D"):
        if isinstance(model.get(net), dict):
            parts.append(f"<div><h3>{net} arguments</h3>{_table(list(model[net].items()))}</div>")
    parts.append(f"<div><h3>data</h3>{_table(list(facts.saved.get('data', {}).items()))}</div></div>")
    ckpt = f"step {facts.checkpoint_step}" if facts.checkpoint_step is not None else "none"
    best = " and checkpoints/best.safetensors" if checkpoint.best_path(facts.run_dir).is_file() else ""
    parts.append(f"<p>Newest checkpoint: {ckpt}{best}. Trained with ganforge {e(str(facts.saved.get('version', '?')))}; "
                 f"report written by ganforge {e(__version__)}.</p></body></html>")
    return "\n".join(parts)


def _evaluation(facts: RunFacts) -> str:
    e, ev = html.escape, facts.evaluation
    if ev is None:
        return (f"<p>Not evaluated yet: <code>ganforge eval {e(shlex.quote(str(facts.run_dir)))}</code> writes eval.json "
                "(FID, KID, precision/recall, density/coverage), eval.png and nearest.png.</p>")
    metrics = ev.get("metrics", {})
    fake, real = ev.get("fake", {}), ev.get("real", {})
    sha = str(ev.get("extractor_sha256", ""))[:12]
    settings = [("extractor", f"{ev.get('extractor')} ({ev.get('feature_dim')}-d, weights sha256 {sha})"),
                ("generated", f"{fake.get('n')} from step {fake.get('step')} (seed {fake.get('seed')})"),
                ("real", f"{real.get('n')} of {real.get('source', real.get('path', '?'))}"),
                ("seed", str(ev.get("seed"))), ("ganforge", ev.get("version"))]
    out = "<div class=tables><div>" + _table([(k, v) for k, v in metrics.items()], head=("metric", "value"))
    out += "</div><div>" + _table(settings, head=("setting", "value")) + "</div>"
    memo = ev.get("memorisation")
    if isinstance(memo, dict):
        rows = [("near-copy share", memo.get("near_copy_share")), ("near-copy threshold", memo.get("near_copy_threshold"))]
        rows += [(f"median distance {k.replace('_', ' ')}", memo.get(k, {}).get("0.5"))
                 for k in ("fake_to_train", "real_to_train")]
        out += "<div>" + _table(rows, head=("memorisation", "")) + "</div>"
    out += "</div>" + "".join(f"<p class=missing>warning: {e(str(w))}</p>" for w in ev.get("warnings", []))
    for name in ("eval.png", "nearest.png"):  # eval.png holds nearest.png: one of them is enough
        if (facts.run_dir / name).is_file():
            return out + f"<h3>{name}</h3>" + _img(_read(facts.run_dir / name), name, "px")
    return out


def eval_numbers(metrics: dict) -> list[tuple[str, str]]:
    """eval.json's headline metrics as (name, text): FID, KID mean +- std, precision, recall, ..."""
    def num(key):
        return isinstance(metrics.get(key), (int, float))

    rows = [("FID", f"{metrics['fid']:.4g}")] if num("fid") else []
    if num("kid_mean"):
        rows.append(("KID", f"{metrics['kid_mean']:.4g}" + (f" ± {metrics['kid_std']:.3g}" if num("kid_std") else "")))
    rows += [(k, f"{metrics[k]:.3f}") for k in ("precision", "recall", "density", "coverage") if num(k)]
    if num("is_mean"):
        rows.append(("IS", f"{metrics['is_mean']:.4g}" + (f" ± {metrics['is_std']:.3g}" if num("is_std") else "")))
    return rows


def _changed(cfg: dict) -> set[str]:
    """The settings that differ from the family's preset (none when the preset cannot be built;
    a preset's None is filled in from the data, so it never counts)."""
    from ganforge.config import resolve

    try:
        preset = resolve({}, cfg.get("arch", "dcgan")).to_dict()
    except (UserError, TypeError, ValueError):
        return set()
    return {k for k, v in cfg.items() if k in preset and preset[k] is not None and preset[k] != v}  # None: from the data


def _table(rows, head=(), raw: bool = False) -> str:
    """An HTML table; cells are escaped unless `raw` (numbers right-aligned)."""
    def cell(v, tag="td"):
        text = str(v) if raw else html.escape(_fmt(v))
        number = tag == "td" and isinstance(v, (int, float)) and not isinstance(v, bool)
        return f"<{tag} class=num>{text}</{tag}>" if number else f"<{tag}>{text}</{tag}>"

    header = "<tr>" + "".join(cell(h, "th") for h in head) + "</tr>" if head else ""
    return "<table>" + header + "".join("<tr>" + "".join(map(cell, row)) + "</tr>" for row in rows) + "</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _code(text: str) -> str:
    """Escaped text whose `backquoted` commands are set as code."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _read(path: Path | None) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _img(png: bytes, alt: str, cls: str = "") -> str:
    if not png:
        return f"<p>({html.escape(alt)}: unreadable)</p>"
    return (f"<img{f' class={cls}' if cls else ''} alt='{html.escape(alt)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")

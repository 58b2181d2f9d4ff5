"""`ganforge serve RUN`: a local web page to sample by seed and class, walk the latent space and
repair an uploaded image, served by the standard library's http.server (no web framework).

    GET  /                 the page (ganforge/web/index.html)
    GET  /api/info         the generator: kind, resolution, channels, z_dim, classes, step, model_sha256
    GET  /api/sample       ?seeds=0-15&class=K&truncation=0.7: a PNG grid, one image per seed
    GET  /api/walk         ?from=0&to=1&t=0.5&class=K: the image at spherical position t between
                           two seeds' latents; frames=N instead of t: the N images from 0 to 1 in a row
    POST /api/repair       multipart form: image (a file), box "x,y,w,h" or mask (an image whose
                           non-zero pixels mark what to fill), steps, restarts, seed: the repaired PNG

Every PNG carries its provenance (ganforge.provenance). A bad parameter gets HTTP 400 with
`{"error": "..."}`, one line that names the fix; nothing the server answers holds a traceback.
The generator is called behind one lock, so requests take turns on it, and every request is
small: at most MAX_SEEDS images, MAX_FRAMES frames, MAX_UPLOAD bytes. The server has no
authentication: it is meant for one user on their own machine (the default host is 127.0.0.1).
"""
from __future__ import annotations

import email.parser
import email.policy
import errno
import io
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import torch
from PIL import Image

from ganforge.data.dataset import to_uint8
from ganforge.data.folder import decode_image
from ganforge.errors import UserError
from ganforge.inversion import slerp
from ganforge.provenance import png_bytes
from ganforge.sample import MAX_SEED, LoadedGenerator, latents, load_generator, parse_seeds
from ganforge.viz import image_grid, scatter, to_pil

log = logging.getLogger(__name__)

MAX_SEEDS = 256          # images in one grid
MAX_POINTS = 10_000      # points in one scatter plot (vector generators)
MAX_FRAMES = 64          # images in one walk strip
MAX_UPLOAD = 10 * 2**20  # bytes of one repair request
# The CLI's 300 steps from 8 starts take tens of seconds on a CPU at 32 px; the page should answer in a few.
REPAIR_STEPS, REPAIR_RESTARTS = 100, 4
MAX_STEPS, MAX_RESTARTS = 2000, 32
JSON, PNG = "application/json", "image/png"


class HTTPError(Exception):
    """An answer other than 400 (a too large upload, an unknown path), with its one-line message."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class App:
    """What the API does, apart from HTTP: each method takes the request's parameters and returns
    the answer's bytes; a bad parameter raises UserError."""

    def __init__(self, gen: LoadedGenerator):
        self.gen = gen
        self.classes = getattr(gen.G, "num_classes", 0)
        # One call of G at a time: a repair's search and a slider's frames would otherwise fight over
        # the same cores (or GPU memory), and no request could say how long it will take.
        self.lock = threading.Lock()

    def info(self) -> dict:
        gen, image = self.gen, self.gen.kind == "image"
        return {"kind": gen.kind, "arch": gen.model["arch"],
                "resolution": gen.config["resolution"] if image else None,
                "channels": gen.model["G"]["channels"] if image else None,
                "dim": None if image else gen.model["G"].get("dim"),
                "z_dim": gen.G.z_dim, "classes": self.classes, "step": gen.step, "model_sha256": gen.sha256,
                "checkpoint": gen.path.name,
                "limits": {"seeds": MAX_SEEDS if image else MAX_POINTS, "frames": MAX_FRAMES, "upload_bytes": MAX_UPLOAD},
                "repair": {"steps": REPAIR_STEPS, "restarts": REPAIR_RESTARTS}}

    def sample(self, params: dict[str, str]) -> bytes:
        _known(params, "seeds", "class", "truncation")
        image = self.gen.kind == "image"
        seeds = parse_seeds(params.get("seeds", "0-15"), MAX_SEEDS if image else MAX_POINTS)
        class_, psi = self._class(params), _number(params, "truncation", 1.0, 0.01, 1.0)
        with self.lock:  # also around scatter: matplotlib's pyplot is not thread-safe
            samples = self.gen.sample_seeds(seeds, psi, class_)
            if not image:
                picture = scatter(samples, title=f"{len(seeds)} samples")
            else:
                picture = to_pil(to_uint8(samples)[0]) if len(seeds) == 1 else image_grid(samples)
        # "seed" says "this picture is that seed's image" (`ganforge provenance --model` redraws it); a plot is not.
        seed_field = {"seed": seeds[0]} if image and len(seeds) == 1 else {"seeds": seeds}
        return png_bytes(picture, self.gen.provenance("generated", **seed_field, truncation=psi, class_=class_))

    def walk(self, params: dict[str, str]) -> bytes:
        _known(params, "from", "to", "t", "frames", "class", "truncation")
        self._images_only()
        a, b = (_integer(params, name, None, 0, MAX_SEED) for name in ("from", "to"))
        if "frames" in params and "t" in params:
            raise UserError("give t (one image) or frames (a row from t=0 to 1), not both")
        if "frames" in params:
            frames = _integer(params, "frames", None, 2, MAX_FRAMES)
            ts = [i / (frames - 1) for i in range(frames)]
        else:
            ts = [_number(params, "t", 0.5, 0.0, 1.0)]
        class_, psi = self._class(params), _number(params, "truncation", 1.0, 0.01, 1.0)
        if self.classes and class_ is None:
            raise UserError(f"add class=K (0 to {self.classes - 1}): this generator is class-conditional")
        z_a, z_b = latents(1, self.gen.G.z_dim, a)[0], latents(1, self.gen.G.z_dim, b)[0]
        z = torch.stack([slerp(z_a, z_b, t) for t in ts]) * psi  # (len(ts), z_dim)
        with self.lock:
            img = self.gen.generate(z, class_)
        picture = to_pil(to_uint8(img)[0]) if len(ts) == 1 else image_grid(img, nrow=len(ts))
        meta = self.gen.provenance("generated", seeds=[a, b], t=ts[0] if len(ts) == 1 else ts, truncation=psi,
                                   class_=class_)
        return png_bytes(picture, meta)

    def repair(self, content_type: str, body: bytes) -> bytes:
        self._images_only()
        form = _multipart(content_type, body)
        _known(form, "image", "box", "mask", "steps", "restarts", "seed")
        if "image" not in form:
            raise UserError("send the image file in the form field 'image'")
        r, c = self.gen.config["resolution"], self.gen.model["G"]["channels"]
        arr, why = decode_image(io.BytesIO(form.pop("image")), r, c)
        if arr is None:
            raise UserError(f"cannot read the uploaded file as an image ({why}): upload a PNG, JPEG, WebP or BMP")
        img = torch.from_numpy(arr).float()[None] / 127.5 - 1  # (1, C, R, R) in [-1, 1]
        fill = _fill(form.pop("box", None), form.pop("mask", None), r)
        text = {name: value.decode("utf-8", "replace") for name, value in form.items()}
        search = {"steps": _integer(text, "steps", REPAIR_STEPS, 1, MAX_STEPS),
                  "restarts": _integer(text, "restarts", REPAIR_RESTARTS, 1, MAX_RESTARTS),
                  "seed": _integer(text, "seed", 0, 0, MAX_SEED)}
        with self.lock:
            out = self.gen.repair(img, fill[None], **search)
        return png_bytes(to_pil(to_uint8(out)[0]), self.gen.provenance("repaired", **search))

    def _class(self, params: dict[str, str]) -> int | None:
        if params.get("class", "") == "":
            return None
        if not self.classes:
            raise UserError("this generator is not class-conditional: leave out class")
        return _integer(params, "class", None, 0, self.classes - 1)

    def _images_only(self) -> None:
        if self.gen.kind != "image":
            raise UserError("walk and repair work on image generators only; this one makes vectors")


def _known(params: dict, *names: str) -> None:
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise UserError(f"unknown parameter '{unknown[0][:40]}': use {', '.join(names)}")


def _integer(params: dict[str, str], name: str, default: int | None, low: int, high: int) -> int:
    text = params.get(name, "")
    if text == "" and default is not None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise UserError(f"{name} must be a whole number from {low} to {high}, got '{text[:40]}'")
    return value


def _number(params: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    text = params.get(name, "")
    if text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses nan
        raise UserError(f"{name} must be a number from {low:g} to {high:g}, got '{text[:40]}'")
    return value


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body by name, files and text alike as bytes."""
    if not content_type.startswith("multipart/form-data"):
        raise UserError("send a multipart/form-data form (fields image, and box or mask)")
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise UserError("the form could not be read as multipart/form-data: send it with FormData or curl -F")
    fields = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = part.get_payload(decode=True) or b""
    return fields


def _fill(box: bytes | None, mask: bytes | None, r: int) -> torch.Tensor:
    """What to fill, (1, R, R) bool: a box "x,y,w,h" in the model's pixels, or a mask image's
    non-zero pixels (resized to R x R, nearest)."""
    if (box is None) == (mask is None):
        raise UserError("send what to fill: a box 'x,y,w,h' in the field 'box', or a mask image in 'mask' (one of them)")
    if box is not None:
        text = box.decode("utf-8", "replace")
        try:
            x, y, w, h = (int(v) for v in text.split(","))
        except ValueError:
            x = y = w = h = 0
        if w < 1 or h < 1:
            raise UserError(f"box '{text[:40]}': write x,y,w,h in pixels of the {r}x{r} model, e.g. 0,{r // 2},{r},{r // 2}")
        fill = torch.zeros(1, r, r, dtype=torch.bool)
        fill[:, max(0, y):max(0, y + h), max(0, x):max(0, x + w)] = True
    else:
        try:
            with Image.open(io.BytesIO(mask)) as picture:
                grey = picture.convert("L").resize((r, r), Image.Resampling.NEAREST)
        except (OSError, ValueError, Image.DecompressionBombError):
            raise UserError("cannot read the mask: upload a PNG whose non-zero pixels mark what to fill") from None
        fill = torch.from_numpy(np.array(grey) > 0)[None]
    if not fill.any():
        raise UserError(f"the mask marks no pixel to fill: mark a box inside the {r}x{r} image")
    return fill


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 60  # seconds a connection may stall (a half-sent upload) before its thread gives up

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        app = self.server.app
        params = {name: values[-1].strip() for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        routes = {"/": lambda: ("text/html; charset=utf-8", self.server.page),
                  "/api/info": lambda: (JSON, json.dumps(app.info()).encode()),
                  "/api/sample": lambda: (PNG, app.sample(params)),
                  "/api/walk": lambda: (PNG, app.walk(params))}
        self._answer(routes.get(url.path, _not_found))

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/api/repair":
            return self._answer(_not_found)
        self._answer(lambda: (PNG, self.server.app.repair(self.headers.get("Content-Type", ""), self._body())))

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "send the form with a Content-Length") from None
        if length > MAX_UPLOAD:
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"the upload is {length / 2**20:.1f} MB, over the {MAX_UPLOAD // 2**20} MB limit: send a smaller image")
        return self.rfile.read(length)

    def _answer(self, make) -> None:
        try:
            content_type, data = make()
            status = HTTPStatus.OK
        except (HTTPError, UserError) as err:
            status = getattr(err, "status", HTTPStatus.BAD_REQUEST)
            content_type, data = JSON, json.dumps({"error": " ".join(str(err).split())}).encode()
        except Exception as err:  # a bug: the page gets one line, the terminal the traceback
            log.exception("%s %s failed", self.command, self.path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            content_type = JSON
            data = json.dumps({"error": f"internal error ({type(err).__name__}): see the server's terminal"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # http.server's signature; quiet unless logging asks
        log.info("%s " + format, self.address_string(), *args)


def _not_found():
    raise HTTPError(HTTPStatus.NOT_FOUND, "no such page: the API is /api/info, /api/sample, /api/walk, /api/repair")


class _Server(ThreadingHTTPServer):
    app: App
    page: bytes


def make_server(run: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto") -> ThreadingHTTPServer:
    """The server of `run`'s generator, listening but not yet serving: call serve_forever() (in a
    thread, for tests; port 0 takes any free port), then shutdown() and server_close()."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be from 0 to 65535, got {port}")
    gen = load_generator(run, device)
    try:
        server = _Server((host, port), _Handler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} is in use: pick another with --port (e.g. --port {port + 1}), "
                            "or --port 0 for any free one") from None
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err}): check --host and --port") from None
    server.app = App(gen)
    server.page = files("ganforge").joinpath("web/index.html").read_bytes()
    return server


def url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto") -> None:
    """Serve the page of `run`'s generator until Ctrl-C."""
    server = make_server(run, host, port, device)
    gen = server.app.gen
    print(f"serving {gen.path} (step {gen.step}, {gen.device}) at {url(server)} - Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()

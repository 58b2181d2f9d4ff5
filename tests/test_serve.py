"""`ganforge serve`: the API over HTTP (urllib), the CLI in its own process, and the page driven
end to end in headless Chromium (Playwright)."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image

import ganforge
from ganforge import provenance
from ganforge.cli import main
from ganforge.data import load_source, to_uint8
from ganforge.errors import UserError
from ganforge.sample import parse_seeds
from ganforge.serve import MAX_SEEDS, MAX_UPLOAD, make_server, url

# Without the background-networking flags Chromium waits on services it cannot reach offline.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--data", "digits", "--resolution", "16", "--steps", "20", "--out", str(out), "--name", "r",
                 "--no-progress", "g_width=8", "d_width=8", "batch_size=16", "conditional=1"]) == 0
    return out / "r"


@contextmanager
def serving(run):
    server = make_server(run, port=0, device="cpu")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def base(run):
    with serving(run) as address:
        yield address


def fetch(address, data=None, headers=None):
    """(status, content type, body) of a GET, or of a POST when `data` is given."""
    request = urllib.request.Request(address, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def form(**fields):
    """A multipart/form-data body: bytes values are files, str values text fields."""
    boundary = "ganforge-test-boundary"
    parts = []
    for name, value in fields.items():
        filename = f'; filename="{name}.png"' if isinstance(value, bytes) else ""
        body = value if isinstance(value, bytes) else value.encode()
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode() + body + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def pixels(data):
    return np.array(Image.open(io.BytesIO(data)))


def record(data, tmp_path):
    (tmp_path / "got.png").write_bytes(data)
    return provenance.read(tmp_path / "got.png")


def test_info(base, run):
    status, kind, body = fetch(base + "api/info")
    info = json.loads(body)
    assert status == 200 and kind == "application/json"
    gen = ganforge.load(run, "cpu")
    assert {k: info[k] for k in ("kind", "resolution", "channels", "z_dim", "classes", "step", "model_sha256")} == {
        "kind": "image", "resolution": 16, "channels": 1, "z_dim": 100, "classes": 10, "step": 20,
        "model_sha256": gen.sha256}
    status, kind, page = fetch(base)
    assert status == 200 and kind.startswith("text/html") and b'id="generate"' in page


def test_a_seed_gives_the_cli_s_pixels_with_provenance(base, run, tmp_path):
    status, kind, body = fetch(base + "api/sample?seeds=3&class=2&truncation=0.7")
    assert status == 200 and kind == "image/png"
    assert main(["sample", str(run), "--seeds", "3", "--class", "2", "--truncation", "0.7", "--out", str(tmp_path / "cli")]) == 0
    assert np.array_equal(pixels(body), np.array(Image.open(tmp_path / "cli" / "seed0003.png")))
    gen = ganforge.load(run, "cpu")
    assert np.array_equal(pixels(body), to_uint8(gen.sample_seeds([3], 0.7, 2))[0, 0].numpy())
    meta = record(body, tmp_path)
    assert meta["what"] == "generated" and meta["model_sha256"] == gen.sha256 and meta["step"] == 20
    assert (meta["seed"], meta["class"], meta["truncation"]) == (3, 2, 0.7)

    status, _, grid = fetch(base + "api/sample?seeds=0-3,9")
    assert status == 200 and pixels(grid).shape == (2 * 18 + 2, 3 * 18 + 2)  # 5 images, 3 a row, 2 px apart
    assert record(grid, tmp_path)["seeds"] == [0, 1, 2, 3, 9]


def test_the_walk_goes_from_one_seed_to_the_other(base, run, tmp_path):
    gen = ganforge.load(run, "cpu")
    ends = to_uint8(gen.sample_seeds([4, 7], class_=1))[:, 0].numpy().astype(int)
    start, middle, end = (pixels(fetch(base + f"api/walk?from=4&to=7&class=1&t={t}")[2]).astype(int) for t in (0, 0.5, 1))
    assert np.abs(start - ends[0]).max() <= 1 and np.abs(end - ends[1]).max() <= 1  # slerp's ends, to rounding
    assert not np.array_equal(middle, start) and not np.array_equal(middle, end)
    status, _, strip = fetch(base + "api/walk?from=4&to=7&class=1&frames=5")
    assert status == 200 and pixels(strip).shape == (20, 5 * 18 + 2)
    assert record(strip, tmp_path)["t"] == [0, 0.25, 0.5, 0.75, 1]


@pytest.mark.parametrize("query, message", [
    ("sample?seeds=abc", "write seeds as 0-15"),
    ("sample?seeds=0-999999999", "more than 256 seeds"),
    ("sample?seeds=5-2", "each range goes up"),
    ("sample?class=10", "class must be a whole number from 0 to 9"),
    ("sample?truncation=2", "truncation must be a number from 0.01 to 1"),
    ("sample?truncation=nan", "truncation must be"),
    ("sample?seed=3", "unknown parameter 'seed': use seeds"),
    ("walk?from=0&to=1&t=1.5", "t must be a number from 0 to 1"),
    ("walk?from=0&to=1&t=0.5", "add class=K"),
    ("walk?from=0&class=1", "to must be a whole number"),
    ("walk?from=0&to=1&class=1&frames=1000", "frames must be a whole number from 2 to 64"),
    ("nothing", "no such page"),
])
def test_a_bad_parameter_gets_one_line_that_names_the_fix(base, query, message):
    status, kind, body = fetch(base + "api/" + query)
    assert status == (404 if query == "nothing" else 400) and kind == "application/json"
    error = json.loads(body)["error"]
    assert message in error and "\n" not in error and "Traceback" not in error


def test_parse_seeds_counts_before_it_expands():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(UserError, match="more than 256"):
        parse_seeds("0-999999999", limit=MAX_SEEDS)


def test_repair_keeps_the_known_pixels_and_fills_the_box(base, run, tmp_path):
    digit = load_source("digits", 16).data[0, 0].numpy()  # (16, 16) uint8: a real digit
    damaged = digit.copy()
    damaged[8:] = 255
    status, kind, body = fetch(base + "api/repair", *form(image=png(damaged), box="0,8,16,8", steps="30"))
    assert status == 200 and kind == "image/png"
    out = pixels(body)
    assert np.array_equal(out[:8], damaged[:8]) and (out[8:] != 255).mean() > 0.5
    meta = record(body, tmp_path)
    assert meta["what"] == "repaired" and meta["steps"] == 30 and meta["model_sha256"] == ganforge.load(run, "cpu").sha256

    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255  # the right half, at another size than the model's
    out = pixels(fetch(base + "api/repair", *form(image=png(damaged), mask=png(mask), steps="10", restarts="2"))[2])
    assert np.array_equal(out[:, :8], damaged[:, :8]) and not np.array_equal(out[:8, 8:], damaged[:8, 8:])

    image = png(damaged)
    for fields, message in (({"box": "0,8,16,8"}, "send the image file"),
                            ({"image": b"not a picture", "box": "0,0,4,4"}, "cannot read the uploaded file as an image"),
                            ({"image": image}, "a box 'x,y,w,h'"),
                            ({"image": image, "box": "1,2"}, "write x,y,w,h in pixels of the 16x16 model"),
                            ({"image": image, "box": "40,40,4,4"}, "marks no pixel"),
                            ({"image": image, "box": "0,0,4,4", "steps": "0"}, "steps must be a whole number")):
        status, _, body = fetch(base + "api/repair", *form(**fields))
        assert status == 400 and message in json.loads(body)["error"]
    big = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(MAX_UPLOAD + 1)}
    status, _, body = fetch(base + "api/repair", b"--x--\r\n", big)  # refused on its header, before any upload
    assert status == 413 and "10 MB limit" in json.loads(body)["error"]


def test_vector_generators_get_a_scatter_plot(tmp_path):
    assert main(["train", "--data", "ring8", "--steps", "10", "--out", str(tmp_path), "--name", "v", "--no-progress"]) == 0
    with serving(tmp_path / "v") as address:
        status, _, body = fetch(address + "api/sample?seeds=0-499")
        assert status == 200 and pixels(body).shape[1] > 200 and record(body, tmp_path)["seeds"][-1] == 499
        status, _, body = fetch(address + "api/walk?from=0&to=1")
        assert status == 400 and "image generators only" in json.loads(body)["error"]


def test_the_cli_prints_the_address_serves_and_stops_on_ctrl_c(base, run, capsys):
    # A shell's background jobs inherit SIGINT ignored, and Python then never raises KeyboardInterrupt:
    # the child starts with the default disposition whatever started the tests.
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "serve", str(run), "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        address = line.split(" at ")[1].split()[0]
        assert json.loads(fetch(address + "api/info")[2])["step"] == 20
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err

    port = base.rsplit(":", 1)[1].strip("/")
    assert main(["serve", str(run), "--port", port, "--device", "cpu"]) == 2
    assert f"port {port} is in use: pick another with --port" in capsys.readouterr().err


def browser():
    """Playwright's sync API and Debian's Chromium, or a skip saying which is missing (a failure
    where GANFORGE_REQUIRE_BROWSER=1, as in CI)."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright, missing = None, "the playwright package (pip install -e '.[test]')"
    else:
        missing = None if chromium else "chromium on PATH (apt-get install chromium)"
    if missing:
        (pytest.fail if os.environ.get("GANFORGE_REQUIRE_BROWSER") == "1" else pytest.skip)(f"the browser test needs {missing}")
    return sync_playwright, chromium


# [id, width]: the <img> has an answer (of that natural width, if not 0) and waits for no other.
LOADED = """([id, width]) => {
  const img = document.getElementById(id);
  return img.naturalWidth > 0 && (!width || img.naturalWidth === width) && img.getAttribute("aria-busy") === "false";
}"""


def test_the_page_in_a_browser(base, tmp_path):
    sync_playwright, chromium = browser()
    digit = load_source("digits", 16).data[5, 0].numpy()
    Image.fromarray(digit).resize((64, 64), Image.Resampling.NEAREST).save(tmp_path / "digit.png")
    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = chrome.new_page(viewport={"width": 1280, "height": 720})
            crashes = []
            page.on("pageerror", lambda err: crashes.append(str(err)))
            page.goto(base)
            page.wait_for_function("document.getElementById('class').options.length === 11")
            assert "step 20" in page.inner_text("#info")
            page.wait_for_function(LOADED, arg=["sample-img", 4 * 18 + 2])  # the first grid, seeds 0-15
            page.wait_for_function(LOADED, arg=["walk-img", 0])

            page.select_option("#class", "3")
            page.fill("#seeds", "0-8")
            page.fill("#truncation", "0.7")
            page.click("#generate")
            page.wait_for_function(LOADED, arg=["sample-img", 3 * 18 + 2])
            assert page.eval_on_selector("#sample-img", "img => img.getBoundingClientRect().width") >= 256

            before = page.locator("#walk-img").screenshot()
            page.fill("#walk-t", "1")
            page.wait_for_function(LOADED, arg=["walk-img", 0])
            assert page.inner_text("#walk-t-value") == "1.00" and page.locator("#walk-img").screenshot() != before

            page.set_input_files("#repair-file", str(tmp_path / "digit.png"))
            page.wait_for_function("document.getElementById('repair-canvas').getAttribute('aria-label').includes('digit.png')")
            page.locator("#repair-canvas").scroll_into_view_if_needed()
            canvas = page.locator("#repair-canvas").bounding_box()
            page.mouse.move(canvas["x"] + 0.1 * canvas["width"], canvas["y"] + 0.55 * canvas["height"])
            page.mouse.down()
            page.mouse.move(canvas["x"] + 0.9 * canvas["width"], canvas["y"] + 0.9 * canvas["height"], steps=5)
            page.mouse.up()
            assert [page.input_value(f"#repair-{k}") for k in "xywh"] == ["1", "8", "14", "7"]
            page.fill("#repair-steps", "30")
            page.click("#repair")
            page.wait_for_function(LOADED, arg=["repair-img", 16], timeout=60_000)
            assert page.inner_text("#repair-status").startswith("repaired in")

            assert page.eval_on_selector_all(".error", "els => els.map(e => e.textContent)") == [""] * 4
            assert crashes == []
            page.screenshot(path=tmp_path / "serve.png", full_page=True)
        finally:
            chrome.close()
    if os.environ.get("GANFORGE_SCREENSHOT"):
        shutil.copyfile(tmp_path / "serve.png", os.environ["GANFORGE_SCREENSHOT"])

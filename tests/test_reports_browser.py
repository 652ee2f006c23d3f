"""The HTML report opened in real headless Chromium (Debian's /usr/bin/chromium, driven over
the Chrome DevTools Protocol by the small websocket-client driver below): it loads with no console errors or
exceptions, every chart container holds a non-empty SVG or canvas, a screenshot is not blank,
and a hostile kernel name shows as text and never runs (no dialog, no extra script element).

Skipped when Chromium or websocket-client is absent, unless INFERTUNE_REQUIRE_BROWSER=1 (CI
sets it; .ci/run installs chromium), where that is a failure."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import pytest

from reports import write_report
from reports.html import SCRIPTS

# --------------------------------------------------------------------------- a tiny CDP driver

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1366,900"]


def chromium_path() -> str | None:
    for name in (os.environ.get("INFERTUNE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if name and Path(name).is_file() and os.access(name, os.X_OK):
            return name
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    planted = ""  # the planted tuning run's folder as a file: URI, where the page fixture adds one

    def __init__(self, executable: str, timeout_s: float = 60.0) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="infertune-chromium-")
        self.port = _free_port()
        self.proc = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--remote-debugging-port={self.port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        target = None
        while time.monotonic() < deadline and target is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as resp:
                    pages = [t for t in json.load(resp) if t.get("type") == "page"]
                    target = pages[0] if pages else None
            except OSError:
                time.sleep(0.2)
        if target is None:
            self.close()
            raise RuntimeError("chromium did not open its DevTools port")
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout_s,
                                              suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == "Page.javascriptDialogOpening":
                    # never leave a dialog blocking the page; it is recorded as an event
                    self.ws.send(json.dumps({"id": 10**9 + len(self.events), "method": "Page.handleJavaScriptDialog",
                                             "params": {"accept": True}}))

    def drain(self, seconds: float) -> None:
        """Collect events for `seconds`."""
        import websocket

        end = time.monotonic() + seconds
        self.ws.settimeout(0.2)
        try:
            while time.monotonic() < end:
                try:
                    msg = json.loads(self.ws.recv())
                except websocket.WebSocketTimeoutException:
                    continue
                if "method" in msg:
                    self.events.append(msg)
        finally:
            self.ws.settimeout(60)

    def open(self, path: Path, settle_s: float = 2.0) -> None:
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", url=path.resolve().as_uri())
        end = time.monotonic() + 60
        while time.monotonic() < end:
            state = self.evaluate("document.readyState")
            if state == "complete":
                break
            time.sleep(0.2)
        self.drain(settle_s)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
        return out

    def dialogs(self) -> list[str]:
        return [e["params"].get("message", "") for e in self.events if e["method"] == "Page.javascriptDialogOpening"]

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) with zlib: (width,
    height, rows of raw pixel bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = color = depth = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and color in (2, 6), f"unexpected PNG format depth={depth} color={color}"
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    i = 0
    for _ in range(height):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def distinct_colors(data: bytes, step: int = 7) -> int:
    """How many distinct RGB colors a sample of the screenshot's pixels holds (1 = blank)."""
    width, height, rows = png_pixels(data)
    bpp = len(rows[0]) // width if rows else 3
    seen = set()
    for y in range(0, height, step):
        row = rows[y]
        for x in range(0, width, step):
            seen.add(row[x * bpp:x * bpp + 3])
    return len(seen)


# --------------------------------------------------------------------------- the checks

RUNS = Path(__file__).resolve().parent / "data" / "runs"
HOSTILE = "<script>alert(1)</script>&\"'"
ALL = ["kernel-a", "kernel-b", "model", "autotune", "quant", "quant-plan", "gpu-synthetic", "hostile"]
REQUIRED = os.environ.get("INFERTUNE_REQUIRE_BROWSER") == "1"


def _browser_or_skip() -> str:
    path = chromium_path()
    why = None
    if path is None:
        why = "chromium not installed (apt-get install chromium)"
    else:
        try:
            import websocket  # noqa: F401
        except ImportError:
            why = "websocket-client not installed (pip install -e .[dev])"
    if why:
        if REQUIRED:
            pytest.fail(f"INFERTUNE_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    return path


@contextlib.contextmanager
def opened(path: Path, settle_s: float = 2.0, before=None):
    """Headless Chromium on the report at `path` (the test is skipped where there is none),
    closed afterwards; `before(browser)` runs before the page opens (a viewport, a mark)."""
    browser = Browser(_browser_or_skip())
    try:
        if before is not None:
            before(browser)
        browser.open(path, settle_s=settle_s)
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from tests.test_report_tuning import write_planted_run

    base = tmp_path_factory.mktemp("browser")
    out = base / "report.html"
    # the fixture autotune run has 2 completed trials: a planted one with 12 has every tuning chart
    write_report([*(RUNS / n for n in ALL), write_planted_run(base / "planted-tuning")], out)

    def mark(browser: Browser) -> None:
        browser.planted = (base / "planted-tuning").as_uri() + "/"

    with opened(out, 2.0, mark) as browser:
        yield browser


CHARTS_JS = """Array.from(document.querySelectorAll('.chart')).map(function (c) {
  var svg = Array.from(c.querySelectorAll('svg')).filter(function (s) {
    var r = s.getBoundingClientRect(); return r.width > 0 && r.height > 0 && s.querySelector('path, rect, text');
  }).length;
  var canvas = Array.from(c.querySelectorAll('canvas')).filter(function (k) { return k.width > 0 && k.height > 0; }).length;
  var traces = c.querySelectorAll('.scatterlayer .trace, .barlayer .trace, .trace').length;
  return {id: c.id, kind: c.dataset.chart, svg: svg, canvas: canvas, traces: traces};
})"""


def test_loads_without_console_errors(page):
    assert page.errors() == []
    assert page.evaluate("document.readyState") == "complete"
    assert page.evaluate("typeof Plotly") == "object"


def open_folds(page) -> None:
    """Open every <details> (the per-problem tuning detail) and wait for its charts to draw."""
    page.evaluate("document.querySelectorAll('details').forEach(function (d) { d.open = true; })")
    page.drain(1.5)


def test_every_chart_renders(page):
    open_folds(page)
    charts = page.evaluate(CHARTS_JS)
    kinds = {c["kind"] for c in charts}
    assert {"roofline", "tuning_speedup", "history", "importance", "parallel", "failures", "quant_search",
            "quant_plan", "telemetry"} <= kinds
    for c in charts:
        assert c["svg"] + c["canvas"] > 0, c
        assert c["traces"] > 0, c


def test_screenshot_is_not_blank(page):
    png = page.screenshot()
    assert len(png) > 1000
    assert distinct_colors(png) > 20
    # scroll to a chart and look again: the chart area is drawn too
    page.evaluate("document.getElementById('chart-roofline').scrollIntoView()")
    assert distinct_colors(page.screenshot()) > 20


def test_hostile_name_is_text_not_script(page):
    assert page.dialogs() == []
    assert page.evaluate("document.querySelectorAll('script').length") == SCRIPTS
    assert page.evaluate("document.body.innerText.indexOf(" + _js_string(HOSTILE) + ") >= 0") is True
    cells = page.evaluate("Array.from(document.querySelectorAll('td')).filter(function (td) { return td.textContent === "
                          + _js_string(HOSTILE) + "; }).length")
    assert cells >= 2  # the kernel and the variant columns
    assert page.evaluate("window.__pwned === undefined")
    # the hostile run's artifacts (javascript:, data:, https:, /etc/passwd, ../ escapes) are text,
    # not links: every link on the page is a file inside a run directory (or a #section)
    hrefs = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(function (a) { return a.href; })")
    files = [h for h in hrefs if "#" not in h]
    assert files and all(h.startswith((RUNS.as_uri() + "/", page.planted)) for h in files), files
    assert not any("passwd" in h or "alert" in h for h in hrefs), hrefs


def _js_string(text: str) -> str:
    return json.dumps(text).replace("<", "\\u003c")


def test_the_harness_sees_dialogs_and_errors(tmp_path):
    """A control: a page that does alert and log an error is caught by the same checks."""
    executable = _browser_or_skip()
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); alert(1);</script>"
                   "<script>undefinedFunction();</script></body></html>")
    browser = Browser(executable)
    try:
        browser.open(bad, settle_s=1.0)
        assert browser.dialogs() == ["1"]
        errors = browser.errors()
        assert any("boom" in e for e in errors) and any("undefinedFunction" in e for e in errors)
    finally:
        browser.close()

"""The published asv site works offline: rendered in a real headless Chromium with every host
but 127.0.0.1 unresolvable, the headline benchmark's graph and the summary grid are drawn.

The site is built from the committed results (results_dir of asv.conf.json) into a temporary
html dir by benchmarks/site/publish.py, and served by a local http.server on a free port.
The headline benchmark is picked at test time (a time_* benchmark of results/asv/benchmarks.json
with the most plotted points), so renamed benchmarks or changed results don't break the test.
A control test renders the site as plain `asv publish` writes it and expects it to fail the
same checks (asv's CDN scripts can't load, its onerror sends the page to error.html).

Skipped when no Chromium is installed; .ci/run installs Debian's.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PUBLISH_PY = REPO / "benchmarks" / "site" / "publish.py"
CONFIG = REPO / "asv.conf.json"

pytest.importorskip("asv", reason="asv is not installed")


def _chromium() -> str | None:
    env = os.environ.get("LRBENCH_CHROMIUM")
    if env is not None:  # a path or name; one that is not an executable means "none"
        return shutil.which(env) if env else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium (.ci/run installs Debian's; LRBENCH_CHROMIUM names another browser)",
)


def _load_publish():
    spec = importlib.util.spec_from_file_location("lrbench_site_publish", PUBLISH_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


publish = _load_publish()


# --------------------------------------------------------------------------- building the site


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """(plain, offline): the committed results published by `asv publish` alone, and the same
    site vendored and rewritten by benchmarks/site/publish.py (the `make site` path)."""
    root = tmp_path_factory.mktemp("site")
    plain, offline = root / "plain", root / "offline"
    for cmd in (
        publish.publish_command(CONFIG, plain),
        [sys.executable, str(PUBLISH_PY), "--config", str(CONFIG), "--html-dir", str(offline)],
    ):
        proc = subprocess.run(cmd, cwd=REPO, timeout=120, capture_output=True, text=True)
        if proc.returncode:
            pytest.fail(
                f"{' '.join(cmd[1:3])} failed (rc {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr)[-3000:]}"
            )
    return plain, offline


def _finite_points(graph: object) -> int:
    """Number of finite values in an asv graph JSON ([[rev, value or [values]], ...])."""
    n = 0
    for entry in graph if isinstance(graph, list) else []:
        vals = entry[1] if isinstance(entry, list) and len(entry) == 2 else None
        for v in vals if isinstance(vals, list) else [vals]:
            if isinstance(v, (int, float)) and math.isfinite(v):
                n += 1
    return n


def headline_benchmark(html_dir: Path) -> str:
    """A time_* benchmark of the committed benchmarks.json that the site has a graph for: the
    one with the most plotted points in one graph (then by name)."""
    from asv import util

    conf = util.load_json(str(CONFIG), js_comments=True)
    listed = json.loads((CONFIG.parent / conf["results_dir"] / "benchmarks.json").read_text())
    on_site = json.loads((html_dir / "index.json").read_text())["benchmarks"]
    names = {n for n in listed if n.rsplit(".", 1)[-1].startswith("time_") and n in on_site}
    best: dict[str, int] = {}
    for path in (html_dir / "graphs").rglob("*.json"):
        name = path.name[: -len(".json")]
        if name in names and "summary" not in path.relative_to(html_dir / "graphs").parts:
            best[name] = max(best.get(name, 0), _finite_points(json.loads(path.read_text())))
    ranked = sorted((-n, name) for name, n in best.items() if n > 0)
    if not ranked:
        pytest.fail(
            f"no time_* benchmark of benchmarks.json has plotted results on the site "
            f"({len(names)} time_* benchmarks listed)"
        )
    return ranked[0][1]


# --------------------------------------------------------------------------- serving + browsing

# Injected into index.html as it is served (the files on disk stay as published): records what
# flot drew, on <html data-probe="...">, which --dump-dom then shows.
PROBE = r"""<script>
(function () {
  var js_errors = [];
  window.addEventListener("error", function (e) { js_errors.push(String(e.message)); });
  function colour_pixels(canvas, colours) {
    var data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data, n = 0;
    for (var i = 0; i < data.length; i += 4) {
      if (data[i + 3] < 200) continue;
      for (var k = 0; k < colours.length; ++k) {
        var c = colours[k];
        var d = Math.abs(data[i] - c.r) + Math.abs(data[i + 1] - c.g) + Math.abs(data[i + 2] - c.b);
        if (d < 40) { ++n; break; }
      }
    }
    return n;
  }
  function probe() {
    var out = {href: String(location.href)};
    try {
      var el = $("#main-graph"), plot = el.data("plot");
      if (plot) {
        var series = plot.getData(), points = 0, colours = [];
        for (var s = 0; s < series.length; ++s) {
          for (var p = 0; p < series[s].data.length; ++p) {
            var d = series[s].data[p];
            if (d && d[1] !== null && isFinite(d[1])) ++points;
          }
          colours.push($.color.parse(series[s].color));
        }
        out.series = series.length;
        out.points = points;
        out.series_pixels = colour_pixels(el.find("canvas.flot-base")[0], colours);
      }
      out.grid_plots = $("#summarygrid-display .benchmark-plot").length;
      out.grid_canvases = $("#summarygrid-display .benchmark-plot canvas.flot-base").length;
      out.list_rows = $("#summarylist-display tbody tr").length;
      out.error_shown = $("#error").hasClass("in");
      out.js_errors = js_errors;
    } catch (e) {
      out.exception = String(e);
    }
    document.documentElement.setAttribute("data-probe", JSON.stringify(out));
  }
  setInterval(probe, 200);
})();
</script>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.split("?")[0].split("#")[0] in ("/", "/index.html"):
            body = (Path(self.directory) / "index.html").read_text(encoding="utf-8")
            body = body.replace("</body>", PROBE + "\n</body>", 1).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, fmt, *args):
        if len(args) >= 2 and str(args[1]).startswith(("4", "5")):
            self.server.failures.append(f"{args[0]} -> {args[1]}")


class Served:
    def __init__(self, html_dir: Path):
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Handler, directory=str(html_dir))
        )
        self.httpd.requests, self.httpd.failures = [], []
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def render(url: str, tmp_path: Path) -> tuple[str, dict]:
    """Load url in headless Chromium, offline except for 127.0.0.1; return (DOM, probe)."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        # no CDN can answer: every host but the local server fails to resolve
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        "--window-size=1280,1024",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    dom = proc.stdout
    assert dom.strip(), f"chromium printed no DOM (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    m = re.search(r'<html[^>]*\sdata-probe="([^"]*)"', dom)
    probe = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")) if m else {}
    return dom, probe


def _page_summary(dom: str, probe: dict) -> str:
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    return f"title {title.group(1).strip() if title else None!r}, probe {probe}"


def _assert_not_error_page(dom: str, probe: dict, where: str) -> None:
    # asv's index.html sends the browser to error.html when a script fails to load; the probe
    # (in index.html only) then never reports
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert (
        probe
        and "error" not in (title.group(1) if title else "")
        and "error.html" not in probe.get("href", "")
    ), f"asv's error page shown: {where}"
    assert not probe.get("js_errors") and "exception" not in probe, f"JavaScript errors: {where}"
    assert not probe.get("error_shown"), f"asv's error dialog shown: {where}"


def check_graph_drawn(html_dir: Path, tmp_path: Path) -> str:
    """Assert the headline benchmark's graph page draws its graph with no network."""
    bench = headline_benchmark(html_dir)
    server = Served(html_dir)
    try:
        dom, probe = render(server.url + "index.html#" + bench, tmp_path)
    finally:
        server.close()
    where = f"{bench}: {_page_summary(dom, probe)}"
    _assert_not_error_page(dom, probe, where)
    main = dom[dom.find('id="main-graph"') :]
    assert dom.find('id="main-graph"') >= 0 and re.search(
        r'<canvas class="flot-base"', main[:20000]
    ), f"no flot canvas in #main-graph: {where}"
    assert re.search(r'class="flot-tick-label[^"]*"[^>]*>[^<]+<', main), f"no axis ticks: {where}"
    assert probe.get("series", 0) >= 1 and probe.get("points", 0) >= 1, f"nothing plotted: {where}"
    assert probe.get("series_pixels", 0) >= 5, f"series not drawn on the canvas: {where}"
    assert not server.httpd.failures or all("/graphs/" in f for f in server.httpd.failures), (
        f"local requests failed: {server.httpd.failures}"
    )  # asv asks for absent env graphs: 404
    fetched = {r.split("?")[0] for r in server.httpd.requests}
    not_fetched = [p for p, _ in publish.ASSETS.values() if f"/{publish.SUBDIR}/{p}" not in fetched]
    assert not not_fetched, f"vendored files never requested from the local server: {not_fetched}"
    return bench


def check_grid_drawn(html_dir: Path, tmp_path: Path) -> None:
    server = Served(html_dir)
    try:
        dom, probe = render(server.url + "index.html", tmp_path)
    finally:
        server.close()
    where = _page_summary(dom, probe)
    _assert_not_error_page(dom, probe, where)
    assert probe.get("grid_plots", 0) >= 1, f"summary grid empty: {where}"
    assert probe.get("grid_canvases", 0) >= 1, f"no summary graph drawn: {where}"


# --------------------------------------------------------------------------- tests

REMOTE_TAG = re.compile(
    r"""<(?:script|link)\b[^>]*\s(?:src|href)\s*=\s*["']?(?:https?:)?//[^"'\s>]+""", re.I
)


def test_published_pages_reference_no_remote_scripts_or_styles(sites):
    plain, offline = sites
    # asv's own template does (else this whole file is moot) ...
    assert REMOTE_TAG.search((plain / "index.html").read_text())
    # ... and after publish.py no page does; the vendored files are there
    pages = sorted(offline.rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert not REMOTE_TAG.findall(text), f"{page.name}: {REMOTE_TAG.findall(text)}"
        for src in re.findall(r"""<(?:script|link)\b[^>]*\s(?:src|href)="([^"#?]+)""", text):
            assert (page.parent / src).is_file() or src.endswith(".xml"), f"{page.name}: {src}"
    for rel_path, _ in publish.ASSETS.values():
        assert (offline / publish.SUBDIR / rel_path).is_file()


def test_vendored_files_match_asv_integrity_hashes(sites):
    plain, _ = sites
    html = (plain / "index.html").read_text()
    referenced = set(publish.remote_assets(html))
    assert referenced == set(publish.ASSETS), (
        f"asv's template changed: vendor {sorted(referenced - set(publish.ASSETS))}, "
        f"drop {sorted(set(publish.ASSETS) - referenced)}"
    )
    for tag in re.findall(r"<(?:script|link)\b[^>]*>", html):
        url = re.search(r"""(?:src|href)="([^"]+)""", tag)
        integrity = re.search(r'integrity="([^"]+)"', tag)
        if url and integrity and publish.ASSETS.get(url.group(1), ("", False))[1]:
            publish.check_integrity(
                publish.VENDOR_DIR / publish.ASSETS[url.group(1)][0], integrity.group(1)
            )


@needs_chromium
def test_headline_graph_drawn_offline(sites, tmp_path):
    check_graph_drawn(sites[1], tmp_path)


@needs_chromium
def test_summary_grid_drawn_offline(sites, tmp_path):
    check_grid_drawn(sites[1], tmp_path)


@needs_chromium
def test_control_plain_asv_site_is_blank_offline(sites, tmp_path):
    """The checks above do catch the bug: asv's own output fails them without network."""
    with pytest.raises(AssertionError, match="error page"):
        check_graph_drawn(sites[0], tmp_path)


@needs_chromium
@pytest.mark.parametrize("view", ["summarylist", "regressions"])
def test_other_views_render_offline(sites, tmp_path, view):
    server = Served(sites[1])
    try:
        dom, probe = render(server.url + "index.html#" + view, tmp_path)
    finally:
        server.close()
    _assert_not_error_page(dom, probe, _page_summary(dom, probe))
    if view == "summarylist":
        assert probe.get("list_rows", 0) >= 1, _page_summary(dom, probe)


@needs_chromium
def test_commit_links_do_not_break_the_site(sites, tmp_path):
    """No show_commit_url is configured: a commit link (what the list and regressions views
    link, and what clicking a graph point opens) must still land on a working page."""
    from asv import util

    if util.load_json(str(CONFIG), js_comments=True).get("show_commit_url", "#") not in ("#", ""):
        pytest.skip("asv.conf.json sets show_commit_url: commit links leave the site")
    offline = sites[1]
    index = json.loads((offline / "index.json").read_text())
    assert index["show_commit_url"] == publish.NO_COMMIT_URL
    commit = next(iter(index["revision_to_hash"].values()))[: index["hash_length"]]
    server = Served(offline)
    try:
        dom, probe = render(server.url + "index.html" + index["show_commit_url"] + commit, tmp_path)
    finally:
        server.close()
    _assert_not_error_page(dom, probe, _page_summary(dom, probe))
    assert probe.get("grid_plots", 0) >= 1, _page_summary(dom, probe)

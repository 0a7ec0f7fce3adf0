#!/usr/bin/env python3
"""Publish the asv site so that it works without network access.

asv 0.6.6's ``index.html`` loads jQuery, flot and four flot plugins, the stupidtable jQuery
plugin, blueimp-md5 and Bootstrap from public CDNs; offline, every one of those fails, its ``onerror`` sends
the browser to ``error.html`` and no graph is drawn.  This script runs ``asv publish``,
copies the vendored copies of those files (``benchmarks/site/vendor/``, see the README
there for where each came from) into ``<html_dir>/vendor/`` and rewrites every published
``.html`` file to load them from there.  With no ``show_commit_url`` configured it also
points the site's commit links at the benchmark grid (see ``NO_COMMIT_URL``).

    python benchmarks/site/publish.py                  # asv publish + rewrite, into html_dir
    python benchmarks/site/publish.py --html-dir DIR   # publish into DIR instead
    python benchmarks/site/publish.py --no-asv --html-dir DIR  # only rewrite a published DIR

It fails (exit 1) when a published page still references a script or stylesheet on
another host after the rewrite, e.g. after an asv upgrade changed a CDN URL: vendor the
new file and add it to ``ASSETS``.  Files whose vendored bytes are the CDN's own (the
``integrity`` hash asv ships matches) are checked against that hash on every run.

This file sits in benchmarks/site/, which has no ``__init__.py``, so asv's benchmark
discovery does not import it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR_DIR = HERE / "vendor"
REPO = HERE.parents[1]
SUBDIR = "vendor"  # where the vendored files go inside html_dir

# URL referenced by asv 0.6.6's www/index.html -> (file under vendor/, exact).
# exact=True: the vendored file is byte-identical to what the CDN serves (asv's SRI hash
# matches it, and is re-checked below).  exact=False: a stand-in; see vendor/README.md.
ASSETS: dict[str, tuple[str, bool]] = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery-3.3.1/dist/jquery.min.js", True),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": (
        "flot-0.8.3/jquery.flot.js",
        False,
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": (
        "flot-0.8.3/jquery.flot.time.js",
        False,
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": (
        "flot-0.8.3/jquery.flot.selection.js",
        False,
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": (
        "flot-0.8.3/jquery.flot.categories.js",
        False,
    ),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": (
        "flot-orderbars-1.0.0/js/jquery.flot.orderBars.js",
        True,
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": (
        "stupid-table-plugin-1.1.3/stupidtable.min.js",
        False,
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": (
        "blueimp-md5-2.19.0/js/md5.min.js",
        True,
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": (
        "bootstrap-3.1.1/dist/js/bootstrap.min.js",
        True,
    ),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": (
        "bootstrap-3.1.1/dist/css/bootstrap.min.css",
        True,
    ),
}

# asv.conf.json sets no show_commit_url (there is no public repository to link to), so asv
# publishes its default "#" and the site builds commit links as "#" + hash: "#205e0b65" routes
# to a graph page for a benchmark named "205e0b65", which throws a TypeError and shows an empty
# page (links in the list and regressions views; clicking a graph point opens one in a new tab).
# With this prefix they land on the benchmark grid instead ("#/?commit=205e0b65").  A real
# show_commit_url in asv.conf.json is left as it is.
NO_COMMIT_URL = "#/?commit="

_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE | re.DOTALL)
_ATTR = re.compile(r"""\s([a-zA-Z-]+)\s*=\s*("[^"]*"|'[^']*')""")
# attributes that only make sense for a cross-origin CDN load; dropped once local
_CDN_ATTRS = ("integrity", "crossorigin", "referrerpolicy")
_REMOTE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//")  # http://, https://, //host


class SiteError(RuntimeError):
    pass


def _attrs(tag: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2)[1:-1] for m in _ATTR.finditer(tag)}


def _url_attr(kind: str) -> str:
    return "src" if kind.lower() == "script" else "href"


def _loads_resource(kind: str, attrs: dict[str, str]) -> bool:
    """A <script src> or a <link> the browser fetches (not rel=alternate etc.)."""
    if kind.lower() == "script":
        return "src" in attrs
    rel = attrs.get("rel", "").lower().split()
    return bool({"stylesheet", "icon", "preload", "modulepreload", "prefetch"} & set(rel))


def check_integrity(path: Path, integrity: str) -> None:
    """Raise if ``path`` matches none of the SRI digests in ``integrity``."""
    data = path.read_bytes()
    for token in integrity.split():
        algo, _, digest = token.partition("-")
        if algo in ("sha256", "sha384", "sha512"):
            got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
            if got == digest:
                return
    raise SiteError(
        f"{path} does not match its CDN integrity hash {integrity!r}; "
        f"re-vendor it (benchmarks/site/vendor/README.md)"
    )


def remote_assets(html: str) -> list[str]:
    """URLs on another host that the page's <script>/<link> tags would load."""
    out = []
    for m in _TAG.finditer(html):
        kind = m.group(1)
        attrs = _attrs(m.group(0))
        url = attrs.get(_url_attr(kind), "")
        if _loads_resource(kind, attrs) and _REMOTE.match(url):
            out.append(url)
    return out


def rewrite_html(
    html: str,
    prefix: str,
    assets: dict[str, tuple[str, bool]] = ASSETS,
    vendor_dir: Path = VENDOR_DIR,
) -> str:
    """Point every known CDN <script>/<link> at ``prefix + vendored path``."""

    def sub(m: re.Match) -> str:
        tag, kind = m.group(0), m.group(1)
        attrs = _attrs(tag)
        url = attrs.get(_url_attr(kind))
        if url not in assets:
            return tag
        rel_path, exact = assets[url]
        if exact and "integrity" in attrs:
            check_integrity(vendor_dir / rel_path, attrs["integrity"])
        new = tag.replace(url, prefix + rel_path, 1)
        for name in _CDN_ATTRS:
            new = re.sub(rf"""\s{name}\s*=\s*("[^"]*"|'[^']*')""", "", new, flags=re.IGNORECASE)
        return new

    return _TAG.sub(sub, html)


def vendor_site(
    html_dir: Path, vendor_dir: Path = VENDOR_DIR, assets: dict[str, tuple[str, bool]] = ASSETS
) -> list[Path]:
    """Copy the vendored files into ``html_dir/vendor`` and rewrite its .html files.

    Returns the rewritten files.  Raises SiteError if any page still loads a remote
    script or stylesheet afterwards.
    """
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise SiteError(f"{html_dir} has no index.html: run asv publish first")
    missing = [p for p, _ in assets.values() if not (vendor_dir / p).is_file()]
    if missing:
        raise SiteError(f"vendored files missing under {vendor_dir}: {missing}")
    dest = html_dir / SUBDIR
    for rel_path, _ in assets.values():
        (dest / rel_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vendor_dir / rel_path, dest / rel_path)
    for lic in vendor_dir.glob("*/LICENSE*"):
        (dest / lic.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lic, dest / lic.relative_to(vendor_dir))

    changed, leftovers = [], []
    for page in sorted(html_dir.rglob("*.html")):
        if dest in page.parents:
            continue
        prefix = os.path.relpath(dest, page.parent).replace(os.sep, "/") + "/"
        text = page.read_text(encoding="utf-8")
        new = rewrite_html(text, prefix, assets, vendor_dir)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
        leftovers += [f"{page.relative_to(html_dir)}: {u}" for u in remote_assets(new)]
    if leftovers:
        raise SiteError(
            "published pages still load files from other hosts (vendor them and "
            "add them to ASSETS in benchmarks/site/publish.py):\n  " + "\n  ".join(leftovers)
        )
    return changed


def fix_commit_links(html_dir: Path) -> bool:
    """Point commit links at the grid when no show_commit_url is configured (see
    NO_COMMIT_URL).  Returns whether index.json was changed."""
    index = Path(html_dir) / "index.json"
    data = json.loads(index.read_text(encoding="utf-8"))
    if data.get("show_commit_url") not in ("#", "", None):
        return False
    data["show_commit_url"] = NO_COMMIT_URL
    index.write_text(json.dumps(data), encoding="utf-8")  # compact, as asv writes it
    return True


def default_html_dir(config: Path) -> Path:
    from asv import util  # asv's own loader: asv.conf.json may hold // comments

    conf = util.load_json(str(config), js_comments=True)
    return (config.parent / conf.get("html_dir", "html")).resolve()


def publish_command(config: Path, html_dir: Path) -> list[str]:
    """``asv publish`` of ``config``'s results into ``html_dir`` (CDN scripts as asv writes them)."""
    cmd = [sys.executable, "-m", "asv", "publish", "--no-pull", "--config", str(config)]
    return cmd + ["--html-dir", str(html_dir)]


def asv_publish(config: Path, html_dir: Path) -> None:
    subprocess.run(publish_command(config, html_dir), check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--config",
        type=Path,
        default=REPO / "asv.conf.json",
        help="asv config (default: the repository's asv.conf.json)",
    )
    ap.add_argument(
        "--html-dir", type=Path, help="where to publish (default: html_dir from the config)"
    )
    ap.add_argument(
        "--no-asv",
        action="store_true",
        help="do not run asv publish; only vendor/rewrite an existing html dir",
    )
    args = ap.parse_args(argv)
    config = args.config.resolve()
    html_dir = args.html_dir.resolve() if args.html_dir else default_html_dir(config)
    try:
        if not args.no_asv:
            asv_publish(config, html_dir)
        changed = vendor_site(html_dir)
        fix_commit_links(html_dir)
    except (SiteError, subprocess.CalledProcessError) as exc:
        print(f"publish.py: {exc}", file=sys.stderr)
        return 1
    print(f"publish.py: {len(changed)} page(s) rewritten to load {SUBDIR}/ from {html_dir}")
    print(
        f"publish.py: view it with `python3 -m http.server -d {html_dir}` and "
        f"http://localhost:8000/ (or `asv preview`; not file://, which can't load asv's JSON)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

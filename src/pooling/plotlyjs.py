"""plotly.js for the site: the smallest official bundle that draws every figure, from npm at plotly.py's version."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import plotly.io as pio

from pooling.data import PROJECT_ROOT
from pooling.files import atomic_write, notify

PLOTLY_ASSET = Path("assets") / "plotly.min.js"  # where the site and the preview serve it from
# plotly.js publishes partial bundles on npm; each draws some trace types and every one has the components the book
# uses (error bars, annotations, shapes, sliders, menus). Their trace types, from each package's README:
BUNDLE_TRACES = {
    "basic": {"scatter", "bar", "pie"},
    "cartesian": {
        "scatter",
        "bar",
        "pie",
        "box",
        "heatmap",
        "histogram",
        "histogram2d",
        "histogram2dcontour",
        "image",
        "contour",
        "violin",
        "funnel",
        "funnelarea",
        "waterfall",
    },
}
# The smallest that draws every figure in the book: a figure with any other trace type stops the build
# (`check_traces`), so a new kind of figure is a deliberate change of this line.
BUNDLE = "basic"
NPM_PACKAGE = f"plotly.js-{BUNDLE}-dist-min"
NPM_FILE = f"plotly-{BUNDLE}.min.js"
NPM_CACHE = PROJECT_ROOT / "_cache" / "plotly.js"  # npm's install prefix, inside the project's ignored caches
VERSION = re.compile(rb"plotly\.js(?: \((?P<bundle>[\w-]+) - minified\))? v(?P<version>\d+\.\d+\.\d+)")


def full_bundle() -> Path:
    """The full plotly.js that plotly.py ships, the fallback where npm cannot be had."""
    return Path(pio.__file__).parents[1] / "package_data" / "plotly.min.js"


def bundle_of(path: Path) -> tuple[str, str] | None:
    """(bundle, version) from a plotly.js file's licence header ("full" for the full bundle), or None."""
    with open(path, "rb") as script:
        match = VERSION.search(script.read(400))
    return ((match["bundle"] or b"full").decode(), match["version"].decode()) if match else None


def expected_version() -> str:
    """The plotly.js version that plotly.py was built and tested with (the one its own bundle carries)."""
    return bundle_of(full_bundle())[1]


def _npm_bundle(prefix: Path, version: str) -> Path:
    """The bundle installed by npm under `prefix` (npm runs only when the right version is not there already)."""
    installed = prefix / "node_modules" / NPM_PACKAGE / NPM_FILE
    if not (installed.exists() and bundle_of(installed) == (BUNDLE, version)):
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--fetch-retries=1",
                "--prefix",
                str(prefix),
                f"{NPM_PACKAGE}@{version}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if bundle_of(installed) != (BUNDLE, version):
        raise RuntimeError(f"{installed} is not plotly.js {BUNDLE} {version}")
    return installed


def install(site: Path = PROJECT_ROOT, cache: Path = NPM_CACHE) -> tuple[Path, str]:
    """Put plotly.js into `site`/assets (the project, which Quarto publishes, or the preview): the package
    `plotly.js-basic-dist-min` from npm at the version plotly.py ships, installed once into `cache`, or, where npm
    cannot install it, plotly.py's own full bundle with a one-line notice. Returns the file and a line saying which
    it is."""
    version = expected_version()
    target = site / PLOTLY_ASSET
    try:
        source = _npm_bundle(cache, version)
        line = f"plotly.js: {NPM_PACKAGE} {version} from npm"
    except (OSError, subprocess.SubprocessError, RuntimeError) as problem:
        reason = getattr(problem, "stderr", None) or str(problem)
        source = full_bundle()
        line = (
            f"plotly.js: npm could not install {NPM_PACKAGE}@{version} ({reason.strip().splitlines()[-1][:120]}); "
            f"serving plotly.py's full bundle instead ({source.stat().st_size / 1e6:.1f} MB)"
        )
        notify(line)
    if not target.exists() or target.read_bytes() != source.read_bytes():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda partial: shutil.copyfile(source, partial))
    return target, f"{line}: {target} ({target.stat().st_size / 1e6:.1f} MB)"


class TraceError(ValueError):
    """A figure has a trace type that the site's plotly.js bundle cannot draw."""


def check_traces(figure: dict) -> None:
    """Stop on a trace type the site's bundle cannot draw: the page would show an empty figure."""
    missing = sorted({trace.get("type", "scatter") for trace in figure.get("data", [])} - BUNDLE_TRACES[BUNDLE])
    if missing:
        raise TraceError(
            f"the figure {figure.get('layout', {}).get('title', {}).get('text', '')!r} has trace type(s) "
            f"{', '.join(missing)}, which the site's plotly.js bundle ({NPM_PACKAGE}: "
            f"{', '.join(sorted(BUNDLE_TRACES[BUNDLE]))}) cannot draw: draw it with those (for a histogram, bars of "
            "numpy.histogram), or change pooling.plotlyjs.BUNDLE to a bundle that has them"
        )


def loader_tag(source: str) -> str:
    """The tag that loads plotly.js without holding up the page: `defer` runs it after the HTML is parsed, before
    DOMContentLoaded, which is what figures wait for (`plots.figure_html`)."""
    return f'<script defer src="{source}"></script>'

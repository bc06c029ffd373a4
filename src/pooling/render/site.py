"""The Quarto site's own steps: the pre-render asset, and the post-render clean-up and checks of the rendered site."""

from __future__ import annotations

import re
from pathlib import Path

from pooling.files import atomic_write_text
from pooling.plotlyjs import install


def pre_render() -> str:
    """Quarto's `pre-render` step: plotly.js into the project, where the site serves it from (not a CDN); returns
    the line that says which bundle it is."""
    return install()[1]


# Scripts that pages would fetch from third parties and that nothing in this book needs: nbconvert's MathJax (the
# math is MathML) and require.js, and the require.js, jQuery and jQuery-as-AMD-module shim that Quarto adds to every
# page with a text/html output (quarto-cli src/core/jupyter/widgets.ts, includesForJupyterWidgetDependencies).
UNNEEDED_SCRIPTS = [
    re.compile(r'<script\b[^>]*\ssrc="(?:https?:)?//[^"]*/require(?:\.min)?\.js"[^>]*>\s*</script>\n?'),
    re.compile(r'<script\b[^>]*\ssrc="(?:https?:)?//[^"]*/jquery[-.\d]*(?:\.min)?\.js"[^>]*>\s*</script>\n?'),
    re.compile(r"<script[^>]*>\s*define\(\s*'jquery'.*?</script>\n?", re.DOTALL),
    re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->\n?", re.DOTALL),
]
# What Jupyter widgets need require.js for; no page of this book has them.
JUPYTER_WIDGETS = re.compile(r"embed-amd\.js|application/vnd\.jupyter\.widget-(?:state|view)\+json")


def without_unneeded_scripts(page: str, name: str = "page") -> str:
    """The page without the third-party scripts above; a page with Jupyter widgets, which need them, is an error."""
    if JUPYTER_WIDGETS.search(page):
        raise ValueError(
            f"{name} has Jupyter widgets, which need require.js: serve require.js from the site before removing it"
        )
    for script in UNNEEDED_SCRIPTS:
        page = script.sub("", page)
    return page


def outside_resources(page: str) -> list[str]:
    """Addresses on other hosts that a browser would fetch for this HTML or CSS (links to follow are not fetched)."""
    addresses = re.findall(r'<(?:script|img|iframe|audio|video|source|embed|track)\b[^>]*?\ssrc="([^"]*)"', page)
    for tag in re.findall(r"<link\b[^>]*>", page):
        if not re.search(r'rel="(?:canonical|alternate|author|license|me)"', tag):
            addresses += re.findall(r'href="([^"]*)"', tag)
    addresses += re.findall(r"@import\s+(?:url\()?[\"']?([^\"')\s;]+)", page)
    addresses += re.findall(r"url\([\"']?((?:https?:)?//[^\"')]+)", page)
    return sorted({address for address in addresses if re.match(r"(?:https?:)?//", address)})


# Only the site goes into the output folder: these are the project's own working folders.
NOT_THE_SITE = ["_preview", "_cache", "_freeze", "_screenshots", "data", "src", "tests", "benchmarks"]


def post_render(out_dir: Path) -> list[Path]:
    """Quarto's `post-render` step: take the unneeded third-party scripts out of every page of the rendered site.

    Then check the whole site: it stops with the file and address of anything a browser would still fetch from
    another host (a page, a stylesheet such as a theme's web-font import), and of any working folder that was
    copied into it. Returns the pages it changed.
    """
    problems = [f"{out_dir / folder}: not part of the site" for folder in NOT_THE_SITE if (out_dir / folder).exists()]
    changed = []
    for file in sorted([*out_dir.rglob("*.html"), *out_dir.rglob("*.css")]):
        text = file.read_text()
        if file.suffix == ".html":
            cleaned = without_unneeded_scripts(text, str(file))
            if cleaned != text:
                atomic_write_text(file, cleaned)
                changed.append(file)
            text = cleaned
        problems += [f"{file}: loads {address}" for address in outside_resources(text)]
    if problems:
        raise RuntimeError("The site would fetch from other hosts or holds working files:\n" + "\n".join(problems))
    return changed

"""The Quarto site's own steps: the pre-render asset; after the render, the pages' notebooks, clean-up and checks."""

from __future__ import annotations

import re
from pathlib import Path

from pooling.data import PROJECT_ROOT
from pooling.files import atomic_write_text
from pooling.plotlyjs import install
from pooling.render.notebooks import replace_site_notebooks


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


# Quarto's folded callout (quarto-cli src/resources/filters/customnodes/callout.lua): the header is a div that
# Bootstrap's collapse plugin toggles on a click, with aria-expanded (not allowed on a div), no tab stop and no key
# handling, so a keyboard cannot open a solution (quarto-dev/quarto-cli#4934, open). The disclosure pattern instead
# (w3.org/WAI/ARIA/apg/patterns/disclosure): the title becomes a <button> that carries the collapse attributes, so
# Enter and Space open and close it and Bootstrap keeps its aria-expanded in step (it updates every element that
# has data-bs-toggle for the target). book.scss makes the button look like the title and cover the header.
CALLOUT_HEADER = re.compile(
    r'<div class="(?P<classes>callout-header\b[^"]*)"(?P<attributes>[^>]*\bdata-bs-toggle="collapse"[^>]*)>'
    r'(?P<before>.*?)<div class="(?P<title_classes>callout-title-container\b[^"]*)">(?P<title>.*?)</div>',
    re.DOTALL,
)
COLLAPSE_ATTRIBUTES = ("data-bs-toggle", "data-bs-target", "aria-controls", "aria-expanded")
# Pandoc marks every CSL entry as a list item; the "cite this page" entry stands alone, outside any list.
CITE_AS_LISTITEM = re.compile(r'(<div\b[^>]*\bclass="[^"]*\bquarto-appendix-citeas\b[^"]*"[^>]*?)\s+role="listitem"')


def _attributes(text: str) -> dict[str, str]:
    return dict(re.findall(r'([\w:-]+)="([^"]*)"', text))


def keyboard_callouts(page: str) -> str:
    """The page with each collapsible callout's header opened and closed by a button (see CALLOUT_HEADER)."""

    def button(match: re.Match) -> str:
        attributes = _attributes(match["attributes"])
        collapse = " ".join(f'{name}="{attributes[name]}"' for name in COLLAPSE_ATTRIBUTES if name in attributes)
        closed = " collapsed" if attributes.get("aria-expanded") == "false" else ""
        classes = " ".join(name for name in match["classes"].split() if name != "collapsed")
        return (
            f'<div class="{classes}">{match["before"]}<div class="{match["title_classes"]}">'
            f'<button type="button" class="callout-disclosure{closed}" {collapse}>{match["title"].strip()}</button>'
            "</div>"
        )

    return CALLOUT_HEADER.sub(button, page)


def accessible_markup(page: str, name: str = "page") -> str:
    """Quarto's markup with two accessibility faults fixed: folded callouts that a keyboard cannot open
    (`keyboard_callouts`) and the citation block's list item without a list. Stops if a callout header still
    carries aria-expanded, which means Quarto's markup has changed and the fix no longer applies."""
    page = CITE_AS_LISTITEM.sub(r"\1", keyboard_callouts(page))
    left = re.search(r'<div class="callout-header\b[^"]*"[^>]*\baria-expanded=', page)
    if left:
        raise ValueError(f"{name}: a callout header this step does not recognise: {left.group(0)[:160]}")
    return page


# Only the site goes into the output folder: these are the project's own working folders.
NOT_THE_SITE = ["_preview", "_cache", "_freeze", "_screenshots", "data", "src", "tests", "benchmarks"]


def post_render(out_dir: Path, root: Path = PROJECT_ROOT) -> list[Path]:
    """Quarto's `post-render` step: put each page's own notebook in place of Quarto's (`replace_site_notebooks`),
    take the unneeded third-party scripts out of every page of the rendered site, and fix its folded callouts and
    citation block for keyboards and screen readers (`accessible_markup`).

    Then check the whole site: it stops with the file and address of anything a browser would still fetch from
    another host (a page, a stylesheet such as a theme's web-font import), and of any working folder that was
    copied into it. Returns the pages it changed.
    """
    problems = [f"{out_dir / folder}: not part of the site" for folder in NOT_THE_SITE if (out_dir / folder).exists()]
    replace_site_notebooks(out_dir, root)
    changed = []
    for file in sorted([*out_dir.rglob("*.html"), *out_dir.rglob("*.css")]):
        text = file.read_text()
        if file.suffix == ".html":
            cleaned = accessible_markup(without_unneeded_scripts(text, str(file)), str(file))
            if cleaned != text:
                atomic_write_text(file, cleaned)
                changed.append(file)
            text = cleaned
        problems += [f"{file}: loads {address}" for address in outside_resources(text)]
    if problems:
        raise RuntimeError("The site would fetch from other hosts or holds working files:\n" + "\n".join(problems))
    return changed

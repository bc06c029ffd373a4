"""Quarto's own markup for the tests of the post-render step, rebuilt from Quarto's source (Quarto cannot be
installed here): a folded callout, the "cite this page" block, and a page that holds them under the cosmo theme."""

from __future__ import annotations

from pooling.data import PROJECT_ROOT
from pooling.render.theme import book_rules

# A folded callout as Quarto 1.10 writes it (quarto-cli src/resources/filters/customnodes/callout.lua, calloutDiv;
# Pandoc writes its attributes with a data- prefix).
QUARTO_CALLOUT = """<div class="callout callout-style-default callout-tip callout-titled">
<div class="callout-header d-flex align-content-center collapsed" data-bs-toggle="collapse" \
data-bs-target=".callout-1-contents" aria-controls="callout-1" aria-expanded="false" aria-label="Toggle callout">
<div class="callout-icon-container">
<i class="callout-icon"></i>
</div>
<div class="callout-title-container flex-fill">
Solution to <em>Exercise 4.1</em>
</div>
<div class="callout-btn-toggle d-inline-block border-0 py-1 ps-1 pe-0 float-end"><i class="callout-toggle"></i></div>
</div>
<div id="callout-1" class="callout-1-contents callout-collapse collapse">
<div class="callout-body-container callout-body">
<p>The answer.</p>
</div>
</div>
</div>"""
# The citation block Quarto adds to every page with `citation:` metadata (quarto-cli
# src/format/html/format-html-appendix.ts), whose entry Pandoc marks as a list item, and a References entry in its
# list.
QUARTO_CITATION = """<div class="quarto-appendix-secondary-label">For attribution, please cite this work as:</div>\
<div id="ref-contributors2026" class="csl-entry quarto-appendix-citeas" role="listitem">
Contributors, Pooling Book. 2026.
</div>
<div id="refs" class="references csl-bib-body hanging-indent" role="list">
<div id="ref-gelman2007data" class="csl-entry" role="listitem">Gelman, Andrew. 2007.</div>
</div>"""
# Quarto's rules behind the faults measured on the 1.10.18 site (issue 23): captions in a muted grey (#6d7a86,
# 4.39:1 on white), links without an underline in a blue about 2.1:1 against the text (cosmo's primary shaded by 20%,
# which passes on white, as the site did), citations' links too (quarto-cli
# src/resources/formats/html/bootstrap/_bootstrap-rules.scss).
QUARTO_RULES = """
a { text-decoration: none; color: #1f66b6; }
caption, .figure-caption, figcaption { color: #6d7a86; font-size: 1rem; }
.citation a, .footnote-ref { text-decoration: none; }
"""
BOOTSTRAP = PROJECT_ROOT / ".axe" / "node_modules" / "bootstrap" / "dist" / "js" / "bootstrap.bundle.min.js"
COSMO = PROJECT_ROOT / ".axe" / "node_modules" / "bootswatch" / "dist" / "cosmo" / "bootstrap.min.css"


def quarto_page(with_book_rules: bool = True) -> str:
    """A page of Quarto's markup under the cosmo theme and Bootstrap's own scripts: running text with a link and a
    citation, a captioned figure, a folded callout and the citation block; with the book's theme rules or without."""
    rules = QUARTO_RULES + (book_rules() if with_book_rules else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>A page of Quarto's markup</title>
<link rel="stylesheet" href="cosmo.css"><style>{rules}</style></head>
<body><div id="quarto-content" class="page-columns page-rows-contents page-layout-article">
<main class="content" id="quarto-document-content">
<h1 class="title">Partial pooling</h1>
<p>The hierarchical model of <a href="other.html">chapter 3</a> pools the sites, as
<span class="citation" data-cites="gelman2007data"><a href="#ref-gelman2007data" role="doc-biblioref">Gelman and
Hill (2007)</a></span> explain.</p>
<div id="fig-sites" class="quarto-float quarto-figure quarto-figure-center anchored">
<figure class="quarto-float quarto-float-fig figure"><div aria-describedby="fig-sites-caption">
<p>A figure.</p></div>
<figcaption id="fig-sites-caption" class="quarto-float-caption-bottom quarto-float-caption quarto-float-fig">
Figure 1: Two simulated sites.</figcaption></figure></div>
{QUARTO_CALLOUT}
<div id="quarto-appendix" class="default"><section class="quarto-appendix-contents" id="quarto-citation">
<h2 class="anchored quarto-appendix-heading">Citation</h2>
{QUARTO_CITATION}
</section></div>
</main></div>
<script src="bootstrap.bundle.min.js"></script>
</body></html>
"""

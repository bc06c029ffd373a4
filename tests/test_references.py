"""Citations, bibliographies, the page's own citation and cross-references, on both paths: the site's configuration,
the preview's Pandoc citeproc, and every page of the built preview."""

from __future__ import annotations

import re

import pytest
import yaml

from pooling.data import PROJECT_ROOT
from pooling.render.execute import chapter_sources, quarto_config, read_chapter
from pooling.render.preview import PREVIEW_DIR
from pooling.render.references import (
    citation_block,
    citations,
    cite,
    page_item,
    resolve_cross_references,
)

BIBLIOGRAPHY = PROJECT_ROOT / "references.bib"
BIB_KEYS = set(re.findall(r"^@\w+\{([^,\s]+),", BIBLIOGRAPHY.read_text(), re.MULTILINE))
PAGES = chapter_sources()


def cited_keys(markdown: str) -> set[str]:
    return {key for citation in citations(markdown) for key in re.findall(r"@([\w:.#$%&+?<>~/-]*\w)", citation)}


def test_citations_are_found_as_pandoc_reads_them_and_nowhere_else():
    text = (
        "As [see @a2020, ch. 2; -@b_1] showed, @c:d says so, @e [p. 3] too.\n"
        "Not `@code`, not mail@example.org, not [a link](https://example.org/@f), not @fig-x or @tbl-y."
    )
    assert citations(text) == ["[see @a2020, ch. 2; -@b_1]", "@c:d", "@e [p. 3]"]


def test_cite_formats_citations_and_the_pages_bibliography_with_citeproc():
    prose = ["Radon [@gelman2007data, ch. 12].", "Gelman and Hill [-@gelman2007data] and @price1996bayesian."]
    texts, bibliography = cite(prose, [BIBLIOGRAPHY])
    assert texts[0].startswith('Radon <span class="citation" data-cites="gelman2007data">(<a href="#ref-gelman2007')
    assert ">Gelman and Hill 2007</a>, ch.\N{NO-BREAK SPACE}12)</span>." in texts[0]
    assert texts[1].startswith('Gelman and Hill <span class="citation" data-cites="gelman2007data">(<a')
    assert ">2007</a>)</span> and " in texts[1] and 'Price et al. (<a href="#ref-price1996bayesian"' in texts[1]
    entries = re.findall(r'<div id="ref-([^"]+)" class="csl-entry"', bibliography)
    assert entries == ["gelman2007data", "price1996bayesian"]  # the page's citations only, in the style's order
    assert "Data Analysis Using Regression and Multilevel/Hierarchical Models" in bibliography
    uncited = ["No citation here, mail@example.org."]
    assert cite(uncited, [BIBLIOGRAPHY]) == (uncited, "")


def test_nocite_lists_every_entry_and_a_missing_key_is_reported(capsys):
    _, everything = cite([], [BIBLIOGRAPHY], nocite="@*")
    assert set(re.findall(r'<div id="ref-([^"]+)"', everything)) == BIB_KEYS
    texts, _ = cite(["[@nosuchkey2020]"], [BIBLIOGRAPHY], page="chapters/x.html")
    assert "nosuchkey2020?" in texts[0]  # as Pandoc writes an unknown key, never the raw "[@…]"
    assert "chapters/x.html: Citeproc: citation nosuchkey2020 not found" in capsys.readouterr().err


def test_cross_references_are_numbered_links_and_unknown_ones_say_so(capsys):
    numbers = {"fig-a": "Figure 1", "tbl-b": "Table 2"}
    text = "See @fig-a. @Fig-a shows it; Table [-@tbl-b] too. Not `@fig-a` in code. @fig-missing."
    assert resolve_cross_references(text, numbers, "p.html") == (
        "See [Figure 1](#fig-a). [Figure 1](#fig-a) shows it; Table [2](#tbl-b) too. Not `@fig-a` in code. "
        "**?@fig-missing**."
    )
    assert "p.html: no figure or table is labelled fig-missing" in capsys.readouterr().err


# The text of a computed paragraph: prose(f"""...""") or prose("...") in a code cell.
PROSE_CALL = re.compile(r'prose\(f?(?:"""(.*?)"""|"([^"\n]*)")', re.DOTALL)


def test_every_key_the_pages_cite_is_in_the_bibliography():
    cited = set()
    for page in PAGES:
        notebook, _ = read_chapter(page)
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cited |= cited_keys(cell.source)
            else:
                cited |= {key for call in PROSE_CALL.findall(cell.source) for key in cited_keys("".join(call))}
    assert cited and cited <= BIB_KEYS, sorted(cited - BIB_KEYS)


def test_the_references_page_lists_the_whole_bibliography():
    """On a website each page lists only its own citations; `nocite: '@*'` makes the References page list every
    entry of references.bib (Pandoc's manual, "Including uncited items in the bibliography")."""
    notebook, front_matter = read_chapter(PROJECT_ROOT / "chapters" / "91-references.qmd")
    assert front_matter["nocite"].strip() == "@*"
    assert any(re.search(r"^:::+\s*\{#refs\}", cell.source, re.MULTILINE) for cell in notebook.cells)
    assert quarto_config()["bibliography"] == "references.bib"


def test_one_date_on_a_page_and_the_release_date_in_its_citation():
    """No page shows a "Published" date under its "Built on" line: neither the site nor a page sets `date`, and the
    citation keeps the release date as `issued` (which Quarto prefers to `date`)."""
    config = quarto_config()
    assert not {"date", "date-modified"} & set(config)
    for page in PAGES:
        assert not {"date", "date-modified"} & set(read_chapter(page)[1]), page.name
    citation = yaml.safe_load((PROJECT_ROOT / "CITATION.cff").read_text())
    assert str(config["citation"]["issued"]) == str(citation["date-released"])


def test_the_pages_citation_is_built_from_the_site_metadata_like_quartos():
    item = page_item(quarto_config(), "Complete pooling", "One slope.", "chapters/02-complete-pooling.html")
    assert item["issued"] == {"date-parts": [[2026, 11, 24]]} and item["id"] == "contributors2026"
    block = citation_block(item)
    assert "@online{contributors2026," in block and "title = {Complete Pooling}" in block
    assert "date = {2026-11-24}" in block
    assert "Contributors, Pooling Book. 2026." in block and "Hierarchical Linear Regression in Python" in block
    assert 'role="listitem"' not in block  # taken out of its list, so no list item
    with_site = page_item({**quarto_config(), "website": {"site-url": "https://book.example"}}, "T", "", "index.html")
    assert with_site["URL"] == "https://book.example/"


# --- the built preview (every page executed once per session, see conftest.built_chapters) ---

# A citation key or cross-reference left as text: "@key", "[@key", "?@fig-x" (an e-mail address is not one).
RAW_REFERENCE = re.compile(r"(?<![\w.])-?\??@[A-Za-z_][\w:.#$%&+?<>~/-]*")


def page_text(page_html: str) -> str:
    """The text a reader sees (no code, scripts, styles or tags)."""
    text = re.sub(r"<(pre|code|script|style)\b.*?</\1>", " ", page_html, flags=re.DOTALL)
    return re.sub(r"<[^>]+>", " ", text)


def raw_references(page_html: str) -> list[str]:
    return RAW_REFERENCE.findall(page_text(page_html))


def test_raw_reference_probe_finds_what_quarto_would_not_show():
    assert raw_references("<p>As [@a, ch. 2] and @fig-x show, <strong>?@tbl-y</strong>.</p>") == [
        "@a",
        "@fig-x",
        "?@tbl-y",
    ]
    assert raw_references("<p>mail@example.org <code>@decorator</code></p><pre>@online{x,</pre>") == []


@pytest.mark.slow
def test_no_raw_citation_key_or_cross_reference_is_left_in_any_page(built_chapters):
    for source in built_chapters:
        page = PREVIEW_DIR / source.relative_to(PROJECT_ROOT).with_suffix(".html")
        assert raw_references(page.read_text()) == [], page.name


@pytest.mark.slow
def test_each_page_lists_what_it_cites_and_the_references_page_everything_cited(built_chapters):
    """Every citation links to its entry in the page's own bibliography; the References page lists every key cited
    anywhere in the book; every page ends with its citation block (the index promises it)."""
    listed_on_references_page = set(
        re.findall(r'id="ref-([^"]+)"', (PREVIEW_DIR / "chapters" / "91-references.html").read_text())
    )
    cited_in_book = set()
    for source in built_chapters:
        page = (PREVIEW_DIR / source.relative_to(PROJECT_ROOT).with_suffix(".html")).read_text()
        cited = {key for keys in re.findall(r'data-cites="([^"]+)"', page) for key in keys.split()}
        listed = re.findall(r'<div(?=[^>]*class="csl-entry")[^>]*\sid="ref-([^"]+)"', page)  # any attribute order
        assert cited <= set(listed), source.name
        assert 'id="quarto-citation"' in page and "@online{" in page, f"{source.name} has no citation block"
        cited_in_book |= cited
    assert cited_in_book and cited_in_book <= listed_on_references_page
    assert listed_on_references_page == BIB_KEYS

"""References in the preview as Quarto resolves them: citations, bibliographies and each page's own citation by
Pandoc's citeproc, and cross-references to figures and tables numbered as Quarto numbers them."""

from __future__ import annotations

import datetime
import html
import importlib.resources
import json
import re
import subprocess
from pathlib import Path

import yaml

from pooling.files import notify

# The pandoc that the pinned pypandoc_binary wheel ships (Quarto bundles its own): the same citeproc Quarto runs,
# and never another pandoc that happens to be on the PATH.
PANDOC = Path(str(importlib.resources.files("pypandoc") / "files" / "pandoc"))

# Prose where Pandoc reads no citation: code, link targets and HTML tags (MathML included).
PROTECTED = re.compile(r"(```.*?```|`[^`\n]+`|<code>.*?</code>|\]\([^)\s]*\)|<[^<>\n]*>)", re.DOTALL)
# A citation key as Pandoc reads it: a letter, digit or _, then alphanumerics and internal punctuation
# (quarto.org/docs/authoring/citations.html, "Citation Syntax"); the labels of cross-references are not keys.
KEY = r"(?!(?:fig|tbl|sec|eq)-)\w+(?:[:.#$%&\-+?<>~/]+\w+)*"
CITATION = re.compile(
    rf"\[[^\[\]]*?(?<![\w@])-?@{KEY}[^\[\]]*\](?![(\[])"  # [see @a, ch. 2; -@b]
    rf"|(?<![\w@\[-])@{KEY}(?:\s?\[[^\[\]@]*\](?![(\[]))?"  # @a, @a [p. 3]
)
# Quarto's cross-references: @fig-x ("Figure 2"), @Fig-x at the start of a sentence, [-@fig-x] (the number alone).
CROSS_REFERENCE = re.compile(
    r"\[-@(?P<number_only>(?:fig|tbl)-[\w-]*\w)\]|(?<![\w@])@(?P<label>(?:[Ff]ig|[Tt]bl)-[\w-]*\w)"
)
# The positioned bibliography of a page: `::: {#refs}` (Quarto lists the references there, not in the appendix).
REFS_DIV = re.compile(r"^:{3,}\s*\{#refs[\s}]", re.MULTILINE)
CREATIVE_COMMONS = {"CC BY", "CC BY-SA", "CC BY-ND", "CC BY-NC"}


class PandocError(RuntimeError):
    """Pandoc could not process a page's citations."""


def _outside_protected(markdown: str, replace) -> str:
    """Apply `replace(text)` to the prose of `markdown`, leaving code, link targets and HTML tags as they are."""
    pieces = PROTECTED.split(markdown)  # odd pieces are protected
    return "".join(piece if index % 2 else replace(piece) for index, piece in enumerate(pieces))


def resolve_cross_references(markdown: str, numbers: dict[str, str], page: str = "the page") -> str:
    """Cross-references to the page's figures and tables as links with their numbers (`numbers`: label to
    "Figure 2"). A label the page does not have shows as Quarto shows it, "?@fig-x", with a notice."""

    def link(match: re.Match) -> str:
        written = match["number_only"] or match["label"]
        label = written[0].lower() + written[1:]
        if label not in numbers:
            notify(f"{page}: no figure or table is labelled {label}, so @{written} cannot be resolved")
            return f"**?@{written}**"
        text = numbers[label].split()[-1] if match["number_only"] else numbers[label]
        return f"[{text}](#{label})"

    return _outside_protected(markdown, lambda text: CROSS_REFERENCE.sub(link, text))


def citations(markdown: str) -> list[str]:
    """The citations in `markdown`, as written (`[@a, ch. 2]`, `@a`), in order."""
    prose = PROTECTED.split(markdown)[::2]  # odd pieces are protected
    return [match.group(0) for piece in prose for match in CITATION.finditer(piece)]


def run_pandoc(arguments: list[str], text: str) -> tuple[str, list[str]]:
    """Pandoc's output for `text`, and its warnings."""
    if not PANDOC.is_file():
        raise PandocError(f"{PANDOC} is missing: install the locked environment (pypandoc_binary ships pandoc)")
    done = subprocess.run([str(PANDOC), *arguments], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise PandocError(f"pandoc {' '.join(arguments)} failed: {done.stderr.strip()}")
    return done.stdout, [line for line in done.stderr.splitlines() if line.startswith("[WARNING]")]


def cite(
    texts: list[str], bibliography: list[Path], nocite: str | None = None, page: str = "the page"
) -> tuple[list[str], str]:
    """Every citation in `texts` (a page's Markdown, in order) as Pandoc's citeproc writes it, and the page's
    bibliography (`<div id="refs">`, empty when the page cites nothing): one Pandoc run per page, so that the
    citations and the list are formatted together, with the style Quarto uses (Pandoc's default, Chicago
    author-date) and linked to their entries, as Quarto links them. `nocite` is the page's `nocite` metadata
    (`"@*"` lists every entry). A key missing from the bibliography shows as Pandoc shows it, with a notice.
    """
    written = [citations(text) for text in texts]
    unique = list(dict.fromkeys(citation for found in written for citation in found))
    if not unique and not nocite:
        return texts, ""
    metadata = {"link-citations": True, "bibliography": [str(path) for path in bibliography]}
    if nocite:
        metadata["nocite"] = nocite
    body = "".join(f"::: {{#pooling-cite-{number}}}\n{citation}\n:::\n\n" for number, citation in enumerate(unique))
    document = f"---\n{yaml.safe_dump(metadata)}---\n\n{body}::: {{#refs}}\n:::\n"
    output, warnings = run_pandoc(["--citeproc", "--wrap=none", "-f", "markdown", "-t", "html5"], document)
    for warning in warnings:
        notify(f"{page}: {warning.removeprefix('[WARNING] ')}")
    rendered = {
        unique[int(match["number"])]: match["html"]
        for match in re.finditer(
            r'<div id="pooling-cite-(?P<number>\d+)">\s*<p>(?P<html>.*?)</p>\s*</div>', output, re.DOTALL
        )
    }
    missing = [citation for citation in unique if citation not in rendered]
    if missing:
        raise PandocError(f"{page}: pandoc returned no text for {', '.join(missing)}")

    def replace(text: str) -> str:
        return CITATION.sub(lambda match: rendered.get(match.group(0), match.group(0)), text)

    refs = output[output.index('<div id="refs"') :].strip()
    return [_outside_protected(text, replace) for text in texts], refs if "csl-entry" in refs else ""


def _csl_date(value) -> dict | None:
    """A date from the metadata (YAML reads `2026-11-24` as a date) as CSL's date parts."""
    if value is None:
        return None
    if not isinstance(value, datetime.date):
        value = datetime.date.fromisoformat(str(value))
    return {"date-parts": [[value.year, value.month, value.day]]}


def page_item(config: dict, title: str, abstract: str, page: str) -> dict:
    """The page as a CSL item, as Quarto builds it for the page's citation block (`documentCSL`,
    quarto-cli src/quarto-core/attribution/document.ts): the site's `citation` metadata, its authors, the page's
    title and abstract, the `issued` date (else `date`), and the address under `site-url` when there is one."""
    citation = config.get("citation") if isinstance(config.get("citation"), dict) else {}
    authors = []
    for author in config.get("author", []):
        name = author.get("name", author) if isinstance(author, dict) else author
        authors.append(dict(name) if isinstance(name, dict) else {"literal": str(name)})
    item = {"type": citation.get("type", "webpage"), "title": citation.get("title", title), "author": authors}
    issued = _csl_date(citation.get("issued", config.get("date")))
    if issued:
        item["issued"] = issued
    for key in ("container-title", "publisher", "doi"):
        if citation.get(key):
            item["DOI" if key == "doi" else key] = citation[key]
    if abstract:
        item["abstract"] = abstract
    item["language"] = config.get("lang", "en")
    site_url = (config.get("website") or {}).get("site-url") or config.get("site-url")
    url = citation.get("url") or (f"{site_url.rstrip('/')}/{page.removesuffix('index.html')}" if site_url else None)
    if url:
        item["URL"] = url
    leading = authors[0].get("family") or authors[0].get("literal", "") if authors else ""
    year = str(issued["date-parts"][0][0]) if issued else ""
    item["id"] = citation.get("id") or (leading.lower() + year) or "untitled"
    return item


def citation_block(item: dict) -> str:
    """The page's "Citation" section as Quarto writes it in the appendix: the item as BibLaTeX and as a formatted
    reference, both by Pandoc from the CSL item (quarto-cli src/core/bibliography.ts, `renderBibTex`,
    `renderHtml`)."""
    item_json = json.dumps([item])
    bibtex, _ = run_pandoc(["-f", "csljson", "-t", "biblatex", "--citeproc"], item_json)
    reference, _ = run_pandoc(["-f", "csljson", "-t", "html5", "--citeproc", "--wrap=none"], item_json)
    entry = re.search(r'<div id="ref-[^"]*" class="csl-entry"[^>]*>(.*?)</div>', reference, re.DOTALL)
    # Quarto keeps the entry's role="listitem" although it is taken out of its list; a list item needs a list.
    formatted = f'<div class="csl-entry quarto-appendix-citeas">{entry.group(1).strip() if entry else ""}</div>'
    return (
        '<section class="quarto-appendix-contents" id="quarto-citation"><h2 class="quarto-appendix-heading">'
        'Citation</h2><div><div class="quarto-appendix-secondary-label">BibTeX citation:</div>'
        '<pre class="quarto-appendix-bibtex"><code>'
        + html.escape(bibtex.strip())
        + '</code></pre><div class="quarto-appendix-secondary-label">For attribution, please cite this work as:</div>'
        + formatted
        + "</div></section>"
    )


def reuse_block(license_text: str | None) -> str:
    """The page's "Reuse" section, as Quarto writes it for the `license` metadata (a Creative Commons licence as a
    link to its deed, format-html-appendix.ts)."""
    if not license_text:
        return ""
    if license_text in CREATIVE_COMMONS:
        address = f"https://creativecommons.org/licenses/{license_text[3:].lower()}/4.0/"
        content = f'<a rel="license" href="{address}">{address}</a>'
    else:
        content = html.escape(license_text)
    return (
        '<section class="quarto-appendix-contents" id="quarto-reuse"><h2 class="quarto-appendix-heading">Reuse</h2>'
        f"<div>{content}</div></section>"
    )


APPENDIX_STYLE = (
    "<style>#quarto-appendix { border-top: 1px solid #ddd; margin-top: 2em; }"
    " #quarto-appendix pre { white-space: pre-wrap; overflow-wrap: anywhere; }"
    " .csl-entry { overflow-wrap: anywhere; margin-bottom: 0.5em; }</style>"
)


def appendix(bibliography: str, license_text: str | None, item: dict | None) -> str:
    """The end of a page as Quarto's appendix has it: the page's references, the licence, the page's citation."""
    sections = []
    if bibliography:
        sections.append(
            '<section class="quarto-appendix-contents" role="doc-bibliography" id="quarto-bibliography">'
            f'<h2 class="quarto-appendix-heading">References</h2>{bibliography}</section>'
        )
    sections.append(reuse_block(license_text))
    if item is not None:
        sections.append(citation_block(item))
    content = "".join(section for section in sections if section)
    return f'<section id="quarto-appendix">{APPENDIX_STYLE}{content}</section>' if content else ""

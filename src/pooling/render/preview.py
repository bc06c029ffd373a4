"""Writing the preview: executed chapters as HTML pages as the site shows them, with navigation and error pages."""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

import nbformat

from pooling.data import PROJECT_ROOT
from pooling.files import WriteError, atomic_write, atomic_write_text
from pooling.fitting import DOWNLOADS_DIR
from pooling.plotlyjs import install
from pooling.render.callouts import callout_cells, fold_callouts
from pooling.render.execute import (
    ChapterResult,
    SourceError,
    cell_options,
    chapter_sources,
    console_path,
    front_matter,
    quarto_config,
)
from pooling.render.markup import TABLE_CAPTION, mathml, page_links, table_code_spans
from pooling.render.notebooks import offers_notebook, other_formats, write_notebook
from pooling.render.references import REFS_DIV, appendix, cite, page_item, resolve_cross_references
from pooling.render.site import without_unneeded_scripts
from pooling.render.theme import PAGE_SCRIPT, STYLESHEET, exporter, without_dead_tab_stops, write_stylesheet

PREVIEW_DIR = PROJECT_ROOT / "_preview"


def _label_figures(cell, alt: str) -> None:
    """Give the cell's plotly figures their `fig-alt` text as an accessible name, as Quarto gives an image its alt."""
    label = f'role="figure" aria-label="{html.escape(alt)}" class="plotly-graph-div'
    for output in cell.get("outputs", []):
        markup = output.get("data", {}).get("text/html")
        if markup is not None:
            markup = "".join(markup) if isinstance(markup, list) else markup
            output["data"]["text/html"] = markup.replace('class="plotly-graph-div', label)


def preview_cells(notebook: nbformat.NotebookNode, page: str = "the page") -> nbformat.NotebookNode:
    """Apply Quarto's cell options, captions, cross-references and math so the preview shows what the site shows
    (citations: `cite_page`)."""
    notebook = callout_cells(notebook)
    figures = {}

    def number(label: str) -> str:
        kind = "Figure" if label.startswith("fig-") else "Table"
        figures[label] = f"{kind} {sum(1 for other in figures if other[:4] == label[:4]) + 1}"
        return figures[label]

    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            options = cell_options(cell.source)
            tags = set(cell.metadata.get("tags", []))
            if options.get("include") is False:
                continue
            if options.get("echo") is False:
                tags.add("remove_input")
            if options.get("output") is False:
                tags.add("remove_output")
            if options.get("code-fold") is True:
                tags.add("code_fold")
            cell.metadata["tags"] = sorted(tags)
            cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("#|"))
            cells.append(cell)
            label = str(options.get("label", ""))
            if options.get("fig-alt"):
                _label_figures(cell, str(options["fig-alt"]))
            if label.startswith(("fig-", "tbl-")):
                caption = options.get("fig-cap") or options.get("tbl-cap") or ""
                captioned = nbformat.v4.new_markdown_cell(
                    f'<p id="{label}" class="caption">{number(label)}: {caption}</p>'
                )
                if "callout" in cell.metadata:  # a caption stays in its cell's callout
                    captioned.metadata["callout"] = cell.metadata["callout"]
                cells.append(captioned)
        elif cell.cell_type == "markdown":
            cell.source = TABLE_CAPTION.sub(
                lambda match: (
                    f'<p id="{match["label"]}" class="caption">{number(match["label"])}: {match["caption"]}</p>'
                ),
                table_code_spans(cell.source),
            )
            cells.append(cell)
    in_callouts = {}
    for cell in cells:
        if "callout" in cell.metadata:  # an id to find the cell's HTML by (`fold_callouts`)
            callout = cell.metadata["callout"]["number"]
            position = in_callouts[callout] = in_callouts.get(callout, -1) + 1
            cell.id = f"callout-{callout}-{position}"
        for output in cell.get("outputs", []):
            if "text/markdown" in output.get("data", {}):  # computed prose cross-references like the text around it
                markdown = resolve_cross_references(page_links(output["data"]["text/markdown"]), figures, page)
                output["data"]["text/markdown"] = mathml(markdown)
        if cell.cell_type == "markdown":
            cell.source = mathml(resolve_cross_references(page_links(cell.source), figures, page))
    notebook.cells = cells
    return notebook


# Quarto folds the code of `code-fold: true` cells behind a "Show code" toggle; the preview does the same.
FOLD_SCRIPT = """<script>
document.querySelectorAll(".celltag_code_fold .jp-InputArea").forEach(function (input) {
  var details = document.createElement("details");
  var summary = document.createElement("summary");
  summary.textContent = "Show code";
  details.appendChild(summary);
  input.parentNode.insertBefore(details, input);
  details.appendChild(input);
});
</script>"""


def _navigation(pages: list[tuple[str, str]], current: str) -> str:
    """The links to every page (the page's notebook is under "Other Formats", `notebooks.other_formats`)."""
    links = []
    for target, title in pages:
        relative = os.path.relpath(target, os.path.dirname(current) or ".")
        style = ' style="font-weight:bold"' if target == current else ""
        links.append(f'<a href="{html.escape(relative)}"{style}>{html.escape(title)}</a>')
    return (
        '<nav class="book-navigation" style="padding:0.6em 1em;border-bottom:1px solid #ddd;'
        'display:flex;flex-wrap:wrap;gap:0.4em 1.2em;font-family:sans-serif;font-size:0.9em">'
        + " ".join(links)
        + "</nav>"
    )


def cite_page(notebook: nbformat.NotebookNode, source: Path, config: dict, root: Path, page: str) -> str:
    """Format the citations of the page's prose and computed prose in place, with Pandoc's citeproc as Quarto
    does, and return what ends the page: its bibliography (the project's `bibliography` and the page's `nocite`),
    where the page puts `::: {#refs}` or else in the appendix, as Quarto places it; the licence; the page's own
    citation."""
    places = []  # every piece of Markdown on the page, in order: (where it is kept, its key)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            places.append((cell, "source"))
        for output in cell.get("outputs", []):
            if "text/markdown" in output.get("data", {}):
                places.append((output["data"], "text/markdown"))
    page_front_matter = front_matter(source)
    files = config.get("bibliography", [])
    files = [root / name for name in ([files] if isinstance(files, str) else files)]
    texts, references = cite([place[key] for place, key in places], files, page_front_matter.get("nocite"), page)
    for (place, key), text in zip(places, texts, strict=True):
        place[key] = text
    item = None
    if config.get("citation"):
        abstract = str(page_front_matter.get("abstract", "")).strip()
        item = page_item(config, page_front_matter.get("title", page), abstract, page)
    if REFS_DIV.search(source.read_text()):
        return references + appendix("", config.get("license"), item)
    return appendix(references, config.get("license"), item)


def _without_warnings(notebook: nbformat.NotebookNode, config: dict) -> nbformat.NotebookNode:
    """Drop standard-error output where `warning: false` applies (the project's setting or the cell's), as
    Quarto's Jupyter engine does: it counts every stderr stream as a warning."""
    notebook = nbformat.from_dict(notebook)
    default = config.get("execute", {}).get("warning", True)
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell_options(cell.source).get("warning", default) is False:
            cell.outputs = [
                output
                for output in cell.outputs
                if not (output.get("output_type") == "stream" and output.get("name") == "stderr")
            ]
    return notebook


def _page_path(source: Path, root: Path) -> Path:
    """Where a chapter's page goes in the preview: its place in the project (a file outside it: its name)."""
    return (source.relative_to(root) if source.is_relative_to(root) else Path(source.name)).with_suffix(".html")


def _error_page(result: ChapterResult, navigation: str) -> str:
    """The page that replaces a chapter that failed: unmistakably not the chapter."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>Build failed: {html.escape(result.title)}</title></head><body data-build-failed="true">'
        + navigation
        + '<main style="padding:1em;font-family:sans-serif">'
        f'<h1 style="color:#b00020">This chapter failed to build: {html.escape(result.title)}</h1>'
        "<p>The last build stopped in this chapter, so there is no page to show. Fix the error below and build "
        "again (<code>make site</code>).</p>"
        f'<pre style="white-space:pre-wrap;background:#fdf0f0;padding:1em">{html.escape(result.error or "")}</pre>'
        "</main></body></html>\n"
    )


def _sidebar_pages(results: list[ChapterResult], root: Path) -> list[tuple[str, str]]:
    """Every page of the site's sidebar as (page, title), in its order, whichever of them this build made, then any
    page built that the sidebar does not list: building one chapter never shortens the navigation."""
    titles = {result.source: result.title for result in results}
    sources = chapter_sources(root) if (root / "_quarto.yml").exists() else []
    sources += [source for source in titles if source not in sources]
    return [(str(_page_path(source, root)), str(titles.get(source) or _title(source))) for source in sources]


def _title(source: Path) -> str:
    """A page's title from its front matter; its file name if it has none or cannot be read (its own build says
    why)."""
    try:
        return front_matter(source).get("title", source.stem)
    except SourceError:
        return source.stem


def _write_error_page(result: ChapterResult, target: Path, navigation: str) -> None:
    """Replace a failed chapter's page (and drop its notebook); if even that cannot be written, remove the old page,
    which must not stay looking current."""
    try:
        atomic_write_text(target, _error_page(result, navigation))
    except WriteError:
        target.unlink(missing_ok=True)
        raise
    finally:
        target.with_suffix(".ipynb").unlink(missing_ok=True)


def _chapter_page(result: ChapterResult, page: str, pages: list, exporter, config: dict, root: Path) -> str:
    """The HTML page of an executed chapter, as the site shows it: its notebook under "Other Formats" when it
    offers one, its citations resolved and its bibliography and citation block at its end."""
    notebook = preview_cells(_without_warnings(result.notebook, config), page)
    heading = f"# {result.title}" + (f"\n\n*{result.abstract}*" if result.abstract else "")
    heading += f"\n\n{other_formats(page)}" if offers_notebook(result.source) else ""
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(heading))
    ending = cite_page(notebook, result.source, config, root, page)
    if ending:  # HTML in a Markdown cell, laid out like the prose; no blank line, which would end the HTML block
        notebook.cells.append(nbformat.v4.new_markdown_cell("\n".join(filter(str.strip, ending.splitlines()))))
    stylesheet = os.path.relpath(STYLESHEET, os.path.dirname(page) or ".")
    resources = {"metadata": {"name": result.title}, "stylesheet": stylesheet}
    body, _ = exporter.from_notebook_node(notebook, resources=resources)
    body = fold_callouts(without_dead_tab_stops(body), notebook)
    body = body.replace("<body", f'<body data-page="{html.escape(page)}"', 1)
    body = re.sub(r"(<body[^>]*>)", lambda match: match.group(1) + _navigation(pages, page), body, count=1)
    body = body.replace("</body>", FOLD_SCRIPT + PAGE_SCRIPT + "</body>", 1)
    return without_unneeded_scripts(body, page)


def write_preview(results: list[ChapterResult], out_dir: Path = PREVIEW_DIR, root: Path = PROJECT_ROOT) -> list[Path]:
    """Write each executed chapter as an HTML page plus the notebook it offers, and an error page for each failed
    one.

    A chapter whose page cannot be made from its notebook (the preview cannot read its markup) fails here: its
    `error` is set and it gets an error page too. Every file is written to a temporary name and renamed into place,
    so a page is never half-written; a failed chapter's old page and notebook are replaced first, before anything
    else can fill the disk, and removed if even that fails (a failed build never looks like a good one). The
    navigation lists every page of the site's sidebar. Returns the page paths.
    """
    page_exporter = exporter()
    config = quarto_config(root) if (root / "_quarto.yml").exists() else {}
    pages = _sidebar_pages(results, root)
    targets = [out_dir / _page_path(result.source, root) for result in results]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    for result, target in zip(results, targets, strict=True):
        if result.error is not None:
            page = str(target.relative_to(out_dir))
            _write_error_page(result, target, _navigation(pages, page))
    install(out_dir)
    write_stylesheet(out_dir)
    for posterior in sorted((root / DOWNLOADS_DIR.name).glob("*.nc")):  # the diagnostics tables link to them
        copy = out_dir / DOWNLOADS_DIR.name / posterior.name
        if not copy.exists() or copy.stat().st_size != posterior.stat().st_size:
            copy.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(copy, lambda target, posterior=posterior: shutil.copyfile(posterior, target))
    for result, target in zip(results, targets, strict=True):
        if result.error is not None:
            continue
        page = str(target.relative_to(out_dir))
        try:
            body = _chapter_page(result, page, pages, page_exporter, config, root)
        except Exception as error:  # noqa: BLE001 (whatever the chapter's markup raises fails the chapter alone)
            result.error = (
                f"{console_path(result.source)}: its page could not be made ({type(error).__name__}: {error})"
            )
            _write_error_page(result, target, _navigation(pages, page))
            continue
        atomic_write_text(target, body)
        if offers_notebook(result.source):
            write_notebook(result.source, target.with_suffix(".ipynb"))
        else:
            target.with_suffix(".ipynb").unlink(missing_ok=True)
    return targets

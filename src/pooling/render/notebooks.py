"""The notebook each page offers for download: every code cell of its `.qmd` a cell a reader can run, on both paths."""

from __future__ import annotations

import html
import os
from pathlib import Path

import nbformat

from pooling.files import atomic_write_text
from pooling.render.execute import read_chapter

# Quarto's "Other Formats" link names a notebook after its format: "Jupyter", with the notebook icon
# (format-html-links.ts, `alternateLinkForFormat`, `fileBsIconName`).
NOTEBOOK_LINK_TEXT = "Jupyter"
HOW_TO_RUN = (
    "*This notebook is the page's source: every code cell of the page, the hidden ones included (the setup and the "
    "cells that write the computed prose), without outputs. Run it from the top in the book's environment (`make "
    "site` or `make test` creates it in `.venv`; see the README) and it reproduces the page. The `#|` lines are "
    "Quarto's cell options: comments to Python.*"
)


def offers_notebook(source: Path) -> bool:
    """Whether the page links a notebook: it has code cells and does not turn the links off (`format-links: false`)."""
    notebook, front_matter = read_chapter(source)
    return front_matter.get("format-links") is not False and any(cell.cell_type == "code" for cell in notebook.cells)


def chapter_notebook(source: Path) -> nbformat.NotebookNode:
    """The page's `.qmd` as a notebook: its title and abstract, then every cell in order.

    Every code cell is a code cell, with its `#|` options kept (labelled, captioned and hidden cells alike, which
    Quarto's own ipynb format turns into quoted text or drops); the prose stays Quarto's Markdown. Cell ids are
    numbered, so the same `.qmd` always gives the same file.
    """
    notebook, front_matter = read_chapter(source)
    title = front_matter.get("title", source.stem)
    abstract = str(front_matter.get("abstract", "")).strip()
    heading = "\n\n".join(part for part in (f"# {title}", abstract, HOW_TO_RUN) if part)
    cells = [nbformat.v4.new_markdown_cell(heading), *notebook.cells]
    for number, cell in enumerate(cells):
        cell.id = f"cell-{number}"
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    result = nbformat.v4.new_notebook(cells=cells)
    result.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    nbformat.validate(result)
    return result


def write_notebook(source: Path, target: Path) -> Path:
    """Write the page's notebook (see `chapter_notebook`) to `target`, atomically."""
    atomic_write_text(target, nbformat.writes(chapter_notebook(source)))
    return target


def replace_site_notebooks(out_dir: Path, root: Path) -> list[Path]:
    """Put the page's own notebook in place of each notebook Quarto's `ipynb` format wrote into the site.

    Quarto converts a page to a notebook through Pandoc: a code cell with cell options arrives as quoted text and
    hidden cells are dropped, so its notebook does not run the page. The link Quarto writes ("Jupyter", under
    "Other Formats") stays as it is and now downloads `chapter_notebook`. Returns the notebooks replaced.
    """
    replaced = []
    for quarto_notebook in sorted(out_dir.rglob("*.ipynb")):
        source = root / quarto_notebook.relative_to(out_dir).with_suffix(".qmd")
        if source.is_file():
            replaced.append(write_notebook(source, quarto_notebook))
    return replaced


def other_formats(page: str) -> str:
    """The preview's "Other Formats" block for a page (a path like `chapters/01-x.html`), with Quarto's heading and
    link text, on one line under the title (Quarto puts it in the margin, which the preview does not have)."""
    name = html.escape(os.path.basename(page).removesuffix(".html") + ".ipynb")
    return (
        '<nav class="quarto-alternate-formats" aria-label="Other formats">'
        '<h2 style="display:inline;font-size:1em;margin:0 0.6em 0 0">Other Formats</h2>'
        '<ul style="display:inline;list-style:none;margin:0;padding:0">'
        f'<li style="display:inline"><a href="{name}" download="{name}">{NOTEBOOK_LINK_TEXT}</a></li></ul></nav>'
    )

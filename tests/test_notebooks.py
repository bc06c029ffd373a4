"""The notebook each page offers: one link on both paths, every code cell of the page a cell, and it runs."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from pooling.build import build_preview
from pooling.data import PROJECT_ROOT
from pooling.render.execute import chapter_sources, quarto_config, read_chapter
from pooling.render.notebooks import chapter_notebook, offers_notebook, other_formats, replace_site_notebooks

PAGES = chapter_sources()
IDS = [str(path.relative_to(PROJECT_ROOT)) for path in PAGES]


def code_sources(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("source", PAGES, ids=IDS)
def test_the_notebook_has_every_code_cell_of_the_page_and_no_outputs(source):
    """Hidden, labelled and captioned cells included, in order, with their `#|` options; the same file every time."""
    notebook = chapter_notebook(source)
    assert code_sources(notebook) == code_sources(read_chapter(source)[0])
    assert all(cell.outputs == [] and cell.execution_count is None for cell in notebook.cells if "outputs" in cell)
    assert notebook.cells[0].source.startswith(f"# {read_chapter(source)[1]['title']}")
    assert nbformat.writes(notebook) == nbformat.writes(chapter_notebook(source))


def test_pages_with_code_offer_a_notebook_and_the_others_none():
    offering = {source.name for source in PAGES if offers_notebook(source)}
    assert offering == {source.name for source in PAGES if source.name[:2].isdigit()} - {"91-references.qmd"}


def test_the_site_links_one_notebook_per_page_and_never_executes_it():
    """`format-links: [ipynb]` gives one link ("Jupyter"); a `{format, text}` entry would list the format twice
    (quarto-cli format-html-links.ts: only plain names count as formats the user listed)."""
    formats = quarto_config()["format"]
    assert formats["html"]["format-links"] == ["ipynb"]
    assert formats["ipynb"]["execute"]["enabled"] is False
    for name in ("index.qmd", "chapters/91-references.qmd"):
        assert read_chapter(PROJECT_ROOT / name)[1]["format-links"] is False


def test_post_render_puts_the_pages_notebook_in_place_of_quartos(tmp_path):
    """Quarto's ipynb of chapter 2 keeps one code cell of 14; the post-render step writes the page's own."""
    site = tmp_path / "_site"
    (site / "chapters").mkdir(parents=True)
    quartos = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("from pooling.chapter import setup_chapter"),
            nbformat.v4.new_markdown_cell("> ``` python\n> diagnostics_table([pooled])\n> ```"),
        ]
    )
    (site / "chapters" / "02-complete-pooling.ipynb").write_text(nbformat.writes(quartos))
    (site / "stray.ipynb").write_text(nbformat.writes(quartos))  # no page of that name: left alone
    replaced = replace_site_notebooks(site, PROJECT_ROOT)
    assert replaced == [site / "chapters" / "02-complete-pooling.ipynb"]
    written = nbformat.read(replaced[0], as_version=4)
    assert code_sources(written) == code_sources(read_chapter(PROJECT_ROOT / "chapters" / "02-complete-pooling.qmd")[0])
    assert len(code_sources(nbformat.read(site / "stray.ipynb", as_version=4))) == 1


def test_the_previews_other_formats_block_links_the_notebook_beside_the_page():
    block = other_formats("chapters/01-two-site-data.html")
    assert re.findall(r'<a href="([^"]+)" download="([^"]+)">', block) == [("01-two-site-data.ipynb",) * 2]
    assert ">Other Formats</h2>" in block and ">Jupyter</a>" in block


@pytest.mark.slow
def test_the_notebook_linked_from_a_page_runs_in_a_fresh_kernel(tmp_path):
    """Chapter 1 end to end: build its preview page, follow the page's one notebook link, run the notebook from the
    top in a fresh kernel in another folder. The other chapters' notebooks are checked cell for cell above."""
    chapter = PROJECT_ROOT / "chapters" / "01-two-site-data.qmd"
    (result,) = build_preview([chapter], out_dir=tmp_path / "preview", reuse_executed=True)
    assert result.error is None, result.error
    page = (tmp_path / "preview" / "chapters" / "01-two-site-data.html").read_text()
    (other_formats_block,) = re.findall(r'<nav [^>]*class="quarto-alternate-formats".*?</nav>', page)
    (link,) = re.findall(r'<a [^>]*href="([^"]+)"', other_formats_block)
    notebook = nbformat.read(tmp_path / "preview" / "chapters" / link, as_version=4)
    assert len(code_sources(notebook)) == len(code_sources(read_chapter(chapter)[0]))
    elsewhere = tmp_path / "reader"  # not the chapters' folder: the notebook finds everything from anywhere
    elsewhere.mkdir()
    fresh_kernel = NotebookClient(notebook, timeout=600, kernel_name="python3")
    fresh_kernel.execute(cwd=str(elsewhere))
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert errors == []
    assert any("build-versions" in str(output.get("data", {})) for output in notebook.cells[1].outputs)

"""Every chapter executes top to bottom in a fresh kernel, as Quarto's Jupyter engine runs it."""

from __future__ import annotations

import pytest

from pooling.build import PROJECT_ROOT, cell_options, chapter_sources, read_chapter

CHAPTERS = chapter_sources()


@pytest.mark.slow
@pytest.mark.parametrize("source", CHAPTERS, ids=[str(path.relative_to(PROJECT_ROOT)) for path in CHAPTERS])
def test_chapter_executes(built_chapters, source):
    result = built_chapters[source]
    assert result.error is None, result.error


def test_sidebar_lists_every_chapter_file():
    on_disk = {path for path in (PROJECT_ROOT / "chapters").glob("*.qmd")} | {PROJECT_ROOT / "index.qmd"}
    assert set(CHAPTERS) == on_disk


@pytest.mark.parametrize("source", CHAPTERS, ids=[str(path.relative_to(PROJECT_ROOT)) for path in CHAPTERS])
def test_chapter_conventions(source):
    """A title and abstract, the shared setup as first cell, and a label and caption on every figure."""
    notebook, front_matter = read_chapter(source)
    assert front_matter.get("title"), f"{source.name} has no title"
    if source.name != "91-references.qmd":  # the bibliography page is only a list
        assert front_matter.get("abstract"), f"{source.name} has no abstract"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if not code_cells:
        return
    assert "setup_chapter(" in code_cells[0].source, f"{source.name}: first cell must call setup_chapter"
    for cell in code_cells:
        options = cell_options(cell.source)
        if str(options.get("label", "")).startswith("fig-"):
            assert options.get("fig-cap"), f"{source.name}: figure {options['label']} has no caption"

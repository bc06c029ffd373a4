"""Every chapter executes top to bottom in a fresh kernel, as Quarto's Jupyter engine runs it."""

from __future__ import annotations

import html
import re

import nbformat
import pytest

from pooling.data import PROJECT_ROOT
from pooling.render.execute import cell_options, chapter_sources, execute_chapter, execution_key, read_chapter

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
    """A title and abstract, the shared setup as first cell, and a label, caption and alt text on every figure."""
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
            assert options.get("fig-alt"), f"{source.name}: figure {options['label']} has no fig-alt text"


# Markdown lines that are not prose: headings, fences, display math, tables, HTML.
NOT_PROSE = re.compile(r"^\s*(?:#|:::|\$\$|```|\||<|$)")


def shown_before_prose(notebook) -> list[str]:
    """The code a reader sees before the page's first paragraph of prose (after the hidden setup cell): the first
    line of each code cell that shows its code unfolded. A hidden cell (`echo: false`, `include: false`) shows none,
    one with `code-fold: true` only a "Show code" line, and a hidden cell that writes prose is prose."""
    shown = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            if any(not NOT_PROSE.match(line) for line in cell.source.splitlines()):
                break
            continue
        options = cell_options(cell.source)
        hidden = options.get("echo") is False or options.get("include") is False
        if hidden and "prose(" in cell.source:
            break
        if not hidden and options.get("code-fold") is not True:
            shown.append(next(line for line in cell.source.splitlines() if not line.startswith("#|")))
    return shown


@pytest.mark.parametrize("source", CHAPTERS, ids=[str(path.relative_to(PROJECT_ROOT)) for path in CHAPTERS])
def test_chapter_opens_with_prose(source):
    """Under the title a page shows prose first: no code cell shows its code, unfolded, before the first paragraph
    (imports folded with `code-fold: true` or placed after the opening paragraph)."""
    notebook, _ = read_chapter(source)
    assert shown_before_prose(notebook) == [], f"{source.name} opens with code, not prose"


def test_opening_rule_sees_imports_and_accepts_folded_or_later_ones():
    cell, text = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    setup = cell('#| echo: false\nsetup_chapter("x")')
    imports = "import numpy as np\nfrom pooling import plots"
    assert shown_before_prose(nbformat.v4.new_notebook(cells=[setup, cell(imports), text("## A\n\nProse.")])) == [
        "import numpy as np"
    ]
    folded = cell(f"#| code-fold: true\n{imports}")
    assert shown_before_prose(nbformat.v4.new_notebook(cells=[setup, folded, text("## A\n\nProse.")])) == []
    later = [setup, text("## A\n\n$$\nx\n$$"), text("Prose."), cell(imports)]
    assert shown_before_prose(nbformat.v4.new_notebook(cells=later)) == []
    computed = [setup, cell('#| echo: false\nprose(f"{1}")'), cell(imports)]
    assert shown_before_prose(nbformat.v4.new_notebook(cells=computed)) == []


def _tiny_chapter(path, front_matter=""):
    path.write_text(
        f"---\ntitle: Tiny\n{front_matter}---\n\n```{{python}}\nimport random\nprint(random.random())\n```\n"
    )
    return path


def _printed(result):
    (cell,) = [cell for cell in result.notebook.cells if cell.cell_type == "code"]
    return cell.outputs[0]["text"]


def test_unchanged_chapters_are_reused_and_changed_ones_run(tmp_path, monkeypatch):
    """The offline freeze: same inputs reuse the executed notebook; any edit, or `reads-other-pages`, runs again."""
    monkeypatch.setenv("POOLING_CACHE", str(tmp_path / "cache" / "fits"))
    chapter = _tiny_chapter(tmp_path / "01-tiny.qmd")
    first, again = (execute_chapter(chapter, reuse_executed=True) for _ in range(2))
    assert not first.frozen and again.frozen and _printed(first) == _printed(again)
    assert not execute_chapter(chapter).frozen  # the tests' default: always execute
    chapter.write_text(chapter.read_text().replace("Tiny", "Tiny, edited"))
    edited = execute_chapter(chapter, reuse_executed=True)
    assert not edited.frozen and _printed(edited) != _printed(first)
    assert len(list((tmp_path / "cache" / "executed").glob("01-tiny-*.ipynb"))) == 1  # the stale one is gone
    always = _tiny_chapter(tmp_path / "02-always.qmd", "reads-other-pages: true\n")
    assert not any(execute_chapter(always, reuse_executed=True).frozen for _ in range(2))


def test_execution_key_covers_every_module_of_the_package_subpackages_included(tmp_path):
    """An edit to any module, those of `pooling.render` included, runs the chapters again; so does moving code to
    another module. Files that are not Python code leave the key alone."""
    render = tmp_path / "src" / "pooling" / "render"
    render.mkdir(parents=True)
    (tmp_path / "requirements.lock").write_text("numpy==2.4.6\n")
    (render.parent / "__init__.py").write_text('"""The package."""\n')
    (render / "__init__.py").write_text('"""Rendering."""\n')
    (render / "preview.py").write_text("WIDTH = 1\n")
    chapter = _tiny_chapter(tmp_path / "01-tiny.qmd")
    first = execution_key(chapter, tmp_path)
    (render / "preview.py").write_text("WIDTH = 2\n")
    edited = execution_key(chapter, tmp_path)
    (render / "preview.py").rename(render / "markup.py")
    moved = execution_key(chapter, tmp_path)
    (render / "notes.txt").write_text("not code")
    assert len({first, edited, moved}) == 3 and execution_key(chapter, tmp_path) == moved


def test_version_line_names_the_date_and_the_versions_of_the_appendix():
    import datetime
    import re

    from pooling.chapter import version_line
    from pooling.fitting import library_versions

    versions = library_versions()
    line = version_line(datetime.date(2026, 11, 25), appendix="90-reproducibility.html")
    text = re.sub(r"<[^>]+>", "", line)
    assert text == (
        f"Built on 2026-11-25 with Bambi {versions['bambi']}, PyMC {versions['pymc']}, ArviZ {versions['arviz']}"
        " (every version)."
    )
    assert 'href="90-reproducibility.html"' in line
    assert "href" not in version_line(appendix=None)


@pytest.mark.slow
def test_every_page_shows_its_version_line(built_chapters):
    """The first cell of every executed page displays the version line, with the versions that built it."""
    from pooling.fitting import library_versions

    expected = f"Bambi {library_versions()['bambi']}, PyMC {library_versions()['pymc']}"
    for source, result in built_chapters.items():
        code = [cell for cell in result.notebook.cells if cell.cell_type == "code"]
        if not code:  # the bibliography page runs nothing
            continue
        first = code[0]
        shown = "".join(str(output.get("data", {}).get("text/html", "")) for output in first.outputs)
        assert "build-versions" in shown and expected in shown, f"{source.name}: no version line"


# An ESS quoted in prose ("smallest bulk and tail ESS of 2012 and 1682"): the integers in the words after "ESS".
ESS_IN_PROSE = re.compile(r"\bESS\b(?P<after>.{0,60})", re.S)
INTEGER = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d.])|(?<![\d.,])\d+(?![\d.,]\d)")
TABLE_CELL = re.compile(r"<t[dh]\b[^>]*>(.*?)</t[dh]>", re.S)


def ess_quoted(notebook) -> list[int]:
    """Every integer within 60 characters after "ESS" in the page's computed prose (code in backticks skipped)."""
    quoted = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            for match in ESS_IN_PROSE.finditer(output.get("data", {}).get("text/markdown", "")):
                after = re.sub(r"`[^`]*`", "", match["after"])
                quoted += [int(value.replace(",", "")) for value in INTEGER.findall(after)]
    return quoted


def table_values(notebook) -> set[int]:
    """Every number printed in the page's HTML tables, rounded to a whole number as the prose quotes an ESS."""
    values = set()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            page = output.get("data", {}).get("text/html", "")
            for text in TABLE_CELL.findall(page if "<table" in page else ""):
                text = html.unescape(re.sub(r"<[^>]+>", "", text)).strip().replace("−", "-").replace(",", "")
                try:
                    values.add(round(float(text)))
                except ValueError:
                    continue
    return values


def test_ess_check_finds_a_truncated_ess():
    """The check below can fail: a table prints ESS 2012 (2011.7 rounded) and the prose 2011 (truncated)."""
    table = "<table><tr><th>bulk ESS min</th><td>2012</td><td>1,682</td></tr></table>"
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data", {"text/html": table})]),
            nbformat.v4.new_code_cell(
                outputs=[
                    nbformat.v4.new_output(
                        "display_data",
                        {"text/markdown": "smallest bulk and tail ESS of 2011\nand 1682 (`x|site_sigma`), line 400."},
                    )
                ]
            ),
        ]
    )
    assert ess_quoted(notebook) == [2011, 1682, 400]
    assert {2012, 1682} <= table_values(notebook) and 2011 not in table_values(notebook)


@pytest.mark.parametrize("source", CHAPTERS, ids=[str(path.relative_to(PROJECT_ROOT)) for path in CHAPTERS])
def test_chapters_round_ess_in_prose_as_their_tables_do(source):
    """Prose formats an ESS with `number(value, 0)`, as `diagnostics_table` does: never truncated with int()."""
    truncated = re.findall(r"\bint\([^()]*\bess\w*[^()]*\)", source.read_text(), re.I)
    assert not truncated, f"{source.name}: an ESS truncated in prose, {truncated}; write number(value, 0)"


@pytest.mark.slow
def test_every_ess_quoted_in_prose_is_printed_in_a_table_of_the_page(built_chapters):
    """The prose and the diagnostics tables of a page round alike: each ESS the text quotes is in one of the page's
    tables as printed (or is the gate's line)."""
    from pooling.fitting import ESS_BULK_MIN, ESS_TAIL_MIN

    for source, result in built_chapters.items():
        printed = table_values(result.notebook) | {ESS_BULK_MIN, ESS_TAIL_MIN}
        missing = [value for value in ess_quoted(result.notebook) if value not in printed]
        assert not missing, f"{source.name}: ESS {missing} quoted in prose but printed in no table of the page"


def test_prose_numbers_round_as_tables_and_large_ones_read_as_powers_of_ten():
    from pooling.chapter import number, scientific

    assert number(-0.004) == "0.00" and number(-0.26) == "−0.26"  # a true minus sign, none on a rounded zero
    assert scientific(2.94e15) == "2.9 × 10¹⁵" and scientific(5.0e5) == "5.0 × 10⁵"
    assert scientific(-3.1e-7, 2) == "−3.10 × 10⁻⁷"

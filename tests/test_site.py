"""The site's configuration: citation, licences, one execution per page, nothing fetched from other hosts, one
Quarto version, a clean tree; and the preview's markup of math, tables and captions, checked without executing."""

from __future__ import annotations

import html
import json
import re
import subprocess
import tomllib

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from quarto_pages import QUARTO_CALLOUT, QUARTO_CITATION

from pooling.data import PROJECT_ROOT
from pooling.render.execute import quarto_config, read_chapter
from pooling.render.preview import preview_cells
from pooling.render.site import outside_resources, post_render, without_unneeded_scripts


def test_citation_cff_and_quarto_agree():
    citation = yaml.safe_load((PROJECT_ROOT / "CITATION.cff").read_text())
    quarto = quarto_config()
    assert citation["title"] == quarto["website"]["title"] == quarto["citation"]["container-title"]
    assert [(a["given-names"], a["family-names"]) for a in citation["authors"]] == [
        (a["name"]["given"], a["name"]["family"]) for a in quarto["author"]
    ]
    assert str(citation["version"]) == str(quarto["version"])
    assert str(citation["date-released"]) == str(quarto["citation"]["issued"])
    assert citation["license"] == "CC-BY-4.0" and quarto["license"] == "CC BY"
    assert quarto["google-scholar"] is True


def test_versions_agree():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    citation = yaml.safe_load((PROJECT_ROOT / "CITATION.cff").read_text())
    assert project["version"] == str(citation["version"])


def test_licences_are_stated():
    assert "MIT License" in (PROJECT_ROOT / "LICENSE").read_text()
    assert "CC BY 4.0" in (PROJECT_ROOT / "LICENSE").read_text()
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "MIT" in readme and "CC BY 4.0" in readme


def test_readme_opens_with_the_two_commands_and_links_design_notes_that_name_every_module():
    """A reader finds `make site` and `make test` on the README's first screen; a contributor finds, one link away,
    the design notes with every module of the package in their table."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:25])
    assert "make site" in first_screen and "make test" in first_screen
    assert "(CONTRIBUTING.md)" in readme
    notes = (PROJECT_ROOT / "CONTRIBUTING.md").read_text()
    package = PROJECT_ROOT / "src" / "pooling"
    modules = {
        ".".join(path.relative_to(package).with_suffix("").parts)
        for path in package.rglob("*.py")
        if path.name != "__init__.py"
    }
    assert modules and not [module for module in sorted(modules) if f"`{module}`" not in notes]


def test_plotly_is_served_by_the_site_and_only_from_the_project_root():
    project = quarto_config()["project"]
    # Quarto prepends "**/" to a resource glob without a leading "/", which also matched _preview/'s copy.
    # Every resource is anchored at the root: plotly.js and the downloadable posteriors.
    assert project["resources"] == ["/assets/plotly.min.js", "/posteriors/*.nc"]
    assert "pooling.build asset" in project["pre-render"]
    assert project["post-render"] == "python -m pooling.build post-render"
    assert project["type"] == "website"
    # The publish workflow installs the basic bundle first and fails rather than publish the full one.
    workflow = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "publish.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["publish"]["steps"]]
    assert any("pooling.build asset" in run and 'grep -q "plotly.js-basic-dist-min .* from npm"' in run for run in runs)


def test_each_page_is_executed_once():
    """Quarto executes a page once per format: only html may execute (the notebook link: tests/test_notebooks.py)."""
    formats = quarto_config()["format"]
    executing = [name for name, options in formats.items() if (options or {}).get("execute", {}).get("enabled", True)]
    assert executing == ["html"]


def test_math_and_fonts_need_no_network():
    html = quarto_config()["format"]["html"]
    assert html["html-math-method"] == "mathml"
    for mode in ("light", "dark"):
        assert html["theme"][mode][1] == "offline-fonts.scss"
    defaults = (PROJECT_ROOT / "offline-fonts.scss").read_text().split("/*-- scss:rules --*/")[0]
    assert "/*-- scss:defaults --*/" in defaults
    assert re.search(r"^\$web-font-path:\s*false;", defaults, re.MULTILINE)


def test_one_quarto_version_everywhere():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    (version,) = re.findall(r"^QUARTO_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert version == "1.10.18"
    assert "quarto-cli==$(QUARTO_VERSION)" in makefile
    assert "quarto --version" in makefile  # the render says which Quarto it used
    conda = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())["dependencies"]
    assert [entry for entry in conda if isinstance(entry, str) and entry.startswith("quarto")] == [f"quarto={version}"]
    workflow = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "publish.yml").read_text())
    setups = [step for step in workflow["jobs"]["publish"]["steps"] if "quarto-actions/setup" in step.get("uses", "")]
    assert [str(step["with"]["version"]) for step in setups] == [version]


def test_gitignore_holds_quartos_entries_and_every_build_output():
    """`quarto render` appends "/.quarto/" and "**/*.quarto_ipynb" unless those exact (trimmed) lines are there."""
    lines = [line.strip() for line in (PROJECT_ROOT / ".gitignore").read_text().splitlines()]
    assert "/.quarto/" in lines and "**/*.quarto_ipynb" in lines
    written = [
        ".quarto/xref/index.json",
        "chapters/01-two-site-data.quarto_ipynb",
        "_site/index.html",
        "_freeze/chapters/01-two-site-data/execute-results/html.json",
        "_preview/index.html",
        "_cache/fits/entry",
        "_screenshots/index.png",
        "assets/plotly.min.js",
        "data/raw/srrs2.dat",
        "posteriors/toy_pooled-0123456789ab.nc",
        ".axe/node_modules/axe-core/axe.min.js",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *written], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == written


# The tags Quarto 1.10 writes into a page's head for any text/html output (src/core/jupyter/widgets.ts), with a
# stand-in for the public host they name: the post-render step matches the scripts on any host.
CDN = "https://third-party.example/ajax/libs"
QUARTO_WIDGET_HEAD = (
    f'<script src="{CDN}/require.js/2.3.6/require.min.js" integrity="sha512-x" crossorigin="anonymous"></script>\n'
    f'<script src="{CDN}/jquery/3.5.1/jquery.min.js" integrity="sha512-y" crossorigin="anonymous"'
    ' data-relocate-top="true"></script>\n'
    '<script type="application/javascript" data-relocate-top="true">'
    "define('jquery', [],function() {return window.jQuery;})</script>\n"
)


def page(head: str, body: str = "<p>text</p>") -> str:
    own = '<script src="../site_libs/quarto-nav/quarto-nav.js"></script>'
    return f"<html><head>{own}{head}</head><body>{body}</body></html>"


def test_post_render_removes_quartos_cdn_scripts_and_keeps_the_sites_own(tmp_path):
    (tmp_path / "chapters").mkdir()
    chapter = tmp_path / "chapters" / "a.html"
    chapter.write_text(page(QUARTO_WIDGET_HEAD, '<a href="https://example.org/">a link is not a load</a>'))
    (tmp_path / "index.html").write_text(page(""))
    assert post_render(tmp_path) == [chapter]
    cleaned = chapter.read_text()
    assert "require" not in cleaned and "jquery" not in cleaned.lower()
    assert "../site_libs/quarto-nav/quarto-nav.js" in cleaned and "https://example.org/" in cleaned
    assert post_render(tmp_path) == []  # idempotent: a re-render's post-render step changes nothing


def test_post_render_does_not_depend_on_attribute_order():
    reordered = page(
        f'<script crossorigin="anonymous" src="{CDN}/jquery/3.5.1/jquery.min.js"></script>'
        f'<script defer src="{CDN}/require.js/2.3.6/require.js"></script>'
    )
    assert outside_resources(without_unneeded_scripts(reordered)) == []


@pytest.mark.parametrize(
    "name, text, address",
    [
        (
            "a.html",
            page('<script src="https://third-party.example/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'),
            "mathjax",
        ),
        ("a.html", page('<link href="https://fonts.example/css2?family=Lato" rel="stylesheet">'), "fonts"),
        (
            "site_libs/bootstrap/bootstrap.min.css",
            '@import url("https://fonts.example/css2?family=Lato");',
            "fonts",
        ),
    ],
)
def test_post_render_stops_on_anything_fetched_from_another_host(tmp_path, name, text, address):
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    with pytest.raises(RuntimeError, match=rf"{re.escape(str(target))}: loads \S*{address}"):
        post_render(tmp_path)


def test_post_render_stops_on_working_folders_in_the_site(tmp_path):
    (tmp_path / "_preview" / "assets").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="_preview: not part of the site"):
        post_render(tmp_path)


def test_pages_with_jupyter_widgets_keep_require_js_and_say_why():
    widget = page(
        QUARTO_WIDGET_HEAD
        + '<script src="https://third-party.example/@jupyter-widgets/html-manager@*/dist/embed-amd.js"></script>'
    )
    with pytest.raises(ValueError, match="chapters/w.html has Jupyter widgets"):
        without_unneeded_scripts(widget, "chapters/w.html")


def test_outside_resources_finds_loads_not_links():
    text = page(
        '<link rel="canonical" href="https://book.example/">'
        '<script src="//cdn.example/x.js"></script><img src="https://img.example/a.png"><img src="figure.png">',
        '<a href="https://example.org/">link</a>',
    )
    assert outside_resources(text) == ["//cdn.example/x.js", "https://img.example/a.png"]


def preview_markdown(chapter: str) -> str:
    """The preview's HTML of a chapter's prose (markdown cells), without executing it."""
    notebook, _ = read_chapter(PROJECT_ROOT / "chapters" / chapter)
    cells = preview_cells(notebook).cells
    return "\n".join(markdown2html_mistune(cell.source) for cell in cells if cell.cell_type == "markdown")


def test_preview_formula_table_shows_pipes_without_backslashes_and_a_numbered_caption():
    text = preview_markdown("07-pooling-on-radon.qmd")
    assert "<code>log_radon ~ 1 + (1 | county) + (0 + floor | county)</code>" in text
    assert "\\|" not in text and "{#tbl-" not in text
    assert '<p id="tbl-formula-map" class="caption">Table 1: How each toy formula reads on the radon data.</p>' in text


def test_preview_numbers_markdown_tables_with_code_tables_in_page_order():
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("#| label: tbl-first\n#| tbl-cap: From code.\nframe"),
            nbformat.v4.new_markdown_cell("| a |\n| --- |\n| `x \\| g` |\n\n: From prose. {#tbl-second}"),
            nbformat.v4.new_markdown_cell("As @tbl-second shows, after @tbl-first."),
        ]
    )
    cells = preview_cells(notebook).cells
    assert '<p id="tbl-second" class="caption">Table 2: From prose.</p>' in cells[2].source
    assert cells[3].source == "As [Table 2](#tbl-second) shows, after [Table 1](#tbl-first)."


# Chapter 9 has inline math that runs over a line break.
@pytest.mark.parametrize(
    "chapter, inline", [("01-two-site-data.qmd", 5), ("04-partial-pooling.qmd", 5), ("09-all-nine-states.qmd", 4)]
)
def test_preview_math_is_mathml_with_no_tex_left(chapter, inline):
    text = preview_markdown(chapter)
    assert text.count('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">') >= 1
    assert text.count('display="inline"') >= inline
    prose = re.sub(r"<code>.*?</code>|<pre>.*?</pre>", "", text, flags=re.DOTALL)
    assert "$" not in prose and "\\(" not in prose and "\\beta" not in prose


DOWNLOADS_BUDGET_MB = 50
SITE_BUDGET_MB = 80


def _megabytes(files) -> float:
    return sum(file.stat().st_size for file in files if file.is_file()) / 1e6


@pytest.mark.slow
def test_downloadable_posteriors_fit_the_budget_load_and_match_their_fits(built_chapters):
    """Every posterior a diagnostics table links is in the preview, loads with ArviZ and has its fit's posterior
    means over the draws it keeps (at most 1000 per chain); together they stay within 50 MB, and the whole preview
    site within 80 MB."""
    import arviz as az
    import numpy as np

    from pooling.fitting import DOWNLOAD_DRAWS, DOWNLOADS_DIR, cache_dir, download_step
    from pooling.render.preview import PREVIEW_DIR

    linked = set()
    for result in built_chapters.values():
        for cell in result.notebook.cells:
            for output in cell.get("outputs", []):
                shown = str(output.get("data", {}).get("text/html", ""))
                linked |= set(re.findall(r'href="[^"]*posteriors/([^"/]+\.nc)" download', shown))
    assert linked, "no diagnostics table links a posterior"
    published = {file.name for file in (PREVIEW_DIR / DOWNLOADS_DIR.name).glob("*.nc")}
    assert linked <= published
    assert _megabytes(PREVIEW_DIR / DOWNLOADS_DIR.name / name for name in linked) <= DOWNLOADS_BUDGET_MB
    assert _megabytes(PREVIEW_DIR.rglob("*")) <= SITE_BUDGET_MB
    for name in sorted(linked):
        download = az.from_netcdf(PREVIEW_DIR / DOWNLOADS_DIR.name / name)
        assert set(download.groups()) == {"posterior", "sample_stats", "observed_data"}, name
        (cached,) = cache_dir().glob(f"{name.removesuffix('.nc')}*.nc")  # same model and key prefix
        cached = az.from_netcdf(cached)
        step = download_step(cached.posterior.sizes["draw"])
        assert download.posterior.sizes["draw"] == len(range(0, cached.posterior.sizes["draw"], step)) <= DOWNLOAD_DRAWS
        cached.posterior = cached.posterior.isel(draw=slice(None, None, step))
        shared = set(cached.posterior.data_vars) & set(download.posterior.data_vars)
        left_out = set(cached.posterior.data_vars) - shared
        assert all(variable.endswith("_standard") for variable in left_out), (name, left_out)  # non-centred z-scores
        for variable in sorted(shared):
            np.testing.assert_allclose(
                download.posterior[variable].mean(("chain", "draw")),
                cached.posterior[variable].mean(("chain", "draw")),
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{name}: {variable}",
            )


def test_preview_gives_each_figure_its_fig_alt_as_accessible_name():
    cell = nbformat.v4.new_code_cell(
        '#| label: fig-x\n#| fig-cap: "A cap."\n#| fig-alt: "Two \\"sites\\" & lines."\nf()'
    )
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/html": '<div><div id="p" class="plotly-graph-div" style="a"></div></div>'}
        )
    ]
    notebook = preview_cells(nbformat.v4.new_notebook(cells=[cell]))
    markup = notebook.cells[0].outputs[0]["data"]["text/html"]
    assert 'role="figure" aria-label="Two &quot;sites&quot; &amp; lines." class="plotly-graph-div"' in markup


def test_explorer_is_driven_by_range_inputs_and_says_each_setting_in_short_text():
    """The explorer's dials are native range inputs (keyboard and screen readers), its headline numbers a sentence,
    its estimates a table with one row per site named once ("site 1", not "site site 1"), and every setting's
    numbers are on the page for the inputs to show."""
    from pooling import plots
    from pooling.shrinkage import explorer_grid

    dials = {
        "points per site": [3, 10],
        "noise sd": [1.0],
        "number of sites": [2],
        "spread": [1.0],
        "tau prior": ["tau ~ HalfNormal(10)"],
    }
    grid = explorer_grid(dials)
    plots.start_page(None)
    markup = plots.pooling_explorer(grid, dials)
    inputs = re.findall(r'<input type="range" id="([\w-]+)" min="0" max="(\d+)" step="1" value="(\d+)"', markup)
    assert [(int(top), int(value)) for _, top, value in inputs] == [(1, 1), (0, 0), (0, 0), (0, 0), (0, 0)]
    for identifier, _, _ in inputs:
        assert f'<label for="{identifier}">' in markup and f'<output for="{identifier}">' in markup
    book = json.loads(re.search(r'<script type="application/json" class="explorer-frames">(.*?)</script>', markup)[1])
    assert set(book["frames"]) == {"-".join(map(str, index)) for index in grid}
    status = re.search(r'<p class="explorer-status" aria-live="polite">([^<]*)</p>', markup)[1]
    first = grid[(1, 0, 0, 0, 0)]  # the middle setting, shown first
    assert html.unescape(status) == plots.explorer_status(plots._explorer_frame(first))
    assert len(status) < 300 and f"no pooling {first['rmse']['no pooling']:.2f}" in status
    rows = re.findall(r'<tr><th scope="row">([^<]*)</th>((?:<td>[^<]*</td>)+)</tr>', markup)
    assert [name for name, _ in rows] == ["site 1", "site 2"] and "site site" not in markup
    for (_, cells), true in zip(rows, first["true"], strict=True):
        assert re.findall(r"<td>([^<]*)</td>", cells)[0] == f"{true:.2f}".replace("-", "\u2212")
    for index, setting in grid.items():
        frame = book["frames"]["-".join(map(str, index))]
        np.testing.assert_allclose(frame["mean"][0], setting["true"], atol=5e-4)
        np.testing.assert_allclose(frame["mean"][3], setting["toward common slope"].mean, atol=5e-4)
        np.testing.assert_allclose(frame["rmse"][0], setting["rmse"]["no pooling"], atol=5e-4)
    assert 'addEventListener("input", show)' in markup


def test_a_page_loads_plotly_js_once_deferred_with_its_first_figure_and_figures_wait_for_it():
    import plotly.graph_objects as go

    from pooling import plots

    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    plots.start_page("../assets/plotly.min.js")
    first, second = plots.figure_html(figure, "a"), plots.figure_html(figure, "b")
    assert first.startswith('<script defer src="../assets/plotly.min.js"></script>')
    assert "plotly.min.js" not in second
    for markup in (first, second):
        assert "document.addEventListener('DOMContentLoaded', draw)" in markup and "if (window.Plotly)" in markup
        assert markup.count("Plotly.newPlot") == 1
    plots.start_page(None)  # a page without plotly.js to load (a test, a notebook): no tag
    assert "<script defer" not in plots.figure_html(figure, "c")


def test_figures_use_only_traces_the_sites_plotly_js_draws():
    import plotly.graph_objects as go

    from pooling import plots
    from pooling.plotlyjs import BUNDLE_TRACES, TraceError, check_traces

    check_traces(go.Figure([go.Scatter(), go.Bar()]).to_plotly_json())
    with pytest.raises(TraceError, match="violin.*plotly.js-basic-dist-min"):
        check_traces(go.Figure(go.Violin(y=[1, 2])).to_plotly_json())
    data = pd.DataFrame({"floor": [0, 0, 0, 1, 1, 1], "log_radon": [1.0, 1.5, 0.2, 0.4, 0.9, 0.1]})
    assert {trace.type for trace in plots.radon_by_floor(data).data} <= BUNDLE_TRACES["basic"]


def test_plotly_js_comes_from_npm_at_plotly_pys_version_or_falls_back_with_a_notice(tmp_path, monkeypatch, capsys):
    from pooling import plotlyjs

    version = plotlyjs.expected_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version) and plotlyjs.bundle_of(plotlyjs.full_bundle()) == ("full", version)
    # A stand-in npm that installs what the registry would: the basic bundle with its licence header.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        "#!/bin/sh\n"
        'prefix=$(echo "$@" | sed -E "s/.*--prefix ([^ ]+).*/\\1/")\n'
        f'mkdir -p "$prefix/node_modules/{plotlyjs.NPM_PACKAGE}"\n'
        f"printf '/**\\n* plotly.js (basic - minified) v{version}\\n*/\\nvar Plotly;' "
        f'> "$prefix/node_modules/{plotlyjs.NPM_PACKAGE}/{plotlyjs.NPM_FILE}"\n'
    )
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    target, line = plotlyjs.install(tmp_path, cache=tmp_path / "npm")
    assert plotlyjs.bundle_of(target) == ("basic", version) and line.startswith(f"plotly.js: {plotlyjs.NPM_PACKAGE}")
    # Without npm: plotly.py's full bundle and one line saying so.
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    target, line = plotlyjs.install(tmp_path, cache=tmp_path / "empty")
    assert plotlyjs.bundle_of(target) == ("full", version) and "full bundle" in line
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "npm could not install" in notice[0]


def test_book_rules_are_plain_css_in_both_themes_and_served_by_the_preview(tmp_path):
    """book.scss is layered after each theme by Quarto and served as it is by the preview, so it holds CSS only."""
    from pooling.render.theme import book_rules, write_stylesheet

    for mode in ("light", "dark"):
        assert quarto_config()["format"]["html"]["theme"][mode][1:] == ["offline-fonts.scss", "book.scss"]
    rules = book_rules()
    assert "math[display=" in rules and "text-decoration: underline" in rules and ".callout-disclosure" in rules
    without_comments = re.sub(r"/\*.*?\*/", "", rules, flags=re.DOTALL)
    assert not re.search(r"\$[\w-]|@(?:include|use|mixin|import|extend)|#\{|^\s*//", without_comments, re.MULTILINE)
    assert without_comments.count("{") == without_comments.count("}")
    stylesheet = write_stylesheet(tmp_path).read_text()
    assert rules in stylesheet and ".jp-Notebook" in stylesheet


def test_post_render_makes_folded_callouts_buttons_and_the_citation_no_orphan_list_item():
    from pooling.render.site import accessible_markup

    page = accessible_markup(QUARTO_CALLOUT + QUARTO_CITATION)
    header = re.search(r'<div class="callout-header[^"]*"[^>]*>', page)[0]
    assert header == '<div class="callout-header d-flex align-content-center">'  # no aria-expanded on a div
    (button,) = re.findall(r"<button[^>]*>.*?</button>", page, re.DOTALL)
    assert button == (
        '<button type="button" class="callout-disclosure collapsed" data-bs-toggle="collapse" '
        'data-bs-target=".callout-1-contents" aria-controls="callout-1" aria-expanded="false">'
        "Solution to <em>Exercise 4.1</em></button>"
    )
    assert '<div id="callout-1" class="callout-1-contents callout-collapse collapse">' in page  # the body as it was
    assert 'class="csl-entry quarto-appendix-citeas">' in page
    assert '<div id="ref-gelman2007data" class="csl-entry" role="listitem">' in page
    assert accessible_markup(page) == page  # running the step again changes nothing
    opened = QUARTO_CALLOUT.replace('aria-expanded="false"', 'aria-expanded="true"').replace(" collapsed", "")
    assert 'class="callout-disclosure" data-bs-toggle' in accessible_markup(opened)


def test_post_render_stops_on_callout_markup_it_does_not_recognise():
    from pooling.render.site import accessible_markup

    changed = QUARTO_CALLOUT.replace('data-bs-toggle="collapse" ', "")  # a future Quarto, say
    with pytest.raises(ValueError, match="callout header this step does not recognise"):
        accessible_markup(changed, "chapters/04.html")

"""Build without Quarto: execute each chapter in a Jupyter kernel and write the offline HTML preview.

This is what Quarto's Jupyter engine does with the same `.qmd` sources: the chapters, their order
and titles come from `_quarto.yml`; nothing is written twice.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml
from latex2mathml.converter import convert as tex_to_mathml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

from pooling.chapter import PLOTLY_ASSET, ensure_plotly_asset
from pooling.data import PROJECT_ROOT
from pooling.fitting import cache_dir

PREVIEW_DIR = PROJECT_ROOT / "_preview"
CELL_TIMEOUT = 1800  # seconds; the all-states fits are the slowest cells


@dataclass
class ChapterResult:
    source: Path
    title: str
    abstract: str = ""
    seconds: float = 0.0
    error: str | None = None
    frozen: bool = False  # outputs reused from an earlier execution of the same inputs
    notebook: nbformat.NotebookNode | None = field(default=None, repr=False)


def quarto_config(root: Path = PROJECT_ROOT) -> dict:
    return yaml.safe_load((root / "_quarto.yml").read_text())


def chapter_sources(root: Path = PROJECT_ROOT) -> list[Path]:
    """Every page in the order of the site's sidebar, parts included."""
    sources = []

    def walk(entries):
        for entry in entries:
            if isinstance(entry, str):
                sources.append(root / entry)
            elif isinstance(entry, dict):
                if "href" in entry:
                    sources.append(root / entry["href"])
                walk(entry.get("contents", []))

    walk(quarto_config(root)["website"]["sidebar"]["contents"])
    return sources


def cell_options(source: str) -> dict:
    """Quarto's `#|` cell options at the top of a code cell."""
    lines = []
    for line in source.splitlines():
        if not line.startswith("#|"):
            break
        lines.append(line[2:].strip())
    return yaml.safe_load("\n".join(lines)) or {} if lines else {}


def read_chapter(path: Path) -> tuple[nbformat.NotebookNode, dict]:
    """A `.qmd` as a notebook (the Jupyter engine's view of it) and its front matter."""
    notebook = jupytext.reads(path.read_text(), fmt="Rmd")
    front_matter = {}
    if notebook.cells and notebook.cells[0].cell_type == "raw" and notebook.cells[0].source.startswith("---"):
        front_matter = yaml.safe_load(notebook.cells[0].source.strip("-\n")) or {}
        notebook.cells = notebook.cells[1:]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook, front_matter


def execution_key(path: Path, root: Path = PROJECT_ROOT) -> str:
    """Everything that decides a chapter's outputs: its source, the package's code and the locked environment.

    The data are covered too: simulations are code, and the radon files are pinned by checksums in the package.
    """
    digest = hashlib.sha256()
    for file in [path, root / "requirements.lock", *sorted((root / "src" / "pooling").glob("*.py"))]:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def frozen_path(path: Path, root: Path = PROJECT_ROOT) -> Path:
    """Where the executed notebook of these exact inputs is kept (beside the fit cache)."""
    return cache_dir().parent / "executed" / f"{path.stem}-{execution_key(path, root)}.ipynb"


def execute_chapter(path: Path, reuse_executed: bool = False) -> ChapterResult:
    """Run every cell in a fresh kernel from the chapter's folder, as Quarto does.

    With `reuse_executed`, a chapter whose inputs are unchanged since it last ran is not executed again: the
    offline counterpart of Quarto's `freeze`, but keyed on the package and environment too, not only the `.qmd`.
    A page marked `reads-other-pages` in its front matter always runs.
    """
    notebook, front_matter = read_chapter(path)
    result = ChapterResult(path, front_matter.get("title", path.stem), front_matter.get("abstract", "").strip())
    start = time.perf_counter()
    frozen = frozen_path(path)
    if reuse_executed and frozen.exists() and not front_matter.get("reads-other-pages", False):
        result.notebook, result.frozen = nbformat.read(frozen, as_version=4), True
        result.seconds = time.perf_counter() - start
        return result
    client = NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
    except CellExecutionError as error:
        failing = next(
            (
                number
                for number, cell in enumerate(notebook.cells)
                if cell.cell_type == "code"
                and any(output.get("output_type") == "error" for output in cell.get("outputs", []))
            ),
            None,
        )
        label = cell_options(notebook.cells[failing].source).get("label", "") if failing is not None else ""
        where = f"cell {failing}" + (f" ({label})" if label else "")
        result.error = f"{path.relative_to(PROJECT_ROOT)}: {where} failed:\n{error}"
    result.seconds = time.perf_counter() - start
    result.notebook = notebook
    if result.error is None:
        frozen.parent.mkdir(parents=True, exist_ok=True)
        for stale in frozen.parent.glob(f"{path.stem}-*.ipynb"):
            stale.unlink()
        partial = frozen.with_suffix(".partial")
        nbformat.write(notebook, partial)
        partial.replace(frozen)  # atomic: a half-written notebook is never reused
    return result


def _page_links(markdown: str) -> str:
    """Links to .qmd sources become links to their pages, as Quarto writes them."""
    return re.sub(r"\]\(([^)#\s]+)\.qmd(#[^)]*)?\)", r"](\1.html\2)", markdown)


# TeX math as Pandoc reads it: $$…$$ for display; $…$ inline when the opening $ has a non-space on its right and
# the closing one a non-space on its left and no digit after it (Pandoc's manual, "Math").
TEX_MATH = re.compile(r"\$\$(?P<display>.+?)\$\$|(?<![\\$])\$(?=\S)(?P<inline>[^$\n]+?)(?<=\S)\$(?!\d)", re.DOTALL)
CODE = re.compile(r"(```.*?```|`[^`\n]+`|<code>.*?</code>)", re.DOTALL)
# A Pandoc table caption after a pipe table, with its cross-reference label: ": Caption. {#tbl-id}".
TABLE_CAPTION = re.compile(r"^: (?P<caption>.*?)\s*\{#(?P<label>tbl-[\w-]+)\}\s*$", re.MULTILINE)


def _mathml(markdown: str) -> str:
    """TeX math outside code as MathML, what Quarto's `html-math-method: mathml` writes: no script, no network."""

    def convert(match: re.Match) -> str:
        display = match.group("display") is not None
        tex = (match.group("display") if display else match.group("inline")).strip()
        return tex_to_mathml(tex, display="block" if display else "inline")

    pieces = CODE.split(markdown)  # odd pieces are code (Markdown or HTML), which keeps its dollars
    return "".join(piece if index % 2 else TEX_MATH.sub(convert, piece) for index, piece in enumerate(pieces))


def _table_code_spans(markdown: str) -> str:
    """Code spans in pipe-table rows as HTML, so an escaped pipe `\\|` shows as `|` (Pandoc unescapes it; mistune
    keeps the backslash inside code)."""

    def row(match: re.Match) -> str:
        return re.sub(
            r"`([^`\n]+)`",
            lambda code: "<code>" + html.escape(code.group(1).replace("\\|", "|")).replace("|", "&#124;") + "</code>",
            match.group(0),
        )

    return re.sub(r"^\|.*\|\s*$", row, markdown, flags=re.MULTILINE)


def _preview_cells(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Apply Quarto's cell options, captions, cross-references and math so the preview shows what the site shows."""
    notebook = nbformat.from_dict(notebook)
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
            if label.startswith(("fig-", "tbl-")):
                caption = options.get("fig-cap") or options.get("tbl-cap") or ""
                cells.append(
                    nbformat.v4.new_markdown_cell(f'<p id="{label}" class="caption">{number(label)}: {caption}</p>')
                )
        elif cell.cell_type == "markdown":
            # Quarto's fenced divs (callouts) keep their text; the fences are dropped.
            cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith(":::"))
            cell.source = TABLE_CAPTION.sub(
                lambda match: (
                    f'<p id="{match["label"]}" class="caption">{number(match["label"])}: {match["caption"]}</p>'
                ),
                _table_code_spans(cell.source),
            )
            cells.append(cell)
    for cell in cells:
        for output in cell.get("outputs", []):
            if "text/markdown" in output.get("data", {}):
                output["data"]["text/markdown"] = _mathml(_page_links(output["data"]["text/markdown"]))
        if cell.cell_type == "markdown":
            cell.source = _page_links(cell.source)
            cell.source = re.sub(
                r"@((?:fig|tbl)-[\w-]+)",
                lambda match: f"[{figures.get(match.group(1), match.group(1))}](#{match.group(1)})",
                cell.source,
            )
            # Citations show as plain keys; the Quarto site formats them from references.bib.
            cell.source = re.sub(
                r"\[(-?@[\w:-]+(?:;\s*-?@[\w:-]+)*)\]", lambda m: "(" + m.group(1).replace("@", "") + ")", cell.source
            )
            cell.source = _mathml(cell.source)
    notebook.cells = cells
    return notebook


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


# Only the site goes into the output folder: these are the project's own working folders.
NOT_THE_SITE = ["_preview", "_cache", "_freeze", "_screenshots", "data", "src", "tests", "benchmarks"]


def post_render(out_dir: Path) -> list[Path]:
    """Quarto's `post-render` step: take the unneeded third-party scripts out of every page of the rendered site.

    Then check the whole site: it stops with the file and address of anything a browser would still fetch from
    another host (a page, a stylesheet such as a theme's web-font import), and of any working folder that was
    copied into it. Returns the pages it changed.
    """
    problems = [f"{out_dir / folder}: not part of the site" for folder in NOT_THE_SITE if (out_dir / folder).exists()]
    changed = []
    for file in sorted([*out_dir.rglob("*.html"), *out_dir.rglob("*.css")]):
        text = file.read_text()
        if file.suffix == ".html":
            cleaned = without_unneeded_scripts(text, str(file))
            if cleaned != text:
                file.write_text(cleaned)
                changed.append(file)
            text = cleaned
        problems += [f"{file}: loads {address}" for address in outside_resources(text)]
    if problems:
        raise RuntimeError("The site would fetch from other hosts or holds working files:\n" + "\n".join(problems))
    return changed


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
    links = []
    for target, title in pages:
        relative = os.path.relpath(target, os.path.dirname(current) or ".")
        style = ' style="font-weight:bold"' if target == current else ""
        links.append(f'<a href="{html.escape(relative)}"{style}>{html.escape(title)}</a>')
    notebook = html.escape(os.path.basename(current)[: -len(".html")] + ".ipynb")
    notebook_link = f'<a href="{notebook}" download>Download this chapter as a notebook</a>'
    return (
        '<nav class="book-navigation" style="padding:0.6em 1em;border-bottom:1px solid #ddd;'
        'display:flex;flex-wrap:wrap;gap:0.4em 1.2em;font-family:sans-serif;font-size:0.9em">'
        + " ".join(links)
        + f" | {notebook_link}</nav>"
    )


def write_preview(results: list[ChapterResult], out_dir: Path = PREVIEW_DIR, root: Path = PROJECT_ROOT) -> list[Path]:
    """Write each executed chapter as an HTML page plus its notebook; return the page paths."""
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_input_tags={"remove_input"}, remove_all_outputs_tags={"remove_output"}),
        enabled=True,
    )
    pages = [(str(result.source.relative_to(root).with_suffix(".html")), result.title) for result in results]
    asset = out_dir / PLOTLY_ASSET
    asset.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ensure_plotly_asset(root), asset)
    written = []
    for result, (page, title) in zip(results, pages, strict=True):
        notebook = _preview_cells(result.notebook)
        heading = f"# {title}" + (f"\n\n*{result.abstract}*" if result.abstract else "")
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(heading))
        body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
        body = body.replace("<body", f'<body data-page="{html.escape(page)}"', 1)
        body = re.sub(
            r"(<body[^>]*>)", lambda match, page=page: match.group(1) + _navigation(pages, page), body, count=1
        )
        body = body.replace("</body>", FOLD_SCRIPT + "</body>", 1)
        body = without_unneeded_scripts(body, page)
        target = out_dir / page
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
        nbformat.write(result.notebook, target.with_suffix(".ipynb"))
        written.append(target)
    return written


def build_preview(
    sources: list[Path] | None = None, jobs: int = 1, out_dir: Path = PREVIEW_DIR, reuse_executed: bool = False
) -> list[ChapterResult]:
    """Execute the chapters (in `jobs` parallel kernels) and write the preview of those that ran.

    Pages marked `reads-other-pages` (the appendix that lists every fit) run after all the others have finished.
    """
    sources = sources or chapter_sources()
    summaries = [source for source in sources if read_chapter(source)[1].get("reads-other-pages", False)]
    regular = [source for source in sources if source not in summaries]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = pool.map(lambda source: execute_chapter(source, reuse_executed), regular)
        executed = dict(zip(regular, runs, strict=True))
    executed |= {source: execute_chapter(source, reuse_executed) for source in summaries}
    results = [executed[source] for source in sources]
    write_preview([result for result in results if result.error is None], out_dir)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["preview", "asset", "post-render"])
    parser.add_argument("--jobs", type=int, default=1, help="chapters executed at once")
    parser.add_argument(
        "--execute-all", action="store_true", help="run every chapter, even those whose inputs have not changed"
    )
    args = parser.parse_args(argv)
    if args.command == "asset":
        print(ensure_plotly_asset())
        return 0
    if args.command == "post-render":
        # Quarto passes the output folder, relative to the project (quarto.org/docs/projects/scripts.html).
        out_dir = PROJECT_ROOT / os.environ.get("QUARTO_PROJECT_OUTPUT_DIR", "_site")
        try:
            changed = post_render(out_dir)
        except (RuntimeError, ValueError) as problem:
            print(f"post-render: {problem}", file=sys.stderr)
            return 1
        print(f"post-render: third-party scripts removed from {len(changed)} pages; nothing loads from other hosts")
        return 0
    results = build_preview(jobs=args.jobs, reuse_executed=not args.execute_all)
    for result in results:
        status = "FAILED" if result.error else "frozen" if result.frozen else "ok"
        print(f"{status:6} {result.seconds:7.1f} s  {result.source.relative_to(PROJECT_ROOT)}")
    failures = [result.error for result in results if result.error]
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"Offline preview (not a Quarto render) written to {PREVIEW_DIR}/index.html")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

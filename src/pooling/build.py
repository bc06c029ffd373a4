"""Build without Quarto: execute each chapter in a Jupyter kernel and write the offline HTML preview.

This is what Quarto's Jupyter engine does with the same `.qmd` sources: the chapters, their order
and titles come from `_quarto.yml`; nothing is written twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import html
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import mistune
import nbformat
import yaml
from latex2mathml.converter import convert as tex_to_mathml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from traitlets.config import Config

from pooling.chapter import PLOTLY_ASSET, ensure_plotly_asset
from pooling.data import PROJECT_ROOT
from pooling.files import NOTICES_VARIABLE, WriteError, atomic_write, atomic_write_text, notify, read_notices
from pooling.fitting import DOWNLOADS_DIR, chapter_fits, executed_dir, read_ledger

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
    fits_sampled: int = 0
    fits_loaded: int = 0
    notices: list[str] = field(default_factory=list)  # from the kernel (cache, data), for the console


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
    return executed_dir() / f"{path.stem}-{execution_key(path, root)}.ipynb"


_RUNNING_CLIENTS: set[NotebookClient] = set()  # the kernels to stop on Ctrl-C
_RUNNING_LOCK = threading.Lock()
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")


def _reusable(frozen: Path) -> nbformat.NotebookNode | None:
    """The executed notebook at `frozen`, if it is readable and every fit it made is still in the ledger."""
    try:
        notebook = nbformat.read(frozen, as_version=4)
    except (OSError, ValueError, nbformat.ValidationError):
        return None
    ledger = read_ledger()
    if any(key not in ledger for key in notebook.metadata.get("pooling", {}).get("fits", [])):
        return None  # the record of its fits was lost: run it again so the appendix lists them
    return notebook


def _save_executed(path: Path, notebook: nbformat.NotebookNode, frozen: Path) -> None:
    """Keep the executed notebook for reuse, with its fits; drop older ones of the same chapter."""
    notebook.metadata["pooling"] = {"fits": chapter_fits(path.stem)}
    try:
        frozen.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(frozen, nbformat.writes(notebook))
    except OSError as error:
        notify(f"{path.name} will run again next time: its executed notebook was not saved ({error})")
        return
    _remove_executed(path, keep=frozen)


def _remove_executed(path: Path, keep: Path | None = None) -> None:
    """Delete the chapter's kept executed notebooks (all, or all but `keep`)."""
    pattern = re.compile(re.escape(path.stem) + r"-[0-9a-f]{16}\.ipynb")
    for stale in executed_dir().glob(f"{path.stem}-*.ipynb"):
        if stale != keep and pattern.fullmatch(stale.name):
            try:
                stale.unlink()
            except OSError:
                pass  # a read-only cache: the stale notebook's key never matches, so it is never reused


def _shown(path: Path) -> Path:
    """A path as the console shows it: relative to the project when inside it."""
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def _code_cell_lines(path: Path) -> list[int]:
    """The `.qmd` line number of each code cell's opening fence, in order."""
    return [number for number, line in enumerate(path.read_text().splitlines(), 1) if CODE_FENCE.match(line)]


CODE_FENCE = re.compile(r"^```+\s*\{python")


def describe_failure(path: Path, notebook: nbformat.NotebookNode, error: CellExecutionError) -> str:
    """Where a chapter failed (the `.qmd` line, the code cell's number and label), the chapter's own frames
    (its cells and this package's code, not the libraries') and the exception."""
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    fences = _code_cell_lines(path)
    by_count = {cell.get("execution_count"): number for number, cell in enumerate(code_cells)}
    failing = next(
        (
            number
            for number, cell in enumerate(code_cells)
            if any(output.get("output_type") == "error" for output in cell.get("outputs", []))
        ),
        None,
    )
    source = _shown(path)

    def cell_name(number: int) -> str:
        label = cell_options(code_cells[number].source).get("label")
        return f"code cell {number + 1}" + (f" ({label})" if label else "")

    frames, hidden, first_line = [], 0, None
    entries = []
    if failing is not None:
        entries = next(
            output["traceback"] for output in code_cells[failing].outputs if output.get("output_type") == "error"
        )
    for entry in entries:
        plain = ANSI_CODES.sub("", entry)
        cell = re.match(r"Cell In\[(\d+)\], line (\d+)", plain)
        if cell and by_count.get(int(cell.group(1)), len(fences)) < len(fences):
            number = by_count[int(cell.group(1))]
            line = fences[number] + int(cell.group(2))
            first_line = first_line or line
            header, _, body = plain[cell.end() :].partition("\n")
            # The code lines are numbered as in the .qmd, not within the cell.
            body = re.sub(
                r"^(-*> ?|\s*)(\d+)",
                lambda m, at=fences[number]: m.group(1) + str(int(m.group(2)) + at),
                body,
                flags=re.M,
            )
            frames.append(f"{source}:{line}, in {cell_name(number)}{header}\n{body}")
        elif plain.startswith("File ") and str(PROJECT_ROOT / "src") in plain.split("\n", 1)[0]:
            frames.append(plain.replace(str(PROJECT_ROOT) + "/", ""))
        elif plain.startswith("File "):
            hidden += 1
    if hidden:
        frames.append(f"({hidden} library frame{'s' if hidden > 1 else ''} not shown)")
    where = f"{source}:{first_line or (fences[failing] if failing is not None and failing < len(fences) else 1)}"
    what = f"{cell_name(failing)} failed" if failing is not None else "failed"
    message = f"{where}: {what}\n" + "\n".join(frame.rstrip() for frame in frames) + f"\n{error.ename}: {error.evalue}"
    return ANSI_CODES.sub("", message)  # plain text: it goes to logs and the error page too


def execute_chapter(path: Path, reuse_executed: bool = False) -> ChapterResult:
    """Run every cell in a fresh kernel from the chapter's folder, as Quarto does.

    With `reuse_executed`, a chapter whose inputs are unchanged since it last ran is not executed again: the
    offline counterpart of Quarto's `freeze`, but keyed on the package and environment too, not only the `.qmd`.
    A page marked `reads-other-pages` in its front matter always runs, and so does a chapter whose fits are
    missing from the ledger. Notices from the kernel (cache, data) and the fits it sampled or loaded are
    collected for the console, never left in the page.
    """
    notebook, front_matter = read_chapter(path)
    result = ChapterResult(path, front_matter.get("title", path.stem), front_matter.get("abstract", "").strip())
    start = time.perf_counter()
    frozen = frozen_path(path)
    if reuse_executed and not front_matter.get("reads-other-pages", False):
        reused = _reusable(frozen) if frozen.exists() else None
        if reused is not None:
            result.notebook, result.frozen = reused, True
            result.seconds = time.perf_counter() - start
            return result
    scratch = Path(tempfile.mkdtemp(prefix="pooling-"))  # this kernel's sockets and notices
    notices_file = scratch / "notices.jsonl"
    # The kernel talks to the build over local IPC sockets, not TCP: nothing is sent over the network, so ipykernel
    # has nothing to warn about (its "running over TCP without encryption" warning names IPC as the remedy).
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        config=Config({"KernelManager": {"transport": "ipc", "ip": str(scratch / "kernel")}}),
    )
    with _RUNNING_LOCK:
        _RUNNING_CLIENTS.add(client)
    try:
        client.execute(env=os.environ | {NOTICES_VARIABLE: str(notices_file)})
    except CellExecutionError as error:
        result.error = describe_failure(path, notebook, error)
    except Exception as error:  # the kernel died or was stopped: say so, never leave a good-looking page
        result.error = f"{_shown(path)}: the kernel stopped ({type(error).__name__}: {error})"
    finally:
        with _RUNNING_LOCK:
            _RUNNING_CLIENTS.discard(client)
        for notice in read_notices(notices_file):
            kind = notice.get("kind")
            if kind == "sampled":
                result.fits_sampled += 1
            elif kind == "loaded":
                result.fits_loaded += 1
            else:
                result.notices.append(notice.get("message", ""))
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    result.notebook = notebook
    if result.error is None:
        _save_executed(path, notebook, frozen)
    else:
        _remove_executed(path)  # its fits are no longer in the ledger: the appendix must not expect them
    return result


def stop_running_kernels() -> int:
    """Kill every chapter kernel still running (with its child processes); return how many there were."""
    with _RUNNING_LOCK:
        clients = list(_RUNNING_CLIENTS)
    for client in clients:
        provisioner = getattr(client.km, "provisioner", None) if client.km is not None else None
        try:
            if getattr(provisioner, "pgid", None) and provisioner.pgid != os.getpgrp():
                os.killpg(provisioner.pgid, signal.SIGKILL)
            elif getattr(provisioner, "pid", None):
                os.kill(provisioner.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(clients)


def _page_links(markdown: str) -> str:
    """Links to .qmd sources become links to their pages, as Quarto writes them."""
    return re.sub(r"\]\(([^)#\s]+)\.qmd(#[^)]*)?\)", r"](\1.html\2)", markdown)


# TeX math as Pandoc reads it: $$…$$ for display; $…$ inline when the opening $ has a non-space on its right and
# the closing one a non-space on its left and no digit after it (Pandoc's manual, "Math"). Inline math may run over
# a line break, not over a blank line.
TEX_MATH = re.compile(
    r"\$\$(?P<display>.+?)\$\$|(?<![\\$])\$(?=\S)(?P<inline>(?:[^$\n]|\n(?![ \t]*\n))+?)(?<=\S)\$(?!\d)", re.DOTALL
)
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


def _label_figures(cell, alt: str) -> None:
    """Give the cell's plotly figures their `fig-alt` text as an accessible name, as Quarto gives an image its alt."""
    label = f'role="figure" aria-label="{html.escape(alt)}" class="plotly-graph-div'
    for output in cell.get("outputs", []):
        markup = output.get("data", {}).get("text/html")
        if markup is not None:
            markup = "".join(markup) if isinstance(markup, list) else markup
            output["data"]["text/html"] = markup.replace('class="plotly-graph-div', label)


# Pandoc's fenced divs, as Quarto writes callouts: `::: {.callout-tip collapse="true"}` (or `::: callout-tip`) opens
# one, a line of colons alone closes the innermost.
DIV_OPEN = re.compile(r"^:{3,}\s*(?:\{(?P<attributes>[^}]*)\}|(?P<bare>[\w-]+))\s*$")
DIV_CLOSE = re.compile(r"^:{3,}\s*$")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*$")


class FenceError(ValueError):
    """A chapter's fenced divs do not pair up, or callouts are nested (the preview cannot fold those)."""


def _div_attributes(match: re.Match) -> dict:
    if match["bare"]:
        return {"classes": [match["bare"]]}
    attributes = match["attributes"]
    return {
        "classes": re.findall(r"(?:^|\s)\.([\w-]+)", attributes),
        **{key: value for key, value in re.findall(r'([\w-]+)="([^"]*)"', attributes)},
    }


def _in_callout(cell: nbformat.NotebookNode, stack: list) -> nbformat.NotebookNode:
    """The cell, marked as part of the innermost open div when that div is a callout."""
    if stack and stack[-1] is not None:
        cell.metadata["callout"] = dict(stack[-1])
    return cell


def _add_markdown(cells: list, lines: list[str], stack: list) -> None:
    """Append the markdown `lines` as a cell of the innermost open div, unless they are blank."""
    text = "\n".join(lines).strip("\n")
    if text.strip():
        cells.append(_in_callout(nbformat.v4.new_markdown_cell(text), stack))


def callout_cells(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook with its markdown split at fenced-div lines and the fences dropped; every cell inside a callout
    carries `metadata["callout"]`: its number on the page, kind ("tip"), `collapse` ("true", "false" or None) and
    title (the callout's first heading, which Quarto shows as its title, so it leaves the body here too).

    Other fenced divs (`::: {#refs}`) keep their text. Raises FenceError for a fence left open or closed twice, and
    for a callout inside a callout.
    """
    notebook = nbformat.from_dict(notebook)
    cells, stack, count = [], [], 0  # stack: the open divs, each its callout metadata or None
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            cells.append(_in_callout(cell, stack))
            continue
        piece, title_pending = [], False  # the markdown since the last fence
        for line in cell.source.splitlines():
            opening, closing = DIV_OPEN.match(line), DIV_CLOSE.match(line)
            if opening or closing:
                _add_markdown(cells, piece, stack)
                piece = []
            if opening:
                attributes = _div_attributes(opening)
                kinds = [name.removeprefix("callout-") for name in attributes["classes"] if name.startswith("callout-")]
                if kinds and any(div is not None for div in stack):
                    raise FenceError(f"a callout inside a callout ({line.strip()}): the preview cannot fold it")
                if not kinds:
                    stack.append(None)
                    continue
                count += 1
                title = attributes.get("title", "")
                stack.append(
                    {"number": count, "kind": kinds[0], "collapse": attributes.get("collapse"), "title": title}
                )
                title_pending = not title
            elif closing:
                if not stack:
                    raise FenceError(f"a fence closes a div that was never opened: {line.strip()}")
                stack.pop()
                title_pending = False
            elif title_pending and line.strip():
                title_pending = False
                heading = HEADING.match(line)
                if heading:
                    stack[-1]["title"] = heading["text"]
                else:
                    piece.append(line)
            else:
                piece.append(line)
        _add_markdown(cells, piece, stack)
    if stack:
        raise FenceError(f"{len(stack)} fenced div(s) never closed (a line of ':::' is missing)")
    notebook.cells = cells
    return notebook


def _preview_cells(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Apply Quarto's cell options, captions, cross-references and math so the preview shows what the site shows."""
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
                _table_code_spans(cell.source),
            )
            cells.append(cell)
    in_callouts = {}
    for cell in cells:
        if "callout" in cell.metadata:  # an id to find the cell's HTML by (`_fold_callouts`)
            callout = cell.metadata["callout"]["number"]
            position = in_callouts[callout] = in_callouts.get(callout, -1) + 1
            cell.id = f"callout-{callout}-{position}"
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


class _CellSpans(HTMLParser):
    """Where each cell with one of the wanted ids starts and ends in nbconvert's HTML (character offsets)."""

    def __init__(self, text: str, wanted: set[str]):
        super().__init__(convert_charrefs=False)
        self.wanted, self.spans, self.open, self.depth = wanted, {}, None, 0
        self.line_starts = [0, *(match.end() for match in re.finditer("\n", text))]
        self.text = text
        self.feed(text)
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag, attrs):
        if tag != "div":
            return
        self.depth += 1
        identifier = dict(attrs).get("id") or ""
        if self.open is None and identifier.removeprefix("cell-id=") in self.wanted:
            self.open = (identifier.removeprefix("cell-id="), self._offset(), self.depth)

    def handle_endtag(self, tag):
        if tag != "div":
            return
        if self.open is not None and self.depth == self.open[2]:
            end = self.text.index(">", self._offset()) + 1
            self.spans[self.open[0]] = (self.open[1], end)
            self.open = None
        self.depth -= 1


def _inline_markdown(text: str) -> str:
    """A callout title as inline HTML (emphasis, code, math), without the paragraph around it."""
    rendered = mistune.html(_mathml(text)).strip()
    return rendered.removeprefix("<p>").removesuffix("</p>")


def _fold_callouts(body: str, notebook: nbformat.NotebookNode) -> str:
    """Wrap each callout's cells in the page: a collapsible callout in `<details>` (closed when `collapse="true"`,
    as Quarto draws it folded), any other in a titled box."""
    groups = {}
    for cell in notebook.cells:
        if "callout" in cell.metadata:
            groups.setdefault(cell.metadata["callout"]["number"], (cell.metadata["callout"], []))[1].append(cell.id)
    spans = _CellSpans(body, {identifier for _, identifiers in groups.values() for identifier in identifiers}).spans
    for callout, identifiers in sorted(groups.values(), key=lambda group: -group[0]["number"]):
        found = [spans[identifier] for identifier in identifiers if identifier in spans]
        if not found:
            continue  # every cell of it was left out (include: false)
        start, end = min(span[0] for span in found), max(span[1] for span in found)
        kind, collapse = html.escape(callout["kind"]), callout["collapse"]
        title = _inline_markdown(callout["title"] or callout["kind"].capitalize())
        classes = f'class="callout callout-{kind}" data-callout="{kind}"'
        if collapse in ("true", "false"):
            opening = f"<details {classes}{' open' if collapse == 'false' else ''}><summary>{title}</summary>"
            closing = "</details>"
        else:
            opening, closing = f'<div {classes}><p class="callout-title">{title}</p>', "</div>"
        body = body[:start] + opening + body[start:end] + closing + body[end:]
    return body


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
                atomic_write_text(file, cleaned)
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


# Accessibility fixes to nbconvert's lab template, found by axe-core: its faded cell prompts fall below the WCAG AA
# contrast ratio (and so do its comment and number colours in code), and links in prose differ by colour alone.
PREVIEW_STYLE = """<style>
.jp-InputPrompt, .jp-OutputPrompt { color: #1f5f99 !important; opacity: 1 !important; }
.jp-RenderedHTMLCommon a, .jp-RenderedMarkdown a { text-decoration: underline !important; }
.highlight .c, .highlight .c1, .highlight .cm { color: #2f5f5f !important; }
.highlight .mf, .highlight .mi { color: #005f00 !important; }
.highlight .ow, .highlight .nb, .highlight .kn, .highlight .k { color: #6a1b9a !important; }
.callout { border: 1px solid #c8d3de; border-left: 5px solid #1f5f99; border-radius: 4px; margin: 1em 0;
  padding: 0.2em 0.8em; }
.callout-tip { border-left-color: #1b6e3a; }
.callout > summary, .callout > .callout-title { font-weight: bold; padding: 0.4em 0; cursor: pointer; }
.callout > .callout-title { cursor: auto; margin: 0; }
</style>"""


def _navigation(pages: list[tuple[str, str]], current: str, with_notebook: bool = True) -> str:
    """The links to every page, and to the current page's notebook unless it has none (a failed chapter)."""
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
        + (f" | {notebook_link}" if with_notebook else "")
        + "</nav>"
    )


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


def write_preview(results: list[ChapterResult], out_dir: Path = PREVIEW_DIR, root: Path = PROJECT_ROOT) -> list[Path]:
    """Write each executed chapter as an HTML page plus its notebook, and an error page for each failed one.

    Every file is written to a temporary name and renamed into place, so a page is never half-written; a
    failed chapter's old page and notebook are replaced (a failed build never looks like a good one).
    Returns the page paths.
    """
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_input_tags={"remove_input"}, remove_all_outputs_tags={"remove_output"}),
        enabled=True,
    )
    config = quarto_config(root) if (root / "_quarto.yml").exists() else {}
    pages = [(str(_page_path(result.source, root)), result.title) for result in results]
    asset = out_dir / PLOTLY_ASSET
    asset.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(asset, lambda target: shutil.copyfile(ensure_plotly_asset(root), target))
    for posterior in sorted((root / DOWNLOADS_DIR.name).glob("*.nc")):  # the diagnostics tables link to them
        copy = out_dir / DOWNLOADS_DIR.name / posterior.name
        if not copy.exists() or copy.stat().st_size != posterior.stat().st_size:
            copy.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(copy, lambda target, posterior=posterior: shutil.copyfile(posterior, target))
    written = []
    for result, (page, title) in zip(results, pages, strict=True):
        target = out_dir / page
        target.parent.mkdir(parents=True, exist_ok=True)
        if result.error is not None:
            atomic_write_text(target, _error_page(result, _navigation(pages, page, with_notebook=False)))
            target.with_suffix(".ipynb").unlink(missing_ok=True)
            written.append(target)
            continue
        notebook = _preview_cells(_without_warnings(result.notebook, config))
        heading = f"# {title}" + (f"\n\n*{result.abstract}*" if result.abstract else "")
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(heading))
        body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
        body = _fold_callouts(body, notebook)
        body = body.replace("<body", f'<body data-page="{html.escape(page)}"', 1)
        body = re.sub(
            r"(<body[^>]*>)", lambda match, page=page: match.group(1) + _navigation(pages, page), body, count=1
        )
        body = body.replace("</body>", FOLD_SCRIPT + "</body>", 1).replace("</head>", PREVIEW_STYLE + "</head>", 1)
        body = without_unneeded_scripts(body, page)
        atomic_write_text(target, body)
        atomic_write_text(target.with_suffix(".ipynb"), nbformat.writes(result.notebook))
        written.append(target)
    return written


class BuildLocked(RuntimeError):
    """Another build is writing the same preview folder."""


@contextlib.contextmanager
def build_lock(out_dir: Path):
    """Hold the preview folder's lock for the whole build; a second build in the same folder stops at once."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ".build.lock"
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise BuildLocked(
                f"Another build (process {holder}) is writing {out_dir}: wait for it to finish, then run again."
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        for leftover in out_dir.rglob(".*.partial"):  # from a build that was killed mid-write
            leftover.unlink(missing_ok=True)
        try:
            yield
        finally:
            lock.truncate(0)


def progress_line(result: ChapterResult) -> str:
    """One line for the console as a chapter finishes: status, seconds, name, fits sampled and loaded."""
    status = "FAILED" if result.error else "reused" if result.frozen else "ok"
    fits = "" if result.frozen else f"  fits: {result.fits_sampled} sampled, {result.fits_loaded} from cache"
    return f"{status:6} {result.seconds:7.1f} s  {_shown(result.source)}{fits}"


def build_preview(
    sources: list[Path] | None = None,
    jobs: int = 1,
    out_dir: Path = PREVIEW_DIR,
    reuse_executed: bool = False,
    report=None,
) -> list[ChapterResult]:
    """Execute the chapters (in `jobs` parallel kernels) and write the preview: pages for those that ran, error
    pages for those that failed.

    Pages marked `reads-other-pages` (the appendix that lists every fit) run after all the others have finished.
    `report(result)` is called as each chapter finishes. On Ctrl-C the running kernels are stopped, queued
    chapters are dropped, nothing is written and KeyboardInterrupt is raised again. Raises BuildLocked when
    another build holds the preview folder.
    """
    sources = sources or chapter_sources()
    summaries = [source for source in sources if read_chapter(source)[1].get("reads-other-pages", False)]
    regular = [source for source in sources if source not in summaries]
    executed = {}

    def finished(result: ChapterResult) -> None:
        executed[result.source] = result
        if report is not None:
            report(result)

    with build_lock(out_dir):
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = [pool.submit(execute_chapter, source, reuse_executed) for source in regular]
            for future in as_completed(futures):
                finished(future.result())
            pool.shutdown()
            for source in summaries:
                finished(execute_chapter(source, reuse_executed))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            stop_running_kernels()
            pool.shutdown(wait=True)
            raise
        results = [executed[source] for source in sources]
        write_preview(results, out_dir)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["preview", "asset", "post-render"])
    parser.add_argument("chapters", nargs="*", type=Path, help="only these .qmd files (default: the whole site)")
    parser.add_argument("--out-dir", type=Path, default=PREVIEW_DIR, help="where the preview is written")
    parser.add_argument("--jobs", type=int, default=1, help="chapters executed at once")
    parser.add_argument(
        "--execute-all", action="store_true", help="run every chapter, even those whose inputs have not changed"
    )
    args = parser.parse_intermixed_args(argv)  # options may come before or after the chapters
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
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    missing = [str(chapter) for chapter in args.chapters if not chapter.is_file()]
    if missing:
        parser.error(f"no such chapter: {', '.join(missing)}")
    shown = set()

    def report(result: ChapterResult) -> None:
        print(progress_line(result), flush=True)
        for notice in result.notices:
            if notice not in shown:  # a read-only cache says so once, not once per chapter
                shown.add(notice)
                print(f"       {notice}", flush=True)

    try:
        results = build_preview(
            [chapter.resolve() for chapter in args.chapters] or None,
            jobs=args.jobs,
            out_dir=args.out_dir.resolve(),
            reuse_executed=not args.execute_all,
            report=report,
        )
    except BuildLocked as error:
        print(error, file=sys.stderr)
        return 75  # EX_TEMPFAIL: try again later
    except KeyboardInterrupt:
        print("Interrupted: running chapters stopped, the preview left as it was.", file=sys.stderr)
        return 130
    except WriteError as error:
        print(f"The preview is incomplete: {error}", file=sys.stderr)
        return 1
    failures = [result for result in results if result.error]
    for failure in failures:
        print(f"\n{failure.error}", file=sys.stderr)
    if failures:
        print(
            f"Preview incomplete: {len(failures)} chapter{'s' if len(failures) > 1 else ''} failed "
            f"(their pages in {args.out_dir} show the error).",
            file=sys.stderr,
        )
        return 1
    print(f"Offline preview (not a Quarto render) written to {args.out_dir}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Callouts in the preview: fenced divs split into marked cells, then folded in the page as Quarto draws them."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import mistune
import nbformat

from pooling.render.markup import mathml

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
    rendered = mistune.html(mathml(text)).strip()
    return rendered.removeprefix("<p>").removesuffix("</p>")


def fold_callouts(body: str, notebook: nbformat.NotebookNode) -> str:
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

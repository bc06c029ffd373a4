"""Quarto's Markdown as the site shows it, for the preview: TeX math as MathML, links to pages, code in tables."""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert as tex_to_mathml


def page_links(markdown: str) -> str:
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


def mathml(markdown: str) -> str:
    """TeX math outside code as MathML, what Quarto's `html-math-method: mathml` writes: no script, no network."""

    def convert(match: re.Match) -> str:
        display = match.group("display") is not None
        tex = (match.group("display") if display else match.group("inline")).strip()
        return tex_to_mathml(tex, display="block" if display else "inline")

    pieces = CODE.split(markdown)  # odd pieces are code (Markdown or HTML), which keeps its dollars
    return "".join(piece if index % 2 else TEX_MATH.sub(convert, piece) for index, piece in enumerate(pieces))


def table_code_spans(markdown: str) -> str:
    """Code spans in pipe-table rows as HTML, so an escaped pipe `\\|` shows as `|` (Pandoc unescapes it; mistune
    keeps the backslash inside code)."""

    def row(match: re.Match) -> str:
        return re.sub(
            r"`([^`\n]+)`",
            lambda code: "<code>" + html.escape(code.group(1).replace("\\|", "|")).replace("|", "&#124;") + "</code>",
            match.group(0),
        )

    return re.sub(r"^\|.*\|\s*$", row, markdown, flags=re.MULTILINE)

"""The preview's theme: one stylesheet for all pages (nbconvert's, its fixes, the book's rules), and few tab stops."""

from __future__ import annotations

import re
from pathlib import Path

from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

from pooling.data import PROJECT_ROOT
from pooling.files import atomic_write_text

STYLESHEET = Path("assets") / "preview.css"  # in the preview folder, linked from every page
BOOK_RULES = "book.scss"  # the theme layer both paths share: Quarto compiles it, the preview serves its rules
RULES_SECTION = "/*-- scss:rules --*/"

# nbconvert's lab page with its stylesheet linked rather than written into every page (257 KB a page), and without
# the require.js and MathJax it would fetch from a CDN (the book has no widgets; its math is MathML).
TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block notebook_css -%}<link rel="stylesheet" href="{{ resources.stylesheet }}">{%- endblock notebook_css -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
# What the lab template's own <style> block holds that the pages need.
LAB_EXTRAS = """
a.anchor-link { display: none; }
.jp-InputArea { overflow: hidden; }
.jp-InputArea-editor { overflow: hidden; }
.jp-OutputArea-output pre { line-height: inherit; font-family: inherit; }
.jp-RenderedText pre { color: var(--jp-content-font-color1); font-size: var(--jp-code-font-size); }
.jp-Collapser { display: none; }
"""
# Fixes to nbconvert's lab look, found by axe-core: its faded cell prompts fall below the WCAG AA contrast ratio
# (and so do its comment, number and keyword colours in code); callouts drawn as Quarto draws them; long code lines
# scroll inside their block instead of being cut off at a phone's edge.
PREVIEW_FIXES = """
.jp-InputPrompt, .jp-OutputPrompt { color: #1f5f99 !important; opacity: 1 !important; }
.highlight .c, .highlight .c1, .highlight .cm { color: #2f5f5f !important; }
.highlight .mf, .highlight .mi { color: #005f00 !important; }
.highlight .ow, .highlight .nb, .highlight .kn, .highlight .k { color: #6a1b9a !important; }
.callout { border: 1px solid #c8d3de; border-left: 5px solid #1f5f99; border-radius: 4px; margin: 1em 0;
  padding: 0.2em 0.8em; }
.callout-tip { border-left-color: #1b6e3a; }
.jp-InputArea-editor .highlight pre, .jp-RenderedHTMLCommon pre { overflow-x: auto; }
.callout > summary, .callout > .callout-title { font-weight: bold; padding: 0.4em 0; cursor: pointer; }
.callout > .callout-title { cursor: auto; margin: 0; }
"""


def exporter() -> HTMLExporter:
    """nbconvert's lab exporter with the template above and the cells' `remove_input`/`remove_output` tags."""
    exporter = HTMLExporter(template_name="lab")
    exporter.raw_template = TEMPLATE
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_input_tags={"remove_input"}, remove_all_outputs_tags={"remove_output"}),
        enabled=True,
    )
    return exporter


def book_rules(root: Path = PROJECT_ROOT) -> str:
    """The CSS of the theme layer's rules section (plain CSS, no Sass: tests/test_site.py checks)."""
    text = (root / BOOK_RULES).read_text()
    return text.split(RULES_SECTION, 1)[1] if RULES_SECTION in text else ""


def write_stylesheet(out_dir: Path) -> Path:
    """The preview's one stylesheet: nbconvert's lab CSS and light theme, the preview's fixes, the book's rules."""
    environment = exporter().environment
    lab = [
        environment.loader.get_source(environment, name)[0] for name in ("static/index.css", "static/theme-light.css")
    ]
    target = out_dir / STYLESHEET
    target.parent.mkdir(parents=True, exist_ok=True)
    css = "\n".join([*lab, LAB_EXTRAS, PREVIEW_FIXES, book_rules()])
    if not target.exists() or target.read_text() != css:
        atomic_write_text(target, css)
    return target


# nbconvert makes every cell's input and every output a tab stop; most never scroll, so a reader pressed Tab 63 times
# to reach chapter 4's first solution. They lose it; the script below gives it back to what does scroll.
DEAD_TAB_STOP = re.compile(
    r'(<div class="[^"]*\b(?:jp-Cell-inputWrapper|jp-OutputArea-output)\b[^"]*"[^>]*?) tabindex="0"'
)


def without_dead_tab_stops(page: str) -> str:
    """The page without nbconvert's tab stops on cells and outputs."""
    return DEAD_TAB_STOP.sub(r"\1", page)


# A region that scrolls sideways (long code, a wide table, a display equation on a phone) is a tab stop while it
# scrolls, so a keyboard can scroll it, named for screen readers; as Quarto's scrollable-regions.js does.
PAGE_SCRIPT = """<script>
(function () {
  var CANDIDATES = "main pre, main .jp-OutputArea-output, main math[display=block], main table";
  function scrolls(element) {
    var style = getComputedStyle(element);
    var scroller = style.overflowX === "auto" || style.overflowX === "scroll";
    return scroller && element.scrollWidth - element.clientWidth > 1;
  }
  function sync() {
    document.querySelectorAll(CANDIDATES).forEach(function (element) {
      var marked = element.hasAttribute("data-scrollable");
      if (!marked && scrolls(element) && !element.querySelector("a[href], button, input, [tabindex]")) {
        element.setAttribute("tabindex", "0");
        if (!element.matches("math")) {  // an equation keeps its own role and is read as one
          element.setAttribute("role", "group");
          element.setAttribute("aria-label", "Scrolls sideways");
        }
        element.setAttribute("data-scrollable", "");
      } else if (marked && !scrolls(element) && element !== document.activeElement) {
        ["tabindex", "role", "aria-label", "data-scrollable"].forEach(function (name) {
          element.removeAttribute(name);
        });
      }
    });
  }
  var pending;
  window.addEventListener("resize", function () { clearTimeout(pending); pending = setTimeout(sync, 200); });
  window.addEventListener("load", sync);
})();
</script>"""

"""Chapter setup: what every chapter's first cell runs, and generated prose."""

from __future__ import annotations

import datetime
import itertools
import os
import warnings
from pathlib import Path

import numpy as np
import plotly.io as pio
from IPython.display import HTML, Markdown, display
from plotly.io._base_renderers import MimetypeRenderer

from pooling import plots
from pooling.data import PROJECT_ROOT
from pooling.fitting import central_quantiles, forget_chapter, library_versions
from pooling.plotlyjs import PLOTLY_ASSET

# Figure ids numbered in order of display: unique on the page and identical on every re-render.
# (plotly copies a renderer before each use, so the count cannot live on the renderer.)
FIGURE_NUMBERS = itertools.count(1)


class BookRenderer(MimetypeRenderer):
    """Plotly figures as the page's HTML (`plots.figure_html`): the page's first one loads plotly.js."""

    def to_mimebundle(self, fig_dict):
        return {"text/html": plots.figure_html(fig_dict, div_id=f"plotly-figure-{next(FIGURE_NUMBERS)}")}


def _book_template() -> dict:
    """plotly_white, sized for a phone as well as a laptop, without the defaults of traces the site cannot draw."""
    template = pio.templates["plotly_white"].to_plotly_json()
    template["data"] = {kind: template["data"][kind] for kind in ("scatter", "bar")}
    for unused in ("geo", "mapbox", "polar", "scene", "ternary", "coloraxis", "annotationdefaults"):
        template["layout"].pop(unused, None)
    template["layout"].update(
        font={"size": 13},
        title={"x": 0.0, "xanchor": "left", "xref": "container", "pad": {"l": 8}, "font": {"size": 16}},
        # Legends go under the plot, at the figure's foot: on a phone a side legend squeezes the plot and a top one
        # hits the title. The figure's margin grows to make room for it.
        legend={
            "orientation": "h",
            "xref": "container",
            "x": 0,
            "yref": "container",
            "y": 0,
            "yanchor": "bottom",
            "font": {"size": 12},
        },
        margin={"l": 55, "r": 20, "t": 60, "b": 40, "pad": 0},
        modebar={"orientation": "v"},
        hoverlabel={"namelength": -1},
        autosize=True,
    )
    return template


VERSION_LINE_CLASS = "build-versions"


APPENDIX = PROJECT_ROOT / "chapters" / "90-reproducibility.qmd"


def version_line(day: datetime.date | None = None, appendix: str | None = None) -> str:
    """The line under each chapter's title: build date and the versions of the three libraries the book teaches,
    linking to the reproducibility `appendix` (a relative address) when given.

    The versions come from `fitting.library_versions`, as in the appendix.
    """
    versions = library_versions()
    day = day or datetime.date.today()
    link = f' (<a href="{appendix}">every version</a>)' if appendix else ""
    return (
        f'<p class="{VERSION_LINE_CLASS}"><small>Built on {day.isoformat()} with Bambi {versions["bambi"]}, '
        f"PyMC {versions['pymc']}, ArviZ {versions['arviz']}{link}.</small></p>"
    )


def setup_chapter(name: str) -> None:
    """Seed, plotly template and renderer (the page's first figure loads plotly.js), and the page's version line."""
    os.environ["POOLING_CHAPTER"] = name
    forget_chapter(name)
    # pip's PyTensor has no BLAS to link; it only slows the small graphs compiled for predictions here.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS installation")
    np.random.seed(20200624)  # only a fallback: every random step in the book passes its own seed
    pio.templates["book"] = _book_template()
    pio.templates.default = "book"
    pio.renderers["book"] = BookRenderer()
    pio.renderers.default = "book"
    plots.start_page(os.path.relpath(PROJECT_ROOT / PLOTLY_ASSET, Path.cwd()))
    appendix = os.path.relpath(APPENDIX.with_suffix(".html"), Path.cwd()) if name != APPENDIX.stem else None
    display(HTML(version_line(appendix=appendix)))


def prose(text: str) -> None:
    """Show Markdown whose numbers the chapter computed (works under Quarto and the offline executor)."""
    display(Markdown(text))


def number(value: float, digits: int = 2) -> str:
    """A number formatted for prose, with a true minus sign (and none on a value that rounds to zero)."""
    text = f"{value:.{digits}f}"
    if text.startswith("-") and not text.strip("-0."):
        text = text[1:]
    return text.replace("-", "−")


SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def scientific(value: float, digits: int = 1) -> str:
    """A number too large (or small) for `number`, as prose writes it: 2.9 × 10¹⁵."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{number(float(mantissa), digits)} × 10{str(int(exponent)).translate(SUPERSCRIPTS)}"


def number_table(frame, digits: int | dict = 2):
    """A table as the prose quotes it: every number formatted by `number`, with `digits` for all columns or per
    column ({column: digits}; columns not named keep their values), so a table and its text round alike."""
    import pandas as pd

    frame = pd.DataFrame(frame)
    places = digits if isinstance(digits, dict) else dict.fromkeys(frame.columns, digits)

    def formatted(value, places):
        is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        return number(float(value), places) if is_number and np.isfinite(value) else value

    return frame.apply(
        lambda column: (
            column.map(lambda value: formatted(value, places[column.name])) if column.name in places else column
        )
    )


def mean_and_interval(draws, digits: int = 2) -> str:
    """Posterior mean and 94% central interval of draws, as one table cell: "1.23 (0.98 to 1.50)"."""
    values = np.asarray(draws).ravel()
    low, high = np.quantile(values, central_quantiles())
    return f"{number(values.mean(), digits)} ({number(low, digits)} to {number(high, digits)})"

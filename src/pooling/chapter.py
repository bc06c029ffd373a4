"""Chapter setup: what every chapter's first cell runs, and generated prose."""

from __future__ import annotations

import datetime
import itertools
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import plotly.io as pio
from IPython.display import HTML, Markdown, display
from plotly.io._base_renderers import MimetypeRenderer

from pooling.data import PROJECT_ROOT
from pooling.fitting import central_quantiles, forget_chapter, library_versions

PLOTLY_ASSET = Path("assets") / "plotly.min.js"


def ensure_plotly_asset(root: Path = PROJECT_ROOT) -> Path:
    """Copy the plotly.js that the plotly package ships into the site, so figures need no CDN."""
    source = Path(pio.__file__).parents[1] / "package_data" / "plotly.min.js"
    target = root / PLOTLY_ASSET
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return target


# Figure ids numbered in order of display: unique on the page and identical on every re-render.
# (plotly copies a renderer before each use, so the count cannot live on the renderer.)
FIGURE_NUMBERS = itertools.count(1)


class BookRenderer(MimetypeRenderer):
    """Plotly figures as plain HTML that expects plotly.js already loaded once by the page."""

    def to_mimebundle(self, fig_dict):
        html = pio.to_html(
            fig_dict,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"plotly-figure-{next(FIGURE_NUMBERS)}",
            config={"responsive": True, "displaylogo": False},
            validate=False,
        )
        return {"text/html": html}


def _book_template() -> dict:
    template = pio.templates["plotly_white"].to_plotly_json()
    template["layout"].update(
        font={"size": 14},
        title={"x": 0.0, "xanchor": "left", "font": {"size": 17}},
        # Legends go under the plot: on a phone a side legend squeezes the plot and a top one hits the title.
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0, "xanchor": "left"},
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
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
    """Seed, plotly template and renderer, plotly.js loaded once for the page, and the page's version line."""
    os.environ["POOLING_CHAPTER"] = name
    forget_chapter(name)
    # pip's PyTensor has no BLAS to link; it only slows the small graphs compiled for predictions here.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS installation")
    np.random.seed(20200624)  # only a fallback: every random step in the book passes its own seed
    pio.templates["book"] = _book_template()
    pio.templates.default = "book"
    pio.renderers["book"] = BookRenderer()
    pio.renderers.default = "book"
    asset = ensure_plotly_asset()
    relative = os.path.relpath(asset, Path.cwd())
    display(HTML(f'<script src="{relative}"></script>'))
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

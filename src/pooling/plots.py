"""Plots: every interactive plotly figure in the book, each with a title, axis labels and hover text."""

from __future__ import annotations

import html
import json
import re
import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative

from pooling.fitting import central_quantiles
from pooling.plotlyjs import check_traces, loader_tag

PALETTE = qualitative.Safe
MARKER_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "cross", "triangle-down", "star", "hexagon")
# Zoom, pan, reset and download: the toolbar stands upright at the figure's right edge, clear of the title. Not
# plotly.js 4's "Share chart", which uploads the figure to Plotly's cloud.
FIGURE_CONFIG = {
    "responsive": True,
    "displaylogo": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "zoomIn2d", "zoomOut2d", "sendChartToCloud"],
}
# The page being written: its first figure loads plotly.js (`start_page`, called by `chapter.setup_chapter`).
_PAGE = {"plotly": None, "loaded": False}


def start_page(plotly_source: str | None) -> None:
    """A new page begins: its first figure will load plotly.js from `plotly_source` (an address relative to it)."""
    _PAGE.update(plotly=plotly_source, loaded=False)


# Runs after a figure is drawn, and again when the window changes size: the title, the axis titles, the legend's
# entries and the notes (such as subplot titles) wrap to the space they have (plotly never wraps text, it cuts it
# off), and where the title, legend, menus and axis labels leave the plot less than 40% of the figure (on a phone),
# the figure grows taller, at most to 2.5 times its height, rather than squeezing the plot.
FIT_SCRIPT = """
(function (gd) {
  var TARGET = 0.4, height = gd._fullLayout.height, full = gd._fullLayout, top = full.margin.t;
  function titleOf(key) { return ((gd.layout[key] || {}).title || {}).text || ""; }  // never plotly's placeholder
  var axes = Object.keys(full).filter(function (key) { return /^[xy]axis\\d*$/.test(key) && titleOf(key); });
  var original = {
    title: (gd.layout.title || {}).text || "",
    axes: axes.map(titleOf),
    names: gd.data.map(function (trace) { return trace.name || ""; }),
    notes: (gd.layout.annotations || []).map(function (note) { return note.text || ""; })
  };
  var measure = document.createElement("canvas").getContext("2d");
  function share() {
    var area = 0, now = gd._fullLayout;
    Object.keys(now._plots).forEach(function (id) {
      area += now._plots[id].xaxis._length * now._plots[id].yaxis._length;
    });
    return area / (now.width * now.height);
  }
  function wrapped(text, font, width) {
    measure.font = font.size + "px " + font.family;
    var lines = [], line = "";
    text.replace(/<br>/g, " ").split(" ").forEach(function (word) {
      var longer = line ? line + " " + word : word;
      if (line && measure.measureText(longer.replace(/<[^>]*>/g, "")).width > width) {
        lines.push(line);
        line = word;
      } else {
        line = longer;
      }
    });
    return lines.concat([line]).join("<br>");
  }
  function grow(round) {
    var now = share(), current = gd._fullLayout.height;
    if (now >= TARGET || round > 4 || current >= 2.5 * height) { return; }
    var taller = Math.min(Math.ceil(current * Math.min(TARGET / now, 1.5)), Math.round(2.5 * height));
    Plotly.relayout(gd, {height: taller}).then(function () { grow(round + 1); });
  }
  function fit() {
    var now = gd._fullLayout, layout = {height: height}, named = [], names = [];
    if (original.title) {  // each line the title gains pushes the plot down rather than onto what is below it
      layout["title.text"] = wrapped(original.title, now.title.font, now.width - 60);
      layout["margin.t"] = top + (layout["title.text"].split("<br>").length - 1) * 1.3 * now.title.font.size;
    }
    axes.forEach(function (key, index) {
      var axis = now[key], room = key[0] === "x" ? axis._length + 40 : axis._length;
      if (original.axes[index]) { layout[key + ".title.text"] = wrapped(original.axes[index], axis.title.font, room); }
    });
    original.notes.forEach(function (text, index) {
      var note = now.annotations[index] || {font: now.font, xref: ""};  // a subplot title is centred on its x
      var centre = note.xref === "paper" ? now._size.l + note.x * now._size.w : now.width / 2;
      var room = 2 * Math.min(centre, now.width - centre) - 20;
      if (text) { layout["annotations[" + index + "].text"] = wrapped(text, note.font, room); }
    });
    original.names.forEach(function (name, index) {
      if (name && now.showlegend) { named.push(index); names.push(wrapped(name, now.legend.font, now.width - 60)); }
    });
    Plotly.update(gd, named.length ? {name: names} : {}, layout, named).then(function () { grow(0); });
  }
  var pending;
  window.addEventListener("resize", function () { clearTimeout(pending); pending = setTimeout(fit, 200); });
  fit();
})(document.getElementById("{plot_id}"));
"""


def _when_plotly_is_ready(markup: str) -> str:
    """The figure's script, run once plotly.js is there: at once when it is (a page already loaded), else when the
    page has been parsed, after the page's deferred plotly.js has run."""
    return re.sub(
        r"<script>(.*?)</script>",
        lambda script: (
            "<script>(function () { function draw() {"
            + script.group(1)
            + "} if (window.Plotly) { draw(); } else { document.addEventListener('DOMContentLoaded', draw); } })();"
            "</script>"
        ),
        markup,
        count=1,
        flags=re.DOTALL,
    )


def figure_html(figure: go.Figure | dict, div_id: str, post_script: str = "") -> str:
    """A figure as the page's HTML: plotly.js loaded, deferred, with the page's first figure (none is loaded on a
    page without figures), the drawing run once it has loaded, then fitted to the screen (`FIT_SCRIPT`).

    Stops on a trace type the site's plotly.js cannot draw (`plotlyjs.check_traces`).
    """
    figure = figure if isinstance(figure, dict) else figure.to_plotly_json()
    check_traces(figure)
    legend = figure.get("layout", {}).get("legend", {})
    if ("y" in legend and "yref" not in legend) or ("x" in legend and "xref" not in legend):
        # A builder that places its legend itself means plotly's usual plot-relative place, not the template's
        # figure-relative one (chapter._book_template), which would put a negative y off the figure.
        figure["layout"]["legend"] = {"xref": "paper", "yref": "paper", **legend}
    markup = pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        post_script=[FIT_SCRIPT, post_script] if post_script else FIT_SCRIPT,
        config=FIGURE_CONFIG,
        validate=False,
    )
    markup = _when_plotly_is_ready(markup)
    if _PAGE["plotly"] and not _PAGE["loaded"]:
        _PAGE["loaded"] = True
        markup = loader_tag(_PAGE["plotly"]) + markup
    return markup


def color_of(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def sites_scatter(data: pd.DataFrame, fitted_lines: dict[str, dict[str, float]] | None = None) -> go.Figure:
    """Points of each site with its true line, plus optional fitted lines ({label: {site: slope}})."""
    figure = go.Figure()
    x_grid = np.linspace(data["x"].min(), data["x"].max(), 2)
    for index, (site, group) in enumerate(data.groupby("site", observed=True)):
        color = color_of(index)
        figure.add_scatter(
            x=group["x"],
            y=group["y"],
            mode="markers",
            name=str(site),
            legendgroup=str(site),
            marker={"color": color, "size": 8, "opacity": 0.8},
            hovertemplate=f"{site}<br>x = %{{x:.2f}}<br>y = %{{y:.2f}}<extra></extra>",
        )
        true_slope = group["true_slope"].iloc[0]
        figure.add_scatter(
            x=x_grid,
            y=true_slope * x_grid,
            mode="lines",
            name=f"{site}: true slope {true_slope:g}",
            legendgroup=str(site),
            line={"color": color, "width": 2},
            hovertemplate=f"{site}: true line, slope {true_slope:g}<extra></extra>",
        )
        for dash, (label, slopes) in zip(["dash", "dot", "dashdot"], (fitted_lines or {}).items(), strict=False):
            slope = slopes.get(str(site), slopes.get("all"))
            figure.add_scatter(
                x=x_grid,
                y=slope * x_grid,
                mode="lines",
                name=f"{site}: {label}",
                legendgroup=str(site),
                line={"color": color, "dash": dash, "width": 2},
                hovertemplate=f"{site}: {label}, slope {slope:.2f}<extra></extra>",
            )
    figure.update_layout(
        title="Two simulated sites with opposite slopes",
        xaxis_title="x (predictor)",
        yaxis_title="y (response)",
    )
    return figure


def predictive_bands(data: pd.DataFrame, predictive: np.ndarray, title: str, group: str = "site") -> go.Figure:
    """Observed points over the 94% central posterior predictive interval of each group (`predictive`: draws x rows)."""
    figure = go.Figure()
    low, high = np.quantile(predictive, central_quantiles(), axis=0)
    middle = predictive.mean(axis=0)
    for index, (site, rows) in enumerate(data.reset_index(drop=True).groupby(group, observed=True)):
        color = color_of(index)
        order = rows.sort_values("x").index.to_numpy()
        x = data["x"].to_numpy()[order]
        figure.add_scatter(
            x=np.concatenate([x, x[::-1]]),
            y=np.concatenate([high[order], low[order][::-1]]),
            fill="toself",
            fillcolor=color,
            opacity=0.25,
            line={"width": 0},
            name=f"{site}: 94% central predictive interval",
            legendgroup=str(site),
            hoverinfo="skip",
        )
        figure.add_scatter(
            x=x,
            y=middle[order],
            mode="lines",
            line={"color": color},
            name=f"{site}: predictive mean",
            legendgroup=str(site),
            hovertemplate=f"{site}<br>x = %{{x:.2f}}<br>predicted mean %{{y:.2f}}<extra></extra>",
        )
        outside = (data["y"].to_numpy()[order] < low[order]) | (data["y"].to_numpy()[order] > high[order])
        figure.add_scatter(
            x=x,
            y=data["y"].to_numpy()[order],
            mode="markers",
            name=f"{site}: observed",
            legendgroup=str(site),
            marker={"color": color, "size": 8, "line": {"width": np.where(outside, 2, 0), "color": "black"}},
            customdata=np.where(outside, "outside the band", "inside the band"),
            hovertemplate=f"{site}<br>x = %{{x:.2f}}<br>y = %{{y:.2f}}<br>%{{customdata}}<extra></extra>",
        )
    figure.update_layout(title=title, xaxis_title="x (predictor)", yaxis_title="y (response)")
    return figure


KDE_VALUES = 20_000  # enough for a smooth curve; the estimate's error is far below the line width


def posterior_densities(
    draws: dict[str, np.ndarray],
    title: str,
    x_title: str,
    curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    y_title: str = "posterior density",
    marks: dict[str, float] | None = None,
) -> go.Figure:
    """Overlaid kernel density estimates of draws, one curve per label, each in its own colour and dash;
    `curves` adds exact densities ({label: (grid, density)}, such as a prior), drawn as thin dashed lines, and
    `marks` labelled vertical lines ({label: value}, such as an observed statistic). A curve is estimated from at
    most KDE_VALUES of its draws, thinned evenly (a predictive distribution can have millions)."""
    from scipy.stats import gaussian_kde

    figure = go.Figure()
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    for index, (label, values) in enumerate(draws.items()):
        values = np.asarray(values).ravel()
        values = values[:: -(-len(values) // KDE_VALUES)]
        grid = np.linspace(*np.quantile(values, [0.001, 0.999]), 300)
        figure.add_scatter(
            x=grid,
            y=gaussian_kde(values)(grid),
            mode="lines",
            name=label,
            line={"color": color_of(index), "width": 2, "dash": dashes[index % len(dashes)]},
            hovertemplate=f"{label}<br>value %{{x:.2f}}<br>density %{{y:.3f}}<extra></extra>",
        )
    for index, (label, (grid, density)) in enumerate((curves or {}).items(), start=len(draws)):
        figure.add_scatter(
            x=grid,
            y=density,
            mode="lines",
            name=label,
            line={"color": color_of(index), "width": 1.5, "dash": "dash"},
            hovertemplate=f"{label}<br>value %{{x:.2f}}<br>density %{{y:.3f}}<extra></extra>",
        )
    top = max((max(trace.y) for trace in figure.data), default=1.0)
    for label, value in (marks or {}).items():
        reference_line(figure, [value, value], [0, top], f"{label}: {value:.2f}", "dot")
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    return figure


def interval_plot(
    rows: pd.DataFrame, title: str, x_title: str, truth: dict[str, float] | None = None, truth_label: str = "true value"
) -> go.Figure:
    """Posterior means with 94% central intervals, one row per (estimate, group): columns `estimate`, `group`,
    `mean`, `low`, `high`. Each group has a band on the y axis, labelled by the group alone (short labels leave the
    plot its width on a phone), with each estimate at its own place in the band, named by colour and legend;
    optional true values per group as dotted marks across their band, named `truth_label` (say, "observed" for a
    predictive check)."""
    figure = go.Figure()
    groups = list(dict.fromkeys(rows["group"]))
    estimates = list(dict.fromkeys(rows["estimate"]))
    offsets = np.linspace(-0.35, 0.35, len(estimates)) if len(estimates) > 1 else np.zeros(1)
    for index, estimate in enumerate(estimates):
        part = rows[rows["estimate"] == estimate]
        figure.add_scatter(
            x=part["mean"],
            y=part["group"].map(groups.index) + offsets[index],
            mode="markers",
            name=estimate,
            marker={"color": color_of(index), "size": 9, "symbol": MARKER_SYMBOLS[index % len(MARKER_SYMBOLS)]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": part["high"] - part["mean"],
                "arrayminus": part["mean"] - part["low"],
            },
            customdata=np.column_stack([part["low"], part["high"], part["group"]]),
            hovertemplate=f"{estimate}<br>%{{customdata[2]}}<br>mean %{{x:.2f}}<br>94% central interval: "
            "%{customdata[0]:.2f} to %{customdata[1]:.2f}<extra></extra>",
        )
    if truth:
        positions = [groups.index(group) for group in truth]
        figure.add_scatter(
            x=[value for value in truth.values() for _ in range(3)],
            y=[y for position in positions for y in (position - 0.45, position + 0.45, None)],
            mode="lines",
            name=truth_label,
            line={"dash": "dot", "color": "grey", "width": 2},
            customdata=[group for group in truth for _ in range(3)],
            hovertemplate=f"{truth_label} for %{{customdata}}: %{{x:g}}<extra></extra>",
        )
    figure.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis={
            "title": None,
            "tickvals": list(range(len(groups))),
            "ticktext": groups,
            "range": [len(groups) - 0.5, -0.5],
            "showgrid": False,
        },
        height=max(380, 24 * len(rows) + 200),
    )
    return figure


FUNNEL_POINTS = 2000  # draws drawn without divergence, thinned evenly: enough to see the shape, light on a phone


def funnel(result, scale: str, effect: str, group: str, symbols: tuple[str, str], title: str) -> go.Figure:
    """A hierarchical posterior's funnel: the log of a group-level sd (`scale`) against one group's effect (`effect`
    at `group`), each divergent transition marked. `symbols` name the two axes as the text does, e.g. ("τ", "u_1").
    """
    posterior = result.idata.posterior
    values = posterior[effect]
    (dim,) = [name for name in values.dims if name not in ("chain", "draw")]
    effect_draws = values.sel({dim: group}).to_numpy().ravel()
    log_scale = np.log(posterior[scale].to_numpy().ravel())
    diverging = result.idata.sample_stats["diverging"].to_numpy().ravel().astype(bool)
    kept = np.flatnonzero(~diverging)
    kept = kept[np.linspace(0, len(kept) - 1, min(FUNNEL_POINTS, len(kept))).astype(int)] if len(kept) else kept
    figure = go.Figure()
    scale_symbol, effect_symbol = symbols
    for label, rows, marker in [
        (
            f"draws ({len(kept)} of {int((~diverging).sum())} shown)",
            kept,
            {"color": color_of(0), "size": 4, "opacity": 0.4},
        ),
        (
            f"divergent transitions ({int(diverging.sum())})",
            np.flatnonzero(diverging),
            {"color": color_of(1), "size": 7, "symbol": "x"},
        ),
    ]:
        figure.add_scatter(
            x=effect_draws[rows],
            y=log_scale[rows],
            mode="markers",
            name=label,
            marker=marker,
            hovertemplate=f"{label}<br>{effect_symbol} = %{{x:.2f}}<br>log {scale_symbol} = %{{y:.2f}}<extra></extra>",
        )
    figure.update_layout(title=title, xaxis_title=f"{effect_symbol} ({group})", yaxis_title=f"log {scale_symbol}")
    return figure


EXPLORER_SERIES = [  # (label, symbol, hover) in drawing order; each is a trace of the explorer
    ("true slope", "x", "true slope %{x:.2f}"),
    ("no pooling (least squares)", "circle", "weight on own data 1 (by definition)"),
    ("complete pooling (least squares)", "square", "weight on own data 0 (by definition)"),
    (
        "partial pooling toward the common slope: y ~ 0 + x + (0 + x | site)",
        "diamond",
        "weight on own data %{customdata:.2f}",
    ),
    ("partial pooling toward zero: y ~ 0 + (0 + x | site)", "triangle-up", "weight on own data %{customdata:.2f}"),
]
EXPLORER_COLUMNS = ["true slope", "no pooling", "complete pooling", "partial, common slope", "partial, zero"]
EXPLORER_RMSE = ("no pooling", "complete pooling", "toward common slope", "toward zero")
EXPLORER_OFFSETS = np.linspace(-0.3, 0.3, len(EXPLORER_SERIES))  # each series' place within its site's row


def _explorer_frame(setting: dict) -> dict:
    """One setting's numbers as the page needs them: site names, each series' means and interval half-widths
    (`minus`, `plus`, the true slope's 0), the partially pooled estimates' weights on each site's own data, their
    mean, and each estimate's RMSE against the true slopes. Rounded to keep the page light: the bars to 3 digits,
    the numbers shown as text to 4, so that they round to 2 as the unrounded numbers do."""
    count = len(setting["sites"])
    unpooled_mean, unpooled_half = setting["unpooled"]
    pooled_mean, pooled_half = setting["pooled"]
    common, zero = setting["toward common slope"], setting["toward zero"]
    means = [setting["true"], unpooled_mean, np.full(count, pooled_mean), common.mean, zero.mean]
    symmetric = [np.zeros(count), unpooled_half, np.full(count, pooled_half)]  # the truth, least squares
    plus = symmetric + [posterior.high - posterior.mean for posterior in (common, zero)]
    minus = symmetric + [posterior.mean - posterior.low for posterior in (common, zero)]

    def rounded(arrays, digits: int = 4) -> list:
        return [np.round(np.asarray(values, dtype=float), digits).tolist() for values in arrays]

    rmse = setting["rmse"]
    return {
        "sites": list(setting["sites"]),
        "mean": rounded(means),
        "plus": rounded(plus, 3),
        "minus": rounded(minus, 3),
        "weight": rounded([common.weight, zero.weight]),
        "mean_weight": rounded([[common.weight.mean(), zero.weight.mean()]])[0],
        "rmse": rounded([[rmse[name] for name in EXPLORER_RMSE]])[0],
    }


def explorer_status(frame: dict) -> str:
    """The explorer's headline numbers for one setting, as a sentence (EXPLORER_SCRIPT writes the same)."""
    weights, rmse = frame["mean_weight"], frame["rmse"]
    return (
        f"Mean weight on each site's own data: {weights[0]:.2f} toward the common slope, {weights[1]:.2f} toward "
        f"zero. Error against the true slopes (RMSE): no pooling {rmse[0]:.2f}, complete pooling {rmse[1]:.2f}, "
        f"partial toward the common slope {rmse[2]:.2f}, toward zero {rmse[3]:.2f}."
    )


def explorer_rows(frame: dict) -> str:
    """The table rows of one setting: each site with its true slope and the four estimates (as EXPLORER_SCRIPT)."""
    return "".join(
        f'<tr><th scope="row">{html.escape(site)}</th>'
        + "".join(f"<td>{series[index]:.2f}</td>".replace("-", "\u2212") for series in frame["mean"])
        + "</tr>"
        for index, site in enumerate(frame["sites"])
    )


# Every setting was computed when the page was built; moving a slider (pointer, or arrow keys once it has focus)
# shows that setting's numbers in the figure, the sentence above it (read out by screen readers) and the table.
EXPLORER_SCRIPT = """
var gd = document.getElementById("{plot_id}"), box = gd.closest(".pooling-explorer");
var book = JSON.parse(box.querySelector("script.explorer-frames").textContent);
var dials = Array.prototype.slice.call(box.querySelectorAll("input[type=range]"));
function fixed(value) { return value.toFixed(2).replace("-", "\u2212"); }
function show() {
  var frame = book.frames[dials.map(function (dial) { return dial.value; }).join("-")];
  dials.forEach(function (dial, index) {
    var label = book.dials[index][dial.value];
    dial.setAttribute("aria-valuetext", label);
    box.querySelector("output[for='" + dial.id + "']").textContent = label;
  });
  var count = frame.sites.length;
  var update = {x: [], y: [], "error_x.array": [], "error_x.arrayminus": [], customdata: []};
  frame.mean.forEach(function (means, series) {
    update.x.push(means);
    update.y.push(means.map(function (_, site) { return site + book.offsets[series]; }));
    update["error_x.array"].push(frame.plus[series]);
    update["error_x.arrayminus"].push(frame.minus[series]);
    update.customdata.push(series > 2 ? frame.weight[series - 3] : []);
  });
  Plotly.update(gd, update, {"yaxis.tickvals": frame.sites.map(function (_, site) { return site; }),
    "yaxis.ticktext": frame.sites, "yaxis.range": [count - 0.5, -0.5]});
  var w = frame.mean_weight, r = frame.rmse;
  box.querySelector(".explorer-status").textContent = "Mean weight on each site's own data: " + w[0].toFixed(2) +
    " toward the common slope, " + w[1].toFixed(2) + " toward zero. Error against the true slopes (RMSE): " +
    "no pooling " + r[0].toFixed(2) + ", complete pooling " + r[1].toFixed(2) + ", partial toward the common " +
    "slope " + r[2].toFixed(2) + ", toward zero " + r[3].toFixed(2) + ".";
  var rows = box.querySelector(".explorer-table tbody");
  rows.textContent = "";
  frame.sites.forEach(function (site, index) {
    var row = rows.insertRow(), name = document.createElement("th");
    name.scope = "row";
    name.textContent = site;
    row.appendChild(name);
    frame.mean.forEach(function (means) { row.insertCell().textContent = fixed(means[index]); });
  });
}
dials.forEach(function (dial) { dial.addEventListener("input", show); });
"""


def _explorer_dials(dials: dict, start: tuple) -> str:
    """One native range input per dial, with its name and current value: keyboard, pointer and screen readers."""
    rows = []
    for number, (dial, values) in enumerate(dials.items()):
        identifier = f"pooling-explorer-dial-{number}"
        current = html.escape(str(values[start[number]]))
        rows.append(
            f'<div class="explorer-dial"><label for="{identifier}">{html.escape(dial)}: '
            f'<output for="{identifier}">{current}</output></label>'
            f'<input type="range" id="{identifier}" min="0" max="{len(values) - 1}" step="1" '
            f'value="{start[number]}" aria-valuetext="{current}"></div>'
        )
    return '<fieldset class="explorer-dials"><legend>Settings</legend>' + "".join(rows) + "</fieldset>"


def pooling_explorer(grid: dict[tuple, dict], dials: dict) -> str:
    """The interactive explorer as HTML: a range input per dial above the figure, every setting precomputed (no
    kernel needed), its headline numbers as a sentence and its estimates as a table."""
    frames = {"-".join(map(str, index)): _explorer_frame(setting) for index, setting in grid.items()}
    start = tuple(len(values) // 2 for values in dials.values())
    first = frames["-".join(map(str, start))]
    count = len(first["sites"])
    figure = go.Figure()
    for index, (label, symbol, hover) in enumerate(EXPLORER_SERIES):
        figure.add_scatter(
            x=first["mean"][index],
            y=(np.arange(count) + EXPLORER_OFFSETS[index]).tolist(),
            mode="markers",
            name=label,
            marker={"symbol": symbol, "size": 9, "color": color_of(index)},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": first["plus"][index],
                "arrayminus": first["minus"][index],
                "thickness": 1.5,
            },
            customdata=first["weight"][index - 3] if index > 2 else None,
            hovertemplate=f"{label}<br>slope %{{x:.2f}} (bar: 94% central interval)<br>{hover}<extra></extra>",
        )
    figure.update_layout(
        height=460,
        title="Each site's true slope and its four estimates",
        xaxis_title="slope of y on x (mean and 94% central interval)",
        yaxis={
            "tickvals": list(range(count)),
            "ticktext": first["sites"],
            "range": [count - 0.5, -0.5],
            "title": None,
        },
    )
    dial_labels = [[str(value) for value in values] for values in dials.values()]
    book = {"frames": frames, "dials": dial_labels, "offsets": EXPLORER_OFFSETS.round(3).tolist()}
    data = json.dumps(book, separators=(",", ":")).replace("</", "<\\/")
    header = "".join(f'<th scope="col">{html.escape(column)}</th>' for column in ["site", *EXPLORER_COLUMNS])
    return (
        '<div class="pooling-explorer">'
        + f'<script type="application/json" class="explorer-frames">{data}</script>'
        + _explorer_dials(dials, start)
        + f'<p class="explorer-status" aria-live="polite">{html.escape(explorer_status(first))}</p>'
        + figure_html(figure, div_id="pooling-explorer", post_script=EXPLORER_SCRIPT)
        + '<details class="explorer-estimates"><summary>The estimates as a table</summary>'
        + '<table class="explorer-table"><caption>Each site\'s true slope and the means of its four estimates at '
        + f"this setting</caption><thead><tr>{header}</tr></thead><tbody>{explorer_rows(first)}</tbody></table>"
        + "</details></div>"
    )


def tau_ledger(
    tau: np.ndarray,
    log_likelihood: np.ndarray,
    priors: dict[str, tuple[np.ndarray, bool]],
    title: str,
    floor: float = -40.0,
) -> go.Figure:
    """The likelihood of tau against its priors, on one log scale: log p(y | tau) (thick), and for each prior
    ({label: (log density on `tau`, shown at first)}) its log density (dashed) and the log posterior it makes
    (solid, their sum), one legend entry for both. Each curve is drawn relative to its own maximum and cut at
    `floor`, so a reader adds the two drops at any tau; priors not shown at first are a click on the legend away."""
    figure = go.Figure()

    def relative(values):
        values = np.asarray(values, float) - np.max(values)
        return np.where(values < floor, np.nan, values)

    figure.add_scatter(
        x=tau,
        y=relative(log_likelihood),
        mode="lines",
        name="likelihood of tau (sigma and mu integrated out)",
        line={"color": "black", "width": 3},
        hovertemplate="likelihood<br>tau %{x:.3g}<br>log, relative to its maximum %{y:.1f}<extra></extra>",
    )
    for index, (label, (log_prior, shown)) in enumerate(priors.items()):
        for name, values, dash in (("prior", log_prior, "dash"), ("posterior", log_prior + log_likelihood, "solid")):
            # One legend entry per prior (a phone has room for few): it shows and hides both of its curves.
            figure.add_scatter(
                x=tau,
                y=relative(values),
                mode="lines",
                name=f"{label}: prior (dashed), posterior (solid)",
                legendgroup=label,
                showlegend=name == "prior",
                visible=True if shown else "legendonly",
                line={"color": color_of(index), "width": 2, "dash": dash},
                hovertemplate=f"{name}, {label}<br>tau %{{x:.3g}}<br>log density, relative to its maximum "
                "%{y:.1f}<extra></extra>",
            )
    figure.update_layout(
        title=title,
        xaxis={"title": "tau, the sd of the site slopes (log scale)", "type": "log"},
        yaxis={"title": "log density, relative to its maximum", "range": [floor, 3]},
    )
    return figure


def shrinkage_table(groups, sizes, unpooled: pd.DataFrame, partial: pd.DataFrame) -> pd.DataFrame:
    """The input of `shrinkage_by_size` from posterior draws (one column per group): each group's mean and
    94% central interval, unpooled and partially pooled."""
    groups = [str(group) for group in groups]
    table = pd.DataFrame({"group": groups, "size": np.asarray(sizes)})
    for column, draws in (("unpooled", unpooled), ("partial", partial)):
        table[column] = draws[groups].mean().to_numpy()
        table[f"{column}_low"], table[f"{column}_high"] = draws[groups].quantile(list(central_quantiles())).to_numpy()
    return table


def _arrow(figure: go.Figure, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A thin grey arrow from an unpooled estimate to its partially pooled one (in axis units; a log axis's
    positions are log10 of the values)."""
    figure.add_annotation(
        x=end[0],
        y=end[1],
        ax=start[0],
        ay=start[1],
        xref="x",
        yref="y",
        axref="x",
        ayref="y",
        showarrow=True,
        arrowhead=2,
        arrowsize=1,
        arrowwidth=1,
        arrowcolor="rgba(120,120,120,0.6)",
        text="",
    )


def shrinkage_by_size(
    table: pd.DataFrame, references: float | dict[str, float], title: str, y_title: str, size_title: str
) -> go.Figure:
    """Each group's unpooled estimate and its partially pooled estimate against the group's sample size,
    joined by an arrow. `table` has columns group, size, unpooled, partial and, optionally, the bounds of each
    estimate's 94% central interval (unpooled_low, unpooled_high, partial_low, partial_high), drawn as bars.
    `references` are horizontal lines, {label: value}, each labelled for what it is (a number alone is "pooled")."""
    figure = go.Figure()
    jitter = table["size"] * np.exp(np.random.default_rng(0).uniform(-0.06, 0.06, len(table)))  # separate ties
    # With interval bars the two estimates of a group sit side by side, so that their bars do not overlap.
    with_intervals = {"unpooled_low", "partial_low"} <= set(table.columns)
    shift = {"unpooled": 0.97, "partial": 1.03} if with_intervals else {"unpooled": 1.0, "partial": 1.0}
    for row, x in zip(table.itertuples(), jitter, strict=False):
        _arrow(figure, (np.log10(x * shift["unpooled"]), row.unpooled), (np.log10(x * shift["partial"]), row.partial))
    for index, (label, column, symbol) in enumerate(
        (("unpooled", "unpooled", "circle"), ("partially pooled", "partial", "diamond"))
    ):
        bars, interval_hover, interval_data = None, "", []
        if with_intervals:
            low, high = table[f"{column}_low"], table[f"{column}_high"]
            bars = {
                "type": "data",
                "symmetric": False,
                "array": high - table[column],
                "arrayminus": table[column] - low,
                "thickness": 1,
                "width": 0,
            }
            interval_hover = "<br>94% central interval %{customdata[3]:.2f} to %{customdata[4]:.2f}"
            interval_data = [low, high]
        figure.add_scatter(
            x=jitter * shift[column],
            y=table[column],
            mode="markers",
            name=label,
            text=table["group"],
            marker={"color": color_of(index), "size": 8, "symbol": symbol},
            error_y=bars,
            customdata=np.stack([table["size"], table["unpooled"], table["partial"], *interval_data], axis=1),
            hovertemplate="%{text}<br>" + size_title + ": %{customdata[0]}<br>unpooled %{customdata[1]:.2f}"
            "<br>partially pooled %{customdata[2]:.2f}"
            + (f"<br>{label}:" if with_intervals else "")
            + interval_hover
            + "<extra></extra>",
        )
    if not isinstance(references, dict):
        references = {"pooled": references}
    across = [jitter.min() * 0.9, jitter.max() * 1.1]
    for (label, value), dash in zip(references.items(), ("dash", "dot", "dashdot"), strict=False):
        reference_line(figure, across, [value, value], f"{label}: {value:.2f}", dash)
    figure.update_layout(title=title, xaxis={"title": size_title + " (log scale)", "type": "log"}, yaxis_title=y_title)
    return figure


def reference_line(figure: go.Figure, x: list, y: list, name: str, dash: str = "dash") -> None:
    """A black reference line (dashed unless `dash` says otherwise), named in the legend and on hover rather than by
    a label on the plot, which would sit on the data on a phone."""
    figure.add_scatter(
        x=x,
        y=y,
        mode="lines",
        name=name,
        line={"dash": dash, "color": "black", "width": 1.5},
        hovertemplate=f"{name}<extra></extra>",
    )


def county_sizes(data: pd.DataFrame) -> go.Figure:
    """Homes per county, sorted, with the county's name and floor mix on hover."""
    counts = data.groupby("county", observed=True).agg(homes=("floor", "size"), first_floor=("floor", "sum"))
    counts = counts.sort_values("homes", ascending=False)
    figure = go.Figure(
        go.Bar(
            x=list(range(1, len(counts) + 1)),
            y=counts["homes"],
            text=counts.index.astype(str),
            customdata=counts["first_floor"],
            marker={"color": color_of(0)},
            hovertemplate="%{text}<br>%{y} homes, %{customdata} measured on the first floor<extra></extra>",
        )
    )
    figure.update_layout(
        title="Homes measured per county",
        xaxis_title="county rank by number of homes",
        yaxis={"title": "homes (log scale)", "type": "log"},
    )
    return figure


def radon_by_floor(data: pd.DataFrame) -> go.Figure:
    """Distribution of log radon in basements and on first floors: a violin (kernel density, mirrored) around a
    box of the quartiles with the median (solid) and mean (dashed), and every home as a point spread within it.

    Drawn with scatter traces, which the site's plotly.js bundle has (`plotlyjs.BUNDLE`), not plotly's violins."""
    from scipy.stats import gaussian_kde

    figure = go.Figure()
    ticks = []
    for position, (floor, label) in enumerate(((0, "basement"), (1, "first floor"))):
        values = data.loc[data["floor"] == floor, "log_radon"].to_numpy()
        color = color_of(position)
        density = gaussian_kde(values)
        grid = np.linspace(values.min(), values.max(), 200)
        half = 0.4 * density(grid) / density(grid).max()
        figure.add_scatter(
            x=np.concatenate([position - half, position + half[::-1]]),
            y=np.concatenate([grid, grid[::-1]]),
            fill="toself",
            fillcolor=color,
            opacity=0.3,
            mode="lines",
            line={"color": color, "width": 1},
            hoverinfo="skip",
        )
        low, median, high = np.quantile(values, [0.25, 0.5, 0.75])
        figure.add_scatter(
            x=[position - 0.05, position + 0.05, position + 0.05, position - 0.05, position - 0.05],
            y=[low, low, high, high, low],
            fill="toself",
            fillcolor="white",
            mode="lines",
            line={"color": "black", "width": 1},
            hovertemplate=f"{label}: quartiles {low:.2f} and {high:.2f}<extra></extra>",
        )
        for level, dash, name in ((median, "solid", "median"), (values.mean(), "dash", "mean")):
            figure.add_scatter(
                x=[position - 0.25, position + 0.25],
                y=[level, level],
                mode="lines",
                line={"color": "black", "width": 2, "dash": dash},
                hovertemplate=f"{label}: {name} {level:.2f}<extra></extra>",
            )
        spread = np.random.default_rng(position).uniform(-1, 1, len(values)) * 0.9 * 0.4 * density(values)
        figure.add_scatter(
            x=position + spread / density(grid).max(),
            y=values,
            mode="markers",
            marker={"size": 3, "color": color, "opacity": 0.7},
            hovertemplate=f"{label}<br>log radon %{{y:.2f}}<extra></extra>",
        )
        ticks.append(f"{label}<br>({len(values)} homes)")
    figure.update_layout(
        title="Radon by floor of measurement",
        yaxis_title="log(radon + 0.1), log pCi/L",
        xaxis={"title": "floor of measurement", "tickvals": [0, 1], "ticktext": ticks, "range": [-0.6, 1.6]},
        showlegend=False,
    )
    return figure


def county_means_against(data: pd.DataFrame, column: str, x_title: str, title: str) -> go.Figure:
    """Each county's mean log radon against a county-level column, sized by the number of homes."""
    counties = data.groupby("county", observed=True).agg(
        mean=("log_radon", "mean"), homes=("log_radon", "size"), value=(column, "first")
    )
    figure = go.Figure(
        go.Scatter(
            x=counties["value"],
            y=counties["mean"],
            mode="markers",
            text=counties.index.astype(str),
            marker={"size": 5 + 2 * np.sqrt(counties["homes"]), "color": color_of(1), "opacity": 0.7},
            customdata=counts_text(counties["homes"]),
            hovertemplate="%{text}<br>"
            + x_title
            + " %{x:.2f}<br>mean log radon %{y:.2f}<br>%{customdata}<extra></extra>",
        )
    )
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title="county mean of log radon")
    return figure


def counts_text(counts: pd.Series) -> list[str]:
    return [f"{count} home" + ("s" if count != 1 else "") for count in counts]


def weight_by_size(
    table: pd.DataFrame, curve: pd.DataFrame, half_size: float, title: str, size_title: str
) -> go.Figure:
    """Each group's posterior weight on its own data against its size, over the expected weight as a function of
    size, with the size at which the weight is one half marked. `table` has columns group, size, weight;
    `curve` has size and weight."""
    figure = go.Figure()
    figure.add_scatter(
        x=curve["size"],
        y=curve["weight"],
        mode="lines",
        name="expected weight for a group of that size",
        line={"color": color_of(1), "width": 2},
        hovertemplate=size_title + " %{x:.1f}<br>weight %{y:.2f}<extra></extra>",
    )
    figure.add_scatter(
        x=table["size"],
        y=table["weight"],
        mode="markers",
        name="each group",
        text=table["group"],
        marker={"color": color_of(0), "size": 8, "symbol": "circle-open"},
        hovertemplate="%{text}<br>" + size_title + " %{x}<br>weight on its own data %{y:.2f}<extra></extra>",
    )
    reference_line(figure, [half_size, half_size], [0, 1], f"half pooling: {half_size:.1f} " + size_title)
    figure.update_layout(
        title=title,
        xaxis={"title": size_title + " (log scale)", "type": "log"},
        yaxis={"title": "weight on the group's own data", "range": [0, 1]},
    )
    return figure


PANEL_LINE_STYLES = ("dash", "dot", "solid", "dashdot")


def county_panels(points: pd.DataFrame, lines: pd.DataFrame, choices: dict[str, list[str]], title: str) -> go.Figure:
    """Log radon against floor in one small panel per county, with each model's fitted line (Gelman and Hill's
    figure 12.4), two panels a row so that each keeps a readable width on a phone. A dropdown picks which counties
    are shown; every choice is precomputed, so the page needs no kernel. `points` has columns county, floor,
    log_radon; `lines` has columns county, model, intercept, slope; `choices` maps a dropdown label to a list of
    counties, all lists as long as the first (one panel each).
    """
    from plotly.subplots import make_subplots

    panels = len(next(iter(choices.values())))
    columns = 2
    rows = -(-panels // columns)
    first = next(iter(choices.values()))
    figure = make_subplots(
        rows=rows,
        cols=columns,
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=first,
        vertical_spacing=0.3 / rows,
        horizontal_spacing=0.04,
    )
    models = list(dict.fromkeys(lines["model"]))
    jitter = np.random.default_rng(1).uniform(-0.06, 0.06, len(points))
    homes = points.groupby("county", observed=True).size()

    def panel_data(county: str) -> list[dict]:
        """x, y and hover text of the panel's traces: the homes, then one line per model."""
        mine = points["county"] == county
        data = [
            {
                "x": (points.loc[mine, "floor"] + jitter[mine.to_numpy()]).round(3).tolist(),
                "y": points.loc[mine, "log_radon"].round(3).tolist(),
                "text": f"{county}: a home",
            }
        ]
        for model in models:
            line = lines[(lines["county"] == county) & (lines["model"] == model)].iloc[0]
            data.append(
                {
                    "x": [0, 1],
                    "y": [line.intercept, line.intercept + line.slope],
                    "text": f"{county}: {model}<br>basement {line.intercept:.2f}, floor effect {line.slope:.2f}",
                }
            )
        return data

    for panel, county in enumerate(first):
        row, column = divmod(panel, columns)
        for index, trace in enumerate(panel_data(county)):
            is_points = index == 0
            figure.add_scatter(
                **trace,
                row=row + 1,
                col=column + 1,
                mode="markers" if is_points else "lines",
                name="homes" if is_points else models[index - 1],
                legendgroup=str(index),
                showlegend=panel == 0,
                marker={"color": "rgba(80,80,80,0.55)", "size": 5},
                line={"color": color_of(index - 1), "dash": PANEL_LINE_STYLES[(index - 1) % 4], "width": 2},
                hovertemplate="%{text}<br>floor %{x:.0f}, log radon %{y:.2f}<extra></extra>",
            )
    titles = [annotation.to_plotly_json() for annotation in figure.layout.annotations]
    buttons = []
    for label, counties in choices.items():
        traces = [trace for county in counties for trace in panel_data(county)]
        names = [
            dict(titles[panel], text=f"{county} ({homes.get(county, 0)} homes)")
            for panel, county in enumerate(counties)
        ]
        buttons.append(
            {
                "label": label,
                "method": "update",
                "args": [{key: [trace[key] for trace in traces] for key in ("x", "y", "text")}, {"annotations": names}],
            }
        )
    figure.update_layout(buttons[0]["args"][1])
    figure.update_layout(
        title=title,
        height=220 * rows + 200,
        updatemenus=[
            {
                "buttons": buttons,
                "x": 0,
                "xanchor": "left",
                "y": 1.0,
                "yanchor": "bottom",
                "pad": {"b": 30},
                "showactive": True,
            }
        ],
        margin={"t": 130},
    )
    figure.update_xaxes(tickvals=[0, 1], ticktext=["basement", "first floor"], range=[-0.3, 1.3])
    figure.update_yaxes(range=[points["log_radon"].min() - 0.3, points["log_radon"].max() + 0.3])
    for row in range(rows):
        figure.update_yaxes(title_text="log radon", row=row + 1, col=1)
    return figure


def estimates_against_predictor(
    table: pd.DataFrame, line: tuple[float, float], title: str, x_title: str, y_title: str
) -> go.Figure:
    """Group estimates (mean and +-1 posterior sd) against a group-level predictor, with the fitted group-level
    line (intercept, slope), as in Gelman and Hill's figure 12.6. `table` has columns group, x, mean, sd, size."""
    intercept, slope = line
    grid = np.array([table["x"].min(), table["x"].max()])
    figure = go.Figure()
    figure.add_scatter(
        x=table["x"],
        y=table["mean"],
        mode="markers",
        name="county estimate, +-1 posterior sd",
        text=table["group"],
        marker={"color": color_of(0), "size": 7, "symbol": "circle"},
        error_y={"type": "data", "array": table["sd"], "thickness": 1, "width": 0},
        customdata=np.stack([table["sd"], table["size"]], axis=1),
        hovertemplate="%{text}<br>" + x_title + " %{x:.2f}<br>estimate %{y:.2f} (sd %{customdata[0]:.2f})"
        "<br>%{customdata[1]} homes<extra></extra>",
    )
    figure.add_scatter(
        x=grid,
        y=intercept + slope * grid,
        mode="lines",
        name=f"group-level line: {intercept:.2f} + {slope:.2f} x",
        line={"color": color_of(1), "dash": "dash", "width": 2},
        hoverinfo="skip",
    )
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    return figure


def wrapped_label(text: str, width: int = 20) -> str:
    """A long axis label broken into lines at word boundaries, so that it leaves the plot its width on a phone."""
    return "<br>".join(textwrap.wrap(str(text), width)) or str(text)


def elpd_comparison(comparison: pd.DataFrame, title: str) -> go.Figure:
    """An ArviZ `compare` table as two panels, one above the other, each listing the models best first: each
    model's elpd_loo +- its SE (top), and its difference from the best model +- the SE of that difference (bottom,
    the one to read). Stacked rather than side by side, each panel keeps the figure's width on a phone."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=2, cols=1, vertical_spacing=0.2)  # room for the upper panel's axis title
    names = [wrapped_label(name) for name in comparison.index.astype(str)]
    for index, (label, value, error, symbol) in enumerate(
        (
            ("elpd_loo", "elpd_loo", "se", "circle"),
            ("elpd difference from the best", "elpd_diff", "dse", "diamond"),
        )
    ):
        centre = -comparison[value] if value == "elpd_diff" else comparison[value]
        figure.add_scatter(
            x=centre,
            y=names,
            mode="markers",
            name=label,
            row=index + 1,
            col=1,
            marker={"color": color_of(index), "size": 9, "symbol": symbol},
            error_x={"type": "data", "array": comparison[error], "thickness": 1.5},
            customdata=list(zip(comparison.index.astype(str), comparison[error].astype(float), strict=True)),
            hovertemplate="%{customdata[0]}<br>" + label + " %{x:.1f}, SE %{customdata[1]:.1f}<extra></extra>",
        )
    zero = {"dash": "dot", "color": "grey"}
    figure.add_scatter(x=[0, 0], y=[names[0], names[-1]], mode="lines", line=zero, hoverinfo="skip", row=2, col=1)
    figure.update_xaxes(title_text="elpd_loo ± SE (higher is better)", row=1, col=1)
    figure.update_xaxes(title_text="difference from the best model ± SE of the difference", row=2, col=1)
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(title=title, showlegend=False, height=max(560, 2 * 40 * len(comparison) + 260))
    return figure


def nested_levels(
    levels: pd.DataFrame,
    members: pd.DataFrame,
    title: str,
    y_title: str,
    member_label: str = "county level (mean)",
) -> go.Figure:
    """Levels of the upper groups with their 94% central intervals (one trace per `estimate`, e.g. a model), and
    the levels of the groups nested in them as jittered points (Gelman and Hill's picture of a multilevel model).
    `levels` has columns estimate, group, mean, low, high; `members` has columns group (the upper group), member,
    mean, size. The upper groups appear in the order of their first row in `levels`."""
    figure = go.Figure()
    upper = list(dict.fromkeys(levels["group"]))
    position = {group: index for index, group in enumerate(upper)}
    jitter = np.random.default_rng(2).uniform(-0.25, 0.25, len(members))
    figure.add_scatter(
        x=members["group"].map(position) + jitter,
        y=members["mean"],
        mode="markers",
        name=member_label,
        text=members["member"],
        customdata=counts_text(members["size"]),
        marker={"color": "rgba(120,120,120,0.45)", "size": 5, "symbol": "circle"},
        hovertemplate="%{text}<br>level %{y:.2f}<br>%{customdata}<extra></extra>",
    )
    symbols = ("diamond", "square", "triangle-up")
    for index, (estimate, part) in enumerate(levels.groupby("estimate", sort=False)):
        offset = 0.12 * (index - (levels["estimate"].nunique() - 1) / 2)
        figure.add_scatter(
            x=part["group"].map(position) + offset,
            y=part["mean"],
            mode="markers",
            name=estimate,
            text=part["group"],
            marker={
                "color": color_of(index),
                "size": 11,
                "symbol": symbols[index % len(symbols)],
                "line": {"width": 1, "color": "black"},
            },
            error_y={
                "type": "data",
                "symmetric": False,
                "array": part["high"] - part["mean"],
                "arrayminus": part["mean"] - part["low"],
                "thickness": 2,
            },
            customdata=part[["low", "high"]].to_numpy(),
            hovertemplate=f"{estimate}<br>%{{text}}: %{{y:.2f}}<br>94% central interval %{{customdata[0]:.2f}} to "
            "%{customdata[1]:.2f}<extra></extra>",
        )
    figure.update_layout(
        title=title,
        yaxis_title=y_title,
        # no zero line: x is a position, and 0 is the first group's
        xaxis={"title": "state", "tickvals": list(range(len(upper))), "ticktext": upper, "zeroline": False},
    )
    return figure


def predictive_check(
    replicated: dict[str, np.ndarray], observed: float, title: str, x_title: str, discrete: bool = False
) -> go.Figure:
    """A predictive check of one statistic: its distribution over replicated data sets, one histogram per model
    (`replicated`: {label: values}), and its observed value as a labelled vertical line. `discrete` statistics
    (counts) get one bar per value. The histograms are counted here and drawn as bars, which the site's plotly.js
    bundle has (`plotlyjs.BUNDLE`)."""
    figure = go.Figure()
    values = np.concatenate([np.asarray(draws, float) for draws in replicated.values()] + [[observed]])
    if discrete:
        edges = np.arange(values.min() - 0.5, values.max() + 1.5)
    else:
        low, high = np.quantile(values, [0.0, 1.0])
        edges = np.linspace(low, high if high > low else low + 1, 61)
    top = 0.0
    for index, (label, draws) in enumerate(replicated.items()):
        draws = np.asarray(draws, float)
        counts, _ = np.histogram(draws, edges)
        share = counts / len(draws)
        top = max(top, share.max())
        figure.add_bar(
            x=(edges[:-1] + edges[1:]) / 2,
            y=share,
            width=np.diff(edges) * 0.95,
            name=f"{label}: {len(draws)} replicated data sets",
            marker={"color": color_of(index)},
            opacity=0.6,
            hovertemplate=f"{label}<br>{x_title} %{{x:.3g}}<br>share of replicated data sets %{{y:.3f}}<extra></extra>",
        )
    reference_line(figure, [observed, observed], [0, top], f"observed: {observed:.3g}", "solid")
    figure.update_layout(
        title=title, xaxis_title=x_title, yaxis_title="share of replicated data sets", barmode="overlay"
    )
    return figure


def observed_against_intervals(table: pd.DataFrame, title: str, y_title: str, size_title: str) -> go.Figure:
    """Each group's observed value against the central interval of its replicated values, by group size (log axis):
    `table` has columns group, size, observed, low, high and outside (observed outside its interval), as from
    `predictions.county_mean_intervals`; groups outside their interval are drawn apart."""
    figure = go.Figure()
    jitter = table["size"] * np.exp(np.random.default_rng(0).uniform(-0.06, 0.06, len(table)))
    middle = (table["low"] + table["high"]) / 2
    for index, (label, rows) in enumerate(
        (("inside its 94% interval", ~table["outside"]), ("outside its 94% interval", table["outside"]))
    ):
        part = table[rows]
        figure.add_scatter(
            x=jitter[rows],
            y=part["observed"],
            mode="markers",
            name=f"observed county mean, {label} ({int(rows.sum())})",
            text=part["group"],
            marker={"color": color_of(index), "size": 7, "symbol": ("circle", "x")[index]},
            customdata=np.stack([part["size"], part["low"], part["high"]], axis=1),
            hovertemplate="%{text}<br>" + size_title + " %{customdata[0]}<br>observed mean %{y:.2f}"
            "<br>94% interval of replicated means %{customdata[1]:.2f} to %{customdata[2]:.2f}<extra></extra>",
        )
    figure.add_scatter(
        x=jitter,
        y=middle,
        mode="markers",
        name="94% central interval of the county's replicated means",
        marker={"color": "rgba(120,120,120,0.5)", "size": 1},
        error_y={
            "type": "data",
            "array": table["high"] - middle,
            "arrayminus": middle - table["low"],
            "thickness": 1,
            "width": 0,
            "color": "rgba(120,120,120,0.6)",
        },
        hoverinfo="skip",
    )
    figure.update_layout(title=title, xaxis={"title": size_title + " (log scale)", "type": "log"}, yaxis_title=y_title)
    return figure


def bivariate_shrinkage(table: pd.DataFrame, centre: tuple[float, float], title: str, x_title: str, y_title: str):
    """Each group's two unpooled estimates (columns x_unpooled, y_unpooled) joined by an arrow to its two partially
    pooled ones (x_partial, y_partial), with the population mean `centre` marked (Gelman and Hill's picture of
    shrinkage in two dimensions). `table` also has columns group and size."""
    figure = go.Figure()
    for row in table.itertuples():
        _arrow(figure, (row.x_unpooled, row.y_unpooled), (row.x_partial, row.y_partial))
    for index, (label, suffix, symbol) in enumerate(
        (("unpooled (the county's own homes)", "unpooled", "circle"), ("partially pooled", "partial", "diamond"))
    ):
        figure.add_scatter(
            x=table[f"x_{suffix}"],
            y=table[f"y_{suffix}"],
            mode="markers",
            name=label,
            text=table["group"],
            customdata=table["size"],
            marker={"color": color_of(index), "size": 7, "symbol": symbol},
            hovertemplate="%{text} (%{customdata})<br>"
            + label
            + "<br>"
            + x_title
            + " %{x:.2f}<br>"
            + y_title
            + " %{y:.2f}<extra></extra>",
        )
    figure.add_scatter(
        x=[centre[0]],
        y=[centre[1]],
        mode="markers",
        name="population mean (μ_α, μ_β)",
        marker={"color": "black", "size": 12, "symbol": "x"},
        hovertemplate=f"population mean<br>{x_title} %{{x:.2f}}<br>{y_title} %{{y:.2f}}<extra></extra>",
    )
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    return figure

"""Plots: every interactive plotly figure in the book, each with a title, axis labels and hover text."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from pooling.fitting import central_quantiles

PALETTE = qualitative.Safe


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
    for label, value in (marks or {}).items():
        figure.add_vline(x=value, line={"dash": "dot", "color": "black"}, annotation_text=f"{label}: {value:.2f}")
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    return figure


def interval_plot(rows: pd.DataFrame, title: str, x_title: str, truth: dict[str, float] | None = None) -> go.Figure:
    """Posterior means with 94% central intervals, one row per (estimate, group): columns
    `estimate`, `group`, `mean`, `low`, `high`; optional true values per group as vertical lines."""
    figure = go.Figure()
    for index, (estimate, part) in enumerate(rows.groupby("estimate", sort=False)):
        figure.add_scatter(
            x=part["mean"],
            y=part["group"] + " · " + estimate,
            mode="markers",
            name=estimate,
            marker={"color": color_of(index), "size": 10},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": part["high"] - part["mean"],
                "arrayminus": part["mean"] - part["low"],
            },
            customdata=part[["low", "high"]].to_numpy(),
            hovertemplate=f"{estimate}<br>%{{y}}<br>mean %{{x:.2f}}<br>94% central interval: %{{customdata[0]:.2f}} to "
            "%{customdata[1]:.2f}<extra></extra>",
        )
    for group, value in (truth or {}).items():
        figure.add_vline(x=value, line={"dash": "dot", "color": "grey"}, annotation_text=f"true {group}: {value:g}")
    figure.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis={"title": None, "autorange": "reversed"},
        height=max(380, 32 * len(rows) + 160),
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


EXPLORER_SCRIPT = """
var gd = document.getElementById('{plot_id}');
function showSetting() {
  var key = gd.layout.sliders.map(function (slider) { return slider.active; }).join('-');
  var frame = gd.layout.meta.frames[key];
  Plotly.update(gd, frame.data, frame.layout, frame.data.x.map(function (_, index) { return index; }));
}
gd.on('plotly_sliderchange', function () { setTimeout(showSetting, 0); });
"""
# The same numbers as text, for readers without a pointer or a screen: rewritten on each slider change and
# announced by screen readers (aria-live).
EXPLORER_SUMMARY_SCRIPT = """
gd.on('plotly_sliderchange', function () { setTimeout(function () {
  var key = gd.layout.sliders.map(function (slider) { return slider.active; }).join('-');
  var dials = gd.layout.sliders.map(function (slider) {
    return slider.currentvalue.prefix + slider.steps[slider.active].label; }).join(', ');
  document.getElementById('{plot_id}-summary').textContent = dials + '. ' + gd.layout.meta.frames[key].summary;
}, 0); });
"""

EXPLORER_SERIES = [  # (label, symbol) in drawing order; each is a trace of the explorer
    ("true slope", "x"),
    ("no pooling (least squares)", "circle"),
    ("complete pooling (least squares)", "square"),
    ("partial pooling toward the common slope: y ~ 0 + x + (0 + x | site)", "diamond"),
    ("partial pooling toward zero: y ~ 0 + (0 + x | site)", "triangle-up"),
]


def _explorer_frame(setting: dict) -> dict:
    """Trace data and layout of one explorer setting, in the form Plotly.update takes."""
    sites = setting["sites"]
    count = len(sites)
    offsets = np.linspace(-0.3, 0.3, len(EXPLORER_SERIES))
    unpooled_mean, unpooled_half = setting["unpooled"]
    pooled_mean, pooled_half = setting["pooled"]
    series = [
        (setting["true"], np.zeros(count), np.zeros(count), [""] * count),
        (unpooled_mean, unpooled_half, unpooled_half, ["weight on own data 1 (by definition)"] * count),
        (
            np.full(count, pooled_mean),
            np.full(count, pooled_half),
            np.full(count, pooled_half),
            ["weight on own data 0 (by definition)"] * count,
        ),
    ]
    for name in ("toward common slope", "toward zero"):
        posterior = setting[name]
        series.append(
            (
                posterior.mean,
                posterior.high - posterior.mean,
                posterior.mean - posterior.low,
                [f"weight on own data {weight:.2f}" for weight in posterior.weight],
            )
        )
    data = {"x": [], "y": [], "error_x.array": [], "error_x.arrayminus": [], "text": []}
    for offset, (mean, plus, minus, text) in zip(offsets, series, strict=False):
        data["x"].append(np.round(mean, 3).tolist())
        data["y"].append((np.arange(count) + offset).tolist())
        data["error_x.array"].append(np.round(plus, 3).tolist())
        data["error_x.arrayminus"].append(np.round(minus, 3).tolist())
        data["text"].append(text)
    common, zero = setting["toward common slope"], setting["toward zero"]
    rmse = setting["rmse"]
    layout = {
        "yaxis.tickvals": list(range(count)),
        "yaxis.ticktext": sites,
        "yaxis.range": [count - 0.5, -0.5],
        "title.text": (
            f"Mean weight on each site's own data: {common.weight.mean():.2f} toward the common slope, "
            f"{zero.weight.mean():.2f} toward zero<br>"
            f"Error against the true slopes (RMSE): no pooling {rmse['no pooling']:.2f}, "
            f"complete {rmse['complete pooling']:.2f}, partial toward the common slope "
            f"{rmse['toward common slope']:.2f}, toward zero {rmse['toward zero']:.2f}"
        ),
    }
    estimates = "; ".join(
        f"site {site}: true slope {setting['true'][index]:.2f}, "
        + ", ".join(
            f"{label.split(':')[0]} {mean[index]:.2f}"
            for (label, _), (mean, *_) in zip(EXPLORER_SERIES[1:], series[1:], strict=True)
        )
        for index, site in enumerate(sites)
    )
    summary = layout["title.text"].replace("<br>", ". ") + ". Estimates: " + estimates + "."
    return {"data": data, "layout": layout, "summary": summary}


def pooling_explorer(grid: dict[tuple, dict], dials: dict) -> str:
    """The interactive explorer as HTML: one slider per dial, every setting precomputed, no kernel needed."""
    frames = {"-".join(map(str, index)): _explorer_frame(setting) for index, setting in grid.items()}
    start = tuple(len(values) // 2 for values in dials.values())
    first = frames["-".join(map(str, start))]
    figure = go.Figure()
    for index, (label, symbol) in enumerate(EXPLORER_SERIES):
        figure.add_scatter(
            x=first["data"]["x"][index],
            y=first["data"]["y"][index],
            mode="markers",
            name=label,
            marker={"symbol": symbol, "size": 9, "color": color_of(index)},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": first["data"]["error_x.array"][index],
                "arrayminus": first["data"]["error_x.arrayminus"][index],
                "thickness": 1.5,
            },
            text=first["data"]["text"][index],
            hovertemplate=f"{label}<br>slope %{{x:.2f}} (bar: 94% central interval)<br>%{{text}}<extra></extra>",
        )
    sliders = []
    for number, (dial, values) in enumerate(dials.items()):
        sliders.append(
            {
                "active": start[number],
                "currentvalue": {"prefix": f"{dial}: ", "font": {"size": 13}},
                "steps": [{"label": str(value), "method": "skip", "args": []} for value in values],
                "y": -0.12 - 0.2 * number,
                "yanchor": "top",
                "len": 1.0,
                "pad": {"t": 5, "b": 5},
            }
        )
    figure.update_layout(
        sliders=sliders,
        meta={"frames": frames},
        height=560 + 105 * len(dials),
        xaxis_title="slope of y on x (mean and 94% central interval)",
        yaxis={
            "tickvals": first["layout"]["yaxis.tickvals"],
            "ticktext": first["layout"]["yaxis.ticktext"],
            "range": first["layout"]["yaxis.range"],
            "title": None,
        },
        title={"text": first["layout"]["title.text"], "font": {"size": 14}},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        margin={"t": 210, "b": 40},
    )
    return figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id="pooling-explorer",
        post_script=EXPLORER_SCRIPT + EXPLORER_SUMMARY_SCRIPT,
        config={"responsive": True, "displaylogo": False},
    ) + explorer_summary(dials, start, first["summary"])


def explorer_summary(dials: dict, start: tuple, summary: str) -> str:
    """The explorer's current setting as a paragraph of text, which its sliders keep up to date."""
    setting = ", ".join(f"{dial}: {values[index]}" for (dial, values), index in zip(dials.items(), start, strict=True))
    return f'<p id="pooling-explorer-summary" aria-live="polite">{html.escape(setting)}. {html.escape(summary)}</p>'


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
    for (label, value), dash, position in zip(
        references.items(), ("dash", "dot", "dashdot"), ("top right", "bottom right", "top left"), strict=False
    ):
        figure.add_hline(
            y=value,
            line={"dash": dash, "color": "black", "width": 1.5},
            annotation_text=f"{label}: {value:.2f}",
            annotation_position=position,
        )
    figure.update_layout(title=title, xaxis={"title": size_title + " (log scale)", "type": "log"}, yaxis_title=y_title)
    return figure


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
    """Distribution of log radon in basements and on first floors."""
    figure = go.Figure()
    for index, (floor, label) in enumerate(((0, "basement"), (1, "first floor"))):
        values = data.loc[data["floor"] == floor, "log_radon"]
        figure.add_violin(
            y=values,
            name=f"{label} ({len(values)} homes)",
            box_visible=True,
            meanline_visible=True,
            points="all",
            jitter=0.4,
            marker={"size": 3, "color": color_of(index)},
            line={"color": color_of(index)},
            hoveron="points",
            hovertemplate=f"{label}<br>log radon %{{y:.2f}}<extra></extra>",
        )
    figure.update_layout(
        title="Radon by floor of measurement",
        yaxis_title="log(radon + 0.1), log pCi/L",
        xaxis_title="floor of measurement",
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
    figure.add_vline(
        x=half_size,
        line={"dash": "dash", "color": "black"},
        annotation_text=f"half pooling: {half_size:.1f}",
        annotation_position="bottom right",
    )
    figure.update_layout(
        title=title,
        xaxis={"title": size_title + " (log scale)", "type": "log"},
        yaxis={"title": "weight on the group's own data", "range": [0, 1]},
    )
    return figure


PANEL_LINE_STYLES = ("dash", "dot", "solid", "dashdot")


def county_panels(points: pd.DataFrame, lines: pd.DataFrame, choices: dict[str, list[str]], title: str) -> go.Figure:
    """Log radon against floor in one small panel per county, with each model's fitted line (Gelman and Hill's
    figure 12.4). A dropdown picks which counties are shown; every choice is precomputed, so the page needs no
    kernel. `points` has columns county, floor, log_radon; `lines` has columns county, model, intercept, slope;
    `choices` maps a dropdown label to a list of counties, all lists as long as the first (one panel each).
    """
    from plotly.subplots import make_subplots

    panels = len(next(iter(choices.values())))
    columns = 4
    rows = -(-panels // columns)
    first = next(iter(choices.values()))
    figure = make_subplots(
        rows=rows,
        cols=columns,
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=first,
        vertical_spacing=0.14,
        horizontal_spacing=0.03,
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
        height=300 * rows + 160,
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


def elpd_comparison(comparison: pd.DataFrame, title: str) -> go.Figure:
    """An ArviZ `compare` table as two panels sharing the model axis: each model's elpd_loo +- its SE, and its
    difference from the best model +- the SE of that difference (the one to read), best model on top."""
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=("elpd_loo +- SE", "elpd difference from the best +- SE of the difference"),
    )
    names = comparison.index.astype(str)
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
            row=1,
            col=index + 1,
            marker={"color": color_of(index), "size": 9, "symbol": symbol},
            error_x={"type": "data", "array": comparison[error], "thickness": 1.5},
            customdata=comparison[error],
            hovertemplate="%{y}<br>" + label + " %{x:.1f}, SE %{customdata:.1f}<extra></extra>",
        )
    figure.add_vline(x=0, line={"dash": "dot", "color": "grey"}, row=1, col=2)
    figure.update_xaxes(title_text="elpd_loo (higher is better)", row=1, col=1)
    figure.update_xaxes(title_text="difference (0 for the best model)", row=1, col=2)
    figure.update_layout(
        title=title,
        yaxis={"autorange": "reversed"},
        showlegend=False,
        height=max(380, 45 * len(comparison) + 180),
    )
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
    (counts) get one bar per value."""
    figure = go.Figure()
    values = np.concatenate([np.asarray(draws, float) for draws in replicated.values()] + [[observed]])
    if discrete:
        bins = {"start": values.min() - 0.5, "end": values.max() + 0.5, "size": 1}
    else:
        low, high = np.quantile(values, [0.0, 1.0])
        bins = {"start": low, "end": high, "size": (high - low) / 60 or 1}
    for index, (label, draws) in enumerate(replicated.items()):
        draws = np.asarray(draws, float)
        figure.add_histogram(
            x=draws,
            xbins=bins,
            histnorm="probability",
            name=f"{label}: {len(draws)} replicated data sets",
            marker={"color": color_of(index)},
            opacity=0.6,
            hovertemplate=f"{label}<br>{x_title} %{{x}}<br>share of replicated data sets %{{y:.3f}}<extra></extra>",
        )
    figure.add_vline(
        x=observed,
        line={"color": "black", "width": 2},
        annotation_text=f"observed: {observed:.3g}",
        annotation_position="top",
    )
    figure.update_layout(
        title=title, xaxis_title=x_title, yaxis_title="share of replicated data sets", barmode="overlay", bargap=0.05
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

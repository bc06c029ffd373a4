"""Plots: every interactive plotly figure in the book, each with a title, axis labels and hover text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

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
    """Observed points over the 94% posterior predictive band of each group (`predictive`: draws x rows)."""
    figure = go.Figure()
    low, high = np.quantile(predictive, [0.03, 0.97], axis=0)
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
            name=f"{site}: 94% predictive band",
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


def posterior_densities(draws: dict[str, np.ndarray], title: str, x_title: str) -> go.Figure:
    """Overlaid kernel density estimates of posterior draws, one curve per label."""
    from scipy.stats import gaussian_kde

    figure = go.Figure()
    for index, (label, values) in enumerate(draws.items()):
        values = np.asarray(values)
        grid = np.linspace(*np.quantile(values, [0.001, 0.999]), 200)
        figure.add_scatter(
            x=grid,
            y=gaussian_kde(values)(grid),
            mode="lines",
            name=label,
            line={"color": color_of(index), "width": 2},
            hovertemplate=f"{label}<br>value %{{x:.2f}}<br>density %{{y:.3f}}<extra></extra>",
        )
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title="posterior density")
    return figure


def interval_plot(rows: pd.DataFrame, title: str, x_title: str, truth: dict[str, float] | None = None) -> go.Figure:
    """Posterior means with 94% intervals, one row per (estimate, group): columns
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
            hovertemplate=f"{estimate}<br>%{{y}}<br>mean %{{x:.2f}}<br>94%: %{{customdata[0]:.2f}} to "
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

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

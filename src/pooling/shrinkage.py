"""Shrinkage maths: least squares and exact (conjugate or grid-integrated) posteriors for slope models."""

from __future__ import annotations

import numpy as np
import pandas as pd


def least_squares_slopes(data: pd.DataFrame, x: str = "x", y: str = "y", group: str = "site") -> pd.DataFrame:
    """No-intercept least-squares slope per group and for all groups pooled, with standard errors.

    For `y = beta x + e` the estimate is sum(x y) / sum(x^2) and its standard error is
    s / sqrt(sum(x^2)), with s^2 the residual variance on n - 1 degrees of freedom.
    """

    def one(frame: pd.DataFrame) -> pd.Series:
        sum_xx = float((frame[x] ** 2).sum())
        slope = float((frame[x] * frame[y]).sum()) / sum_xx
        residual_sd = float(np.sqrt(((frame[y] - slope * frame[x]) ** 2).sum() / (len(frame) - 1)))
        return pd.Series(
            {
                "slope": slope,
                "standard_error": residual_sd / np.sqrt(sum_xx),
                "sum_x_squared": sum_xx,
                "n": len(frame),
                "residual_sd": residual_sd,
            }
        )

    per_group = {str(name): one(frame) for name, frame in data.groupby(group, observed=True)}
    return pd.DataFrame({**per_group, "pooled": one(data)}).T


def shrinkage_factor(sum_x_squared, sigma, tau):
    """Weight of a group's own data in its partially pooled slope, given sigma and tau.

    w = (S / sigma^2) / (S / sigma^2 + 1 / tau^2): the data's precision over the total precision.
    Broadcasts, so posterior draws of sigma and tau give posterior draws of w.
    """
    data_precision = np.asarray(sum_x_squared) / np.asarray(sigma) ** 2
    return data_precision / (data_precision + 1.0 / np.asarray(tau) ** 2)

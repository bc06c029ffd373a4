"""Shrinkage maths: least squares and exact (conjugate or grid-integrated) posteriors for slope models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from pooling import checks


def least_squares_slopes(
    data: pd.DataFrame, x: str = "x", y: str = "y", group: str = "site", probability: float = 0.94
) -> pd.DataFrame:
    """No-intercept least-squares slope per group and for all groups pooled, with standard errors and intervals.

    For `y = beta x + e` the estimate is sum(x y) / sum(x^2) and its standard error is
    s / sqrt(sum(x^2)), with s^2 the residual variance on n - 1 degrees of freedom; the central interval
    uses Student's t on those degrees of freedom (with 3 points, 2), not the normal.
    """
    probability = checks.probability("probability", probability)
    checks.slope_groups(sufficient_statistics(data, x, y, group), minimum_points=2)
    table = pd.concat(
        [sufficient_statistics(data, x, y, group), sufficient_statistics(data.assign(**{group: "pooled"}), x, y, group)]
    )
    table["residual_sd"] = np.sqrt(table["rss"] / (table["n"] - 1))
    table["standard_error"] = table["residual_sd"] / np.sqrt(table["sum_x_squared"])
    half_width = stats.t.ppf((1 + probability) / 2, table["n"] - 1) * table["standard_error"]
    table["low"], table["high"] = table["slope"] - half_width, table["slope"] + half_width
    return table


def shrinkage_factor(sum_x_squared, sigma, tau):
    """Weight of a group's own data in its partially pooled slope, given sigma and tau.

    w = (S / sigma^2) / (S / sigma^2 + 1 / tau^2): the data's precision over the total precision.
    Broadcasts, so posterior draws of sigma and tau give posterior draws of w.
    """
    for name, values in (("sum_x_squared", sum_x_squared), ("sigma", sigma), ("tau", tau)):
        checks.array(name, values, positive=True)
    data_precision = np.asarray(sum_x_squared) / np.asarray(sigma) ** 2
    return data_precision / (data_precision + 1.0 / np.asarray(tau) ** 2)


def conditional_slope_posterior(slope_hat, sum_x_squared, sigma, tau, mu):
    """Mean and variance of beta_j given sigma, tau and mu (conjugate normal update).

    The mean is w * slope_hat + (1 - w) * mu with w = shrinkage_factor(...); the variance is
    1 / (S / sigma^2 + 1 / tau^2). Arguments broadcast.
    """
    for name, values in (("slope_hat", slope_hat), ("mu", mu)):
        checks.array(name, values)
    weight = shrinkage_factor(sum_x_squared, sigma, tau)
    mean = weight * np.asarray(slope_hat) + (1 - weight) * np.asarray(mu)
    variance = 1.0 / (np.asarray(sum_x_squared) / np.asarray(sigma) ** 2 + 1.0 / np.asarray(tau) ** 2)
    return mean, variance


@dataclass(frozen=True)
class ScalePrior:
    """A prior on a positive scale: "halfcauchy", "halfnormal" or "halfstudentt" (with `nu`), or "fixed"."""

    kind: str
    scale: float
    nu: float | None = None

    def __post_init__(self):
        kinds = ["halfcauchy", "halfnormal", "halfstudentt", "fixed"]
        if not isinstance(self.kind, str) or self.kind not in kinds:
            raise ValueError(f"unknown scale prior kind {self.kind!r}: use one of {kinds}")
        if not checks.number("scale of a scale prior", self.scale) > 0:
            raise ValueError(f"a scale prior needs a positive scale, got {self.scale!r}")
        if self.kind == "halfstudentt":
            if self.nu is None:
                raise ValueError("a halfstudentt scale prior needs its degrees of freedom: ScalePrior(..., nu=3)")
            checks.number("nu of a halfstudentt prior", self.nu, positive=True)
        elif self.nu is not None:
            raise ValueError(f"nu applies to a halfstudentt prior only, not to {self.kind!r}")

    def log_density(self, value):
        value = np.asarray(value, dtype=float)
        if self.kind == "halfcauchy":
            return np.log(2.0) + stats.cauchy.logpdf(value, scale=self.scale)
        if self.kind == "halfnormal":
            return np.log(2.0) + stats.norm.logpdf(value, scale=self.scale)
        if self.kind == "halfstudentt":
            return np.log(2.0) + stats.t.logpdf(value, self.nu, scale=self.scale)
        raise ValueError("a fixed scale has no density")

    def grid(self, points: int, low: float, high: float):
        """Log-spaced grid on [low, high] and its log quadrature weights (prior density times spacing)."""
        if self.kind == "fixed":
            return np.array([self.scale]), np.array([0.0])
        points = checks.whole_number("points", points, minimum=2)
        low, high = checks.number("low", low, positive=True), checks.number("high", high, positive=True)
        if not low < high:
            raise ValueError(f"a grid needs low < high, got low={low!r} and high={high!r}")
        log_values = np.linspace(np.log(low), np.log(high), points)
        values = np.exp(log_values)
        return values, self.log_density(values) + log_values + np.log(log_values[1] - log_values[0])


@dataclass
class PartialPoolingPosterior:
    """Exact posterior summaries of y_ij = beta_j x_ij + e, beta_j ~ N(mu, tau^2), integrated over sigma, tau, mu."""

    groups: list
    mean: np.ndarray
    sd: np.ndarray
    low: np.ndarray
    high: np.ndarray
    weight: np.ndarray  # posterior mean of each group's weight on its own data
    tau_grid: np.ndarray
    tau_density: np.ndarray  # posterior of tau on its grid (sums to 1)
    mu_mean: float


def sufficient_statistics(data: pd.DataFrame, x: str = "x", y: str = "y", group: str = "site") -> pd.DataFrame:
    """Per group: n, S = sum x^2, least-squares slope and residual sum of squares (all the likelihood needs)."""
    checks.frame("data", data, [x, y, group])
    for column in (x, y):
        checks.finite_column("data", data, column)
    if data[group].isna().any():
        raise ValueError(f"data[{group!r}] has missing group names")
    rows = {}
    for name, frame in data.groupby(group, observed=True):
        sum_xx = float((frame[x] ** 2).sum())
        if not sum_xx > 0:
            raise ValueError(f"data: x is all zero in group {name!r}, so its slope is not identified")
        slope = float((frame[x] * frame[y]).sum()) / sum_xx
        rss = float(((frame[y] - slope * frame[x]) ** 2).sum())
        rows[str(name)] = {"n": len(frame), "sum_x_squared": sum_xx, "slope": slope, "rss": rss}
    return pd.DataFrame(rows).T.astype(float).astype({"n": int})


def partial_pooling_posterior(
    data: pd.DataFrame,
    tau_prior: ScalePrior,
    sigma_prior: ScalePrior,
    mu_prior_sd: float | None,
    probability: float = 0.94,
    grid_points: int = 160,
) -> PartialPoolingPosterior:
    """The exact posterior of each group's slope, by quadrature over (sigma, tau) with mu integrated analytically.

    Given sigma and beta_j the likelihood depends on the data only through n_j, S_j, the least-squares slope
    and the residual sum of squares, and integrating beta_j out leaves slope_hat_j ~ N(mu, tau^2 + sigma^2 / S_j).
    `mu_prior_sd=None` fixes mu at 0 (Bambi's `y ~ 0 + (0 + x | site)`); a number gives mu ~ N(0, sd^2)
    (`y ~ 0 + x + (0 + x | site)`). The grid is placed in two passes: a wide one finds where the posterior
    mass of sigma and tau lies, and a fine one of `grid_points` per scale covers just that region.
    """
    for name, prior in (("tau_prior", tau_prior), ("sigma_prior", sigma_prior)):
        if not isinstance(prior, ScalePrior):
            raise TypeError(f"{name} must be a ScalePrior, got {prior!r}")
    if mu_prior_sd is not None:
        checks.number("mu_prior_sd", mu_prior_sd, positive=True)
    probability = checks.probability("probability", probability)
    # The grid holds grid_points^2 x groups values: 2000 per scale is far past any accuracy the book needs.
    grid_points = checks.whole_number("grid_points", grid_points, minimum=2, maximum=2000)
    statistics = sufficient_statistics(data)
    checks.slope_groups(statistics, minimum_points=1)
    residual, explained = statistics["rss"].sum(), (statistics["slope"] ** 2 * statistics["sum_x_squared"]).sum()
    if not residual > 1e-24 * (residual + explained):  # residual sd under 1e-12 of the data's: rounding error
        raise ValueError("data: every point lies on its group's line (no residual), so sigma is not identified")
    sum_xx, slope_hat = statistics["sum_x_squared"].to_numpy(float), statistics["slope"].to_numpy(float)
    n, rss = statistics["n"].to_numpy(float), statistics["rss"].to_numpy(float)
    residual_scale = float(np.sqrt(rss.sum() / max(n.sum() - len(n), 1)))
    spread = float(np.std(slope_hat)) + residual_scale / np.sqrt(sum_xx.mean())
    # First pass: wide enough for heavy tails on either side of both the prior's scale and the data's.
    sigma_range = (min(sigma_prior.scale, residual_scale) * 1e-3, max(sigma_prior.scale, residual_scale) * 1e3)
    tau_range = (min(tau_prior.scale, spread) * 1e-3, max(tau_prior.scale, spread) * 1e3)
    sigma, tau, cell, _, _ = _grid_posterior(
        statistics, sigma_prior, sigma_range, tau_prior, tau_range, grid_points, mu_prior_sd
    )
    # Second pass: as many points again, over only the region that holds the mass.
    sigma, tau, cell, mu_mean, mu_variance = _grid_posterior(
        statistics,
        sigma_prior,
        _mass_range(sigma, cell.sum(1)),
        tau_prior,
        _mass_range(tau, cell.sum(0)),
        grid_points,
        mu_prior_sd,
    )
    sigma, tau = sigma[:, None, None], tau[None, :, None]  # grid axes: sigma, tau, group
    weight = shrinkage_factor(sum_xx, sigma, tau)
    mean_given = weight * slope_hat + (1 - weight) * mu_mean[..., None]
    variance_given = 1 / (sum_xx / sigma**2 + 1 / tau**2) + (1 - weight) ** 2 * mu_variance[..., None]
    mean = np.einsum("st,stg->g", cell, mean_given)
    second_moment = np.einsum("st,stg->g", cell, variance_given + mean_given**2)
    low, high = _mixture_interval(cell, mean_given, np.sqrt(variance_given), probability)
    if not np.isfinite(np.concatenate([mean, second_moment, low, high])).all():
        raise ValueError("data: x and y are too extreme in scale for the exact posterior (it overflows); rescale them")
    return PartialPoolingPosterior(
        groups=list(statistics.index),
        mean=mean,
        sd=np.sqrt(second_moment - mean**2),
        low=low,
        high=high,
        weight=np.einsum("st,stg->g", cell, np.broadcast_to(weight, mean_given.shape)),
        tau_grid=tau.ravel(),
        tau_density=cell.sum(0),
        mu_mean=float((cell * mu_mean).sum()),
    )


def _grid_posterior(statistics, sigma_prior, sigma_range, tau_prior, tau_range, grid_points, mu_prior_sd):
    """The (sigma, tau) grid over the given ranges, the posterior mass of each cell, and mu's mean and variance
    given the cell."""
    n, sum_xx = statistics["n"].to_numpy(float), statistics["sum_x_squared"].to_numpy(float)
    slope_hat, rss = statistics["slope"].to_numpy(float), statistics["rss"].to_numpy(float)
    sigma_values, log_sigma_weight = sigma_prior.grid(grid_points, *sigma_range)
    tau_values, log_tau_weight = tau_prior.grid(grid_points, *tau_range)
    sigma, tau = sigma_values[:, None, None], tau_values[None, :, None]
    variance = tau**2 + sigma**2 / sum_xx  # of slope_hat_j given mu, tau, sigma
    # Terms of the likelihood that do not involve mu.
    log_like = (-(n - 1) / 2 * np.log(2 * np.pi * sigma**2) - rss / (2 * sigma**2) - 0.5 * np.log(sum_xx)).sum(-1)
    if mu_prior_sd is None:
        mu_mean = np.zeros(variance.shape[:2])
        mu_variance = np.zeros(variance.shape[:2])
        log_like = log_like + stats.norm.logpdf(slope_hat, 0.0, np.sqrt(variance)).sum(-1)
    else:
        precision = 1 / mu_prior_sd**2 + (1 / variance).sum(-1)
        mu_mean = (slope_hat / variance).sum(-1) / precision
        mu_variance = 1 / precision
        log_like = log_like + (
            -0.5 * np.log(2 * np.pi * variance).sum(-1)
            - 0.5 * (slope_hat**2 / variance).sum(-1)
            + 0.5 * mu_mean**2 * precision
            - 0.5 * np.log(mu_prior_sd**2 * precision)
        )
    log_posterior = log_like + log_sigma_weight[:, None] + log_tau_weight[None, :]
    cell = np.exp(log_posterior - log_posterior.max())
    return sigma_values, tau_values, cell / cell.sum(), mu_mean, mu_variance


def _mass_range(values, mass, tail=1e-10, margin=2):
    """The part of a grid that holds all but `tail` of the mass, `margin` grid steps wider on each side."""
    cumulative = np.cumsum(mass)
    first = max(int(np.searchsorted(cumulative, tail)) - margin, 0)
    last = min(int(np.searchsorted(cumulative, 1 - tail)) + margin, len(values) - 1)
    return values[first], values[last]


def _mixture_interval(cell, means, sds, probability, mass_kept=1 - 1e-7):
    """Central interval of each group's slope: a mixture of normals over the grid cells that carry the mass."""
    order = np.argsort(cell.ravel())[::-1]
    keep = order[: np.searchsorted(np.cumsum(cell.ravel()[order]), mass_kept) + 1]
    weights = cell.ravel()[keep] / cell.ravel()[keep].sum()
    means, sds = means.reshape(-1, means.shape[-1])[keep], sds.reshape(-1, sds.shape[-1])[keep]
    tail = (1 - probability) / 2
    low, high = [], []
    for mean, sd in zip(means.T, sds.T, strict=True):
        bracket = ((mean - 10 * sd).min(), (mean + 10 * sd).max())

        def quantile(level, mean=mean, sd=sd, bracket=bracket):
            return optimize.brentq(lambda x: weights @ special.ndtr((x - mean) / sd) - level, *bracket, xtol=1e-7)

        low.append(quantile(tail))
        high.append(quantile(1 - tail))
    return np.array(low), np.array(high)


# The explorer's dials. Slopes are spread evenly around -1.5, the centre of the original's 2 and -5.
EXPLORER_DIALS = {
    "points per site": [3, 10, 20, 80],
    "noise sd": [0.5, 1.0, 2.0],
    "number of sites": [2, 8],
    "spread of true slopes": [0.5, 2.0, 7.0],
    "prior on tau": ["tau fixed at 0.5", "tau ~ HalfCauchy(0.1)", "tau ~ HalfNormal(10)"],
}
EXPLORER_TAU_PRIORS = {
    "tau fixed at 0.5": ScalePrior("fixed", 0.5),
    "tau ~ HalfCauchy(0.1)": ScalePrior("halfcauchy", 0.1),
    "tau ~ HalfNormal(10)": ScalePrior("halfnormal", 10.0),
}
EXPLORER_SIGMA_PRIOR = ScalePrior("halfcauchy", 5.0)
EXPLORER_MU_PRIOR_SD = 10.0
EXPLORER_X_SD = 0.5
EXPLORER_GRID_POINTS = 100  # per scale; the tests show summaries agree with finer grids to three decimals
# One seed for every setting: moving the prior dial keeps the data, and the other dials change only what they name.
EXPLORER_SEED = 2020


def explorer_data(
    points_per_site: int, noise_sd: float, number_of_sites: int, spread: float, seed: int = EXPLORER_SEED
):
    """The simulated data behind one explorer setting (validated, deterministic)."""
    from pooling.data import simulate_sites

    number_of_sites = checks.whole_number("number_of_sites", number_of_sites, maximum=1000)
    spread = checks.number("spread", spread, at_least=0)
    slopes = -1.5 + spread * (np.linspace(-0.5, 0.5, int(number_of_sites)) if number_of_sites > 1 else np.zeros(1))
    return simulate_sites(slopes, points_per_site, EXPLORER_X_SD, noise_sd, seed=seed)


def explorer_setting(points_per_site, noise_sd, number_of_sites, spread, tau_prior: str) -> dict:
    """Pooled, unpooled and both partially pooled estimates (mean, 94% interval, weight) for one setting."""
    if not isinstance(tau_prior, str) or tau_prior not in EXPLORER_TAU_PRIORS:
        raise ValueError(f"prior on tau must be one of {list(EXPLORER_TAU_PRIORS)}, got {tau_prior!r}")
    data = explorer_data(points_per_site, noise_sd, number_of_sites, spread)
    least_squares = least_squares_slopes(data)
    half_width = least_squares["high"] - least_squares["slope"]
    sites = least_squares.index.drop("pooled")
    result = {
        "sites": list(sites),
        "true": data.groupby("site", observed=True)["true_slope"].first().to_numpy(),
        "unpooled": (least_squares.loc[sites, "slope"].to_numpy(), half_width[sites].to_numpy()),
        "pooled": (least_squares.loc["pooled", "slope"], half_width["pooled"]),
    }
    for name, mu_prior_sd in (("toward common slope", EXPLORER_MU_PRIOR_SD), ("toward zero", None)):
        posterior = partial_pooling_posterior(
            data, EXPLORER_TAU_PRIORS[tau_prior], EXPLORER_SIGMA_PRIOR, mu_prior_sd, grid_points=EXPLORER_GRID_POINTS
        )
        result[name] = posterior
    return result


def explorer_grid(dials: dict = EXPLORER_DIALS) -> dict[tuple, dict]:
    """Every combination of the dials, keyed by the tuple of dial indices."""
    import itertools

    grid = {}
    for index in itertools.product(*(range(len(values)) for values in dials.values())):
        grid[index] = explorer_setting(*(values[i] for values, i in zip(dials.values(), index, strict=True)))
    return grid

"""Shrinkage maths: least squares and exact (conjugate or grid-integrated) posteriors for slope models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats


def least_squares_slopes(
    data: pd.DataFrame, x: str = "x", y: str = "y", group: str = "site", probability: float = 0.94
) -> pd.DataFrame:
    """No-intercept least-squares slope per group and for all groups pooled, with standard errors and intervals.

    For `y = beta x + e` the estimate is sum(x y) / sum(x^2) and its standard error is
    s / sqrt(sum(x^2)), with s^2 the residual variance on n - 1 degrees of freedom; the central interval
    uses Student's t on those degrees of freedom (with 3 points, 2), not the normal.
    """
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
    data_precision = np.asarray(sum_x_squared) / np.asarray(sigma) ** 2
    return data_precision / (data_precision + 1.0 / np.asarray(tau) ** 2)


def conditional_slope_posterior(slope_hat, sum_x_squared, sigma, tau, mu):
    """Mean and variance of beta_j given sigma, tau and mu (conjugate normal update).

    The mean is w * slope_hat + (1 - w) * mu with w = shrinkage_factor(...); the variance is
    1 / (S / sigma^2 + 1 / tau^2). Arguments broadcast.
    """
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
        if self.kind not in {"halfcauchy", "halfnormal", "halfstudentt", "fixed"}:
            raise ValueError(f"unknown scale prior kind {self.kind!r}")
        if not self.scale > 0:
            raise ValueError(f"a scale prior needs a positive scale, got {self.scale!r}")

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
    rows = {}
    for name, frame in data.groupby(group, observed=True):
        sum_xx = float((frame[x] ** 2).sum())
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
    statistics = sufficient_statistics(data)
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

    if isinstance(number_of_sites, bool) or int(number_of_sites) != number_of_sites or number_of_sites < 1:
        raise ValueError(f"number_of_sites must be a whole number >= 1, got {number_of_sites!r}")
    if not np.isfinite(spread) or spread < 0:
        raise ValueError(f"spread of true slopes must be >= 0, got {spread!r}")
    slopes = -1.5 + spread * (np.linspace(-0.5, 0.5, int(number_of_sites)) if number_of_sites > 1 else np.zeros(1))
    return simulate_sites(slopes, points_per_site, EXPLORER_X_SD, noise_sd, seed=seed)


def explorer_setting(points_per_site, noise_sd, number_of_sites, spread, tau_prior: str) -> dict:
    """Pooled, unpooled and both partially pooled estimates (mean, 94% interval, weight) for one setting."""
    if tau_prior not in EXPLORER_TAU_PRIORS:
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


# ---------------------------------------------------------------------------------------------------------------
# The general engine: a Gaussian linear model given its two variance parameters, integrated over a grid of them.


@dataclass
class GaussianGridPosterior:
    """Exact posterior of linear combinations of (b, u) in y = X b + Z u + e, e ~ N(0, sigma^2), u ~ N(0, tau^2),
    with b Gaussian a priori, integrated over a grid of (sigma, tau).

    `mean`, `sd`, `low` and `high` (central interval) are indexed by `names`; `cell` is the posterior mass of
    each (sigma, tau) grid cell, so any function of sigma and tau has its exact posterior through `expect` and
    `interval`.
    """

    names: list
    mean: np.ndarray
    sd: np.ndarray
    low: np.ndarray
    high: np.ndarray
    sigma_grid: np.ndarray
    tau_grid: np.ndarray
    cell: np.ndarray  # axes: sigma, tau; sums to 1

    def expect(self, function) -> np.ndarray:
        """Posterior mean of `function(sigma, tau)`, called with sigma of shape (S, 1) and tau of shape (1, T).

        A function that returns more axes after those two (say one per county) gets one mean per entry.
        """
        values = np.asarray(function(self.sigma_grid[:, None], self.tau_grid[None, :]), dtype=float)
        return np.tensordot(self.cell, np.broadcast_to(values, self.cell.shape + values.shape[2:]), axes=2)

    def interval(self, function, probability: float = 0.94) -> tuple[float, float]:
        """Central interval of a scalar `function(sigma, tau)`, from the grid's cells (weighted quantiles)."""
        values = np.broadcast_to(function(self.sigma_grid[:, None], self.tau_grid[None, :]), self.cell.shape).ravel()
        order = np.argsort(values)
        cumulative = np.cumsum(self.cell.ravel()[order])
        tail = (1 - probability) / 2
        return tuple(float(values[order][np.searchsorted(cumulative, level)]) for level in (tail, 1 - tail))

    def summary(self) -> pd.DataFrame:
        """Mean, sd and central interval of every combination, then of sigma and tau."""
        table = pd.DataFrame({"mean": self.mean, "sd": self.sd, "low": self.low, "high": self.high}, index=self.names)
        for name, function in (("sigma", lambda sigma, tau: sigma), ("tau", lambda sigma, tau: tau)):
            mean = float(self.expect(function))
            sd = float(np.sqrt(self.expect(lambda sigma, tau, f=function: f(sigma, tau) ** 2) - mean**2))
            table.loc[name] = [mean, sd, *self.interval(function)]
        return table


def gaussian_grid_posterior(
    y,
    fixed_design,
    fixed_prior_mean,
    fixed_prior_sd,
    group_design,
    sigma_prior: ScalePrior,
    tau_prior: ScalePrior,
    combinations,
    names,
    probability: float = 0.94,
    grid_points: int = 60,
    passes: int = 3,
) -> GaussianGridPosterior:
    """The exact posterior of y = X b + Z u + e with b ~ N(m, diag(s^2)), u ~ N(0, tau^2 I), e ~ N(0, sigma^2 I).

    Given (sigma, tau) the coefficients theta = (b, u) have a Gaussian posterior with precision
    A = W'W / sigma^2 + prior precision (W = [X Z]), and the marginal likelihood of y is Gaussian too; both come from
    one Cholesky factor of A per grid cell, batched over cells, with W'W and W'y computed once. The mass of each
    cell is that likelihood times the priors of sigma and tau; each row of `combinations` (a linear combination
    of theta) then has a posterior that is a mixture of normals over the cells. The grid is placed in `passes`
    passes: the first spans many decades around the prior's and the data's scales, and each next one covers only
    the region where the previous one found the mass, with `grid_points` per scale every time.
    """
    y = np.asarray(y, dtype=float)
    design = np.column_stack([np.asarray(fixed_design, dtype=float).reshape(len(y), -1), group_design])
    fixed = np.asarray(fixed_prior_sd, dtype=float).size
    combinations = np.asarray(combinations, dtype=float)
    cross = design.T @ design, design.T @ y, float(y @ y)
    prior = np.asarray(fixed_prior_mean, dtype=float).reshape(-1), np.asarray(fixed_prior_sd, dtype=float).reshape(-1)

    data_scale = float(np.std(y)) or 1.0
    sigma_range = (min(sigma_prior.scale, data_scale) * 1e-3, max(sigma_prior.scale, data_scale) * 1e3)
    tau_range = (min(tau_prior.scale, data_scale) * 1e-3, max(tau_prior.scale, data_scale) * 1e3)
    for _ in range(passes):
        sigma, log_sigma_weight = sigma_prior.grid(grid_points, *sigma_range)
        tau, log_tau_weight = tau_prior.grid(grid_points, *tau_range)
        log_like, means, variances = _conditional_gaussians(cross, len(y), fixed, prior, sigma, tau, combinations)
        log_posterior = log_like + log_sigma_weight[:, None] + log_tau_weight[None, :]
        cell = np.exp(log_posterior - log_posterior.max())
        cell /= cell.sum()
        sigma_range, tau_range = _mass_range(sigma, cell.sum(1)), _mass_range(tau, cell.sum(0))
    mean = np.einsum("st,stk->k", cell, means)
    second_moment = np.einsum("st,stk->k", cell, variances + means**2)
    low, high = _mixture_interval(cell, means, np.sqrt(variances), probability)
    return GaussianGridPosterior(list(names), mean, np.sqrt(second_moment - mean**2), low, high, sigma, tau, cell)


def _conditional_gaussians(cross, n, fixed, prior, sigma, tau, combinations, cells_per_batch=256):
    """For each (sigma, tau) cell: log p(y | sigma, tau), and the mean and variance of each combination of theta
    given (sigma, tau, y)."""
    gram, design_y, y_y = cross
    prior_mean, prior_sd = prior
    size = gram.shape[0]
    sigma_cells, tau_cells = (values.ravel() for values in np.meshgrid(sigma, tau, indexing="ij"))
    log_like = np.empty(sigma_cells.size)
    means = np.empty((sigma_cells.size, len(combinations)))
    variances = np.empty_like(means)
    for start in range(0, sigma_cells.size, cells_per_batch):
        part = slice(start, start + cells_per_batch)
        noise_variance, group_variance = sigma_cells[part, None] ** 2, tau_cells[part, None] ** 2
        prior_precision = np.concatenate(
            [
                np.broadcast_to(prior_sd**-2, (len(noise_variance), fixed)),
                np.broadcast_to(1 / group_variance, (len(noise_variance), size - fixed)),
            ],
            axis=1,
        )
        precision = gram / noise_variance[..., None] + prior_precision[:, :, None] * np.eye(size)
        shift = design_y / noise_variance + np.concatenate(
            [
                np.broadcast_to(prior_mean / prior_sd**2, (len(noise_variance), fixed)),
                np.zeros((len(noise_variance), size - fixed)),
            ],
            axis=1,
        )
        cholesky = np.linalg.cholesky(precision)
        posterior_mean = np.linalg.solve(precision, shift[..., None])[..., 0]
        log_det_precision = 2 * np.log(np.diagonal(cholesky, axis1=1, axis2=2)).sum(1)
        log_like[part] = (
            -n / 2 * np.log(2 * np.pi * noise_variance[:, 0])
            - 0.5 * y_y / noise_variance[:, 0]
            + 0.5 * np.log(prior_precision).sum(1)
            - 0.5 * log_det_precision
            + 0.5 * np.einsum("ck,ck->c", shift, posterior_mean)
            - 0.5 * float(prior_mean**2 @ prior_sd**-2)
        )
        # Var(c' theta) = |L^-1 c|^2 with A = L L'.
        whitened = np.linalg.solve(
            cholesky, np.broadcast_to(combinations.T, (len(noise_variance), *combinations.T.shape))
        )
        means[part] = posterior_mean @ combinations.T
        variances[part] = (whitened**2).sum(1)
    shape = (len(sigma), len(tau))
    return log_like.reshape(shape), means.reshape(*shape, -1), variances.reshape(*shape, -1)

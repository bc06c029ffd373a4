"""Shrinkage maths: least squares and exact (conjugate or grid-integrated) posteriors for slope models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import signal, special, stats

from pooling import checks


def least_squares_slopes(
    data: pd.DataFrame, x: str = "x", y: str = "y", group: str = "site", probability: float = 0.94
) -> pd.DataFrame:
    """No-intercept least-squares slope per group and for all groups pooled, with standard errors and intervals.

    For `y = beta x + e` the estimate is sum(x y) / sum(x^2) and its standard error is
    s / sqrt(sum(x^2)), with s^2 the residual variance on n - 1 degrees of freedom; the central interval
    uses Student's t on those degrees of freedom (with 3 points, 2), not the normal.
    """
    probability = checks.coverage("probability", probability)
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


def slope_gap(data: pd.DataFrame) -> dict[str, float]:
    """The gap between two sites' least-squares slopes, b_1 - b_2, and the gap in its own standard errors.

    The standard error uses the residual variance of both sites' own lines, s^2 = (RSS_1 + RSS_2) / (n - 2), so
    that given the sites' true slopes and sigma the standardised gap T = (b_1 - b_2) / (s c), with
    c^2 = 1 / S_1 + 1 / S_2, is Student's t on n - 2 degrees of freedom: a statistic that the noise sd, whatever it
    is, cannot make large (`gap_prior_predictive`).
    """
    statistics = sufficient_statistics(data)
    if len(statistics) != 2:
        raise ValueError(f"data: the gap between two sites' slopes needs exactly two sites, got {len(statistics)}")
    checks.slope_groups(statistics, minimum_points=2)
    degrees = int(statistics["n"].sum()) - 2
    residual_sd = float(np.sqrt(statistics["rss"].sum() / degrees))
    spread = float(np.sqrt((1 / statistics["sum_x_squared"]).sum()))
    gap = float(statistics["slope"].iloc[0] - statistics["slope"].iloc[1])
    return {
        "gap": gap,
        "standard_error": residual_sd * spread,
        "standardised": gap / (residual_sd * spread),
        "residual_sd": residual_sd,
        "degrees_of_freedom": degrees,
        "spread": spread,
    }


def gap_posterior_predictive(data: pd.DataFrame, slopes, sigma) -> dict[str, float]:
    """Posterior predictive check of the gap b_1 - b_2 between two sites' least-squares slopes (`slope_gap`), from
    posterior draws of the sites' slopes (draws x 2; a pooled slope repeated) and of the noise sd (one per draw, or
    draws x 2 for a sd per site).

    Given a draw, the gap of data replicated at the same x is exactly N(beta_1 - beta_2, sqrt(sigma_1^2 / S_1 +
    sigma_2^2 / S_2)), so the one-sided p-value P(replicated gap >= observed gap) is that normal's tail probability
    averaged over the draws (Rao-Blackwellised): it has no floor at 1 / draws, as a count of replicates has. Returns
    the observed gap, the replicated gap's mean and sd, and `p_value`.
    """
    statistics = sufficient_statistics(data)
    observed = slope_gap(data)["gap"]
    slopes = np.asarray(slopes, float)
    if slopes.ndim != 2 or slopes.shape[1] != 2:
        raise ValueError(f"slopes must be posterior draws of the two sites' slopes (draws x 2), got {slopes.shape}")
    sigma = np.broadcast_to(np.asarray(sigma, float).reshape(len(slopes), -1), slopes.shape)
    mean = slopes[:, 0] - slopes[:, 1]
    sd = np.sqrt((sigma**2 / statistics["sum_x_squared"].to_numpy(float)).sum(axis=1))
    return _replicated_gap(observed, mean, sd**2, np.full(len(mean), 1 / len(mean)))


def _replicated_gap(observed: float, mean, variance, mass) -> dict[str, float]:
    """The replicated gap as a mixture of normals (`mass` on each mean and variance): its mean, its sd and the
    one-sided p-value P(replicated gap >= observed)."""
    mean, variance, mass = (np.ravel(value) for value in np.broadcast_arrays(mean, variance, mass))
    average = float(mass @ mean)
    return {
        "observed": observed,
        "mean": average,
        "sd": float(np.sqrt(mass @ (variance + (mean - average) ** 2))),
        "p_value": float(mass @ stats.norm.sf(observed, mean, np.sqrt(variance))),
    }


def exact_gap_posterior_predictive(
    data: pd.DataFrame, result: PartialPoolingPosterior, mu_prior_sd: float | None
) -> dict[str, float]:
    """`gap_posterior_predictive` from the exact posterior of the slope model with a shared sigma
    (`partial_pooling_posterior` on the same data, with `mu_prior_sd` its prior sd of mu, None for mu fixed at 0).

    Given sigma and tau, beta_j = w_j b_j + (1 - w_j) mu + N(0, w_j sigma^2 / S_j) independently given mu, and mu is
    N(m, V) (the formula of chapter 4), so beta_1 - beta_2 is normal with mean w_1 b_1 - w_2 b_2 + (w_2 - w_1) m and
    variance sum_j w_j sigma^2 / S_j + (w_2 - w_1)^2 V; a replicated gap adds sigma^2 (1 / S_1 + 1 / S_2). The
    p-value is that normal's tail probability integrated over the grid of (sigma, tau): no draws, no floor.
    """
    checks.instance("result", result, PartialPoolingPosterior)
    if not isinstance(result.posterior, GaussianGridPosterior):
        raise ValueError(
            "result: the exact gap check needs a shared sigma (partial_pooling_posterior without noise_per_site)"
        )
    statistics = sufficient_statistics(data)
    observed = slope_gap(data)["gap"]
    sum_xx, slope = (statistics[column].to_numpy(float) for column in ("sum_x_squared", "slope"))
    sigma, tau = result.posterior.sigma_grid[:, None, None], result.posterior.tau_grid[None, :, None]
    spread = tau**2 + sigma**2 / sum_xx  # variance of b_j given mu
    weight = tau**2 / spread
    if mu_prior_sd is None:
        mu_mean, mu_variance = 0.0, 0.0
    else:
        precision = checks.number("mu_prior_sd", mu_prior_sd, positive=True) ** -2 + (1 / spread).sum(-1)
        mu_mean, mu_variance = (slope / spread).sum(-1) / precision, 1 / precision
    contrast = weight[..., 1] - weight[..., 0]  # the coefficient of mu in beta_1 - beta_2
    mean = weight[..., 0] * slope[0] - weight[..., 1] * slope[1] + contrast * mu_mean
    variance = (weight * sigma**2 / sum_xx).sum(-1) + contrast**2 * mu_variance + (sigma**2 / sum_xx).sum(-1)
    return _replicated_gap(observed, mean, variance, result.posterior.cell)


def gap_prior_predictive(data: pd.DataFrame, tau_prior: ScalePrior, sigma_prior: ScalePrior, step: float = 0.005):
    """Prior predictive probability that two sites simulated with the data's x have a standardised gap
    (`slope_gap`) at least as large, in absolute value, as the data's.

    Given tau and sigma, the slopes' gap is N(0, 2 tau^2 + sigma^2 c^2) whatever mu is, and independent of the
    residual variance, so T is sqrt(1 + 2 (tau / sigma)^2 / c^2) times a Student t on n - 2 degrees of freedom. Its
    tail probability depends on tau / sigma only: the prior of log(tau / sigma) is the convolution of those of
    log tau and -log sigma, on a log grid of `step` (exact cell masses from each prior's distribution function).
    """
    observed = slope_gap(data)

    def log_masses(prior):
        if prior.kind == "fixed":
            return np.array([np.log(prior.scale)]), np.array([1.0])
        edges = np.arange(np.log(prior.scale) - 30, np.log(prior.scale) + 30 + step, step)
        above = prior.probability_above(np.exp(edges))
        mass = -np.diff(above)
        mass[0] += 1 - above[0]  # everything below the grid, at its first cell
        mass[-1] += above[-1]  # and above it, at its last
        return edges[:-1] + step / 2, mass

    log_tau, tau_mass = log_masses(tau_prior)
    log_sigma, sigma_mass = log_masses(sigma_prior)
    ratio_mass = np.clip(signal.fftconvolve(tau_mass, sigma_mass[::-1]), 0.0, None)  # FFT rounding: no negatives
    log_ratio = log_tau[0] - log_sigma[-1] + step * np.arange(len(ratio_mass))
    if len(log_tau) == 1 or len(log_sigma) == 1:  # a fixed scale: the other's grid, shifted
        log_ratio = (log_tau[:, None] - log_sigma[None, :]).ravel()
        ratio_mass = (tau_mass[:, None] * sigma_mass[None, :]).ravel()
    inflation = np.sqrt(1 + 2 * np.exp(2 * log_ratio) / observed["spread"] ** 2)
    tail = 2 * stats.t.sf(abs(observed["standardised"]) / inflation, observed["degrees_of_freedom"])
    return float(ratio_mass @ tail)


@dataclass(frozen=True)
class ScalePrior:
    """A prior on a positive scale: "halfcauchy", "halfnormal" or "halfstudentt" (with `nu`), "lognormal" (median
    `scale`, `log_sd` the sd of the log: Bambi's Normal prior on a log noise sd), or "fixed"."""

    kind: str
    scale: float
    nu: float | None = None
    log_sd: float | None = None

    def __post_init__(self):
        kinds = ["halfcauchy", "halfnormal", "halfstudentt", "lognormal", "fixed"]
        if not isinstance(self.kind, str) or self.kind not in kinds:
            raise ValueError(f"unknown scale prior kind {self.kind!r}: use one of {kinds}")
        if not checks.number("scale of a scale prior", self.scale) > 0:
            raise ValueError(f"a scale prior needs a positive scale, got {self.scale!r}")
        # The shape parameter each family needs, and no other family takes.
        for name, kind, what, example in (
            ("nu", "halfstudentt", "its degrees of freedom", "nu=3"),
            ("log_sd", "lognormal", "the sd of its log", "log_sd=1.0"),
        ):
            value = getattr(self, name)
            if self.kind == kind:
                if value is None:
                    raise ValueError(f"a {kind} scale prior needs {what}: ScalePrior(..., {example})")
                checks.number(f"{name} of a {kind} prior", value, positive=True)
            elif value is not None:
                raise ValueError(f"{name} applies to a {kind} prior only, not to {self.kind!r}")

    def __str__(self) -> str:
        """As the text writes it: HalfCauchy(0.1), HalfStudentT(3, 0.1), LogNormal(0, 1) (the log's mean and sd),
        to three significant digits as the models' tables of priors (`notation.symbol_table`) print them."""
        number = f"{self.scale:.3g}"
        if self.kind == "lognormal":
            return f"LogNormal({np.log(self.scale):.3g}, {self.log_sd:.3g})"
        names = {"halfcauchy": "HalfCauchy", "halfnormal": "HalfNormal", "halfstudentt": "HalfStudentT"}
        if self.kind == "fixed":
            return f"fixed at {number}"
        return f"{names[self.kind]}({f'{self.nu:.3g}, ' if self.nu is not None else ''}{number})"

    def log_density(self, value):
        value = np.asarray(value, dtype=float)
        if self.kind == "halfcauchy":
            return np.log(2.0) + stats.cauchy.logpdf(value, scale=self.scale)
        if self.kind == "halfnormal":
            return np.log(2.0) + stats.norm.logpdf(value, scale=self.scale)
        if self.kind == "halfstudentt":
            return np.log(2.0) + stats.t.logpdf(value, self.nu, scale=self.scale)
        if self.kind == "lognormal":
            return stats.lognorm.logpdf(value, self.log_sd, scale=self.scale)
        raise ValueError("a fixed scale has no density")

    def probability_above(self, value) -> np.ndarray:
        """Prior probability that the scale exceeds `value`."""
        value = np.asarray(value, dtype=float)
        if self.kind == "fixed":
            return (self.scale > value).astype(float)
        distribution = {
            "halfcauchy": lambda: stats.halfcauchy(scale=self.scale),
            "halfnormal": lambda: stats.halfnorm(scale=self.scale),
            "halfstudentt": lambda: stats.t(self.nu, scale=self.scale),
            "lognormal": lambda: stats.lognorm(self.log_sd, scale=self.scale),
        }[self.kind]()
        survival = distribution.sf(value)
        return 2 * survival if self.kind == "halfstudentt" else survival

    def grid(self, points: int, low: float, high: float):
        """Log-spaced grid on [low, high] and its log quadrature weights (prior density times spacing).

        The first point also carries the interval from 0 to its cell, over which the integrand is taken as flat:
        so it is for a group sd, whose likelihood is flat near 0 and whose prior density is finite there, and a
        log grid cannot reach 0. (A residual sd's integrand vanishes there, so this adds nothing for sigma.)
        """
        if self.kind == "fixed":
            return np.array([self.scale]), np.array([0.0])
        points = checks.whole_number("points", points, minimum=2)
        low, high = checks.number("low", low, positive=True), checks.number("high", high, positive=True)
        if not low < high:
            raise ValueError(f"a grid needs low < high, got low={low!r} and high={high!r}")
        log_values = np.linspace(np.log(low), np.log(high), points)
        values = np.exp(log_values)
        step = log_values[1] - log_values[0]
        widths = np.full(points, step)
        widths[0] += np.exp(-step / 2)  # (0, first cell's lower edge), in units of the first value
        return values, self.log_density(values) + log_values + np.log(widths)


@dataclass
class PartialPoolingPosterior:
    """Exact posterior summaries of y_ij = beta_j x_ij + e, beta_j ~ N(mu, tau^2), integrated over sigma, tau, mu.

    `mean`, `sd`, `low`, `high` and `weight` have one entry per group; `posterior` is the grid result they are
    computed from (names: the groups, then "mu" unless mu is fixed at 0, then "new site", the slope of a site not
    in the data), which holds sigma and tau (`posterior.scale_summary("tau")`, `posterior.summary()` for every
    quantity). With `mean_by`, mu has one entry per category ("mu[A]", ...) and there is no "new site".
    """

    groups: list
    mean: np.ndarray
    sd: np.ndarray
    low: np.ndarray
    high: np.ndarray
    weight: np.ndarray  # posterior mean of each group's weight on its own data
    mu_mean: float | np.ndarray  # one per category of `mean_by`
    posterior: GaussianGridPosterior | SiteNoiseGrid

    def new_site(self) -> dict[str, float]:
        """Mean, sd and central interval of a new site's slope, beta_new ~ N(mu, tau): where the population puts a
        site that is not in the data, with the uncertainty about mu and tau both included."""
        row = self.posterior.summary().loc["new site"]
        return {name: float(row[name]) for name in ("mean", "sd", "low", "high")}


def _cdf_knots(grid, mass):
    """Knots of the CDF of a scale whose posterior mass sits on a log-spaced grid: each cell's mass is spread
    evenly in log(scale) between the midpoints to its neighbours, so the CDF is piecewise linear in log(scale)
    and its quantiles are not limited to grid points (whose steps are several per cent wide)."""
    log_grid = np.log(np.asarray(grid, float))
    step = log_grid[1] - log_grid[0]
    edges = np.concatenate([[log_grid[0] - step / 2], log_grid + step / 2])
    return edges, np.concatenate([[0.0], np.cumsum(mass)])


def _grid_cdf(grid, mass, values):
    """P(scale < values) from the posterior mass on the grid; a fixed scale (one grid point) is a step."""
    if len(grid) == 1:
        return np.where(np.asarray(values) < grid[0], 0.0, 1.0)
    edges, cumulative = _cdf_knots(grid, mass)
    with np.errstate(divide="ignore"):  # 0 and infinity are ends of an interval too
        return np.interp(np.log(values), edges, cumulative)


def scale_summary(grid, mass, probability: float = 0.94) -> dict[str, float]:
    """Mean, sd, median and central interval of a positive scale from its posterior mass on a log-spaced grid.

    The mean and sd are quadrature sums; the quantiles invert the interpolated CDF of `_cdf_knots`. This is the
    one way the book summarises sigma and tau.
    """
    grid, mass = np.asarray(grid, float), np.asarray(mass, float)
    mean = float(grid @ mass)
    if len(grid) == 1:
        return {"mean": mean, "sd": 0.0, "median": mean, "low": mean, "high": mean}
    edges, cumulative = _cdf_knots(grid, mass)
    tail = (1 - probability) / 2
    low, median, high = np.exp(np.interp([tail, 0.5, 1 - tail], cumulative, edges))
    sd = float(np.sqrt(max(mass @ grid**2 - mean**2, 0.0)))
    return {"mean": mean, "sd": sd, "median": float(median), "low": float(low), "high": float(high)}


def sufficient_statistics(data: pd.DataFrame, x: str = "x", y: str = "y", group: str = "site") -> pd.DataFrame:
    """Per group: n, S = sum x^2, least-squares slope and residual sum of squares (all the likelihood needs)."""
    checks.frame("data", data, [x, y, group])
    for column in (x, y):
        checks.finite_column("data", data, column)
    if data[group].isna().any():
        raise ValueError(f"data[{group!r}] has missing group names")
    # One vectorised pass: the chapters call this for every explorer setting and replicate.
    if isinstance(data[group].dtype, pd.CategoricalDtype):  # in the order of the categories, as groupby gives
        codes, levels = data[group].cat.codes.to_numpy(), np.asarray(data[group].cat.categories)
    else:
        codes, levels = pd.factorize(data[group], sort=True)
    used = np.unique(codes)  # observed groups only
    codes, levels = np.searchsorted(used, codes), np.asarray(levels)[used]
    x_values, y_values = data[x].to_numpy(float), data[y].to_numpy(float)
    counts = np.bincount(codes, minlength=len(levels))
    with np.errstate(invalid="ignore", over="ignore"):  # an overflowing group is named by checks.slope_groups
        sum_xx = np.bincount(codes, x_values**2, minlength=len(levels))
    empty = np.flatnonzero(~(sum_xx > 0))
    if empty.size:
        raise ValueError(f"data: x is all zero in group {str(levels[empty[0]])!r}, so its slope is not identified")
    with np.errstate(invalid="ignore", over="ignore"):
        slope = np.bincount(codes, x_values * y_values, minlength=len(levels)) / sum_xx
        rss = np.bincount(codes, (y_values - slope[codes] * x_values) ** 2, minlength=len(levels))
    return pd.DataFrame(
        {"n": counts, "sum_x_squared": sum_xx, "slope": slope, "rss": rss}, index=[str(level) for level in levels]
    )


def partial_pooling_posterior(
    data: pd.DataFrame,
    tau_prior: ScalePrior,
    sigma_prior: ScalePrior,
    mu_prior_sd: float | None,
    probability: float = 0.94,
    grid_points: int | None = None,
    noise_per_site: bool = False,
    mean_by: str | None = None,
) -> PartialPoolingPosterior:
    """The exact posterior of each group's slope, by quadrature over the scales with mu integrated analytically.

    The model y_ij = beta_j x_ij + e with beta_j = mu + u_j is the general engine's (`gaussian_grid_posterior`)
    with X = x and Z = x times the site indicator. `mu_prior_sd=None` fixes mu at 0 (Bambi's
    `y ~ 0 + (0 + x | site)`, no column in X); a number gives mu ~ N(0, sd) (`y ~ 0 + x + (0 + x | site)`).
    `mean_by` names a column constant within each site (a group-level predictor such as a cluster): each of its
    categories gets its own mu, all with that prior. The grid is placed in two passes: a wide one finds where the
    posterior mass of the scales lies, and a fine one of `grid_points` per scale covers just that region.

    `noise_per_site=True` gives each site its own noise sd, sigma_j ~ `sigma_prior` independently (the original
    notebook's model, `sigma ~ 0 + site` in Bambi): the grid then spans (sigma_1, ..., sigma_J, tau), which is
    affordable for a few sites only (`site_noise_grid`).
    """
    checks.instance("tau_prior", tau_prior, ScalePrior)
    checks.instance("sigma_prior", sigma_prior, ScalePrior)
    if mu_prior_sd is not None:
        checks.number("mu_prior_sd", mu_prior_sd, positive=True)
    default_points = SITE_NOISE_GRID_POINTS if noise_per_site else 160
    probability, grid_points, _ = checks.grid_settings(probability, grid_points or default_points, passes=2)
    layout = _slope_layout(data, mu_prior_sd, mean_by)
    statistics = layout["statistics"]
    groups = len(statistics)
    if noise_per_site:
        if mean_by is not None:
            raise ValueError("mean_by is not available with noise_per_site=True")
        posterior = site_noise_grid(statistics, tau_prior, sigma_prior, mu_prior_sd, probability, grid_points)
        weight = posterior.weight
    else:
        posterior = gaussian_grid_posterior(
            layout["y"],
            layout["fixed_design"],
            layout["prior_mean"],
            layout["prior_sd"],
            layout["group_design"],
            sigma_prior,
            tau_prior,
            layout["combinations"],
            layout["names"],
            probability,
            grid_points,
            passes=2,
            new_group=layout["new_group"],
        )
        sum_xx = statistics["sum_x_squared"].to_numpy(float)
        weight = posterior.expect(lambda sigma, tau: shrinkage_factor(sum_xx, sigma[..., None], tau[..., None]))
    if not np.isfinite(np.concatenate([posterior.mean, posterior.sd, posterior.low, posterior.high])).all():
        raise ValueError("data: x and y are too extreme in scale for the exact posterior (it overflows); rescale them")
    mu = [index for index, name in enumerate(posterior.names) if str(name).startswith("mu")]
    mu_mean = posterior.mean[mu] if mean_by is not None else float(posterior.mean[mu[0]]) if mu else 0.0
    return PartialPoolingPosterior(
        groups=list(statistics.index),
        mean=posterior.mean[:groups],
        sd=posterior.sd[:groups],
        low=posterior.low[:groups],
        high=posterior.high[:groups],
        weight=weight,
        mu_mean=mu_mean,
        posterior=posterior,
    )


def _slope_layout(data: pd.DataFrame, mu_prior_sd: float | None, mean_by: str | None = None) -> dict:
    """The slope model y ~ 0 + x + (0 + x | site) as the general engine's linear model, after checking the data:
    X = x (or x times each category of `mean_by`), Z = x times the site indicator, and the combinations reported
    (each site's slope, mu, a new site's slope)."""
    statistics = sufficient_statistics(data)
    checks.slope_groups(statistics, minimum_points=1)
    residual, explained = statistics["rss"].sum(), (statistics["slope"] ** 2 * statistics["sum_x_squared"]).sum()
    if not residual > 1e-24 * (residual + explained):  # residual sd under 1e-12 of the data's: rounding error
        raise ValueError("data: every point lies on its group's line (no residual), so sigma is not identified")
    groups = len(statistics)
    site = data.groupby("site", observed=True).ngroup().to_numpy()  # in the order of `statistics`
    x = data["x"].to_numpy(float)
    group_design = np.zeros((len(data), groups))
    group_design[np.arange(len(data)), site] = x
    if mean_by is None:
        means = [] if mu_prior_sd is None else ["mu"]
        membership = np.ones((groups, len(means)))  # which mu each site's slope is drawn around
    else:
        if mu_prior_sd is None:
            raise ValueError("mean_by gives each category its own mu, which needs a prior sd (mu_prior_sd)")
        checks.frame("data", data, [mean_by])
        per_site = data.groupby("site", observed=True)[mean_by]
        if (per_site.nunique() != 1).any():
            raise ValueError(f"data[{mean_by!r}] must be constant within each site (a site-level predictor)")
        categories, codes = np.unique(per_site.first().astype(str).to_numpy(), return_inverse=True)
        means = [f"mu[{category}]" for category in categories]
        membership = np.eye(len(categories))[codes]
    fixed_design = membership[site] * x[:, None]
    slopes = np.column_stack([membership, np.eye(groups)])
    mu = np.eye(len(means), len(means) + groups)
    # A new site's slope: mu (or 0) plus an effect drawn from N(0, tau), which `new_group` adds; with several mus
    # it would depend on the new site's category, so there is none.
    new_site = np.eye(1, len(means) + groups) * len(means) if len(means) <= 1 else np.empty((0, len(means) + groups))
    rows = [slopes, mu, new_site]
    return {
        "statistics": statistics,
        "y": data["y"].to_numpy(float),
        "fixed_design": fixed_design,
        "prior_mean": [0.0] * len(means),
        "prior_sd": [mu_prior_sd] * len(means),
        "group_design": group_design,
        "combinations": np.vstack(rows),
        "names": [*statistics.index, *means, *(["new site"] * len(new_site))],
        "new_group": np.array([False] * (groups + len(means)) + [True] * len(new_site)),
    }


def tau_log_likelihood(
    data: pd.DataFrame, tau, sigma_prior: ScalePrior, mu_prior_sd: float | None, sigma_points: int = 600
) -> np.ndarray:
    """log p(y | tau) of the slope model at each value of `tau`: the likelihood of the spread of the site slopes,
    with the slopes, mu (its Normal(0, mu_prior_sd) prior, or 0) and sigma (its prior) integrated out.

    The same cross-products and conditional Gaussians as `partial_pooling_posterior`, so that this times the prior
    of tau is, up to a constant, the posterior of tau that it computes. The integral over sigma is a sum over a log
    grid of `sigma_points` spanning twelve decades around the data's scale and the prior's.
    """
    tau = np.atleast_1d(checks.array("tau", tau, positive=True)).astype(float)
    sigma_points = checks.whole_number("sigma_points", sigma_points, minimum=50, maximum=20000)
    layout = _slope_layout(data, mu_prior_sd)
    cross = _cross_products(layout["y"], layout["fixed_design"], layout["group_design"])
    data_scale = float(np.std(layout["y"])) or 1.0
    sigma, log_sigma_weight = sigma_prior.grid(
        sigma_points, min(sigma_prior.scale, data_scale) * 1e-6, max(sigma_prior.scale, data_scale) * 1e6
    )
    prior = np.asarray(layout["prior_mean"], float), np.asarray(layout["prior_sd"], float)
    log_like, _, _ = _conditional_gaussians(cross, prior, sigma, tau, layout["combinations"][:0])
    return special.logsumexp(log_like + log_sigma_weight[:, None], axis=0)


# The 95% likelihood interval of one parameter: where its log-likelihood is within chi2_1(0.95) / 2 of its maximum.
LIKELIHOOD_DROP = float(stats.chi2.ppf(0.95, 1) / 2)


def tau_likelihood_peak(data: pd.DataFrame, sigma_prior: ScalePrior, mu_prior_sd: float | None) -> tuple[float, float]:
    """Where the likelihood of tau (`tau_log_likelihood`) peaks, and its log there.

    A log grid over twelve decades around the data's scale finds the highest point, and a bounded search in log tau
    between its neighbours refines it to 1e-6, so every chapter that quotes the peak, or a log-likelihood relative to
    it, quotes the same number whatever grid it draws. A likelihood that rises all the way down to the grid's lowest
    tau (slopes closer than their noise) peaks there.
    """
    from scipy import optimize

    scale = float(np.std(data["y"])) or 1.0
    grid = np.geomspace(scale * 1e-6, scale * 1e6, 241)
    values = tau_log_likelihood(data, grid, sigma_prior, mu_prior_sd)
    best = int(np.argmax(values))
    if best in (0, len(grid) - 1):
        return float(grid[best]), float(values[best])
    search = optimize.minimize_scalar(
        lambda log_tau: -tau_log_likelihood(data, np.exp(log_tau), sigma_prior, mu_prior_sd)[0],
        bounds=(np.log(grid[best - 1]), np.log(grid[best + 1])),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(search.x)), float(-search.fun)


def tau_likelihood_interval(
    data: pd.DataFrame, sigma_prior: ScalePrior, mu_prior_sd: float | None, drop: float = LIKELIHOOD_DROP
) -> dict[str, float]:
    """The spread the data show: the peak of the likelihood of tau and the range around it where the log-likelihood
    is within `drop` of its maximum (by default the 95% likelihood interval). An end the likelihood never falls below
    the line within twelve decades of the data's scale is 0 (below) or infinite (above).

    How much posterior mass a model puts in this range (`_ScaleSummaries.probability_between`) is how far the data
    get through its prior on tau.
    """
    from scipy import optimize

    peak, top = tau_likelihood_peak(data, sigma_prior, mu_prior_sd)
    scale = float(np.std(data["y"])) or 1.0

    def excess(log_tau):  # how far above the line the log-likelihood lies
        return tau_log_likelihood(data, np.exp(log_tau), sigma_prior, mu_prior_sd)[0] - (top - drop)

    ends = {}
    for name, far in (("low", scale * 1e-6), ("high", scale * 1e6)):
        if excess(np.log(far)) > 0:
            ends[name] = 0.0 if name == "low" else np.inf
        else:
            ends[name] = float(np.exp(optimize.brentq(excess, np.log(far), np.log(peak), xtol=1e-8)))
    return {"peak": peak, "low": ends["low"], "high": ends["high"], "drop": drop}


def _mass_range(values, mass, tail=1e-10, margin=2):
    """The part of a grid that holds all but `tail` of the mass, `margin` grid steps wider on each side."""
    cumulative = np.cumsum(mass)
    first = max(int(np.searchsorted(cumulative, tail)) - margin, 0)
    last = min(int(np.searchsorted(cumulative, 1 - tail)) + margin, len(values) - 1)
    return values[first], values[last]


FLOATING_POINT_FAILURE = (
    "data: the exact posterior cannot be computed in floating point: y barely varies, or y, the designs and the "
    "priors differ in scale by many orders of magnitude; rescale them toward 1"
)


def _mixture_interval(cell, means, sds, probability, mass_kept=1 - 1e-7):
    """Central interval of each group's slope: a mixture of normals over the grid cells that carry the mass."""
    order = np.argsort(cell.ravel())[::-1]
    keep = order[: np.searchsorted(np.cumsum(cell.ravel()[order]), mass_kept) + 1]
    weights = cell.ravel()[keep] / cell.ravel()[keep].sum()
    means, sds = means.reshape(-1, means.shape[-1])[keep], sds.reshape(-1, sds.shape[-1])[keep]
    tail = (1 - probability) / 2
    return mixture_quantile(weights, means, sds, tail), mixture_quantile(weights, means, sds, 1 - tail)


def mixture_quantile(weights, means, sds, level: float) -> np.ndarray:
    """The `level` quantile of each column's mixture of normals, sum_c weights[c] N(means[c, k], sds[c, k]).

    All columns at once: Newton steps on the mixture's distribution function, kept inside a bracket that
    shrinks every step (a bisection where Newton would leave it), to 1e-7 of each column's smallest sd.
    """
    means, sds = np.atleast_2d(means), np.atleast_2d(sds)
    low, high = (means - 10 * sds).min(0), (means + 10 * sds).max(0)
    tolerance = 1e-7 * sds.min(0)  # relative to the slope's own scale, which may be far from 1
    # Start at the quantile of the normal with the mixture's mean and sd: close, so a few Newton steps finish.
    mean = weights @ means
    value = mean + special.ndtri(level) * np.sqrt(weights @ (sds**2 + means**2) - mean**2)
    value = np.clip(value, low, high)
    for _ in range(200):
        standard = (value - means) / sds
        excess = weights @ special.ndtr(standard) - level
        density = weights @ (np.exp(-0.5 * standard**2) / (np.sqrt(2 * np.pi) * sds))
        low, high = np.where(excess < 0, value, low), np.where(excess > 0, value, high)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = value - excess / density
        inside = np.isfinite(step) & (step > low) & (step < high)
        new = np.where(inside, step, (low + high) / 2)
        converged = np.abs(new - value) < tolerance
        value = new
        if converged.all():
            return value
    raise RuntimeError("the quantile of a mixture of normals did not converge")  # never seen: bisection halves


def _scale_prior(prior, where: str) -> ScalePrior:
    """The ScalePrior equal to a Bambi prior on a positive scale (HalfNormal, HalfCauchy or HalfStudentT, or the
    narrow Uniform that fixes a scale, or a constant); `where` names the scale in the error for any other prior."""
    if not hasattr(prior, "args"):  # a constant, as Bambi takes priors={"sigma": 1.5}
        return ScalePrior("fixed", checks.number(where, prior, positive=True))
    arguments = {key: float(value) for key, value in prior.args.items()}  # Bambi may hold 0-d arrays
    if prior.name == "HalfNormal":
        return ScalePrior("halfnormal", arguments["sigma"])
    if prior.name == "HalfCauchy":
        return ScalePrior("halfcauchy", arguments["beta"])
    if prior.name == "HalfStudentT":
        return ScalePrior("halfstudentt", arguments["sigma"], nu=arguments["nu"])
    if prior.name == "Uniform" and arguments["upper"] - arguments["lower"] < 0.01 * arguments["upper"]:
        # How the book fixes a scale in Bambi (models.FIXED_GROUP_SD): a uniform this narrow is its midpoint to
        # well within Monte Carlo error.
        return ScalePrior("fixed", (arguments["lower"] + arguments["upper"]) / 2)
    raise ValueError(
        f"the exact engine has no quadrature for a {prior} prior (on {where}); use HalfNormal, HalfCauchy or "
        "HalfStudentT"
    )


def exact_priors(model, slope: str = "x", group: str = "site") -> tuple[ScalePrior, ScalePrior, float | None]:
    """The priors of a Bambi slope model `y ~ 0 + [x +] (0 + x | site)`, as `partial_pooling_posterior` takes them.

    Returns (tau prior, sigma prior, sd of mu's Normal(0, sd) prior, or None when the formula has no common slope
    and mu is fixed at 0), so every hierarchical model of Part I can be checked against the exact engine. A model
    with a noise sd per site (`sigma ~ 0 + site`, log link, a Normal(m, s) prior on each log sigma_j) gives the
    LogNormal prior of each sigma_j: pass `noise_per_site=True` with it (`has_noise_per_site` tells).
    """
    checks.gaussian_model(model, "exact_priors", sigma_formula=True)
    terms = model.components["mu"].terms
    group_term = f"{slope}|{group}"
    unexpected = set(terms) - {slope, group_term}
    if group_term not in terms or unexpected:
        raise ValueError(
            f"the exact engine handles y ~ 0 + [{slope} +] (0 + {slope} | {group}); this model has terms {list(terms)}"
        )
    deviation = terms[group_term].prior
    if deviation.name != "Normal" or deviation.args["mu"] != 0:
        raise ValueError(f"{group_term} must have a Normal(0, tau) prior, got {deviation}")
    mu_prior_sd = None
    if slope in terms:
        common = terms[slope].prior
        if common.name != "Normal" or common.args["mu"] != 0:
            raise ValueError(f"the common slope {slope} must have a Normal(0, sd) prior, got {common}")
        mu_prior_sd = float(common.args["sigma"])
    tau_prior = _scale_prior(deviation.args["sigma"], f"the sd of {group_term}")
    return tau_prior, _noise_prior(model, group), mu_prior_sd


def has_noise_per_site(model) -> bool:
    """Whether a Bambi model has a distributional formula for sigma (`sigma ~ 0 + site`)."""
    return bool(getattr(model.components["sigma"], "terms", None))


def _noise_prior(model, group: str) -> ScalePrior:
    """The prior of sigma, or of each site's sigma_j in `sigma ~ 0 + site` (log link: Normal on log sigma_j)."""
    component = model.components["sigma"]
    if not has_noise_per_site(model):
        return _scale_prior(component.prior, "sigma")
    terms = component.terms
    if list(terms) != [group] or getattr(component, "intercept_term", None) is not None:
        raise ValueError(
            f"the exact engine handles a noise sd per site as sigma ~ 0 + {group}; got terms {list(terms)}"
        )
    prior = terms[group].prior
    if prior.name != "Normal":
        raise ValueError(f"each log sigma_j must have a Normal prior, got {prior}")
    return ScalePrior("lognormal", float(np.exp(float(prior.args["mu"]))), log_sd=float(prior.args["sigma"]))


def slope_model_draws(result, slope_variable: str) -> dict[str, np.ndarray]:
    """Posterior draws (chain, draw) of every quantity `partial_pooling_posterior` summarises, from an MCMC fit
    of `y ~ 0 + [x +] (0 + x | site)`, named as in its `posterior.summary()`: each site's slope (`slope_variable`:
    "site_slope", or "x|site" without a common slope), "mu" (the common slope, if any), "sigma" (or "sigma[site]"
    for each site with `sigma ~ 0 + site`) and "tau" (unless tau is fixed: a fixed scale has no posterior to
    compare)."""
    posterior = result.idata.posterior
    slopes = posterior[slope_variable].transpose("chain", "draw", ...)
    sites = slopes[slopes.dims[-1]].to_numpy()
    draws = {str(site): slopes.to_numpy()[..., index] for index, site in enumerate(sites)}
    if "x" in posterior:
        draws["mu"] = posterior["x"].to_numpy()
    if has_noise_per_site(result.model):  # Bambi's sigma_site is log sigma_j
        log_sigma = posterior["sigma_site"].transpose("chain", "draw", ...)
        for index, site in enumerate(log_sigma[log_sigma.dims[-1]].to_numpy()):
            draws[f"sigma[{site}]"] = np.exp(log_sigma.to_numpy()[..., index])
    else:
        draws["sigma"] = posterior["sigma"].to_numpy()
    if exact_priors(result.model)[0].kind != "fixed":
        draws["tau"] = posterior["x|site_sigma"].to_numpy()
    return draws


def pooling_rmse(data: pd.DataFrame, partial_means: dict[str, np.ndarray]) -> dict[str, float]:
    """Root-mean-square error against the true slopes (column `true_slope`) of no pooling (each group's
    least-squares slope), complete pooling (the pooled least-squares slope) and each partially pooled estimate
    in `partial_means` ({label: one mean per group, in the order of the data's groups})."""
    least_squares = least_squares_slopes(data)
    groups = least_squares.index.drop("pooled")
    truth = data.groupby("site", observed=True)["true_slope"].first().to_numpy()

    def rmse(estimates):
        return float(np.sqrt(np.mean((np.asarray(estimates, float) - truth) ** 2)))

    return {
        "no pooling": rmse(least_squares.loc[groups, "slope"]),
        "complete pooling": rmse(np.full(len(groups), least_squares.loc["pooled", "slope"])),
        **{label: rmse(means) for label, means in partial_means.items()},
    }


# The explorer's dials. Slopes are spread evenly around -1.5, the centre of the original's 2 and -5.
EXPLORER_DIALS = {
    "points per site": [3, 10, 20, 80],
    "noise sd": [0.5, 1.0, 2.0],
    "number of sites": [2, 8],
    "spread of true slopes": [0.5, 2.0, 7.0],
    # One change at a time: HalfNormal(0.1) and HalfCauchy(0.1) differ in the tail only, HalfNormal(0.1) and
    # HalfNormal(10) in the scale only.
    "prior on tau": ["tau fixed at 0.5", "tau ~ HalfNormal(0.1)", "tau ~ HalfCauchy(0.1)", "tau ~ HalfNormal(10)"],
}
EXPLORER_TAU_PRIORS = {
    "tau fixed at 0.5": ScalePrior("fixed", 0.5),
    "tau ~ HalfNormal(0.1)": ScalePrior("halfnormal", 0.1),
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


def many_sites_data(
    seed: int,
    sizes=(2, 100),
    number_of_sites: int = 40,
    mean: float = -1.5,
    sd: float = 1.0,
    clusters: bool = False,
):
    """Chapter 5's many sites of unequal size: `number_of_sites` sites with log-evenly spaced sizes between
    `sizes`, true slopes drawn from N(mean, sd), x sd 0.5 and noise sd 1. Each site's name gives its size.
    The same seed gives the same data; different seeds give independent replicates.

    `clusters=True` draws the slopes from a population the hierarchical model does not assume: two clusters, the
    sites alternating between them (column `cluster`), each slope its cluster's centre plus N(0, 0.3 sd), the
    centres placed so that the slopes keep mean `mean` and sd `sd`.
    """
    from pooling.data import simulate_sites

    counts = np.geomspace(*sizes, number_of_sites).round().astype(int)
    rng = np.random.default_rng(seed)
    cluster = np.arange(number_of_sites) % 2
    if clusters:
        within = CLUSTER_WITHIN_SD * sd
        true_slopes = mean + np.where(cluster == 1, 1, -1) * np.sqrt(sd**2 - within**2)
        true_slopes = true_slopes + rng.normal(0.0, within, number_of_sites)
    else:
        true_slopes = rng.normal(mean, sd, number_of_sites)
    data = pd.concat(
        simulate_sites(
            [slope],
            int(count),
            EXPLORER_X_SD,
            1.0,
            seed=1000 * seed + index,
            site_names=[f"site {index + 1} ({count} points)"],
        )
        for index, (slope, count) in enumerate(zip(true_slopes, counts, strict=True))
    )
    if clusters:
        data["cluster"] = np.repeat(np.where(cluster == 1, "upper", "lower"), counts)
    data["site"] = pd.Categorical(data["site"], categories=data["site"].unique())
    return data.reset_index(drop=True)


CLUSTER_WITHIN_SD = 0.3  # sd of the slopes within a cluster, in units of the population's sd


def explorer_setting(points_per_site, noise_sd, number_of_sites, spread, tau_prior: str) -> dict:
    """Pooled, unpooled and both partially pooled estimates (mean, 94% central interval, weight) for one setting,
    and the RMSE of each against the true slopes."""
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
    result["rmse"] = pooling_rmse(data, {name: result[name].mean for name in ("toward common slope", "toward zero")})
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


class _ScaleSummaries:
    """What every grid posterior says about its scales (sigma, tau, a sigma per site), from `scale_mass`."""

    scale_names: tuple[str, ...] = ()

    def scale_mass(self, scale: str) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def scale_summary(self, scale: str, probability: float = 0.94) -> dict[str, float]:
        """Exact posterior mean, sd, median and central interval of a scale (see `scale_summary`)."""
        return scale_summary(*self.scale_mass(scale), probability)

    def scale_mode(self, scale: str) -> float:
        """The mode of a scale's marginal posterior density: the grid cell of highest density (mass over width), refined
        by a parabola through the log density there and at its two neighbours."""
        grid, mass = self.scale_mass(scale)
        with np.errstate(divide="ignore"):
            log_density = np.log(mass) - np.log(np.gradient(grid))
        peak = int(np.clip(np.argmax(log_density), 1, len(grid) - 2))
        (low, centre, high), (left, middle, right) = grid[peak - 1 : peak + 2], log_density[peak - 1 : peak + 2]
        # vertex of the parabola through the three points
        numerator = (centre - low) ** 2 * (middle - right) - (centre - high) ** 2 * (middle - left)
        denominator = (centre - low) * (middle - right) - (centre - high) * (middle - left)
        return float(centre - 0.5 * numerator / denominator) if denominator else float(centre)

    def probability_below(self, scale: str, value: float) -> float:
        """Exact posterior probability that a scale is below `value` (the CDF of `scale_summary`)."""
        return float(_grid_cdf(*self.scale_mass(scale), value))

    def probability_between(self, scale: str, low: float, high: float) -> float:
        """Exact posterior probability that a scale lies between `low` and `high` (say, a likelihood interval)."""
        return self.probability_below(scale, high) - self.probability_below(scale, low)

    def summary(self) -> pd.DataFrame:
        """Mean, sd and 94% central interval of every combination, then of each scale."""
        table = pd.DataFrame({"mean": self.mean, "sd": self.sd, "low": self.low, "high": self.high}, index=self.names)
        for scale in self.scale_names:
            summary = self.scale_summary(scale)
            table.loc[scale] = [summary[column] for column in table.columns]
        return table


@dataclass
class GaussianGridPosterior(_ScaleSummaries):
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
    scale_names = ("sigma", "tau")

    def expect(self, function) -> np.ndarray:
        """Posterior mean of `function(sigma, tau)`, called with sigma of shape (S, 1) and tau of shape (1, T).

        A function that returns more axes after those two (say one per county) gets one mean per entry.
        """
        values = np.asarray(function(self.sigma_grid[:, None], self.tau_grid[None, :]), dtype=float)
        return np.tensordot(self.cell, np.broadcast_to(values, self.cell.shape + values.shape[2:]), axes=2)

    def scale_mass(self, scale: str) -> tuple[np.ndarray, np.ndarray]:
        """The grid of "sigma" or "tau" and its marginal posterior mass on it (summing to 1)."""
        if scale == "sigma":
            return self.sigma_grid, self.cell.sum(1)
        if scale == "tau":
            return self.tau_grid, self.cell.sum(0)
        raise ValueError(f"the scales are 'sigma' and 'tau', not {scale!r}")

    def quantiles(self, function, levels) -> np.ndarray:
        """Quantiles of a scalar `function(sigma, tau)` of both scales (say sigma^2 / tau^2): weighted quantiles
        of its values on the grid, each cell's value placed at the middle of its mass and the distribution function
        interpolated between. For sigma or tau alone use `scale_summary`, which spreads each cell's mass across
        its cell."""
        values = np.broadcast_to(function(self.sigma_grid[:, None], self.tau_grid[None, :]), self.cell.shape).ravel()
        order = np.argsort(values)
        mass = self.cell.ravel()[order]
        return np.interp(levels, np.cumsum(mass) - mass / 2, values[order])

    def interval(self, function, probability: float = 0.94) -> tuple[float, float]:
        """Central interval of a scalar `function(sigma, tau)`."""
        low, high = self.quantiles(function, [(1 - probability) / 2, (1 + probability) / 2])
        return float(low), float(high)


@dataclass
class SiteNoiseGrid(_ScaleSummaries):
    """Exact posterior of the slope model with a noise sd per site, on a grid of (sigma_1, ..., sigma_J, tau).

    `mean`, `sd`, `low`, `high` are indexed by `names` (the sites, "mu" unless fixed at 0, "new site"); `weight` is
    each site's posterior mean weight on its own data; `grids` and `cell` (axes in the order of `scale_names`:
    "sigma[site]" for each site, then "tau") give each scale's exact posterior.
    """

    names: list
    mean: np.ndarray
    sd: np.ndarray
    low: np.ndarray
    high: np.ndarray
    weight: np.ndarray
    grids: list
    cell: np.ndarray
    scale_names: tuple[str, ...] = ()

    def scale_mass(self, scale: str) -> tuple[np.ndarray, np.ndarray]:
        """The grid of one scale and its marginal posterior mass on it (summing to 1)."""
        if scale not in self.scale_names:
            raise ValueError(f"the scales are {list(self.scale_names)}, not {scale!r}")
        axis = self.scale_names.index(scale)
        others = tuple(index for index in range(self.cell.ndim) if index != axis)
        return self.grids[axis], self.cell.sum(axis=others)


# Points per noise sd of the per-site grid (tau gets twice as many): 60 x 60 x 120 cells for two sites.
SITE_NOISE_GRID_POINTS = 60


def site_noise_grid(
    statistics: pd.DataFrame,
    tau_prior: ScalePrior,
    sigma_prior: ScalePrior,
    mu_prior_sd: float | None,
    probability: float = 0.94,
    grid_points: int = SITE_NOISE_GRID_POINTS,
    passes: int = 2,
) -> SiteNoiseGrid:
    """The slope model y_ij ~ N(beta_j x_ij, sigma_j), beta_j ~ N(mu, tau), sigma_j ~ `sigma_prior` independently,
    mu ~ N(0, mu_prior_sd) (or 0), from each site's sufficient statistics (`sufficient_statistics`).

    Given the scales, site j's data say b_j ~ N(mu, tau^2 + sigma_j^2 / S_j) through its least-squares slope, and
    sigma_j alone through its residual sum of squares; mu and the slopes are then Gaussian in closed form, and the
    scales are integrated on a product grid placed in `passes` passes, as in `gaussian_grid_posterior`.
    """
    sites = len(statistics)
    if sites > 3:
        raise ValueError(
            f"a noise sd per site needs a grid with one axis per site: {sites} sites are too many (3 at most)"
        )
    n, sum_xx, slope, rss = (statistics[column].to_numpy(float) for column in ("n", "sum_x_squared", "slope", "rss"))
    axes = sites + 1
    data_scale = float(np.sqrt(rss.sum() / n.sum() + (slope**2 * sum_xx).sum() / n.sum()))
    ranges = [(min(sigma_prior.scale, data_scale) * 1e-3, max(sigma_prior.scale, data_scale) * 1e3)] * sites
    ranges.append((min(tau_prior.scale, data_scale) * 1e-3, max(tau_prior.scale, data_scale) * 1e3))
    for _ in range(passes):
        # tau's heavy tails need the finer grid: its axis gets twice the points of each sigma's.
        points = [grid_points] * sites + [2 * grid_points]
        grids, log_weights = zip(
            *(
                prior.grid(points[axis], *ranges[axis])
                for axis, prior in enumerate([sigma_prior] * sites + [tau_prior])
            ),
            strict=True,
        )

        def along(axis, values):  # values placed on their own axis of the product grid
            return np.reshape(values, [-1 if index == axis else 1 for index in range(axes)])

        sigma, tau = [along(axis, grids[axis]) for axis in range(sites)], along(sites, grids[sites])
        spread = [tau**2 + sigma[j] ** 2 / sum_xx[j] for j in range(sites)]  # variance of b_j given mu
        log_posterior = sum(along(axis, weight) for axis, weight in enumerate(log_weights))
        for j in range(sites):
            log_posterior = (
                log_posterior
                - (n[j] - 1) / 2 * np.log(2 * np.pi * sigma[j] ** 2)
                - rss[j] / (2 * sigma[j] ** 2)
                - 0.5 * np.log(sum_xx[j])
            )
        if mu_prior_sd is None:
            mu_mean, mu_variance = 0.0, 0.0
            for j in range(sites):
                log_posterior = log_posterior - 0.5 * np.log(2 * np.pi * spread[j]) - slope[j] ** 2 / (2 * spread[j])
        else:
            precision = mu_prior_sd**-2 + sum(1 / spread[j] for j in range(sites))
            mu_mean = sum(slope[j] / spread[j] for j in range(sites)) / precision
            mu_variance = 1 / precision
            log_posterior = log_posterior - 0.5 * (
                sites * np.log(2 * np.pi)
                + sum(np.log(spread[j]) for j in range(sites))
                + np.log(mu_prior_sd**2 * precision)
                + sum(slope[j] ** 2 / spread[j] for j in range(sites))
                - precision * mu_mean**2
            )
        cell = np.exp(log_posterior - log_posterior.max())
        cell /= cell.sum()
        ranges = [
            _mass_range(grids[axis], cell.sum(axis=tuple(i for i in range(axes) if i != axis))) for axis in range(axes)
        ]
    shape = cell.shape
    weight = [np.broadcast_to(tau**2 / spread[j], shape) for j in range(sites)]
    means = [weight[j] * slope[j] + (1 - weight[j]) * mu_mean for j in range(sites)]
    variances = [weight[j] * sigma[j] ** 2 / sum_xx[j] + (1 - weight[j]) ** 2 * mu_variance for j in range(sites)]
    names = list(statistics.index)
    if mu_prior_sd is not None:
        means.append(mu_mean)
        variances.append(mu_variance)
        names.append("mu")
    means.append(mu_mean)  # a new site: mu plus an effect drawn from N(0, tau)
    variances.append(mu_variance + tau**2)
    names.append("new site")
    means = np.stack([np.broadcast_to(value, shape) for value in means], axis=-1)
    variances = np.stack([np.broadcast_to(value, shape) for value in variances], axis=-1)
    mean = np.tensordot(cell, means, axes=axes)
    second_moment = np.tensordot(cell, variances + means**2, axes=axes)
    low, high = _mixture_interval(cell, means, np.sqrt(variances), probability)
    return SiteNoiseGrid(
        names=names,
        mean=mean,
        sd=np.sqrt(np.maximum(second_moment - mean**2, 0.0)),
        low=low,
        high=high,
        weight=np.array([np.sum(cell * value) for value in weight]),
        grids=list(grids),
        cell=cell,
        scale_names=(*(f"sigma[{site}]" for site in statistics.index), "tau"),
    )


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
    grid_points: int = 50,
    passes: int = 3,
    new_group=None,
) -> GaussianGridPosterior:
    """The exact posterior of y = X b + Z u + e with b ~ N(m, diag(s^2)), u ~ N(0, tau^2 I), e ~ N(0, sigma^2 I).

    Z has one non-zero per row: a group indicator, times a covariate for varying slopes. Given (sigma, tau) the
    coefficients theta = (b, u) have a Gaussian posterior and y a Gaussian marginal likelihood, in closed form
    (`_conditional_gaussians`), from cross-products computed once. The mass of each grid cell is that likelihood
    times the priors of sigma and tau; each row of `combinations` (a linear combination of theta, columns ordered
    as b then u) then has a posterior that is a mixture of normals over the cells. The grid is placed in `passes`
    passes: the first spans many decades around the prior's and the data's scales, each next one covers only the
    region where the previous one found the mass, with `grid_points` per scale every time. `new_group` flags the
    combinations that also hold the effect of a group not in the data, a fresh draw from N(0, tau) (a new site's
    slope: mu plus that effect).
    """
    checks.instance("sigma_prior", sigma_prior, ScalePrior)
    checks.instance("tau_prior", tau_prior, ScalePrior)
    checks.gaussian_design(y, fixed_design, fixed_prior_mean, fixed_prior_sd, group_design, combinations, names)
    probability, grid_points, passes = checks.grid_settings(probability, grid_points, passes)
    y = np.asarray(y, dtype=float)
    fixed_design = np.asarray(fixed_design, dtype=float).reshape(len(y), -1)
    group_design = np.asarray(group_design, dtype=float).reshape(len(y), -1)
    cross = _cross_products(y, fixed_design, group_design)
    prior = np.asarray(fixed_prior_mean, dtype=float).reshape(-1), np.asarray(fixed_prior_sd, dtype=float).reshape(-1)
    combinations = np.asarray(combinations, dtype=float)
    sigma, tau, log_weight, _ = _place_grid(cross, prior, float(np.std(y)), sigma_prior, tau_prior, grid_points, passes)
    new_group = np.zeros(len(combinations), bool) if new_group is None else np.asarray(new_group, bool)
    log_like, means, variances = _conditional_gaussians(cross, prior, sigma, tau, combinations)
    variances = variances + new_group * tau[None, :, None] ** 2
    cell = _normalised(log_like + log_weight)
    mean = np.einsum("st,stk->k", cell, means)
    # Var = E(Var | cell) + Var(E | cell): not E(x^2) - E(x)^2, which cancels to nonsense when the mean dwarfs the sd
    spread = np.einsum("st,stk->k", cell, variances + (means - mean) ** 2)
    low, high = _mixture_interval(cell, means, np.sqrt(variances), probability)
    return GaussianGridPosterior(list(names), mean, np.sqrt(spread), low, high, sigma, tau, cell)


def _cross_products(y, fixed_design, group_design) -> dict:
    """Everything `_conditional_gaussians` needs from the data: cross-products of X, Z and y, and per group the sums
    that let it form the Schur complement without cancellation. Z may have no columns (a model without groups)."""
    if (np.count_nonzero(group_design, axis=1) > 1).any():
        raise ValueError("group_design must have at most one non-zero per row (each row belongs to one group)")
    groups, fixed = group_design.shape[1], fixed_design.shape[1]
    # Each row's group (-1 where Z is 0, e.g. a basement home under a varying floor slope, or every row of a model
    # without groups)
    group = np.full(len(y), -1)
    if groups:
        group = np.where(group_design.any(axis=1), np.abs(group_design).argmax(axis=1), -1)
    z = group_design[np.arange(len(y)), np.maximum(group, 0)] * (group >= 0) if groups else np.zeros(len(y))
    xx_groups, within_groups = np.zeros((groups, fixed, fixed)), np.zeros((groups, fixed, fixed))
    for index in range(groups):
        rows = group == index
        x_rows, z_rows = fixed_design[rows], z[rows]
        zz = float(z_rows @ z_rows)
        xx_groups[index] = x_rows.T @ x_rows
        if zz > 0:
            # zz * sum of r r' with r = x - (x'z / z'z) z, the part of x that the group's z cannot absorb
            residual = x_rows - np.outer(z_rows, x_rows.T @ z_rows / zz)
            within_groups[index] = zz * residual.T @ residual
    free = fixed_design[group < 0]
    return {
        "xx_free": free.T @ free,
        "xx_groups": xx_groups,
        "within_groups": within_groups,
        "xz": fixed_design.T @ group_design,
        "zz": (group_design**2).sum(0),  # Z'Z is diagonal
        "xy": fixed_design.T @ y,
        "zy": group_design.T @ y,
        "yy": float(y @ y),
        "n": len(y),
    }


def _place_grid(cross, prior, data_scale, sigma_prior, tau_prior, grid_points, passes):
    """The final grid of (sigma, tau), the log quadrature weight of each cell (its priors times its size), and the
    ranges of the first pass (the widest the grid may span).

    The first pass spans many decades around the prior's and the data's scales, each next one covers only the region
    where the previous one found the posterior mass, with `grid_points` per scale every time.
    """
    data_scale = data_scale or 1.0
    sigma_range = (min(sigma_prior.scale, data_scale) * 1e-3, max(sigma_prior.scale, data_scale) * 1e3)
    tau_range = (min(tau_prior.scale, data_scale) * 1e-3, max(tau_prior.scale, data_scale) * 1e3)
    for scale, (low, high) in (("sigma", sigma_range), ("tau", tau_range)):
        # 1 / scale^2 and scale^2 must be finite and non-zero all over the grid (later passes only narrow it).
        if not 1e-150 < low < high < 1e150:
            raise ValueError(
                f"data: y's sd ({data_scale:.3g}) puts the grid of {scale} at {low:.3g} to {high:.3g}, too extreme "
                "for floating point: rescale y (and its priors) toward 1"
            )
    bounds = sigma_range, tau_range
    no_combinations = np.empty((0, len(prior[1]) + len(cross["zz"])))
    for remaining in reversed(range(passes)):
        sigma, tau, log_weight = _grid(sigma_prior, tau_prior, grid_points, sigma_range, tau_range)
        if remaining:
            cell = _normalised(_conditional_gaussians(cross, prior, sigma, tau, no_combinations)[0] + log_weight)
            sigma_range, tau_range = _mass_range(sigma, cell.sum(1)), _mass_range(tau, cell.sum(0))
    return sigma, tau, log_weight, bounds


def _grid(sigma_prior, tau_prior, grid_points, sigma_range, tau_range):
    """The grid of (sigma, tau) over the two ranges and the log quadrature weight of each cell; `grid_points` is one
    number for both scales or a pair."""
    sigma_points, tau_points = grid_points if isinstance(grid_points, tuple) else (grid_points, grid_points)
    sigma, log_sigma_weight = sigma_prior.grid(sigma_points, *sigma_range)
    tau, log_tau_weight = tau_prior.grid(tau_points, *tau_range)
    return sigma, tau, log_sigma_weight[:, None] + log_tau_weight[None, :]


def _widened(values, masses, bounds, tail=1e-8, margin=2, steps=4):
    """A log-spaced grid's range and number of points, widened at its own spacing on the side where some posterior in
    `masses` (one row each, the full data's first) puts more mass in the `margin` cells at that edge than the full
    data's (tenfold, or `tail`, which bounds the relative error of a predictive density that the edge causes), so
    that the edge no longer cuts it: as many steps as it came inside the margin and `steps` more, never past `bounds`.
    The grid as it is when every posterior lies inside. (The full data's own mass may touch the low edge of a group
    sd, whose first cell integrates down to 0.)"""
    if len(values) == 1:  # a fixed scale
        return (values[0], values[0]), 1
    low_mass = masses[:, :margin].sum(1)
    high_mass = masses[:, -margin:].sum(1)
    cumulative = np.cumsum(masses, axis=-1)
    ratio = values[1] / values[0]
    low, high, points = values[0], values[-1], len(values)
    if (low_mass[1:] > max(tail, 10 * low_mass[0])).any() and low > bounds[0]:
        first = int((cumulative[1:] > tail).argmax(axis=-1).min())
        extra = max(margin - first, 0) + steps
        low, points = low / ratio**extra, points + extra
    if (high_mass[1:] > max(tail, 10 * high_mass[0])).any() and high < bounds[1]:
        last = int((cumulative[1:] >= 1 - tail).argmax(axis=-1).max())
        extra = max(last - (len(values) - 1 - margin), 0) + steps
        high, points = high * ratio**extra, points + extra
    return (low, high), points


def _normalised(log_mass):
    """Cell masses summing to 1 from their logs."""
    cell = np.exp(log_mass - log_mass.max())
    return cell / cell.sum()


def _conditional_gaussians(cross, prior, sigma, tau, combinations):
    """For each (sigma, tau) cell: log p(y | sigma, tau), and the mean and variance of each combination c'theta
    given (sigma, tau, y).

    The posterior precision of theta = (b, u) is [[A, B], [B', D]] with A = X'X / sigma^2 + diag(1 / s^2),
    B = X'Z / sigma^2 and D = Z'Z / sigma^2 + I / tau^2 diagonal, so u is eliminated in closed form and only the
    Schur complement S = A - B D^-1 B' (as many rows as b) is factored: log|precision| = log|D| + log|S|,
    E(b) = S^-1 (r_b - B D^-1 r_u), E(u) = D^-1 (r_u - B' E(b)), and for c = (c_b, c_u),
    Var(c'theta) = g' S^-1 g + sum(c_u^2 / D) with g = c_b - B D^-1 c_u.
    """
    prior_mean, prior_sd = prior
    fixed = len(prior_sd)
    noise_variance = sigma[:, None, None] ** 2  # axes: sigma, tau, then the model's
    group_variance = tau[None, :, None] ** 2
    d = cross["zz"] / noise_variance + 1 / group_variance
    b = cross["xz"] / noise_variance[..., None]
    # A - B D^-1 B' group by group, as [(z'z X'X - X'z z'X) tau^2 / sigma^2 + X'X] / (z'z tau^2 + sigma^2): the
    # textbook form subtracts two nearly equal matrices when tau is large and sigma small, and loses positive
    # definiteness; and with both scales small, sigma^4 or sigma^2 tau^2 would underflow to 0, so neither is formed.
    variance_ratio = (tau[None, :, None] / sigma[:, None, None]) ** 2
    per_group = (cross["within_groups"] * variance_ratio[..., None, None] + cross["xx_groups"]) / (
        cross["zz"] * group_variance + noise_variance
    )[..., None, None]
    schur = cross["xx_free"] / noise_variance[..., None] + np.diag(prior_sd**-2) + per_group.sum(axis=2)
    shift_b = cross["xy"] / noise_variance + prior_mean / prior_sd**2
    shift_u = cross["zy"] / noise_variance
    try:
        cholesky = np.linalg.cholesky(schur)
    except np.linalg.LinAlgError:  # lost to rounding: sigma far below the scale of the designs and the priors
        raise ValueError(FLOATING_POINT_FAILURE) from None
    mean_b = np.linalg.solve(schur, (shift_b - np.einsum("stpj,stj->stp", b, shift_u / d))[..., None])[..., 0]
    mean_u = (shift_u - np.einsum("stpj,stp->stj", b, mean_b)) / d
    log_det_precision = np.log(d).sum(-1) + 2 * np.log(np.diagonal(cholesky, axis1=-2, axis2=-1)).sum(-1)
    log_prior_precision = -np.log(prior_sd**2).sum() - d.shape[-1] * np.log(group_variance[..., 0])
    log_like = (
        -cross["n"] / 2 * np.log(2 * np.pi * noise_variance[..., 0])
        - 0.5 * cross["yy"] / noise_variance[..., 0]
        + 0.5 * log_prior_precision
        - 0.5 * log_det_precision
        + 0.5 * ((shift_b * mean_b).sum(-1) + (shift_u * mean_u).sum(-1))
        - 0.5 * float(prior_mean**2 @ prior_sd**-2)
    )
    c_b, c_u = combinations[:, :fixed], combinations[:, fixed:]
    means = mean_b @ c_b.T + mean_u @ c_u.T
    if not len(combinations):  # the likelihood alone (a grid pass, a marginal likelihood): no inverse needed
        return log_like, means, means
    g = c_b - np.swapaxes((b / d[..., None, :]) @ c_u.T, -1, -2)
    variances = np.einsum("stkp,stpq,stkq->stk", g, np.linalg.inv(schur), g, optimize=True) + (1 / d) @ (c_u**2).T
    return log_like, means, variances


# The prior sd that `varying_intercept_posterior(..., flat=True)` gives every coefficient: flat for any data on the
# scale of log radon, and still a proper prior, so the engine's algebra is unchanged.
FLAT_PRIOR_SD = 1e6


def varying_intercept_posterior(
    model, probability: float = 0.94, grid_points: int = 50, passes: int = 3, given=None, flat: bool = False
) -> GaussianGridPosterior:
    """The exact posterior of a Bambi model `y ~ 1 + terms + (1 | group)`, Gaussian, with Bambi's own priors (or of a
    model without the group term, such as complete or no pooling: then "tau" is a fixed placeholder).

    Reads the design, the response and every prior off the model, so the exact posterior is of the model the
    sampler fits. Bambi sets all of them when the model is created: the PyMC graph (`model.build()`) is not
    needed. The combinations returned are named in `_varying_intercept_layout`.

    Two changes of one thing each, for comparisons: `given` ({"sigma": 0.73, "tau": 0.32}) fixes those scales
    instead of integrating over their priors, and `flat` puts a flat prior (`FLAT_PRIOR_SD`) on every coefficient.
    With both, the posterior mean is generalised least squares at those scales.

    Any other model is refused by name (`checks.varying_intercept_model`): another family or link, no group term
    or more than one, a varying slope, a categorical predictor, a prior other than Normal on a coefficient.
    """
    checks.grid_settings(probability, grid_points, passes)
    layout = _varying_intercept_layout(model)
    given = dict(given or {})
    unknown = set(given) - {"sigma", "tau"}
    if unknown:
        raise ValueError(f"given fixes the scales 'sigma' and 'tau', not {sorted(unknown)}")
    scale_priors = {
        name: ScalePrior("fixed", checks.number(f"given[{name!r}]", given[name], positive=True))
        if name in given
        else layout[f"{name}_prior"]
        for name in ("sigma", "tau")
    }
    prior_sd = np.full_like(layout["prior_sd"], FLAT_PRIOR_SD) if flat else layout["prior_sd"]
    return gaussian_grid_posterior(
        model.response_component.term.data,
        layout["fixed_design"],
        layout["prior_mean"],
        prior_sd,
        layout["group_design"],
        scale_priors["sigma"],
        scale_priors["tau"],
        layout["combinations"],
        layout["names"],
        probability,
        grid_points,
        passes,
    )


def held_out_elpd(model, held_out, grid_points: int = 50, passes: int = 3) -> pd.Series:
    """Exact log predictive density of each held-out set of rows given all the others, log p(y_S | y_-S), for a
    Bambi model that `varying_intercept_posterior` handles: one value per label of `held_out`, which labels every
    row (its row number for leave-one-out, its county for leave-one-county-out). The column "jointly" of
    `held_out_scores`, which says how it is computed."""
    return held_out_scores(model, held_out, grid_points, passes)["jointly"]


def held_out_scores(model, held_out, grid_points: int = 50, passes: int = 3) -> pd.DataFrame:
    """Two exact scores of each held-out set of rows S given all the others, one row per label of `held_out` (which
    labels every row: its row number for leave-one-out, its county for leave-one-county-out), for a Bambi model that
    `varying_intercept_posterior` handles:

    - "jointly": log p(y_S | y_-S), the rows predicted together. For a county left out, its homes share its unknown
      level, so the first of them tell the others where it lies (log p(y_S) = sum_i log p(y_i | y_-S, y_1..y_i-1)).
    - "one at a time": sum over i in S of log p(y_i | y_-S), each row predicted from the other sets alone, as one
      home of a new county would be.

    A single row has one score: both columns agree. Given (sigma, tau) everything is Gaussian, and (sigma, tau) is
    integrated by quadrature on the grid placed for the full data. The model stays the one built on all the data
    (Bambi's data-scaled priors and its centring), so leaving rows out gives the same model fewer data; a group left
    out entirely keeps its prior N(0, tau), so its rows are predicted as a new group's. A set of several rows is
    scored jointly by the ratio of two marginal likelihoods, p(y_S | y_-S) = p(y) / p(y_-S), and one at a time by
    each row's normal predictive given y_-S and (sigma, tau), averaged over the posterior of (sigma, tau) given
    y_-S; a single row has a closed form (`_one_row_elpd`), which gives the same.
    """
    layout = _varying_intercept_layout(model)
    y = np.asarray(model.response_component.term.data, dtype=float)
    held_out = np.asarray(held_out)
    if held_out.shape != y.shape:
        raise ValueError(
            f"held_out must label each of the {len(y)} rows of the model's data, got shape {held_out.shape}"
        )
    fixed_design, group_design = layout["fixed_design"], layout["group_design"]
    design = np.column_stack([fixed_design, group_design])
    prior = layout["prior_mean"], layout["prior_sd"]
    scales = layout["sigma_prior"], layout["tau_prior"]
    cross = _cross_products(y, fixed_design, group_design)
    sigma, tau, log_weight, bounds = _place_grid(cross, prior, float(np.std(y)), *scales, grid_points, passes)
    labels, first, counts = np.unique(held_out, return_index=True, return_counts=True)
    order = np.argsort(first)  # labels in order of appearance
    labels, first, counts = labels[order], first[order], counts[order]
    rows_of = [] if (counts == 1).all() else [np.flatnonzero(held_out == label) for label in labels]
    subsets = [
        _cross_products(np.delete(y, rows), np.delete(fixed_design, rows, 0), np.delete(group_design, rows, 0))
        for rows in rows_of
    ]

    def on_grid(sigma, tau, log_weight):
        """Each held-out set's two scores, and the posterior mass on the grid without it."""
        if not subsets:
            log_elpd, masses = _one_row_elpd(cross, prior, sigma, tau, log_weight, y[first], design[first])
            return log_elpd, log_elpd, masses
        no_combinations = np.empty((0, design.shape[1]))
        log_masses, alone = [_conditional_gaussians(cross, prior, sigma, tau, no_combinations)[0] + log_weight], []
        for part, rows in zip(subsets, rows_of, strict=True):
            log_like, means, variances = _conditional_gaussians(part, prior, sigma, tau, design[rows])
            log_masses.append(log_like + log_weight)
            alone.append(stats.norm.logpdf(y[rows], means, np.sqrt(variances + sigma[:, None, None] ** 2)))
        log_masses = np.stack(log_masses)
        log_evidence = special.logsumexp(log_masses, axis=(1, 2))
        masses = np.exp(log_masses - log_evidence[:, None, None])
        one_at_a_time = np.array(
            [
                special.logsumexp(log_mass[..., None] - evidence + density, axis=(0, 1)).sum()
                for log_mass, evidence, density in zip(log_masses[1:], log_evidence[1:], alone, strict=True)
            ]
        )
        return log_evidence[0] - log_evidence[1:], one_at_a_time, masses

    # The grid is placed for the full data; a posterior without some rows may reach past it (with few data), so the
    # grid is widened, at the same spacing, until it holds every one of them.
    for _ in range(50):
        jointly, one_at_a_time, masses = on_grid(sigma, tau, log_weight)
        sigma_range, sigma_points = _widened(sigma, masses.sum(2), bounds[0])
        tau_range, tau_points = _widened(tau, masses.sum(1), bounds[1])
        if (sigma_points, tau_points) == (len(sigma), len(tau)):
            break
        sigma, tau, log_weight = _grid(*scales, (sigma_points, tau_points), sigma_range, tau_range)
    return pd.DataFrame({"jointly": jointly, "one at a time": one_at_a_time}, index=pd.Index(labels, name="held out"))


def _one_row_elpd(cross, prior, sigma, tau, log_weight, y, rows):
    """log p(y_i | y_-i) for single rows (`rows`: their columns of [X Z]), from one pass over the grid, and the
    posterior mass on the grid of the full data, then without each row.

    Given (sigma, tau) with full-data posterior mean m_i and variance v_i of row i's linear predictor, the row's
    leverage is h_i = v_i / sigma^2 and y_i | y_-i ~ N(y_i - (y_i - m_i) / (1 - h_i), sigma^2 / (1 - h_i)) (the
    Gaussian leave-one-out identity). Over the grid, p(y_i | y_-i) = 1 / E[1 / p(y_i | y_-i, sigma, tau) | y], the
    posterior given y_-i being the full one divided by the left-out row's predictive density.
    """
    log_like, means, variances = _conditional_gaussians(cross, prior, sigma, tau, rows)
    cell = _normalised(log_like + log_weight)
    noise = sigma[:, None, None] ** 2
    kept = 1 - variances / noise
    log_density = stats.norm.logpdf(y, y - (y - means) / kept, np.sqrt(noise / kept))
    with np.errstate(divide="ignore"):  # cells without mass
        log_without = np.log(cell)[..., None] - log_density  # the posterior without each row, unnormalised
    log_elpd = -special.logsumexp(log_without, axis=(0, 1))
    masses = np.exp(np.moveaxis(log_without, -1, 0) + log_elpd[:, None, None])  # and normalised
    return log_elpd, np.concatenate([cell[None], masses])


def varying_intercept_draws(model, idata) -> dict[str, np.ndarray]:
    """Posterior draws (chain, draw) of every quantity `varying_intercept_posterior` summarises, from an MCMC fit
    of the same Bambi model: the same combinations of the same coefficients, then sigma and tau."""
    layout = _varying_intercept_layout(model)
    posterior = idata.posterior
    slopes = [posterior[name].to_numpy() for name in layout["terms"]]
    # Bambi reports the intercept of the uncentred design; the engine's coefficient is the centred one.
    centred_intercept = posterior["Intercept"].to_numpy() + sum(
        value * slope for value, slope in zip(layout["centre"], slopes, strict=True)
    )
    effects = posterior[layout["group_name"]].transpose("chain", "draw", ...).to_numpy()
    coefficients = np.concatenate([np.stack([centred_intercept, *slopes], axis=-1), effects], axis=-1)
    draws = dict(zip(layout["names"], np.moveaxis(coefficients @ layout["combinations"].T, -1, 0), strict=True))
    draws["sigma"] = posterior["sigma"].to_numpy()
    draws["tau"] = posterior[f"{layout['group_name']}_sigma"].to_numpy()
    return draws


def within_between(data: pd.DataFrame, x: str, y: str, group: str, sigma=None, tau=None) -> dict[str, float]:
    """The slope of y on x in a model with one intercept per group, split into what it learns within groups and
    what it learns between them.

    Within: W = sum (x - xbar_j)^2 and beta_W = sum (x - xbar_j)(y - ybar_j) / W, the slope with a free intercept
    per group (no pooling). Between: the regression of the group means ybar_j on xbar_j, with an intercept and
    weights n_j lambda_j, has slope beta_B and B = sum n_j lambda_j (xbar_j - the weighted mean of xbar)^2. The
    model's slope is the weighted average (W beta_W + B beta_B) / (W + B): with lambda_j = 1 it is complete pooling's
    least squares; with lambda_j = sigma^2 / (sigma^2 + n_j tau^2), the share of the variance of ybar_j that is
    noise, it is partial pooling's generalised least squares given sigma and tau (flat priors on the coefficients).
    """
    checks.frame("data", data, [x, y, group])
    by_group = data.groupby(group, observed=True)
    x_mean, y_mean = by_group[x].transform("mean"), by_group[y].transform("mean")
    within_xx = float(((data[x] - x_mean) ** 2).sum())
    within = float(((data[x] - x_mean) * (data[y] - y_mean)).sum()) / within_xx
    sizes, x_means, y_means = by_group.size().to_numpy(), by_group[x].mean().to_numpy(), by_group[y].mean().to_numpy()
    noise_share = 1.0 if sigma is None else sigma**2 / (sigma**2 + sizes * tau**2)
    weights = sizes * noise_share
    x_centre, y_centre = np.average(x_means, weights=weights), np.average(y_means, weights=weights)
    between_xx = float(weights @ (x_means - x_centre) ** 2)
    between = float(weights @ ((x_means - x_centre) * (y_means - y_centre))) / between_xx
    within_weight = within_xx / (within_xx + between_xx)
    return {
        "within": within,
        "between": between,
        "within weight": within_weight,
        "slope": within_weight * within + (1 - within_weight) * between,
    }


# How far an MCMC estimate may lie from the exact value, in MCSEs: one bound for every comparison in the book. With
# about 350 estimates compared per radon model (means and sds of every county level and effect, the coefficients,
# sigma and tau), a correct sampler puts one beyond 4.5 MCSEs with probability about 350 * 6.8e-6 = 0.24%; the
# smaller Part I comparisons are stricter still at the same bound.
MCSE_BOUND = 4.5


def exact_against_mcmc(exact: pd.DataFrame, draws: dict[str, np.ndarray]) -> pd.DataFrame:
    """Each quantity's exact posterior mean and sd beside the MCMC estimates, and their differences in MCSEs.

    `exact` has columns mean and sd indexed by name (a `GaussianGridPosterior.summary()`); `draws` maps each name
    to compare to its MCMC draws (chain, draw): `varying_intercept_draws` for the radon models, `slope_model_draws`
    for Part I's. `z_mean` = (MCMC mean - exact mean) / MCSE of the mean, `z_sd` likewise for the sd: if the
    sampler is right these are draws from about N(0, 1), so the largest of a few hundred is rarely beyond 4.
    """
    import arviz as az

    reference = exact.loc[list(draws)]
    # One summary for all (arviz's own mcse(method="sd") fails under numba with this numpy; its summary does not).
    mcmc = az.summary(az.convert_to_dataset(draws), kind="diagnostics", round_to="none").loc[list(draws)]
    means = pd.Series({name: float(values.mean()) for name, values in draws.items()})
    sds = pd.Series({name: float(values.std()) for name, values in draws.items()})
    return pd.DataFrame(
        {
            "exact mean": reference["mean"],
            "MCMC mean": means,
            "MCSE of mean": mcmc["mcse_mean"],
            "z_mean": (means - reference["mean"]) / mcmc["mcse_mean"],
            "exact sd": reference["sd"],
            "MCMC sd": sds,
            "MCSE of sd": mcmc["mcse_sd"],
            "z_sd": (sds - reference["sd"]) / mcmc["mcse_sd"],
        }
    )


def _varying_intercept_layout(model) -> dict:
    """The Gaussian linear model inside a built Bambi model `y ~ [1 +] terms [+ (1 | group)]`, with its priors.

    Bambi centres the common predictors when the model has an intercept, puts its intercept prior on the
    intercept of the centred design, and reports the intercept of the uncentred one; the coefficients here are
    Bambi's: the centred intercept (if any), the columns of the common terms (a categorical term such as the
    `county` of `0 + county + floor` has one per level), then the group effects (if any). The combinations, by
    name as in Bambi's posterior: "Intercept" (uncentred) and each common term's coefficient ("floor",
    "county[AITKIN]"), and with a group term each group's effect ("1|group[level]") and each group's level
    ("level[level]"): the intercept plus the group's effect plus the terms that are constant within every group
    (group-level predictors such as log uranium), i.e. the expected response of a unit whose other predictors are
    0 (for radon, a basement home). A model without a group term gets a Z with no columns and a tau fixed at 1,
    which then plays no part.
    """
    checks.varying_intercept_model(model)
    component = model.components["mu"]
    group_terms = component.group_specific_terms
    (group_name, group_term), *_ = list(group_terms.items()) or [(None, None)]
    terms = dict(component.common_terms)
    intercept = component.intercept_term
    priors = ({"Intercept": intercept.prior} if intercept is not None else {}) | {
        name: term.prior for name, term in terms.items()
    }
    rows = len(model.response_component.term.data)
    columns = [np.asarray(term.data, float).reshape(rows, -1) for term in terms.values()]
    predictors = np.column_stack(columns) if terms else np.empty((rows, 0))
    column_names = [
        name if data.shape[1] == 1 else f"{name}[{level}]"
        for (name, term), data in zip(terms.items(), columns, strict=True)
        for level in (term.levels if data.shape[1] > 1 else [None])
    ]
    widths = [1] * (intercept is not None) + [data.shape[1] for data in columns]
    prior_mean, prior_sd = (
        np.concatenate(
            [
                np.broadcast_to(np.asarray(prior.args[key], float), width)
                for prior, width in zip(priors.values(), widths, strict=True)
            ]
        )
        for key in ("mu", "sigma")
    )
    centred = intercept is not None and model.center_predictors
    centre = predictors.mean(0) if centred else np.zeros(predictors.shape[1])
    if group_term is None:
        group_design, levels = np.zeros((rows, 0)), []
        tau_prior = ScalePrior("fixed", 1.0)
    else:
        group_design = group_term.data  # Bambi keeps it sparse
        group_design = np.asarray(group_design.toarray() if hasattr(group_design, "toarray") else group_design, float)
        levels = [str(level) for level in group_term.groups]
        tau_prior = _scale_prior(group_term.prior.args["sigma"], f"the sd of {group_name}")
    fixed, groups = (intercept is not None) + predictors.shape[1], group_design.shape[1]
    coefficient = np.eye(fixed + groups)[fixed - predictors.shape[1] : fixed]
    combinations, names = [coefficient], column_names
    if intercept is not None:
        uncentred_intercept = np.concatenate([[1.0], -centre, np.zeros(groups)])
        combinations, names = [uncentred_intercept[None, :], coefficient], ["Intercept", *column_names]
    if groups:
        membership = group_design.argmax(1)
        per_group = predictors[np.unique(membership, return_index=True)[1]]  # each term's value in a group's first unit
        constant_within_group = np.all(np.isclose(predictors, per_group[membership]), axis=0)
        effect = np.eye(fixed + groups)[fixed:]
        level = uncentred_intercept + effect + (per_group * constant_within_group) @ coefficient
        combinations += [effect, level]
        names += [*(f"{group_name}[{name}]" for name in levels), *(f"level[{name}]" for name in levels)]
    intercept_column = [np.ones((rows, 1))] if intercept is not None else []
    return {
        "fixed_design": np.column_stack([*intercept_column, predictors - centre]),
        "prior_mean": prior_mean,
        "prior_sd": prior_sd,
        "group_design": group_design,
        "sigma_prior": _scale_prior(model.components["sigma"].prior, "sigma"),
        "tau_prior": tau_prior,
        "combinations": np.vstack(combinations),
        "names": names,
        "terms": list(terms),
        "centre": centre,
        "group_name": group_name,
    }


def measured_groups_posterior(
    estimates, standard_errors, tau_prior: ScalePrior, mu_prior: tuple[float, float], names, probability: float = 0.94
) -> GaussianGridPosterior:
    """The exact posterior of groups measured with known standard errors (Rubin's eight schools): estimate_j ~
    N(theta_j, se_j), theta_j ~ N(mu, tau), mu ~ N(mu_prior): the general engine with one observation per group,
    divided by its standard error so that the noise sd is 1 and known. Names: each group's theta, then "mu"."""
    estimates, errors = np.asarray(estimates, float), checks.array("standard_errors", standard_errors, positive=True)
    groups = len(estimates)
    thetas = np.column_stack([np.ones(groups), np.eye(groups)])  # theta_j = mu + u_j
    return gaussian_grid_posterior(
        estimates / errors,
        1 / errors,
        [mu_prior[0]],
        [mu_prior[1]],
        np.diag(1 / errors),
        ScalePrior("fixed", 1.0),
        tau_prior,
        np.vstack([thetas, np.eye(1, groups + 1)]),
        [*names, "mu"],
        probability,
        grid_points=400,
    )


def state_level_likelihood(data: pd.DataFrame, floor, county_sd, sigma) -> pd.DataFrame:
    """The likelihood of each state's level in chapter 9's three-level model (`models.three_levels`), given the
    other parameters: Gaussian, with an `estimate` and a `standard_error` per state.

    `floor`, `county_sd` and `sigma` are numbers or Series indexed by state. A county's homes inform its state's
    level through their mean less the floor effect times their share above the basement, whose variance is
    county_sd^2 + sigma^2 / n once the county effect is integrated out; the state's estimate is the precision-weighted
    mean of its counties', its standard error one over the root of their summed precision.
    """
    counties = data.groupby("county", observed=True).agg(
        state=("state", "first"), homes=("log_radon", "size"), mean=("log_radon", "mean"), share=("floor", "mean")
    )
    counties["state"] = counties["state"].astype(str)

    def per_county(value):
        return counties["state"].map(value).to_numpy(float) if isinstance(value, pd.Series) else float(value)

    precision = 1 / (per_county(county_sd) ** 2 + per_county(sigma) ** 2 / counties["homes"])
    adjusted = counties["mean"] - per_county(floor) * counties["share"]
    sums = pd.DataFrame({"state": counties["state"], "weight": precision, "weighted": precision * adjusted})
    sums = sums.groupby("state")[["weight", "weighted"]].sum()
    return pd.DataFrame({"estimate": sums["weighted"] / sums["weight"], "standard_error": sums["weight"] ** -0.5})


def pymc_prior(model, name: str):
    """The prior of a free variable of a PyMC model as the exact engines take it: (mean, sd) for a Normal, a
    `ScalePrior` for a HalfNormal or HalfCauchy; read from the model, so a computation uses the model's own prior."""
    variable = model[name]
    kind = variable.owner.op._print_name[0]
    parameters = []
    for parameter in variable.owner.op.dist_params(variable.owner):
        (value,) = np.unique(np.asarray(parameter.eval(), dtype=float))  # one value, however many groups share it
        parameters.append(float(value))
    if kind == "Normal":
        return tuple(parameters)
    if kind in ("HalfNormal", "HalfCauchy"):  # PyMC's half-distributions carry a location, 0 here, then the scale
        return ScalePrior(kind.lower(), parameters[-1])
    raise ValueError(f"{name} has a {kind} prior; the exact engines take Normal, HalfNormal or HalfCauchy")

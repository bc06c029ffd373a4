"""The exact shrinkage engine against brute-force integration, its limits, MCMC, and its argument checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from pooling.data import simulate_sites, two_sites
from pooling.fitting import fit
from pooling.models import TOY_MODELS
from pooling.shrinkage import (
    EXPLORER_GRID_POINTS,
    MCSE_BOUND,
    ScalePrior,
    _scale_prior,
    conditional_slope_posterior,
    exact_against_mcmc,
    exact_priors,
    explorer_data,
    explorer_setting,
    least_squares_slopes,
    many_sites_data,
    partial_pooling_posterior,
    pooling_rmse,
    scale_summary,
    shrinkage_factor,
)


def brute_force_slope_posterior(x, y, sigma, tau, mu):
    """Mean and variance of beta from the unnormalised posterior evaluated on a fine grid."""
    slope_hat = (x * y).sum() / (x**2).sum()
    scale = np.sqrt(1 / ((x**2).sum() / sigma**2 + 1 / tau**2))
    grid = np.linspace(min(slope_hat, mu) - 12 * scale, max(slope_hat, mu) + 12 * scale, 40001)
    log_density = stats.norm.logpdf(y[None, :], grid[:, None] * x[None, :], sigma).sum(1)
    log_density += stats.norm.logpdf(grid, mu, tau)
    density = np.exp(log_density - log_density.max())
    density /= density.sum()
    mean = (grid * density).sum()
    return mean, ((grid - mean) ** 2 * density).sum()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    sigma=st.floats(0.2, 3.0),
    tau=st.floats(0.05, 5.0),
    mu=st.floats(-5.0, 5.0),
    slope=st.floats(-6.0, 6.0),
)
def test_closed_form_matches_brute_force(n, seed, sigma, tau, mu, slope):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    y = slope * x + rng.normal(0, sigma, n)
    mean, variance = conditional_slope_posterior((x * y).sum() / (x**2).sum(), (x**2).sum(), sigma, tau, mu)
    expected_mean, expected_variance = brute_force_slope_posterior(x, y, sigma, tau, mu)
    assert mean == pytest.approx(expected_mean, abs=1e-4 * (1 + abs(expected_mean)))
    assert variance == pytest.approx(expected_variance, rel=1e-3)


def test_tau_limits_give_pooled_and_unpooled_estimates():
    sites = simulate_sites(slopes=(2.0, -5.0, 1.0), points_per_site=15, seed=3)
    sigma = ScalePrior("fixed", 1.0)
    least_squares = least_squares_slopes(sites)
    statistics = least_squares.drop("pooled")
    no_pooling = partial_pooling_posterior(sites, ScalePrior("fixed", 1e4), sigma, 10.0)
    np.testing.assert_allclose(no_pooling.mean, statistics["slope"], atol=1e-5)
    complete = partial_pooling_posterior(sites, ScalePrior("fixed", 1e-5), sigma, 1e6)
    # Every slope equals the precision-weighted mean of the site slopes, i.e. the pooled least-squares slope.
    weights = statistics["sum_x_squared"]
    np.testing.assert_allclose(complete.mean, (weights * statistics["slope"]).sum() / weights.sum(), atol=1e-5)
    np.testing.assert_allclose(complete.mean, least_squares.loc["pooled", "slope"], atol=1e-5)
    assert shrinkage_factor(5.0, 1.0, 1e-6) == pytest.approx(0.0, abs=1e-9)
    assert shrinkage_factor(5.0, 1.0, 1e6) == pytest.approx(1.0, abs=1e-9)


def test_more_data_per_site_moves_the_weight_toward_one():
    weights = [shrinkage_factor(sum_xx, 1.0, 0.5) for sum_xx in (0.5, 2, 8, 32, 128)]
    assert np.all(np.diff(weights) > 0) and weights[-1] > 0.95
    integrated = [
        partial_pooling_posterior(
            simulate_sites((1.0, 3.0, -1.0), points, seed=1),
            ScalePrior("halfnormal", 1.0),
            ScalePrior("halfcauchy", 5.0),
            10.0,
        ).weight.mean()
        for points in (3, 30, 300)
    ]
    assert integrated[0] < integrated[1] < integrated[2]


def test_scale_summary_recovers_a_known_distribution():
    """Masses of a log-normal put on a log-spaced grid give back its mean and quantiles (scipy's)."""
    scale = stats.lognorm(s=0.6, scale=2.0)
    grid = np.geomspace(0.05, 80, 160)
    step = np.log(grid[1] / grid[0])
    mass = scale.cdf(grid * np.exp(step / 2)) - scale.cdf(grid * np.exp(-step / 2))
    summary = scale_summary(grid, mass / mass.sum(), probability=0.94)
    assert summary["median"] == pytest.approx(scale.median(), rel=1e-3)
    assert (summary["low"], summary["high"]) == pytest.approx(tuple(scale.ppf([0.03, 0.97])), rel=1e-3)
    assert summary["mean"] == pytest.approx(scale.mean(), rel=1e-3)


@pytest.mark.parametrize("tau_prior", [ScalePrior("halfcauchy", 0.1), ScalePrior("halfnormal", 0.5)])
def test_exact_tau_summary_matches_one_dimensional_integration(tau_prior):
    """With sigma fixed and mu at 0, tau's posterior is prior(tau) * prod_j N(slope_hat_j; 0, tau^2 + sigma^2 / S_j):
    integrate that with scipy's adaptive quadrature, find its quantiles by root-finding, and compare."""
    sites = two_sites()
    sigma = 0.75
    statistics = least_squares_slopes(sites).drop("pooled")
    slope_hat, sum_xx = statistics["slope"].to_numpy(), statistics["sum_x_squared"].to_numpy()

    def density(tau):
        spread = np.sqrt(tau**2 + sigma**2 / sum_xx)
        return np.exp(tau_prior.log_density(tau) + stats.norm.logpdf(slope_hat, 0, spread).sum())

    def mass(low, high, moment=0):
        breaks = {"points": [1, 5]} if np.isfinite(high) and high > 5 else {}
        return integrate.quad(lambda tau: tau**moment * density(tau), low, high, limit=200, **breaks)[0]

    total = mass(0, 200) + mass(200, np.inf)
    mean = (mass(0, 200, 1) + mass(200, np.inf, 1)) / total

    def quantile(level):
        return optimize.brentq(lambda value: mass(0, value) / total - level, 1e-3, 200, xtol=1e-8)

    exact = partial_pooling_posterior(sites, tau_prior, ScalePrior("fixed", sigma), None).posterior.scale_summary("tau")
    assert exact["median"] == pytest.approx(quantile(0.5), rel=2e-3)
    assert (exact["low"], exact["high"]) == pytest.approx((quantile(0.03), quantile(0.97)), rel=3e-3)
    if tau_prior.kind == "halfnormal":  # a half-Cauchy tail makes the mean's integral converge too slowly to compare
        assert exact["mean"] == pytest.approx(mean, rel=2e-3)


def test_exact_priors_read_every_hierarchical_model_of_part_one():
    sites = two_sites()
    assert exact_priors(TOY_MODELS["toy_hierarchical_tight"].build(sites)) == (
        ScalePrior("halfcauchy", 0.1),
        ScalePrior("halfcauchy", 5.0),
        0.1,
    )
    assert exact_priors(TOY_MODELS["toy_hierarchical_fixed_sd"].build(sites)) == (
        ScalePrior("fixed", 0.5),
        ScalePrior("halfcauchy", 5.0),
        1.0,
    )
    default = TOY_MODELS["toy_hierarchical"].build(sites)
    terms, sigma = default.components["mu"].terms, default.components["sigma"].prior
    assert exact_priors(default) == (
        ScalePrior("halfnormal", terms["x|site"].prior.args["sigma"].args["sigma"]),
        ScalePrior("halfstudentt", sigma.args["sigma"], nu=sigma.args["nu"]),
        terms["x"].prior.args["sigma"],
    )
    tau_prior, sigma_prior, mu_prior_sd = exact_priors(TOY_MODELS["toy_hierarchical_zero_mean"].build(sites))
    assert mu_prior_sd is None and tau_prior.kind == "halfnormal" and sigma_prior.kind == "halfstudentt"


def test_exact_priors_refuse_a_model_the_engine_cannot_express():
    with pytest.raises(ValueError, match="has terms"):
        exact_priors(TOY_MODELS["toy_pooled"].build(two_sites()))


def test_many_sites_data_is_the_stated_design_and_reproducible():
    data = many_sites_data(seed=11)
    sizes = data.groupby("site", observed=True).size()
    assert len(sizes) == 40 and sizes.min() == 2 and sizes.max() == 100 and sizes.is_monotonic_increasing
    assert all(name.endswith(f"({size} points)") for name, size in sizes.items())
    assert data.equals(many_sites_data(seed=11)) and not data.equals(many_sites_data(seed=12))
    true_slopes = data.groupby("site", observed=True)["true_slope"].first()
    np.testing.assert_allclose(true_slopes, np.random.default_rng(11).normal(-1.5, 1.0, 40))


def test_rmse_of_the_tau_limits_is_that_of_complete_and_no_pooling():
    sites = simulate_sites(slopes=(2.0, -5.0, 1.0, 0.0), points_per_site=6, seed=8)
    sigma = ScalePrior("fixed", 1.0)
    no_pooling = partial_pooling_posterior(sites, ScalePrior("fixed", 1e4), sigma, 10.0).mean
    complete = partial_pooling_posterior(sites, ScalePrior("fixed", 1e-5), sigma, 1e6).mean
    truth = np.array([2.0, -5.0, 1.0, 0.0])
    rmse = pooling_rmse(sites, {"wide tau": no_pooling, "narrow tau": complete, "truth": truth})
    assert rmse["wide tau"] == pytest.approx(rmse["no pooling"], abs=1e-5)
    assert rmse["narrow tau"] == pytest.approx(rmse["complete pooling"], abs=1e-5)
    assert rmse["truth"] == 0
    pooled_slope = least_squares_slopes(sites).loc["pooled", "slope"]
    assert rmse["complete pooling"] == pytest.approx(np.sqrt(np.mean((pooled_slope - truth) ** 2)))


@pytest.mark.parametrize("mu_prior_sd", [None, 0.7])
def test_analytic_mean_integration_matches_a_numerical_one(mu_prior_sd):
    sites = simulate_sites(slopes=(2.0, -1.0, 0.5, 3.0), points_per_site=5, seed=9)
    sigma, tau = 1.3, 0.8
    exact = partial_pooling_posterior(sites, ScalePrior("fixed", tau), ScalePrior("fixed", sigma), mu_prior_sd)
    statistics = least_squares_slopes(sites).drop("pooled")
    slope_hat, sum_xx = statistics["slope"].to_numpy(), statistics["sum_x_squared"].to_numpy()
    if mu_prior_sd is None:
        mu_grid, mu_weight = np.array([0.0]), np.array([1.0])
    else:
        mu_grid = np.linspace(-8, 8, 20001)
        log_weight = stats.norm.logpdf(mu_grid, 0, mu_prior_sd)
        log_weight += stats.norm.logpdf(slope_hat[None, :], mu_grid[:, None], np.sqrt(tau**2 + sigma**2 / sum_xx)).sum(
            1
        )
        mu_weight = np.exp(log_weight - log_weight.max())
        mu_weight /= mu_weight.sum()
    means, variances = conditional_slope_posterior(slope_hat[None, :], sum_xx, sigma, tau, mu_grid[:, None])
    expected_mean = (mu_weight[:, None] * means).sum(0)
    expected_sd = np.sqrt((mu_weight[:, None] * (variances + means**2)).sum(0) - expected_mean**2)
    np.testing.assert_allclose(exact.mean, expected_mean, atol=1e-6)
    np.testing.assert_allclose(exact.sd, expected_sd, atol=1e-6)


@pytest.mark.parametrize(
    "data",
    [two_sites(), explorer_data(80, 0.5, 8, 2.0), explorer_data(3, 2.0, 8, 7.0)],
    ids=["two sites", "8 sites x 80 points: sharp sigma", "8 sites x 3 points: broad"],
)
@pytest.mark.parametrize("mu_prior_sd", [0.1, None])
def test_grid_is_fine_enough(data, mu_prior_sd):
    """The explorer's grid size gives the same summaries as a grid five times finer."""
    priors = (ScalePrior("halfcauchy", 0.1), ScalePrior("halfcauchy", 5.0), mu_prior_sd)
    coarse = partial_pooling_posterior(data, *priors, grid_points=EXPLORER_GRID_POINTS)
    fine = partial_pooling_posterior(data, *priors, grid_points=5 * EXPLORER_GRID_POINTS)
    np.testing.assert_allclose(coarse.mean, fine.mean, atol=1e-3)
    np.testing.assert_allclose(coarse.sd, fine.sd, rtol=1e-3)
    np.testing.assert_allclose([coarse.low, coarse.high], [fine.low, fine.high], atol=2e-3)


def test_least_squares_matches_statsmodels():
    sites = simulate_sites(slopes=(2.0, -5.0), points_per_site=3, seed=4)
    table = least_squares_slopes(sites)
    for site, frame in [*sites.groupby("site", observed=True), ("pooled", sites)]:
        ols = sm.OLS(frame["y"].to_numpy(), frame[["x"]].to_numpy()).fit()
        low, high = ols.conf_int(alpha=0.06)[0]
        row = table.loc[str(site)]
        assert row["slope"] == pytest.approx(ols.params[0])
        assert row["standard_error"] == pytest.approx(ols.bse[0])
        assert (row["low"], row["high"]) == pytest.approx((low, high))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "variable", "target_accept"),
    [
        ("toy_hierarchical_zero_mean", "x|site", 0.95),
        ("toy_hierarchical", "site_slope", 0.8),
        ("toy_hierarchical_fixed_sd", "site_slope", 0.8),
        ("toy_hierarchical_tight", "site_slope", 0.8),
    ],
)
def test_integrated_posterior_matches_mcmc(model, variable, target_accept):
    """Every hierarchical fit of Part I (from the cache) against the quadrature of the same model: the site slopes'
    means and sds, and tau's mean, within Monte Carlo error."""
    sites = two_sites()
    result = fit(TOY_MODELS[model], sites, target_accept=target_accept)
    summary = result.summary([variable, "x|site_sigma"])
    exact = partial_pooling_posterior(sites, *exact_priors(result.model))
    slopes = summary.loc[[f"{variable}[{site}]" for site in exact.groups]]
    assert (abs(slopes["mean"].to_numpy() - exact.mean) < 4 * slopes["mcse_mean"].to_numpy()).all()
    np.testing.assert_allclose(slopes["sd"], exact.sd, rtol=0.05)
    tau = summary.loc["x|site_sigma"]
    # A fixed tau is a Uniform(0.499, 0.501) in Bambi, whose MCSE is far below the uniform's own offset from 0.5.
    tolerance = 4 * tau["mcse_mean"] if exact.posterior.tau_grid.size > 1 else 1e-3
    assert abs(tau["mean"] - exact.posterior.scale_summary("tau")["mean"]) < tolerance


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"noise_sd": -1.0}, "noise_sd"),
        ({"number_of_sites": 0}, "number_of_sites"),
        ({"points_per_site": 0}, "points_per_site"),
        ({"spread": -2.0}, "spread"),
        ({"tau_prior": "tau ~ Exponential(1)"}, "prior on tau"),
    ],
)
def test_bad_explorer_settings_are_refused(arguments, message):
    setting = {
        "points_per_site": 10,
        "noise_sd": 1.0,
        "number_of_sites": 4,
        "spread": 2.0,
        "tau_prior": "tau ~ HalfNormal(10)",
    } | arguments
    with pytest.raises(ValueError, match=message):
        explorer_setting(**setting)


def test_scale_prior_is_validated():
    with pytest.raises(ValueError, match="positive scale"):
        ScalePrior("halfnormal", -1.0)
    with pytest.raises(ValueError, match="unknown scale prior"):
        ScalePrior("exponential", 1.0)


def test_bambi_scale_priors_are_read_as_scale_priors():
    """Each Bambi prior on a scale becomes the same ScalePrior, a narrow Uniform a fixed scale; others are refused."""
    import bambi as bmb

    assert _scale_prior(bmb.Prior("HalfNormal", sigma=2.0), "tau") == ScalePrior("halfnormal", 2.0)
    assert _scale_prior(bmb.Prior("HalfCauchy", beta=np.array(1.5)), "tau") == ScalePrior("halfcauchy", 1.5)
    student = _scale_prior(bmb.Prior("HalfStudentT", nu=4, sigma=0.5), "tau")
    assert student == ScalePrior("halfstudentt", 0.5, nu=4.0)
    assert _scale_prior(bmb.Prior("Uniform", lower=0.499, upper=0.501), "tau") == ScalePrior("fixed", 0.5)
    with pytest.raises(ValueError, match="on the sd of x|site"):
        _scale_prior(bmb.Prior("Uniform", lower=0.0, upper=5.0), "the sd of x|site")
    with pytest.raises(ValueError, match="Exponential.*on sigma"):
        _scale_prior(bmb.Prior("Exponential", lam=1.0), "sigma")


def test_exact_posterior_scales_with_the_data_without_floating_point_warnings():
    """Multiply y, the prior scales and mu's prior sd by c and every summary is multiplied by c: at c = 1e-100,
    sigma^4 and sigma^2 tau^2 underflow, so this holds only because the engine never forms them."""
    import warnings

    sites, c = two_sites(), 1e-100
    unit = partial_pooling_posterior(sites, ScalePrior("halfnormal", 1.0), ScalePrior("halfcauchy", 2.0), 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        small = partial_pooling_posterior(
            sites.assign(y=sites["y"] * c), ScalePrior("halfnormal", c), ScalePrior("halfcauchy", 2.0 * c), 3.0 * c
        )
    for name in ("mean", "sd", "low", "high"):
        np.testing.assert_allclose(getattr(small, name) / c, getattr(unit, name), rtol=1e-6)
    np.testing.assert_allclose(small.weight, unit.weight, rtol=1e-6)
    summaries = small.posterior.summary() / c, unit.posterior.summary()
    np.testing.assert_allclose(summaries[0].loc[["sigma", "tau"]], summaries[1].loc[["sigma", "tau"]], rtol=1e-6)


def test_data_too_small_for_floating_point_are_refused_by_name():
    sites = two_sites()
    with pytest.raises(ValueError, match="data: y's sd .* rescale y"):
        partial_pooling_posterior(
            sites.assign(y=sites["y"] * 1e-160), ScalePrior("halfnormal", 1.0), ScalePrior("halfcauchy", 1.0), None
        )


def test_exact_against_mcmc_scores_means_and_sds_in_mcse():
    """Independent normal draws against their true mean and sd score near 0; an exact mean off by 10 MCSEs
    (MCSE = sd / sqrt(draws) for independent draws) scores near -10."""
    draws = {"a": np.random.default_rng(1).normal(2.0, 3.0, (4, 2500))}
    right = exact_against_mcmc(pd.DataFrame({"mean": [2.0], "sd": [3.0]}, index=["a"]), draws)
    assert right.loc["a", "MCSE of mean"] == pytest.approx(3.0 / 100, rel=0.1)
    assert abs(right.loc["a", "z_mean"]) < MCSE_BOUND and abs(right.loc["a", "z_sd"]) < MCSE_BOUND
    shifted = exact_against_mcmc(pd.DataFrame({"mean": [2.0 + 10 * 0.03], "sd": [3.0]}, index=["a"]), draws)
    assert shifted.loc["a", "z_mean"] == pytest.approx(right.loc["a", "z_mean"] - 10, abs=1.5)


def _site_arrays(data):
    return [(frame["x"].to_numpy(), frame["y"].to_numpy()) for _, frame in data.groupby("site", observed=True)]


def _log_joint(sites, mu, sigma, tau):
    """log p(y | mu, sigma, tau) straight from the model: site j's y is N(mu x_j, sigma^2 I + tau^2 x_j x_j')."""
    return sum(
        stats.multivariate_normal.logpdf(y, mu * x, sigma**2 * np.eye(len(x)) + tau**2 * np.outer(x, x))
        for x, y in sites
    )


@pytest.mark.parametrize("tau", [0.2, 1.0, 5.0])
@pytest.mark.parametrize("mu_prior_sd", [1.0, None])
def test_tau_log_likelihood_is_the_joint_integrated_numerically(tau, mu_prior_sd):
    """The ledger's likelihood of tau against scipy's adaptive quadrature of the joint density over mu and sigma
    (dense covariance matrices, no sufficient statistics): both are normalised, so they agree absolutely."""
    from pooling.shrinkage import tau_log_likelihood

    data = two_sites()
    sites = _site_arrays(data)
    sigma_prior = ScalePrior("halfcauchy", 5.0)
    if mu_prior_sd is None:
        sigmas = np.linspace(0.3, 6, 200)
        offset = max(_log_joint(sites, 0.0, sigma, tau) + sigma_prior.log_density(sigma) for sigma in sigmas)
        integral, _ = integrate.quad(
            lambda sigma: np.exp(_log_joint(sites, 0.0, sigma, tau) + sigma_prior.log_density(sigma) - offset),
            0.3,
            6,
            points=[0.75, 1.7],
            limit=200,
            epsabs=0,
            epsrel=1e-9,
        )
    else:

        def log_integrand(mu, sigma):
            prior = stats.norm.logpdf(mu, 0, mu_prior_sd) + sigma_prior.log_density(sigma)
            return _log_joint(sites, mu, sigma, tau) + prior

        offset = max(log_integrand(mu, sigma) for mu in np.linspace(-4, 4, 41) for sigma in np.linspace(0.3, 6, 41))
        integral, _ = integrate.dblquad(
            lambda mu, sigma: np.exp(log_integrand(mu, sigma) - offset), 0.3, 6, -6, 6, epsabs=1e-12, epsrel=1e-8
        )
    exact = tau_log_likelihood(data, tau, sigma_prior, mu_prior_sd)[0]
    assert exact == pytest.approx(np.log(integral) + offset, abs=2e-4)


def test_tau_log_likelihood_times_the_prior_is_the_posterior_of_tau():
    """The ledger and the tables come from one computation: prior times likelihood, normalised, is the exact
    posterior's distribution of tau."""
    from pooling.shrinkage import tau_log_likelihood

    data, priors = two_sites(), (ScalePrior("halfnormal", 0.3), ScalePrior("halfcauchy", 5.0), 0.1)
    grid = np.geomspace(1e-3, 100, 4000)
    log_posterior = tau_log_likelihood(data, grid, priors[1], priors[2]) + priors[0].log_density(grid) + np.log(grid)
    mass = np.exp(log_posterior - log_posterior.max())
    cumulative = np.cumsum(mass) / mass.sum()
    exact = partial_pooling_posterior(data, *priors).posterior.scale_summary("tau")
    assert exact["median"] == pytest.approx(np.interp(0.5, cumulative, grid), rel=3e-3)
    assert exact["high"] == pytest.approx(np.interp(0.97, cumulative, grid), rel=3e-3)


def test_new_site_is_mu_plus_a_fresh_effect():
    """With sigma and tau fixed, beta_new ~ N(m, v + tau^2), where N(m, v) is mu's posterior, a precision-weighted
    mean of the least-squares slopes (closed form); with tau learned, against Monte Carlo from the exact posterior
    of (sigma, tau), drawing mu from that closed form given each draw."""
    data = simulate_sites(slopes=(2.0, -1.0, 0.5), points_per_site=6, seed=4)
    statistics = least_squares_slopes(data).drop("pooled")
    slope_hat, sum_xx = statistics["slope"].to_numpy(), statistics["sum_x_squared"].to_numpy()

    def mu_given(sigma, tau, mu_prior_sd=2.0):
        precision_of_each = 1 / (tau**2 + sigma**2 / sum_xx)
        precision = mu_prior_sd**-2 + precision_of_each.sum(-1)
        return (precision_of_each * slope_hat).sum(-1) / precision, 1 / precision

    sigma, tau = 1.2, 0.7
    fixed = partial_pooling_posterior(data, ScalePrior("fixed", tau), ScalePrior("fixed", sigma), 2.0).new_site()
    m, v = mu_given(sigma, tau)
    assert fixed["mean"] == pytest.approx(m, abs=1e-9) and fixed["sd"] == pytest.approx(np.sqrt(v + tau**2), rel=1e-9)
    assert (fixed["low"], fixed["high"]) == pytest.approx(tuple(stats.norm.ppf([0.03, 0.97], m, np.sqrt(v + tau**2))))

    learned = partial_pooling_posterior(data, ScalePrior("halfnormal", 1.0), ScalePrior("halfcauchy", 5.0), 2.0)
    rng = np.random.default_rng(3)
    posterior = learned.posterior
    cells = rng.choice(posterior.cell.size, size=400_000, p=posterior.cell.ravel())
    sigma_draws = posterior.sigma_grid[cells // posterior.cell.shape[1]]
    tau_draws = posterior.tau_grid[cells % posterior.cell.shape[1]]
    m, v = mu_given(sigma_draws[:, None], tau_draws[:, None])
    new = rng.normal(m, np.sqrt(v)) + tau_draws * rng.normal(size=len(cells))
    summary = learned.new_site()
    standard_error = new.std() / np.sqrt(len(new))
    assert abs(summary["mean"] - new.mean()) < 4 * standard_error
    assert summary["sd"] == pytest.approx(new.std(), rel=0.01)
    assert (summary["low"], summary["high"]) == pytest.approx(tuple(np.quantile(new, [0.03, 0.97])), abs=0.03)
    zero_mean = partial_pooling_posterior(data, ScalePrior("fixed", tau), ScalePrior("fixed", sigma), None)
    assert zero_mean.new_site()["mean"] == 0 and zero_mean.new_site()["sd"] == pytest.approx(tau)


def test_a_noise_sd_per_site_with_equal_fixed_sds_is_the_shared_model():
    """Two computations that share nothing but the data: the per-site grid from sufficient statistics, the general
    engine from the design matrices."""
    data = two_sites()
    for tau_prior, mu_prior_sd in ((ScalePrior("halfcauchy", 0.1), 0.1), (ScalePrior("fixed", 0.5), 1.0)):
        shared = partial_pooling_posterior(data, tau_prior, ScalePrior("fixed", 0.8), mu_prior_sd)
        per_site = partial_pooling_posterior(
            data, tau_prior, ScalePrior("fixed", 0.8), mu_prior_sd, noise_per_site=True
        )
        np.testing.assert_allclose(per_site.mean, shared.mean, atol=2e-3)
        np.testing.assert_allclose(per_site.sd, shared.sd, rtol=2e-3)
        np.testing.assert_allclose(per_site.weight, shared.weight, atol=1e-3)
        assert per_site.mu_mean == pytest.approx(shared.mu_mean, abs=2e-3)
        assert per_site.new_site()["sd"] == pytest.approx(shared.new_site()["sd"], rel=2e-3)


def test_a_noise_sd_per_site_with_mu_at_zero_is_one_integral_per_site():
    """With mu fixed at 0 and tau fixed, the sites are independent: site j's slope has, given sigma_j, mean
    w_j b_j, and sigma_j the posterior prior(sigma_j) sigma_j^-(n_j - 1) exp(-RSS_j / 2 sigma_j^2)
    N(b_j; 0, tau^2 + sigma_j^2 / S_j) / sqrt(S_j); integrate each with scipy's quad."""
    data, tau = simulate_sites(slopes=(2.0, -3.0), points_per_site=8, noise_sd=(1.0), seed=6), 1.5
    data.loc[data["site"] == "site 2", "y"] *= 2  # site 2 noisier
    prior = ScalePrior("lognormal", 1.0, log_sd=1.0)
    exact = partial_pooling_posterior(data, ScalePrior("fixed", tau), prior, None, noise_per_site=True)
    summary = exact.posterior.summary()
    for index, (site, row) in enumerate(least_squares_slopes(data).drop("pooled").iterrows()):

        def density(sigma, row=row):
            spread = tau**2 + sigma**2 / row["sum_x_squared"]
            return np.exp(
                prior.log_density(sigma)
                - (row["n"] - 1) * np.log(sigma)
                - row["rss"] / (2 * sigma**2)
                + stats.norm.logpdf(row["slope"], 0, np.sqrt(spread))
            )

        def moment(function, density=density):
            return integrate.quad(lambda sigma: function(sigma) * density(sigma), 1e-3, 50, limit=200)[0]

        total, sum_xx = moment(lambda sigma: 1.0), row["sum_x_squared"]
        weight = moment(lambda sigma, sum_xx=sum_xx: tau**2 / (tau**2 + sigma**2 / sum_xx)) / total
        assert exact.weight[index] == pytest.approx(weight, abs=1e-4)
        assert exact.mean[index] == pytest.approx(weight * row["slope"], abs=1e-3)
        assert summary.loc[f"sigma[{site}]", "mean"] == pytest.approx(moment(lambda sigma: sigma) / total, rel=2e-3)


def test_the_noise_per_site_grid_is_fine_enough():
    from pooling.shrinkage import SITE_NOISE_GRID_POINTS

    data = two_sites()
    priors = (ScalePrior("halfcauchy", 0.1), ScalePrior("lognormal", 1.0, log_sd=1.0), 1.0)
    coarse = partial_pooling_posterior(data, *priors, noise_per_site=True)
    fine = partial_pooling_posterior(data, *priors, noise_per_site=True, grid_points=2 * SITE_NOISE_GRID_POINTS)
    np.testing.assert_allclose(coarse.posterior.summary(), fine.posterior.summary(), rtol=3e-3, atol=2e-3)


def test_gap_prior_predictive_matches_simulating_the_whole_model():
    """Draw tau, sigma, mu, the slopes and new y at the data's x from the priors, fit least squares to each
    simulated data set and count standardised gaps at least as large as the data's."""
    from pooling.shrinkage import gap_prior_predictive, slope_gap

    data = two_sites()
    observed = abs(slope_gap(data)["standardised"])
    sites = _site_arrays(data)
    rng = np.random.default_rng(11)
    draws = 200_000
    for tau_prior, sigma_prior in [
        (ScalePrior("halfnormal", 10.0), ScalePrior("halfcauchy", 5.0)),
        (ScalePrior("halfcauchy", 0.1), ScalePrior("fixed", 0.72)),
        (ScalePrior("halfnormal", 1.0), ScalePrior("halfcauchy", 5.0)),
    ]:

        def sample(prior):
            if prior.kind == "fixed":
                return np.full(draws, prior.scale)
            standard = rng.normal(size=draws) if prior.kind == "halfnormal" else rng.standard_cauchy(size=draws)
            return prior.scale * np.abs(standard)

        tau, sigma = sample(tau_prior), sample(sigma_prior)
        mu = rng.normal(0, 1.0, draws)
        slopes, residual_ss = [], 0
        for x, _ in sites:
            beta = mu + tau * rng.normal(size=draws)
            y = beta[:, None] * x[None, :] + sigma[:, None] * rng.normal(size=(draws, len(x)))
            slope = y @ x / (x @ x)
            slopes.append(slope)
            residual_ss = residual_ss + ((y - slope[:, None] * x[None, :]) ** 2).sum(1)
        spread = np.sqrt(sum(1 / (x @ x) for x, _ in sites))
        degrees = sum(len(x) for x, _ in sites) - 2
        standardised = (slopes[0] - slopes[1]) / (np.sqrt(residual_ss / degrees) * spread)
        simulated = np.mean(np.abs(standardised) >= observed)
        exact = gap_prior_predictive(data, tau_prior, sigma_prior)
        assert abs(simulated - exact) < 4 * np.sqrt(exact * (1 - exact) / draws) + 1e-5, (tau_prior, simulated, exact)


def test_two_clusters_keep_the_populations_mean_and_sd():
    data = many_sites_data(seed=5, clusters=True, number_of_sites=4000, sizes=(2, 2))
    slopes = data.groupby("site", observed=True)[["true_slope", "cluster"]].first()
    assert slopes["true_slope"].mean() == pytest.approx(-1.5, abs=0.03)
    assert slopes["true_slope"].std() == pytest.approx(1.0, abs=0.02)
    assert list(slopes["cluster"].iloc[:4]) == ["lower", "upper", "lower", "upper"]
    within = slopes.groupby("cluster")["true_slope"].agg(["mean", "std"])
    assert within.loc["upper", "mean"] - within.loc["lower", "mean"] == pytest.approx(2 * np.sqrt(1 - 0.3**2), abs=0.03)
    assert within["std"].to_numpy() == pytest.approx([0.3, 0.3], abs=0.02)
    normal = many_sites_data(seed=11)
    assert "cluster" not in normal and normal.equals(many_sites_data(seed=11))


def test_a_mean_per_cluster_pools_each_site_toward_its_own_cluster():
    """With tau near 0 each site's slope is its cluster's pooled least-squares slope; with tau huge, its own."""
    data = many_sites_data(seed=2, clusters=True, number_of_sites=6, sizes=(5, 20))
    sigma = ScalePrior("fixed", 1.0)
    tight = partial_pooling_posterior(data, ScalePrior("fixed", 1e-5), sigma, 1e6, mean_by="cluster")
    loose = partial_pooling_posterior(data, ScalePrior("fixed", 1e4), sigma, 1e6, mean_by="cluster")
    clusters = data.groupby("site", observed=True)["cluster"].first()
    for cluster, frame in data.groupby("cluster"):
        pooled = (frame["x"] * frame["y"]).sum() / (frame["x"] ** 2).sum()
        np.testing.assert_allclose(tight.mean[(clusters == cluster).to_numpy()], pooled, atol=1e-5)
    np.testing.assert_allclose(loose.mean, least_squares_slopes(data).drop("pooled")["slope"], atol=1e-5)
    assert len(tight.mu_mean) == 2 and "new site" not in tight.posterior.names


def test_mixture_quantiles_match_root_finding():
    """Quantiles of mixtures of normals (all columns at once) against scipy's brentq on each column's CDF."""
    from pooling.shrinkage import mixture_quantile

    rng = np.random.default_rng(0)
    for _ in range(5):
        weights = rng.random(300)
        weights /= weights.sum()
        means, sds = rng.normal(0, 3, (300, 4)), np.exp(rng.normal(0, 1, (300, 4)))
        for level in (0.03, 0.5, 0.97):
            found = mixture_quantile(weights, means, sds, level)
            for column in range(4):
                mixture = (weights, means[:, column], sds[:, column], level)
                expected = optimize.brentq(_mixture_cdf_excess, -100, 100, args=mixture, xtol=1e-12)
                assert found[column] == pytest.approx(expected, abs=1e-6)


def _mixture_cdf_excess(value, weights, means, sds, level):
    return weights @ stats.norm.cdf(value, means, sds) - level


def test_the_ledger_figure_adds_prior_and_likelihood():
    """Each prior's solid curve is its dashed curve plus the likelihood, every curve relative to its own maximum."""
    from pooling import plots

    tau = np.geomspace(0.01, 100, 50)
    likelihood = -((np.log(tau) - 1.5) ** 2)
    prior = ScalePrior("halfcauchy", 0.1)
    figure = plots.tau_ledger(tau, likelihood, {str(prior): (prior.log_density(tau), True)}, "ledger", floor=-1e9)
    line, prior_curve, posterior_curve = figure.data
    assert np.nanmax(line.y) == 0 and np.nanmax(prior_curve.y) == 0 and np.nanmax(posterior_curve.y) == 0
    total = prior.log_density(tau) + likelihood
    np.testing.assert_allclose(posterior_curve.y, total - total.max())
    assert [trace.showlegend for trace in figure.data[1:]] == [True, False]


def test_tau_likelihood_peak_and_interval_are_the_closed_form_with_sigma_known_and_mu_free():
    """With sigma fixed and mu's prior all but flat, two sites inform tau through their gap alone, which is
    N(0, sqrt(2 tau^2 + sigma^2 c^2)): the likelihood peaks at tau^2 = (gap^2 - sigma^2 c^2) / 2 and its 95% interval
    ends where that normal's log density is 1.92 below its peak."""
    from pooling.shrinkage import LIKELIHOOD_DROP, slope_gap, tau_likelihood_interval, tau_likelihood_peak

    data = two_sites()
    gap = slope_gap(data)
    sigma = ScalePrior("fixed", gap["residual_sd"])
    noise = (gap["residual_sd"] * gap["spread"]) ** 2
    peak, _ = tau_likelihood_peak(data, sigma, 1e8)
    assert peak == pytest.approx(np.sqrt((gap["gap"] ** 2 - noise) / 2), rel=1e-5)

    def log_density(tau):
        variance = 2 * tau**2 + noise
        return -0.5 * np.log(variance) - gap["gap"] ** 2 / (2 * variance)

    interval = tau_likelihood_interval(data, sigma, 1e8)
    assert LIKELIHOOD_DROP == pytest.approx(stats.chi2.ppf(0.95, 1) / 2)
    for end in ("low", "high"):
        assert log_density(interval[end]) == pytest.approx(log_density(peak) - LIKELIHOOD_DROP, abs=1e-6)
    assert interval["low"] < peak < interval["high"]


def test_tau_likelihood_peak_does_not_depend_on_the_grid_and_an_interval_may_reach_zero():
    from pooling.shrinkage import tau_likelihood_interval, tau_likelihood_peak, tau_log_likelihood

    data, sigma = two_sites(), ScalePrior("halfcauchy", 5.0)
    peak, top = tau_likelihood_peak(data, sigma, 0.1)
    fine = np.geomspace(peak / 1.01, peak * 1.01, 2001)
    assert peak == pytest.approx(fine[np.argmax(tau_log_likelihood(data, fine, sigma, 0.1))], rel=1e-4)
    assert top >= tau_log_likelihood(data, fine, sigma, 0.1).max() - 1e-9
    # Equal true slopes and noisy sites: the data cannot tell a spread of 0 from a small one.
    alike = simulate_sites(slopes=(1.0, 1.0), points_per_site=20, noise_sd=1.0, seed=3)
    interval = tau_likelihood_interval(alike, sigma, 1.0)
    assert interval["low"] == 0 and 0 < interval["high"] < 10


def test_probability_between_is_the_difference_of_the_distribution_function():
    priors = (ScalePrior("halfcauchy", 0.1), ScalePrior("halfcauchy", 5.0), 1.0)
    grid = partial_pooling_posterior(two_sites(), *priors).posterior
    assert grid.probability_between("tau", 2.0, 8.0) == pytest.approx(
        grid.probability_below("tau", 8.0) - grid.probability_below("tau", 2.0)
    )
    assert grid.probability_between("tau", 0.0, np.inf) == pytest.approx(1.0)


def test_scale_priors_are_written_to_three_significant_digits_as_the_models_tables_write_them():
    assert str(ScalePrior("halfnormal", 10.440203543828684)) == "HalfNormal(10.4)"
    assert str(ScalePrior("halfstudentt", 1.7027165413231808, nu=4.0)) == "HalfStudentT(4, 1.7)"
    assert str(ScalePrior("lognormal", 1.0, log_sd=1.0)) == "LogNormal(0, 1)"
    assert str(ScalePrior("fixed", 0.5)) == "fixed at 0.5" and str(ScalePrior("halfcauchy", 0.1)) == "HalfCauchy(0.1)"


@pytest.mark.parametrize("noise_per_site", [False, True])
def test_gap_posterior_predictive_matches_replicating_the_data(noise_per_site):
    """Replicate both sites' y at their x for each draw, fit each site's slope by least squares and count gaps at
    least as large as the data's: the smoothed p-value is that count's expectation."""
    from pooling.shrinkage import gap_posterior_predictive

    data = two_sites()
    sites = _site_arrays(data)
    rng = np.random.default_rng(5)
    draws = 200_000
    slopes = np.column_stack([rng.normal(1.2, 0.5, draws), rng.normal(-4.5, 0.5, draws)])
    sigma = np.abs(rng.normal(1.0, 0.2, (draws, 2) if noise_per_site else draws))
    per_site = np.broadcast_to(sigma.reshape(draws, -1), (draws, 2))
    replicated = [
        (slopes[:, [j]] * x + per_site[:, [j]] * rng.normal(size=(draws, len(x)))) @ x / (x @ x)
        for j, (x, _) in enumerate(sites)
    ]
    gaps = replicated[0] - replicated[1]
    result = gap_posterior_predictive(data, slopes, sigma)
    assert result["p_value"] == pytest.approx(np.mean(gaps >= result["observed"]), abs=4 * np.sqrt(0.1 / draws))
    assert result["mean"] == pytest.approx(gaps.mean(), abs=0.01)
    assert result["sd"] == pytest.approx(gaps.std(), rel=0.01)
    with pytest.raises(ValueError, match="draws x 2"):
        gap_posterior_predictive(data, slopes[:, 0], sigma)


@pytest.mark.parametrize("mu_prior_sd", [None, 0.1, 10.0])
def test_exact_gap_posterior_predictive_matches_the_gaussian_posterior_of_both_slopes(mu_prior_sd):
    """With sigma and tau fixed the slopes' posterior is one Gaussian: prior covariance tau^2 I + s_mu^2 (mu's
    prior sd, 0 if mu is fixed), data precision S_j / sigma^2 on each least-squares slope. The replicated gap is the
    slopes' difference plus N(0, sigma^2 (1 / S_1 + 1 / S_2)); its tail probability is the p-value."""
    from scipy import stats

    from pooling.shrinkage import exact_gap_posterior_predictive, slope_gap, sufficient_statistics

    data = two_sites()
    statistics = sufficient_statistics(data)
    sum_xx, slope = statistics["sum_x_squared"].to_numpy(), statistics["slope"].to_numpy()
    sigma, tau = 1.3, 0.7
    prior = tau**2 * np.eye(2) + (mu_prior_sd or 0.0) ** 2
    covariance = np.linalg.inv(np.linalg.inv(prior) + np.diag(sum_xx / sigma**2))
    mean = covariance @ (sum_xx / sigma**2 * slope)
    contrast = np.array([1.0, -1.0])
    sd = np.sqrt(contrast @ covariance @ contrast + sigma**2 * (1 / sum_xx).sum())
    observed = slope_gap(data)["gap"]
    result = partial_pooling_posterior(data, ScalePrior("fixed", tau), ScalePrior("fixed", sigma), mu_prior_sd)
    check = exact_gap_posterior_predictive(data, result, mu_prior_sd)
    assert check["mean"] == pytest.approx(contrast @ mean, rel=1e-9)
    assert check["sd"] == pytest.approx(sd, rel=1e-9)
    assert check["p_value"] == pytest.approx(stats.norm.sf(observed, contrast @ mean, sd), rel=1e-9)
    per_site = partial_pooling_posterior(
        data, ScalePrior("fixed", tau), ScalePrior("halfcauchy", 5.0), 1.0, noise_per_site=True
    )
    with pytest.raises(ValueError, match="shared sigma"):
        exact_gap_posterior_predictive(data, per_site, 1.0)

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

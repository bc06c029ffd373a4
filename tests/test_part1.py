"""Part I's models against independent references: least squares and a hand-written PyMC model."""

from __future__ import annotations

import bambi as bmb
import numpy as np
import pymc as pm
import pytest

from pooling.data import simulate_sites, two_sites
from pooling.fitting import SEED, fit, group_draws
from pooling.models import TOY_MODELS, ModelSpec
from pooling.shrinkage import least_squares_slopes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sites():
    return two_sites()


@pytest.fixture(scope="module")
def baseline(sites):
    return least_squares_slopes(sites)


def prior_pull(least_squares, sum_x_squared, sigma, prior_sd):
    """How far a Normal(0, prior_sd) prior moves the conjugate posterior mean away from least squares."""
    data_precision = sum_x_squared / sigma**2
    return abs(least_squares) * (1 - data_precision / (data_precision + 1 / prior_sd**2))


def test_pooled_posterior_mean_is_pooled_least_squares(sites, baseline):
    result = fit(TOY_MODELS["toy_pooled"], sites)  # the chapter's fit, from the cache
    summary = result.summary(["x", "sigma"])
    pooled = baseline.loc["pooled"]
    pull = prior_pull(pooled.slope, pooled.sum_x_squared, summary.loc["sigma", "mean"], 20)
    assert abs(summary.loc["x", "mean"] - pooled.slope) < 4 * summary.loc["x", "mcse_mean"] + pull
    # The posterior sd is the least-squares standard error, up to sigma's uncertainty (a few per cent).
    assert summary.loc["x", "sd"] == pytest.approx(pooled.standard_error, rel=0.15)


def test_unpooled_posterior_means_are_per_site_least_squares(sites, baseline):
    result = fit(TOY_MODELS["toy_unpooled"], sites)
    draws = group_draws(result, "x:site")
    summary = result.summary(["x:site", "sigma"])
    sigma = summary.loc["sigma", "mean"]
    for site in ["site 1", "site 2"]:
        row = baseline.loc[site]
        mcse = summary.loc[f"x:site[{site}]", "mcse_mean"]
        pull = prior_pull(row.slope, row.sum_x_squared, sigma, 20)
        assert abs(draws[site].mean() - row.slope) < 4 * mcse + pull, site


def hand_written_hierarchical(sites, mu_sd, tau_scale, sigma_nu, sigma_scale):
    """The centred model y ~ 0 + x + (0 + x | site), written directly in PyMC."""
    site_index = sites["site"].cat.codes.to_numpy()
    with pm.Model(coords={"site": list(sites["site"].cat.categories)}) as model:
        mu = pm.Normal("mu", 0.0, mu_sd)
        tau = pm.HalfNormal("tau", tau_scale)
        deviation = pm.Normal("deviation", 0.0, tau, dims="site")
        sigma = pm.HalfStudentT("sigma", nu=sigma_nu, sigma=sigma_scale)
        pm.Deterministic("site_slope", mu + deviation, dims="site")
        pm.Normal("y", (mu + deviation[site_index]) * sites["x"].to_numpy(), sigma, observed=sites["y"].to_numpy())
    return model


def test_bambi_hierarchical_matches_hand_written_pymc(sites):
    bambi_fit = fit(TOY_MODELS["toy_hierarchical"], sites)
    terms = bambi_fit.model.components["mu"].terms
    sigma_prior = bambi_fit.model.components["sigma"].prior
    assert sigma_prior.name == "HalfStudentT"
    model = hand_written_hierarchical(
        sites,
        mu_sd=terms["x"].prior.args["sigma"],
        tau_scale=terms["x|site"].prior.args["sigma"].args["sigma"],
        sigma_nu=sigma_prior.args["nu"],
        sigma_scale=sigma_prior.args["sigma"],
    )
    with model:
        reference = pm.sample(
            draws=2000, chains=4, random_seed=SEED, nuts_sampler="nutpie", progressbar=False, target_accept=0.9
        )
    import arviz as az

    ours = bambi_fit.summary(["site_slope", "x|site_sigma", "sigma"])
    theirs = az.summary(
        reference, var_names=["site_slope", "tau", "sigma"], round_to="none"
    )  # None would round to 3 decimals
    theirs.index = ours.index
    tolerance = 4 * np.hypot(ours["mcse_mean"], theirs["mcse_mean"])
    assert (abs(ours["mean"] - theirs["mean"]) < tolerance).all(), (ours["mean"], theirs["mean"], tolerance)
    slopes = [name for name in ours.index if name.startswith("site_slope")]
    np.testing.assert_allclose(ours.loc[slopes, "sd"], theirs.loc[slopes, "sd"], rtol=0.1)


def test_zero_mean_formula_pulls_toward_zero_and_common_slope_formula_toward_the_mean():
    """Two sites with slopes 3 and 5, few points, and a tight spread: where do the estimates go?"""
    sites = simulate_sites(slopes=(3.0, 5.0), points_per_site=6, x_sd=0.5, noise_sd=1.0, seed=5)
    tight_spread = bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=0.3))
    # Few points per site: the non-centred form is the right one here.
    zero_mean = ModelSpec("test_zero_mean", "y ~ 0 + (0 + x | site)", {"x|site": tight_spread})
    common = ModelSpec(
        "test_common_mean",
        "y ~ 0 + x + (0 + x | site)",
        {"x|site": tight_spread},
        combined=(("site_slope", ("x", "x|site")),),
    )
    least_squares = least_squares_slopes(sites)["slope"]
    toward_zero = group_draws(fit(zero_mean, sites, target_accept=0.99), "x|site").mean()
    toward_mean = group_draws(fit(common, sites, target_accept=0.99), "site_slope").mean()
    for site in ["site 1", "site 2"]:
        # Mean zero: both positive slopes are dragged well below their own estimates, toward 0.
        assert toward_zero[site] < least_squares[site] - 1.0
        # Common slope: estimates stay near the sites' common level, far above the zero-mean ones.
        assert toward_mean[site] > toward_zero[site] + 1.0
    pooled_level = least_squares["pooled"]
    assert abs(toward_mean.mean() - pooled_level) < 0.5


def test_funnel_marks_every_divergent_draw_and_thins_the_rest():
    """The funnel figure: log tau against one group's effect, all divergences shown, the other draws thinned."""
    from types import SimpleNamespace

    import arviz as az

    from pooling import plots

    rng = np.random.default_rng(1)
    tau = np.exp(rng.normal(size=(2, 3000)))
    effect = rng.normal(size=(2, 3000, 2)) * tau[..., None]
    diverging = np.zeros((2, 3000), dtype=bool)
    diverging[0, :7] = True
    idata = az.from_dict(
        posterior={"tau": tau, "u": effect},
        sample_stats={"diverging": diverging},
        coords={"site": ["a", "b"]},
        dims={"u": ["site"]},
    )
    figure = plots.funnel(SimpleNamespace(idata=idata), "tau", "u", "b", ("τ", "u_b"), "Funnel")
    kept, divergent = figure.data
    assert len(divergent.x) == 7 and np.allclose(divergent.y, np.log(tau[0, :7]))
    assert np.allclose(divergent.x, effect[0, :7, 1])
    assert len(kept.x) == plots.FUNNEL_POINTS and figure.layout.yaxis.title.text == "log τ"


def test_noise_per_site_fits_match_the_exact_per_site_engine(sites, baseline):
    """Both fits with a noise sd per site (Bambi's `sigma ~ 0 + site`, from the cache) against the exact per-site
    engine with the same priors, read from the models: no pooling is the engine with mu fixed at 0 and tau fixed at
    the slopes' prior sd 20; the first prior set is the engine with its own priors. Means within 4 MCSEs, sds within
    5%; and no pooling's slopes are the least-squares slopes."""
    from pooling.shrinkage import (
        ScalePrior,
        exact_against_mcmc,
        exact_priors,
        has_noise_per_site,
        partial_pooling_posterior,
        slope_model_draws,
    )

    unpooled = fit(TOY_MODELS["toy_unpooled_site_sigma"], sites)
    slope_prior = unpooled.model.components["mu"].terms["x:site"].prior
    noise_prior = exact_priors(fit(TOY_MODELS["toy_hierarchical_fixed_sd_site_sigma"], sites).model)[1]
    assert has_noise_per_site(unpooled.model) and noise_prior == ScalePrior("lognormal", 1.0, log_sd=1.0)
    exact_unpooled = partial_pooling_posterior(
        sites, ScalePrior("fixed", float(slope_prior.args["sigma"])), noise_prior, None, noise_per_site=True
    )
    posterior = unpooled.idata.posterior
    draws = {site: posterior["x:site"].sel({"x:site_dim": site}).to_numpy() for site in ("site 1", "site 2")}
    log_sigma = posterior["sigma_site"]
    draws |= {f"sigma[{site}]": np.exp(log_sigma.sel(sigma_site_dim=site).to_numpy()) for site in ("site 1", "site 2")}
    hierarchical = fit(TOY_MODELS["toy_hierarchical_fixed_sd_site_sigma"], sites)
    exact_hierarchical = partial_pooling_posterior(sites, *exact_priors(hierarchical.model), noise_per_site=True)
    for exact, mcmc in (
        (exact_unpooled, draws),
        (exact_hierarchical, slope_model_draws(hierarchical, "site_slope")),
    ):
        comparison = exact_against_mcmc(exact.posterior.summary(), mcmc)
        assert (comparison["z_mean"].abs() < 4).all(), comparison
        np.testing.assert_allclose(comparison["MCMC sd"], comparison["exact sd"], rtol=0.05)
    # With a Normal(0, 20) prior the slopes are the least-squares slopes, less a prior weight under a thousandth.
    np.testing.assert_allclose(exact_unpooled.mean, baseline.loc[["site 1", "site 2"], "slope"], rtol=1e-3)
    assert (np.abs(exact_unpooled.mean) < np.abs(baseline.loc[["site 1", "site 2"], "slope"])).all()

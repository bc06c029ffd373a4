"""The general exact engine (Gaussian given sigma and tau, integrated over a grid) and the exact radon posterior."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from pooling.data import radon_minnesota, two_sites
from pooling.fitting import fit
from pooling.models import RADON_MODELS
from pooling.shrinkage import (
    MCSE_BOUND,
    ScalePrior,
    exact_against_mcmc,
    gaussian_grid_posterior,
    partial_pooling_posterior,
    varying_intercept_draws,
    varying_intercept_posterior,
)


def tiny_data():
    """3 groups x 3 points, with a covariate: small enough to integrate by brute force."""
    rng = np.random.default_rng(3)
    group = np.repeat([0, 1, 2], 3)
    x = rng.normal(0, 1, 9)
    y = 1.0 + 0.5 * x + np.array([-0.8, 0.1, 0.9])[group] + rng.normal(0, 0.6, 9)
    return x, y, np.eye(3)[group]


TINY_PRIORS = {
    "prior_mean": np.array([0.5, 0.0]),
    "prior_sd": np.array([2.0, 1.5]),
    "sigma": ScalePrior("halfstudentt", 1.0, nu=4),
    "tau": ScalePrior("halfnormal", 0.8),
}
# theta = (b0, b1, u1, u2, u3): the coefficients, the effects and each group's level b0 + u_j.
TINY_COMBINATIONS = np.vstack([np.eye(5), np.column_stack([np.ones(3), np.zeros(3), np.eye(3)])])


def brute_force_moments(x, y, groups, priors, combinations):
    """Posterior means and sds of combinations, sigma and tau by adaptive quadrature over sigma and tau.

    Independent of the engine: the likelihood given (sigma, tau) is y's multivariate normal marginal with
    covariance X S X' + tau^2 Z Z' + sigma^2 I, and the coefficients' conditional posterior comes from the
    covariance form (Kalman gain), not from the precision.
    """
    design = np.column_stack([np.ones_like(x), x, groups])
    prior_mean = np.concatenate([priors["prior_mean"], np.zeros(groups.shape[1])])

    def integrand_given(sigma, tau):
        if sigma < 1e-4:  # the marginal covariance is singular at 0; the likelihood there is below exp(-1e6)
            return np.zeros(5 + 2 * len(combinations))
        prior_cov = np.diag(np.concatenate([priors["prior_sd"] ** 2, np.full(groups.shape[1], tau**2)]))
        marginal_cov = design @ prior_cov @ design.T + sigma**2 * np.eye(len(y))
        gain = prior_cov @ design.T @ np.linalg.inv(marginal_cov)
        mean = prior_mean + gain @ (y - design @ prior_mean)
        cov = prior_cov - gain @ design @ prior_cov
        residual = y - design @ prior_mean
        log_likelihood = -0.5 * (
            len(y) * np.log(2 * np.pi)
            + np.linalg.slogdet(marginal_cov)[1]
            + residual @ np.linalg.solve(marginal_cov, residual)
        )
        density = np.exp(log_likelihood + priors["sigma"].log_density(sigma) + priors["tau"].log_density(tau))
        combined_mean = combinations @ mean
        combined_second = np.einsum("kp,pq,kq->k", combinations, cov, combinations) + combined_mean**2
        return density * np.concatenate([[1.0, sigma, sigma**2, tau, tau**2], combined_mean, combined_second])

    def over_tau(sigma):
        return integrate.quad_vec(lambda tau: integrand_given(sigma, tau), 0, np.inf, epsrel=1e-9)[0]

    totals = integrate.quad_vec(over_tau, 0, np.inf, epsrel=1e-8)[0]
    moments = totals[1:] / totals[0]
    k = len(combinations)
    means = np.concatenate([moments[[0, 2]], moments[4 : 4 + k]])
    second = np.concatenate([moments[[1, 3]], moments[4 + k :]])
    return means, np.sqrt(second - means**2)


def test_engine_matches_brute_force_quadrature_on_a_tiny_data_set():
    x, y, groups = tiny_data()
    posterior = gaussian_grid_posterior(
        y,
        np.column_stack([np.ones_like(x), x]),
        TINY_PRIORS["prior_mean"],
        TINY_PRIORS["prior_sd"],
        groups,
        TINY_PRIORS["sigma"],
        TINY_PRIORS["tau"],
        TINY_COMBINATIONS,
        [f"c{i}" for i in range(len(TINY_COMBINATIONS))],
    )
    summary = posterior.summary()
    means, sds = brute_force_moments(x, y, groups, TINY_PRIORS, TINY_COMBINATIONS)
    order = ["sigma", "tau", *(f"c{i}" for i in range(len(TINY_COMBINATIONS)))]
    np.testing.assert_allclose(summary.loc[order, "mean"], means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(summary.loc[order, "sd"], sds, rtol=1e-4, atol=1e-5)


def test_two_site_posterior_is_the_general_engine_with_slope_design():
    """partial_pooling_posterior against the engine called directly, and the tau mean both ways."""
    data = two_sites()
    priors = ScalePrior("halfnormal", 10.0), ScalePrior("halfcauchy", 5.0)
    two_site = partial_pooling_posterior(data, *priors, mu_prior_sd=10.0)
    x = data["x"].to_numpy()
    slopes = pd.get_dummies(data["site"]).to_numpy(float) * x[:, None]
    general = gaussian_grid_posterior(
        data["y"], x, [0.0], [10.0], slopes, priors[1], priors[0], [[1, 1, 0], [1, 0, 1]], ["a", "b"], grid_points=160
    )
    np.testing.assert_allclose(two_site.mean, general.mean, atol=1e-5)
    np.testing.assert_allclose(two_site.sd, general.sd, rtol=1e-4)
    tau_grid, tau_mass = two_site.posterior.scale_mass("tau")
    tau_mean = float(tau_grid @ tau_mass)
    assert tau_mean == pytest.approx(float(general.expect(lambda sigma, tau: tau)), rel=1e-3)


def test_group_design_with_two_groups_in_a_row_is_refused():
    x, y, groups = tiny_data()
    groups[0, 1] = 1.0
    with pytest.raises(ValueError, match="one non-zero per row"):
        gaussian_grid_posterior(
            y, x, [0.0], [1.0], groups, TINY_PRIORS["sigma"], TINY_PRIORS["tau"], np.eye(4), list("abcd")
        )


@pytest.fixture(scope="module")
def radon():
    return radon_minnesota()


@pytest.mark.parametrize("name", ["radon_varying_intercepts", "radon_uranium"])
def test_radon_grid_is_fine_enough(radon, name):
    """The default grid gives the summaries of a grid twice as fine with a fourth pass."""
    model = RADON_MODELS[name].build(radon)
    model.build()
    default = varying_intercept_posterior(model).summary()
    refined = varying_intercept_posterior(model, grid_points=100, passes=4).summary()
    np.testing.assert_allclose(default["mean"], refined["mean"], atol=1e-5)
    np.testing.assert_allclose(default["sd"], refined["sd"], rtol=1e-4)
    np.testing.assert_allclose(default[["low", "high"]], refined[["low", "high"]], atol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["radon_varying_intercepts", "radon_uranium"])
def test_book_mcmc_fits_agree_with_the_exact_posterior(radon, name):
    """Every county level and effect, the coefficients, sigma and tau: mean and sd within MCSE_BOUND MCSEs."""
    result = fit(RADON_MODELS[name], radon)
    comparison = exact_against_mcmc(
        varying_intercept_posterior(result.model).summary(), varying_intercept_draws(result.model, result.idata)
    )
    assert len(comparison) == 2 + 2 * 85 + ("log_uranium" in comparison.index) + 2
    worst = comparison[["z_mean", "z_sd"]].abs()
    print(
        f"{name}: worst |z| of a mean {worst['z_mean'].max():.2f} ({worst['z_mean'].idxmax()}), "
        f"of an sd {worst['z_sd'].max():.2f} ({worst['z_sd'].idxmax()})"
    )
    assert worst.max().max() <= MCSE_BOUND


def test_exact_posterior_uses_bambis_priors(radon):
    """The priors are read off the model: a tighter floor prior moves the exact floor effect toward 0."""
    import bambi as bmb

    from pooling.models import ModelSpec

    default = RADON_MODELS["radon_varying_intercepts"].build(radon)
    tight = ModelSpec("tight", default.formula.main, {"floor": bmb.Prior("Normal", mu=0, sigma=0.05)}).build(radon)
    for model in (default, tight):
        model.build()
    floor = [varying_intercept_posterior(model).summary().loc["floor"] for model in (default, tight)]
    # Roughly a conjugate update of the default posterior (nearly the likelihood) by the N(0, 0.05^2) prior.
    weight = floor[0]["sd"] ** -2 / (floor[0]["sd"] ** -2 + 0.05**-2)
    assert floor[1]["mean"] == pytest.approx(weight * floor[0]["mean"], abs=0.02)


def test_models_the_engine_cannot_represent_are_refused(radon):
    model = RADON_MODELS["radon_varying_slopes"].build(radon)
    model.build()
    with pytest.raises(ValueError, match="one group term"):
        varying_intercept_posterior(model)

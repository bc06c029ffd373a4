"""The general exact engine (Gaussian given sigma and tau, integrated over a grid) and the exact radon posterior."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from pooling.data import radon_minnesota, two_sites
from pooling.fitting import fit
from pooling.models import RADON_MODELS
from pooling.shrinkage import (
    MCSE_BOUND,
    ScalePrior,
    exact_against_mcmc,
    gaussian_grid_posterior,
    held_out_elpd,
    held_out_scores,
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


def tiny_posterior(x, y, groups):
    """The engine's exact posterior of the tiny data set under `TINY_PRIORS`."""
    return gaussian_grid_posterior(
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
    posterior = tiny_posterior(x, y, groups)
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


# ------------------------------------------------------------------------------------------------------------------
# Held-out predictive densities (leave one home out, leave one group out) and models without a group term


def tiny_bambi(groups: bool = True, intercept: bool = True):
    """The tiny data as a Bambi model with explicit priors: y ~ 1 + x + (1 | g), or without the group term, or
    y ~ 0 + g + x (no pooling)."""
    import bambi as bmb

    x, y, membership = tiny_data()
    data = pd.DataFrame({"x": x, "y": y, "g": pd.Categorical(np.array(["a", "b", "c"])[membership.argmax(1)])})
    sigma = bmb.Prior("HalfStudentT", nu=4, sigma=1.0)
    if not intercept:
        priors = {"g": bmb.Prior("Normal", mu=0.0, sigma=2.0), "x": bmb.Prior("Normal", mu=0.0, sigma=1.5)}
        return bmb.Model("y ~ 0 + g + x", data, priors=priors | {"sigma": sigma}), data
    priors = {"Intercept": bmb.Prior("Normal", mu=0.5, sigma=2.0), "x": bmb.Prior("Normal", mu=0.0, sigma=1.5)}
    if groups:
        priors["1|g"] = bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=0.8))
    formula = "y ~ 1 + x + (1 | g)" if groups else "y ~ 1 + x"
    return bmb.Model(formula, data, priors=priors | {"sigma": sigma}), data


def brute_force_log_evidence(y, design, prior_mean, prior_sd, groups, rows):
    """log p(y_rows) by adaptive quadrature, independent of the engine: y's marginal is normal with covariance
    X S X' + tau^2 Z Z' + sigma^2 I (S the coefficients' prior covariance), integrated over the priors of sigma
    (HalfStudentT(4, 1)) and, with groups, tau (HalfNormal(0.8))."""
    y, design, groups = y[rows], design[rows], groups[rows]
    sigma_prior, tau_prior = ScalePrior("halfstudentt", 1.0, nu=4), ScalePrior("halfnormal", 0.8)

    def density(sigma, tau):
        if sigma < 1e-4:
            return 0.0
        cov = design @ np.diag(prior_sd**2) @ design.T + tau**2 * groups @ groups.T + sigma**2 * np.eye(len(y))
        residual = y - design @ prior_mean
        log_like = -0.5 * (
            len(y) * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + residual @ np.linalg.solve(cov, residual)
        )
        log_prior = sigma_prior.log_density(sigma) + (tau_prior.log_density(tau) if groups.shape[1] else 0.0)
        return np.exp(log_like + log_prior)

    if not groups.shape[1]:
        return np.log(integrate.quad(lambda sigma: density(sigma, 0.0), 0, np.inf, epsrel=1e-10)[0])
    inner = lambda sigma: integrate.quad(lambda tau: density(sigma, tau), 0, np.inf, epsrel=1e-10)[0]  # noqa: E731
    return np.log(integrate.quad(inner, 0, np.inf, epsrel=1e-9)[0])


@pytest.mark.parametrize("groups", [True, False], ids=["varying intercepts", "complete pooling"])
def test_held_out_elpd_is_the_ratio_of_brute_force_marginal_likelihoods(groups):
    """Leave-one-group-out and leave-one-out against p(y) / p(y_-S) by adaptive quadrature: the model's centring
    and priors stay those of the full data, and a left-out group keeps its prior N(0, tau)."""
    x, y, membership = tiny_data()
    model, data = tiny_bambi(groups=groups)
    design = np.column_stack([np.ones_like(x), x - x.mean()])  # Bambi's intercept prior is on the centred design
    prior_mean, prior_sd = np.array([0.5, 0.0]), np.array([2.0, 1.5])
    group_design = membership if groups else np.empty((len(y), 0))
    everything = brute_force_log_evidence(y, design, prior_mean, prior_sd, group_design, np.arange(len(y)))
    for labels in (data["g"].astype(str).to_numpy(), np.arange(len(y))):
        exact = held_out_scores(model, labels, grid_points=120)
        pd.testing.assert_series_equal(held_out_elpd(model, labels, grid_points=120), exact["jointly"])
        for label, (jointly, one_at_a_time) in exact.iterrows():
            kept = np.flatnonzero(labels != label)
            without = brute_force_log_evidence(y, design, prior_mean, prior_sd, group_design, kept)
            assert jointly == pytest.approx(everything - without, abs=2e-4), (labels, label)
            rows = np.flatnonzero(labels == label)
            if len(rows) == 1:  # a single row has one score
                assert one_at_a_time == pytest.approx(jointly, abs=1e-9)
                continue
            # each held-out row alone: p(y_i | y_-S) = p(y_i, y_-S) / p(y_-S)
            alone = sum(
                brute_force_log_evidence(y, design, prior_mean, prior_sd, group_design, np.append(kept, row)) - without
                for row in rows
            )
            assert one_at_a_time == pytest.approx(alone, abs=2e-4), (labels, label)


def test_leave_one_out_closed_form_agrees_with_the_marginal_likelihood_ratio(radon):
    """The closed form for single rows (leverages) against the ratio of marginal likelihoods, which the function uses
    for larger sets: give two homes one label, and every other home keeps its own, computed both ways."""
    small = radon[radon["county"].isin(["AITKIN", "ANOKA", "BECKER", "CLAY", "COOK"])].reset_index(drop=True)
    small = small.assign(county=small["county"].cat.remove_unused_categories())
    model = RADON_MODELS["radon_varying_intercepts"].build(small)
    one_by_one = held_out_elpd(model, np.arange(len(small)))
    paired = np.arange(len(small))
    paired[1] = 0  # rows 0 and 1 now leave together: the ratio path for every label
    by_ratio = held_out_elpd(model, paired)
    np.testing.assert_allclose(by_ratio.drop(0).to_numpy(), one_by_one.drop([0, 1]).to_numpy(), atol=1e-6)


def test_models_without_a_group_term_match_brute_force_quadrature():
    """Complete pooling (an intercept, no group) and no pooling (no intercept, one column per group): exact
    posterior means and sds of the coefficients against adaptive quadrature over sigma alone."""
    x, y, membership = tiny_data()
    sigma_prior = ScalePrior("halfstudentt", 1.0, nu=4)
    for intercept, design, prior_mean, prior_sd, names in [
        (True, np.column_stack([np.ones_like(x), x - x.mean()]), np.array([0.5, 0.0]), np.array([2.0, 1.5]), None),
        (
            False,
            np.column_stack([membership, x]),
            np.zeros(4),
            np.array([2.0, 2.0, 2.0, 1.5]),
            ["g[a]", "g[b]", "g[c]", "x"],
        ),
    ]:
        model, _ = tiny_bambi(groups=False, intercept=intercept)

        def moments(sigma, design=design, prior_mean=prior_mean, prior_sd=prior_sd):
            prior_cov = np.diag(prior_sd**2)
            marginal = design @ prior_cov @ design.T + sigma**2 * np.eye(len(y))
            gain = prior_cov @ design.T @ np.linalg.inv(marginal)
            mean = prior_mean + gain @ (y - design @ prior_mean)
            cov = prior_cov - gain @ design @ prior_cov
            residual = y - design @ prior_mean
            log_like = -0.5 * (np.linalg.slogdet(marginal)[1] + residual @ np.linalg.solve(marginal, residual))
            weight = np.exp(log_like + sigma_prior.log_density(sigma))
            return weight * np.concatenate([[1.0], mean, mean**2 + np.diag(cov)])

        totals = integrate.quad_vec(
            lambda sigma: moments(sigma) if sigma > 1e-4 else 0 * moments(1.0), 0, np.inf, epsrel=1e-10
        )[0]
        means = totals[1 : 1 + len(prior_mean)] / totals[0]
        sds = np.sqrt(totals[1 + len(prior_mean) :] / totals[0] - means**2)
        summary = varying_intercept_posterior(model, grid_points=200).summary()
        if intercept:  # the engine reports the uncentred intercept; compare the slope, and the centred intercept
            np.testing.assert_allclose(summary.loc["x", ["mean", "sd"]], [means[1], sds[1]], rtol=1e-4, atol=1e-5)
            centred = summary.loc["Intercept", "mean"] + summary.loc["x", "mean"] * x.mean()
            assert centred == pytest.approx(means[0], abs=1e-5)
        else:
            np.testing.assert_allclose(summary.loc[names, "mean"], means, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(summary.loc[names, "sd"], sds, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_exact_leave_one_out_matches_psis_loo_of_the_book_fit(radon):
    """Where importance sampling is reliable (every Pareto k below 0.7), PSIS-LOO of the MCMC fit estimates the exact
    leave-one-out elpd: the total within its own standard error's tenth, each home within 0.15."""
    import warnings

    import arviz as az

    result = fit(RADON_MODELS["radon_varying_intercepts"], radon, log_likelihood=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        psis = az.loo(result.idata, pointwise=True)
    assert float(psis.pareto_k.max()) < 0.7
    exact = held_out_elpd(result.model, np.arange(len(radon)))
    assert abs(float(psis.elpd_loo) - exact.sum()) < 0.1 * float(psis.se)
    assert np.abs(psis.loo_i.to_numpy() - exact.to_numpy()).max() < 0.15


@pytest.mark.slow
def test_leave_one_county_out_matches_a_brute_force_refit(radon):
    """Leave a county out, refit the model to the other counties by MCMC (PyMC written here, with the priors of the
    model built on all of them), and average the joint density of the county's homes under a new county effect,
    N(y_j; X_j b, sigma^2 I + tau^2 11'), over the draws: the exact value lies within a few Monte Carlo errors."""
    import pymc as pm
    from scipy import special, stats

    names = ["AITKIN", "BECKER", "CLAY", "COOK", "DOUGLAS", "MOWER"]
    small = radon[radon["county"].isin(names)].reset_index(drop=True)
    small = small.assign(county=small["county"].cat.remove_unused_categories())
    model = RADON_MODELS["radon_varying_intercepts"].build(small)
    exact = held_out_elpd(model, small["county"].astype(str).to_numpy())
    terms = model.components["mu"]
    intercept_prior, floor_prior = terms.intercept_term.prior.args, terms.common_terms["floor"].prior.args
    tau_scale = float(terms.group_specific_terms["1|county"].prior.args["sigma"].args["sigma"])
    sigma_args = model.components["sigma"].prior.args
    centre = small["floor"].mean()  # Bambi's intercept prior is on the floor-centred intercept of all the data
    for county in ["COOK", "CLAY"]:  # a county of 2 homes and one of 14
        rest, left = small[small["county"] != county], small[small["county"] == county]
        codes = rest["county"].astype(str).astype("category").cat.codes.to_numpy()
        with pm.Model():
            centred_intercept = pm.Normal("b0", float(intercept_prior["mu"]), float(intercept_prior["sigma"]))
            slope = pm.Normal("b1", float(floor_prior["mu"]), float(floor_prior["sigma"]))
            tau = pm.HalfNormal("tau", tau_scale)
            effects = pm.Normal("z", 0, 1, shape=int(codes.max()) + 1) * tau
            sigma = pm.HalfStudentT("sigma", nu=float(sigma_args["nu"]), sigma=float(sigma_args["sigma"]))
            mean = centred_intercept + slope * (rest["floor"].to_numpy() - centre) + effects[codes]
            pm.Normal("y", mean, sigma, observed=rest["log_radon"].to_numpy())
            idata = pm.sample(
                draws=4000,
                tune=1000,
                chains=4,
                random_seed=11,
                progressbar=False,
                nuts_sampler="nutpie",
                target_accept=0.9,
            )
        draws = {name: idata.posterior[name].to_numpy().ravel() for name in ("b0", "b1", "tau", "sigma")}
        floor_left, y_left = left["floor"].to_numpy() - centre, left["log_radon"].to_numpy()
        log_density = np.array(
            [
                stats.multivariate_normal.logpdf(
                    y_left, b0 + b1 * floor_left, s**2 * np.eye(len(y_left)) + t**2 * np.ones((len(y_left),) * 2)
                )
                for b0, b1, t, s in zip(draws["b0"], draws["b1"], draws["tau"], draws["sigma"], strict=True)
            ]
        )
        estimate = special.logsumexp(log_density) - np.log(len(log_density))
        # Monte Carlo error of log(mean(w)) by the delta method, with the draws' autocorrelation through their ESS
        weights = np.exp(log_density - log_density.max())
        ess = float(az_ess(weights.reshape(4, -1)))
        error = weights.std() / weights.mean() / np.sqrt(ess)
        print(f"{county}: exact {exact[county]:.4f}, refit {estimate:.4f} (Monte Carlo error {error:.4f})")
        assert abs(exact[county] - estimate) < 5 * error + 1e-3, (county, exact[county], estimate, error)


def az_ess(values):
    import arviz as az

    return az.ess(np.asarray(values))


def test_given_the_scales_with_flat_priors_the_floor_effect_is_the_within_between_mix(radon):
    """Generalised least squares at fixed (sigma, tau), two ways: the engine with the scales fixed and flat priors,
    against `within_between`'s closed form. The varying-intercept model's floor effect is the weighted mix of the
    within- and between-county slopes; with the county's first-floor share as a predictor (Mundlak), the floor
    effect is the within slope and the share's coefficient the between slope minus the within one, exactly."""
    from pooling.models import with_first_floor_share
    from pooling.shrinkage import within_between

    scales = {"sigma": 0.73, "tau": 0.32}
    split = within_between(radon, "floor", "log_radon", "county", scales["sigma"], scales["tau"])
    mixed = varying_intercept_posterior(
        RADON_MODELS["radon_varying_intercepts"].build(radon), given=scales, flat=True
    ).summary()
    assert mixed.loc["floor", "mean"] == pytest.approx(split["slope"], abs=1e-9)
    contextual = varying_intercept_posterior(
        RADON_MODELS["radon_contextual"].build(with_first_floor_share(radon)), given=scales, flat=True
    ).summary()
    assert contextual.loc["floor", "mean"] == pytest.approx(split["within"], abs=1e-9)
    assert contextual.loc["first_floor_share", "mean"] == pytest.approx(split["between"] - split["within"], abs=1e-9)
    with pytest.raises(ValueError, match="not \\['nu'\\]"):
        varying_intercept_posterior(RADON_MODELS["radon_varying_intercepts"].build(radon), given={"nu": 3})


def test_scale_mode_is_the_peak_of_the_marginal_density_found_by_quadrature():
    """`scale_mode` (the grid's densest cell refined by a parabola) against the maximum of sigma's marginal posterior
    density, integrated over tau by quadrature and maximised by a bounded search: no grid involved."""
    x, y, groups = tiny_data()
    posterior = tiny_posterior(x, y, groups)
    design = np.column_stack([np.ones_like(x), x, groups])
    residual = y - design[:, :2] @ TINY_PRIORS["prior_mean"]

    def joint(sigma, tau):
        prior_cov = np.diag(np.concatenate([TINY_PRIORS["prior_sd"] ** 2, np.full(groups.shape[1], tau**2)]))
        marginal_cov = design @ prior_cov @ design.T + sigma**2 * np.eye(len(y))
        log_likelihood = stats.multivariate_normal(np.zeros(len(y)), marginal_cov).logpdf(residual)
        return np.exp(log_likelihood + TINY_PRIORS["sigma"].log_density(sigma) + TINY_PRIORS["tau"].log_density(tau))

    def sigma_density(sigma):
        return integrate.quad(lambda tau: joint(sigma, tau), 0, np.inf, epsrel=1e-10)[0]

    summary = posterior.scale_summary("sigma")
    peak = optimize.minimize_scalar(
        lambda sigma: -sigma_density(sigma),
        bounds=(0.05, summary["mean"] + 3 * summary["sd"]),
        method="bounded",
        options={"xatol": 1e-7},
    ).x
    assert abs(posterior.scale_mode("sigma") - peak) < 0.02 * summary["sd"]  # 0.009 sd here: the grid's resolution

"""Chapter 9's exact computations: groups measured with known standard errors (the eight schools), each state's
Gaussian likelihood in the three-level model, and priors read from a PyMC model; each against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from pooling.data import radon_all_states
from pooling.models import RADON_MODELS
from pooling.shrinkage import ScalePrior, measured_groups_posterior, pymc_prior, state_level_likelihood

# Rubin's eight schools: estimated coaching effects and their standard errors.
SCHOOLS = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
ERRORS = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def _brute_force_tau(estimates, errors, prior, mu_prior):
    """The marginal posterior of tau by quadrature: theta integrated out (estimate ~ N(mu, sqrt(se^2 + tau^2))),
    then mu ~ N(mu_prior) integrated on a fine grid."""
    mu_mean, mu_sd = mu_prior
    mu = np.linspace(mu_mean - 8 * mu_sd, mu_mean + 8 * mu_sd, 4001)

    def unnormalised(tau):
        spread = np.sqrt(errors[:, None] ** 2 + tau**2)
        log_like = stats.norm.logpdf(estimates[:, None], mu[None, :], spread).sum(0) + stats.norm.logpdf(mu, *mu_prior)
        return np.exp(prior.log_density(tau) + np.log(np.trapezoid(np.exp(log_like), mu)) + 40)

    upper = 400.0
    total = integrate.quad(unnormalised, 0, upper, limit=400)[0]
    mean = integrate.quad(lambda tau: tau * unnormalised(tau), 0, upper, limit=400)[0] / total
    below = integrate.quad(unnormalised, 0, 10, limit=400)[0] / total
    return mean, below


@pytest.mark.parametrize("prior", [ScalePrior("halfnormal", 10.0), ScalePrior("halfcauchy", 5.0)])
def test_measured_groups_posterior_matches_quadrature_on_the_eight_schools(prior):
    mu_prior = (0.0, 20.0)
    exact = measured_groups_posterior(SCHOOLS, ERRORS, prior, mu_prior, [f"school {j}" for j in range(1, 9)])
    mean, below = _brute_force_tau(SCHOOLS, ERRORS, prior, mu_prior)
    assert exact.scale_summary("tau")["mean"] == pytest.approx(mean, rel=2e-3)
    assert exact.probability_below("tau", 10.0) == pytest.approx(below, abs=2e-3)
    summary = exact.summary()
    assert list(summary.index[:9]) == [*(f"school {j}" for j in range(1, 9)), "mu"]
    # every school is pulled toward mu: its posterior mean lies between its estimate and mu's
    school_means, mu_mean = summary["mean"].iloc[:8].to_numpy(), summary.loc["mu", "mean"]
    assert np.all((school_means - mu_mean) * (SCHOOLS - school_means) >= 0)


@pytest.fixture(scope="module")
def two_states():
    return radon_all_states(states=["AZ", "MA"]).dropna(subset=["floor"])


def test_state_level_likelihood_is_the_homes_likelihood_of_the_level(two_states):
    """Given the floor effect, county sd and residual sd, the log-likelihood of the homes (county effects integrated
    out) is quadratic in a state's level: its maximum and curvature are the estimate and standard error."""
    floor, county_sd, sigma = pd.Series({"AZ": -0.4, "MA": -0.7}), 0.3, pd.Series({"AZ": 0.9, "MA": 0.95})
    likelihood = state_level_likelihood(two_states, floor, county_sd, sigma)
    for state, homes in two_states.groupby("state", observed=True):
        state = str(state)

        def log_likelihood(level, homes=homes, state=state):
            total = 0.0
            for _, county in homes.groupby("county", observed=True):
                y = county["log_radon"].to_numpy()
                covariance = sigma[state] ** 2 * np.eye(len(y)) + county_sd**2
                total += stats.multivariate_normal.logpdf(y, level + floor[state] * county["floor"], covariance)
            return total

        levels = np.array([0.0, 0.5, 1.0])
        a, b, _ = np.polyfit(levels, [log_likelihood(level) for level in levels], 2)  # exactly quadratic
        assert likelihood.loc[state, "estimate"] == pytest.approx(-b / (2 * a), abs=1e-8)
        assert likelihood.loc[state, "standard_error"] == pytest.approx((-2 * a) ** -0.5, rel=1e-8)


def test_priors_are_read_from_the_pymc_model(two_states):
    model = RADON_MODELS["radon_three_levels_floor"].build(two_states).backend_model
    assert pymc_prior(model, "state_sd") == ScalePrior("halfnormal", 0.5)
    assert pymc_prior(model, "mu") == (1.0, 1.0)
    slopes = RADON_MODELS["radon_correlated_slopes"].build(two_states).backend_model
    with pytest.raises(ValueError, match="sigma has a HalfStudentT prior"):
        pymc_prior(slopes, "sigma")


def test_cochran_q_matches_statsmodels_meta_analysis_on_the_eight_schools():
    from statsmodels.stats.meta_analysis import combine_effects

    from pooling.heterogeneity import cochran_q

    q = cochran_q(SCHOOLS, ERRORS)
    reference = combine_effects(SCHOOLS, ERRORS**2)
    assert q["statistic"] == pytest.approx(reference.q, rel=1e-10)
    assert q["pooled"] == pytest.approx(reference.mean_effect_fe, rel=1e-10)
    assert q["p"] == pytest.approx(stats.chi2.sf(reference.q, 7), rel=1e-10)
    assert cochran_q([1.0, 1.0, 1.0], [0.1, 0.2, 0.3])["statistic"] == 0


def test_likelihood_ratio_tests_match_separate_fits_where_the_models_separate(two_states):
    """Simulated homes of two states (their real counties and floors) with one county sd give no evidence of a
    county sd per state at the 0.1% level, and homes with very different county sds do; the per-state floor effects
    recover the simulated one."""
    from pooling.heterogeneity import likelihood_ratio_tests, per_group_floor_effects

    rng = np.random.default_rng(7)
    homes = two_states.assign(county=two_states["county"].astype(str), state=two_states["state"].astype(str))
    codes, _ = pd.factorize(homes["county"])
    effects = rng.normal(0, 1, codes.max() + 1)
    for county_sds, rejected in (({"AZ": 0.3, "MA": 0.3}, False), ({"AZ": 0.05, "MA": 0.8}, True)):
        county_sd = homes["state"].map(county_sds).to_numpy()
        simulated = homes.assign(
            log_radon=1 - 0.6 * homes["floor"] + county_sd * effects[codes] + rng.normal(0, 0.8, len(homes))
        )
        tests = likelihood_ratio_tests(simulated)
        assert (tests["p"].loc["a county sd per state"] < 0.001) == rejected
        assert tests["df"].eq(1).all()
    floors = per_group_floor_effects(simulated)
    assert list(floors.index) == ["AZ", "MA"] and (floors["floor"] - -0.6).abs().lt(3 * floors["SE"]).all()


def test_exact_random_intercept_likelihood_matches_mixedlm(two_states):
    """The closed-form likelihood behind the per-state-sd tests equals statsmodels' MixedLM log-likelihood at its ML
    estimates (one residual sd, one county sd, a level and floor effect per state), and its own maximum over those
    parameters reaches MixedLM's."""
    import statsmodels.formula.api as smf

    from pooling.heterogeneity import _county_statistics, _ml_by_group, random_intercept_loglik

    homes = two_states.assign(county=two_states["county"].astype(str), state=two_states["state"].astype(str))
    result = smf.mixedlm("log_radon ~ 0 + C(state) + C(state):floor", homes, groups=homes["county"]).fit(reml=False)
    counties = _county_statistics(homes, "state")
    names = sorted(homes["state"].unique())
    level = counties["group"].map(dict(zip(names, result.fe_params.iloc[:2], strict=True))).to_numpy()
    floor = counties["group"].map(dict(zip(names, result.fe_params.iloc[2:], strict=True))).to_numpy()
    sigma, tau = np.sqrt(result.scale), np.sqrt(result.cov_re.iloc[0, 0])
    assert random_intercept_loglik(counties, level, floor, sigma, tau) == pytest.approx(result.llf, abs=1e-6)
    start = pd.DataFrame(
        {"level": [1.0, 1.0], "floor": [-0.5, -0.5], "residual_sd": [0.8, 0.8], "county_sd": [0.3, 0.3]}, index=names
    )
    shared = {"floor": True, "residual_sd": False, "county_sd": False}
    assert _ml_by_group(counties, names, shared, start) == pytest.approx(result.llf, abs=1e-3)


def test_jackknife_by_group_matches_the_leave_one_out_formula_of_least_squares():
    """With one observation per group, the refitted slopes follow from the full fit exactly:
    β_(i) = β - (XᵀX)⁻¹ x_i e_i / (1 - h_ii)."""
    from pooling.heterogeneity import jackknife_by_group

    rng = np.random.default_rng(3)
    data = pd.DataFrame({"x": rng.normal(size=40)})
    data["y"] = 1 + 0.5 * data["x"] + rng.standard_t(3, size=40)
    data["group"] = np.arange(40)
    design = np.column_stack([np.ones(40), data["x"]])
    inverse = np.linalg.inv(design.T @ design)
    beta = inverse @ design.T @ data["y"].to_numpy()
    residuals = data["y"].to_numpy() - design @ beta
    leverage = np.einsum("ij,jk,ik->i", design, inverse, design)
    slopes = beta[1] - (design @ inverse)[:, 1] * residuals / (1 - leverage)
    expected = np.sqrt(39 / 40 * ((slopes - slopes.mean()) ** 2).sum())
    result = jackknife_by_group(data, "y ~ x", "x", "group")
    assert result["estimate"] == pytest.approx(beta[1], rel=1e-10)
    assert result["jackknife SE"] == pytest.approx(expected, rel=1e-8) and result["groups"] == 40
